package onaccess

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Guard answers accesses: see the package documentation.
type Guard struct {
	mode        Mode
	maxSize     int64
	timeout     time.Duration
	scanner     Scanner
	excl        exclusions
	cache       *cache
	m           *metrics
	kindEvents  [len(kindNames)]prometheus.Counter
	latCache    prometheus.Observer // verdict latency, from the cache
	latScan     prometheus.Observer // and from a scan
	onDetection func(Detection)
	scanWrites  bool

	logTimeout, logFull, logErr *rateLog

	ctx    context.Context // done when the Guard is closing: scans stop
	cancel context.CancelFunc
	queue  chan *job
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending map[*job]struct{} // permission requests not answered yet

	flightMu sync.Mutex
	flights  map[flightKey][]*job // scans in progress: the requests waiting for them
}

// flightKey is a scan in progress: one file's content under one release.
type flightKey struct {
	id  ident
	ver version
}

// job is a Request on its way.
type job struct {
	Request
	g        *Guard
	start    time.Time
	timer    atomic.Pointer[time.Timer]
	answered atomic.Bool
}

// New starts a Guard with cfg's workers, scanning with s. Close stops it.
func New(cfg Config, s Scanner) (*Guard, error) {
	if s == nil {
		return nil, errors.New("onaccess: no scanner")
	}
	if cfg.Mode != Notify && cfg.Mode != Block {
		return nil, fmt.Errorf("onaccess: mode %v: want notify or block", cfg.Mode)
	}
	if cfg.VerdictTimeout < 0 || cfg.Workers < 0 || cfg.QueueSize < 0 || cfg.CacheEntries < 0 || cfg.MaxFileSize < 0 || cfg.LogInterval < 0 {
		return nil, errors.New("onaccess: negative timeout, workers, queue size, cache entries, maximum file size or log interval")
	}
	if cfg.VerdictTimeout == 0 {
		cfg.VerdictTimeout = DefaultVerdictTimeout
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.CacheEntries == 0 {
		cfg.CacheEntries = DefaultCacheEntries
	}
	if cfg.LogInterval == 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Guard{
		mode:        cfg.Mode,
		maxSize:     cfg.MaxFileSize,
		timeout:     cfg.VerdictTimeout,
		scanner:     s,
		excl:        newExclusions(cfg),
		cache:       newCache(cfg.CacheEntries, cfg.Release),
		onDetection: cfg.OnDetection,
		scanWrites:  cfg.ScanCloseWrite,
		queue:       make(chan *job, cfg.QueueSize),
		pending:     make(map[*job]struct{}),
		flights:     make(map[flightKey][]*job),
	}
	if cfg.Metrics != nil {
		g.m = cfg.Metrics.m
	} else {
		x, err := NewMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("onaccess: metrics: %w", err)
		}
		g.m = x.m
	}
	cacheLen := g.cache.len
	g.m.cacheLen.Store(&cacheLen)
	for _, k := range Kinds {
		g.kindEvents[k] = g.m.events.WithLabelValues(k.String())
	}
	g.latCache, g.latScan = g.m.latency.WithLabelValues("cache"), g.m.latency.WithLabelValues("scan")
	rl := func(msg string) *rateLog { return &rateLog{log: cfg.Logger, msg: msg, interval: cfg.LogInterval} }
	g.logTimeout = rl("on-access: verdicts not ready within the timeout; accesses allowed")
	g.logFull = rl("on-access: queue full; accesses allowed unscanned")
	g.logErr = rl("on-access: files not scanned for an error; accesses allowed")
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go g.work()
	}
	return g, nil
}

// SetRelease makes r the definitions release verdicts are made with: when
// it changes, the cache is emptied, and scans in progress do not fill it.
func (g *Guard) SetRelease(r string) { g.cache.setRelease(r) }

// Release returns the definitions release in use.
func (g *Guard) Release() string { return g.cache.currentRelease() }

// Submit hands r to the Guard and returns at once; it takes r.File over.
// A permission request is answered exactly once, within the verdict
// timeout: before Submit returns when r is excluded, a close after a
// write, the queue is full or the Guard is closed.
//
// Submit makes no system call, except for a close after a write given no
// Stat: it then stats r.File (or r.Path) itself, so that the invalidation
// is done before any later request is handled; with
// Config.ScanCloseWrite the file is then scanned as an open is. Opens and
// execs are stated by the workers.
func (g *Guard) Submit(r Request) {
	if r.Permission && r.Answer == nil {
		panic("onaccess: permission request without Answer")
	}
	j := &job{Request: r, g: g, start: time.Now()}
	switch {
	case int(r.Kind) >= len(g.kindEvents) || g.kindEvents[r.Kind] == nil:
		g.m.errors.Inc()
		g.logErr.event("path", r.Path, "err", fmt.Sprintf("unknown access kind %v", r.Kind))
		j.finish(true)
		return
	case r.Kind == CloseWrite:
		// Before the exclusions: a write by an excluded process or in an
		// excluded directory still makes the verdict stale. In Submit, so
		// that an open submitted after it finds it done.
		g.kindEvents[r.Kind].Inc()
		if st, err := j.stat(); err != nil {
			g.m.errors.Inc()
			g.logErr.event("path", r.Path, "err", err.Error())
		} else {
			if !st.NoIdentity {
				g.cache.invalidate(st.Dev, st.Ino)
			}
			j.Stat = &st // the identity written, scanned below
		}
		if !g.scanWrites || j.Stat == nil {
			j.finish(true)
			return
		}
	default:
		g.kindEvents[r.Kind].Inc()
	}
	if g.excl.excluded(&j.Request) {
		g.m.excluded.Inc()
		j.finish(true)
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		if r.Permission {
			g.m.shutdown.Inc()
		}
		j.finish(true)
		return
	}
	if r.Permission {
		g.pending[j] = struct{}{}
		j.timer.Store(time.AfterFunc(g.timeout, j.expire))
	}
	select {
	case g.queue <- j:
		g.mu.Unlock()
		return
	default:
	}
	g.mu.Unlock()
	g.m.queueFull.Inc()
	g.logFull.event("path", r.Path, "pid", r.PID, "exe", r.Exe)
	j.finish(true)
}

// Close answers "allow" to every permission request not answered yet,
// stops the scans in progress (through their context) and returns when
// the workers have. Requests submitted later are allowed at once.
func (g *Guard) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.wg.Wait()
		return nil
	}
	g.closed = true
	pending := make([]*job, 0, len(g.pending))
	for j := range g.pending {
		pending = append(pending, j)
	}
	close(g.queue)
	g.mu.Unlock()
	for _, j := range pending {
		if j.answer(true) {
			g.m.shutdown.Inc()
		}
	}
	g.cancel()
	g.wg.Wait()
	for _, l := range []*rateLog{g.logTimeout, g.logFull, g.logErr} {
		l.flush()
	}
	return nil
}

func (g *Guard) work() {
	defer g.wg.Done()
	for j := range g.queue {
		if g.ctx.Err() == nil && g.process(j) {
			continue // waiting for another worker's scan of the same file
		}
		j.finish(true)
	}
}

// process finds j's verdict and answers it. It returns true when j waits
// for a scan of the same file in progress in another worker, which will
// answer and finish it.
func (g *Guard) process(j *job) (waiting bool) {
	st, err := j.stat()
	if err != nil {
		g.failed(j, err)
		return false
	}
	if g.maxSize > 0 && st.Size > g.maxSize {
		g.m.oversize.Inc()
		j.answer(true)
		return false
	}
	var (
		v   Verdict
		hit bool
		ver version
		gen uint64
	)
	if st.NoIdentity {
		ver.release = g.cache.currentRelease()
	} else {
		v, hit, ver, gen = g.cache.get(st)
	}
	if hit {
		g.m.hits.Inc()
		g.latCache.Observe(time.Since(j.start).Seconds())
		g.decide(j, v, ver.release, true, st, true)
		return false
	}
	g.m.misses.Inc()
	// The same file being scanned (a program started by many processes
	// at once): wait for that scan rather than scan again.
	fk := flightKey{ident{st.Dev, st.Ino}, ver}
	if !st.NoIdentity {
		g.flightMu.Lock()
		if waiters, ok := g.flights[fk]; ok {
			g.flights[fk] = append(waiters, j)
			g.flightMu.Unlock()
			g.m.coalesced.Inc()
			return true
		}
		g.flights[fk] = nil
		g.flightMu.Unlock()
	}
	v, err = g.scan(j)
	var waiters []*job
	if !st.NoIdentity {
		g.flightMu.Lock()
		waiters = g.flights[fk]
		delete(g.flights, fk)
		g.flightMu.Unlock()
	}
	for _, w := range append([]*job{j}, waiters...) {
		switch {
		case err != nil:
			if g.ctx.Err() == nil {
				g.failed(w, err)
			}
			w.answer(true)
		default:
			g.latScan.Observe(time.Since(w.start).Seconds())
			if w == j && !st.NoIdentity {
				g.cache.fill(st, ver, gen, v)
			}
			g.decide(w, v, ver.release, false, st, w == j)
		}
		if w != j {
			w.finish(true)
		}
	}
	return false
}

// scan opens j's file if it came without one, and scans it.
func (g *Guard) scan(j *job) (Verdict, error) {
	if j.File == nil {
		f, err := os.Open(j.Path)
		if err != nil {
			return Verdict{}, err
		}
		j.File = f // closed by finish
	}
	return g.scanner.Scan(g.ctx, j.File)
}

func (g *Guard) failed(j *job, err error) {
	g.m.errors.Inc()
	g.logErr.event("path", j.Path, "err", err.Error())
	j.answer(true)
}

// decide answers j, a request for the file st, with its verdict and
// reports a detection. A clean verdict under the current release is
// passed to j.Clean first when clean is set (not for the requests that
// waited for another's scan: one call per scan is enough).
func (g *Guard) decide(j *job, v Verdict, release string, cached bool, st Stat, clean bool) {
	if !v.Infected {
		if clean && j.Clean != nil && !st.NoIdentity && release == g.cache.currentRelease() {
			j.Clean(st, release)
		}
		j.answer(true)
		return
	}
	blocked := false
	if g.mode == Block && j.Permission {
		blocked = j.answer(false)
	} else {
		j.answer(true)
	}
	if blocked {
		g.m.denied.Inc()
	}
	g.m.detections.Inc()
	if g.onDetection != nil {
		g.onDetection(Detection{
			Path: j.Path, Signature: v.Signature, SHA256: v.SHA256, Size: st.Size, PID: j.PID, Exe: j.Exe, Kind: j.Kind,
			Blocked: blocked, Release: release, Cached: cached, Time: time.Now(),
		})
	}
}

// stat returns j's file's identity.
func (j *job) stat() (Stat, error) {
	switch {
	case j.Stat != nil:
		return *j.Stat, nil
	case j.File != nil:
		return StatFile(j.File)
	default:
		return StatPath(j.Path)
	}
}

// answer answers a permission request if it was not answered yet, and
// reports whether it did.
func (j *job) answer(allow bool) bool {
	if !j.Permission || !j.answered.CompareAndSwap(false, true) {
		return false
	}
	if t := j.timer.Load(); t != nil {
		t.Stop()
	}
	g := j.g
	g.mu.Lock()
	delete(g.pending, j)
	g.mu.Unlock()
	j.Answer(allow)
	return true
}

// expire fails j open when its verdict timeout passes.
func (j *job) expire() {
	if j.answer(true) {
		j.g.m.failOpens.Inc()
		j.g.logTimeout.event("path", j.Path, "pid", j.PID, "exe", j.Exe, "timeout", j.g.timeout.String())
	}
}

// finish answers j (if not yet) and closes its file: j is done with.
func (j *job) finish(allow bool) {
	j.answer(allow)
	if j.File != nil {
		j.File.Close()
	}
}
