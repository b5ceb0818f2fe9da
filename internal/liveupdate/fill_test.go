package liveupdate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fillRecorder is a Config.Fill and Config.Hit that records its calls:
// it writes "filled/NAME" files, refuses "gone/…" as not found and
// "later/…" as unavailable, and replaces timestamp.json.
type fillRecorder struct {
	root string

	mu    sync.Mutex
	fills []string
	hits  []string
	ts    int
}

func (f *fillRecorder) fill(_ context.Context, name string) error {
	f.mu.Lock()
	f.fills = append(f.fills, name)
	f.mu.Unlock()
	switch {
	case name == "timestamp.json":
		f.mu.Lock()
		f.ts++
		n := f.ts
		f.mu.Unlock()
		return os.WriteFile(filepath.Join(f.root, name), fmt.Appendf(nil, "timestamp %d\n", n), 0o644)
	case filepath.Dir(name) == "filled":
		return os.WriteFile(filepath.Join(f.root, filepath.FromSlash(name)), []byte("filled "+name+"\n"), 0o644)
	case filepath.Dir(name) == "later":
		return fmt.Errorf("upstream down: %w", ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}

func (f *fillRecorder) hit(name string) {
	f.mu.Lock()
	f.hits = append(f.hits, name)
	f.mu.Unlock()
}

func (f *fillRecorder) calls() (fills, hits []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.fills), slices.Clone(f.hits)
}

func (f *fillRecorder) reset() {
	f.mu.Lock()
	f.fills, f.hits = nil, nil
	f.mu.Unlock()
}

// TestFillHook: with Config.Fill set, a missing file is filled and then
// served, a file whose name may change is revalidated before it is
// served (not on the fast path), an immutable file that is there is
// served on the fast path without Fill, Fill's errors are answered 404 or
// 503 (HTTP) and 550 or 450 (FTP), and Hit sees the files served without
// a fill.
func TestFillHook(t *testing.T) {
	r := newTestRepo(t)
	for _, d := range []string{"filled", "later", "gone"} {
		if err := os.MkdirAll(filepath.Join(r.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fr := &fillRecorder{root: r.root}
	ts := startServer(t, r, func(c *Config) { c.Fill, c.Hit = fr.fill, fr.hit })
	get := func(p string) (int, string) {
		t.Helper()
		res, err := http.Get("http://" + ts.http + p)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	// An immutable file that is there: fast path, no Fill, a hit.
	if code, _ := get("/" + r.hashPkg); code != 200 {
		t.Fatalf("GET %s: %d", r.hashPkg, code)
	}
	if fills, hits := fr.calls(); len(fills) != 0 || !slices.Equal(hits, []string{r.hashPkg}) {
		t.Errorf("immutable file: fills %v hits %v, want none and one hit", fills, hits)
	}
	fr.reset()

	// A file that may change: Fill first, then served as Fill left it.
	for i := 1; i <= 2; i++ {
		if code, body := get("/timestamp.json"); code != 200 || body != fmt.Sprintf("timestamp %d\n", i) {
			t.Fatalf("GET timestamp.json #%d: %d %q", i, code, body)
		}
	}
	if fills, _ := fr.calls(); !slices.Equal(fills, []string{"timestamp.json", "timestamp.json"}) {
		t.Errorf("timestamp.json: fills %v, want one per request", fills)
	}
	fr.reset()

	// A missing immutable file: filled, then served; not a hit. Once
	// there, a hit on the fast path, without Fill.
	a := "filled/" + strings.Repeat("a", 64) + ".a.bin"
	if code, body := get("/" + a); code != 200 || body != "filled "+a+"\n" {
		t.Fatalf("GET %s: %d %q", a, code, body)
	}
	if code, _ := get("/" + a); code != 200 {
		t.Fatalf("second GET %s: %d", a, code)
	}
	if fills, hits := fr.calls(); !slices.Equal(fills, []string{a}) || !slices.Equal(hits, []string{a}) {
		t.Errorf("filled file: fills %v hits %v, want one fill then one hit", fills, hits)
	}
	fr.reset()
	// A missing file whose name may change: Fill is called before the
	// open, and again on every request.
	get("/filled/m.bin")
	get("/filled/m.bin")
	if fills, hits := fr.calls(); !slices.Equal(fills, []string{"filled/m.bin", "filled/m.bin"}) || !slices.Equal(hits, []string{"filled/m.bin"}) {
		t.Errorf("filled mutable file: fills %v hits %v, want two fills and one hit", fills, hits)
	}
	fr.reset()

	// Fill's errors.
	if code, _ := get("/gone/x.bin"); code != http.StatusNotFound {
		t.Errorf("GET gone/x.bin: %d, want 404", code)
	}
	res, err := http.Get("http://" + ts.http + "/later/x.bin")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("GET later/x.bin: %d (Retry-After %q), want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Malformed paths and dotfiles never reach Fill; directories are
	// listed without it.
	get("/.hidden-missing")
	get("/sub%20dir/")
	if fills, _ := fr.calls(); !slices.Equal(fills, []string{"gone/x.bin", "later/x.bin"}) {
		t.Errorf("fills %v, want gone/x.bin and later/x.bin only", fills)
	}

	// FTP: RETR fills, and answers 550 or 450 for Fill's errors.
	f := loginFTP(t, ts.ftp)
	if first, data, final := f.transfer("RETR /filled/b.bin"); first != 150 || final != 226 || string(data) != "filled filled/b.bin\n" {
		t.Errorf("RETR filled/b.bin: %d %q %d", first, data, final)
	}
	if first, _, _ := f.transfer("RETR /gone/y.bin"); first != 550 {
		t.Errorf("RETR gone/y.bin: %d, want 550", first)
	}
	if first, _, _ := f.transfer("RETR /later/y.bin"); first != 450 {
		t.Errorf("RETR later/y.bin: %d, want 450", first)
	}
	if code, msg := f.cmd("SIZE /filled/c.bin"); code != 213 || msg != "20" {
		t.Errorf("SIZE filled/c.bin: %d %q, want 213 20", code, msg)
	}
	if !errors.Is(fmt.Errorf("x: %w", ErrUnavailable), ErrUnavailable) {
		t.Fatal("ErrUnavailable does not wrap")
	}
}
