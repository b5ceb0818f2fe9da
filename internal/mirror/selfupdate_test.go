package mirror

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestSelfUpdate publishes a release (a real executable for this
// platform: a copy of the test binary) and lets the mirror replace a
// stand-in executable in a temporary directory with it.
func TestSelfUpdate(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	release, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	v := newVendor(t)
	v.publish("1", 16<<10)
	v.release("v1.2.0", self)
	w := newWorld(t, v.live())
	root := v.rootJSON()
	dir := filepath.Join(t.TempDir(), "mirror")

	bin := t.TempDir()
	exe := filepath.Join(bin, "vigil")
	old := []byte("#!/bin/sh\necho old vigil\n")
	if err := os.WriteFile(exe, old, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(bin, "vigil-link")
	if err := os.Symlink("vigil", link); err != nil {
		t.Fatal(err)
	}

	// Check only: newer release available, nothing replaced.
	out := &testenv.Buffer{}
	sum := syncOK(t, w.config("http", root, dir, out))
	su := sum.SelfUpdate
	if su == nil || su.Latest != "v1.2.0" || !su.Available || su.Updated || su.Running != "v1.0.0" {
		t.Fatalf("self-update check: %+v", su)
	}
	if !strings.Contains(out.String(), "v1.2.0 is available") {
		t.Errorf("output: %s", out)
	}
	// Up to date: nothing to do.
	cfg := w.config("http", root, dir, &testenv.Buffer{})
	cfg.Version = "v1.2.0"
	cfg.SelfUpdateExe = exe
	if su := syncOK(t, cfg).SelfUpdate; su.Available || su.Updated {
		t.Fatalf("same version: %+v", su)
	}
	// Update, through a symbolic link: the file it points to is replaced.
	cfg.Version = "v1.1.9"
	cfg.SelfUpdateExe = link
	su = syncOK(t, cfg).SelfUpdate
	if !su.Updated || su.Error != "" || su.Previous != exe+".old" {
		t.Fatalf("self-update: %+v", su)
	}
	got, err := os.ReadFile(exe)
	if err != nil || !bytes.Equal(got, release) {
		t.Fatalf("%s does not hold the release (%d bytes, %v)", exe, len(got), err)
	}
	if st, _ := os.Stat(exe); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
	if b, _ := os.ReadFile(exe + ".old"); !bytes.Equal(b, old) {
		t.Errorf("the previous executable was not kept")
	}
	if l, _ := os.Readlink(link); l != "vigil" {
		t.Errorf("the link was replaced: %q", l)
	}
	entries, _ := os.ReadDir(bin)
	if len(entries) != 3 {
		t.Errorf("leftovers next to the executable: %v", entries)
	}
}
