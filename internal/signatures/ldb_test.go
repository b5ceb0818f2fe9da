package signatures

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// ldbCase is one .ldb line and what loading it gives: 'L' loaded (in
// Set.Logical), 'S' skipped as ClamAV skips it, 'E' refused. The same
// table is checked against clamscan in TestLDBSameAsClamAV.
type ldbCase struct {
	line string
	want byte
	// unsupported, for 'L', is part of LogicalSig.Unsupported ("" when
	// Vigil's matcher could evaluate every subsignature).
	unsupported string
	// clamDiffers is why ClamAV does not agree (a disagreement listed in
	// docs/signatures.md); "" when it agrees.
	clamDiffers string
}

func subsigs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, ";41%02x43", i)
	}
	return b.String()
}

func orChain(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	return strings.Join(ids, "|")
}

var ldbCases = []ldbCase{
	// Fields and logical expressions.
	{line: "A;Target:0;0;414243", want: 'L'},
	{line: "A;Target:0;0;4142", want: 'L'}, // 2 bytes: Aho-Corasick, no 3-byte minimum
	{line: "A;Target:0;0;41", want: 'E'},
	{line: "A;Target:0;0&1;414243;444546", want: 'L'},
	{line: "A;Target:0;0|1;414243", want: 'E'},
	{line: "A;Target:0;0;414243;444546", want: 'E'},
	{line: "A;Target:0;1;414243;444546", want: 'L'},
	{line: "A;Target:0;(0&1)|2;41424344;454647;48494a", want: 'L'},
	{line: "A;Target:0;0>2;414243", want: 'L'},
	{line: "A;Target:0;0=0;414243", want: 'L'},
	{line: "A;Target:0;0<3;414243", want: 'L'},
	{line: "A;Target:0;(0|1)>2,2;414243;444546", want: 'L'},
	{line: "A;Target:0;(0|1)=2;414243;444546", want: 'L'},
	{line: "A;Target:0;0>1,2;414243", want: 'L'},
	{line: "A;Target:0;((0|1)&2)>3,2;414243;444546;474849", want: 'L'},
	{line: "A;Target:0;0 & 1;414243;444546", want: 'L'},
	{line: "A;Target:0;0x;414243", want: 'L'}, // sscanf reads the 0
	{line: "A;Target:0;0&;414243", want: 'E'},
	{line: "A;Target:0;&0;414243", want: 'E'},
	{line: "A;Target:0;(0;414243", want: 'E'},
	{line: "A;Target:0;0);414243", want: 'E'},
	{line: "A;Target:0;0>;414243", want: 'E'},
	{line: "A;Target:0;(0|1)>;414243;444546", want: 'E'},
	{line: "A;Target:0;x;414243", want: 'E'},
	{line: "A;Target:0;;414243", want: 'E'},
	{line: "A;Target:0;-1;414243", want: 'E'},
	{line: "A;Target:0;(0)=1;414243", want: 'E'},
	{line: "A;Target:0;0^1;414243;444546", want: 'E'},
	{line: "A;Target:0;0" + subsigs(1), want: 'L'},
	{line: "A;Target:0;" + orChain(64) + subsigs(64), want: 'L'},
	{line: "A;Target:0;" + orChain(65) + subsigs(65), want: 'E'},
	{line: "A;Target:0;0", want: 'E'},
	{line: "A;Target:0", want: 'E'},
	{line: ";Target:0;0;414243", want: 'E'},
	{line: " (Clam);Target:0;0;414243", want: 'E'},
	{line: "A (Clam);Target:0;0;414243", want: 'L'},
	// Target description blocks.
	{line: "A;Engine:51-255,Target:0;0;414243", want: 'L'},
	{line: "A;Engine:300-400,Target:0;0;414243", want: 'S'},
	{line: "A;Engine:51-100,Target:0;0;414243", want: 'S'},
	{line: "A;Engine:300-400,Target:0;0;41", want: 'S'},       // skipped before its subsignatures are read
	{line: "A;Engine:300-400,Target:0;0&1;414243", want: 'E'}, // but not before its expression is
	{line: "A;Engine:51-,Target:0;0;414243", want: 'S'},
	{line: "A;Target:0,Engine:51-255;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:0,Engine:51-255;0;414243", want: 'E'},
	{line: "A;Engine:51-255;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:15;0;414243", want: 'S'},
	{line: "A;Engine:51-255,Target:x;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:;0;414243", want: 'L'},
	{line: "A;Target:0,FileSize:10-20;0;414243", want: 'E'},
	{line: "A;Engine:50-255,Target:0,FileSize:10-20;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:0,FileSize:10-20;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:0,FileSize:10;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:0,FileSize:a-b;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:0,Foo:1;0;414243", want: 'S'},
	{line: "A;Engine:51-255,Target:0,Foo:1,FileSize:x;0;414243", want: 'S'},
	{line: "A;Engine:51-255,Target:0,Container:CL_TYPE_ZIP;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:0,Container:CL_TYPE_NOPE;0;414243", want: 'S'},
	{line: "A;Engine:51-255,Target:0,Container:CL_TYPE_ERROR;0;414243", want: 'S'},
	{line: "A;Engine:51-255,Target:0,Intermediates:CL_TYPE_ZIP>CL_TYPE_ANY;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:0,Intermediates:CL_TYPE_ZIP>CL_TYPE_X;0;414243", want: 'S'},
	{line: "A;Engine:51-255,Target:0,HandlerType:CL_TYPE_MSEXE;0;414243", want: 'L', unsupported: "HandlerType"},
	{line: "A;Engine:51-255,Target:0,EntryPoint:0-100;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:1,EntryPoint:0-100,NumberOfSections:1-5;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:6,NumberOfSections:1-5;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:9,EntryPoint:0-5;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:0,IconGroup1:foo;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:0,IconGroup2:;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:1,IconGroup1:foo,IconGroup2:bar;0;414243", want: 'L', unsupported: "icon groups"},
	{line: "A;Engine:51-255,Target:0" + strings.Repeat(",FileSize:1-9", 8) + ",Bogus;0;414243", want: 'L'}, // attributes past the 10th are ignored
	{line: "A;Engine:51-255,Target:0" + strings.Repeat(",FileSize:1-9", 7) + ",Bogus:1;0;414243", want: 'S'},
	{line: "A;Target;0;414243", want: 'E'},
	{line: "A;;0;414243", want: 'E'},
	{line: "A;Engine:51-255,Target:7;0;414243", want: 'L'},
	{line: "A;Engine:51-255,Target:3;0;3c6120", want: 'L'},
	// Content subsignatures: offsets and modifiers.
	{line: "A;Target:0;0;10:414243", want: 'L'},
	{line: "A;Target:0;0;EOF-10:414243", want: 'L'},
	{line: "A;Target:0;0;10,20:414243", want: 'L'},
	{line: "A;Target:0;0;EOF+1:414243", want: 'E'},
	{line: "A;Target:0;0;EP+0:414243", want: 'E'},
	{line: "A;Engine:51-255,Target:1;0;EP+0:414243", want: 'L'},
	{line: "A;Engine:51-255,Target:1;0;SL+4:414243", want: 'L'},
	{line: "A;Target:0;0;414243::i", want: 'L'},
	{line: "A;Target:0;0;414243::w", want: 'L'},
	{line: "A;Target:0;0;414243::wa", want: 'L'},
	{line: "A;Target:0;0;414243::a", want: 'L'},
	{line: "A;Target:0;0;414243::iwfa", want: 'L'},
	{line: "A;Target:0;0;414243::f", want: 'L'},
	{line: "A;Target:0;0;414243::", want: 'L'},
	{line: "A;Target:0;0;414243::x", want: 'E'},
	{line: "A;Target:0;0;10:414243::i", want: 'L'},
	{line: "A;Target:0;0;414243:i", want: 'E'},
	{line: "A;Target:0;0;414243:x:y:z:w", want: 'L'},
	{line: "A;Target:0;0;41??43::w", want: 'L'},
	{line: "A;Target:0;0;4142{2}4344::w", want: 'L'},
	{line: "A;Target:0;0;4142{2-4}4344::w", want: 'L'},
	{line: "A;Target:0;0;41(42|43)44::w", want: 'L'},
	{line: "A;Target:0;0;41424344(B)::w", want: 'L', unsupported: "anchors"},
	{line: "A;Target:0;0;4142(::w", want: 'E'},
	{line: "A;Target:0;0;4142!(43|44)45::w", want: 'E'}, // with a modifier, alternatives cannot be negated
	{line: "A;Target:0;0;4142!(43|44)45::a", want: 'E'},
	{line: "A;Target:0;0;4142!(43|44)45", want: 'L', unsupported: "negations"},
	{line: "A;Target:0;0;41(42|43)4445::i", want: 'E'}, // the prefilter stops at the (generic) alternative after one byte
	{line: "A;Target:0;0;41(42|43)4445", want: 'L'},
	{line: "A;Target:0;0;4142(43|44)45::i", want: 'L'},
	{line: "A;Target:0;0;41[1-2]4243::f", want: 'E'}, // "(W)41{1-2}4243(W)": a piece of one byte
	{line: "A;Target:0;0;41[1-2::f", want: 'E'},
	{line: "A;Target:0;0;41[1-2]4243", want: 'L', unsupported: "ranges"},
	{line: "A;Target:0;0;414::w", want: 'E'},
	{line: "A;Target:0;0;41(4243|4445)464748", want: 'E'},
	{line: "A;Target:0;0;4142*4344", want: 'L'},
	{line: "A;Target:0;0;4142{0}4344", want: 'L'},
	{line: "A;Target:0;0;$1$:414243", want: 'E'}, // a macro subsignature without its closing $
	{line: "A;Target:0;0;", want: 'E'},
	// Byte compare.
	{line: "A;Target:0;0&1;414243;0(>>2#hb2#=12)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(<<2#de3#>5,<10)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>2#hl2#=1)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>2#dl2#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#ib3#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#ib4#=1)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>2#h19#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#h2#=1,>2,<3)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb2#)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb0#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(2#hb2#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(0#hb2#=1)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(#hb2#=1)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>0x10#hb2#=0x1f)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb2#=)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb2#!1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb2#=1)xyz", want: 'L'},
	{line: "A;Target:0;0&1;414243;x(>>2#hb2#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;65(>>2#hb2#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;65536(>>2#hb2#=1)", want: 'L'}, // ClamAV keeps the index in 16 bits
	{line: "A;Target:0;0&1;414243;-1(>>2#hb2#=1)", want: 'L', unsupported: "subsignature -1 does not exist"},
	{line: "A;Target:0;0&1;414243;0(>>2#hb0x2#=1)", want: 'L'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb 2#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#hb2#=1", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#hbx#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#he08#=1)", want: 'E'},
	{line: "A;Target:0;0&1;414243;0(>>2#ae010#=1)", want: 'L'},
	// PCRE.
	{line: "A;Target:0;0&1;414243;0/abc/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/abc/ismxAEUgre", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/abc/z", want: 'E'},
	{line: "A;Target:0;0&1;414243;/abc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;1/abc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;2/abc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;0/abc", want: 'E'},
	{line: "A;Target:0;0&1;414243;0//i", want: 'E'},
	{line: "A;Target:0;0&1;414243;10:0/abc/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;EP+0:0/abc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;0/a;b/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a\\/b/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a:b/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;x/abc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;0/a(bc/", want: 'E'}, // unbalanced: PCRE2 refuses it
	{line: "A;Target:0;0&1;414243;0/a)bc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;0/a[bc/", want: 'E'},
	{line: "A;Target:0;0&1;414243;0/a[]bc]/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a[[:alpha:]]\\(/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a(?#(c)/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a\\Q(\\E/", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a # (/x", want: 'L', unsupported: "PCRE"},
	{line: "A;Target:0;0&1;414243;0/a**/", want: 'L', unsupported: "PCRE", clamDiffers: "PCRE2 refuses the regex; Vigil does not compile PCREs"},
	// Macros and fuzzy image hashes.
	{line: "A;Target:0;0&1;414243;${1-5}0$", want: 'L', unsupported: "macro"},
	{line: "A;Target:0;0&1;414243;${1-5}32$", want: 'E'},
	{line: "A;Target:0;0&1;414243;${1-5}0", want: 'E'},
	{line: "A;Target:0;0&1;414243;$x$", want: 'E'},
	{line: "A;Target:0;0&1;414243;fuzzy_img#0123456789abcdef", want: 'L', unsupported: "fuzzy"},
	{line: "A;Target:0;0&1;414243;fuzzy_img#0123456789ABCDEF#0", want: 'L', unsupported: "fuzzy"},
	{line: "A;Target:0;0&1;414243;fuzzy_img#0123456789abcdef#1", want: 'E'},
	{line: "A;Target:0;0&1;414243;fuzzy_img#0123", want: 'E'},
	{line: "A;Target:0;0&1;414243;fuzzy_img#0123456789abcdeg", want: 'E'},
	// The example of docs/signatures.md.
	{line: "Win.Trojan.Example;Engine:81-255,Target:1,FileSize:1000-90000;((0&1)|2)>3,2&3;EP+0:4d5a::w;6164(6d|76)69::i;0(>>4#hb2#>0x10);1/a[b-d]+/si", want: 'L', unsupported: "PCRE"},
	// From ClamAV's own unit tests.
	{line: "Test.Sig.LDB_1of2_PE_ICON_1;Engine:51-255,Target:1,IconGroup1:TEST_ICON_GROUP_1;0;434c414d41565f544553545f5052494e54465f535452494e475f", want: 'L', unsupported: "icon groups"},
	{line: "Test.LDB;Engine:52-255,Target:1;0;4B45524E454C33322E444C4C00004578697450726F63657373005553455233322E444C4C00434C414D657373616765426F7841", want: 'L'},
	{line: "ClamAV-Test-Icon-EA0X;Engine:52-1000,Target:1,IconGroup1:ea0x-grp1,IconGroup2:*;(0);0:4d5a", want: 'L', unsupported: "icon groups"},
	{line: "7z_zip_container_good;Engine:81-255,Container:CL_TYPE_7Z,Target:0;0;0:7631727573", want: 'L'},
	{line: "7z_zip_intermediates_good;Engine:81-255,Intermediates:CL_TYPE_ZIP>CL_TYPE_7Z,Target:0;0;0:7631727573", want: 'L'},
	{line: "logo.png.good.with.second.subsig;Engine:150-255,Target:0;0&1;49484452;fuzzy_img#af2ad01ed42993c7#0", want: 'L', unsupported: "fuzzy"},
	{line: "logo.png.bad;Engine:150-255,Target:0;0;fuzzy_img#abcdef#0", want: 'E'},
	{line: "logo.png.bad;Engine:150-255,Target:0;0;fuzzy_img#af2ad01ed42993c7#1", want: 'E'},
	{line: "logo.png.bad;Engine:150-255,Target:0;0;fuzzy_imgy#af2ad01ed42993c7#0", want: 'E'},
	{line: "Target;Engine:52-255,Target:1;(0&1);VI:43006f006d00700061006e0079004e0061006d0065000000000063006f006d00700061006e007900;VI:500072006f0064007500630074004e0061006d0065000000000063006c0061006d00", want: 'L', unsupported: "version information"},
	{line: "regex;Engine:81-255,Target:0;1;68656c6c6f20;0/hello blee\\/blah: bleh/", want: 'L', unsupported: "PCRE"},
	{line: "ldb_pcre_offset_match;Engine:81-255,Target:0;0&1;68656c6c6f20;5:0/llo blee/", want: 'L', unsupported: "PCRE"},
	{line: "ldb_multi_pcre;Engine:81-255,Target:0;0&1&2;68656c6c6f20;0/hello blee/;0/blah/i", want: 'L', unsupported: "PCRE"},
	{line: "X;Engine:56-255,Target:1;(((0|1|2)=42,2)|(3=10));EP+0:aabb;ffff;aaccee;f00d;dead", want: 'E'},
	{line: "X;Engine:56-255,Target:1;(((0|1|2)=42,2)|(3=10));EP+0:aabb;ffff;aaccee;f00d", want: 'L'},
	// Lines longer than the .ndb limit load; longer than 32,768 bytes they do not.
	{line: "A;Target:0;0;" + strings.Repeat("41", 6000), want: 'L'},
	// What the engine does not evaluate.
	{line: "A;Engine:51-255,Target:0,HandlerType:CL_TYPE_ZIP;0;414243", want: 'L', unsupported: "HandlerType"},
	{line: "A;Engine:51-255,Target:13;0;414243", want: 'L', unsupported: "target type 13"},
	{line: "A;Target:0;0;" + strings.Repeat("41", 17000), want: 'E'},
	{line: "A;Target:0;0;" + strings.Repeat("41", (MaxLDBLineLength-14)/2), want: 'L'},   // 32,768 bytes with its line end
	{line: "A;Target:0;0;" + strings.Repeat("41", (MaxLDBLineLength-14)/2+1), want: 'E'}, // 32,770
}

func TestLDBCases(t *testing.T) {
	t.Parallel()
	for _, c := range ldbCases {
		name := truncate(c.line)
		s, err := Parse("t.ldb", strings.NewReader(c.line+"\n"))
		switch c.want {
		case 'E':
			var se *Error
			if !errors.As(err, &se) || se.File != "t.ldb" || se.Line != 1 {
				t.Errorf("%s: error %v, want one at t.ldb:1", name, err)
			}
			continue
		case 'S':
			if err != nil || len(s.Logical) != 0 || len(s.Skipped) != 1 || s.Skipped[0].ClamAVLoads || s.ClamAVCount() != 0 {
				t.Errorf("%s: %v, %+v; want skipped", name, err, s)
			}
			continue
		}
		if err != nil || len(s.Logical) != 1 || len(s.Skipped) != 0 || s.ClamAVCount() != 1 || s.Len() != 0 {
			t.Errorf("%s: %v, %+v; want loaded", name, err, s)
			continue
		}
		l := s.Logical[0]
		if c.unsupported == "" && l.Unsupported != "" || !strings.Contains(l.Unsupported, c.unsupported) {
			t.Errorf("%s: unsupported %q, want %q", name, l.Unsupported, c.unsupported)
		}
		if l.Name != clamVirname(strings.SplitN(c.line, ";", 2)[0]) || l.Line != 1 || l.File != "t.ldb" || len(l.Subsigs) == 0 {
			t.Errorf("%s: %+v", name, l)
		}
		for i, sub := range l.Subsigs {
			if sub.Unsupported == "" && sub.Kind == SubsigContent && len(sub.Patterns) == 0 {
				t.Errorf("%s: subsignature %d has no pattern", name, i)
			}
		}
	}
}

func TestLDBParsedForm(t *testing.T) {
	t.Parallel()
	line := "Sig.A (Clam);Engine:81-255,Target:1,FileSize:10-2000,EntryPoint:0-64,NumberOfSections:2-3,Container:CL_TYPE_ZIP,Intermediates:CL_TYPE_GZ>CL_TYPE_ANY;" +
		"(0&1)|2>1,2|3;EOF-20,5:4142(43|44)::i;6162::wa;0(>>4#hb2#>5,<0x10);10:0&1/a[bc]+/si"
	s, err := Parse("x.ldb", strings.NewReader(line+"\n"))
	if err != nil || len(s.Logical) != 1 {
		t.Fatalf("%v %+v", err, s)
	}
	l := s.Logical[0]
	td := l.Target
	if l.Name != "Sig.A" || td.Target != 1 || *td.Engine != (Range{81, 255}) || *td.FileSize != (Range{10, 2000}) ||
		*td.EntryPoint != (Range{0, 64}) || *td.NumberOfSections != (Range{2, 3}) ||
		td.Container.String() != "CL_TYPE_ZIP" || len(td.Intermediates) != 2 || td.Intermediates[0].String() != "CL_TYPE_GZ" ||
		td.Intermediates[1].String() != "CL_TYPE_ANY" || td.HandlerType != nil {
		t.Errorf("target description %+v", td)
	}
	if l.Logic.String() != "(0&1)|(2>1|3)" || l.LogicText != "(0&1)|2>1,2|3" {
		t.Errorf("logic %q (%q)", l.Logic.String(), l.LogicText)
	}
	s0, s1, s2, s3 := l.Subsigs[0], l.Subsigs[1], l.Subsigs[2], l.Subsigs[3]
	if s0.Kind != SubsigContent || s0.OffsetText != "EOF-20,5" || s0.Offset != (Offset{Kind: OffsetEOF, N: 20, Shift: 5}) || s0.Hex != "4142(43|44)" ||
		s0.Modifiers != (Modifiers{NoCase: true}) || len(s0.Patterns) != 1 || s0.Unsupported != "" {
		t.Errorf("subsig 0 %+v", s0)
	}
	// ::i folds the letters' case, in alternatives too.
	p := s0.Patterns[0]
	if !p.Parts[0].MatchAt([]byte("aBC")) || !p.Parts[0].MatchAt([]byte("ABd")) || p.Parts[0].MatchAt([]byte("ABE")) || p.Parts[0].MatchAt([]byte("A\x62C")) == false {
		t.Errorf("nocase pattern %v", p)
	}
	if s1.Modifiers != (Modifiers{Wide: true, ASCII: true}) || len(s1.Patterns) != 2 ||
		s1.Patterns[0].String() != "61006200" || s1.Patterns[1].String() != "6162" {
		t.Errorf("subsig 1 %+v", s1)
	}
	bc := s2.ByteCompare
	if s2.Kind != SubsigByteCompare || bc == nil || bc.Ref != 0 || bc.Offset != 4 || !bc.Hex || !bc.Big || bc.Length != 2 ||
		len(bc.Comparisons) != 2 || bc.Comparisons[0] != (Comparison{'>', 5}) || bc.Comparisons[1] != (Comparison{'<', 16}) {
		t.Errorf("subsig 2 %+v %+v", s2, bc)
	}
	if s3.Kind != SubsigPCRE || s3.PCRE == nil || s3.PCRE.Trigger != "0&1" || s3.PCRE.Regex != "a[bc]+" || s3.PCRE.Flags != "si" ||
		s3.OffsetText != "10" || s3.Offset != (Offset{Kind: OffsetAbs, N: 10}) || !s3.PCRE.TriggerExpr.Eval([]uint32{1, 1}) {
		t.Errorf("subsig 3 %+v %+v", s3, s3.PCRE)
	}
	if !strings.Contains(l.Unsupported, "subsignature 3: PCRE") {
		t.Errorf("unsupported %q", l.Unsupported)
	}
}

func TestWideHex(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"414243", "410042004300"},
		{"41??4?", "4100??004?00"},
		{"4142{2-4}4344", "41004200{2-4}43004400"},
		{"41[1-2]42", "4100{1-2}4200"},
		{"41(42|43)44", "4100(4200|4300)4400"},
		{"41!(42|43)44", "4100!(4200|4300)4400"},
		{"4142*4344", "41004200*43004400"},
		{"(B)4142", "(B)41004200"},
		{"414", "41004"},
	} {
		got, err := wideHex(c.in)
		if err != nil || got != c.want {
			t.Errorf("wideHex(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestExprEval(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		expr   string
		counts []uint32
		want   bool
	}{
		{"0", []uint32{0}, false},
		{"0", []uint32{1}, true},
		{"0&1", []uint32{1, 0}, false},
		{"0&1", []uint32{1, 3}, true},
		{"0|1", []uint32{0, 3}, true},
		{"0|1", []uint32{0, 0}, false},
		{"0=2", []uint32{2}, true},
		{"0=2", []uint32{3}, false},
		{"0=0", []uint32{0}, true},
		{"0>2", []uint32{3}, true},
		{"0>2", []uint32{2}, false},
		{"0<2", []uint32{1}, true},
		{"0<2", []uint32{0}, true},
		{"0<2", []uint32{2}, false},
		// On a single subsignature ",Y" is ignored (ClamAV reads one number).
		{"0>1,2", []uint32{2}, true},
		{"0=1,5", []uint32{1}, true},
		// A block's modifier compares the sum of the counts of the
		// subsignatures that made it true...
		{"(0|1)>2", []uint32{2, 1}, true},
		{"(0|1)>2", []uint32{2, 0}, false},
		{"(0|1)=3", []uint32{2, 1}, true},
		{"(0&1)=3", []uint32{2, 1}, true},
		{"(0&1)=2", []uint32{2, 0}, false},
		// ... zero when it is false, so "<" and "=0" hold without matches.
		{"(0|1)<1", []uint32{0, 0}, true},
		{"(0&1)=0", []uint32{5, 0}, true},
		{"(0|1)<3", []uint32{2, 1}, false},
		// ",Y": at least Y distinct subsignatures.
		{"(0|1|2)>1,2", []uint32{5, 0, 0}, false},
		{"(0|1|2)>1,2", []uint32{1, 1, 0}, true},
		{"(0|1|2)>2,3", []uint32{1, 1, 1}, true},
		{"(0|1|2)>1,3", []uint32{1, 1, 0}, false},
		{"(0|1|2)=3,2", []uint32{2, 1, 0}, true},
		// Leaves with a modifier contribute their count even when it is 0.
		{"(0=0|1)>0,2", []uint32{0, 1}, true},
		// Nesting and precedence: ClamAV splits at the first top-level
		// operator, so "0|1&2" is "0|(1&2)" and "0&1|2" is "0&(1|2)".
		{"0|1&2", []uint32{1, 0, 0}, true},
		{"0|1&2", []uint32{0, 0, 1}, false},
		{"0&1|2", []uint32{0, 0, 1}, false},
		{"0&1|2", []uint32{1, 0, 1}, true},
		{"((0|1)>1,2&2)|3", []uint32{1, 1, 1, 0}, true},
		{"((0|1)>1,2&2)|3", []uint32{3, 0, 1, 0}, false},
		{"((0|1)>1,2&2)|3", []uint32{3, 0, 1, 1}, true},
		// The count of a block passes to the enclosing block, its set of
		// subsignatures does not.
		{"((0|1)>0&2)>2,2", []uint32{1, 1, 1}, false},
		{"((0|1)>0|2)>2", []uint32{2, 1, 0}, true},
		// An index beyond the counts given has count 0.
		{"5", []uint32{1}, false},
	} {
		e, _, err := ParseExpr(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if got := e.Eval(c.counts); got != c.want {
			t.Errorf("%s with %v = %v, want %v (tree %s)", c.expr, c.counts, got, c.want, e)
		}
	}
}

func TestParseExprMax(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		expr string
		max  int
		err  bool
	}{
		{"0", 0, false}, {"3", 3, false}, {"(0&1)|5", 5, false}, {"2|1", 2, false},
		{"(0|1)>2,2", 1, false}, {" 1", 1, false}, {"+1", 1, false}, {"0|4294967290", 0, false},
		{"", 0, true}, {"(", 0, true}, {")", 0, true}, {"0|", 0, true}, {"|0", 0, true}, {"a", 0, true},
		{"(0|1)>", 0, true}, {"0=", 0, true}, {"4294967295", 0, true}, {"()", 0, true},
	} {
		_, max, err := ParseExpr(c.expr)
		if (err != nil) != c.err || (!c.err && max != c.max) {
			t.Errorf("%q: max %d, %v; want %d, error %v", c.expr, max, err, c.max, c.err)
		}
	}
}

// FuzzParseLDB: the .ldb line parser never panics, errors name the file
// and line, and what it loads is whole.
func FuzzParseLDB(f *testing.F) {
	for _, c := range ldbCases {
		if len(c.line) < 2000 {
			f.Add(c.line)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := Parse("x.ldb", strings.NewReader(s))
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.File != "x.ldb" {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		for _, l := range set.Logical {
			if l.Name == "" || l.Logic == nil || len(l.Subsigs) == 0 || len(l.Subsigs) > MaxSubsigs || l.Line <= 0 {
				t.Fatalf("bad logical signature %+v", l)
			}
			counts := make([]uint32, len(l.Subsigs))
			l.Logic.Eval(counts)
			for _, sub := range l.Subsigs {
				if sub.Unsupported == "" && sub.Kind == SubsigContent && len(sub.Patterns) == 0 {
					t.Fatalf("content subsignature without a pattern %+v", sub)
				}
				for _, p := range sub.Patterns {
					if len(p.Parts) == 0 {
						t.Fatalf("empty pattern %+v", sub)
					}
				}
			}
		}
	})
}

// BenchmarkParseLDB parses 20,000 logical signatures of the real
// database's usual shapes (the size of ClamAV's main+daily .ldb).
func BenchmarkParseLDB(b *testing.B) {
	shapes := []string{
		"Win.Trojan.X-%d;Engine:81-255,Target:1;0&1&2;4d5a9000%04x;EP+0:e8????????5d5b;SL+16:(7368|5348)656c6c",
		"Html.Exploit.X-%d;Engine:51-255,Target:3;(0|1)&2;3c736372697074%04x::i;6576616c28::i;0/document\\.write\\(unescape/i",
		"Doc.Macro.X-%d;Engine:81-255,Container:CL_TYPE_ZIP,Target:0;0>2,1;4175746f4f70656e%04x::wa",
		"Pdf.Exploit.X-%d;Engine:81-255,Target:10,FileSize:100-200000;0&1&2;2f4a617661536372697074%04x;2f4f70656e416374696f6e;0(>>4#hb2#>5)",
	}
	var sb strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&sb, shapes[i%len(shapes)]+"\n", i, i)
	}
	data := sb.String()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := Parse("daily.ldb", strings.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Logical) != 20000 {
			b.Fatalf("%d logical signatures", len(s.Logical))
		}
	}
}

func TestTargetDescAllows(t *testing.T) {
	t.Parallel()
	td := func(s string) TargetDesc {
		d, skip, err := parseTDB(s)
		if err != nil || skip != "" {
			t.Fatalf("%s: %v %s", s, err, skip)
		}
		return d
	}
	exe := FileFacts{Size: 500, Executable: true, EntryPoint: 0x400, Sections: 3}
	for _, c := range []struct {
		tdb  string
		f    FileFacts
		want bool
	}{
		{"Target:0", FileFacts{}, true},
		{"Engine:51-255,Target:0,FileSize:10-20", FileFacts{Size: 10}, true},
		{"Engine:51-255,Target:0,FileSize:10-20", FileFacts{Size: 20}, true},
		{"Engine:51-255,Target:0,FileSize:10-20", FileFacts{Size: 21}, false},
		{"Engine:51-255,Target:1,EntryPoint:1024-1024", exe, true},
		{"Engine:51-255,Target:1,EntryPoint:0-1023", exe, false},
		{"Engine:51-255,Target:1,NumberOfSections:3-3", exe, true},
		{"Engine:51-255,Target:1,NumberOfSections:4-9", exe, false},
		{"Engine:51-255,Target:1,NumberOfSections:0-9", FileFacts{Size: 500}, false}, // not a parsed executable
		{"Engine:51-255,Target:0,Container:CL_TYPE_ZIP", FileFacts{Containers: []filetype.Type{filetype.GZ, filetype.ZIP}}, true},
		{"Engine:51-255,Target:0,Container:CL_TYPE_GZ", FileFacts{Containers: []filetype.Type{filetype.GZ, filetype.ZIP}}, false},
		{"Engine:51-255,Target:0,Intermediates:CL_TYPE_GZ>CL_TYPE_ZIP", FileFacts{Containers: []filetype.Type{filetype.PosixTar, filetype.GZ, filetype.ZIP}}, true},
		{"Engine:51-255,Target:0,Intermediates:CL_TYPE_ANY>CL_TYPE_ZIP", FileFacts{Containers: []filetype.Type{filetype.ZIP}}, false},
	} {
		d := td(c.tdb)
		if got := d.Allows(c.f); got != c.want {
			t.Errorf("%s on %+v: %v, want %v", c.tdb, c.f, got, c.want)
		}
	}
}

// TestExprStringRoundTrip: Expr.String gives an expression that parses
// to one evaluating the same, for random well-formed expressions and
// counts.
func TestExprStringRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(71, 72))
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	var gen func(d int) string
	gen = func(d int) string {
		if d > 3 || rng.IntN(3) == 0 {
			s := fmt.Sprint(rng.IntN(5))
			if rng.IntN(3) == 0 {
				s += pick("=", ">", "<") + fmt.Sprint(rng.IntN(3))
			}
			return s
		}
		s := gen(d+1) + pick("&", "|") + gen(d+1)
		if d > 0 || rng.IntN(2) == 0 {
			s = "(" + s + ")"
			if rng.IntN(2) == 0 {
				s += pick("=", ">", "<") + fmt.Sprint(rng.IntN(4)) + pick("", ",2", ",3")
			}
		}
		return s
	}
	for i := 0; i < 2000; i++ {
		src := gen(0)
		e, max, err := ParseExpr(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		e2, max2, err := ParseExpr(e.String())
		if err != nil || max2 != max {
			t.Fatalf("%s -> %s: %v (max %d, %d)", src, e, err, max, max2)
		}
		for k := 0; k < 20; k++ {
			counts := make([]uint32, 5)
			for j := range counts {
				counts[j] = uint32(rng.IntN(4))
			}
			if e.Eval(counts) != e2.Eval(counts) {
				t.Fatalf("%s -> %s differ on %v", src, e, counts)
			}
		}
	}
}

// TestFtcodes: every name ClamAV's cli_ftcode knows is a filetype.Type
// of that name, and CL_TYPE_ERROR and CL_TYPE_OTHER, which it does not
// know, are not accepted.
func TestFtcodes(t *testing.T) {
	t.Parallel()
	for _, n := range ftcodes {
		ty, ok := ftcode(n)
		if !ok || ty.String() != n {
			t.Errorf("%s: %v %v", n, ty, ok)
		}
	}
	for _, n := range []string{"CL_TYPE_ERROR", "CL_TYPE_OTHER", "cl_type_zip", "ZIP", ""} {
		if _, ok := ftcode(n); ok {
			t.Errorf("%s accepted", n)
		}
	}
}

// TestExecutableOffsetsParsed: the offsets relative to an executable's
// layout are kept as parsed values (and written back as they were).
func TestExecutableOffsetsParsed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		text string
		want Offset
	}{
		{"EP+12", Offset{Kind: OffsetEPPlus, N: 12}},
		{"EP-3,8", Offset{Kind: OffsetEPMinus, N: 3, Shift: 8}},
		{"S2+100", Offset{Kind: OffsetSectionPlus, N: 100, Section: 2}},
		{"SL+7,2", Offset{Kind: OffsetLastSection, N: 7, Shift: 2}},
		{"SE1", Offset{Kind: OffsetSection, Section: 1}},
		{"VI", Offset{Kind: OffsetVersionInfo}},
		{"$3$", Offset{Kind: OffsetMacro, N: 3}},
	} {
		r, err := clamOffset(c.text, 1)
		if err != nil || r.Offset != c.want || r.unsupported == "" || r.Offset.String() != c.text {
			t.Errorf("%s: %+v %q %v (%s)", c.text, r.Offset, r.unsupported, err, r.Offset.String())
		}
		if _, _, ok := r.Offset.Range(1000); ok {
			t.Errorf("%s: Range computed", c.text)
		}
	}
}
