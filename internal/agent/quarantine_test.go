package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

const eicarTest = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

const passwd = "root:x:0:0:root:/root:/bin/sh\n"

// scanAgent is an agent with EICAR definitions installed and a quarantine
// directory, that is not run: tests call runScan directly.
func scanAgent(t *testing.T) *Agent {
	t.Helper()
	dir := t.TempDir()
	defs := filepath.Join(dir, "defs")
	release := filepath.Join(defs, "2026112501")
	if err := os.MkdirAll(release, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(release, "daily.hdb"), []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("2026112501", filepath.Join(defs, "current")); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Prefs: &prefs.Agent{
		NodeCommURL: "http://127.0.0.1:1/vigil", StateDirectory: filepath.Join(dir, "state"),
		DefinitionsDirectory: defs, QuarantineDirectory: filepath.Join(dir, "quarantine"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// savedReport returns the one scan report the agent saved.
func savedReport(t *testing.T, a *Agent) api.ScanReport {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(a.path(dirPendingScans), "*.json"))
	if len(ms) != 1 {
		t.Fatalf("%d scan reports saved", len(ms))
	}
	var rep api.ScanReport
	if _, err := readJSON(ms[0], &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestQuarantineSwappedPath: between the scan and the quarantine, the
// user who owns the scanned tree swaps part of the detected file's path;
// the root agent must not move (or change the mode of) anything but the
// file it scanned. A hook between scan and quarantine makes the race
// deterministic.
func TestQuarantineSwappedPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		swap        func(t *testing.T, home, victim string)
		quarantined bool
	}{
		{"no swap", func(*testing.T, string, string) {}, true},
		{"directory swapped for a link", func(t *testing.T, home, victim string) {
			must(t, os.Rename(filepath.Join(home, "sub"), filepath.Join(home, "sub.scanned")))
			must(t, os.Symlink(filepath.Dir(victim), filepath.Join(home, "sub")))
		}, false},
		{"file swapped for a link", func(t *testing.T, home, victim string) {
			must(t, os.Remove(filepath.Join(home, "sub", "passwd")))
			must(t, os.Symlink(victim, filepath.Join(home, "sub", "passwd")))
		}, false},
		{"file swapped for a hard link to another", func(t *testing.T, home, victim string) {
			must(t, os.Remove(filepath.Join(home, "sub", "passwd")))
			must(t, os.Link(victim, filepath.Join(home, "sub", "passwd")))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := scanAgent(t)
			root := t.TempDir()
			home, victim := filepath.Join(root, "home"), filepath.Join(root, "etc", "passwd")
			detected := filepath.Join(home, "sub", "passwd")
			write(t, detected, eicarTest, 0o644)
			write(t, victim, passwd, 0o644)
			a.beforeQuarantine = func() { tc.swap(t, home, victim) }
			out := a.runScan(context.Background(), scanReq{Paths: []string{home}, Quarantine: true})
			if out.Status != command.StatusOK || !strings.Contains(out.Output, "1 infected") {
				t.Fatalf("scan: %+v", out)
			}
			if got, err := os.ReadFile(victim); err != nil || string(got) != passwd {
				t.Fatalf("the victim file: %q %v", got, err)
			}
			if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o644 {
				t.Fatalf("the victim file's mode changed to %v", fi.Mode().Perm())
			}
			bins, _ := filepath.Glob(filepath.Join(a.p.QuarantineDirectory, "*"))
			rep := savedReport(t, a)
			if len(rep.Detections) != 1 {
				t.Fatalf("report %+v", rep)
			}
			if !tc.quarantined {
				if len(bins) != 0 || rep.Detections[0].Quarantine != "" || strings.Contains(out.Output, "quarantined") {
					t.Fatalf("quarantined something: %v, %+v, %q", bins, rep.Detections[0], out.Output)
				}
				return
			}
			id := rep.Detections[0].Quarantine
			fi, err := os.Lstat(filepath.Join(a.p.QuarantineDirectory, id+".bin"))
			if err != nil || fi.Mode().Perm() != 0o600 || len(bins) != 2 {
				t.Fatalf("quarantined file: %v %v (%v)", fi, err, bins)
			}
			if _, err := os.Lstat(detected); !os.IsNotExist(err) {
				t.Fatalf("the detected file is still there: %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func scannedFile(t *testing.T, path string) Scanned {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return Scanned{Path: path, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

// TestQuarantineNonUTF8Name: a file whose name is not UTF-8 goes into
// quarantine and comes back under the very same name, with its mode.
func TestQuarantineNonUTF8Name(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := Quarantine{Dir: filepath.Join(dir, "quarantine")}
	path := filepath.Join(dir, "caf\xe9", "r\xe9sum\xe9.com") // Latin-1
	write(t, path, eicarTest, 0o640)
	id, err := q.Put(scannedFile(t, path), "Eicar-Test-Signature")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("still in place: %v", err)
	}
	got, err := q.Restore(id)
	if err != nil || got != path {
		t.Fatalf("Restore = %q, %v; want %q", got, err, path)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != eicarTest {
		t.Fatalf("restored file: %q %v", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("restored mode %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 || ents[0].Name() != filepath.Base(path) {
		t.Fatalf("directory holds %v", ents)
	}
	if !strings.Contains(showPath(path), `\xe9`) {
		t.Fatalf("showPath(%q) = %q", path, showPath(path))
	}
}

// TestQuarantineRestoreRefusesLinks: restore does not follow a link that
// replaced a directory on the original path, and never writes over a file
// that is there again.
func TestQuarantineRestoreRefusesLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := Quarantine{Dir: filepath.Join(dir, "quarantine")}
	path := filepath.Join(dir, "home", "eicar.com")
	write(t, path, eicarTest, 0o644)
	id, err := q.Put(scannedFile(t, path), "Eicar-Test-Signature")
	if err != nil {
		t.Fatal(err)
	}
	victimDir := filepath.Join(dir, "etc")
	must(t, os.Mkdir(victimDir, 0o755))
	must(t, os.Rename(filepath.Join(dir, "home"), filepath.Join(dir, "home.old")))
	must(t, os.Symlink(victimDir, filepath.Join(dir, "home")))
	if _, err := q.Restore(id); err == nil || !strings.Contains(err.Error(), "not following") {
		t.Fatalf("Restore through a link: %v", err)
	}
	if ents, _ := os.ReadDir(victimDir); len(ents) != 0 {
		t.Fatalf("restored through the link: %v", ents)
	}
	must(t, os.Remove(filepath.Join(dir, "home")))
	must(t, os.Rename(filepath.Join(dir, "home.old"), filepath.Join(dir, "home")))
	write(t, path, "new\n", 0o644)
	if _, err := q.Restore(id); err == nil || !strings.Contains(err.Error(), "exists again") {
		t.Fatalf("Restore over a file: %v", err)
	}
	must(t, os.Remove(path))
	if _, err := q.Restore(id); err != nil {
		t.Fatal(err)
	}
}
