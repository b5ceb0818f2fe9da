package lucache

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// Config configures a Cache.
type Config struct {
	// LiveUpdate is how the cache serves: listening addresses, passive
	// ports, public host, timeouts and limits, as a LiveUpdate server's
	// (package liveupdate, and its defaults). Its Root is ignored: Dir
	// is served.
	LiveUpdate config.LiveUpdate
	// Dir is the cache directory, created if missing. It belongs to the
	// cache: the same layout as a mirror's (metadata/, targets/, and
	// .mirror/, which is never served).
	Dir string
	// Upstream is the repository filled from: an ftp://, http:// or
	// https:// URL of a repository's public directory (a LiveUpdate
	// server or a mirror). Its host name is resolved on each refresh and
	// every address probed, as the mirror does.
	Upstream string
	// Root is the pinned root metadata (the repository's 1.root.json).
	Root []byte
	// MetadataMaxAge is how old the cache's view of the upstream may be
	// when a client asks for timestamp.json before the cache asks the
	// upstream again; 0 asks on every request (requests that arrive
	// during a refresh wait for it rather than starting another).
	MetadataMaxAge time.Duration
	// Keep is the number of previous states kept besides the current one
	// (their metadata, and the targets already fetched), for clients in
	// the middle of an update when a refresh lands: 0 means
	// config.DefaultMirrorKeep, a negative number none.
	Keep int
	// Timeout bounds each wait on the upstream (connecting, a reply, a
	// pause in a transfer); 0 means config.DefaultMirrorTimeout.
	Timeout time.Duration
	// MinRate is the slow-retrieval defence's minimum transfer rate from
	// the upstream, in bytes per second (transport.RateLimits): 0 means
	// config.DefaultMinRate, negative turns the defence off.
	MinRate int64
	// Resolver is a DNS server's "host:port" to resolve the upstream's
	// name with; "" means the system's.
	Resolver string
	// TLS is the client TLS configuration for an https:// upstream; nil
	// means the system's roots, or CAFile's certificates when CAFile is
	// set.
	TLS *tls.Config
	// CAFile is a PEM file of the CA certificates an https:// upstream is
	// verified with (when TLS is nil).
	CAFile string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// AccessLog receives the LiveUpdate server's access log (see package
	// liveupdate); nil: none.
	AccessLog io.Writer
	// Registerer, if set, registers the cache's metrics
	// (vigil_lucache_…).
	Registerer prometheus.Registerer
}

// Cache is a caching LiveUpdate server (see the package documentation).
type Cache struct {
	cfg    Config
	m      *mirror.Mirror
	srv    *liveupdate.Server
	log    *slog.Logger
	met    *metrics
	ctx    context.Context // the fills' and refreshes' context: done at Close or when Serve ends
	cancel context.CancelFunc
	sem    chan struct{} // downloads at once
	now    func() time.Time

	mu         sync.Mutex
	states     []*mirror.LocalState // current first
	checked    time.Time            // start of the last refresh that ended
	lastErr    error                // of that refresh
	refreshing *flight
	fills      map[string]*flight // by served name
}

// flight is one refresh or one download that requests wait for.
type flight struct {
	done    chan struct{}
	err     error
	waiters int // requests waiting (under Cache.mu; for tests)
}

// fillParallel is the most targets downloaded at once.
const fillParallel = config.DefaultMirrorParallel

// New checks cfg, creates Dir if missing, reads the states it holds
// (refusing a directory that holds another repository) and prepares the
// LiveUpdate server. It contacts nothing and does not listen yet.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("lucache: no cache directory")
	}
	if cfg.Upstream == "" {
		return nil, errors.New("lucache: no upstream URL")
	}
	if cfg.MetadataMaxAge < 0 {
		return nil, fmt.Errorf("lucache: metadata max age %v: want 0 or more", cfg.MetadataMaxAge)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("lucache: %w", err)
	}
	cfg.Dir = dir
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Keep == 0:
		cfg.Keep = config.DefaultMirrorKeep
	case cfg.Keep < 0:
		cfg.Keep = 0
	}
	if cfg.TLS == nil && cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("lucache: CA certificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("lucache: CA certificates: %s holds no PEM certificate", cfg.CAFile)
		}
		cfg.TLS = &tls.Config{RootCAs: pool}
	}
	c := &Cache{cfg: cfg, log: cfg.Logger, fills: map[string]*flight{}, sem: make(chan struct{}, fillParallel), now: time.Now}
	c.m, err = mirror.New(mirror.Config{
		Upstream: cfg.Upstream, Root: cfg.Root, Dir: dir, Resolver: cfg.Resolver, Keep: cfg.Keep,
		Timeout: cfg.Timeout, MinRate: cfg.MinRate, TLS: cfg.TLS, Out: &lineLogger{log: cfg.Logger},
	})
	if err != nil {
		return nil, fmt.Errorf("lucache: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "metadata"), filepath.Join(dir, "targets")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("lucache: cache directory: %w", err)
		}
	}
	if c.states, err = c.m.LocalStates(); err != nil {
		return nil, fmt.Errorf("lucache: cache directory: %w", err)
	}
	c.met = newMetrics()
	if cfg.Registerer != nil {
		if err := c.met.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("lucache: metrics: %w", err)
		}
	}
	lc := liveupdate.Config{LiveUpdate: cfg.LiveUpdate, Logger: cfg.Logger, AccessLog: cfg.AccessLog, Fill: c.fill, Hit: c.hit}
	lc.Root = dir
	if c.srv, err = liveupdate.New(lc); err != nil {
		return nil, fmt.Errorf("lucache: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if len(c.states) > 0 {
		c.log.Info("cache holds a verified state", "dir", dir, "timestamp", c.states[0].Timestamp,
			"snapshot", c.states[0].Snapshot, "kept_states", len(c.states)-1)
	}
	return c, nil
}

// Listen binds the configured addresses (Serve calls it if needed).
func (c *Cache) Listen() error { return c.srv.Listen() }

// HTTPAddr is the HTTP listening address, nil before Listen or when HTTP
// is off.
func (c *Cache) HTTPAddr() net.Addr { return c.srv.HTTPAddr() }

// FTPAddr is the FTP control listening address, nil before Listen or when
// FTP is off.
func (c *Cache) FTPAddr() net.Addr { return c.srv.FTPAddr() }

// Serve serves until ctx is done, then shuts down as a LiveUpdate server
// does (see liveupdate.Server.Serve); refreshes and downloads in progress
// are abandoned (a partial download is resumed by the next fill). A Cache
// serves once.
func (c *Cache) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, c.cancel)
	defer stop()
	err := c.srv.Serve(ctx)
	c.cancel()
	c.m.CloseIdleConnections()
	return err
}

// Close stops a cache that was never served (a served one stops when
// Serve's context is done).
func (c *Cache) Close() error {
	c.cancel()
	c.m.CloseIdleConnections()
	return c.srv.Close()
}

// Dir is the cache directory (absolute).
func (c *Cache) Dir() string { return c.cfg.Dir }

// The names the cache knows.
const (
	timestampName = "metadata/timestamp.json"
	metadataDir   = "metadata/"
	targetsDir    = "targets/"
)

// fill is the LiveUpdate server's Config.Fill.
func (c *Cache) fill(ctx context.Context, name string) error {
	switch {
	case name == timestampName:
		return c.revalidate(ctx)
	case strings.HasPrefix(name, metadataDir):
		// Versioned metadata of the kept states is in the directory.
		// Before the first state, a client asking for the next root
		// makes the cache look at the upstream (it asks for
		// timestamp.json next).
		if !c.hasState() && strings.HasSuffix(name, ".root.json") {
			if err := c.revalidate(ctx); err != nil {
				return err
			}
			return nil
		}
		c.met.unknown.Inc()
		return fmt.Errorf("%s: %w: not the metadata of a state the cache keeps", name, fs.ErrNotExist)
	case strings.HasPrefix(name, targetsDir):
		if !c.hasState() {
			if err := c.revalidate(ctx); err != nil {
				return err
			}
		}
		t, ok := c.lookup(name)
		if !ok {
			c.met.unknown.Inc()
			c.log.Debug("cache: not named by a kept state: not fetched", "path", name)
			return fmt.Errorf("%s: %w: named by no verified state the cache keeps", name, fs.ErrNotExist)
		}
		return c.fetch(ctx, t)
	}
	c.met.unknown.Inc()
	return fmt.Errorf("%s: %w: not a repository file", name, fs.ErrNotExist)
}

// hit is the LiveUpdate server's Config.Hit.
func (c *Cache) hit(name string) {
	if strings.HasPrefix(name, targetsDir) {
		c.met.hits.WithLabelValues("target").Inc()
	} else {
		c.met.hits.WithLabelValues("metadata").Inc()
	}
}

func (c *Cache) hasState() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.states) > 0
}

// lookup finds a served name in the kept states, newest first.
func (c *Cache) lookup(name string) (mirror.Target, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.states {
		if t, ok := s.Files[name]; ok {
			return t, true
		}
	}
	return mirror.Target{}, false
}

// revalidate refreshes the cache's view of the upstream if it is older
// than MetadataMaxAge, or joins the refresh in progress, and reports
// whether there is a verified state to serve.
func (c *Cache) revalidate(ctx context.Context) error {
	c.mu.Lock()
	if !c.checked.IsZero() && c.cfg.MetadataMaxAge > 0 && c.now().Sub(c.checked) < c.cfg.MetadataMaxAge {
		err := c.noStateLocked()
		c.mu.Unlock()
		return err
	}
	f := c.refreshing
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.refreshing = f
		go c.refresh(f)
	}
	c.mu.Unlock()
	if err := c.wait(ctx, f); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.noStateLocked()
}

// noStateLocked is the error when there is no verified state to serve.
func (c *Cache) noStateLocked() error {
	if len(c.states) > 0 {
		return nil
	}
	if c.lastErr != nil {
		return fmt.Errorf("%w: no verified state from %s yet: %v", liveupdate.ErrUnavailable, c.cfg.Upstream, c.lastErr)
	}
	return fmt.Errorf("%w: no verified state from %s yet", liveupdate.ErrUnavailable, c.cfg.Upstream)
}

// wait waits for f, ctx or the cache's end.
func (c *Cache) wait(ctx context.Context, f *flight) error {
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", liveupdate.ErrUnavailable, context.Cause(ctx))
	case <-c.ctx.Done():
		return fmt.Errorf("%w: the cache is stopping", liveupdate.ErrUnavailable)
	}
}

// refresh runs one metadata sync and reads the states it leaves.
func (c *Cache) refresh(f *flight) {
	start := c.now()
	sum, err := c.m.SyncMetadata(c.ctx)
	// Even a failed sync may have published a state (behind the newest).
	states, lerr := c.m.LocalStates()
	result := "unchanged"
	switch {
	case err != nil && errors.As(err, new(*mirror.BehindError)):
		result = "behind"
	case err != nil:
		result = "failed"
	case sum.After.Timestamp != sum.Before.Timestamp || sum.After.Root != sum.Before.Root:
		result = "updated"
	}
	c.met.refreshes.WithLabelValues(result).Inc()
	if n := sum.Refusals(); n > 0 {
		c.met.verifyFailures.WithLabelValues("metadata").Add(float64(n))
	}
	c.mu.Lock()
	if lerr == nil {
		c.states = states
	}
	c.checked, c.lastErr = start, err
	c.refreshing = nil
	have := int64(0)
	if len(c.states) > 0 {
		have = c.states[0].Timestamp
	}
	c.mu.Unlock()
	switch {
	case lerr != nil:
		c.log.Error("cache: reading the cache directory's states", "dir", c.cfg.Dir, "err", lerr)
	case err != nil && have > 0:
		c.log.Warn("cache: refresh from the upstream failed: serving the last verified state",
			"upstream", c.cfg.Upstream, "timestamp", have, "err", err)
	case err != nil:
		c.log.Warn("cache: refresh from the upstream failed, and there is no verified state yet",
			"upstream", c.cfg.Upstream, "err", err)
	case result == "updated":
		c.log.Info("cache: new state", "upstream", c.cfg.Upstream, "from", sum.Chosen, "timestamp", sum.After.Timestamp,
			"snapshot", sum.After.Snapshot, "targets", sum.After.Targets, "root", sum.After.Root, "target_files", sum.After.TargetFiles,
			"seconds", c.now().Sub(start).Seconds())
	default:
		c.log.Debug("cache: up to date", "upstream", c.cfg.Upstream, "timestamp", have)
	}
	close(f.done)
}

// fetch fills target t, or waits for its download in progress.
func (c *Cache) fetch(ctx context.Context, t mirror.Target) error {
	c.mu.Lock()
	f := c.fills[t.Served]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.fills[t.Served] = f
		go c.download(f, t)
	}
	f.waiters++
	c.mu.Unlock()
	if err := c.wait(ctx, f); err != nil {
		return err
	}
	return f.err
}

// download runs one FetchTarget for the requests waiting on f.
func (c *Cache) download(f *flight, t mirror.Target) {
	defer func() {
		c.mu.Lock()
		delete(c.fills, t.Served)
		c.mu.Unlock()
		close(f.done)
	}()
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		f.err = fmt.Errorf("%w: the cache is stopping", liveupdate.ErrUnavailable)
		return
	}
	start := time.Now()
	res, err := c.m.FetchTarget(c.ctx, t)
	<-c.sem
	c.met.fillBytes.Add(float64(res.Bytes))
	switch {
	case err == nil && res.Present:
		c.met.fills.WithLabelValues("present").Inc()
	case err == nil:
		c.met.fills.WithLabelValues("ok").Inc()
		c.log.Info("cache: filled", "target", t.Path, "path", t.Served, "bytes", t.File.Length, "received", res.Bytes,
			"resumed", res.Resumed, "from", res.Address, "seconds", time.Since(start).Seconds())
	case errors.Is(err, mirror.ErrRefused):
		c.met.fills.WithLabelValues("refused").Inc()
		c.met.verifyFailures.WithLabelValues("target").Inc()
		c.log.Error("cache: the upstream's file does not verify: refused, nothing kept", "target", t.Path, "path", t.Served, "err", err)
		f.err = fmt.Errorf("%w: %s refused: %w", liveupdate.ErrUnavailable, t.Path, err)
	case transport.IsNotFound(err):
		c.met.fills.WithLabelValues("not_found").Inc()
		c.log.Warn("cache: the upstream lacks a target its metadata names", "target", t.Path, "path", t.Served, "err", err)
		f.err = fmt.Errorf("%s: %w: %w", t.Path, fs.ErrNotExist, err)
	default:
		c.met.fills.WithLabelValues("failed").Inc()
		c.log.Warn("cache: fetching a target from the upstream failed", "target", t.Path, "path", t.Served, "err", err)
		f.err = fmt.Errorf("%w: fetching %s: %w", liveupdate.ErrUnavailable, t.Path, err)
	}
}

// lineLogger turns the mirror's report lines into debug log records.
type lineLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.log.Debug("cache: upstream", "report", strings.TrimSpace(string(l.buf[:i])))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}
