package agent

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Drop and progress counters, by the names agents report at check-in and
// export as metrics.
const (
	CountMalformed   = "malformed"     // not a Vigil envelope
	CountWrongKey    = "wrong_key"     // signed by another key
	CountBadSig      = "bad_signature" // forged or tampered
	CountExpired     = "expired"       // past its expiry
	CountOld         = "old"           // sequence not newer than the last executed (replays, repeats)
	CountWrongEpoch  = "wrong_epoch"   // from another server store
	CountRefMismatch = "ref_mismatch"  // fetched command does not match its announced digest
	CountOverflow    = "overflow"      // datagrams dropped because the agent was busy
	CountNotTargeted = "not_targeted"  // valid, for other agents
	CountExecuted    = "executed"      // commands executed
	CountViaHTTP     = "via_http"      // commands obtained over HTTP (missed datagrams)
)

// Counts of the multicast receiver: datagrams that reached the agent's
// port and were dropped before the agent saw them.
const (
	CountUnicast      = "unicast"        // sent to an address of the host, not to a group
	CountForeignGroup = "foreign_group"  // for another group on the port, or from another interface
	CountTruncated    = "truncated"      // larger than the agent's buffer (2,048 bytes)
	CountKernelDrops  = "kernel_dropped" // dropped by the kernel: the socket's buffer was full (Linux only)
)

// CountDeltaFallbacks counts definitions updates whose planned deltas
// failed (a delta missing, corrupt, not applying, or whose result was not
// the signed release) and that downloaded the full release instead.
const CountDeltaFallbacks = "delta_fallbacks"

// updateCounterNames are the counts of definitions updates.
var updateCounterNames = []string{CountDeltaFallbacks}

var counterNames = []string{
	CountMalformed, CountWrongKey, CountBadSig, CountExpired, CountOld, CountWrongEpoch,
	CountRefMismatch, CountOverflow, CountNotTargeted, CountExecuted, CountViaHTTP,
}

// receiverCounterNames are the counts read from the multicast receiver.
var receiverCounterNames = []string{CountUnicast, CountForeignGroup, CountTruncated, CountKernelDrops}

// Counters are the agent's counters; safe for concurrent use. The
// receiver's counts are read from the receiver itself when asked for.
type Counters struct {
	m   map[string]*atomic.Uint64
	rcv atomic.Pointer[mcast.Receiver]
}

// setReceiver makes the counters read the receiver's counts from r.
func (c *Counters) setReceiver(r *mcast.Receiver) { c.rcv.Store(r) }

// receiverCount returns one of the receiver's counts, 0 without one.
func (c *Counters) receiverCount(name string) uint64 {
	r := c.rcv.Load()
	if r == nil {
		return 0
	}
	st := r.Stats()
	switch name {
	case CountUnicast:
		return st.Unicast
	case CountForeignGroup:
		return st.Foreign
	case CountTruncated:
		return st.Truncated
	case CountKernelDrops:
		return st.KernelDrops
	}
	return 0
}

func newCounters() *Counters {
	c := &Counters{m: make(map[string]*atomic.Uint64, len(counterNames)+len(updateCounterNames))}
	for _, n := range append(counterNames, updateCounterNames...) {
		c.m[n] = new(atomic.Uint64)
	}
	return c
}

// Inc adds one to a counter.
func (c *Counters) Inc(name string) { c.m[name].Add(1) }

// Get returns a counter's value.
func (c *Counters) Get(name string) uint64 {
	if v, ok := c.m[name]; ok {
		return v.Load()
	}
	return c.receiverCount(name)
}

// Snapshot returns the non-zero counters.
func (c *Counters) Snapshot() map[string]uint64 {
	out := map[string]uint64{}
	for n, v := range c.m {
		if x := v.Load(); x != 0 {
			out[n] = x
		}
	}
	for _, n := range receiverCounterNames {
		if x := c.receiverCount(n); x != 0 {
			out[n] = x
		}
	}
	return out
}

// Executor runs one verified command and returns its status and output.
// It may return StatusDeferred to finish the command later (see
// Core.Complete); Core.Running tells it the command's sequence number.
type Executor func(c command.Command) (status, output string)

// StatusDeferred is what an Executor returns for a command whose result
// comes later, through Core.Complete. It is never reported.
const StatusDeferred = "deferred"

// Via says how a command reached the agent.
type Via string

// Ways a command arrives.
const (
	ViaMulticast Via = "multicast"
	ViaHTTP      Via = "http"
)

// Executed describes one command the core ran or passed over.
type Executed struct {
	Seq     uint64
	Command command.Command
	Via     Via
	Result  *api.Result // nil when the command was not for this agent or is deferred
	// Deferred is set when the command started and its result will come
	// through Core.Complete.
	Deferred bool
}

// Core is the part of an agent that decides what to do with signed
// envelopes: verify, order, execute each targeted command exactly once,
// and notice gaps. It does no I/O except through its Journal and Executor;
// the daemon (and the load generator's simulated agents) feed it. It is not
// safe for concurrent use.
type Core struct {
	Key     ed25519.PublicKey
	ID      string
	Groups  []string
	Epoch   uint64
	Journal Journal
	Exec    Executor
	Count   *Counters
	Now     func() time.Time
	// OnExecuted, when set, is called after each command is handled.
	OnExecuted func(Executed)

	lastSeq uint64
	pending map[uint64]pendingEnv // verified commands beyond a gap
	want    uint64                // highest sequence known to exist
	refs    map[uint64][32]byte   // announced digests of large commands
	running uint64                // sequence of the command being executed
	keyID   [8]byte               // of Key
}

type pendingEnv struct {
	env *wire.Envelope
	via Via
}

const maxPending = 1024

// NewCore returns a core that has handled every command up to lastSeq.
func NewCore(key ed25519.PublicKey, id string, groups []string, epoch, lastSeq uint64, j Journal, exec Executor) *Core {
	return &Core{
		Key: key, ID: id, Groups: groups, Epoch: epoch, Journal: j, Exec: exec, Count: newCounters(),
		Now: time.Now, lastSeq: lastSeq, want: lastSeq,
		pending: map[uint64]pendingEnv{}, refs: map[uint64][32]byte{}, keyID: wire.KeyID(key),
	}
}

// LastSeq is the last sequence number handled.
func (c *Core) LastSeq() uint64 { return c.lastSeq }

// Behind reports whether commands up to a known sequence are missing, and
// from which sequence the agent must fetch.
func (c *Core) Behind() (after uint64, behind bool) { return c.lastSeq, c.want > c.lastSeq }

// Learn records that the server has commands up to seq (from a check-in
// reply or a fetch).
func (c *Core) Learn(seq uint64) {
	c.want = max(c.want, seq)
}

// Settle corrects what the agent believes the latest sequence to be when
// the server has answered that it has nothing newer.
func (c *Core) Settle(latest uint64) {
	c.want = max(c.lastSeq, latest)
}

// HandleDatagram verifies one datagram and acts on it. It returns the
// results produced (to report) and any error that dropped it.
func (c *Core) HandleDatagram(b []byte) ([]api.Result, error) {
	// A command no newer than the last one handled is dropped whatever it
	// is, so drop it before paying for a signature check: the server's
	// repeats (and replay floods) cost an agent a header parse, not an
	// Ed25519 verification.
	if h, err := wire.Decode(b); err == nil && h.Kind == wire.KindCommand &&
		h.KeyID == c.keyID && h.Epoch == c.Epoch && h.Seq <= c.lastSeq {
		c.Count.Inc(CountOld)
		return nil, errOld
	}
	e, err := wire.Verify(b, c.Key, c.Now())
	if err != nil {
		c.countErr(err)
		return nil, err
	}
	if e.Epoch != c.Epoch {
		c.Count.Inc(CountWrongEpoch)
		return nil, fmt.Errorf("%w: epoch %d, want %d", errWrongEpoch, e.Epoch, c.Epoch)
	}
	switch e.Kind {
	case wire.KindBeacon:
		if _, err := wire.DecodeBeacon(e.Body); err != nil {
			c.Count.Inc(CountMalformed)
			return nil, err
		}
		c.Learn(e.Seq)
		return nil, nil
	case wire.KindEpoch:
		// Epoch statements answer one agent over HTTP; by multicast they
		// mean nothing.
		c.Count.Inc(CountMalformed)
		return nil, errors.New("epoch statement received by multicast")
	case wire.KindRef:
		d, err := wire.DecodeRef(e.Body)
		if err != nil {
			c.Count.Inc(CountMalformed)
			return nil, err
		}
		if e.Seq <= c.lastSeq {
			c.Count.Inc(CountOld)
			return nil, errOld
		}
		c.refs[e.Seq] = d
		c.Learn(e.Seq)
		return nil, nil
	}
	return c.accept(e, ViaMulticast)
}

var errOld = errors.New("sequence not newer than the last handled")

// errWrongEpoch marks a verified envelope from another epoch than the
// agent's: the server may have moved to a new one.
var errWrongEpoch = errors.New("signed by the server in another epoch")

func (c *Core) countErr(err error) {
	switch {
	case errors.Is(err, wire.ErrKey):
		c.Count.Inc(CountWrongKey)
	case errors.Is(err, wire.ErrSignature):
		c.Count.Inc(CountBadSig)
	case errors.Is(err, wire.ErrExpired):
		c.Count.Inc(CountExpired)
	default:
		c.Count.Inc(CountMalformed)
	}
}

// accept takes a verified command envelope and runs everything that is now
// in order.
func (c *Core) accept(e *wire.Envelope, via Via) ([]api.Result, error) {
	if e.Seq <= c.lastSeq {
		c.Count.Inc(CountOld)
		return nil, errOld
	}
	if _, dup := c.pending[e.Seq]; dup {
		c.Count.Inc(CountOld)
		return nil, errOld
	}
	if len(c.pending) >= maxPending {
		c.Count.Inc(CountOverflow)
		return nil, errors.New("too many commands waiting for a gap to fill")
	}
	c.pending[e.Seq] = pendingEnv{e, via}
	c.Learn(e.Seq)
	var out []api.Result
	for {
		p, ok := c.pending[c.lastSeq+1]
		if !ok {
			return out, nil
		}
		delete(c.pending, c.lastSeq+1)
		r, err := c.run(p.env, p.via, false)
		if err != nil {
			return out, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
}

// HandleFetched takes command envelopes fetched over HTTP (in sequence
// order, starting right after LastSeq) and runs them. Envelopes that
// expired are passed over with an "expired" result when targeted. Any
// envelope that fails verification stops the batch with an error.
func (c *Core) HandleFetched(envs [][]byte) ([]api.Result, error) {
	var out []api.Result
	for _, b := range envs {
		e, err := wire.Verify(b, c.Key, c.Now())
		expired := errors.Is(err, wire.ErrExpired)
		if err != nil && !expired {
			c.countErr(err)
			return out, fmt.Errorf("fetched command: %w", err)
		}
		if e.Epoch != c.Epoch {
			c.Count.Inc(CountWrongEpoch)
			return out, fmt.Errorf("%w: fetched command from epoch %d, want %d", errWrongEpoch, e.Epoch, c.Epoch)
		}
		if e.Kind != wire.KindCommand {
			c.Count.Inc(CountMalformed)
			return out, fmt.Errorf("fetched envelope of kind %s", e.Kind)
		}
		if d, ok := c.refs[e.Seq]; ok && d != wire.Digest(b) {
			c.Count.Inc(CountRefMismatch)
			return out, fmt.Errorf("command %d does not match its announced digest", e.Seq)
		}
		if e.Seq <= c.lastSeq {
			continue
		}
		if e.Seq != c.lastSeq+1 {
			return out, fmt.Errorf("fetched command %d, want %d", e.Seq, c.lastSeq+1)
		}
		delete(c.pending, e.Seq)
		c.Count.Inc(CountViaHTTP)
		r, err := c.run(e, ViaHTTP, expired)
		if err != nil {
			return out, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	// Anything that was waiting behind the gap may now run.
	if p, ok := c.pending[c.lastSeq+1]; ok {
		delete(c.pending, p.env.Seq)
		rs, err := c.accept(p.env, p.via)
		return append(out, rs...), err
	}
	return out, nil
}

// Running returns the sequence number of the command being executed, for
// an Executor that defers its result; 0 outside execution.
func (c *Core) Running() uint64 { return c.running }

// Complete records the result of a deferred command and returns it, to be
// reported.
func (c *Core) Complete(r api.Result) (api.Result, error) {
	r.Output = api.TruncateOutput(r.Output)
	if r.ExecutedAt.IsZero() {
		r.ExecutedAt = c.Now().UTC()
	}
	if err := c.Journal.Result(r); err != nil {
		return r, fmt.Errorf("journal: %w", err)
	}
	return r, nil
}

// run handles the command with sequence lastSeq+1: record, execute, record.
func (c *Core) run(e *wire.Envelope, via Via, expired bool) (*api.Result, error) {
	cmd, err := command.Decode(e.Body)
	if err != nil {
		// Signed by our server but unreadable: a newer server, or a bug.
		// Pass over it so the agent does not stall, and say so.
		cmd = command.Command{Name: "?", Target: command.Target{Agents: []string{c.ID}}}
	}
	delete(c.refs, e.Seq)
	if err == nil && !cmd.Target.Matches(c.ID, c.Groups) {
		if err := c.Journal.Skip(e.Seq); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		c.lastSeq = e.Seq
		c.Count.Inc(CountNotTargeted)
		if c.OnExecuted != nil {
			c.OnExecuted(Executed{Seq: e.Seq, Command: cmd, Via: via})
		}
		return nil, nil
	}
	r := api.Result{Seq: e.Seq, ExecutedAt: c.Now().UTC()}
	switch {
	case err != nil:
		r.Status, r.Output = command.StatusUnsupported, err.Error()
	case expired:
		r.Status, r.Output = command.StatusExpired, "command expired at "+e.Expires.UTC().Format(time.RFC3339)+" before it reached this agent"
	default:
		if err := c.Journal.Start(e.Seq); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		c.running = e.Seq
		r.Status, r.Output = c.Exec(cmd)
		c.running = 0
		c.Count.Inc(CountExecuted)
		if r.Status == StatusDeferred {
			c.lastSeq = e.Seq
			if c.OnExecuted != nil {
				c.OnExecuted(Executed{Seq: e.Seq, Command: cmd, Via: via, Deferred: true})
			}
			return nil, nil
		}
	}
	r.Output = api.TruncateOutput(r.Output)
	if err := c.Journal.Result(r); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	c.lastSeq = e.Seq
	if c.OnExecuted != nil {
		c.OnExecuted(Executed{Seq: e.Seq, Command: cmd, Via: via, Result: &r})
	}
	return &r, nil
}
