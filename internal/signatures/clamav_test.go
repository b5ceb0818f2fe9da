package signatures

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

var knownRe = regexp.MustCompile(`(?m)^Known viruses: (\d+)$`)

// clamLoad runs clamscan with the definitions directory dir on a small
// file and returns the number of signatures it reports as loaded, or
// loaded false when it refuses the directory.
func clamLoad(t *testing.T, clamscan, dir, sample string) (known int, loaded bool, out string) {
	t.Helper()
	cmd := exec.Command(clamscan, "-d", dir, sample)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return 0, false, b.String()
	}
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("clamscan: %v\n%s", err, b.String())
	}
	m := knownRe.FindStringSubmatch(b.String())
	if m == nil {
		t.Fatalf("clamscan printed no count:\n%s", b.String())
	}
	n, _ := strconv.Atoi(m[1])
	return n, true, b.String()
}

// clamResult is what clamLoad says of one directory.
type clamResult struct {
	known  int
	loaded bool
	out    string
}

// clamLoadAll runs clamLoad on every directory of dirs, four at a time.
func clamLoadAll(t *testing.T, clamscan, sample string, dirs []string) []clamResult {
	t.Helper()
	results := make([]clamResult, len(dirs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range dirs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := &results[i]
			r.known, r.loaded, r.out = clamLoad(t, clamscan, dirs[i], sample)
		}()
	}
	wg.Wait()
	return results
}

// sameLoadsAsClamAV loads each directory of dirs (one holding lines[i])
// with clamscan, four at a time, and with Load, and fails where they
// disagree: one refuses what the other loads, or they count differently.
// used tells a line Vigil uses from one it skips, for the log.
func sameLoadsAsClamAV(t *testing.T, clamscan, sample string, lines, dirs []string, used func(*Set) bool) {
	t.Helper()
	n := len(lines)
	res := clamLoadAll(t, clamscan, sample, dirs)
	var nLoad, nSkip, nRefuse, bad int
	for i, l := range lines {
		s, err := Load(dirs[i])
		switch {
		case err != nil && res[i].loaded:
			t.Errorf("%s: Vigil refuses (%v), ClamAV loads it", l, err)
			bad++
		case err == nil && !res[i].loaded:
			t.Errorf("%s: Vigil loads it, ClamAV refuses it:\n%s", l, res[i].out)
			bad++
		case err == nil && s.ClamAVCount() != res[i].known:
			t.Errorf("%s: Vigil counts %d, ClamAV %d (skipped %+v)", l, s.ClamAVCount(), res[i].known, s.Skipped)
			bad++
		case err != nil:
			nRefuse++
		case used(s):
			nLoad++
		default:
			nSkip++
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	t.Logf("%d lines: %d used, %d skipped, %d refused by both", n, nLoad, nSkip, nRefuse)
}

// TestLoadSameAsClamAV loads every directory of loadCases with clamscan
// (ClamAV 1.4.6) and with Load: both refuse it, or both load it and
// ClamAV's "Known viruses" equals Set.ClamAVCount (plus what ClamAV
// loads from the files Vigil ignores).
func TestLoadSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirs := make([]string, len(loadCases))
	for i, c := range loadCases {
		dirs[i] = writeCase(t, c)
	}
	results := clamLoadAll(t, clamscan, sample, dirs)
	for i, c := range loadCases {
		r := results[i]
		s, err := Load(dirs[i])
		switch {
		case err != nil && r.loaded:
			t.Errorf("%s: Vigil refuses (%v), ClamAV loads %d signatures", c.name, err, r.known)
		case err == nil && !r.loaded:
			t.Errorf("%s: Vigil loads (%d for ClamAV), ClamAV refuses:\n%s", c.name, s.ClamAVCount(), r.out)
		case err == nil && s.ClamAVCount()+c.extra != r.known:
			t.Errorf("%s: Vigil counts %d+%d signatures as ClamAV loads them, ClamAV %d", c.name, s.ClamAVCount(), c.extra, r.known)
		case (c.err != "") == r.loaded:
			t.Errorf("%s: the table says refused=%v, ClamAV loaded=%v", c.name, c.err != "", r.loaded)
		}
	}
}

// randomLine builds a random .ndb line from the pieces of ClamAV's body
// syntax, valid or not, in the combinations real databases and typing
// mistakes produce.
func randomLine(rng *rand.Rand, i int) string {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	elem := func() string {
		switch rng.IntN(12) {
		case 0:
			return pick("??", "4?", "?4", "00")
		case 1:
			return pick("(41|42)", "(4142|4344)", "(4?|50)", "(41|4243)", "(41|)", "(41)", "!(41|42)",
				"!(4142|4344)", "((41|42)|43)", "(B)", "(L)", "(W)", "(|41)", "!(4?|45)")
		case 2:
			return pick("*", "{3}", "{1-3}", "{-2}", "{2-}", "{0}", "{}", "{-}", "{+3}", "{200}", "{3-1}", "{0-0}", "{130-}")
		case 3:
			if rng.IntN(4) == 0 {
				return pick("[1-2]", "[3]", "[1-40]", "g", ")", " ", "4")
			}
		}
		return pick("41", "42", "43", "44", "4a", "5A", "61")
	}
	var hex strings.Builder
	for n := 1 + rng.IntN(7); n > 0; n-- {
		hex.WriteString(elem())
	}
	target := pick("0", "0", "0", "0", "1", "6", "7", "2", "*", "15", "4")
	offset := pick("*", "*", "*", "0", "10,5", "EOF-3", "EP+3", "SL+1", "S1+2", "SE0", "VI", "$2$", "", ",3", "EOF-")
	line := fmt.Sprintf("R%d:%s:%s:%s", i, target, offset, hex.String())
	switch rng.IntN(10) {
	case 0:
		line += ":" + pick("10", "300", "x", "")
	case 1:
		line += ":10:" + pick("20", "300")
	}
	return line
}

// randomHashLine builds a random hash line for a file of the given kind.
func randomHashLine(rng *rand.Rand, i int, kind string) string {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	hash := pick(eicarMD5, eicarMD5, eicarSHA, "3395856ce81f2b7382dee72602f798b642f14140", eicarMD5[1:], "zz"+eicarMD5[2:], strings.ToUpper(eicarMD5))
	size := pick("68", "68", " 68", "+68", "-1", "0", "4294967294", "4294967295", "4294967296", "*", "*", "", "68x",
		"18446744069414584322", "-18446744069414584322", "\t68")
	name := pick(fmt.Sprintf("H%d", i), fmt.Sprintf("H%d", i), "", fmt.Sprintf("H%d (Clam)", i), "a\x1bb")
	fl := pick("", "", "", ":73", ":x", ":300", ":10:20", ":1:-1", ": 73", ":+300", ":73:216", ":216:215", ":", ":73:x:1")
	if kind == "mdb" {
		return size + ":" + hash + ":" + name + fl
	}
	return hash + ":" + size + ":" + name + fl
}

// TestRandomLinesSameAsClamAV loads random .ndb and hash lines, one
// directory each, with clamscan and with Load: both refuse, or both load
// and count the same number of signatures.
func TestRandomLinesSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	n := 600
	if testing.Short() {
		n = 150
	}
	rng := rand.New(rand.NewPCG(21, 22))
	sample := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(sample, []byte("a small file to scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := make([]string, n)
	dirs := make([]string, n)
	for i := range lines {
		file := "r.ndb"
		if i%2 == 0 {
			lines[i] = randomLine(rng, i)
		} else {
			kind := []string{"hdb", "hsb", "mdb", "fp"}[rng.IntN(4)]
			lines[i] = randomHashLine(rng, i, kind)
			file = "r." + kind
		}
		dirs[i] = writeCase(t, loadCase{files: map[string]string{file: lines[i] + "\n"}})
	}
	sameLoadsAsClamAV(t, clamscan, sample, lines, dirs, func(s *Set) bool { return s.ClamAVCount()-len(s.Skipped) == 1 })
}

// clamscanFound runs clamscan --allmatch with the signatures in sigdir
// over the files in corpus and returns what it reports, as "FILE NAME"
// (the file's base name, the signature's name without ".UNOFFICIAL").
func clamscanFound(t *testing.T, clamscan, sigdir, corpus string) map[string]bool {
	t.Helper()
	cmd := exec.Command(clamscan, "--no-summary", "--allmatch", "--infected", "-d", sigdir, corpus)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("clamscan: %v\n%s", err, errb.String())
	}
	got := map[string]bool{}
	for _, ln := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if path, rest, ok := strings.Cut(ln, ": "); ok && strings.HasSuffix(rest, ".UNOFFICIAL FOUND") {
			got[filepath.Base(path)+" "+strings.TrimSuffix(rest, ".UNOFFICIAL FOUND")] = true
		} else if ln != "" {
			t.Fatalf("clamscan printed %q", ln)
		}
	}
	return got
}
