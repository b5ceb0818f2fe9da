// Package loadgen is simulated agents for load tests: a fleet of agents
// that each have their own identity (really enrolled through the agent API
// with the enrollment secret), their own multicast socket (or NATS
// connection, for comparison), their own agent.Core (with an in-memory
// journal) to verify, order and execute commands exactly as the agent
// daemon does, and that report results and check in over HTTP. It plays the
// role osquery-perf plays for Fleet.
//
// The load generator only ever talks to this host: HTTP base URLs must name
// a loopback address, multicast is joined on a loopback interface only, and
// the HTTP clients it makes use no proxy. Its benchmarks (go test -bench in
// this package) run the server as a separate process, so that the server's
// CPU time and memory can be read from /proc; docs/benchmarks.md has the
// commands and the figures.
package loadgen

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Version is the agent version simulated agents report.
const Version = "loadgen"

// NewHTTPClient returns an HTTP client for simulated agents to share: at
// most maxConns connections to the server (requests beyond wait for one),
// kept alive, no proxy (the environment's proxy settings are ignored) and
// no compression.
func NewHTTPClient(maxConns int) *http.Client {
	if maxConns < 1 {
		maxConns = 1
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// CheckLoopbackURL returns an error unless u is an http(s) URL whose host
// is a loopback IP address: the load generator talks to nothing else.
func CheckLoopbackURL(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	if pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "nats" {
		return fmt.Errorf("loadgen: %q: want an http, https or nats URL", u)
	}
	ip, err := netip.ParseAddr(pu.Hostname())
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("loadgen: %q: the load generator only talks to a loopback IP address", u)
	}
	return nil
}

// checkLoopbackInterface returns an error unless name is a loopback
// interface.
func checkLoopbackInterface(name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("loadgen: interface %q: %w", name, err)
	}
	if ifi.Flags&net.FlagLoopback == 0 {
		return fmt.Errorf("loadgen: interface %q is not a loopback interface; the load generator stays on this host", name)
	}
	return nil
}

// Identity is what enrollment gave one simulated agent. Epoch and
// LatestSeq come from the server's signed enrollment proof, verified
// under the server's public key, as the agent daemon takes them.
type Identity struct {
	AgentID   string
	Token     string // bearer credential "AGENTID.SECRET"
	Hostname  string
	Epoch     uint64
	LatestSeq uint64
	// EpochIssued is when the server signed the statement of the epoch
	// the agent is in: only a later statement moves it to another epoch.
	EpochIssued time.Time
	Timing      api.Timing
}

// VerifyEpochStatement checks an epoch statement (wire.KindEpoch) the way
// the agent daemon does: signed with pub, not expired at now, for agent,
// echoing nonce (empty for a statement that moves an enrolled agent to a
// new epoch), and issued after notBefore when that is not zero. It
// returns the statement's envelope: its Epoch, and its Seq after which the
// agent starts.
func VerifyEpochStatement(pub ed25519.PublicKey, proof []byte, agentID, nonce string, notBefore, now time.Time) (*wire.Envelope, error) {
	e, err := wire.Verify(proof, pub, now)
	if err != nil {
		return nil, fmt.Errorf("epoch statement: %w (is the server's public key the right one?)", err)
	}
	if e.Kind != wire.KindEpoch {
		return nil, fmt.Errorf("epoch statement: a %s envelope", e.Kind)
	}
	st, err := wire.DecodeEpochStatement(e.Body)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Agent != agentID:
		return nil, fmt.Errorf("epoch statement for agent %q, not %q", st.Agent, agentID)
	case st.Nonce != nonce:
		return nil, errors.New("epoch statement does not echo the enrollment's nonce")
	case !notBefore.IsZero() && !e.Issued.After(notBefore):
		return nil, fmt.Errorf("epoch statement issued at %v, not after the current one's %v", e.Issued, notBefore)
	}
	return e, nil
}

// newNonce returns a random enrollment nonce.
func newNonce() string {
	b := make([]byte, 16)
	crand.Read(b)
	return hex.EncodeToString(b)
}

// Enroll enrolls n agents through the agent API at nodeURL with the
// enrollment secret, parallel requests at a time, verifying each
// enrollment's proof under the server's public key pub. Hostnames are
// prefix-00000, prefix-00001, ... Each agent gets its own identity and
// credential from the server. A request the server refuses as busy (503)
// is sent again after its Retry-After.
func Enroll(ctx context.Context, hc *http.Client, nodeURL, secret string, pub ed25519.PublicKey, prefix string, n, parallel int, groups []string) ([]Identity, error) {
	ids, _, err := EnrollTimed(ctx, hc, nodeURL, secret, pub, prefix, n, parallel, groups)
	return ids, err
}

// EnrollTimed is Enroll that also returns how long each agent's
// enrollment took, from its first request to its verified answer (retries
// after a busy answer included), in the agents' order.
func EnrollTimed(ctx context.Context, hc *http.Client, nodeURL, secret string, pub ed25519.PublicKey, prefix string, n, parallel int, groups []string) ([]Identity, []time.Duration, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, nil, errors.New("loadgen: no server public key")
	}
	if err := CheckLoopbackURL(nodeURL); err != nil {
		return nil, nil, err
	}
	parallel = max(1, min(parallel, n))
	ids := make([]Identity, n)
	took := make([]time.Duration, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &api.AgentClient{Client: api.Client{Base: nodeURL, HTTP: hc, UserAgent: "vigil-loadgen"}}
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				host := fmt.Sprintf("%s-%05d", prefix, i)
				req := api.EnrollRequest{
					Secret: secret, Nonce: newNonce(), Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH,
					Version: Version, Groups: groups,
				}
				t0 := time.Now()
				id, err := enrollOne(ctx, c, req, pub)
				took[i] = time.Since(t0)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("enrolling %s: %w", host, err) })
					cancel()
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	return ids, took, nil
}

// enrollOne sends one enrollment request, again while the server answers
// that it is busy (at most 100 times), and verifies the answer's proof.
func enrollOne(ctx context.Context, c *api.AgentClient, req api.EnrollRequest, pub ed25519.PublicKey) (Identity, error) {
	var resp api.EnrollResponse
	for try := 0; ; try++ {
		var err error
		resp, err = c.Enroll(ctx, req)
		if err == nil {
			break
		}
		if !api.IsStatus(err, http.StatusServiceUnavailable) || try == 100 {
			return Identity{}, err
		}
		t := time.NewTimer(time.Second) // the server's Retry-After
		select {
		case <-ctx.Done():
			t.Stop()
			return Identity{}, ctx.Err()
		case <-t.C:
		}
	}
	e, err := VerifyEpochStatement(pub, resp.Proof, resp.AgentID, req.Nonce, time.Time{}, time.Now())
	if err != nil {
		return Identity{}, err
	}
	return Identity{
		AgentID: resp.AgentID, Token: resp.Token, Hostname: req.Hostname, Epoch: e.Epoch,
		LatestSeq: e.Seq, EpochIssued: e.Issued, Timing: resp.Timing,
	}, nil
}

// EventKind says what happened to a simulated agent.
type EventKind int

// Kinds of events.
const (
	// Executed: the agent's Core executed a command targeted at it.
	Executed EventKind = iota + 1
	// Skipped: the Core passed over a command not targeted at it.
	Skipped
	// Reported: the server acknowledged (stored) the agent's result.
	Reported
	// Failed: an HTTP request of the agent failed, or the server refused
	// one of its results for good.
	Failed
	// EpochMoved: the agent followed the server to a new epoch at
	// check-in (Seq is where it starts in it).
	EpochMoved
)

func (k EventKind) String() string {
	switch k {
	case Executed:
		return "executed"
	case Skipped:
		return "skipped"
	case Reported:
		return "reported"
	case Failed:
		return "failed"
	case EpochMoved:
		return "epoch-moved"
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is something one simulated agent did. Events are delivered from
// the agents' goroutines; the callback must be quick and safe for
// concurrent use.
type Event struct {
	Kind  EventKind
	Agent int // index of the agent in the fleet
	Seq   uint64
	// Received is when the envelope that led to the event reached the
	// agent (returned from its socket, or its NATS subscription callback
	// ran); zero for commands fetched over HTTP and for Reported/Failed.
	Received time.Time
	// At is when the event happened: execution, or the server's answer.
	At  time.Time
	Via agent.Via
	Err error
}

// Config configures a fleet.
type Config struct {
	// NodeCommURL is the agent API base URL (a loopback address).
	NodeCommURL string
	// PublicKey is the server's command-signing key, pinned by every agent.
	PublicKey ed25519.PublicKey
	// HTTP is shared by all agents; NewHTTPClient(64) when nil.
	HTTP *http.Client
	// Groups are the groups the simulated agents belong to.
	Groups []string
	// PostResults makes agents report their results over HTTP, each after
	// a random delay within the server's spread window as the agent daemon
	// does. Without it results are kept (Core journals them to memory) but
	// never sent.
	PostResults bool
	// CatchUp makes agents that notice a gap fetch the missed commands
	// over HTTP (after 250 ms plus a random delay within the spread window,
	// as the daemon does). Benchmarks count such fetches.
	CatchUp bool
	// OnEvent, when set, receives every event.
	OnEvent func(Event)
}

// Fleet is a set of simulated agents.
type Fleet struct {
	cfg    Config
	agents []*simAgent

	mu      sync.Mutex
	closers []func()
	closed  bool
	wg      sync.WaitGroup
	fetches atomic.Uint64
	held    atomic.Bool // see HoldReports
}

// NewFleet makes a simulated agent of each identity. Each agent's Core
// starts after sequence number lastSeq, or after the identity's LatestSeq
// when lastSeq is 0 (a simulated agent's progress lives in memory only, so
// a benchmark can start a fresh fleet at the server's current sequence).
// The fleet receives nothing until JoinMulticast or JoinNATS.
func NewFleet(cfg Config, ids []Identity, lastSeq uint64) (*Fleet, error) {
	if err := CheckLoopbackURL(cfg.NodeCommURL); err != nil {
		return nil, err
	}
	if len(cfg.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("loadgen: no server public key")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = NewHTTPClient(64)
	}
	f := &Fleet{cfg: cfg, agents: make([]*simAgent, len(ids))}
	for i, id := range ids {
		a := &simAgent{f: f, idx: i, id: id, spread: time.Duration(id.Timing.SpreadMillis) * time.Millisecond,
			client: &api.AgentClient{Client: api.Client{Base: cfg.NodeCommURL, Auth: id.Token, HTTP: cfg.HTTP, UserAgent: "vigil-loadgen"}}}
		start := lastSeq
		if start == 0 {
			start = id.LatestSeq
		}
		a.newCore(id.Epoch, start)
		f.agents[i] = a
	}
	return f, nil
}

// newCore gives the agent a Core in epoch that starts after lastSeq.
func (a *simAgent) newCore(epoch, lastSeq uint64) {
	a.core = agent.NewCore(a.f.cfg.PublicKey, a.id.AgentID, a.f.cfg.Groups, epoch, lastSeq, agent.MemJournal{}, a.execute)
	a.core.OnExecuted = a.onExecuted
}

// Epoch returns the epoch agent i is in.
func (f *Fleet) Epoch(i int) uint64 {
	a := f.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id.Epoch
}

// LastSeq returns the last sequence agent i handled.
func (f *Fleet) LastSeq(i int) uint64 {
	a := f.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.core.LastSeq()
}

// Len is the number of agents.
func (f *Fleet) Len() int { return len(f.agents) }

// Identity returns agent i's identity (its epoch is the one it is in).
func (f *Fleet) Identity(i int) Identity {
	a := f.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Counters returns agent i's counters (drops by reason, executed, ...).
func (f *Fleet) Counters(i int) map[string]uint64 {
	a := f.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.core.Count.Snapshot()
}

// Fetches is how many times agents fetched missed commands over HTTP.
func (f *Fleet) Fetches() uint64 { return f.fetches.Load() }

// TotalCounter sums one counter (agent.CountExecuted, ...) over the fleet.
func (f *Fleet) TotalCounter(name string) uint64 {
	var n uint64
	for _, a := range f.agents {
		n += a.core.Count.Get(name)
	}
	return n
}

func (f *Fleet) emit(ev Event) {
	if f.cfg.OnEvent != nil {
		f.cfg.OnEvent(ev)
	}
}

func (f *Fleet) addCloser(c func()) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c()
		return errors.New("loadgen: fleet closed")
	}
	f.closers = append(f.closers, c)
	return nil
}

// MulticastConfig says which group the fleet joins.
type MulticastConfig struct {
	Group     netip.Addr
	Port      int
	Interface string // must be a loopback interface ("lo")
}

// JoinMulticast gives every agent its own receiver socket on the group
// (SO_REUSEPORT lets them share the port; see RaiseNoFile) and a goroutine
// that feeds its datagrams to the agent's Core.
func (f *Fleet) JoinMulticast(mc MulticastConfig) error {
	if err := checkLoopbackInterface(mc.Interface); err != nil {
		return err
	}
	cfg := mcast.Config{Group: mc.Group, Port: mc.Port, Interface: mc.Interface}
	for _, a := range f.agents {
		r, err := mcast.NewReceiver(cfg)
		if err != nil {
			return fmt.Errorf("agent %d: %w", a.idx, err)
		}
		if err := f.addCloser(func() { r.Close() }); err != nil {
			return err
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := r.Receive(buf)
				if err != nil {
					return
				}
				at := time.Now()
				a.handle(append([]byte(nil), buf[:n]...), at)
			}
		}()
	}
	return nil
}

// JoinNATS connects every agent to the NATS server at natsURL (a loopback
// address) with its own connection and subscribes it to subject; each
// message is handed to the agent's Core exactly like a datagram.
func (f *Fleet) JoinNATS(natsURL, subject string) error {
	if err := CheckLoopbackURL(natsURL); err != nil {
		return err
	}
	for _, a := range f.agents {
		nc, err := nats.Connect(natsURL, nats.Name("loadgen-"+a.id.Hostname), nats.MaxReconnects(0),
			nats.Timeout(10*time.Second))
		if err != nil {
			return fmt.Errorf("agent %d: %w", a.idx, err)
		}
		if err := f.addCloser(nc.Close); err != nil {
			return err
		}
		if _, err := nc.Subscribe(subject, func(m *nats.Msg) { a.handle(m.Data, time.Now()) }); err != nil {
			return fmt.Errorf("agent %d: subscribe: %w", a.idx, err)
		}
		if err := nc.Flush(); err != nil {
			return fmt.Errorf("agent %d: %w", a.idx, err)
		}
	}
	return nil
}

// Close closes every socket and connection, stops the timers' effects and
// waits for the receiving goroutines.
func (f *Fleet) Close() {
	f.mu.Lock()
	cs := f.closers
	f.closers, f.closed = nil, true
	f.mu.Unlock()
	for _, c := range cs {
		c()
	}
	f.wg.Wait()
}

func (f *Fleet) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// simAgent is one simulated agent.
type simAgent struct {
	f      *Fleet
	idx    int
	id     Identity
	spread time.Duration
	client *api.AgentClient

	mu          sync.Mutex // guards the fields below; Core is not concurrent
	core        *agent.Core
	recv        time.Time // arrival of the envelope being handled
	results     []api.Result
	reportArmed bool
	fetchArmed  bool
	reportTries int

	// wire is the agent's check-in request as RunCheckIns sends it,
	// encoded at epoch wireEpoch and last sequence wireSeq (see
	// rawcheckin.go).
	wire      []byte
	wireEpoch uint64
	wireSeq   uint64
}

// execute is the simulated agents' executor: the daemon's commands without
// their side effects. No command runs a program.
func (a *simAgent) execute(c command.Command) (string, string) {
	switch c.Name {
	case command.Ping:
		return command.StatusOK, "pong from " + a.id.Hostname
	case command.CheckIn:
		return command.StatusOK, "checking in"
	case command.Set:
		if err := c.Validate(); err != nil {
			return command.StatusError, err.Error()
		}
		return command.StatusOK, "settings noted"
	}
	return command.StatusUnsupported, fmt.Sprintf("this simulated agent does not know the command %q", c.Name)
}

func (a *simAgent) onExecuted(x agent.Executed) {
	ev := Event{Kind: Skipped, Agent: a.idx, Seq: x.Seq, At: time.Now(), Via: x.Via}
	if x.Via == agent.ViaMulticast {
		ev.Received = a.recv
	}
	if x.Result != nil {
		ev.Kind = Executed
	}
	a.f.emit(ev)
}

func spreadDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// handle feeds one envelope (datagram or NATS message) to the Core.
func (a *simAgent) handle(b []byte, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recv = at
	rs, _ := a.core.HandleDatagram(b)
	a.queueLocked(rs)
	a.armFetchLocked()
}

func (a *simAgent) queueLocked(rs []api.Result) {
	if len(rs) == 0 || !a.f.cfg.PostResults {
		return
	}
	a.results = append(a.results, rs...)
	if !a.reportArmed && !a.f.held.Load() {
		a.reportArmed = true
		time.AfterFunc(spreadDelay(a.spread), a.report)
	}
}

func (a *simAgent) armFetchLocked() {
	if _, behind := a.core.Behind(); behind && a.f.cfg.CatchUp && !a.fetchArmed {
		a.fetchArmed = true
		time.AfterFunc(250*time.Millisecond+spreadDelay(a.spread), a.catchUp)
	}
}

// HoldReports makes the agents keep the results of what they execute
// from now on, unsent, until ReleaseReports. A benchmark uses it to have
// something ready (event streams open, say) before the results of a
// command reach the server, which they otherwise start to do at once.
func (f *Fleet) HoldReports() { f.held.Store(true) }

// ReleaseReports ends HoldReports: every agent holding results reports
// them after a random delay within the spread window, as if it had just
// executed the command.
func (f *Fleet) ReleaseReports() {
	f.held.Store(false)
	for _, a := range f.agents {
		a.mu.Lock()
		if len(a.results) > 0 && !a.reportArmed {
			a.reportArmed = true
			time.AfterFunc(spreadDelay(a.spread), a.report)
		}
		a.mu.Unlock()
	}
}

// maxReportTries bounds the retries of a failed result report.
const maxReportTries = 5

// report posts the queued results, as the daemon does after its spread
// delay; a failure is retried a bounded number of times.
func (a *simAgent) report() {
	if a.f.isClosed() {
		return
	}
	a.mu.Lock()
	batch := a.results[:min(len(a.results), 500)]
	a.mu.Unlock()
	if len(batch) == 0 {
		a.mu.Lock()
		a.reportArmed = false
		a.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	resp, err := a.client.PostResults(ctx, batch)
	cancel()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.f.emit(Event{Kind: Failed, Agent: a.idx, Seq: batch[0].Seq, At: now, Err: fmt.Errorf("posting results: %w", err)})
		a.reportTries++
		if a.reportTries >= maxReportTries {
			a.results = a.results[len(batch):]
			a.reportTries = 0
		}
	} else {
		// The server judged each result: accepted ones are stored, refused
		// ones never will be. Both are forgotten.
		for _, seq := range resp.Accepted {
			a.f.emit(Event{Kind: Reported, Agent: a.idx, Seq: seq, At: now})
		}
		for _, r := range resp.Refused {
			a.f.emit(Event{Kind: Failed, Agent: a.idx, Seq: r.Seq, At: now, Err: fmt.Errorf("result refused: %s", r.Error)})
		}
		a.results = a.results[len(batch):]
		a.reportTries = 0
	}
	if len(a.results) > 0 {
		time.AfterFunc(spreadDelay(a.spread)+time.Duration(a.reportTries)*time.Second, a.report)
		return
	}
	a.reportArmed = false
}

// catchUp fetches missed commands over HTTP and runs them, as the
// daemon's catch-up does (a bounded number of pages).
func (a *simAgent) catchUp() {
	if a.f.isClosed() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fetchArmed = false
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 10 {
		after, behind := a.core.Behind()
		if !behind {
			return
		}
		a.f.fetches.Add(1)
		resp, err := a.client.CommandsAfter(ctx, after, 0)
		if err != nil {
			a.f.emit(Event{Kind: Failed, Agent: a.idx, Seq: after + 1, At: time.Now(), Err: fmt.Errorf("fetching commands: %w", err)})
			return
		}
		rs, err := a.core.HandleFetched(resp.Commands)
		a.queueLocked(rs)
		if err != nil {
			a.f.emit(Event{Kind: Failed, Agent: a.idx, Seq: after + 1, At: time.Now(), Err: fmt.Errorf("fetched commands: %w", err)})
			return
		}
		if len(resp.Commands) == 0 {
			a.core.Settle(resp.LatestSeq)
			return
		}
		a.core.Learn(resp.LatestSeq)
	}
}

// CheckIn makes agent i check in once, as the daemon does periodically.
// It learns the server's latest sequence from the answer, and follows the
// server to a new epoch when the answer carries a signed epoch statement
// (a simulated agent keeps nothing of the old epoch: its Core starts over
// in the new one after the statement's sequence).
func (f *Fleet) CheckIn(ctx context.Context, i int) error {
	a := f.agents[i]
	a.mu.Lock()
	req := api.CheckInRequest{
		Epoch: a.id.Epoch, Hostname: a.id.Hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: Version,
		Groups: f.cfg.Groups, LastSeq: a.core.LastSeq(), Counters: a.core.Count.Snapshot(),
	}
	a.mu.Unlock()
	resp, err := a.client.CheckIn(ctx, req)
	if err != nil {
		return err
	}
	return f.checkInAnswer(a, resp)
}

// checkInAnswer handles agent a's check-in answer: it follows an epoch
// statement, and fetches when the server has commands it has not seen.
func (f *Fleet) checkInAnswer(a *simAgent, resp api.CheckInResponse) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(resp.EpochProof) > 0 {
		e, err := VerifyEpochStatement(f.cfg.PublicKey, resp.EpochProof, a.id.AgentID, "", a.id.EpochIssued, time.Now())
		if err != nil {
			return err
		}
		a.id.Epoch, a.id.EpochIssued = e.Epoch, e.Issued
		a.newCore(e.Epoch, e.Seq)
		f.emit(Event{Kind: EpochMoved, Agent: a.idx, Seq: e.Seq, At: time.Now()})
	} else if resp.Epoch != a.id.Epoch {
		return fmt.Errorf("server epoch %d differs from the agent's %d and the answer has no epoch statement", resp.Epoch, a.id.Epoch)
	}
	a.core.Learn(resp.LatestSeq)
	a.armFetchLocked()
	return nil
}

// CheckInLoad describes a check-in run.
type CheckInLoad struct {
	// Duration bounds the run.
	Duration time.Duration
	// Workers is the number of check-ins in flight at most (give the HTTP
	// client as many connections).
	Workers int
	// Rate, when positive, is the offered load in check-ins per second
	// (open loop: check-ins are scheduled at that rate whatever the
	// answers, and latency counts from the scheduled time, so queueing in
	// the generator because the server is slow shows). Zero runs a closed
	// loop: each worker checks in again as soon as it has its answer.
	Rate float64
}

// CheckInStats is the outcome of a check-in run.
type CheckInStats struct {
	OK, Errors int
	FirstErr   error
	Elapsed    time.Duration
	// Latencies of the successful check-ins, sorted.
	Latencies []time.Duration
}

// PerSecond is the rate of successful check-ins.
func (s CheckInStats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.OK) / s.Elapsed.Seconds()
}

// RunCheckIns makes the fleet's agents check in, round robin, for
// load.Duration.
func (f *Fleet) RunCheckIns(ctx context.Context, load CheckInLoad) CheckInStats {
	workers := max(1, load.Workers)
	ctx, cancel := context.WithTimeout(ctx, load.Duration)
	defer cancel()
	var (
		next  atomic.Uint64
		mu    sync.Mutex
		stats CheckInStats
		wg    sync.WaitGroup
	)
	var jobs chan time.Time
	start := time.Now()
	if load.Rate > 0 {
		jobs = make(chan time.Time, 1<<16)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(jobs)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			sent := 0
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					due := int(load.Rate * now.Sub(start).Seconds())
					for ; sent < due; sent++ {
						at := start.Add(time.Duration(float64(sent) / load.Rate * float64(time.Second)))
						select {
						case jobs <- at:
						case <-ctx.Done():
							return
						}
					}
				}
			}
		}()
	}
	var addr string
	if f.rawCheckIns() {
		u, _ := url.Parse(f.cfg.NodeCommURL)
		addr = u.Host
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkIn := func(i int) error { return f.CheckIn(ctx, i) }
			if addr != "" {
				cc := &checkInConn{addr: addr}
				defer cc.close()
				checkIn = func(i int) error { return f.checkInRaw(ctx, cc, i) }
			}
			lat := make([]time.Duration, 0, 4096)
			ok, errs := 0, 0
			var firstErr error
			for {
				var t0 time.Time
				if jobs != nil {
					var more bool
					if t0, more = <-jobs; !more {
						break
					}
				} else {
					if ctx.Err() != nil {
						break
					}
					t0 = time.Now()
				}
				i := int(next.Add(1)-1) % len(f.agents)
				err := checkIn(i)
				if ctx.Err() != nil {
					break // the run ended during the request: count nothing
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				ok++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			stats.OK += ok
			stats.Errors += errs
			if stats.FirstErr == nil {
				stats.FirstErr = firstErr
			}
			stats.Latencies = append(stats.Latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	stats.Elapsed = min(time.Since(start), load.Duration)
	slices.Sort(stats.Latencies)
	return stats
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted, the
// smallest value at least p% of the values are at or below; 0 when empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}
