package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/fanotify"
	"github.com/vigil-fleet/vigil/internal/onaccess"
	"github.com/vigil-fleet/vigil/internal/scan"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// On-access scanning (docs/onaccess.md): a fanotify group marks the
// filesystems holding OnAccessPaths; one goroutine reads its events and
// hands those under OnAccessPaths to an onaccess.Guard, whose workers
// scan with the agent's engine and answer; a clean verdict is also
// remembered by the kernel (an evictable ignore mark on the file's inode,
// dropped when the file is modified or the definitions change), so that
// a file opened again costs no event at all. Detections are batched into
// scan reports of kind "onaccess", quarantined when the agent has a
// QuarantineDirectory. A supervisor goroutine starts, restarts (mode,
// paths changed; new definitions loaded) and stops all this; every other
// goroutine of the agent goes on as before.
//
// The agent starts no program: a process holding a Block group must not
// (docs/onaccess.md, "The agent must not start a program").

// onAccessConfig is what on-access scanning runs with: the agent's
// preferences, with the server's settings over them.
type onAccessConfig struct {
	Enabled          bool
	Mode             string // "notify" or "block"
	Paths            []string
	Events           []string
	ExcludePaths     []string
	ExcludeProcesses []string
	MaxFileSize      int64
	Timeout          time.Duration
	// Never are the agent's own directories, never scanned on access.
	Never []string
	// Quarantine: move what is found into this directory ("" = report
	// only).
	Quarantine string
}

// same reports whether c and d run the same fanotify group and Guard.
func (c onAccessConfig) same(d onAccessConfig) bool { return reflect.DeepEqual(c, d) }

// onAccessConfig returns the configuration the preferences and settings
// ask for. Main loop only (it reads a.settings).
func (a *Agent) onAccessConfig() onAccessConfig {
	p := a.p
	c := onAccessConfig{
		Enabled: p.OnAccess, Mode: p.OnAccessMode, Paths: p.OnAccessPaths, Events: p.OnAccessEvents,
		ExcludePaths: p.OnAccessExcludePaths, ExcludeProcesses: p.OnAccessExcludeProcesses,
		MaxFileSize: p.OnAccessMaxFileSize, Timeout: p.OnAccessVerdictTimeout,
		Never: []string{p.StateDirectory, a.defsRoot()}, Quarantine: p.QuarantineDirectory,
	}
	if p.QuarantineDirectory != "" {
		c.Never = append(c.Never, p.QuarantineDirectory)
	}
	switch a.settings.OnAccess {
	case command.On:
		c.Enabled = true
	case command.Off:
		c.Enabled = false
	}
	if a.settings.OnAccessMode != "" {
		c.Mode = a.settings.OnAccessMode
	}
	if c.Mode == "" {
		c.Mode = command.Notify
	}
	return c
}

// onAccess is the agent's on-access scanning.
type onAccess struct {
	a       *Agent
	log     *slog.Logger
	metrics *onaccess.Metrics

	want    chan onAccessConfig // the latest configuration asked for (one slot)
	refresh chan struct{}       // the definitions may have changed (one slot)
	changed chan struct{}       // the state changed: check in (one slot)
	reports chan struct{}       // a report was saved: send it (one slot)

	mu    sync.Mutex
	state api.OnAccessState

	detMu      sync.Mutex
	detections []onaccess.Detection // waiting for the reporter
	detDropped int
	detKick    chan struct{}
}

// maxPendingDetections bounds the detections waiting to be reported: a
// process opening an infected file in a loop must not eat the agent's
// memory. Detections past it are counted and logged.
const maxPendingDetections = 10000

func newOnAccess(a *Agent) *onAccess {
	m, _ := onaccess.NewMetrics(nil) // registered by serveMetrics
	return &onAccess{
		a: a, log: a.log.With("part", "on-access"), metrics: m,
		want: make(chan onAccessConfig, 1), refresh: make(chan struct{}, 1),
		changed: make(chan struct{}, 1), reports: make(chan struct{}, 1), detKick: make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// configure asks the supervisor for c (the latest wins).
func (o *onAccess) configure(c onAccessConfig) {
	for {
		select {
		case o.want <- c:
			return
		default:
		}
		select {
		case <-o.want: // replace the older one
		default:
		}
	}
}

// State returns the on-access state as the check-in reports it.
func (o *onAccess) State() *api.OnAccessState {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.state
	s.Paths = slices.Clone(s.Paths)
	return &s
}

func (o *onAccess) setState(s api.OnAccessState) {
	o.mu.Lock()
	old := o.state
	o.state = s
	o.mu.Unlock()
	if old.Enabled != s.Enabled || old.Running != s.Running || old.Mode != s.Mode || old.Error != s.Error || !slices.Equal(old.Paths, s.Paths) {
		signal(o.changed)
	}
}

// run is the supervisor: it runs on-access scanning as asked until ctx
// ends, then stops it (the kernel lets every access through).
func (o *onAccess) run(ctx context.Context) {
	var (
		cur      *onAccessRun
		cfg      onAccessConfig
		haveCfg  bool
		retry    <-chan time.Time
		reporter sync.WaitGroup
	)
	rctx, stopReporter := context.WithCancel(context.Background())
	reporter.Go(func() { o.report(rctx) })
	defer func() {
		if cur != nil {
			cur.stop()
		}
		stopReporter()
		reporter.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case cfg = <-o.want:
			haveCfg = true
		case <-o.refresh:
		case <-retry:
		}
		retry = nil
		if !haveCfg {
			continue
		}
		var err error
		cur, err = o.reconcile(ctx, cur, cfg)
		st := api.OnAccessState{Enabled: cfg.Enabled, Mode: cfg.Mode, Paths: cfg.Paths}
		switch {
		case err != nil:
			st.Error = api.TruncateOnAccessError(err.Error())
			o.log.Error("on-access scanning not running", "err", err)
			if errors.Is(err, errRetry) {
				retry = time.After(time.Minute)
			}
		case cur != nil:
			st.Running = true
		}
		o.setState(st)
	}
}

// errRetry marks errors worth trying again later by themselves (errors.Is).
var errRetry = errors.New("worth retrying")

type retryable struct{ error }

func (retryable) Is(target error) bool { return target == errRetry }

// reconcile makes cur run cfg with the installed definitions; it returns
// the running one, nil when it is off or could not start.
func (o *onAccess) reconcile(ctx context.Context, cur *onAccessRun, cfg onAccessConfig) (*onAccessRun, error) {
	if !cfg.Enabled {
		if cur != nil {
			cur.stop()
			o.log.Info("on-access scanning stopped")
		}
		return nil, nil
	}
	if len(cfg.Paths) == 0 {
		if cur != nil {
			cur.stop()
		}
		return nil, errors.New("no OnAccessPaths in the agent's preferences: nothing to watch")
	}
	defs := o.a.definitionsDir()
	if defs == "" {
		if cur != nil {
			cur.stop()
		}
		return nil, errors.New("no definitions installed: on-access scanning starts once an update installs them")
	}
	eng, err := o.a.engine.get(defs)
	if err != nil {
		if cur != nil {
			cur.stop()
		}
		return nil, retryable{fmt.Errorf("loading definitions: %w", err)}
	}
	if ctx.Err() != nil {
		return cur, nil
	}
	if cur != nil && cur.cfg.same(cfg) {
		cur.use(eng, defs)
		return cur, nil
	}
	if cur != nil {
		cur.stop()
	}
	next, err := o.start(cfg, eng, defs)
	if err != nil {
		return nil, err
	}
	o.log.Info("on-access scanning running", "mode", cfg.Mode, "paths", cfg.Paths, "events", cfg.Events,
		"definitions", filepath.Base(defs), "verdict_timeout", cfg.Timeout, "kernel_marks_pin_inodes", next.group.Pinning())
	return next, nil
}

// onAccessRun is one fanotify group and the Guard answering it.
type onAccessRun struct {
	o       *onAccess
	cfg     onAccessConfig
	group   *fanotify.Group
	guard   *onaccess.Guard
	scanner *engineScanner
	roots   []string // cfg.Paths, cleaned, for scope

	// marksMu orders clean verdicts remembered in the kernel against a
	// change of release: a verdict of the old release is never marked
	// after the flush.
	marksMu sync.RWMutex
	release string
	marks   atomic.Int64 // ignore marks added since the last flush

	cancel context.CancelFunc
	done   chan struct{}
}

// maxIgnoreMarks bounds the ignore marks of a kernel without evictable
// marks (they pin their inodes): past it they are all flushed.
const maxIgnoreMarks = 65536

// start opens a group for cfg and starts reading it.
func (o *onAccess) start(cfg onAccessConfig, eng *scan.Engine, defs string) (*onAccessRun, error) {
	mode, gmode := onaccess.Notify, fanotify.Notify
	if cfg.Mode == command.Block {
		mode, gmode = onaccess.Block, fanotify.Block
	}
	var ops fanotify.Op
	for _, e := range cfg.Events {
		switch e {
		case "open":
			ops |= fanotify.Open
		case "exec":
			ops |= fanotify.Exec
		case "close_write":
			ops |= fanotify.CloseWrite
		}
	}
	g, err := fanotify.New(gmode, ops)
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, fmt.Errorf("on-access scanning needs Linux's fanotify: %w", err)
		}
		return nil, fmt.Errorf("%w (the agent must run as root)", err)
	}
	r := &onAccessRun{o: o, cfg: cfg, group: g, release: defs, done: make(chan struct{})}
	for _, p := range cfg.Paths {
		r.roots = append(r.roots, filepath.Clean(p))
		if err := g.Watch(p, true); err != nil {
			g.Close()
			return nil, err
		}
	}
	lim := unpack.DefaultLimits()
	lim.MaxFileSize = max(lim.MaxFileSize, cfg.MaxFileSize)
	r.scanner = &engineScanner{opts: scan.Options{Limits: lim}}
	r.scanner.eng.Store(eng)
	r.guard, err = onaccess.New(onaccess.Config{
		Mode: mode, ExcludePaths: append(slices.Clone(cfg.ExcludePaths), cfg.Never...), ExcludeExes: cfg.ExcludeProcesses,
		MaxFileSize: cfg.MaxFileSize, VerdictTimeout: cfg.Timeout, Release: defs, ScanCloseWrite: ops&fanotify.CloseWrite != 0,
		OnDetection: o.detected, Logger: o.log, Metrics: o.metrics,
	}, r.scanner)
	if err != nil {
		g.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.read(ctx)
	return r, nil
}

// use makes r scan with eng, of the release in directory defs: when it is
// another, the verdicts of the old one are forgotten, the kernel's too.
func (r *onAccessRun) use(eng *scan.Engine, defs string) {
	if r.scanner.eng.Load() == eng && r.release == defs {
		return
	}
	r.marksMu.Lock()
	defer r.marksMu.Unlock()
	r.scanner.eng.Store(eng)
	r.release = defs
	r.guard.SetRelease(defs)
	r.flush()
	r.o.log.Info("on-access scanning uses new definitions", "definitions", filepath.Base(defs))
}

// flush removes every ignore mark. marksMu held for writing, or the
// reader's caller serialised otherwise.
func (r *onAccessRun) flush() {
	if err := r.group.FlushIgnores(); err != nil {
		r.o.log.Error("forgetting the kernel's verdicts", "err", err)
	}
	r.marks.Store(0)
}

// stop closes the group (the kernel lets every access it holds through)
// and the Guard, and waits for the reader.
func (r *onAccessRun) stop() {
	r.cancel()
	<-r.done
	r.guard.Close()
	r.group.Close()
}

// inScope reports whether path is under one of the trees watched.
func (r *onAccessRun) inScope(path string) bool {
	for _, root := range r.roots {
		if root == "/" || path == root || strings.HasPrefix(path, root) && path[len(root)] == '/' {
			return true
		}
	}
	return false
}

// read reads the group's events and submits them to the Guard until ctx
// ends. It opens no file itself (an open of a watched file would wait for
// this very goroutine).
func (r *onAccessRun) read(ctx context.Context) {
	defer close(r.done)
	buf := make([]byte, fanotify.ReadBufferSize)
	for {
		evs, err := r.group.ReadEvents(ctx, buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, fanotify.ErrVersion) {
				r.o.log.Error("on-access scanning stops: the kernel's fanotify events are of a version this agent does not read", "err", err)
				return
			}
			r.o.log.Warn("reading on-access events", "err", err)
			continue
		}
		outside := 0
		for i := range evs {
			ev := evs[i]
			if ev.Op&fanotify.Overflow != 0 {
				r.o.metrics.AddLost(1)
				r.o.log.Warn("the kernel's on-access event queue overflowed: some accesses were not scanned")
				continue
			}
			path, err := ev.Path()
			if err != nil || !r.inScope(path) {
				outside++
				r.group.Respond(&ev, true)
				ev.Close()
				continue
			}
			r.submit(&ev, path)
		}
		if outside > 0 {
			r.o.metrics.AddOutside(outside)
		}
	}
}

// submit hands one event under the trees watched to the Guard.
func (r *onAccessRun) submit(ev *fanotify.Event, path string) {
	kind := onaccess.Open
	switch {
	case ev.Op&fanotify.CloseWrite != 0:
		kind = onaccess.CloseWrite
	case ev.Op&fanotify.Exec != 0:
		kind = onaccess.Exec
	}
	exe, _ := ev.ProcessExe()
	e := *ev
	req := onaccess.Request{
		Kind: kind, Path: path, PID: ev.PID, Exe: exe, File: ev.File, Permission: ev.Permission(),
		Clean: func(st onaccess.Stat, release string) { r.remember(e.File, st, release) },
	}
	if req.Permission {
		req.Answer = func(allow bool) {
			if err := r.group.Respond(&e, allow); err != nil && !errors.Is(err, os.ErrClosed) {
				r.o.log.Warn("answering an on-access event", "path", path, "err", err)
			}
		}
	}
	r.guard.Submit(req)
}

// remember makes the kernel remember that f, of identity st, is clean
// under release: an ignore mark on its inode, which the kernel drops when
// the file is modified. The mark is taken back when the file changed
// since its verdict (a write between the scan and the mark).
func (r *onAccessRun) remember(f *os.File, st onaccess.Stat, release string) {
	if r.group.Pinning() && r.marks.Load() >= maxIgnoreMarks {
		r.marksMu.Lock()
		if r.marks.Load() >= maxIgnoreMarks {
			r.flush()
		}
		r.marksMu.Unlock()
	}
	r.marksMu.RLock()
	defer r.marksMu.RUnlock()
	if release != r.release {
		return
	}
	if err := r.group.IgnoreFile(f); err != nil {
		return // the Guard's cache still holds the verdict
	}
	r.marks.Add(1)
	now, err := onaccess.StatFile(f)
	if err != nil || now != st {
		r.group.Unignore(f)
	}
}

// engineScanner scans with the agent's engine, swapped when the
// definitions change.
type engineScanner struct {
	eng  atomic.Pointer[scan.Engine]
	opts scan.Options
}

func (s *engineScanner) Scan(ctx context.Context, f *os.File) (onaccess.Verdict, error) {
	fi, err := f.Stat()
	if err != nil {
		return onaccess.Verdict{}, err
	}
	if !fi.Mode().IsRegular() {
		// A FIFO or a device: reading it would take its data or block.
		return onaccess.Verdict{}, nil
	}
	res, err := s.eng.Load().ScanFile(ctx, f, fi.Size(), f.Name(), s.opts)
	if err != nil || len(res.Signatures) == 0 {
		return onaccess.Verdict{}, err
	}
	v := onaccess.Verdict{Infected: true, Signature: res.Signatures[0]}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err == nil {
		v.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	return v, nil
}

// detected takes a detection from a Guard's worker: it queues it for the
// reporter and returns at once.
func (o *onAccess) detected(d onaccess.Detection) {
	o.detMu.Lock()
	if len(o.detections) < maxPendingDetections {
		o.detections = append(o.detections, d)
	} else {
		o.detDropped++
	}
	o.detMu.Unlock()
	signal(o.detKick)
}

// reportBatch is how long the reporter gathers detections before saving
// them as one report: a burst (a tree of infected files extracted) is one
// report, not thousands.
const reportBatch = 500 * time.Millisecond

// report saves the detections as scan reports of kind onaccess,
// quarantining files as the policy says, until ctx ends.
func (o *onAccess) report(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			o.flushDetections() // none is lost when on-access stops
			return
		case <-o.detKick:
		}
		select {
		case <-ctx.Done():
		case <-time.After(reportBatch):
		}
		o.flushDetections()
	}
}

// flushDetections saves the detections waiting as one report.
func (o *onAccess) flushDetections() {
	o.detMu.Lock()
	ds, dropped := o.detections, o.detDropped
	o.detections, o.detDropped = nil, 0
	o.detMu.Unlock()
	if dropped > 0 {
		o.log.Error("on-access detections not reported: too many at once", "dropped", dropped)
	}
	if len(ds) == 0 {
		return
	}
	qdir := o.a.p.QuarantineDirectory
	rep := api.ScanReport{ReportID: randomID(), Kind: api.ScanKindOnAccess, StartedAt: ds[0].Time.UTC(), FinishedAt: ds[len(ds)-1].Time.UTC()}
	type key struct {
		path, sig, access string
		pid               int
		blocked           bool
	}
	seen := map[key]bool{}
	files := map[string]bool{}
	quarantined := map[string]string{}
	for _, d := range ds {
		k := key{d.Path, d.Signature, d.Kind.String(), d.PID, d.Blocked}
		if seen[k] {
			continue // the same process at the same file, again
		}
		seen[k] = true
		rep.DefsVer = filepath.Base(d.Release)
		det := api.Detection{Signature: d.Signature, SHA256: d.SHA256, FoundAt: d.Time.UTC(),
			Access: d.Kind.String(), PID: d.PID, Blocked: d.Blocked}
		if filepath.IsAbs(d.Exe) {
			det.Process = d.Exe
		}
		det.SetPath(d.Path)
		files[d.Path] = true
		if qdir != "" && d.SHA256 != "" {
			if id, ok := quarantined[d.Path]; ok {
				det.Quarantine = id
			} else if id, err := (Quarantine{Dir: qdir}).Put(Scanned{Path: d.Path, Size: d.Size, SHA256: d.SHA256}, d.Signature); err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					o.log.Error("quarantine failed", "path", showPath(d.Path), "err", err)
				}
			} else {
				quarantined[d.Path], det.Quarantine = id, id
			}
		}
		o.log.Warn("infected file accessed", "path", showPath(d.Path), "signature", d.Signature, "access", det.Access,
			"blocked", d.Blocked, "pid", d.PID, "process", d.Exe, "quarantine", det.Quarantine)
		rep.Detections = append(rep.Detections, det)
	}
	rep.Files = int64(len(files))
	if err := o.a.savePendingScan(rep); err != nil {
		o.log.Error("saving on-access detections", "err", err)
		return
	}
	o.a.onEvent(Event{Kind: EventDetected, Agent: o.a.ID(), Count: len(rep.Detections)})
	signal(o.reports)
}
