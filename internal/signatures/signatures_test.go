package signatures

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseOne(t *testing.T, name, line string) (*Set, error) {
	t.Helper()
	return Parse(name, strings.NewReader(line+"\n"))
}

func TestHashValid(t *testing.T) {
	tests := []struct {
		file, line string
		algo       HashAlgo
		size       int64
		name       string
	}{
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature", MD5, 68, "Eicar-Test-Signature"},
		{"a.hdb", "44D88612FEA8A8F36DE82E1278ABB02F:68:Upper", MD5, 68, "Upper"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:*:Any:73", MD5, AnySize, "Any"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:FL:10:300", MD5, 68, "FL"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Name with spaces", MD5, 68, "Name with spaces"},
		{"a.hsb", "3395856ce81f2b7382dee72602f798b642f14140:68:S1", SHA1, 68, "S1"},
		{"a.hsb", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:S256", SHA256, 68, "S256"},
		{"a.hsb", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:*:S256Any:73", SHA256, AnySize, "S256Any"},
		{"a.hsb", "44d88612fea8a8f36de82e1278abb02f:68:MD5inHSB", MD5, 68, "MD5inHSB"},
	}
	for _, tc := range tests {
		s, err := parseOne(t, tc.file, tc.line)
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		h := s.Hashes[0]
		if h.Algo != tc.algo || h.Size != tc.size || h.Name != tc.name || h.Line != 1 || h.File != tc.file {
			t.Errorf("%s: got %+v", tc.line, h)
		}
	}
}

func TestHashInvalid(t *testing.T) {
	tests := []struct{ line, want string }{
		{"", "a.hdb:1: empty line"},
		{"44d88612fea8a8f36de82e1278abb02f:68", "a.hdb:1: want HASH:SIZE:NAME"},
		{"44d88612fea8a8f36de82e1278abb02f:68:N:1:300:x", "a.hdb:1: want HASH:SIZE:NAME"},
		{"44d88612fea8a8f36de82e1278abb02:68:N", "has 31 hex digits"},
		{"zzd88612fea8a8f36de82e1278abb02f:68:N", "not hexadecimal"},
		{"44d88612fea8a8f36de82e1278abb02f:68:", "empty signature name"},
		{"44d88612fea8a8f36de82e1278abb02f:6x:N", `size "6x" is not a decimal number`},
		{"44d88612fea8a8f36de82e1278abb02f:0:N", "size 0 is invalid"},
		{"44d88612fea8a8f36de82e1278abb02f:-1:N", "not a decimal number"},
		{"44d88612fea8a8f36de82e1278abb02f:*:N", `size "*" needs a minimum functionality level of at least 73`},
		{"44d88612fea8a8f36de82e1278abb02f:*:N:72", `size "*" needs a minimum functionality level of at least 73`},
		{"44d88612fea8a8f36de82e1278abb02f:68:N:300", "minimum functionality level 300 is above Vigil's 216"},
		{"44d88612fea8a8f36de82e1278abb02f:68:N:1:20", "maximum functionality level 20 is below Vigil's 216"},
		{"44d88612fea8a8f36de82e1278abb02f:68:N:x", "not a decimal number"},
		{"44d88612fea8a8f36de82e1278abb02f:68:a\x1bb", "control character"},
	}
	for _, tc := range tests {
		_, err := parseOne(t, "a.hdb", tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.line, err, tc.want)
		}
		var se *Error
		if err != nil && (!errors.As(err, &se) || se.File != "a.hdb" || se.Line != 1) {
			t.Errorf("%q: error %#v does not name file and line", tc.line, err)
		}
	}
}

func TestNDBValid(t *testing.T) {
	tests := []struct {
		line   string
		offset Offset
		canon  string // canonical pattern
		parts  int
	}{
		{"A:0:*:41424344", Offset{}, "41424344", 1},
		{"A:00:*:414243", Offset{}, "414243", 1},
		{"A:0:0:41424344", Offset{Kind: OffsetAbs}, "41424344", 1},
		{"A:0:100,20:41424344", Offset{OffsetAbs, 100, 20}, "41424344", 1},
		{"A:0:EOF-10:41424344", Offset{OffsetEOF, 10, 0}, "41424344", 1},
		{"A:0:EOF-10,4:41424344", Offset{OffsetEOF, 10, 4}, "41424344", 1},
		{"A:0:*:4142??43", Offset{}, "4142??43", 1},
		{"A:0:*:4142??", Offset{}, "4142??", 1},
		{"A:0:*:??4142", Offset{}, "??4142", 1},
		{"A:0:*:41424?45", Offset{}, "41424?45", 1},
		{"A:0:*:4142?945", Offset{}, "4142?945", 1},
		{"A:0:*:4142(43|44)45", Offset{}, "4142(43|44)45", 1},
		{"A:0:*:4142(4344|4546)", Offset{}, "4142(4344|4546)", 1},
		{"A:0:*:4142(4?|50)45", Offset{}, "4142(4?|50)45", 1},
		{"A:0:*:(43|44)4142", Offset{}, "(43|44)4142", 1},
		{"A:0:*:4142{2}4344", Offset{}, "4142????4344", 1},
		{"A:0:*:4142{0}4344", Offset{}, "41424344", 1},
		{"A:0:*:{2}41424344", Offset{}, "????41424344", 1},
		{"A:0:*:4142{1-3}4344", Offset{}, "4142{1-3}4344", 2},
		{"A:0:*:4142{-3}4344", Offset{}, "4142{0-3}4344", 2},
		{"A:0:*:4142{3-}4344", Offset{}, "4142{3-}4344", 2},
		{"A:0:*:4142{2-2}4344", Offset{}, "4142????4344", 1},
		{"A:0:*:4142{200}4344", Offset{}, "4142{200}4344", 2},
		{"A:0:*:4142*4344", Offset{}, "4142*4344", 2},
		{"A:0:*:4142*4344{2}4546", Offset{}, "4142*4344????4546", 2},
		{"A:0:*:4142{2}43{1-2}4546", Offset{}, "4142????43{1-2}4546", 2},
		{"A:0:*:41424344:10:300", Offset{}, "41424344", 1},
		{"A:0:*:41424344:10", Offset{}, "41424344", 1},
		{"Name.With-Chars_1:0:*:41424344", Offset{}, "41424344", 1},
	}
	for _, tc := range tests {
		s, err := parseOne(t, "x.ndb", tc.line)
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		b := s.Bodies[0]
		if b.Offset != tc.offset || b.Pattern.String() != tc.canon || len(b.Pattern.Parts) != tc.parts {
			t.Errorf("%s: offset %+v, pattern %s (%d parts)", tc.line, b.Offset, b.Pattern, len(b.Pattern.Parts))
		}
	}
}

func TestNDBInvalid(t *testing.T) {
	tests := []struct{ line, want string }{
		{"", "empty line"},
		{"A:0:*", "want NAME:TARGET:OFFSET:HEX"},
		{"A:0:*:41424344:1:300:9", "want NAME:TARGET:OFFSET:HEX"},
		{":0:*:41424344", "empty signature name"},
		{"A:1:*:41424344", "target type 1 (PE) is not supported; Vigil supports 0 (any file)"},
		{"A:6:*:41424344", "target type 6 (ELF) is not supported"},
		{"A:x:*:41424344", "not a decimal number"},
		{"A:0::41424344", `offset "" is not supported`},
		{"A:0:EP+0:41424344", `offset "EP+0" is not supported`},
		{"A:0:SL+4:41424344", `offset "SL+4" is not supported`},
		{"A:0:EOF+1:41424344", `offset "EOF+1" is not supported`},
		{"A:0:-1:41424344", `offset "-1" is not supported`},
		{"A:0:*,3:41424344", `offset "*,3" is not supported`},
		{"A:0:10,x:41424344", "offset shift"},
		{"A:0:*:", "hex signature: empty"},
		{"A:0:*:4142", "at least 3 bytes"},
		{"A:0:*:41??", "no two consecutive fixed bytes"},
		{"A:0:*:41(42|43)44", "no two consecutive fixed bytes"},
		{"A:0:*:(4142|4344)45", "no two consecutive fixed bytes"},
		{"A:0:*:4142{1-2}43", "piece 2 has no two consecutive fixed bytes"},
		{"A:0:*:4142{200}43", "piece 2 has no two consecutive fixed bytes"},
		{"A:0:*:4142434", "odd number of hex digits"},
		{"A:0:*:41424g", `unexpected character 'g'`},
		{"A:0:*:4142 43", `unexpected character ' '`},
		{"A:0:*:4142!(43|44)45", "negated alternatives !(...) are not supported"},
		{"A:0:*:4142[1-2]4345", "[n-m] byte ranges are not supported"},
		{"A:0:*:4142(B)4345", "(B) boundary anchors are not supported"},
		{"A:0:*:4142(L)4345", "(L) boundary anchors are not supported"},
		{"A:0:*:4142((43|44)|45)4647", "nested alternatives"},
		{"A:0:*:4142(43|4444)4546", "alternatives of different lengths"},
		{"A:0:*:4142(43|44|)4546", "empty alternative"},
		{"A:0:*:4142(43)4546", "needs at least two alternatives"},
		{"A:0:*:4142(43|44", "( without )"},
		{"A:0:*:4142{2", "{ without }"},
		{"A:0:*:4142{}4344", "empty {n}"},
		{"A:0:*:4142{-}4344", "{-} needs a number"},
		{"A:0:*:4142{3-1}4344", "minimum above maximum"},
		{"A:0:*:4142{x}4344", "not a decimal number"},
		{"A:0:*:*41424344", "* without bytes before it"},
		{"A:0:*:41424344*", "* without bytes after it"},
		{"A:0:*:4142**4344", "* without bytes before it"},
		{"A:0:*:4142{1-2}", "without bytes after it"},
		{"A:0:*:{1-2}41424344", "without bytes before it"},
		{"A:0:*:4142(43*|44)4546", "gaps are not allowed inside alternatives"},
		{"A:0:*:41424344)", `unexpected ')'`},
		{"A:0:*:41424344:300", "minimum functionality level 300 is above"},
		{"A:0:*:41424344:1:20", "maximum functionality level 20 is below"},
	}
	for _, tc := range tests {
		_, err := parseOne(t, "daily.ndb", tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "daily.ndb:1: ") {
			t.Errorf("%q: error %v, want daily.ndb:1: ...%q", tc.line, err, tc.want)
		}
	}
}

func TestErrorLine(t *testing.T) {
	in := "# a comment\nA:0:*:41424344\r\nB:0:*:41424344\n\nC:0:*:41424344\n"
	_, err := Parse("daily.ndb", strings.NewReader(in))
	if err == nil || err.Error() != "daily.ndb:4: empty line (ClamAV rejects it too; use # for comments)" {
		t.Errorf("error %v", err)
	}
	in = "# a comment\nA:0:*:41424344\r\nB:0:*:41424344\nC:1:*:41424344\n"
	_, err = Parse("daily.ndb", strings.NewReader(in))
	if err == nil || err.Error() != "daily.ndb:4: target type 1 (PE) is not supported; Vigil supports 0 (any file)" {
		t.Errorf("error %v", err)
	}
	s, err := Parse("daily.ndb", strings.NewReader(in[:strings.Index(in, "C:")]))
	if err != nil || len(s.Bodies) != 2 || s.Bodies[1].Line != 3 || s.Len() != 2 {
		t.Errorf("Parse = %+v, %v", s, err)
	}
	_, err = Parse("daily.ldb", strings.NewReader(""))
	if err == nil || !strings.Contains(err.Error(), "daily.ldb: not a signature file Vigil reads") {
		t.Errorf("error %v", err)
	}
	_, err = Parse("x.ndb", strings.NewReader("A:0:*:"+strings.Repeat("41", MaxLineLength)))
	if err == nil || !strings.Contains(err.Error(), "x.ndb:1: line longer than") {
		t.Errorf("error %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	w := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no *.hdb, *.hsb or *.ndb file") {
		t.Errorf("empty dir: %v", err)
	}
	w("a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")
	w("b.ndb", "B:0:*:41424344\n")
	w("c.hsb", "")
	w("README", "about these definitions")
	w("VERSION", "1")
	s, err := Load(dir)
	if err != nil || s.Len() != 2 || strings.Join(s.Files, ",") != "a.hdb,b.ndb,c.hsb" {
		t.Fatalf("Load = %+v, %v", s, err)
	}
	w("main.ldb", "x")
	w("daily.cdb", "x")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a signature file Vigil reads (*.hdb, *.hsb, *.ndb): daily.cdb, main.ldb, sub") {
		t.Errorf("unknown files: %v", err)
	}
	os.Remove(filepath.Join(dir, "main.ldb"))
	os.Remove(filepath.Join(dir, "daily.cdb"))
	os.Remove(filepath.Join(dir, "sub"))
	w("b.ndb", "B:0:*:41424344\nC:0:*:4142\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "b.ndb:2: hex signature: a signature of fixed bytes only needs at least 3 bytes") {
		t.Errorf("bad line: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "absent")); err == nil {
		t.Error("absent dir loaded")
	}
}

func TestShippedDefinitions(t *testing.T) {
	s, err := Load("../scan/testdata/definitions")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() < 2 {
		t.Errorf("%d signatures", s.Len())
	}
}

func TestOffsetRange(t *testing.T) {
	tests := []struct {
		o      Offset
		size   int64
		lo, hi int64
		ok     bool
	}{
		{Offset{}, 100, 0, 100, true},
		{Offset{OffsetAbs, 10, 0}, 100, 10, 10, true},
		{Offset{OffsetAbs, 10, 5}, 100, 10, 15, true},
		{Offset{OffsetAbs, 200, 0}, 100, 0, 0, false},
		{Offset{OffsetEOF, 10, 0}, 100, 90, 90, true},
		{Offset{OffsetEOF, 10, 4}, 100, 90, 94, true},
		{Offset{OffsetEOF, 200, 0}, 100, 0, 0, false},
		// n > size: no start, even where the shift reaches into the file
		// (ClamAV never matches; the window is not cut to start at 0).
		{Offset{OffsetEOF, 200, 150}, 100, 0, 0, false},
		{Offset{OffsetEOF, 101, 5}, 100, 0, 0, false},
		{Offset{OffsetEOF, 101, 0}, 100, 0, 0, false},
		// n == size: the file's first byte.
		{Offset{OffsetEOF, 100, 0}, 100, 0, 0, true},
		{Offset{OffsetEOF, 100, 3}, 100, 0, 3, true},
		// Windows past the end are cut at size.
		{Offset{OffsetEOF, 10, 50}, 100, 90, 100, true},
		{Offset{OffsetEOF, 0, 50}, 100, 100, 100, true},
		{Offset{OffsetAbs, 90, 20}, 100, 90, 100, true},
		{Offset{OffsetAbs, 100, 0}, 100, 100, 100, true},
		{Offset{OffsetAbs, 101, 50}, 100, 0, 0, false},
		{Offset{OffsetEOF, MaxOffset, MaxOffset}, 100, 0, 0, false},
		{Offset{OffsetAbs, MaxOffset, MaxOffset}, 100, 0, 0, false},
	}
	for _, tc := range tests {
		lo, hi, ok := tc.o.Range(tc.size)
		if lo != tc.lo || hi != tc.hi || ok != tc.ok {
			t.Errorf("%v.Range(%d) = %d, %d, %v", tc.o, tc.size, lo, hi, ok)
		}
	}
}

func TestMatchAt(t *testing.T) {
	p, err := ParsePattern("4142(4?|50)??(6364|6566)?9")
	if err != nil {
		t.Fatal(err)
	}
	part := &p.Parts[0]
	for in, want := range map[string]bool{
		"ABCxcdI": true, "ABPxefY": true, "ABQxcdI": false, "ABCxceI": false, "ABCxcdJ": false, "XBCxcdI": false,
	} {
		if got := part.MatchAt([]byte(in)); got != want {
			t.Errorf("%s: %v", in, got)
		}
	}
}

// FuzzParsePattern: the hex pattern parser never panics, and what it
// accepts prints back to a pattern that parses the same.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"41424344", "4142??43", "4142(43|44)45", "4142{1-3}4344", "4142*4344",
		"41424?45", "4142{200}4344", "(4344|4546)4142", "4142{-3}4344{5-}4546", "??4142??", "4142{2}43{1-2}4546"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		if len(p.Parts) == 0 || len(p.Gaps) != len(p.Parts)-1 {
			t.Fatalf("%q: %d parts, %d gaps", s, len(p.Parts), len(p.Gaps))
		}
		for _, part := range p.Parts {
			if part.Len() == 0 || len(part.Mask) != part.Len() {
				t.Fatalf("%q: bad part %+v", s, part)
			}
			fixed := false
			for _, m := range part.Mask {
				fixed = fixed || m == 0xff
			}
			if !fixed {
				t.Fatalf("%q: part without fixed byte", s)
			}
		}
		c := p.String()
		q, err := ParsePattern(c)
		if err != nil {
			t.Fatalf("%q: canonical %q does not parse: %v", s, c, err)
		}
		if q.String() != c {
			t.Fatalf("%q: canonical %q reparses as %q", s, c, q.String())
		}
	})
}
