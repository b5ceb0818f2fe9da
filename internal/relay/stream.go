package relay

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Reasons a datagram of the stream is not multicast, as the label of
// vigil_relay_datagrams_dropped_total.
const (
	DropMalformed = "malformed"     // not a Vigil envelope, or a body that does not parse
	DropWrongKey  = "wrong_key"     // signed by another key
	DropBadSig    = "bad_signature" // forged or altered
	DropExpired   = "expired"       // past its expiry
	DropOldEpoch  = "old_epoch"     // signed in an epoch the relay has left
	DropStatement = "epoch_statement"
)

// idleBeacons is how many beacon intervals the stream may stay silent
// before the relay takes it for dead and reconnects (the server sends a
// beacon every interval; until one has arrived, the relay relies on TCP
// keep-alives).
const idleBeacons = 3

// stableAfter is how long a connection that carried datagrams must have
// lasted for the next reconnection to start again from the shortest
// delay: a server that ends every stream at once is not hammered.
const stableAfter = 10 * time.Second

// errIdle and errReopen end one connection of the stream.
var (
	errIdle   = errors.New("no datagram for three beacon intervals")
	errReopen = errors.New("reopening the stream at the relay's new progress")
)

// streamLoop keeps the stream open, resuming after the last command
// relayed, with exponential backoff and jitter between attempts.
func (r *Relay) streamLoop(ctx context.Context) {
	defer r.wg.Done()
	backoff := backoffMin
	for ctx.Err() == nil {
		after := r.State().LastSeq
		opened := time.Now()
		n, err := r.connect(ctx, after)
		if ctx.Err() != nil {
			return
		}
		if n > 0 && time.Since(opened) >= stableAfter {
			backoff = backoffMin
		}
		if errors.Is(err, errReopen) {
			r.log.Info("reopening the relay stream", "after", r.State().LastSeq)
			r.m.reconnects.Inc()
			continue
		}
		wait := jitter(backoff)
		if api.IsStatus(err, http.StatusNotFound) {
			r.log.Error("the server has no relay stream (GET /v1/relay/stream answered 404): is it older than this relay, or -server not its agent API URL?",
				"server", r.cfg.Server, "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			r.log.Warn("relay stream lost; reconnecting", "server", r.cfg.Server, "err", err, "opened_after", after,
				"datagrams", n, "resume_after", r.State().LastSeq, "in", wait.Round(time.Millisecond))
		}
		r.m.reconnects.Inc()
		backoff = min(2*backoff, backoffMax)
		select {
		case <-ctx.Done():
			return
		case <-r.reconnect: // new progress or credential: try at once
		case <-time.After(wait):
		}
	}
}

// connect opens the stream after after and relays what it carries until
// it ends; it returns how many datagrams it read and why it ended.
func (r *Relay) connect(ctx context.Context, after uint64) (int, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := r.client()
	c.HTTP = r.streamHC
	s, err := c.RelayStream(sctx, after)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	r.m.connected.Set(1)
	defer r.m.connected.Set(0)
	r.log.Info("relay stream open", "server", r.cfg.Server, "after", after)
	r.event(Event{Kind: EventConnected, Seq: after})

	var why atomic.Pointer[error]
	end := func(err error) {
		why.CompareAndSwap(nil, &err)
		cancel()
	}
	go func() {
		select {
		case <-sctx.Done():
		case <-r.reconnect:
			end(errReopen)
		}
	}()
	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	n := 0
	for {
		b, err := s.Next()
		if err != nil {
			if p := why.Load(); p != nil {
				return n, *p
			}
			return n, err
		}
		n++
		r.handle(b)
		if every := r.beaconInterval(); every > 0 {
			if idle == nil {
				idle = time.AfterFunc(idleBeacons*every, func() { end(errIdle) })
			} else {
				idle.Reset(idleBeacons * every)
			}
		}
	}
}

func (r *Relay) beaconInterval() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.beaconEvery
}

// handle verifies one datagram of the stream and multicasts it when it
// verifies; it notes the progress and the commands that target the relay.
func (r *Relay) handle(b []byte) {
	now := time.Now()
	e, err := wire.Verify(b, r.key, now)
	expired := errors.Is(err, wire.ErrExpired)
	if err != nil && !expired {
		r.drop(dropReason(err), b, err)
		return
	}
	var ref [32]byte
	switch e.Kind {
	case wire.KindEpoch:
		// Statements answer one agent over HTTP; they are never multicast.
		r.drop(DropStatement, b, errors.New("an epoch statement in the stream"))
		return
	case wire.KindBeacon:
		bc, err := wire.DecodeBeacon(e.Body)
		if err != nil {
			r.drop(DropMalformed, b, err)
			return
		}
		if bc.IntervalMillis > 0 && !expired {
			r.mu.Lock()
			r.beaconEvery = time.Duration(bc.IntervalMillis) * time.Millisecond
			r.mu.Unlock()
		}
	case wire.KindRef:
		if ref, err = wire.DecodeRef(e.Body); err != nil {
			r.drop(DropMalformed, b, err)
			return
		}
	}
	if expired {
		// Signed by the server, expired on its way (a stream's backlog
		// after a long outage): not multicast, but it still moves the
		// relay's progress, so that the next connection does not carry
		// it again, and is answered when it targets the relay.
		r.drop(DropExpired, b, err)
		r.progress(e, ref)
		return
	}
	r.m.lag.Set(now.Sub(e.Issued).Seconds())

	r.mu.Lock()
	st := r.st
	r.mu.Unlock()
	if e.Epoch != st.Epoch {
		if !e.Issued.After(st.EpochIssued) {
			r.drop(DropOldEpoch, b, nil)
			return
		}
		// Signed by the server in an epoch newer than the relay's: the
		// server moved (a restore). Agents judge it by their own epoch:
		// pass it on, and learn where the new epoch starts from the
		// check-in's signed statement.
		r.mu.Lock()
		first := r.warnedEpoch != e.Epoch
		r.warnedEpoch = e.Epoch
		r.mu.Unlock()
		if first {
			r.log.Warn("datagrams signed in another epoch than the relay's; checking in to follow the server", "kind", e.Kind,
				"seq", e.Seq, "epoch", e.Epoch, "relay_epoch", st.Epoch)
		}
		r.multicast(e.Kind, e.Seq, b)
		r.checkInSoon()
		return
	}
	r.multicast(e.Kind, e.Seq, b)
	r.progress(e, ref)
}

// progress notes a command (or reference) of the relay's epoch newer than
// the last one relayed, and queues the answer to it when it targets the
// relay.
func (r *Relay) progress(e *wire.Envelope, ref [32]byte) {
	if e.Kind != wire.KindCommand && e.Kind != wire.KindRef {
		return
	}
	r.mu.Lock()
	if e.Epoch != r.st.Epoch || e.Seq <= r.st.LastSeq {
		r.mu.Unlock()
		return
	}
	r.st.LastSeq = e.Seq
	r.dirty = true
	id := r.st.AgentID
	r.mu.Unlock()
	r.m.lastSeq.Set(float64(e.Seq))
	switch e.Kind {
	case wire.KindCommand:
		cmd, err := command.Decode(e.Body)
		if err != nil {
			// Signed by the server but unreadable here (a newer server):
			// agents pass over it; a relay answers nothing it cannot read.
			r.log.Warn("a relayed command does not decode; not checking whether it targets the relay", "seq", e.Seq, "err", err)
			return
		}
		if cmd.Target.Matches(id, r.cfg.Groups) {
			r.queueAnswer(answer{seq: e.Seq, name: cmd.Name})
		}
	case wire.KindRef:
		r.queueAnswer(answer{seq: e.Seq, ref: true, digest: ref})
	}
}

func dropReason(err error) string {
	switch {
	case errors.Is(err, wire.ErrKey):
		return DropWrongKey
	case errors.Is(err, wire.ErrSignature):
		return DropBadSig
	case errors.Is(err, wire.ErrExpired):
		return DropExpired
	}
	return DropMalformed
}

// drop counts and logs a datagram not multicast: at warning level once a
// second at most (a flood of them is one line a second and the counter).
func (r *Relay) drop(reason string, b []byte, err error) {
	r.m.dropped.WithLabelValues(reason).Inc()
	var h wire.Header
	if e, err := wire.Decode(b); err == nil {
		h = e.Header
	}
	lv := slog.LevelDebug
	r.mu.Lock()
	if now := time.Now(); now.Sub(r.dropLogged) >= time.Second {
		r.dropLogged, lv = now, slog.LevelWarn
	}
	r.mu.Unlock()
	r.log.Log(context.Background(), lv, "datagram not relayed", "reason", reason, "kind", h.Kind, "seq", h.Seq, "epoch", h.Epoch, "err", err)
	r.event(Event{Kind: EventDropped, Seq: h.Seq, Reason: reason})
}

// multicast sends d verbatim: a command or reference Repeat times,
// RepeatGap apart (the repeats in the background, at most maxRepeating
// datagrams' repeats pending at once), a beacon once.
func (r *Relay) multicast(kind wire.Kind, seq uint64, d []byte) {
	d = bytes.Clone(d) // the stream's buffer is reused
	r.send(kind, d)
	r.event(Event{Kind: EventRelayed, Seq: seq, Datum: kind})
	if kind == wire.KindBeacon || r.cfg.Repeat <= 1 {
		return
	}
	select {
	case r.repeatSem <- struct{}{}:
	default:
		r.m.repeatsSkipped.Inc()
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.repeatSem }()
		t := time.NewTicker(max(r.cfg.RepeatGap, time.Millisecond))
		defer t.Stop()
		for range r.cfg.Repeat - 1 {
			select {
			case <-r.runCtx.Done():
				return
			case <-t.C:
				r.send(kind, d)
			}
		}
	}()
}

// send multicasts d once. It counts the send before making it, so that
// the count is there when a listener on this host has the datagram (the
// kernel delivers it to local sockets within the send).
func (r *Relay) send(kind wire.Kind, d []byte) {
	r.m.relayed.WithLabelValues(kind.String()).Inc()
	r.sendMu.Lock()
	err := r.sender.Send(d)
	r.sendMu.Unlock()
	if err != nil {
		r.m.sendErrors.Inc()
		r.log.Warn("multicast send failed", "kind", kind, "err", err)
	}
}

// answer is a command that targets the relay (or a reference to a
// command that may).
type answer struct {
	seq    uint64
	name   string
	ref    bool
	digest [32]byte
}

func (r *Relay) queueAnswer(a answer) {
	select {
	case r.answers <- a:
	default:
		r.m.answersDropped.Inc()
		r.log.Error("too many commands waiting to be answered; this one is not", "seq", a.seq)
	}
}

// Output is the output of the result a relay reports for a command that
// targets it.
const Output = "a relay runs no commands"

// answerLoop reports an "unsupported" result for each command that
// targets the relay, fetching referenced commands to see whether they
// do; what fails is tried again with backoff.
func (r *Relay) answerLoop(ctx context.Context) {
	defer r.wg.Done()
	var refs []answer        // references not yet resolved
	var results []api.Result // results not yet accepted
	backoff := time.Second
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if len(results) > 0 {
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				r.postResults(sctx, results)
				cancel()
			}
			return
		case a := <-r.answers:
			refs, results = r.take(a, refs, results)
		drain:
			for {
				select {
				case a := <-r.answers:
					refs, results = r.take(a, refs, results)
				default:
					break drain
				}
			}
		case <-retry:
			retry = nil
		}
		var err error
		refs, results, err = r.resolve(ctx, refs, results)
		if err == nil && len(results) > 0 {
			results, err = r.postResults(ctx, results)
		}
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			r.log.Warn("answering commands that target the relay; trying again", "err", err, "in", backoff,
				"pending_results", len(results), "pending_references", len(refs))
			retry = time.After(jitter(backoff))
			backoff = min(2*backoff, backoffMax)
			continue
		}
		backoff = time.Second
	}
}

func (r *Relay) take(a answer, refs []answer, results []api.Result) ([]answer, []api.Result) {
	if len(refs)+len(results) >= maxAnswers {
		// The server has been refusing or unreachable for long: forget
		// this one rather than grow without bound.
		r.m.answersDropped.Inc()
		r.log.Error("too many commands waiting to be answered; this one is not", "seq", a.seq)
		return refs, results
	}
	if a.ref {
		return append(refs, a), results
	}
	return refs, append(results, r.result(a.seq))
}

func (r *Relay) result(seq uint64) api.Result {
	return api.Result{Seq: seq, Status: command.StatusUnsupported, Output: Output, ExecutedAt: time.Now().UTC()}
}

// resolve fetches the commands references announce and keeps a result
// for those that target the relay. A fetched envelope must verify (it may
// have expired since) and match the announced digest.
func (r *Relay) resolve(ctx context.Context, refs []answer, results []api.Result) ([]answer, []api.Result, error) {
	for len(refs) > 0 {
		a := refs[0]
		b, err := r.client().Command(ctx, a.seq)
		if err != nil {
			return refs, results, err
		}
		refs = refs[1:]
		e, err := wire.Verify(b, r.key, time.Now())
		if err != nil && !errors.Is(err, wire.ErrExpired) {
			r.log.Error("a referenced command fetched from the server does not verify; not answering it", "seq", a.seq, "err", err)
			continue
		}
		switch {
		case e.Kind != wire.KindCommand || e.Seq != a.seq:
			r.log.Error("the server answered another envelope for a referenced command", "seq", a.seq, "kind", e.Kind, "got_seq", e.Seq)
			continue
		case wire.Digest(b) != a.digest:
			r.log.Error("a referenced command does not match its announced digest; not answering it", "seq", a.seq)
			continue
		}
		cmd, err := command.Decode(e.Body)
		if err != nil {
			r.log.Warn("a referenced command does not decode", "seq", a.seq, "err", err)
			continue
		}
		if cmd.Target.Matches(r.State().AgentID, r.cfg.Groups) {
			results = append(results, r.result(a.seq))
		}
	}
	return refs, results, nil
}

// maxResultsBatch is the most results in one request, as for agents.
const maxResultsBatch = 500

// postResults sends results, in batches, and returns those the server
// did not judge.
func (r *Relay) postResults(ctx context.Context, results []api.Result) ([]api.Result, error) {
	var keep []api.Result
	for len(results) > 0 {
		n := min(len(results), maxResultsBatch)
		k, err := r.postBatch(ctx, results[:n])
		keep = append(keep, k...)
		results = results[n:]
		if err != nil {
			return append(keep, results...), err
		}
	}
	return keep, nil
}

func (r *Relay) postBatch(ctx context.Context, results []api.Result) ([]api.Result, error) {
	resp, err := r.client().PostResults(ctx, results)
	if err != nil {
		return results, err
	}
	judged := map[uint64]bool{}
	for _, seq := range resp.Accepted {
		judged[seq] = true
		r.m.answered.Inc()
		r.event(Event{Kind: EventAnswered, Seq: seq})
	}
	for _, x := range resp.Refused {
		judged[x.Seq] = true
		r.log.Error("the server refused the relay's result for good; dropping it", "seq", x.Seq, "reason", x.Error)
	}
	var keep []api.Result
	for _, x := range results {
		if !judged[x.Seq] {
			keep = append(keep, x)
		}
	}
	return keep, nil
}
