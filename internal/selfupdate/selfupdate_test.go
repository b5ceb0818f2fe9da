package selfupdate

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestReplaceRefusesBadRelease: a release file that does not match
// its signed hash, or that is not an executable for the platform, leaves
// the executable alone.
func TestReplaceRefusesBadRelease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "vigil")
	old := []byte("old")
	os.WriteFile(exe, old, 0o755)
	src := filepath.Join(dir, "release")
	payload := []byte("#!/bin/sh\necho not an ELF file\n")
	os.WriteFile(src, payload, 0o644)
	tf, err := metadata.TargetFile().FromBytes("vigil/v9.0.0/linux-amd64/vigil", payload, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replace(exe, src, tf, "linux", "amd64"); err == nil || !strings.Contains(err.Error(), "not usable here") {
		t.Errorf("a non-executable release: %v", err)
	}
	os.WriteFile(src, append(payload[:len(payload)-1:len(payload)-1], 'X'), 0o644)
	if _, err := Replace(exe, src, tf, "linux", "amd64"); err == nil || !strings.Contains(err.Error(), "does not match its signed sha256 hash") {
		t.Errorf("a tampered release: %v", err)
	}
	if b, _ := os.ReadFile(exe); !bytes.Equal(b, old) {
		t.Errorf("the executable changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("leftovers: %v", entries)
	}
}
