package onaccess

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// marker is what byteScanner looks for: a stand-in for a signature.
var marker = []byte("VIGIL-ONACCESS-TEST-MARKER")

// byteScanner reads the whole file, as the scan engine does, and finds it
// infected when it holds marker.
type byteScanner struct{ calls atomic.Int32 }

func (s *byteScanner) Scan(ctx context.Context, f *os.File) (Verdict, error) {
	s.calls.Add(1)
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil {
		return Verdict{}, err
	}
	if bytes.Contains(data, marker) {
		return Verdict{Infected: true, Signature: "Test.Marker"}, nil
	}
	return Verdict{}, nil
}

// Real files, opened as fanotify hands them over (an open descriptor the
// Guard stats and closes): an infected file is denied, a clean one
// allowed and then answered from the cache; a clean file overwritten with
// infected bytes of the same size, its modification time set back, is
// caught on the next open; a new release rescans.
func TestRealFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.txt")
	infected := filepath.Join(dir, "infected.bin")
	cleanData := bytes.Repeat([]byte{'.'}, 4096+len(marker))
	infectedData := append(bytes.Repeat([]byte{'.'}, 4096), marker...)
	for p, d := range map[string][]byte{clean: cleanData, infected: infectedData} {
		if err := os.WriteFile(p, d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &byteScanner{}
	var det detections
	g, reg, _ := newGuard(t, Config{Mode: Block, OnDetection: det.add, Release: "100"}, s)
	open := func(path string) *answer {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		a := newAnswer()
		g.Submit(Request{Kind: Open, Path: path, PID: os.Getpid(), Exe: "/bin/cat", File: f, Permission: true, Answer: a.fn})
		<-a.done
		return a
	}
	scans := func(want int32) {
		t.Helper()
		if n := s.calls.Load(); n != want {
			t.Fatalf("%d scans, want %d", n, want)
		}
	}

	open(infected).check(t, "infected file", false)
	open(clean).check(t, "clean file", true)
	scans(2)
	open(clean).check(t, "clean file again", true)
	open(infected).check(t, "infected file again", false)
	scans(2)

	// Overwritten in place with infected bytes: same inode, same size, and
	// the modification time set back as an attacker would.
	fi, err := os.Stat(clean)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(clean, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(infectedData, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(clean, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if fi2, err := os.Stat(clean); err != nil || fi2.Size() != fi.Size() || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("overwritten file: %v, %v; want the same size and modification time", fi2, err)
	}
	open(clean).check(t, "clean file overwritten with infected bytes", false)
	scans(3)

	// A new release scans again.
	g.SetRelease("101")
	open(clean).check(t, "infected file under a new release", false)
	scans(4)

	d := det.list()
	if len(d) != 4 {
		t.Fatalf("detections %+v, want 4", d)
	}
	for i, w := range []struct {
		path, release string
		cached        bool
	}{{infected, "100", false}, {infected, "100", true}, {clean, "100", false}, {clean, "101", false}} {
		if d[i].Path != w.path || d[i].Release != w.release || d[i].Cached != w.cached || !d[i].Blocked ||
			d[i].Signature != "Test.Marker" || d[i].PID != os.Getpid() {
			t.Errorf("detection %d: %+v, want %s in %s, cached %v, blocked", i, d[i], w.path, w.release, w.cached)
		}
	}
	if n := metric(t, reg, "vigil_onaccess_cache_hits_total"); n != 2 {
		t.Errorf("cache hits %v, want 2", n)
	}
}

// Many goroutines submit opens, execs and closes-after-writes of real
// files while the release changes and some scans fail or outlast a short
// timeout: every permission request is answered exactly once, and the
// events are all counted. Run with -race.
func TestExactlyOnceConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const files = 16
	var paths []string
	for i := range files {
		p := filepath.Join(dir, fmt.Sprint("f", i))
		if err := os.WriteFile(p, []byte(fmt.Sprint("file ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	var n atomic.Int64
	s := ScannerFunc(func(ctx context.Context, f *os.File) (Verdict, error) {
		switch k := n.Add(1); k % 7 {
		case 0:
			return Verdict{}, fmt.Errorf("scan %d failed", k)
		case 1:
			// Past the timeout (or until Close).
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
			}
			return Verdict{Infected: true, Signature: "Slow"}, nil
		case 2:
			return Verdict{Infected: true, Signature: "Quick"}, nil
		}
		return Verdict{}, nil
	})
	g, reg, _ := newGuard(t, Config{VerdictTimeout: time.Millisecond, Workers: 4, QueueSize: 64, CacheEntries: 8,
		ExcludePaths: []string{paths[0]}, OnDetection: func(Detection) {}}, s)

	const submitters, each = 8, 300
	answers := make([][]*answer, submitters)
	var wg sync.WaitGroup
	for w := range submitters {
		wg.Go(func() {
			for i := range each {
				p := paths[(w*each+i)%files]
				a := newAnswer()
				answers[w] = append(answers[w], a)
				r := Request{Kind: Kinds[i%3], Path: p, PID: w, Permission: i%3 != 2, Answer: a.fn}
				if i%5 == 0 {
					f, err := os.Open(p)
					if err != nil {
						t.Error(err)
						continue
					}
					r.File = f
				}
				if i%50 == 0 {
					g.SetRelease(fmt.Sprint(w, i))
				}
				g.Submit(r)
			}
		})
	}
	wg.Wait()
	for w := range answers {
		for i, a := range answers[w] {
			if i%3 != 2 {
				<-a.done // within the timeout, or this test times out
			}
		}
	}
	g.Close()
	var perms int
	for w := range answers {
		for i, a := range answers[w] {
			if i%3 == 2 {
				if a.n.Load() != 0 {
					t.Errorf("a close-after-write notification was answered")
				}
				continue
			}
			perms++
			if a.n.Load() != 1 {
				t.Errorf("submitter %d request %d answered %d times", w, i, a.n.Load())
			}
		}
	}
	var events float64
	for _, k := range Kinds {
		events += metric(t, reg, "vigil_onaccess_events_total", "kind", k.String())
	}
	if events != submitters*each {
		t.Errorf("%v events counted, want %d", events, submitters*each)
	}
	t.Logf("%d permission requests; hits %v, misses %v, fail-opens %v, queue full %v, errors %v, excluded %v, denied %v",
		perms, metric(t, reg, "vigil_onaccess_cache_hits_total"), metric(t, reg, "vigil_onaccess_cache_misses_total"),
		metric(t, reg, "vigil_onaccess_fail_opens_total"), metric(t, reg, "vigil_onaccess_queue_full_total"),
		metric(t, reg, "vigil_onaccess_errors_total"), metric(t, reg, "vigil_onaccess_excluded_total"),
		metric(t, reg, "vigil_onaccess_denied_total"))
}

// With ScanCloseWrite, a file written is scanned when it is closed: an
// infected one is reported at once (as a close_write detection, never
// blocked: nothing waits), a clean one's verdict is cached so that its
// next open scans nothing. Clean is called with the identity and release
// of every clean verdict, and never for an infected file or an old
// release.
func TestScanCloseWriteAndClean(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.txt")
	infected := filepath.Join(dir, "download.bin")
	for p, d := range map[string][]byte{clean: []byte("fine"), infected: append([]byte("xx"), marker...)} {
		if err := os.WriteFile(p, d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &byteScanner{}
	var det detections
	type cleaned struct {
		st      Stat
		release string
	}
	cleans := make(chan cleaned, 16)
	g, _, _ := newGuard(t, Config{Mode: Block, OnDetection: det.add, Release: "7", ScanCloseWrite: true, Workers: 1}, s)
	closeWrite := func(path string) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		g.Submit(Request{Kind: CloseWrite, Path: path, PID: 42, Exe: "/usr/bin/wget", File: f,
			Clean: func(st Stat, r string) { cleans <- cleaned{st, r} }})
	}
	closeWrite(infected)
	closeWrite(clean)
	got := <-cleans
	want, err := StatPath(clean)
	if err != nil {
		t.Fatal(err)
	}
	if got.st != want || got.release != "7" {
		t.Errorf("Clean(%+v, %q), want (%+v, \"7\")", got.st, got.release, want)
	}
	// The clean file's open is answered from the cache.
	a := newAnswer()
	f, err := os.Open(clean)
	if err != nil {
		t.Fatal(err)
	}
	g.Submit(Request{Kind: Open, Path: clean, PID: 43, File: f, Permission: true, Answer: a.fn,
		Clean: func(st Stat, r string) { cleans <- cleaned{st, r} }})
	<-a.done
	a.check(t, "open after the close-after-write scan", true)
	if n := s.calls.Load(); n != 2 {
		t.Errorf("%d scans, want 2 (one per file written, none for the open)", n)
	}
	if got := <-cleans; got.st != want {
		t.Errorf("cached clean verdict: Clean(%+v), want %+v", got.st, want)
	}
	d := det.list()
	if len(d) != 1 || d[0].Path != infected || d[0].Kind != CloseWrite || d[0].Blocked || d[0].PID != 42 || d[0].Exe != "/usr/bin/wget" {
		t.Fatalf("detections %+v, want one close_write detection of %s by pid 42, not blocked", d, infected)
	}
	select {
	case c := <-cleans:
		t.Errorf("Clean called again: %+v", c)
	default:
	}
}
