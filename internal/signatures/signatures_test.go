package signatures

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

const (
	eicarMD5 = "44d88612fea8a8f36de82e1278abb02f"
	eicarSHA = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
)

// loadCase is a definitions directory and what loading it gives. The
// same table is checked against Vigil here and against clamscan in
// TestLoadSameAsClamAV.
type loadCase struct {
	name  string
	files map[string]string
	// err, when set, is part of the error Load must return (and ClamAV
	// must refuse the directory). Otherwise Load must give len Hashes and
	// Bodies (used), skipped lines and ClamAVCount clam (ClamAV's "Known
	// viruses").
	err           string
	used, skipped int
	clam          int
	ignoredFiles  int
	// extra is the number of signatures ClamAV loads from files Vigil
	// ignores (ClamAV's count is clam+extra).
	extra int
}

func hdb(lines ...string) map[string]string {
	return map[string]string{"t.hdb": strings.Join(lines, "\n") + "\n"}
}

func ndb(lines ...string) map[string]string {
	return map[string]string{"t.ndb": strings.Join(lines, "\n") + "\n"}
}

func ok(name string, files map[string]string, used, skipped, clam int) loadCase {
	return loadCase{name: name, files: files, used: used, skipped: skipped, clam: clam}
}

func refused(name string, files map[string]string, err string) loadCase {
	return loadCase{name: name, files: files, err: err}
}

var loadCases = []loadCase{
	// Hash signatures.
	ok("hdb", hdb(eicarMD5+":68:Eicar"), 1, 0, 1),
	ok("hdb upper hex", hdb(strings.ToUpper(eicarMD5)+":68:Eicar"), 1, 0, 1),
	ok("hsb sha256", map[string]string{"t.hsb": eicarSHA + ":68:S\n"}, 1, 0, 1),
	ok("hdb size with space", hdb(eicarMD5+": 68:Eicar"), 1, 0, 1),
	ok("hdb size with plus", hdb(eicarMD5+":+68:Eicar"), 1, 0, 1),
	ok("hdb size *", hdb(eicarMD5+":*:Eicar:73"), 1, 0, 1),
	refused("hdb size * without level", hdb(eicarMD5+":*:Eicar"), `size "*" needs a minimum functionality level`),
	refused("hdb size * level 72", hdb(eicarMD5+":*:Eicar:72"), `size "*" needs`),
	ok("hdb max level below", hdb(eicarMD5+":68:A:1:10", eicarMD5+":68:B"), 1, 1, 1),
	ok("hdb min level above", hdb(eicarMD5+":68:A:999", eicarMD5+":68:B"), 1, 1, 1),
	ok("hdb min level not a number", hdb(eicarMD5+":68:A:x"), 1, 0, 1),
	ok("hdb min level empty, max empty", hdb(eicarMD5+":68:A::"), 0, 1, 0),
	ok("hdb skipped line with a bad size", hdb(eicarMD5+":zz:A:999", eicarMD5+":68:B"), 1, 1, 1),
	refused("hdb size 2^32-1", hdb(eicarMD5+":4294967295:A"), "size"),
	refused("hdb size 2^32", hdb(eicarMD5+":4294967296:A"), "size"),
	ok("hdb size 2^32-2", hdb(eicarMD5+":4294967294:A"), 1, 0, 1),
	refused("hdb size 0", hdb(eicarMD5+":0:A"), "size"),
	refused("hdb size -1", hdb(eicarMD5+":-1:A"), "size"),
	refused("hdb size trailing space", hdb(eicarMD5+":68 :A"), "size"),
	refused("hdb 2 fields", hdb(eicarMD5+":68"), "want HASH:SIZE:NAME"),
	refused("hdb 6 fields", hdb(eicarMD5+":68:A:1:300:x"), "more than 5 fields"),
	refused("hdb short hash", hdb(eicarMD5[1:]+":68:A"), "has 31 hex digits"),
	refused("hdb bad hex", hdb("zz"+eicarMD5[2:]+":68:A"), "not hexadecimal"),
	refused("hdb empty name", hdb(eicarMD5+":68:"), "empty signature name"),
	refused("hdb empty line", hdb(eicarMD5+":68:A", ""), "t.hdb:2: empty line"),
	ok("hdb comments and CRLF", hdb("# c", eicarMD5+":68:A\r"), 1, 0, 1),
	ok("hdb name control char", hdb(eicarMD5+":68:a\x1bb"), 0, 1, 1),
	ok("hdb name (Clam)", hdb(eicarMD5+":68:Eicar (Clam)"), 1, 0, 1),
	refused("hdb empty file", map[string]string{"t.hdb": ""}, "empty file"),
	ok("hdb comment only", map[string]string{"t.hdb": "# nothing\n"}, 0, 0, 0),
	refused("hsb empty file", map[string]string{"t.hsb": ""}, "empty file"),
	ok("HDB upper case", map[string]string{"T.HDB": eicarMD5 + ":68:A\n"}, 1, 0, 1),
	// PE section hashes and allow lists.
	ok("mdb", map[string]string{"t.mdb": "4096:" + eicarMD5 + ":Sec\n"}, 0, 0, 1),
	ok("msb size *", map[string]string{"t.msb": "*:" + eicarSHA + ":Sec:73\n"}, 0, 0, 1),
	refused("mdb empty", map[string]string{"t.mdb": ""}, "empty file"),
	ok("fp", map[string]string{"t.fp": eicarMD5 + ":68:Clean\n", "t.hdb": eicarMD5 + ":68:A\n"}, 1, 0, 2),
	ok("sfp", map[string]string{"t.sfp": eicarSHA + ":68:Clean\n", "t.hdb": eicarMD5 + ":68:A\n"}, 1, 0, 2),
	refused("fp empty", map[string]string{"t.fp": "", "t.hdb": eicarMD5 + ":68:A\n"}, "empty file"),
	// Ignore lists.
	ok("ign", map[string]string{"t.ign": "A\n", "t.hdb": eicarMD5 + ":68:A\n" + eicarMD5 + ":68:B\n"}, 1, 1, 1),
	ok("ign2 not a suffix", map[string]string{"t.ign2": "Bar\n", "t.ndb": "Foo.Bar:0:*:414243\nBar:0:*:444546\n"}, 1, 1, 1),
	ok("ign2 md5 of the line", map[string]string{"t.ign2": "Aaa:" + md5hex("Aaa:0:*:414243") + "\nBbb:" + md5hex("nope") + "\n",
		"t.ndb": "Aaa:0:*:414243\nBbb:0:*:444546\n"}, 1, 1, 1),
	refused("ign2 md5 after a short name", map[string]string{"t.ign2": "A:" + md5hex("A:0:*:414243") + "\n",
		"t.ndb": "A:0:*:414243\n"}, "shorter than 3 bytes"),
	ok("ign old three fields", map[string]string{"t.ign": "x:1:A\n", "t.ndb": "A:0:*:414243\nB:0:*:444546\n"}, 1, 1, 1),
	ok("ign .UNOFFICIAL and .{...}", map[string]string{"t.ign": "Foo\nBarz\n", "t.ndb": "Foo.UNOFFICIAL:0:*:414243\nBarz.{x}:0:*:444546\nC:0:*:474849\n"}, 1, 2, 1),
	ok("ign empty", map[string]string{"t.ign": "", "t.hdb": eicarMD5 + ":68:A\n"}, 1, 0, 1),
	ok("ign short name", map[string]string{"t.ign2": "AB\n", "t.ndb": "AB:0:*:414243\nC:0:*:444546\n"}, 1, 1, 1),
	refused("ign2 bad md5", map[string]string{"t.ign2": "A:xyz\n", "t.hdb": eicarMD5 + ":68:A\n"}, "MD5"),
	refused("ign2 empty name", map[string]string{"t.ign2": ":" + md5hex("x") + "\n", "t.hdb": eicarMD5 + ":68:A\n"}, "no signature name"),
	// Body signatures: lines.
	ok("ndb", ndb("A:0:*:41424344"), 1, 0, 1),
	ok("NDB upper case", map[string]string{"T.NDB": "A:0:*:41424344\n"}, 1, 0, 1),
	refused("ndb empty file", map[string]string{"t.ndb": ""}, "empty file"),
	refused("ndb 3 fields", ndb("A:0:*"), "want NAME:TARGET:OFFSET:HEX"),
	refused("ndb 7 fields", ndb("A:0:*:414243:1:300:9"), "want NAME:TARGET"),
	refused("ndb min level not a number", ndb("A:0:*:414243:x"), "not a decimal number"),
	ok("ndb min level above", ndb("A:0:*:414243:300", "B:0:*:444546"), 1, 1, 1),
	ok("ndb max level below", ndb("A:0:*:414243:1:20", "B:0:*:444546"), 1, 1, 1),
	ok("ndb skipped line with bad hex", ndb("A:0:*:zz:300", "B:0:*:444546"), 1, 1, 1),
	ok("ndb min level empty", ndb("A:0:*:414243:"), 1, 0, 1),
	ok("ndb level 216", ndb("A:0:*:414243:216:216"), 1, 0, 1),
	ok("ndb target 1", ndb("A:1:*:41424344", "B:0:*:444546"), 2, 0, 2),
	ok("ndb target 13", ndb("A:13:*:41424344", "B:0:*:444546"), 1, 1, 2),
	ok("ndb target 6 EP", ndb("A:6:EP+10:41424344"), 1, 0, 1),
	ok("ndb target 9 SL", ndb("A:9:SL+4,8:41424344"), 1, 0, 1),
	ok("ndb target 1 S2+3", ndb("A:1:S2+3:41424344"), 1, 0, 1),
	ok("ndb target 1 SE1", ndb("A:1:SE1:41424344"), 1, 0, 1),
	ok("ndb target 1 EP-2,7", ndb("A:1:EP-2,7:41424344"), 1, 0, 1),
	ok("ndb target 6 EOF-9", ndb("A:6:EOF-9:41424344"), 1, 0, 1),
	ok("ndb target 1 VI", ndb("A:1:VI:41424344"), 0, 1, 1),
	ok("ndb target 1 EP+2^31", ndb("A:1:EP+2147483648:41424344"), 0, 1, 1),
	ok("ndb target 15", ndb("A:15:*:41424344", "B:0:*:444546"), 1, 1, 1),
	ok("ndb targets 3 4 7", ndb("A:3:*:41424344", "B:4:EOF-4:41424344", "C:7:10,5:41424344"), 3, 0, 3),
	ok("ndb targets 2 5 10 14", ndb("A:2:*:41424344", "B:5:*:41424344", "C:10:*:41424344", "D:14:*:41424344"), 4, 0, 4),
	ok("ndb targets 8 13", ndb("A:8:*:41424344", "B:13:*:41424344"), 0, 2, 2),
	refused("ndb EP for target 7", ndb("A:7:EP+0:41424344"), "needs target type"),
	ok("ndb target *", ndb("A:*:*:41424344"), 1, 0, 1),
	ok("ndb target empty", ndb("A::*:41424344"), 1, 0, 1),
	refused("ndb target x", ndb("A:x:*:41424344"), "target type"),
	refused("ndb target 1 bad hex", ndb("A:1:*:4142434"), "hex signature"),
	refused("ndb EP for target 0", ndb("A:0:EP+0:41424344"), "needs target type"),
	refused("ndb EOF+1", ndb("A:0:EOF+1:41424344"), "offset"),
	refused("ndb offset -1", ndb("A:0:-1:41424344"), "offset"),
	refused("ndb offset *,3", ndb("A:0:*,3:41424344"), "offset"),
	refused("ndb offset 10,x", ndb("A:0:10,x:41424344"), "shift"),
	ok("ndb offset empty", ndb("A:0::41424344"), 1, 0, 1),
	ok("ndb offset ,5", ndb("A:0:,5:41424344"), 1, 0, 1),
	ok("ndb offset EOF-", ndb("A:0:EOF-:41424344"), 1, 0, 1),
	ok("ndb offset macro", ndb("A:0:$3$:41424344"), 0, 1, 1),
	refused("ndb offset macro 32", ndb("A:0:$32$:41424344"), "macro"),
	refused("ndb empty name", ndb(":0:*:41424344"), "empty signature name"),
	refused("ndb empty line", ndb("A:0:*:41424344", ""), "t.ndb:2: empty line"),
	ok("ndb line of 8190 bytes", ndb("A:0:*:"+strings.Repeat("41", 4092)), 1, 0, 1),
	refused("ndb line of 8191 bytes", ndb("AB:0:*:"+strings.Repeat("41", 4092)), "longer than 8191 bytes"),
	refused("ndb line of 9000 bytes", ndb("A:0:*:"+strings.Repeat("41", 4497)), "longer than 8191 bytes"),
	ok("ndb last line of 8191 bytes", map[string]string{"t.ndb": "AB:0:*:" + strings.Repeat("41", 4092)}, 1, 0, 1),
	// Body signatures: hex.
	refused("hex 2 bytes", ndb("A:0:*:4142"), "at least 3 bytes"),
	refused("hex 41??", ndb("A:0:*:41??"), "no two consecutive fixed bytes"),
	refused("hex 41(42|43)44", ndb("A:0:*:41(42|43)44"), "no two consecutive fixed bytes"),
	refused("hex multi-byte alternative second", ndb("A:0:*:41(4243|4445)464748"), "prefilter"),
	refused("hex generic alternative second", ndb("A:0:*:41(4?|50)4546"), "prefilter"),
	refused("hex only ?? before an alternative", ndb("A:0:*:????(4142|4344)4546"), "prefilter"),
	ok("hex multi-byte alternative third", ndb("A:0:*:4142(4344|4546)4748"), 1, 0, 1),
	ok("hex multi-byte alternative first", ndb("A:0:*:(4243|4445)464748"), 1, 0, 1),
	ok("hex ?? then multi-byte alternative", ndb("A:0:*:41??(4243|4445)464748"), 1, 0, 1),
	ok("hex single alternative", ndb("A:0:*:4142(43)4546"), 1, 0, 1),
	ok("hex {0}", ndb("A:0:*:414243{0}444546"), 1, 0, 1),
	ok("hex {-0} {0-0} {-} {}", ndb("A:0:*:4142{-0}4344{0-0}4546{-}4748{}494a"), 1, 0, 1),
	ok("hex {5-0}", ndb("A:0:*:4142{5-0}4344"), 1, 0, 1),
	ok("hex {+5}", ndb("A:0:*:4142{+5}4344"), 1, 0, 1),
	ok("hex {3-1}", ndb("A:0:*:4142{3-1}4344"), 0, 1, 1),
	ok("hex {2^32}", ndb("A:0:*:4142{4294967296}4344"), 1, 0, 1),
	refused("hex {3000000000}", ndb("A:0:*:4142{3000000000}4344"), "gap"),
	refused("hex {x}", ndb("A:0:*:4142{x}4344"), "gap"),
	refused("hex {1-2-3}", ndb("A:0:*:4142{1-2-3}4344"), "gap"),
	refused("hex {1-2}43", ndb("A:0:*:4142{1-2}43"), "shorter than 2 bytes"),
	refused("hex *41424344", ndb("A:0:*:*41424344"), "empty"),
	refused("hex 41424344*", ndb("A:0:*:41424344*"), "empty"),
	refused("hex 4142**4344", ndb("A:0:*:4142**4344"), "empty"),
	ok("hex 4142*4344", ndb("A:0:*:4142*4344"), 1, 0, 1),
	refused("hex * in alternative", ndb("A:0:*:4142(43*|44)4546"), "inside an alternative"),
	refused("hex odd", ndb("A:0:*:4142434"), "odd number"),
	refused("hex g", ndb("A:0:*:41424g"), "unexpected character"),
	refused("hex )", ndb("A:0:*:41424344)"), "hex"),
	refused("hex (", ndb("A:0:*:4142(43|44"), "( without )"),
	ok("hex negation", ndb("A:0:*:41!(42|43)4445"), 0, 1, 1),
	ok("hex negated multi-byte", ndb("A:0:*:4142!(4344|4546)4748"), 0, 1, 1),
	refused("hex negated generic", ndb("A:0:*:4142!(4?|45)4748"), "negate"),
	ok("hex (B) left", ndb("A:0:*:(B)41424344"), 0, 1, 1),
	ok("hex (B) middle", ndb("A:0:*:4142(B)4344"), 0, 1, 1),
	ok("hex (L) right", ndb("A:0:*:41424344(L)"), 0, 1, 1),
	ok("hex [1-2] left", ndb("A:0:*:41[1-2]424344"), 0, 1, 1),
	ok("hex [1-2] right", ndb("A:0:*:41424344[1-2]45"), 0, 1, 1),
	refused("hex [1-40]", ndb("A:0:*:41[1-40]424344"), "32"),
	ok("hex nested alternatives", ndb("A:0:*:4142((43|44)|45)4647"), 0, 1, 1),
	ok("hex alternatives of different lengths", ndb("A:0:*:4142(41|4243)4445"), 0, 1, 1),
	ok("hex empty alternative", ndb("A:0:*:4142(41|)4344"), 0, 1, 1),
	ok("hex alternatives with nibbles", ndb("A:0:*:4142(4?|50)45"), 1, 0, 1),
	ok("hex leading {2}", ndb("A:0:*:{2}41424344"), 1, 0, 1),
	ok("hex ????41424344", ndb("A:0:*:????41424344"), 1, 0, 1),
	// Directories.
	refused("empty directory", map[string]string{}, "no database file"),
	refused("only unknown files", map[string]string{"notes.txt": "x"}, "no database file"),
	{name: "unknown file next to signatures", files: map[string]string{"notes.txt": "x", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1, ignoredFiles: 1},
	{name: "README next to signatures", files: map[string]string{"README": "x", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1},
	{name: "ldb loaded", files: map[string]string{"t.ldb": "L;Engine:51-255,Target:0;0;414243\n", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 2},
	{name: "ldu ignored", files: map[string]string{"t.ldu": "L;Engine:51-255,Target:0;0;414243\n", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1, ignoredFiles: 1},
	{name: "ldb ignore lists", files: map[string]string{
		"t.ldb":  "L.A;Target:0;0;414243\nL.B;Target:0;0;444546\nL.C;Target:0;0;474849\nL.D (Clam);Target:0;0;4a4b4c\n",
		"t.ign2": "L.A\nL.D\nL.B:" + md5hex("L.B;Target:0;0;444546") + "\nL.C:" + md5hex("L.C;Target:0;0;000000") + "\n",
	}, clam: 2, skipped: 2},
	// ClamAV keeps the MD5 pointer of a NAME:MD5 line for the next lines
	// of the file: a later line without an MD5 is refused, unless the
	// bytes at that position happen to be 32 hex digits.
	refused("ign2 name after NAME:MD5", map[string]string{"t.ign2": "L.C:" + md5hex("x") + "\nL.D\n", "t.ndb": "A:0:*:414243\n"}, "t.ign2:2: no MD5"),
	{name: "ign2 name after NAME:MD5 holding 32 hex digits", files: map[string]string{
		"t.ign2": "L.C:" + md5hex("x") + "\nABCD" + md5hex("y") + "\n", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1},
	{name: "ldb comments only", files: map[string]string{"t.ldb": "# nothing\n", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1},
	{name: "ldb several lines, one skipped", files: map[string]string{"t.ldb": "L.A;Target:0;0;414243\nL.B;Engine:300-400,Target:0;0;41\nL.C;Target:0;0&1;414243;0/x/\n"}, clam: 2, skipped: 1},
	refused("ldb malformed line 3", map[string]string{"t.ldb": "L.A;Target:0;0;414243\n# c\nL.C;Target:0;0&1;414243\n"}, "t.ldb:3:"),
	refused("ldb malformed", map[string]string{"t.ldb": "L;Engine:51-255,Target:0;0&1;414243\n", "t.ndb": "A:0:*:414243\n"}, "t.ldb:1:"),
	refused("ldb empty", map[string]string{"t.ldb": "", "t.ndb": "A:0:*:414243\n"}, "empty file"),
	refused("cdb empty", map[string]string{"t.cdb": "", "t.ndb": "A:0:*:414243\n"}, "empty file"),
	{name: "cfg pdb wdb info cat ioc empty", files: map[string]string{"t.cfg": "", "t.pdb": "", "t.wdb": "", "t.info": "", "t.cat": "", "t.ioc": "", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1, ignoredFiles: 6},
	{name: "PUA files ignored", files: map[string]string{"t.hdu": eicarMD5 + ":68:PUA\n", "t.ndu": "P:0:*:414243\n", "t.ndb": "A:0:*:414243\n"}, used: 1, clam: 1, ignoredFiles: 2},
}

func md5hex(s string) string { return md5sum([]byte(s)) }

func writeCase(t *testing.T, c loadCase) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range c.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadCases(t *testing.T) {
	t.Parallel()
	for _, c := range loadCases {
		dir := writeCase(t, c)
		s, err := Load(dir)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if s.Len() != c.used || len(s.Skipped) != c.skipped || s.ClamAVCount() != c.clam || len(s.IgnoredFiles) != c.ignoredFiles {
			t.Errorf("%s: used %d skipped %d clam %d ignored files %d, want %d %d %d %d; skipped %+v",
				c.name, s.Len(), len(s.Skipped), s.ClamAVCount(), len(s.IgnoredFiles), c.used, c.skipped, c.clam, c.ignoredFiles, s.Skipped)
		}
	}
}

func TestErrorNamesFileAndLine(t *testing.T) {
	t.Parallel()
	in := "# a comment\nA:0:*:41424344\r\nB:0:*:41424344\nC:0:*:4142\n"
	_, err := Parse("daily.ndb", strings.NewReader(in))
	var se *Error
	if !errors.As(err, &se) || se.File != "daily.ndb" || se.Line != 4 || !strings.HasPrefix(err.Error(), "daily.ndb:4: hex signature:") {
		t.Errorf("error %v", err)
	}
	s, err := Parse("daily.ndb", strings.NewReader(in[:strings.Index(in, "C:")]))
	if err != nil || len(s.Bodies) != 2 || s.Bodies[1].Line != 3 || s.Len() != 2 {
		t.Errorf("Parse = %+v, %v", s, err)
	}
	_, err = Parse("daily.ldb", strings.NewReader("# c\nA;Target:0;0;414243\nx\n"))
	if err == nil || !strings.Contains(err.Error(), "daily.ldb:3: want NAME;TARGETDESCRIPTION;LOGIC;SUBSIG0") {
		t.Errorf("error %v", err)
	}
	_, err = Parse("daily.cdb", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "daily.cdb: not a kind of signature file Vigil parses") {
		t.Errorf("error %v", err)
	}
}

func TestSkippedAndDebug(t *testing.T) {
	t.Parallel()
	dir := writeCase(t, loadCase{files: map[string]string{
		"a.ndb": "A:13:*:41424344\nB:0:*:414243:999\nC:0:*:444546\n", "t.cdb": "x\n", "notes.txt": "",
		"t.ldb":  "L.A;Target:0;0&1;414243;0/abc/\nL.B;Target:0;0;414243\n",
		"t.ign2": "C\n",
	}})
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Skipped) != 3 || s.Skipped[0].Line != 1 || !s.Skipped[0].ClamAVLoads || s.Skipped[1].ClamAVLoads ||
		s.Skipped[2].Name != "C" || !strings.Contains(s.Skipped[2].Reason, "t.ign2:1") {
		t.Errorf("skipped %+v", s.Skipped)
	}
	var b strings.Builder
	if err := s.WriteDebug(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"skipped: a.ndb:1: A: target type 13 (internal): Vigil matches target types 0 to 14 but 8 and 13 (ClamAV loads it)",
		"skipped: a.ndb:2: B: minimum functionality level 999 is above 216 (ClamAV skips it too)",
		"ignored files: .cdb: 1", "ignored files: not a ClamAV database: 1", "ignored file: t.cdb:",
		"signatures: 2 logical signatures loaded as ClamAV loads them: 1 evaluated, 1 not (never reported)",
		"signatures: logical subsignatures: 2 content, 0 byte compare, 1 PCRE, 0 macro, 0 fuzzy image hash",
		"not matched: t.ldb:1: L.A: subsignature 1: PCRE subsignatures are not supported",
		"1 ignore-list entries kept",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("debug output lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "L.B") {
		t.Errorf("debug output lists L.B, which the engine evaluates:\n%s", b.String())
	}
}

func TestLoadPUA(t *testing.T) {
	t.Parallel()
	dir := writeCase(t, loadCase{files: map[string]string{"t.hdu": eicarMD5 + ":68:PUA.A\n", "t.ndu": "PUA.B:0:*:414243\n",
		"t.ldu": "PUA.C;Engine:51-255,Target:0;0&1;414243;444546\n"}})
	s, err := LoadWith(dir, LoadOptions{PUA: true})
	if err != nil || len(s.Hashes) != 1 || len(s.Bodies) != 1 || len(s.Logical) != 1 || s.Logical[0].Name != "PUA.C" ||
		len(s.IgnoredFiles) != 0 || s.ClamAVCount() != 3 {
		t.Fatalf("LoadWith PUA = %+v, %v", s, err)
	}
	s, err = Load(dir)
	if err != nil || s.Len() != 0 || len(s.Logical) != 0 || len(s.IgnoredFiles) != 3 || !strings.Contains(s.IgnoredFiles[0].Reason, "--detect-pua") {
		t.Fatalf("Load = %+v, %v", s, err)
	}
}

func TestZeroGapIsAnyDistance(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"4142{0}4344", "4142{-0}4344", "4142{0-0}4344", "4142{-}4344", "4142{}4344"} {
		p, err := ParsePattern(h)
		if err != nil || len(p.Gaps) != 1 || p.Gaps[0] != (Gap{0, Unbounded}) || p.String() != "4142*4344" {
			t.Errorf("%s: %v, %v", h, p, err)
		}
	}
	p, err := ParsePattern("4142{5-0}4344")
	if err != nil || p.Gaps[0] != (Gap{5, Unbounded}) {
		t.Errorf("{5-0}: %v %v", p, err)
	}
}

// FuzzParse: each kind's parser never panics, and what it loads is whole.
func FuzzParse(f *testing.F) {
	kinds := []string{"hdb", "hsb", "mdb", "fp", "ndb", "ign2"}
	for i, s := range []string{
		eicarMD5 + ":68:A\n" + eicarMD5 + ": +68:B:x:300\n", eicarSHA + ":*:S:73\n", "4096:" + eicarMD5 + ":Sec\n",
		eicarMD5 + ":68:Clean\n", "A:0:*:4142{0}4344\nB:1:EP+3:41(42|43)4445\nC:0:EOF-3,2:4142!(43|44)[1-2]45:10:300\n",
		"A:" + eicarMD5 + "\nB\n",
	} {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, k uint8, s string) {
		kind := kinds[int(k)%len(kinds)]
		set, err := Parse("x."+kind, strings.NewReader(s))
		// Streamed to a sink (LoadTo's way), the same signatures, skipped
		// lines and error.
		var c collector
		streamed := &Set{sink: &sinker{s: &c}}
		serr := parseInto(streamed, "x."+kind, strings.NewReader(s), nil)
		if fmt.Sprint(err) != fmt.Sprint(serr) {
			t.Fatalf("Parse: %v; streamed: %v", err, serr)
		}
		if err == nil && (len(c.hashes) != len(set.Hashes) || len(c.bodies) != len(set.Bodies) ||
			(len(c.hashes) > 0 && !reflect.DeepEqual(c.hashes, set.Hashes)) || (len(c.bodies) > 0 && !reflect.DeepEqual(c.bodies, set.Bodies)) ||
			!reflect.DeepEqual(streamed.Skipped, set.Skipped) || streamed.Len() != set.Len()) {
			t.Fatalf("streamed %+v %+v %+v; Parse %+v", c.hashes, c.bodies, streamed.Skipped, set)
		}
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.File != "x."+kind {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		for _, h := range append(append(set.Hashes, set.SectionHashes...), set.Allowed...) {
			if h.Name == "" || len(h.Hash) < 16 || (h.Size <= 0 && h.Size != AnySize) {
				t.Fatalf("bad hash signature %+v", h)
			}
		}
		for _, b := range set.Bodies {
			if b.Name == "" || b.Pattern == nil || len(b.Pattern.Parts) == 0 {
				t.Fatalf("bad body signature %+v", b)
			}
		}
		for _, sk := range set.Skipped {
			if sk.Line <= 0 || sk.Reason == "" {
				t.Fatalf("bad skipped %+v", sk)
			}
		}
	})
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
		{Offset{Kind: OffsetAbs, N: 10, Shift: 0}, 100, 10, 10, true},
		{Offset{Kind: OffsetAbs, N: 10, Shift: 5}, 100, 10, 15, true},
		{Offset{Kind: OffsetAbs, N: 200, Shift: 0}, 100, 0, 0, false},
		{Offset{Kind: OffsetEOF, N: 10, Shift: 0}, 100, 90, 90, true},
		{Offset{Kind: OffsetEOF, N: 10, Shift: 4}, 100, 90, 94, true},
		{Offset{Kind: OffsetEOF, N: 200, Shift: 0}, 100, 0, 0, false},
		// n > size: no start, even where the shift reaches into the file
		// (ClamAV never matches; the window is not cut to start at 0).
		{Offset{Kind: OffsetEOF, N: 200, Shift: 150}, 100, 0, 0, false},
		{Offset{Kind: OffsetEOF, N: 101, Shift: 5}, 100, 0, 0, false},
		{Offset{Kind: OffsetEOF, N: 101, Shift: 0}, 100, 0, 0, false},
		// n == size: the file's first byte.
		{Offset{Kind: OffsetEOF, N: 100, Shift: 0}, 100, 0, 0, true},
		{Offset{Kind: OffsetEOF, N: 100, Shift: 3}, 100, 0, 3, true},
		// Windows past the end are cut at size.
		{Offset{Kind: OffsetEOF, N: 10, Shift: 50}, 100, 90, 100, true},
		{Offset{Kind: OffsetEOF, N: 0, Shift: 50}, 100, 100, 100, true},
		{Offset{Kind: OffsetAbs, N: 90, Shift: 20}, 100, 90, 100, true},
		{Offset{Kind: OffsetAbs, N: 100, Shift: 0}, 100, 100, 100, true},
		{Offset{Kind: OffsetAbs, N: 101, Shift: 50}, 100, 0, 0, false},
		{Offset{Kind: OffsetEOF, N: MaxOffset, Shift: MaxOffset}, 100, 0, 0, false},
		{Offset{Kind: OffsetAbs, N: MaxOffset, Shift: MaxOffset}, 100, 0, 0, false},
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

// BenchmarkParseHDB parses 100,000 MD5 lines, the shape of ClamAV's
// main.hdb.
func BenchmarkParseHDB(b *testing.B) {
	var sb strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&sb, "%032x:%d:Win.Trojan.Agent-%d-0\n", i*7919, 1000+i, i)
	}
	data := sb.String()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		s, err := Parse("main.hdb", strings.NewReader(data))
		if err != nil || len(s.Hashes) != 100000 {
			b.Fatal(err)
		}
	}
}

// TestLoadNonRegular: a symbolic link to a signature file loads (ClamAV
// follows it); a subdirectory or FIFO named like a database is refused
// (clamscan 1.4.6 hangs on them, so this is not compared with it).
func TestLoadNonRegular(t *testing.T) {
	t.Parallel()
	dir := writeCase(t, loadCase{files: map[string]string{"a.ndb": "A:0:*:414243\n"}})
	if err := os.Symlink("a.ndb", filepath.Join(dir, "b.ndb")); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil || s.Len() != 2 {
		t.Fatalf("Load with a link = %+v, %v", s, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.hdb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "sub.hdb is not a regular file") {
		t.Errorf("subdirectory: %v", err)
	}
	os.Remove(filepath.Join(dir, "sub.hdb"))
	if err := syscall.Mkfifo(filepath.Join(dir, "f.ndb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "f.ndb is not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "absent")); err == nil {
		t.Error("absent directory loaded")
	}
}

// TestBodyTargetKept checks that a body signature keeps its target type.
func TestBodyTargetKept(t *testing.T) {
	t.Parallel()
	set, err := Parse("t.ndb", strings.NewReader("A:0:*:41424344\nB:3:*:41424344\nC:4:*:41424344\nD:7:EOF-8:41424344\nE:13:*:41424344\nF:1:EP+3:41424344\nG:6:SE2,5:41424344\nH:9:S1+4:41424344\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range set.Bodies {
		got = append(got, fmt.Sprintf("%s:%d", b.Name, b.Target))
	}
	if want := "A:0 B:3 C:4 D:7 F:1 G:6 H:9"; strings.Join(got, " ") != want {
		t.Errorf("bodies %q, want %q", strings.Join(got, " "), want)
	}
	if len(set.Skipped) != 1 || set.Skipped[0].Name != "E" || !set.Skipped[0].ClamAVLoads {
		t.Errorf("skipped %+v, want E (target 13), which ClamAV loads", set.Skipped)
	}
}

// TestNDBExecutableOffsets checks the offsets of .ndb signatures of the
// executable targets as they are loaded: the form, n, the section and the
// shift, and that the forms ClamAV refuses for other targets stay refused.
func TestNDBExecutableOffsets(t *testing.T) {
	t.Parallel()
	set, err := Parse("t.ndb", strings.NewReader(
		"A:1:EP+3:41424344\nB:1:EP-4,6:41424344\nC:6:S2+5:41424344\nD:9:SL+7,2:41424344\n"+
			"E:1:SE3:41424344\nF:6:SE0,9:41424344\nG:9:EOF-12:41424344\nH:1:100,4:41424344\nI:9:*:41424344\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Offset{
		"A": {Kind: OffsetEPPlus, N: 3},
		"B": {Kind: OffsetEPMinus, N: 4, Shift: 6},
		"C": {Kind: OffsetSectionPlus, N: 5, Section: 2},
		"D": {Kind: OffsetLastSection, N: 7, Shift: 2},
		"E": {Kind: OffsetSection, Section: 3},
		"F": {Kind: OffsetSection, Shift: 9},
		"G": {Kind: OffsetEOF, N: 12},
		"H": {Kind: OffsetAbs, N: 100, Shift: 4},
		"I": {Kind: OffsetAny},
	}
	if len(set.Bodies) != len(want) || len(set.Skipped) != 0 {
		t.Fatalf("%d bodies, skipped %+v; want %d and none", len(set.Bodies), set.Skipped, len(want))
	}
	for _, b := range set.Bodies {
		if b.Offset != want[b.Name] {
			t.Errorf("%s: offset %+v (%v), want %+v", b.Name, b.Offset, b.Offset, want[b.Name])
		}
	}
	for _, l := range []string{"X:0:EP+3:41424344", "X:3:SE1:41424344", "X:7:SL+0:41424344", "X:4:S0+1:41424344"} {
		if _, err := Parse("t.ndb", strings.NewReader(l+"\n")); err == nil || !strings.Contains(err.Error(), "needs target type 1") {
			t.Errorf("%s: %v, want the error ClamAV gives (an executable offset for another target)", l, err)
		}
	}
}
