// Package relay is the relay daemon (vigil relay): one per subnet the
// server's multicast does not reach. A relay enrolls with the server like
// an agent, keeps a long-lived, resumable stream of the server's signed
// datagrams (GET /v1/relay/stream?after=N, internal/api) and multicasts
// each one verbatim on its own subnet, with its own group, port,
// interface and TTL.
//
// What it relays: a relay multicasts only datagrams that verify under the
// server's pinned key (wire.Verify: key id, Ed25519 signature, expiry);
// everything else is dropped and counted by reason. Agents verify every
// datagram anyway, so a relay can delay or drop, never forge; the check
// here is defence in depth, and keeps a relay that is fed garbage from
// flooding its subnet with it. Command datagrams (and references to large
// commands) are sent Repeat times, RepeatGap apart, as the server sends
// them; beacons once.
//
// Where it is: the relay records the highest command sequence it has
// relayed (beacons carry the latest sequence but do not move it), with
// its epoch and credential, in StateDir/relay.json (mode 0600, written
// atomically at most once a second and on exit), and resumes the stream
// after it on every reconnection (exponential backoff with jitter, one
// second to a minute) and restart. When the server moves to a new epoch
// (its data directory was restored from a backup), the relay learns where
// the new epoch starts from the signed epoch statement of its next
// check-in, brought forward by the first datagram it sees signed in the
// new epoch, and reopens the stream from there, so a restore does not make
// it skip commands.
//
// What it runs: nothing. A command that targets the relay (by its id or
// one of its groups) is answered with status "unsupported", so that the
// command's progress completes; the relay checks in at the interval the
// server gives, so that it shows as alive in vigil agents.
//
// Its metrics (Prometheus, its own registry) are served on MetricsListen:
// vigil_relay_stream_connected, vigil_relay_stream_reconnects_total,
// vigil_relay_datagrams_relayed_total{kind}, vigil_relay_datagrams_dropped_total{reason},
// vigil_relay_last_seq, vigil_relay_stream_lag_seconds and a few more.
//
// The relay's definitions cache (config.Relay's Upstream and the fields
// that go with it) is package lucache; vigil relay (internal/cli) runs it
// beside the relay, with its metrics in the relay's registry.
package relay

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Config is a relay's configuration: its settings (flags and preference
// keys) and what a program gives it.
type Config struct {
	config.Relay
	// Logger receives the relay's log; nil discards it.
	Logger *slog.Logger
	// OnEvent, when set, is called for each event, from the relay's
	// goroutines: it must be safe for concurrent use and return quickly.
	OnEvent func(Event)
}

// EventKind says what happened.
type EventKind string

// Events a relay reports through Config.OnEvent.
const (
	EventEnrolled  EventKind = "enrolled"   // Seq: the sequence it starts after
	EventConnected EventKind = "connected"  // Seq: the stream's after
	EventRelayed   EventKind = "relayed"    // Seq, Kind: a datagram multicast (its first copy)
	EventDropped   EventKind = "dropped"    // Reason: a datagram not multicast
	EventAnswered  EventKind = "answered"   // Seq: an unsupported result the server accepted
	EventCheckIn   EventKind = "checked_in" // Seq: the server's latest
	EventEpoch     EventKind = "epoch"      // Seq: the sequence it starts after in the new epoch
)

// Event is something the relay did.
type Event struct {
	Kind   EventKind
	Seq    uint64
	Datum  wire.Kind // for EventRelayed
	Reason string    // for EventDropped
}

// Relay is a running relay.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	key      ed25519.PublicKey
	keyID    [8]byte
	hostname string
	http     *http.Client // API calls (bounded)
	streamHC *http.Client // the stream (no overall timeout)
	sender   *mcast.Sender
	sendMu   sync.Mutex
	m        *metrics
	reg      *prometheus.Registry

	saveMu       sync.Mutex // held while the state file is written
	mu           sync.Mutex
	st           State
	dirty        bool
	enrolledOK   bool
	timing       api.Timing
	unauthorized int
	beaconEvery  time.Duration // learned from beacons; 0 until one arrives
	warnedEpoch  uint64        // the other epoch last logged
	dropLogged   time.Time     // when a drop was last logged as a warning

	reconnect  chan struct{} // reopen the stream (new epoch, new credential)
	checkinNow chan struct{} // check in at once (news of another epoch)
	answers    chan answer   // commands that target the relay
	repeatSem  chan struct{} // bounds the repeats in flight
	wg         sync.WaitGroup
	runCtx     context.Context
	fatal      chan error
	lock       *os.File // holds the flock on StateDir/relay.lock

	closeOnce sync.Once
}

// State file and limits.
const (
	// FileState is the relay's state in StateDir: credential, epoch and
	// last relayed sequence (JSON, mode 0600).
	FileState = "relay.json"
	// maxRepeating bounds the datagrams whose repeats are pending at once;
	// beyond it a datagram is sent once (and counted).
	maxRepeating = 1024
	// maxAnswers bounds the commands waiting to be answered "unsupported".
	maxAnswers = 4096
	// saveEvery is how often the progress is written when it changed.
	saveEvery = time.Second
	// reenrollAfter is how many check-ins in a row the server must refuse
	// with 401 before the relay enrolls again, as for an agent: one
	// refusal may be forged by anyone on the path of a plain-HTTP server.
	reenrollAfter = 5
	// backoffMin and backoffMax bound the stream's reconnection delays.
	backoffMin = time.Second
	backoffMax = time.Minute
)

// New checks cfg, locks the state directory, reads the relay's state and
// opens its multicast sender. The caller runs it with Run and then calls
// Close.
func New(cfg Config) (*Relay, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(cfg.ServerKey)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, errors.New("-server-key: want a base64 Ed25519 public key (32 bytes)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Relay{
		cfg: cfg, log: log, key: ed25519.PublicKey(key), keyID: wire.KeyID(key),
		reconnect:  make(chan struct{}, 1),
		checkinNow: make(chan struct{}, 1),
		answers:    make(chan answer, maxAnswers),
		repeatSem:  make(chan struct{}, maxRepeating),
		fatal:      make(chan error, 1),
	}
	r.hostname = cfg.Hostname
	if r.hostname == "" {
		r.hostname, _ = os.Hostname()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	// The stream's answer has no end, but its header comes at once.
	tr.ResponseHeaderTimeout = time.Minute
	if cfg.ServerCA != "" {
		pem, err := os.ReadFile(cfg.ServerCA)
		if err != nil {
			return nil, fmt.Errorf("-server-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-server-ca: %s holds no PEM certificate", cfg.ServerCA)
		}
		// Only this CA is trusted for the server, as for agents.
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	r.http = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	r.streamHC = &http.Client{Transport: tr}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("-state-dir: %w", err)
	}
	if r.lock, err = lockStateDir(filepath.Join(cfg.StateDir, FileLock)); err != nil {
		return nil, err
	}
	if err := r.load(); err != nil {
		r.lock.Close()
		return nil, err
	}
	r.reg = prometheus.NewRegistry()
	r.m = newMetrics(r.reg)
	r.m.lastSeq.Set(float64(r.st.LastSeq))
	r.sender, err = mcast.NewSender(mcast.Config{
		Group: cfg.Group, Port: cfg.Port, Interface: cfg.Interface, TTL: cfg.TTL, Loopback: true,
	})
	if err != nil {
		r.lock.Close()
		return nil, fmt.Errorf("multicast sender (-group %v -port %d -interface %q): %w", cfg.Group, cfg.Port, cfg.Interface, err)
	}
	return r, nil
}

// Registry is the relay's Prometheus registry (what MetricsListen serves).
func (r *Relay) Registry() *prometheus.Registry { return r.reg }

// State returns the relay's state as it is now (what it writes to
// StateDir).
func (r *Relay) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// Close closes the multicast sender and gives up the state directory's
// lock. Call it after Run returns.
func (r *Relay) Close() error {
	var err error
	r.closeOnce.Do(func() { err = errors.Join(r.sender.Close(), r.lock.Close()) })
	return err
}

// Run enrolls the relay if it is not enrolled, then relays until ctx is
// done, and saves its progress. It returns an error when it cannot
// enroll (a refusal, not a network failure: those it retries until ctx is
// done), when the metrics address cannot be listened on, and when an
// administrator revoked the relay.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.MetricsListen != "" {
		stop, err := r.serveMetrics()
		if err != nil {
			return err
		}
		defer stop()
	}
	if !r.isEnrolled() {
		if err := r.enroll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.runCtx = ctx
	select { // the stream opens at the progress as it is now anyway
	case <-r.reconnect:
	default:
	}
	st := r.State()
	r.log.Info("relay running", "agent", st.AgentID, "server", r.cfg.Server, "epoch", st.Epoch, "after", st.LastSeq,
		"group", r.cfg.Group, "port", r.cfg.Port, "interface", r.cfg.Interface, "ttl", r.cfg.TTL)
	r.wg.Add(4)
	go r.streamLoop(ctx)
	go r.checkInLoop(ctx)
	go r.answerLoop(ctx)
	go r.saveLoop(ctx)
	var err error
	select {
	case <-ctx.Done():
	case err = <-r.fatal:
	}
	cancel()
	r.wg.Wait()
	if serr := r.save(); serr != nil {
		r.log.Error("saving the relay's progress", "file", r.path(), "err", serr)
		err = errors.Join(err, serr)
	}
	r.log.Info("relay stopped", "last_seq", r.State().LastSeq)
	return err
}

// fail ends Run with err.
func (r *Relay) fail(err error) {
	select {
	case r.fatal <- err:
	default:
	}
}

func (r *Relay) event(e Event) {
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(e)
	}
}

// client returns a client of the agent API with the relay's credential.
func (r *Relay) client() *api.AgentClient {
	r.mu.Lock()
	tok := r.st.Token
	r.mu.Unlock()
	return &api.AgentClient{Client: api.Client{Base: r.cfg.Server, Auth: tok, HTTP: r.http, UserAgent: "vigil-relay/" + buildinfo.String()}}
}

// serveMetrics serves the registry on MetricsListen.
func (r *Relay) serveMetrics() (stop func(), err error) {
	ln, err := net.Listen("tcp", r.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("-metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	r.log.Info("metrics served", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}

func (r *Relay) path() string { return filepath.Join(r.cfg.StateDir, FileState) }
