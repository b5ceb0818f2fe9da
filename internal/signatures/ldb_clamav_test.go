package signatures

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestLDBSameAsClamAV loads each line of ldbCases, one directory each,
// with clamscan (ClamAV 1.4.6) and with Load: both refuse it, or both
// load it and ClamAV's "Known viruses" equals Set.ClamAVCount (1 for a
// loaded logical signature, 0 for a skipped one). Lines whose case
// records a known disagreement must disagree as recorded.
func TestLDBSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := append(slices.Clone(ldbCases),
		ldbCase{line: "# comments only", want: 'L'},
	)
	dirs := make([]string, len(cases))
	for i, c := range cases {
		dirs[i] = writeCase(t, loadCase{files: map[string]string{"t.ldb": c.line + "\n"}})
	}
	results := clamLoadAll(t, clamscan, sample, dirs)
	for i, c := range cases {
		r := results[i]
		name := truncate(c.line)
		s, err := Load(dirs[i])
		agree := true
		switch {
		case err != nil && r.loaded:
			agree = false
			if c.clamDiffers == "" {
				t.Errorf("%s: Vigil refuses (%v), ClamAV loads %d signatures", name, err, r.known)
			}
		case err == nil && !r.loaded:
			agree = false
			if c.clamDiffers == "" {
				t.Errorf("%s: Vigil loads (%d for ClamAV), ClamAV refuses:\n%s", name, s.ClamAVCount(), r.out)
			}
		case err == nil && s.ClamAVCount() != r.known:
			agree = false
			if c.clamDiffers == "" {
				t.Errorf("%s: Vigil counts %d, ClamAV %d", name, s.ClamAVCount(), r.known)
			}
		}
		if agree && c.clamDiffers != "" {
			t.Errorf("%s: recorded as a disagreement (%s), but ClamAV agrees", name, c.clamDiffers)
		}
	}
}

// randomLDBLine builds a random .ldb line from pieces of the syntax,
// mostly valid, with one mistake or unusual form at a time.
func randomLDBLine(rng *rand.Rand, i int) string {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	odd := func() bool { return rng.IntN(6) == 0 }
	tdb := pick("Target:0", "Engine:51-255,Target:0", "Engine:51-255,Target:1", "Engine:51-255,Target:0,FileSize:1-100",
		"Engine:51-255,Target:6,EntryPoint:0-9", "Engine:51-255,Target:0,Container:CL_TYPE_ZIP", "Engine:81-255,Target:7",
		"Engine:51-255,Target:1,IconGroup1:x", "Engine:51-255,Target:0,Intermediates:CL_TYPE_ZIP>CL_TYPE_GZ")
	if odd() {
		tdb = pick("Engine:300-400,Target:0", "Target:0,FileSize:1-100", "Engine:51-255,Target:0,EntryPoint:0-9", "Target:16",
			"Engine:51-255,Target:0,Container:CL_TYPE_FOO", "Target:x", "", "Engine:51-255,Target:0,IconGroup1:x",
			"Engine:51-255,Target:0,Bar:1", "Target:0,Engine:51-255", "Engine:51,Target:0", "Engine:51-255,Target:0,FileSize:1")
	}
	n := 1 + rng.IntN(4)
	var expr func(d int) string
	expr = func(d int) string {
		if d > 2 || rng.IntN(3) == 0 {
			s := fmt.Sprint(rng.IntN(n))
			if rng.IntN(5) == 0 {
				s += pick("=", ">", "<") + fmt.Sprint(rng.IntN(3)) + pick("", "", ",2")
			}
			if rng.IntN(30) == 0 {
				s += pick(">", ")", "x", "(")
			}
			return s
		}
		op := pick("&", "|")
		if rng.IntN(30) == 0 {
			op = pick("^", "", "&|")
		}
		s := expr(d+1) + op + expr(d+1)
		if rng.IntN(2) == 0 {
			s = "(" + s + ")"
			if rng.IntN(3) == 0 {
				s += pick("=", ">", "<") + fmt.Sprint(rng.IntN(4)) + pick("", "", ",2", ",")
			}
		}
		return s
	}
	e := expr(0)
	if _, max, err := ParseExpr(e); err == nil && max+1 != n && rng.IntN(8) != 0 {
		n = max + 1 // usually, as many subsignatures as the expression needs
	}
	sub := func(j int) string {
		switch rng.IntN(10) {
		case 0:
			opt := pick("hb", "db", "ib", "a", "hl", "he", "il")
			if odd() {
				opt = pick("dl", "hd", "x", "", "ie")
			}
			return fmt.Sprintf("%d(%s#%s%s#%s)", rng.IntN(j+1), pick(">>2", "<<1", "0", "", ">>0x4", ">>x"),
				opt, pick("2", "4", "1", "8", "3", "0", "19"), pick("=1", ">1,<5", "=", "!1", ">1,<2,=3", "=0x10", "<-3"))
		case 1:
			trig := fmt.Sprint(rng.IntN(j + 1))
			if odd() {
				trig = pick(fmt.Sprint(j), fmt.Sprint(j+1), "", "x")
			}
			return fmt.Sprintf("%s%s/%s/%s", pick("", "", "10:", "EP+1:", "EOF-4:"), trig, pick("abc", "a:b", "a;b", "a\\/b", "[a-z]+"), pick("", "i", "gr", "smx", "z"))
		case 2:
			return pick("${1-2}0$", "${1-2}40$", "$1$", "fuzzy_img#0123456789abcdef", "fuzzy_img#01#1", "fuzzy_img#0123456789abcdef#0")
		}
		hex := pick("414243", "4142", "41??43", "41(42|43)44", "4142(43|44)", "4142*4344", "4142{2-3}4344", "4142{3}4344",
			"41[1-2]4243", "4142434445(B)", "(L)41424344", "61626364", "4142!(43|44)45", "41424344{-5}45464748", "4?4142")
		if odd() {
			hex = pick("41", "41(4243|4445)464748", "414243(", "41g2", "414", "", "41(42|43)4445", "??4142")
		}
		off := pick("", "", "", "", "10:", "EOF-5:", "*:", "0,20:", "EOF-20,10:")
		if odd() {
			off = pick("EP+0:", "x:", "SL+2:", "S1+2:", "EOF+1:", "VI:", "$3$:")
		}
		opt := pick("", "", "", "", "::i", "::w", "::wa", "::f", "::a", "::iw", "::fw")
		if odd() {
			opt = pick("::x", ":i", "::", ":::i")
		}
		return off + hex + opt
	}
	subs := make([]string, n)
	for j := range subs {
		subs[j] = sub(j)
	}
	name := fmt.Sprint("R", i)
	if rng.IntN(40) == 0 {
		name = pick("", " (Clam)", "R (Clam)")
	}
	return fmt.Sprintf("%s;%s;%s;%s", name, tdb, e, strings.Join(subs, ";"))
}

// TestRandomLDBSameAsClamAV loads random .ldb lines, one directory each,
// with clamscan and with Load: both refuse, or both load and count the
// same.
func TestRandomLDBSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	n := 1500
	if testing.Short() {
		n = 300
	}
	rng := rand.New(rand.NewPCG(41, 42))
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := make([]string, n)
	dirs := make([]string, n)
	for i := range lines {
		lines[i] = randomLDBLine(rng, i)
		dirs[i] = writeCase(t, loadCase{files: map[string]string{"r.ldb": lines[i] + "\n"}})
	}
	sameLoadsAsClamAV(t, clamscan, sample, lines, dirs, func(s *Set) bool { return len(s.Logical) == 1 || len(s.Skipped) == 1 && s.Skipped[0].ClamAVLoads })
}

// ldbChunks are the strings planted in the files of TestLDBEvalSameAsClamAV
// and the subsignatures looking for them (with modifiers).
var ldbSubsigPool = []string{"414243", "444546", "474849", "414141", "4a4b4c::i", "4d4e4f::w", "505152::wa", "535455::iwa", "5a5a",
	"EOF-40,40:414243", "0,60:444546", "30:474849", "EOF-25:4a4b4c::i", "414243::f", "4a4b4c::fi", "10,100:414141",
	"4d4e4f::fw", "505152::fwa", "535455::fiw"}
var ldbChunks = []string{"ABC", "DEF", "GHI", "AAAA", "jKl", "JKL", "M\x00N\x00O\x00", "PQR", "P\x00Q\x00R\x00", "s\x00T\x00u\x00", "StU", "ZZZ", "ABCABC",
	"q\x00M\x00N\x00O\x00", "M\x00N\x00O\x00z\x00", "1\x00P\x00Q\x00R\x00", "S\x00T\x00U\x00", "xPQR", ".\x00S\x00t\x00U\x00-\x00"}

// TestLDBEvalSameAsClamAV checks the evaluator end to end: random
// logical signatures over plain subsignatures (target 0, offset *, with
// and without modifiers) and random binary files holding their strings
// a random number of times. For each file the test counts the matches of
// each subsignature with its parsed Patterns (every start where a
// pattern matches, as ClamAV counts them) and evaluates each signature
// with Expr.Eval, and checks its target description (FileSize, and a
// Container or Intermediates a file scanned on its own has or has not)
// with TargetDesc.Allows; the (file, signature) pairs that are true must
// be the ones `clamscan --allmatch` reports.
func TestLDBEvalSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	rng := rand.New(rand.NewPCG(51, 52))
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	nsigs, nfiles := 300, 150
	if testing.Short() {
		nsigs, nfiles = 100, 60
	}
	var expr func(n, d int) string
	expr = func(n, d int) string {
		if d > 2 || rng.IntN(3) == 0 {
			s := fmt.Sprint(rng.IntN(n))
			if rng.IntN(3) == 0 {
				s += pick("=", ">", "<") + fmt.Sprint(rng.IntN(4))
			}
			return s
		}
		s := expr(n, d+1) + pick("&", "|") + expr(n, d+1)
		if d > 0 || rng.IntN(2) == 0 {
			s = "(" + s + ")"
			if rng.IntN(2) == 0 {
				s += pick("=", ">", "<") + fmt.Sprint(rng.IntN(5)) + pick("", "", ",2", ",3")
			}
		}
		return s
	}
	var lines []string
	for i := 0; len(lines) < nsigs; i++ {
		n := 1 + rng.IntN(4)
		e := expr(n, 0)
		ex, max, err := ParseExpr(e)
		if err != nil {
			t.Fatalf("generated expression %q: %v", e, err)
		}
		_ = ex
		subs := make([]string, max+1)
		for j := range subs {
			subs[j] = ldbSubsigPool[rng.IntN(len(ldbSubsigPool))]
		}
		tdb := "Target:0"
		switch rng.IntN(6) {
		case 0:
			lo := 20 + rng.IntN(150)
			tdb = fmt.Sprintf("Engine:51-255,Target:0,FileSize:%d-%d", lo, lo+rng.IntN(100))
		case 1:
			tdb = pick("Engine:51-255,Container:CL_TYPE_ANY,Target:0", "Engine:51-255,Target:0,Container:CL_TYPE_ZIP",
				"Engine:51-255,Target:0,Intermediates:CL_TYPE_ANY", "Engine:51-255,Target:0,FileSize:0-4294967295")
		}
		lines = append(lines, fmt.Sprintf("L%d;%s;%s;%s", i, tdb, e, strings.Join(subs, ";")))
	}
	sigdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sigdir, "t.ldb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(sigdir)
	if err != nil || len(set.Logical) != nsigs {
		t.Fatalf("Load: %v (%d logical)", err, len(set.Logical))
	}
	corpus := t.TempDir()
	want := map[string]bool{}
	for f := 0; f < nfiles; f++ {
		var b bytes.Buffer
		// Binary bytes first, so that ClamAV types the file as binary
		// data and matches it raw only (no normalized text copy).
		b.Write([]byte{0x00, 0x01, 0x80, 0x9c, 0x00, 0x02, 0x9d, 0x81})
		for k := rng.IntN(12); k > 0; k-- {
			for r := rng.IntN(10); r > 0; r-- {
				b.WriteByte([]byte{0x00, 0x01, 0x7f, 0x80, 0x90, 0xc3, 0xf0, 0x10}[rng.IntN(8)])
			}
			b.WriteString(ldbChunks[rng.IntN(len(ldbChunks))])
		}
		b.Write([]byte{0x00, 0x01, 0x80})
		name := fmt.Sprintf("f%03d", f)
		if err := os.WriteFile(filepath.Join(corpus, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		data := b.Bytes()
		for _, l := range set.Logical {
			counts := make([]uint32, len(l.Subsigs))
			for j, sub := range l.Subsigs {
				counts[j] = countMatches(t, sub, data)
			}
			if l.Logic.Eval(counts) && l.Target.Allows(FileFacts{Size: int64(len(data))}) {
				want[name+" "+l.Name] = true
			}
		}
	}
	got := clamscanFound(t, clamscan, sigdir, corpus)
	bad := 0
	for k := range want {
		if !got[k] {
			bad++
			t.Errorf("Eval says %s, clamscan does not report it", k)
		}
	}
	for k := range got {
		if !want[k] {
			bad++
			t.Errorf("clamscan reports %s, Eval does not", k)
		}
		if bad > 30 {
			t.FailNow()
		}
	}
	t.Logf("%d signatures, %d files: %d detections, all agreeing", nsigs, nfiles, len(want))
	if len(want) < nfiles/4 || len(want) == nfiles*nsigs {
		t.Errorf("a weak test: %d detections", len(want))
	}
}

// countMatches counts the starts in data where one of sub's patterns (a
// single part each, in this test) matches, inside the subsignature's
// offset window. For "::f" (word-boundary anchors, which Pattern cannot
// express) the test applies ClamAV's rule itself (matcher-ac.c,
// AC_WORD_MARKER_*): for the plain form, no ASCII letter or digit just
// before or just after the match; for the wide form, no letter or digit
// followed by 00 just before it (a match at byte 0 or 1 always passes)
// nor just after it (the last byte of the file: not a letter or digit).
func countMatches(t *testing.T, sub Subsig, data []byte) uint32 {
	t.Helper()
	type form struct {
		p    *Pattern
		wide bool
	}
	var forms []form
	if sub.Modifiers.FullWord {
		hexes := map[bool]string{false: sub.Hex}
		if sub.Modifiers.Wide {
			w, err := wideHex(sub.Hex)
			if err != nil {
				t.Fatal(err)
			}
			hexes[true] = w
		}
		for _, wide := range []bool{true, false} {
			h, ok := hexes[wide]
			if !ok || (!wide && sub.Modifiers.Wide && !sub.Modifiers.ASCII) {
				continue
			}
			p, err := ParsePattern(h)
			if err != nil {
				t.Fatal(err)
			}
			if sub.Modifiers.NoCase {
				p.foldCase()
			}
			forms = append(forms, form{p, wide})
		}
	} else {
		if sub.Unsupported != "" || len(sub.Patterns) == 0 {
			t.Fatalf("subsignature %q: %s", sub.Raw, sub.Unsupported)
		}
		for _, p := range sub.Patterns {
			forms = append(forms, form{p, false})
		}
	}
	alnum := func(i int) bool {
		if i < 0 || i >= len(data) {
			return false
		}
		c := data[i]
		return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z'
	}
	wideChar := func(i int) bool { return alnum(i) && i+1 < len(data) && data[i+1] == 0 }
	lo, hi, ok := sub.Offset.Range(int64(len(data)))
	if !ok {
		return 0
	}
	var n uint32
	for i := range data {
		if int64(i) < lo || int64(i) > hi {
			continue
		}
		for _, f := range forms {
			p := f.p
			if len(p.Parts) != 1 {
				t.Fatalf("subsignature %q has %d parts", sub.Raw, len(p.Parts))
			}
			l := p.Parts[0].Len()
			if i+l > len(data) || !p.Parts[0].MatchAt(data[i:]) {
				continue
			}
			if sub.Modifiers.FullWord {
				e := i + l
				if f.wide {
					if i >= 2 && wideChar(i-2) {
						continue
					}
					if e < len(data) && (e+1 < len(data) && wideChar(e) || e+1 == len(data) && alnum(e)) {
						continue
					}
				} else if alnum(i-1) || alnum(e) {
					continue
				}
			}
			n++
			break
		}
	}
	return n
}

// TestRandomPCRESameAsClamAV: Vigil does not compile PCREs, but the
// errors it finds in a PCRE subsignature's regex (unbalanced parentheses,
// an unterminated class, a final backslash) must be errors for ClamAV's
// PCRE2 too. Random regexes are loaded in both; a regex Vigil refuses
// must be refused by ClamAV; the regexes only ClamAV refuses are the
// documented remaining difference, counted.
func TestRandomPCRESameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	n := 600
	if testing.Short() {
		n = 100
	}
	rng := rand.New(rand.NewPCG(61, 62))
	pieces := []string{"a", "b", "(", ")", "(", ")", "[", "]", `\`, "^", "?", ":", "#", "c", "Q", "E", "x", "-", "|", "+", ".",
		"(?#", "[:alpha:]", "[:", ":]", `\Q`, `\E`, "(?x)", "(?i)", `\c`, `\]`, `\(`, "[^]", "(?:", "ab", "ab", "ab"}
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := make([]string, n)
	dirs := make([]string, n)
	for i := range lines {
		var re strings.Builder
		re.WriteString("ab")
		for k := 1 + rng.IntN(6); k > 0; k-- {
			re.WriteString(pieces[rng.IntN(len(pieces))])
		}
		flags := []string{"", "", "i", "x", "s"}[rng.IntN(5)]
		lines[i] = fmt.Sprintf("P%d;Engine:81-255,Target:0;0&1;414243;0/%s/%s", i, re.String(), flags)
		dirs[i] = writeCase(t, loadCase{files: map[string]string{"p.ldb": lines[i] + "\n"}})
	}
	res := clamLoadAll(t, clamscan, sample, dirs)
	var both, vigilRefuses, onlyClam, loads int
	for i, l := range lines {
		_, err := Load(dirs[i])
		switch {
		case err != nil && res[i].loaded:
			t.Errorf("%s: Vigil refuses (%v), ClamAV loads it", l, err)
		case err != nil:
			both++
			vigilRefuses++
		case !res[i].loaded:
			onlyClam++
		default:
			loads++
		}
	}
	t.Logf("%d regexes: %d load in both, %d refused by both, %d refused by PCRE2 only (Vigil does not compile them)", n, loads, both, onlyClam)
	if vigilRefuses == 0 || loads == 0 {
		t.Errorf("a weak test: %d refused by Vigil, %d loaded", vigilRefuses, loads)
	}
}

// TestLDBContainersSameAsClamAV checks TargetDesc.Allows' reading of
// Container and Intermediates against clamscan, which opens zip and gzip
// files by default: a marker is planted in a file scanned on its own,
// in a zip, in a gzip inside a zip and in a zip inside a gzip (deflated,
// so that the marker appears only once unpacked), and logical signatures
// with every container condition look for it. clamscan reports a match
// inside an archive on the archive's path; the pairs must be those
// Allows gives for each file's chain of containers.
func TestLDBContainersSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	marker := "VigilLdbContainerMarker7"
	inner := append([]byte{0x00, 0x01, 0x80, 0x9c}, []byte(strings.Repeat("ABCD\x00\x01", 400)+marker+strings.Repeat("EFGH\x02\x03", 400))...)
	zipOf := func(name string, data []byte) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	gzOf := func(data []byte) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	files := []struct {
		name       string
		data       []byte
		containers []filetype.Type
	}{
		{"plain.bin", inner, nil},
		{"one.zip", zipOf("inner.bin", inner), []filetype.Type{filetype.ZIP}},
		{"gz-in-zip.zip", zipOf("in.gz", gzOf(inner)), []filetype.Type{filetype.ZIP, filetype.GZ}},
		{"zip-in-gz.gz", gzOf(zipOf("inner.bin", inner)), []filetype.Type{filetype.GZ, filetype.ZIP}},
	}
	corpus := t.TempDir()
	for _, f := range files {
		if f.name != "plain.bin" && bytes.Contains(f.data, []byte(marker)) {
			t.Fatalf("%s holds the marker unpacked", f.name)
		}
		if err := os.WriteFile(filepath.Join(corpus, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conds := []string{"Container:CL_TYPE_ZIP", "Container:CL_TYPE_GZ", "Container:CL_TYPE_ANY", "Intermediates:CL_TYPE_ZIP",
		"Intermediates:CL_TYPE_GZ", "Intermediates:CL_TYPE_ZIP>CL_TYPE_GZ", "Intermediates:CL_TYPE_GZ>CL_TYPE_ZIP",
		"Intermediates:CL_TYPE_ANY>CL_TYPE_GZ", "Intermediates:CL_TYPE_ANY", "Intermediates:CL_TYPE_ANY>CL_TYPE_ANY",
		"Container:CL_TYPE_GZ,Intermediates:CL_TYPE_ZIP>CL_TYPE_GZ", "FileSize:0-100"}
	var lines []string
	for i, c := range conds {
		lines = append(lines, fmt.Sprintf("C%d;Engine:81-255,Target:0,%s;0;%x", i, c, marker))
	}
	sigdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sigdir, "c.ldb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(sigdir)
	if err != nil || len(set.Logical) != len(conds) {
		t.Fatalf("Load: %v", err)
	}
	want := map[string]bool{}
	for _, f := range files {
		for _, l := range set.Logical {
			if l.Target.Allows(FileFacts{Size: int64(len(inner)), Containers: f.containers}) {
				want[f.name+" "+l.Name] = true
			}
		}
	}
	got := clamscanFound(t, clamscan, sigdir, corpus)
	for k := range want {
		if !got[k] {
			t.Errorf("Allows says %s, clamscan does not report it", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("clamscan reports %s, Allows does not", k)
		}
	}
	t.Logf("%d detections", len(want))
}

// TestLDUSameAsClamAV: .ldu files are ignored by default and loaded with
// --detect-pua (LoadOptions.PUA), counted as ClamAV counts them, and a
// malformed .ldu line refuses the set only with --detect-pua, in both.
func TestLDUSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ldu      string
		def, pua int // ClamAV's count, -1: refused
	}{
		{"PUA.Win.Tool.A;Engine:51-255,Target:0;0&1;414243;444546\nPUA.Win.Tool.B;Engine:300-400,Target:0;0;414243\n", 1, 2},
		{"PUA.Win.Tool.A;Engine:51-255,Target:0;0&1;414243\n", 1, -1},
	} {
		dir := writeCase(t, loadCase{files: map[string]string{"p.ldu": c.ldu, "t.ndb": "A:0:*:414243\n"}})
		for _, pua := range []bool{false, true} {
			args := []string{"-d", dir, sample}
			want := c.def
			if pua {
				args = append([]string{"--detect-pua"}, args...)
				want = c.pua
			}
			cmd := exec.Command(clamscan, args...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			clam := -1
			if m := knownRe.FindSubmatch(out); m != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
				fmt.Sscan(string(m[1]), &clam)
			}
			s, lerr := LoadWith(dir, LoadOptions{PUA: pua})
			vigil := -1
			if lerr == nil {
				vigil = s.ClamAVCount()
			}
			if clam != want || vigil != want {
				t.Errorf("%q, PUA %v: ClamAV %d, Vigil %d (%v), want %d\n%s", c.ldu, pua, clam, vigil, lerr, want, out)
			}
		}
	}
}

// TestRandomTDBSameAsClamAV loads random target description blocks
// (attributes in any order, good and bad values, unknown names and
// types, up to 12 attributes) with clamscan and with Load: both refuse,
// skip or load each line alike.
func TestRandomTDBSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	n := 800
	if testing.Short() {
		n = 200
	}
	rng := rand.New(rand.NewPCG(81, 82))
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	attr := func() string {
		switch rng.IntN(12) {
		case 0, 1:
			return "Engine:" + pick("51-255", "81-255", "50-255", "300-400", "51-100", "51-", "-255", "x-255", "51", "51-255-3", "")
		case 2, 3:
			return "Target:" + pick("0", "1", "6", "9", "7", "3", "15", "99", "", "x", "-1", "4294967296")
		case 4:
			return "FileSize:" + pick("1-100", "0-4294967295", "100", "a-b", "5-", "")
		case 5:
			return pick("EntryPoint:", "NumberOfSections:") + pick("0-100", "1", "x-y", "")
		case 6:
			return pick("Container:", "HandlerType:") + pick("CL_TYPE_ZIP", "CL_TYPE_ANY", "CL_TYPE_MSEXE", "CL_TYPE_ERROR", "CL_TYPE_FOO", "")
		case 7:
			return "Intermediates:" + pick("CL_TYPE_ZIP", "CL_TYPE_ZIP>CL_TYPE_GZ", "CL_TYPE_ANY>CL_TYPE_FOO", "", ">")
		case 8:
			return pick("IconGroup1:", "IconGroup2:") + pick("grp", "", "*")
		case 9:
			return pick("Foo:1", "target:0", "Engine", "Target", "", ":", "Engine:51-255:1")
		}
		return "Target:0"
	}
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := make([]string, n)
	dirs := make([]string, n)
	for i := range lines {
		var attrs []string
		if rng.IntN(2) == 0 {
			attrs = append(attrs, "Engine:"+pick("51-255", "81-255", "300-400"))
		}
		for k := 1 + rng.IntN(4); k > 0; k-- {
			attrs = append(attrs, attr())
		}
		if rng.IntN(10) == 0 {
			for k := rng.IntN(10); k > 0; k-- {
				attrs = append(attrs, "FileSize:1-9")
			}
			attrs = append(attrs, attr())
		}
		lines[i] = fmt.Sprintf("T%d;%s;0;414243", i, strings.Join(attrs, ","))
		dirs[i] = writeCase(t, loadCase{files: map[string]string{"t.ldb": lines[i] + "\n"}})
	}
	sameLoadsAsClamAV(t, clamscan, sample, lines, dirs, func(s *Set) bool { return len(s.Logical) == 1 })
}
