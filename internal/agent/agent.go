// Package agent is Vigil's client daemon. It reads its preferences (a
// plist), enrolls with the management server once, joins the multicast
// group, verifies every datagram against the pinned server key, executes
// each command targeted at it exactly once (across restarts), notices gaps
// from later datagrams, beacons and check-in replies and fetches what it
// missed over HTTP, and reports results, spreading its traffic over the
// window the server announces. It upgrades itself from its LiveUpdate
// servers on the upgrade command or its schedule, trying the new
// executable and rolling back when it fails (upgrade.go,
// docs/selfupdate.md).
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// Files in the agent's state directory.
const (
	FileIdentityName = "identity.json" // agent id, credential, epoch (mode 0600)
	FileJournalName  = "journal"       // progress through the command log
	FileSettingsName = "settings.json" // settings changed by the server's "set"
	// FileDefinitionsUpdateName holds the last definitions update that
	// installed a release (an api.UpdateState), reported at check-in.
	FileDefinitionsUpdateName = "definitions-update.json"
)

// Identity is what enrollment gives an agent.
type Identity struct {
	AgentID string `json:"agent_id"`
	Token   string `json:"token"`
	Epoch   uint64 `json:"epoch,string"`
	Server  string `json:"server"` // NodeCommURL it enrolled with
	// EpochIssued is when the server signed the epoch statement that put
	// the agent in Epoch: the agent follows only a later statement.
	EpochIssued time.Time `json:"epoch_issued,omitzero"`
	// Revoked is when the server said that an administrator revoked the
	// agent; a revoked agent no longer talks to the server.
	Revoked time.Time `json:"revoked,omitzero"`
}

// Settings are the values the server manages through "set".
type Settings struct {
	CheckInSeconds int `json:"checkin_interval_s,omitempty"`
	// OnAccess is "on" or "off" to override the OnAccess preference, ""
	// to follow it; OnAccessMode "notify" or "block" to override
	// OnAccessMode, "" to follow it.
	OnAccess     string `json:"onaccess,omitempty"`
	OnAccessMode string `json:"onaccess_mode,omitempty"`
}

// EventKind says what an Event reports.
type EventKind string

// The kinds of Event.
const (
	EventEnrolled     EventKind = "enrolled"      // enrolled (Seq: where it starts)
	EventJoined       EventKind = "joined"        // joined the group; datagrams are being handled
	EventStarted      EventKind = "started"       // started a command whose result comes later
	EventExecuted     EventKind = "executed"      // executed a command (Status, Output)
	EventSkipped      EventKind = "skipped"       // passed over a command not for it
	EventUpdated      EventKind = "updated"       // finished a definitions update
	EventScanned      EventKind = "scanned"       // finished a scan (Count: detections)
	EventReported     EventKind = "reported"      // the server judged results (Count)
	EventReportedScan EventKind = "reported-scan" // the server stored a scan report
	EventCheckIn      EventKind = "checkin"       // checked in (Seq: the server's latest)
	EventEpoch        EventKind = "epoch"         // followed the server to a new epoch
	EventRevoked      EventKind = "revoked"       // learnt that it was revoked
	EventDetected     EventKind = "detected"      // saved a report of on-access detections (Count)
)

// Event is something the agent did, for the demo and tests.
type Event struct {
	Kind   EventKind
	Agent  string
	Seq    uint64
	Name   string
	Via    Via
	Status string
	Output string
	Count  int
}

// Config configures an agent.
type Config struct {
	Prefs  *prefs.Agent
	Logger *slog.Logger
	// OnEvent, when set, is called for each Event (from the agent's goroutines).
	OnEvent func(Event)
}

// Agent is a running agent.
type Agent struct {
	p        *prefs.Agent
	log      *slog.Logger
	onEvent  func(Event)
	client   *api.AgentClient
	handlers *command.Registry // what execute runs, by command name
	id       Identity
	journal  *FileJournal
	core     *Core
	settings Settings
	timing   api.Timing
	hostname string

	lock    *stateLock
	results []api.Result // not yet acknowledged by the server
	// progress is the journal's epoch and the highest sequence handled in
	// it: kept across re-enrollment, so that no enrollment answer can make
	// the agent handle a sequence again.
	progress     progress
	unauthorized int       // check-ins refused with 401 in a row
	revoked      bool      // the server said the agent was revoked
	counters     *Counters // survive re-enrollment
	idv          atomic.Pointer[string]

	wantCheckIn  bool // a "checkin" command asked for one
	resetCheckIn bool // the interval changed

	upd        *definitions.Updater // nil without LiveUpdateServers
	updateReq  chan updateReq
	updateDone chan updateOutcome
	defsVer    string // installed definitions version, reported at check-in
	// lastUpdate is the last definitions update that installed a release
	// (FileDefinitionsUpdateName), reported at check-in; nil before one.
	lastUpdate *api.UpdateState

	upgradeReq  chan upgradeReq
	upgradeDone chan upgradeOutcome
	upgrading   bool // an upgrade is queued or fetching: at most one (upgradeReq holds one)
	// trialOut is set in a trial child (TrialEnv): it writes "ok" to it
	// after its first accepted check-in (trialSignalled).
	trialOut       *os.File
	trialSignalled bool

	scanReq     chan scanReq
	scanDone    chan scanOutcome
	scanPending bool // scan reports wait to be sent
	engine      cachedEngine
	oa          *onAccess

	// beforeQuarantine, when set (by tests), runs between a scan and the
	// quarantine of what it found.
	beforeQuarantine func()
}

// updateReq asks the update worker for an update: for the command with
// sequence Seq, or a scheduled one when Seq is 0.
type updateReq struct {
	Seq    uint64
	Epoch  uint64        // of Seq
	Spread time.Duration // wait a random part of this first
}

type updateOutcome struct {
	Seq   uint64
	Epoch uint64
	Res   definitions.Result
	Err   error
	At    time.Time // when the update ended
}

// describeUpdate says how an update installed its release, as the update
// command's result and the agent's log show it:
//
//	2026120201 -> 2026120203 via 2 deltas, 41.0 KiB (full 22.0 MiB)
//	2026120201 -> 2026120203, full release, 22.1 MiB (deltas failed: REASON)
//
// fallback is why the deltas were given up ("" if they were not).
func describeUpdate(st api.UpdateState, fallback string) string {
	from := st.From
	if from == "" {
		from = "none"
	}
	s := from + " -> " + st.To
	switch {
	case st.Deltas == 1:
		s += " via 1 delta, "
	case st.Deltas > 1:
		s += fmt.Sprintf(" via %d deltas, ", st.Deltas)
	default:
		s += ", full release, "
	}
	s += transport.HumanBytes(st.Bytes)
	if st.Deltas > 0 {
		s += " (full " + transport.HumanBytes(st.FullBytes) + ")"
	}
	if fallback != "" {
		s += " (deltas failed: " + fallback + ")"
	}
	return s
}

// New prepares an agent: it locks the state directory (a second agent on
// the same directory fails here, naming the first one's PID), opens the
// journal and makes the HTTP client. Close releases what New took.
func New(cfg Config) (*Agent, error) {
	p := cfg.Prefs
	a := &Agent{p: p, log: cfg.Logger, onEvent: cfg.OnEvent, counters: newCounters()}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.onEvent == nil {
		a.onEvent = func(Event) {}
	}
	a.hostname = p.Hostname
	if a.hostname == "" {
		a.hostname, _ = os.Hostname()
	}
	if err := os.MkdirAll(p.StateDirectory, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := lockStateDir(a.path(FileLockName))
	if err != nil {
		return nil, err
	}
	a.lock = lock
	if err := a.setup(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// setup is New after the state directory is locked.
func (a *Agent) setup() error {
	p := a.p
	hc, err := httpClient(p)
	if err != nil {
		return err
	}
	a.client = &api.AgentClient{Client: api.Client{Base: p.NodeCommURL, HTTP: hc, UserAgent: "vigil-agent/" + buildinfo.String()}}
	a.handlers = a.commandHandlers()
	if err := a.trialSetup(); err != nil {
		return err
	}
	if err := a.loadState(); err != nil {
		return err
	}
	a.oa = newOnAccess(a)
	a.scanReq = make(chan scanReq, 4)
	a.scanDone = make(chan scanOutcome, 1)
	a.scanPending = a.pendingScans()
	if len(p.LiveUpdateServers) > 0 {
		a.upd, err = definitions.New(definitions.Config{
			Servers: p.LiveUpdateServers, TrustedRoot: p.RepositoryRoot,
			StateDir: definitions.UpdateStateDir(p.StateDirectory), DefinitionsDir: a.defsRoot(),
			Logger: a.log.With("part", "updater"),
		})
		if err != nil {
			return fmt.Errorf("definitions updater: %w", err)
		}
		if a.defsVer, err = a.upd.Installed(); err != nil {
			a.log.Warn("installed definitions unreadable; the next update reinstalls them", "err", err)
		}
		a.updateReq = make(chan updateReq, 16)
		a.updateDone = make(chan updateOutcome, 1)
		a.upgradeReq = make(chan upgradeReq, 1)
		a.upgradeDone = make(chan upgradeOutcome, 1)
	}
	return nil
}

// Close releases the state directory (its lock and journal). Run calls it
// when it returns; an agent that is never run must be closed.
func (a *Agent) Close() error {
	var err error
	if a.journal != nil {
		err = a.journal.Close()
		a.journal = nil
	}
	if lerr := a.lock.release(); err == nil {
		err = lerr
	}
	return err
}

func httpClient(p *prefs.Agent) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	tr.IdleConnTimeout = 90 * time.Second
	if p.ServerCACertificate != "" {
		pem, err := os.ReadFile(p.ServerCACertificate)
		if err != nil {
			return nil, fmt.Errorf("ServerCACertificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ServerCACertificate: %s holds no PEM certificate", p.ServerCACertificate)
		}
		// Only this CA is trusted for the server: the system roots are not.
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func (a *Agent) path(name string) string { return filepath.Join(a.p.StateDirectory, name) }

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

func (a *Agent) loadState() error {
	if _, err := readJSON(a.path(FileSettingsName), &a.settings); err != nil {
		return err
	}
	var last api.UpdateState
	if ok, err := readJSON(a.path(FileDefinitionsUpdateName), &last); err != nil {
		// Only a report: an unreadable one is dropped, not fatal.
		a.log.Warn("last definitions update unreadable; not reporting it", "err", err)
	} else if ok {
		a.lastUpdate = &last
	}
	ok, err := readJSON(a.path(FileIdentityName), &a.id)
	if err != nil {
		return err
	}
	if ok && a.id.Server != a.p.NodeCommURL {
		a.log.Warn("NodeCommURL changed since enrollment; enrolling again", "was", a.id.Server, "now", a.p.NodeCommURL)
		ok = false
	}
	j, st, err := OpenJournal(a.path(FileJournalName))
	if err != nil {
		return err
	}
	a.journal = j
	a.results = st.Pending
	a.progress = progress{Epoch: st.Epoch, LastSeq: st.LastSeq}
	if err := a.loadUpgrade(); err != nil {
		return err
	}
	if ok && st.Epoch != a.id.Epoch {
		// The agent stopped between resetting the journal and saving its
		// identity: enroll again; the journal keeps what was handled.
		a.log.Warn("journal epoch does not match the identity's; enrolling again",
			"journal", a.path(FileJournalName), "journal_epoch", st.Epoch, "identity_epoch", a.id.Epoch)
		ok = false
	}
	if !ok {
		a.id = Identity{}
		return nil
	}
	a.revoked = !a.id.Revoked.IsZero()
	a.newCore(st.LastSeq)
	return nil
}

func (a *Agent) newCore(lastSeq uint64) {
	a.core = NewCore(a.p.ServerKey(), a.id.AgentID, a.p.Groups, a.id.Epoch, lastSeq, a.journal, a.execute)
	a.core.Count = a.counters
	id := a.id.AgentID
	a.idv.Store(&id)
	a.client.Auth = a.id.Token
	a.core.OnExecuted = func(x Executed) {
		ev := Event{Kind: EventSkipped, Agent: a.id.AgentID, Seq: x.Seq, Name: x.Command.Name, Via: x.Via}
		switch {
		case x.Deferred:
			ev.Kind = EventStarted
			a.log.Info("command started", "seq", x.Seq, "name", x.Command.Name, "via", x.Via)
		case x.Result != nil:
			ev.Kind, ev.Status, ev.Output = EventExecuted, x.Result.Status, x.Result.Output
			a.log.Info("command executed", "seq", x.Seq, "name", x.Command.Name, "via", x.Via, "status", x.Result.Status)
		}
		a.onEvent(ev)
	}
}

// ID returns the agent id, empty before enrollment.
// It is safe to call while the agent runs.
func (a *Agent) ID() string {
	if p := a.idv.Load(); p != nil {
		return *p
	}
	return ""
}

// Counters returns the agent's counters.
func (a *Agent) Counters() *Counters { return a.counters }

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func spreadDelay(ms int) time.Duration {
	if ms <= 0 {
		return 0
	}
	return rand.N(time.Duration(ms) * time.Millisecond)
}

func (a *Agent) checkInInterval() time.Duration {
	switch {
	case a.settings.CheckInSeconds > 0:
		return time.Duration(a.settings.CheckInSeconds) * time.Second
	case a.p.CheckInInterval > 0:
		return a.p.CheckInInterval
	case a.timing.CheckInSeconds > 0:
		return time.Duration(a.timing.CheckInSeconds) * time.Second
	}
	return 5 * time.Minute
}

// execute runs one verified command with its handler (handlers); a
// command of a name the agent has no handler for is unsupported. No
// command runs a program.
func (a *Agent) execute(c command.Command) (string, string) {
	if h, ok := a.handlers.Lookup(c.Name); ok {
		return h(c)
	}
	return command.StatusUnsupported, fmt.Sprintf("this agent (version %s) does not know the command %q", buildinfo.String(), c.Name)
}

// commandHandlers is the agent's handler of each command of the catalog,
// by name.
func (a *Agent) commandHandlers() *command.Registry {
	r := &command.Registry{}
	r.Register(command.Ping, func(command.Command) (string, string) {
		return command.StatusOK, "pong from " + a.hostname
	})
	r.Register(command.CheckIn, func(command.Command) (string, string) {
		a.wantCheckIn = true
		return command.StatusOK, "checking in"
	})
	r.Register(command.Set, a.set)
	r.Register(command.Scan, func(c command.Command) (string, string) { return a.startScan(c.Args) })
	r.Register(command.Restore, func(c command.Command) (string, string) { return a.restore(c.Args) })
	r.Register(command.Update, a.update)
	r.Register(command.Upgrade, a.upgrade)
	return r
}

// set changes the settings the server manages and keeps them.
func (a *Agent) set(c command.Command) (string, string) {
	if err := c.Validate(); err != nil {
		return command.StatusError, err.Error()
	}
	s := a.settings
	if v, ok := c.Args[command.SettingCheckInInterval]; ok {
		s.CheckInSeconds, _ = strconv.Atoi(v)
	}
	override := func(v string) string {
		if v == command.Default {
			return ""
		}
		return v
	}
	if v, ok := c.Args[command.SettingOnAccess]; ok {
		s.OnAccess = override(v)
	}
	if v, ok := c.Args[command.SettingOnAccessMode]; ok {
		s.OnAccessMode = override(v)
	}
	old := a.settings
	a.settings = s
	oa := a.onAccessConfig()
	if oa.Enabled && len(oa.Paths) == 0 {
		a.settings = old
		return command.StatusError, "on-access scanning needs OnAccessPaths in the agent's preferences; nothing changed"
	}
	if err := writeJSON(a.path(FileSettingsName), s); err != nil {
		a.settings = old
		return command.StatusError, "saving settings: " + err.Error()
	}
	if _, ok := c.Args[command.SettingCheckInInterval]; ok {
		a.resetCheckIn = true
	}
	a.oa.configure(oa)
	onOff := command.Off
	if oa.Enabled {
		onOff = command.On
	}
	return command.StatusOK, fmt.Sprintf("%s=%d %s=%s %s=%s", command.SettingCheckInInterval, s.CheckInSeconds,
		command.SettingOnAccess, onOff, command.SettingOnAccessMode, oa.Mode)
}

// update queues a definitions update; its result comes when it finishes.
func (a *Agent) update(command.Command) (string, string) {
	if a.upd == nil {
		return command.StatusError, "this agent has no LiveUpdateServers in its preferences"
	}
	select {
	case a.updateReq <- updateReq{Seq: a.core.Running(), Epoch: a.id.Epoch, Spread: time.Duration(a.timing.SpreadMillis) * time.Millisecond}:
		return StatusDeferred, ""
	default:
		return command.StatusError, "too many definitions updates already queued"
	}
}

// sameEpoch reports whether a deferred command's result still belongs to
// the agent's epoch; when the agent followed the server to another epoch
// meanwhile, the result is dropped (and logged).
func (a *Agent) sameEpoch(seq, epoch uint64) bool {
	if epoch == a.id.Epoch {
		return true
	}
	a.log.Error("dropping a result: the agent moved to another epoch while the command ran", "seq", seq, "epoch", epoch, "now", a.id.Epoch)
	return false
}

// Run runs the agent until ctx is done, then closes it (see Close): an
// agent runs once. When an upgrade command replaced the executable, Run
// stops and returns an *UpgradeReady, whose Trial the caller must run.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close()
	group, err := netip.ParseAddr(a.p.MulticastAddress)
	if err != nil {
		return fmt.Errorf("MulticastAddress: %w", err)
	}
	// Join the group before enrolling: an agent that cannot receive
	// commands must fail before the server lists it.
	rcv, err := mcast.NewReceiver(mcast.Config{Group: group, Port: a.p.MulticastPort, Interface: a.p.MulticastInterface})
	if err != nil {
		ifname := a.p.MulticastInterface
		if ifname == "" {
			ifname = "(the system's choice)"
		}
		return fmt.Errorf("cannot receive commands: joining %s port %d on interface %s: %w (check MulticastAddress, MulticastPort and MulticastInterface)",
			group, a.p.MulticastPort, ifname, err)
	}
	defer rcv.Close()
	a.counters.setReceiver(rcv)
	// On-access scanning protects the machine whether or not the server
	// answers: it starts before enrollment, and stops (letting every
	// access through) when Run returns.
	oactx, stopOnAccess := context.WithCancel(context.Background())
	var supervisor sync.WaitGroup
	supervisor.Go(func() { a.oa.run(oactx) })
	defer func() { stopOnAccess(); supervisor.Wait() }()
	a.oa.configure(a.onAccessConfig())
	if a.core == nil {
		if err := a.enroll(ctx); err != nil {
			return err
		}
	}
	if a.revoked {
		a.log.Error("an administrator revoked this agent: it does not talk to the server or handle its commands. To enroll it again, stop it, remove "+
			a.path(FileIdentityName)+" and start it", "agent", a.id.AgentID, "revoked", a.id.Revoked)
	}
	if a.p.MetricsAddress != "" {
		stop, err := a.serveMetrics()
		if err != nil {
			return err
		}
		defer stop()
	}
	a.log.Info("agent running", "agent", a.id.AgentID, "group", group, "port", a.p.MulticastPort,
		"interface", a.p.MulticastInterface, "server", a.p.NodeCommURL, "last_seq", a.core.LastSeq())

	datagrams := make(chan []byte, 256)
	var receiver sync.WaitGroup
	receiver.Go(func() { a.receive(rcv, datagrams) })
	defer func() {
		rcv.Close() // ends receive
		receiver.Wait()
	}()
	a.onEvent(Event{Kind: EventJoined, Agent: a.id.AgentID, Seq: a.core.LastSeq()})
	// The workers stop before Run returns (and releases the state
	// directory), whatever made it return.
	wctx, stop := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer workers.Wait()
	defer stop()
	if a.upd != nil {
		workers.Go(func() { a.updateWorker(wctx) })
		workers.Go(func() { a.upgradeWorker(wctx) })
	}
	workers.Go(func() { a.scanWorker(wctx) })
	return a.loop(ctx, datagrams)
}

func (a *Agent) receive(rcv *mcast.Receiver, out chan<- []byte) {
	defer close(out)
	buf := make([]byte, 2048)
	for {
		n, _, err := rcv.Receive(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				a.log.Error("multicast receive", "err", err)
			}
			return
		}
		select {
		case out <- append([]byte(nil), buf[:n]...):
		default:
			a.counters.Inc(CountOverflow)
		}
	}
}

// updateTimeout bounds one definitions update.
const updateTimeout = 10 * time.Minute

// updateWorker runs definitions updates one at a time, off the agent's
// main loop, so that commands keep flowing during a download.
func (a *Agent) updateWorker(ctx context.Context) {
	serve(ctx, a.updateReq, a.updateDone, func(r updateReq) time.Duration { return r.Spread }, updateTimeout,
		func(ctx context.Context, req updateReq) updateOutcome {
			res, err := a.upd.Update(ctx)
			return updateOutcome{Seq: req.Seq, Epoch: req.Epoch, Res: res, Err: err, At: time.Now()}
		}, nil)
}

// serve takes requests from in one at a time until ctx ends: it waits
// the request's spread delay (spreading the fleet's downloads over the
// server's window), runs do under timeout and hands its outcome to the
// main loop on out. An outcome the main loop did not take before ctx ended
// goes to drop, when not nil.
func serve[Req, Out any](ctx context.Context, in <-chan Req, out chan<- Out, spread func(Req) time.Duration,
	timeout time.Duration, do func(context.Context, Req) Out, drop func(Out)) {
	for {
		var req Req
		select {
		case <-ctx.Done():
			return
		case req = <-in:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(spreadDelay(int(spread(req) / time.Millisecond))):
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		o := do(dctx, req)
		cancel()
		select {
		case out <- o:
		case <-ctx.Done():
			if drop != nil {
				drop(o)
			}
			return
		}
	}
}

// updated handles the outcome of a definitions update in the main loop.
func (a *Agent) updated(o updateOutcome) {
	r := api.Result{Seq: o.Seq, Status: command.StatusOK}
	switch {
	case o.Err != nil:
		r.Status, r.Output = command.StatusError, o.Err.Error()
		a.log.Error("definitions update failed", "err", o.Err)
	case o.Res.Changed:
		a.defsVer = o.Res.Version
		signal(a.oa.refresh)
		st := &api.UpdateState{From: o.Res.Previous, To: o.Res.Version, At: o.At.UTC(),
			Bytes: o.Res.Bytes, FullBytes: o.Res.FullBytes, Deltas: o.Res.Deltas}
		a.lastUpdate = st
		if err := writeJSON(a.path(FileDefinitionsUpdateName), st); err != nil {
			a.log.Error("saving the last definitions update", "err", err)
		}
		if o.Res.Fallback != "" {
			a.counters.Inc(CountDeltaFallbacks)
		}
		r.Output = fmt.Sprintf("definitions %s installed from %s: %s", o.Res.Version, o.Res.Server, describeUpdate(*st, o.Res.Fallback))
		a.log.Info("definitions updated", "version", o.Res.Version, "previous", o.Res.Previous, "server", o.Res.Server,
			"deltas", st.Deltas, "bytes", st.Bytes, "full_bytes", st.FullBytes, "fallback", o.Res.Fallback)
	default:
		a.defsVer = o.Res.Version
		r.Output = fmt.Sprintf("definitions %s are the newest on %s", o.Res.Version, o.Res.Server)
	}
	for _, sk := range o.Res.Skipped {
		r.Output += "; skipped " + sk.Error()
	}
	a.onEvent(Event{Kind: EventUpdated, Agent: a.ID(), Seq: o.Seq, Name: command.Update, Status: r.Status, Output: r.Output})
	if o.Seq == 0 || !a.sameEpoch(o.Seq, o.Epoch) {
		return
	}
	rec, err := a.core.Complete(r)
	if err != nil {
		a.log.Error("recording update result", "err", err)
		return
	}
	a.queue([]api.Result{rec})
}
