package transport

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/vigil-fleet/vigil/internal/config"
)

// RateLimits is the defence against TUF's slow-retrieval attack, in which
// a server (or someone on the path) sends genuine files so slowly that a
// client never gets to the end and never tries another server, while no
// single wait is long enough to time out:
//
//   - every transfer (metadata or target, HTTP or FTP) must average at
//     least MinRate bytes per second over the last Window, judged from
//     Grace after its request on (a file that ends within the grace period
//     is never judged); a slower transfer is abandoned with a *SlowError;
//   - a session with one server (a metadata refresh and the downloads it
//     leads to) must end within Allowance plus the time its bytes take at
//     MinRate, the bytes being the lengths the signed metadata gives for
//     the files the session fetches (the snapshot and targets metadata and
//     the targets), and the lengths of the roots and timestamp received,
//     whose lengths are not signed; past that deadline the session ends
//     with a *SessionDeadlineError.
//
// The client then goes on with its next server (the mirror: its next
// address).
type RateLimits struct {
	// MinRate is the minimum rate in bytes per second. Zero means
	// config.DefaultMinRate; negative turns the defence off (no minimum rate and
	// no session deadline).
	MinRate int64
	// Window is the span over which the rate is measured (zero:
	// config.DefaultRateWindow).
	Window time.Duration
	// Grace is how long a transfer may run before its rate is first
	// judged (zero: config.DefaultRateGrace; negative: judged from the start).
	Grace time.Duration
	// Allowance is the fixed part of a session's deadline (zero:
	// config.DefaultSessionAllowance).
	Allowance time.Duration
}

// WithDefaults fills in the defaults of zero fields and checks l.
func (l RateLimits) WithDefaults() (RateLimits, error) {
	if l.MinRate == 0 {
		l.MinRate = config.DefaultMinRate
	}
	switch {
	case l.Window == 0:
		l.Window = config.DefaultRateWindow
	case l.Window < 0:
		return l, fmt.Errorf("rate window %v: want a positive duration", l.Window)
	}
	switch {
	case l.Grace == 0:
		l.Grace = config.DefaultRateGrace
	case l.Grace < 0:
		l.Grace = 0
	}
	switch {
	case l.Allowance == 0:
		l.Allowance = config.DefaultSessionAllowance
	case l.Allowance < 0:
		return l, fmt.Errorf("session allowance %v: want a positive duration", l.Allowance)
	}
	return l, nil
}

func (l RateLimits) off() bool { return l.MinRate < 0 }

// String describes l for messages.
func (l RateLimits) String() string {
	if l.off() {
		return "no minimum transfer rate"
	}
	return fmt.Sprintf("at least %s/s over %v (after %v), sessions within %v + their bytes at that rate",
		HumanBytes(l.MinRate), l.Window, l.Grace, l.Allowance)
}

// SlowError is a transfer abandoned because it was slower than the
// minimum rate.
type SlowError struct {
	What    string        // "GET URL" or "RETR URL"
	Bytes   int64         // received during Over
	Over    time.Duration // the span measured
	MinRate int64
}

func (e *SlowError) Error() string {
	return fmt.Sprintf("%s: too slow: %s in %v (%s/s), below the minimum of %s/s: abandoned (slow retrieval)",
		e.What, HumanBytes(e.Bytes), e.Over.Round(time.Millisecond),
		HumanBytes(int64(float64(e.Bytes)/e.Over.Seconds())), HumanBytes(e.MinRate))
}

// SessionDeadlineError ends a session that took longer than its
// deadline: RateLimits.Allowance plus Bytes at RateLimits.MinRate.
type SessionDeadlineError struct {
	Allowance time.Duration
	Bytes     int64
	MinRate   int64
}

func (e *SessionDeadlineError) Error() string {
	return fmt.Sprintf("session deadline passed after %v (%v allowance + %s of signed lengths at the minimum rate of %s/s): the server is too slow (slow retrieval)",
		(e.Allowance + bytesTime(e.Bytes, e.MinRate)).Round(time.Millisecond), e.Allowance, HumanBytes(e.Bytes), HumanBytes(e.MinRate))
}

// IsSlow reports whether err is a transfer or a session abandoned by the
// slow-retrieval defence.
func IsSlow(err error) bool {
	var s *SlowError
	var d *SessionDeadlineError
	return errors.As(err, &s) || errors.As(err, &d)
}

// bytesTime is how long n bytes take at rate bytes per second.
func bytesTime(n, rate int64) time.Duration {
	if rate <= 0 || n <= 0 {
		return 0
	}
	return time.Duration(float64(n) / float64(rate) * float64(time.Second))
}

// HumanBytes formats n as "512 B", "4.0 KiB", "1.5 MiB"...
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Meter watches the rate of one transfer. Its methods are safe for
// concurrent use; a nil *Meter (no limits) does nothing.
type Meter struct {
	lim   RateLimits
	what  string
	abort func(error)
	start time.Time
	tick  time.Duration
	total atomic.Int64

	mu      sync.Mutex
	samples []sample // (time, total) at each tick within the window, oldest first
	timer   *time.Timer
	stopped bool
	err     error
}

type sample struct {
	t     time.Time
	total int64
}

// Watch starts watching a transfer described by what ("GET URL"), which
// starts now. When the transfer falls below the minimum rate, abort is
// called once, with a *SlowError (which Err returns from then on): it
// must make the transfer's reads fail. Call Add as bytes arrive and Stop
// when the transfer ends. Watch returns nil when the defence is off.
func (l RateLimits) Watch(what string, abort func(error)) *Meter {
	if l.off() {
		return nil
	}
	m := &Meter{lim: l, what: what, abort: abort, start: time.Now()}
	m.tick = max(l.Window/8, 10*time.Millisecond)
	m.samples = []sample{{t: m.start}}
	m.mu.Lock() // check, which may run at once, reads m.timer
	m.timer = time.AfterFunc(m.tick, m.check)
	m.mu.Unlock()
	return m
}

// Add counts n bytes received.
func (m *Meter) Add(n int) {
	if m != nil && n > 0 {
		m.total.Add(int64(n))
	}
}

// Err returns the *SlowError the transfer was abandoned with, or nil.
func (m *Meter) Err() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Stop ends the watch; it returns Err.
func (m *Meter) Stop() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	m.timer.Stop()
	return m.err
}

// check records a sample and, once the grace period is over, judges the
// rate over the window.
func (m *Meter) check() {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	now := time.Now()
	total := m.total.Load()
	m.samples = append(m.samples, sample{t: now, total: total})
	// Keep, as the base, the newest sample at or before the window's start.
	from := now.Add(-m.lim.Window)
	for len(m.samples) > 1 && !m.samples[1].t.After(from) {
		m.samples = m.samples[1:]
	}
	if now.Sub(m.start) < m.lim.Grace {
		m.timer.Reset(m.tick)
		m.mu.Unlock()
		return
	}
	base := m.samples[0]
	over := now.Sub(base.t)
	got := total - base.total
	if float64(got) >= float64(m.lim.MinRate)*over.Seconds() {
		m.timer.Reset(m.tick)
		m.mu.Unlock()
		return
	}
	m.err = &SlowError{What: m.what, Bytes: got, Over: over, MinRate: m.lim.MinRate}
	m.stopped = true
	err := m.err
	m.mu.Unlock()
	m.abort(err)
}

// Budget is the deadline of a session with one server: Allowance plus
// the time its bytes take at MinRate, extended by Add as the signed
// metadata tells how many bytes the session fetches. Its methods are safe
// for concurrent use; a nil *Budget (no limits) does nothing.
type Budget struct {
	lim    RateLimits
	cancel context.CancelCauseFunc

	mu    sync.Mutex
	start time.Time
	bytes int64
	timer *time.Timer
	ended bool
}

// Session returns a context for a session with one server, which ends
// with a *SessionDeadlineError as its cause when the session's deadline
// passes, the session's Budget, and a function to release them (call it
// when the session ends). With the defence off the context has no
// deadline and the Budget is nil.
func (l RateLimits) Session(ctx context.Context) (context.Context, *Budget, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if l.off() {
		return ctx, nil, func() { cancel(nil) }
	}
	b := &Budget{lim: l, cancel: cancel, start: time.Now()}
	b.mu.Lock() // expire, which may run at once, reads b.timer
	b.timer = time.AfterFunc(l.Allowance, b.expire)
	b.mu.Unlock()
	return ctx, b, func() {
		b.mu.Lock()
		b.ended = true
		b.timer.Stop()
		b.mu.Unlock()
		cancel(nil)
	}
}

// Add extends the deadline by the time n bytes take at the minimum rate.
func (b *Budget) Add(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.bytes += n
	b.timer.Reset(time.Until(b.deadline()))
}

// Bytes returns the bytes the deadline allows for so far.
func (b *Budget) Bytes() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes
}

func (b *Budget) deadline() time.Time {
	return b.start.Add(b.lim.Allowance + bytesTime(b.bytes, b.lim.MinRate))
}

func (b *Budget) expire() {
	b.mu.Lock()
	if b.ended {
		b.mu.Unlock()
		return
	}
	if d := time.Until(b.deadline()); d > 0 { // extended meanwhile
		b.timer.Reset(d)
		b.mu.Unlock()
		return
	}
	b.ended = true
	err := &SessionDeadlineError{Allowance: b.lim.Allowance, Bytes: b.bytes, MinRate: b.lim.MinRate}
	b.mu.Unlock()
	b.cancel(err)
}

// BudgetFetcher wraps a go-tuf fetcher so that each file it fetches
// extends b: by the length go-tuf allows for it before the transfer when
// that length is signed (snapshot and targets metadata, targets), by the
// length received afterwards for roots and timestamp.json, whose length
// go-tuf does not know (it passes its own maximum). With a nil b it
// returns f.
func BudgetFetcher(f fetcher.Fetcher, b *Budget) fetcher.Fetcher {
	if b == nil {
		return f
	}
	return &budgetFetcher{f: f, b: b}
}

type budgetFetcher struct {
	f fetcher.Fetcher
	b *Budget
}

func (bf *budgetFetcher) DownloadFile(u string, maxLength int64, timeout time.Duration) ([]byte, error) {
	signed := !unsignedLength(u)
	if signed {
		bf.b.Add(maxLength)
	}
	data, err := bf.f.DownloadFile(u, maxLength, timeout)
	if !signed {
		bf.b.Add(int64(len(data)))
	}
	return data, err
}

// unsignedLength reports whether the file at u is one whose length no
// signed metadata gives: a root (N.root.json) or timestamp.json.
func unsignedLength(u string) bool {
	p := u
	if pu, err := url.Parse(u); err == nil {
		p = pu.Path
	}
	if path.Base(path.Dir(p)) != "metadata" {
		return false
	}
	base := path.Base(p)
	return base == "timestamp.json" || strings.HasSuffix(base, ".root.json")
}
