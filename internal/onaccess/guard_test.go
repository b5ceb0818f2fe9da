package onaccess

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// answer records a permission request's answers.
type answer struct {
	n     atomic.Int32
	allow atomic.Bool
	at    atomic.Int64 // time.Now().UnixNano() of the first answer
	done  chan struct{}
}

func newAnswer() *answer { return &answer{done: make(chan struct{})} }

func (a *answer) fn(allow bool) {
	if a.n.Add(1) == 1 {
		a.allow.Store(allow)
		a.at.Store(time.Now().UnixNano())
		close(a.done)
	}
}

func (a *answer) answered() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// check fails unless a was answered exactly once, with allow.
func (a *answer) check(t *testing.T, what string, allow bool) {
	t.Helper()
	if n := a.n.Load(); n != 1 {
		t.Errorf("%s: answered %d times, want once", what, n)
		return
	}
	if a.allow.Load() != allow {
		t.Errorf("%s: allow = %v, want %v", what, a.allow.Load(), allow)
	}
}

// perm is a permission request for an open of a file with identity st.
func perm(path string, st Stat, a *answer) Request {
	return Request{Kind: Open, Path: path, PID: 100, Exe: "/bin/cat", Stat: &st, Permission: true, Answer: a.fn}
}

// blockingScanner blocks every scan until release is closed (or the
// Guard closes), then finds what verdict says.
type blockingScanner struct {
	release chan struct{}
	verdict Verdict
	started atomic.Int32
	calls   atomic.Int32
}

func (s *blockingScanner) Scan(ctx context.Context, f *os.File) (Verdict, error) {
	s.started.Add(1)
	defer s.calls.Add(1)
	select {
	case <-s.release:
		return s.verdict, nil
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
}

// countingScanner finds a file infected when its name contains "bad".
type countingScanner struct{ calls atomic.Int32 }

func (s *countingScanner) Scan(ctx context.Context, f *os.File) (Verdict, error) {
	s.calls.Add(1)
	if strings.Contains(filepath.Base(f.Name()), "bad") {
		return Verdict{Infected: true, Signature: "Test.Bad"}, nil
	}
	return Verdict{}, nil
}

// detections collects a Guard's detections.
type detections struct {
	mu sync.Mutex
	d  []Detection
}

func (d *detections) add(x Detection) { d.mu.Lock(); d.d = append(d.d, x); d.mu.Unlock() }
func (d *detections) list() []Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Detection(nil), d.d...)
}

// metric returns the value of the counter, gauge or histogram count name
// with labels (name=value pairs) in reg.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

// newGuard starts a Guard for a test, with a registry and a log, and
// closes it at the test's end.
func newGuard(t *testing.T, cfg Config, s Scanner) (*Guard, *prometheus.Registry, *testenv.Buffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := new(testenv.Buffer)
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	if cfg.Mode == 0 {
		cfg.Mode = Block
	}
	g, err := New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, reg, log
}

// scratch returns a regular file for scans that must open one.
func scratch(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("content of "+name), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A verdict not ready within the timeout is answered "allow" at the
// timeout exactly, counted and logged; it still fills the cache when it
// comes, and the next access gets it from there.
func TestFailOpenOnTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &blockingScanner{release: make(chan struct{}), verdict: Verdict{Infected: true, Signature: "Slow.Sig"}}
		var det detections
		g, reg, log := newGuard(t, Config{VerdictTimeout: 200 * time.Millisecond, Workers: 2, OnDetection: det.add, Release: "r7"}, s)
		path := scratch(t, "slow")
		st, err := StatPath(path)
		if err != nil {
			t.Fatal(err)
		}
		a := newAnswer()
		start := time.Now()
		g.Submit(perm(path, st, a))
		synctest.Wait()
		if a.answered() || s.started.Load() != 1 {
			t.Fatalf("before the timeout: answered %v, scans started %d", a.answered(), s.started.Load())
		}
		time.Sleep(199 * time.Millisecond)
		synctest.Wait()
		if a.answered() {
			t.Fatal("answered before the timeout")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		a.check(t, "slow verdict", true)
		if got := time.Duration(a.at.Load() - start.UnixNano()); got != 200*time.Millisecond {
			t.Errorf("answered after %v, want 200ms", got)
		}
		if n := metric(t, reg, "vigil_onaccess_fail_opens_total"); n != 1 {
			t.Errorf("fail-opens %v, want 1", n)
		}
		if !strings.Contains(log.String(), "timeout") || !strings.Contains(log.String(), "count=1") || !strings.Contains(log.String(), path) {
			t.Errorf("log %q: want the fail-open with its count and path", log.String())
		}

		// The late verdict: a detection, not blocked; and the cache.
		close(s.release)
		synctest.Wait()
		a.check(t, "slow verdict after the scan", true)
		d := det.list()
		if len(d) != 1 || d[0].Blocked || d[0].Signature != "Slow.Sig" || d[0].Path != path || d[0].PID != 100 ||
			d[0].Exe != "/bin/cat" || d[0].Kind != Open || d[0].Release != "r7" || d[0].Cached {
			t.Fatalf("detections %+v, want one late, unblocked Slow.Sig in r7", d)
		}
		if n := metric(t, reg, "vigil_onaccess_verdict_seconds", "source", "scan"); n != 1 {
			t.Errorf("scan verdicts observed %v, want 1", n)
		}

		b := newAnswer()
		g.Submit(perm(path, st, b))
		synctest.Wait()
		b.check(t, "second open of the infected file", false)
		if n := s.calls.Load(); n != 1 {
			t.Errorf("%d scans, want 1 (the second open is a cache hit)", n)
		}
		d = det.list()
		if len(d) != 2 || !d[1].Blocked || !d[1].Cached || d[1].Signature != "Slow.Sig" {
			t.Errorf("second detection %+v, want a blocked, cached Slow.Sig", d[len(d)-1])
		}
		for name, want := range map[string]float64{
			"vigil_onaccess_cache_hits_total": 1, "vigil_onaccess_cache_misses_total": 1,
			"vigil_onaccess_detections_total": 2, "vigil_onaccess_denied_total": 1,
			"vigil_onaccess_fail_opens_total": 1, "vigil_onaccess_errors_total": 0,
		} {
			if got := metric(t, reg, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if got := metric(t, reg, "vigil_onaccess_events_total", "kind", "open"); got != 2 {
			t.Errorf("open events %v, want 2", got)
		}
	})
}

// The deadline runs from Submit: a request waiting in the queue behind a
// slow scan is allowed at its timeout too.
func TestTimeoutWhileQueued(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &blockingScanner{release: make(chan struct{})}
		g, reg, _ := newGuard(t, Config{VerdictTimeout: time.Second, Workers: 1}, s)
		first, second := newAnswer(), newAnswer()
		g.Submit(perm(scratch(t, "one"), Stat{Dev: 1, Ino: 1}, first))
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		g.Submit(perm(scratch(t, "two"), Stat{Dev: 1, Ino: 2}, second))
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		first.check(t, "first", true)
		if second.answered() {
			t.Fatal("the queued request was answered before its own timeout")
		}
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		second.check(t, "queued", true)
		if s.started.Load() != 1 {
			t.Errorf("%d scans started, want 1 (one worker, blocked)", s.started.Load())
		}
		if n := metric(t, reg, "vigil_onaccess_fail_opens_total"); n != 2 {
			t.Errorf("fail-opens %v, want 2", n)
		}
		close(s.release)
		synctest.Wait()
		// The queued file was scanned after all, late, for the cache.
		if s.calls.Load() != 2 {
			t.Errorf("%d scans, want 2", s.calls.Load())
		}
	})
}

// Fail-opens are logged at most once per interval, with how many there
// were.
func TestFailOpenLogRateLimited(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &blockingScanner{release: make(chan struct{})}
		g, reg, log := newGuard(t, Config{VerdictTimeout: 100 * time.Millisecond, Workers: 8, LogInterval: time.Minute}, s)
		submit := func(n int) {
			for i := range n {
				g.Submit(perm(scratch(t, fmt.Sprint("f", i)), Stat{Dev: 1, Ino: uint64(i)}, newAnswer()))
			}
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		lines := func() []string { return strings.Split(strings.TrimSpace(log.String()), "\n") }
		submit(5)
		if l := lines(); len(l) != 1 || !strings.Contains(l[0], "count=1") {
			t.Fatalf("after 5 fail-opens at once, log:\n%s\nwant one line with count=1", log.String())
		}
		time.Sleep(time.Minute)
		submit(3)
		l := lines()
		if len(l) != 2 || !strings.Contains(l[1], "count=5") {
			t.Fatalf("a minute later, after 3 more, log:\n%s\nwant a second line with count=5 (4 held back and the first new one)", log.String())
		}
		if n := metric(t, reg, "vigil_onaccess_fail_opens_total"); n != 8 {
			t.Errorf("fail-opens %v, want 8", n)
		}
		close(s.release)
		g.Close()
		if l := lines(); len(l) != 3 || !strings.Contains(l[2], "count=2") {
			t.Fatalf("after Close, log:\n%s\nwant a last line with the 2 held back", log.String())
		}
	})
}

// A request that finds the queue full is allowed at once, unscanned, and
// counted.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &blockingScanner{release: make(chan struct{})}
		g, reg, log := newGuard(t, Config{VerdictTimeout: time.Hour, Workers: 1, QueueSize: 1}, s)
		busy, queued, full := newAnswer(), newAnswer(), newAnswer()
		g.Submit(perm(scratch(t, "busy"), Stat{Dev: 1, Ino: 1}, busy))
		synctest.Wait() // the worker took it
		g.Submit(perm(scratch(t, "queued"), Stat{Dev: 1, Ino: 2}, queued))
		g.Submit(perm("/nowhere/full", Stat{Dev: 1, Ino: 3}, full))
		full.check(t, "request finding the queue full (before Submit returned)", true)
		if busy.answered() || queued.answered() {
			t.Error("the scanned or queued request was answered")
		}
		if n := metric(t, reg, "vigil_onaccess_queue_full_total"); n != 1 {
			t.Errorf("queue-full %v, want 1", n)
		}
		if !strings.Contains(log.String(), "queue full") {
			t.Errorf("log %q: want the full queue", log.String())
		}
		close(s.release)
		synctest.Wait()
		busy.check(t, "busy", true)
		queued.check(t, "queued", true)
		if s.calls.Load() != 2 {
			t.Errorf("%d scans, want 2", s.calls.Load())
		}
	})
}

// Close answers "allow" to every request not answered yet, scanning or
// queued, and to those submitted after it; it returns once the scans
// stopped.
func TestCloseAnswersPending(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &blockingScanner{release: make(chan struct{})}
		g, reg, _ := newGuard(t, Config{VerdictTimeout: time.Hour, Workers: 2, QueueSize: 16}, s)
		var as []*answer
		for i := range 10 {
			a := newAnswer()
			as = append(as, a)
			g.Submit(perm(scratch(t, fmt.Sprint("p", i)), Stat{Dev: 1, Ino: uint64(i)}, a))
		}
		// Requests waiting for a scan in progress of the same file.
		for range 2 {
			a := newAnswer()
			as = append(as, a)
			g.Submit(perm(scratch(t, "same"), Stat{Dev: 1, Ino: 0}, a))
		}
		// A notification (no answer) waiting too.
		g.Submit(Request{Kind: Open, Path: scratch(t, "note"), Stat: &Stat{Dev: 1, Ino: 99}})
		synctest.Wait()
		if s.started.Load() != 2 {
			t.Fatalf("%d scans started, want 2", s.started.Load())
		}
		for i, a := range as {
			if a.answered() {
				t.Fatalf("request %d answered before Close", i)
			}
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		for i, a := range as {
			a.check(t, fmt.Sprint("pending request ", i), true)
		}
		late := newAnswer()
		g.Submit(perm("/after/close", Stat{Dev: 1, Ino: 100}, late))
		late.check(t, "request after Close", true)
		if n := metric(t, reg, "vigil_onaccess_shutdown_allows_total"); n != 13 {
			t.Errorf("shutdown allows %v, want 13", n)
		}
		if n := metric(t, reg, "vigil_onaccess_errors_total"); n != 0 {
			t.Errorf("errors %v, want 0 (a scan stopped by Close is no error)", n)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// Modes: notify reports and allows; block denies permission requests
// only; excluded, oversize and failed files are allowed unscanned.
func TestDecisions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) (string, Stat) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := StatPath(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, st
	}
	bad, badSt := write("bad", "x")
	good, goodSt := write("good", "y")
	big, bigSt := write("bad-big", strings.Repeat("z", 2000))
	excl, exclSt := write("bad-excluded", "x")

	for _, mode := range []Mode{Notify, Block} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			s := &countingScanner{}
			var det detections
			g, reg, _ := newGuard(t, Config{Mode: mode, MaxFileSize: 1000, OnDetection: det.add, Workers: 1,
				ExcludePaths: []string{excl}, ExcludeExes: []string{"/usr/bin/make"}}, s)
			run := func(r Request) *answer {
				a := newAnswer()
				r.Permission, r.Answer = true, a.fn
				g.Submit(r)
				<-a.done
				return a
			}
			run(Request{Kind: Exec, Path: bad, Stat: &badSt, PID: 7, Exe: "/bin/sh"}).check(t, "infected exec", mode == Notify)
			run(Request{Kind: Open, Path: good, Stat: &goodSt}).check(t, "clean open", true)
			run(Request{Kind: Open, Path: big, Stat: &bigSt}).check(t, "oversize", true)
			run(Request{Kind: Open, Path: excl, Stat: &exclSt}).check(t, "excluded path", true)
			run(Request{Kind: Open, Path: bad, Stat: &badSt, Exe: "/usr/bin/make"}).check(t, "excluded program", true)
			run(Request{Kind: Open, Path: filepath.Join(dir, "missing")}).check(t, "missing file", true)
			// A notification of an infected file: reported, not blocked.
			g.Submit(Request{Kind: Open, Path: bad, Stat: &badSt, PID: 8})
			// One worker: when this one is answered, the notification was
			// handled.
			run(Request{Kind: Open, Path: good, Stat: &goodSt}).check(t, "clean open from the cache", true)
			g.Close()

			if n := s.calls.Load(); n != 2 {
				t.Errorf("%d scans, want 2 (bad, good; then bad from the cache)", n)
			}
			d := det.list()
			if len(d) != 2 {
				t.Fatalf("detections %+v, want 2", d)
			}
			if d[0].Blocked != (mode == Block) || d[0].Kind != Exec || d[0].PID != 7 || d[0].Exe != "/bin/sh" || d[0].Signature != "Test.Bad" || d[0].Cached {
				t.Errorf("exec detection %+v", d[0])
			}
			if d[1].Blocked || d[1].PID != 8 || !d[1].Cached {
				t.Errorf("notification detection %+v: want unblocked, cached", d[1])
			}
			want := map[string]float64{
				"vigil_onaccess_oversize_total": 1, "vigil_onaccess_excluded_total": 2,
				"vigil_onaccess_errors_total": 1, "vigil_onaccess_detections_total": 2,
				"vigil_onaccess_denied_total": 0, "vigil_onaccess_cache_hits_total": 2,
				"vigil_onaccess_cache_misses_total": 2, "vigil_onaccess_cache_entries": 2,
			}
			if mode == Block {
				want["vigil_onaccess_denied_total"] = 1
			}
			for name, w := range want {
				if got := metric(t, reg, name); got != w {
					t.Errorf("%s = %v, want %v", name, got, w)
				}
			}
			if got := metric(t, reg, "vigil_onaccess_events_total", "kind", "exec"); got != 1 {
				t.Errorf("exec events %v, want 1", got)
			}
		})
	}
}

// A close after a write forgets the file's verdict even when its size and
// times did not change, and even when an excluded process wrote it.
func TestCloseWriteInvalidates(t *testing.T) {
	t.Parallel()
	s := &countingScanner{}
	g, reg, _ := newGuard(t, Config{ExcludeExes: []string{"/usr/bin/cc"}}, s)
	path := scratch(t, "file")
	st, err := StatPath(path)
	if err != nil {
		t.Fatal(err)
	}
	open := func() {
		a := newAnswer()
		g.Submit(perm(path, st, a))
		<-a.done
	}
	open()
	open()
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("%d scans after two opens, want 1", n)
	}
	g.Submit(Request{Kind: CloseWrite, Path: path, Stat: &st, Exe: "/usr/bin/cc"})
	open()
	if n := s.calls.Load(); n != 2 {
		t.Fatalf("%d scans after a close-after-write and an open, want 2", n)
	}
	// A permission request for a close (no kernel sends one) is allowed.
	a := newAnswer()
	g.Submit(Request{Kind: CloseWrite, Path: path, Stat: &st, Permission: true, Answer: a.fn})
	a.check(t, "close-after-write", true)
	if got := metric(t, reg, "vigil_onaccess_events_total", "kind", "close_write"); got != 2 {
		t.Errorf("close_write events %v, want 2", got)
	}
	if got := metric(t, reg, "vigil_onaccess_excluded_total"); got != 0 {
		t.Errorf("excluded %v, want 0", got)
	}
}

// A scan error allows the access, is counted and logged, and caches
// nothing.
func TestScanErrorAllows(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	s := ScannerFunc(func(ctx context.Context, f *os.File) (Verdict, error) {
		calls.Add(1)
		return Verdict{Infected: true}, errors.New("engine broke")
	})
	g, reg, log := newGuard(t, Config{}, s)
	path := scratch(t, "file")
	for range 2 {
		a := newAnswer()
		g.Submit(perm(path, Stat{Dev: 1, Ino: 1}, a))
		<-a.done
		a.check(t, "scan error", true)
	}
	if calls.Load() != 2 {
		t.Errorf("%d scans, want 2 (an error is not cached)", calls.Load())
	}
	if n := metric(t, reg, "vigil_onaccess_errors_total"); n != 2 {
		t.Errorf("errors %v, want 2", n)
	}
	if !strings.Contains(log.String(), "engine broke") {
		t.Errorf("log %q: want the error", log.String())
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	s := &countingScanner{}
	for _, cfg := range []Config{
		{},
		{Mode: 3},
		{Mode: Block, VerdictTimeout: -1},
		{Mode: Block, Workers: -1},
		{Mode: Block, QueueSize: -1},
		{Mode: Block, CacheEntries: -1},
		{Mode: Block, MaxFileSize: -1},
	} {
		if g, err := New(cfg, s); err == nil {
			g.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{Mode: Block}, nil); err == nil {
		t.Error("New without a scanner succeeded")
	}
	reg := prometheus.NewRegistry()
	g, err := New(Config{Mode: Block, Registerer: reg}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := New(Config{Mode: Block, Registerer: reg}, s); err == nil {
		t.Error("a second Guard registered its metrics on the same registry")
	}
	// A failed registration leaves nothing behind.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_onaccess_errors_total", Help: "taken"}))
	if _, err := New(Config{Mode: Block, Registerer: reg2}, s); err == nil {
		t.Fatal("New registered over a taken name")
	}
	if mfs, err := reg2.Gather(); err != nil || len(mfs) != 1 {
		t.Errorf("after a failed New, the registry has %d metric families (%v), want the 1 it had", len(mfs), err)
	}
}

// Accesses to a file being scanned wait for that scan (one scan, every
// access answered with its verdict) without holding a worker.
func TestConcurrentMissesCoalesce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &blockingScanner{release: make(chan struct{}), verdict: Verdict{Infected: true, Signature: "Once"}}
		var det detections
		g, reg, _ := newGuard(t, Config{VerdictTimeout: time.Hour, Workers: 2, OnDetection: det.add}, s)
		path := scratch(t, "prog")
		same := Stat{Dev: 1, Ino: 7, Size: 10}
		var as []*answer
		for range 4 {
			a := newAnswer()
			as = append(as, a)
			r := perm(path, same, a)
			r.Kind = Exec
			g.Submit(r)
		}
		// Another file is scanned meanwhile by the second worker: the
		// waiting requests hold none.
		other := newAnswer()
		g.Submit(perm(path, Stat{Dev: 1, Ino: 8, Size: 10}, other))
		synctest.Wait()
		if n := s.started.Load(); n != 2 {
			t.Fatalf("%d scans started, want 2 (one per file)", n)
		}
		for i, a := range as {
			if a.answered() {
				t.Fatalf("request %d answered before the scan ended", i)
			}
		}
		close(s.release)
		synctest.Wait()
		for i, a := range as {
			a.check(t, fmt.Sprint("exec ", i), false)
		}
		other.check(t, "other file", false)
		if n := s.calls.Load(); n != 2 {
			t.Errorf("%d scans, want 2", n)
		}
		if n := len(det.list()); n != 5 {
			t.Errorf("%d detections, want 5 (one per access)", n)
		}
		for name, want := range map[string]float64{
			"vigil_onaccess_coalesced_total": 3, "vigil_onaccess_cache_misses_total": 5,
			"vigil_onaccess_denied_total": 5, "vigil_onaccess_cache_entries": 2,
		} {
			if got := metric(t, reg, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if got := metric(t, reg, "vigil_onaccess_verdict_seconds", "source", "scan"); got != 5 {
			t.Errorf("scan verdicts observed %v, want 5", got)
		}
	})
}

// A Metrics set given to successive Guards keeps counting across them
// (registered once), and Counters reports its main counters by their
// check-in names.
func TestSharedMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	path := scratch(t, "file")
	st, err := StatPath(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		g, err := New(Config{Mode: Block, Metrics: m}, ScannerFunc(func(context.Context, *os.File) (Verdict, error) {
			return Verdict{Infected: true, Signature: "T"}, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		a := newAnswer()
		g.Submit(perm(path, st, a))
		<-a.done
		a.check(t, "infected open", false)
		g.Close()
	}
	m.AddLost(3)
	want := map[string]uint64{"onaccess_events": 2, "onaccess_scans": 2, "onaccess_detections": 2, "onaccess_denied": 2, "onaccess_lost": 3}
	if got := m.Counters(); !maps.Equal(got, want) {
		t.Errorf("Counters() = %v, want %v", got, want)
	}
	if n := metric(t, reg, "vigil_onaccess_denied_total"); n != 2 {
		t.Errorf("vigil_onaccess_denied_total = %v, want 2", n)
	}
}
