package textnorm

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

func utf16Bytes(s string, be, bom bool) []byte {
	var out []byte
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xfeff}, units...)
	}
	for _, u := range units {
		if be {
			out = append(out, byte(u>>8), byte(u))
		} else {
			out = append(out, byte(u), byte(u>>8))
		}
	}
	return out
}

// textCorpus returns files of the kinds ClamAV normalizes: text of every
// type, random data taken for UTF-16, and binary data, which is not
// normalized.
func textCorpus() map[string][]byte {
	c := map[string][]byte{
		"ascii.txt":       []byte("Hello WORLD\tof\t\tTabs   and  SPACES\r\nZQXJKV line\vtwo\f\n"),
		"script.sh":       []byte("#!/bin/sh\nIF [ -x /BIN/FOO ];\tTHEN\n\t\tEcho   \"Mixed Case\"\nfi\n"),
		"latin1.txt":      []byte("Caf\xe9 NA\xefVE\xa0TEXT \x85 next\n"),
		"utf8.txt":        []byte("Caf\xc3\xa9 UTF-8 \xe2\x82\xac EURO  sign\n"),
		"ctrl.txt":        []byte("Hello\t\tWORLD  x\r\n\x01\xc3\xa9z TAIL"),
		"utf16le-bom.txt": utf16Bytes("Hello UTF-16 LE World\tTAB\n\u00e9t\u00e9 \u4e2d\u6587", false, true),
		"utf16be-bom.txt": utf16Bytes("Hello UTF-16 BE World\tTAB\n\u00e9t\u00e9 \u4e2d\u6587", true, true),
		"utf16le.txt":     utf16Bytes("Hello UTF-16 LE no BOM  MiXeD\n", false, false),
		"utf16be.txt":     utf16Bytes("Hello UTF-16 BE no BOM  MiXeD\n", true, false),
		"zeros.bin":       append(make([]byte, 100), []byte("ZQXJKV  after\tzeros")...),
	}
	for i := range uint64(6) {
		r := rand.New(rand.NewPCG(i, 11))
		b := make([]byte, 500+int(i)*700)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		c[fmt.Sprintf("random%d.bin", i)] = b
	}
	// A text file whose normalization ClamAV flushes twice, with a run of
	// whitespace across the first flush.
	r := rand.New(rand.NewPCG(99, 99))
	big := make([]byte, ScanBuffer*3)
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range big {
		big[i] = letters[r.IntN(len(letters))]
		if i > 0 && !isSpace(big[i-1]) && r.IntN(9) == 0 {
			big[i] = " \t\n"[r.IntN(3)] // single whitespace only: the flush stays at ScanBuffer
		}
	}
	copy(big[ScanBuffer-3:], "Qx  Yq")
	c["big.txt"] = big
	// Mail that the first 1024 bytes do not show: recognized in the raw
	// scan, then matched with target-4 signatures too.
	mail := []byte("Notes\nFrom: Someone <a@example.com>\n" + strings.Repeat("X-Filler: MORE   text\n", 60) +
		"Content-Type: text/plain\n\nMail BODY  text\n")
	c["mail-late.txt"] = mail
	// Recognition in the whole file: HTML, then an SFX or PE marker, which
	// overrides it; the file is then normalized as text, not as HTML.
	plain := bytes.Repeat([]byte("Plain Text LINE\n"), 100)
	c["late-html-pk.txt"] = append(append(bytes.Clone(plain), "<html>Page</html>\n"...), "more PK\x03\x04 Zip MARKER\n"...)
	c["late-pk-html.txt"] = append(append(bytes.Clone(plain), "more PK\x03\x04 Zip MARKER\n"...), "<html>Page</html>\n"...)
	c["late-html-mz.txt"] = append(append(bytes.Clone(plain), "<html>Page</html>\n"...), "MZ"+strings.Repeat("x", 64)+"PE\x00\x00 Exe MARKER\n"...)
	return c
}

// sig is one .ndb signature of the differential test.
type sig struct {
	name   string
	target int
	body   []byte
}

// sigsFor draws signatures from the files: substrings of the raw bytes
// and of the normalized text, as they are and with their case changed,
// each for targets 0 and 7, plus the examples of issue 11.
func sigsFor(files map[string][]byte) []sig {
	r := rand.New(rand.NewPCG(42, 42))
	var bodies [][]byte
	names := slices.Sorted(mapsKeys(files))
	for _, name := range names {
		b := files[name]
		n := NormalizeScript(b)
		for range 4 {
			for _, src := range [][]byte{b, n} {
				if len(src) < 8 {
					continue
				}
				l := 5 + r.IntN(6)
				i := r.IntN(len(src) - l)
				s := bytes.Clone(src[i : i+l])
				bodies = append(bodies, s, bytes.ToUpper(s))
			}
		}
	}
	bodies = append(bodies, []byte("zqxjkv"), []byte("ZQXJKV"), []byte("of tabs and spaces"),
		[]byte("world\tof"), []byte("qx  yq"), []byte("qx yq"), []byte("qx  yqab"))
	var sigs []sig
	seen := map[string]bool{}
	for _, body := range bodies {
		if seen[string(body)] {
			continue
		}
		seen[string(body)] = true
		for _, target := range []int{0, 4, 7} {
			sigs = append(sigs, sig{fmt.Sprintf("Vigil.T%d.%d", target, len(sigs)), target, body})
		}
	}
	return sigs
}

func mapsKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// runClamscan scans the files with the signatures, keeping ClamAV's
// temporary files in tmp; it returns the "file\tsignature" detections
// and the maximum pattern length of the target-7 matcher.
func runClamscan(t *testing.T, clamscan, dir, tmp string, sigs []sig, files []string) (map[string]bool, int) {
	t.Helper()
	var db bytes.Buffer
	for _, s := range sigs {
		fmt.Fprintf(&db, "%s:%d:*:%s\n", s.name, s.target, hex.EncodeToString(s.body))
	}
	dbPath := filepath.Join(dir, "norm.ndb")
	if err := os.WriteFile(dbPath, db.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--no-summary", "-z", "--leave-temps", "--tempdir=" + tmp,
		"--heuristic-alerts=no", "-d", dbPath}, files...)
	cmd := exec.Command(clamscan, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("clamscan: %v\n%s", err, stderr.String())
	}
	found := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		rest, ok := strings.CutSuffix(line, " FOUND")
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, ": ")
		found[filepath.Base(rest[:i])+"\t"+strings.TrimSuffix(rest[i+2:], ".UNOFFICIAL")] = true
	}
	// The target-7 matcher's longest pattern, as ClamAV reports it when
	// loading (a debug run over an empty file, kept short).
	empty := filepath.Join(dir, "empty-for-debug")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dbg, err := exec.Command(clamscan, "--no-summary", "--debug", "-d", dbPath, empty).CombinedOutput()
	if err != nil {
		t.Fatalf("clamscan --debug: %v\n%s", err, dbg)
	}
	m := regexp.MustCompile(`Matcher\[7\]: ASCII: .* maxpatlen (\d+)`).FindSubmatch(dbg)
	if m == nil {
		t.Fatalf("clamscan --debug printed no target-7 matcher line")
	}
	maxPatLen, _ := strconv.Atoi(string(m[1]))
	return found, maxPatLen
}

// keptNormalizations returns, by scanned file name, the files
// "clamav-*.tmp" saved under tmp (--leave-temps) in the directory named
// after the scanned file: the normalized text cli_scanscript saved, and
// for a file ClamAV also parses as mail, the parts it extracted.
func keptNormalizations(t *testing.T, tmp string) map[string][][]byte {
	t.Helper()
	kept := map[string][][]byte{}
	top := regexp.MustCompile(`^\d{8}_\d{6}-(.+)\.[0-9a-f]{10}$`)
	err := filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "clamav-") || !strings.HasSuffix(d.Name(), ".tmp") {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		m := top.FindStringSubmatch(strings.Split(rel, string(filepath.Separator))[0])
		if m == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		kept[m[1]] = append(kept[m[1]], b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return kept
}

// model is the test's stand-in for the engine: the buffers Plan names
// for the file, each matched with bytes.Contains for the targets it
// lists. It returns whether sig s is found in file b, and which buffer.
type model struct {
	raw, norm []byte
	plan      []Pass
}

func newModel(b []byte, maxPatLen int) model {
	d := filetype.Detect(b)
	rec, _ := filetype.Builtin().Recognize(bytes.NewReader(b), int64(len(b)), filetype.Any)
	norm, _ := io.ReadAll(NewScriptReader(bytes.NewReader(b), maxPatLen))
	return model{raw: b, norm: norm, plan: Plan(d, rec, int64(len(b)))}
}

func (m model) match(s sig) (Buffer, bool) {
	for _, p := range m.plan {
		if !slices.Contains(p.Targets, s.target) {
			continue
		}
		switch p.Buffer {
		case Raw:
			if bytes.Contains(m.raw, s.body) {
				return Raw, true
			}
		case ScriptText:
			if bytes.Contains(m.norm, s.body) {
				return ScriptText, true
			}
		}
	}
	return Raw, false
}

// TestScriptSameAsClamAV is the differential test of the script
// normalization: for a generated corpus of text (ASCII, mixed case,
// tabs, runs of whitespace, UTF-8, Latin-1, UTF-16 with and without byte
// order mark), random data ClamAV takes for UTF-16, binary data and a
// file large enough for ClamAV to flush its buffer twice, with
// signatures of targets 0 and 7 drawn from the raw and normalized bytes:
//
//   - ClamAV's own normalized text (kept with --leave-temps) is byte for
//     byte what ScriptReader gives, with ClamAV's buffers reassembled;
//   - clamscan detects a signature in a file exactly when the test's
//     model (Plan, Raw and ScriptText, bytes.Contains) finds it.
func TestScriptSameAsClamAV(t *testing.T) {
	t.Parallel()
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	dir, tmp := t.TempDir(), t.TempDir()
	files := textCorpus()
	var paths []string
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	sigs := sigsFor(files)
	found, maxPatLen := runClamscan(t, clamscan, dir, tmp, sigs, paths)
	if maxPatLen == 0 {
		t.Fatal("no target-7 signature loaded")
	}
	kept := keptNormalizations(t, tmp)

	detections, mailDetections := 0, 0
	byBuffer := map[Buffer]int{}
	for name, b := range files {
		m := newModel(b, maxPatLen)
		normalized := slices.ContainsFunc(m.plan, func(p Pass) bool { return p.Buffer == ScriptText })
		k, ok := kept[name]
		switch {
		case normalized && !ok:
			t.Errorf("%s: ClamAV kept no normalization; the plan has one (%v)", name, filetype.Detect(b))
		case !normalized && ok:
			t.Errorf("%s: ClamAV normalized it; the plan does not (%v)", name, filetype.Detect(b))
		case ok:
			r := NewScriptReader(bytes.NewReader(b), maxPatLen)
			stream, _ := io.ReadAll(r)
			want := clamavBuffers(stream, r.Flushes(), maxPatLen)
			if !slices.ContainsFunc(k, func(b []byte) bool { return bytes.Equal(b, want) }) {
				t.Errorf("%s: ClamAV's normalization differs:\nclamav %q\nvigil  %q", name, head(k[0]), head(want))
			}
			if len(k) > 1 && name != "mail-late.txt" {
				t.Errorf("%s: %d files kept, one wanted", name, len(k))
			}
		}
		for _, s := range sigs {
			buf, want := m.match(s)
			got := found[name+"\t"+s.name]
			if got != want {
				t.Errorf("%s: %s (target %d, %q): clamscan %v, model %v", name, s.name, s.target, s.body, got, want)
			}
			if got {
				detections++
				byBuffer[buf]++
				if s.target == 4 {
					mailDetections++
				}
			}
		}
	}
	if m := newModel(files["big.txt"], maxPatLen); !bytes.Contains(m.norm, []byte("qx  yq")) {
		t.Errorf("big.txt: the whitespace run across the flush is not exercised")
	}
	if mailDetections == 0 {
		t.Errorf("no target-4 detection: the mail recognized late is not exercised")
	}
	// The corpus must exercise both buffers, or the test shows nothing.
	if byBuffer[Raw] == 0 || byBuffer[ScriptText] == 0 {
		t.Errorf("detections by buffer %v: the corpus does not exercise both", byBuffer)
	}
	t.Logf("%d files, %d signatures, %d detections (%v), target-7 maxpatlen %d", len(files), len(sigs), detections, byBuffer, maxPatLen)
}

// clamavBuffers is what cli_scanscript writes to its kept file: each
// buffer it matches, the later ones starting with the last maxPatLen
// bytes of the one before.
func clamavBuffers(stream []byte, flushes []int64, maxPatLen int) []byte {
	var out []byte
	start := int64(0)
	for _, f := range flushes {
		out = append(out, stream[start:f]...)
		start = max(f-int64(maxPatLen), 0)
	}
	return append(out, stream[start:]...)
}

func head(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
