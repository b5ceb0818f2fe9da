package signatures

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
	type result struct {
		known  int
		loaded bool
		out    string
	}
	results := make([]result, len(loadCases))
	dirs := make([]string, len(loadCases))
	for i, c := range loadCases {
		dirs[i] = writeCase(t, c)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range loadCases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k, l, out := clamLoad(t, clamscan, dirs[i], sample)
			results[i] = result{k, l, out}
		}()
	}
	wg.Wait()
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
