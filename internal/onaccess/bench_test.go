package onaccess

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// benchGuard starts a Guard with n workers and a trivial scanner.
func benchGuard(b *testing.B, workers int) (*Guard, *prometheus.Registry) {
	b.Helper()
	reg := prometheus.NewRegistry()
	g, err := New(Config{Mode: Block, Workers: workers, CacheEntries: 1 << 16, Release: "1", Registerer: reg},
		ScannerFunc(func(context.Context, *os.File) (Verdict, error) { return Verdict{}, nil }))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g, reg
}

// BenchmarkWarmHit is one permission request answered from the cache:
// Submit to Answer, through the queue and a worker.
func BenchmarkWarmHit(b *testing.B) {
	g, reg := benchGuard(b, 4)
	path := filepath.Join(b.TempDir(), "file")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	st := Stat{Dev: 1, Ino: 1, Size: 100, Mtime: 1, Ctime: 1}
	done := make(chan bool, 1)
	r := Request{Kind: Open, Path: path, PID: 1, Exe: "/bin/true", Stat: &st, Permission: true,
		Answer: func(allow bool) { done <- allow }}
	g.Submit(r) // the miss: the file is scanned by its path
	<-done
	for b.Loop() {
		g.Submit(r)
		<-done
	}
	if n := metric(b, reg, "vigil_onaccess_cache_misses_total"); n != 1 {
		b.Fatalf("%v misses, want 1", n)
	}
}

// BenchmarkMissScan is one permission request for a file not in the cache:
// Submit, a worker opens the file by its path, scans it with a scanner
// that reads nothing, caches the verdict and answers.
func BenchmarkMissScan(b *testing.B) {
	g, reg := benchGuard(b, 4)
	path := filepath.Join(b.TempDir(), "file")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	done := make(chan bool, 1)
	st := Stat{Dev: 1, Size: 1}
	r := Request{Kind: Open, Path: path, Stat: &st, Permission: true, Answer: func(allow bool) { done <- allow }}
	for b.Loop() {
		st.Ino++ // a new file each time
		g.Submit(r)
		<-done
	}
	if h, e := metric(b, reg, "vigil_onaccess_cache_hits_total"), metric(b, reg, "vigil_onaccess_errors_total"); h != 0 || e != 0 {
		b.Fatalf("%v hits, %v errors, want none", h, e)
	}
}
