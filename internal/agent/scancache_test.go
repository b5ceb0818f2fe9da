package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-fleet/vigil/internal/command"
)

// TestScanEngineCached: scans with the same release reuse its engine; a
// new release, or a file of the release changed in place, replaces it, and
// the scans then detect with the new signatures.
func TestScanEngineCached(t *testing.T) {
	t.Parallel()
	a := scanAgent(t)
	root := t.TempDir()
	write(t, filepath.Join(root, "eicar.com"), eicarTest, 0o644)
	write(t, filepath.Join(root, "new.txt"), "a file with NEWMALWARE inside", 0o644)
	builds := func() int {
		a.engine.mu.Lock()
		defer a.engine.mu.Unlock()
		return a.engine.builds
	}
	scanned := func() []string {
		t.Helper()
		for _, p := range mustGlob(t, filepath.Join(a.path(dirPendingScans), "*.json")) {
			must(t, os.Remove(p))
		}
		out := a.runScan(context.Background(), scanReq{Paths: []string{root}})
		if out.Status != command.StatusOK {
			t.Fatalf("scan: %s: %s", out.Status, out.Output)
		}
		var sigs []string
		for _, d := range savedReport(t, a).Detections {
			sigs = append(sigs, filepath.Base(d.Path)+":"+d.Signature)
		}
		return sigs
	}
	check := func(got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("detections %q, want %q", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("detections %q, want %q", got, want)
			}
		}
	}

	check(scanned(), "eicar.com:Eicar-Test-Signature")
	check(scanned(), "eicar.com:Eicar-Test-Signature")
	if n := builds(); n != 1 {
		t.Fatalf("two scans of one release built %d engines, want 1", n)
	}

	// A new release, made current as the updater does.
	defs := a.defsRoot()
	release := filepath.Join(defs, "2026112502")
	write(t, filepath.Join(release, "daily.ndb"), "New-Body:0:*:4e45574d414c57415245\n", 0o644)
	must(t, os.Symlink("2026112502", filepath.Join(defs, "current.tmp")))
	must(t, os.Rename(filepath.Join(defs, "current.tmp"), filepath.Join(defs, "current")))
	check(scanned(), "new.txt:New-Body")
	check(scanned(), "new.txt:New-Body")
	if n := builds(); n != 2 {
		t.Fatalf("after a new release: %d engines built, want 2", n)
	}

	// The current release's files changed in place (definitions installed
	// by other means): rebuilt too.
	write(t, filepath.Join(release, "daily.hdb"), "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Again\n", 0o644)
	check(scanned(), "eicar.com:Eicar-Again", "new.txt:New-Body")
	if n := builds(); n != 3 {
		t.Fatalf("after a change in place: %d engines built, want 3", n)
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
