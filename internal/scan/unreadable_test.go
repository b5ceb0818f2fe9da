package scan

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// asNobody runs f with file permissions checked as an unprivileged user:
// as root, by switching this thread's file system user ID (Linux), since
// root reads everything; otherwise as is.
func asNobody(t *testing.T, f func()) {
	if os.Geteuid() != 0 {
		f()
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("root bypasses permissions and setfsuid is Linux-only")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := setfsuid(65534); err != nil {
		t.Skipf("setfsuid: %v", err)
	}
	defer func() { _ = setfsuid(0) }()
	f()
}

// TestUnreadable: an unreadable directory and file are reported and
// skipped, the rest is scanned.
func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // t.TempDir makes them 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "ok", "bad.bin"), "MALWARE!")
	write(t, filepath.Join(dir, "locked", "hidden.bin"), "MALWARE!")
	secret := write(t, filepath.Join(dir, "ok", "secret.bin"), "MALWARE!")
	for _, p := range []string{filepath.Join(dir, "locked"), secret} {
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(p, 0o755)
	}
	fi, err := os.Lstat(secret)
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine(t)
	asNobody(t, func() {
		// The walker runs on this goroutine, so the locked directory is
		// read with this thread's credentials.
		var sum Summary
		var err error
		sum, err = e.ScanPaths(context.Background(), []string{filepath.Join(dir, "locked")}, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := skippedReasons(sum); r["locked"] != "permission denied" || sum.Files != 0 {
			t.Errorf("locked directory: summary %+v", sum)
		}
		// Workers open files on other threads: open the file here, the
		// way a worker does.
		w := &walker{e: e, ctx: context.Background(), jobs: make(chan job)}
		w.scanFile(e.newMatcher(), job{path: secret, open: secret, info: fi})
		if r := skippedReasons(w.sum); r["secret.bin"] != "permission denied" || w.sum.Files != 0 {
			t.Errorf("unreadable file: summary %+v", w.sum)
		}
	})
}

// TestSwappedForFIFO: a file replaced by a FIFO between listing and
// opening is skipped without blocking.
func TestSwappedForFIFO(t *testing.T) {
	dir := t.TempDir()
	p := write(t, filepath.Join(dir, "f"), "MALWARE!")
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	e := testEngine(t)
	w := &walker{e: e, ctx: context.Background(), jobs: make(chan job)}
	w.scanFile(e.newMatcher(), job{path: p, open: p, info: fi})
	if r := skippedReasons(w.sum); !strings.Contains(r["f"], "changed while being scanned") {
		t.Errorf("skipped %q", r)
	}
}
