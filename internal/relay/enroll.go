package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// errWrongPin marks an enrollment refused because the server's signed
// answer does not verify under -server-key.
var errWrongPin = errors.New("-server-key does not match the server's signing key")

// enroll obtains an identity, retrying with backoff until ctx is done, as
// an agent does (internal/agent/enroll.go). It returns at once, keeping
// nothing, when the server refuses the request or its answer does not
// prove the pinned key.
func (r *Relay) enroll(ctx context.Context) error {
	// Read at each enrollment: an administrator may have rotated it.
	if r.cfg.EnrollSecretFile == "" {
		return errors.New("the relay is not enrolled and no -enroll-secret-file is given (vigil server writes DATA-DIR/enroll.secret)")
	}
	b, err := os.ReadFile(r.cfg.EnrollSecretFile)
	if err != nil {
		return fmt.Errorf("the relay is not enrolled: -enroll-secret-file: %w", err)
	}
	secret := string(bytes.TrimSpace(b))
	if secret == "" {
		return fmt.Errorf("the relay is not enrolled and -enroll-secret-file %s is empty", r.cfg.EnrollSecretFile)
	}
	nonce := randomID()
	req := api.EnrollRequest{
		Secret: secret, Nonce: nonce, KeyID: hex.EncodeToString(r.keyID[:]),
		Hostname: r.hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: buildinfo.String(), Groups: r.cfg.Groups,
	}
	c := r.client()
	c.Auth = "" // the current credential stays in use until enrollment succeeds
	for backoff := backoffMin; ; backoff = min(backoff*2, backoffMax) {
		resp, err := c.Enroll(ctx, req)
		if err == nil {
			e, err := r.verifyStatement(resp.Proof, resp.AgentID, nonce)
			if err != nil {
				return fmt.Errorf("refusing to enroll with %s: %w", r.cfg.Server, err)
			}
			return r.enrolled(resp, e)
		}
		if api.IsStatus(err, http.StatusConflict) {
			return fmt.Errorf("refusing to enroll with %s: %w: %w", r.cfg.Server, errWrongPin, err)
		}
		if api.IsStatus(err, http.StatusForbidden) || api.IsStatus(err, http.StatusBadRequest) {
			return fmt.Errorf("enrollment refused by %s: %w", r.cfg.Server, err)
		}
		r.log.Warn("enrollment failed; retrying", "server", r.cfg.Server, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(jitter(backoff)):
		}
	}
}

// enrolled keeps a verified enrollment. In the epoch the relay was in, it
// resumes after the last sequence it relayed (relaying a command again is
// harmless, agents drop repeats; skipping one is not); in another, after
// the statement's sequence: it does not relay history.
func (r *Relay) enrolled(resp api.EnrollResponse, e *wire.Envelope) error {
	r.mu.Lock()
	was := r.st.AgentID
	start := e.Seq
	if r.st.Epoch == e.Epoch && r.st.AgentID != "" {
		start = r.st.LastSeq
	}
	r.st = State{AgentID: resp.AgentID, Token: resp.Token, Server: r.cfg.Server, Epoch: e.Epoch, EpochIssued: e.Issued, LastSeq: start}
	r.timing = resp.Timing
	r.unauthorized = 0
	r.enrolledOK = true
	r.dirty = true
	r.mu.Unlock()
	r.m.lastSeq.Set(float64(start))
	if err := r.save(); err != nil {
		return fmt.Errorf("saving the relay's credential: %w", err)
	}
	r.log.Info("enrolled", "agent", resp.AgentID, "epoch", e.Epoch, "latest_seq", e.Seq, "starting_after", start, "previous_agent", was)
	r.event(Event{Kind: EventEnrolled, Seq: start})
	r.askReconnect()
	return nil
}

// verifyStatement checks an epoch statement from the server exactly as
// an agent does: signed by the pinned key, of kind epoch, unexpired, for
// agent, echoing nonce ("" for a statement that moves an enrolled relay to
// a new epoch).
func (r *Relay) verifyStatement(b []byte, agent, nonce string) (*wire.Envelope, error) {
	return wire.VerifyStatement(b, r.key, "-server-key", errWrongPin, agent, nonce, time.Now())
}

// followEpoch follows a check-in answer's epoch statement, as an agent
// does: when it verifies, names this relay, names another epoch and was
// issued after the statement that put the relay in its epoch, the relay
// moves to that epoch, resuming the stream after the statement's
// sequence.
func (r *Relay) followEpoch(b []byte) (bool, error) {
	r.mu.Lock()
	id, epoch, issued := r.st.AgentID, r.st.Epoch, r.st.EpochIssued
	r.mu.Unlock()
	e, err := r.verifyStatement(b, id, "")
	if err != nil {
		return false, err
	}
	if e.Epoch == epoch {
		return false, nil
	}
	if !e.Issued.After(issued) {
		return false, fmt.Errorf("epoch statement for epoch %d issued at %s is not newer than the one for epoch %d (issued at %s): a replay, ignored",
			e.Epoch, e.Issued.UTC().Format(time.RFC3339Nano), epoch, issued.UTC().Format(time.RFC3339Nano))
	}
	r.mu.Lock()
	from, last := r.st.Epoch, r.st.LastSeq
	r.st.Epoch, r.st.EpochIssued, r.st.LastSeq = e.Epoch, e.Issued, e.Seq
	r.dirty = true
	r.mu.Unlock()
	r.m.lastSeq.Set(float64(e.Seq))
	if err := r.save(); err != nil {
		r.log.Error("saving the relay's progress", "file", r.path(), "err", err)
	}
	r.log.Error("the server moved to a new epoch (was its data directory restored from a backup?); following it",
		"agent", id, "from", from, "to", e.Epoch, "last_relayed", last, "starting_after", e.Seq)
	r.event(Event{Kind: EventEpoch, Seq: e.Seq})
	r.askReconnect()
	return true, nil
}

// askReconnect makes the stream reopen at the relay's current progress.
func (r *Relay) askReconnect() {
	select {
	case r.reconnect <- struct{}{}:
	default:
	}
}

// checkInSoon brings the next check-in forward.
func (r *Relay) checkInSoon() {
	select {
	case r.checkinNow <- struct{}{}:
	default:
	}
}

// checkInLoop checks in at the server's interval (plus a random delay
// within its spread window), and at once when asked.
func (r *Relay) checkInLoop(ctx context.Context) {
	defer r.wg.Done()
	r.mu.Lock()
	first := spreadDelay(r.timing.SpreadMillis)
	r.mu.Unlock()
	t := time.NewTimer(min(first, 5*time.Second))
	defer t.Stop()
	var lastSoon time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.checkinNow:
			// News of another epoch: at most once every soonEvery, so
			// that a burst of such datagrams is one check-in.
			if time.Since(lastSoon) < soonEvery {
				continue
			}
			lastSoon = time.Now()
		case <-t.C:
		}
		err := r.checkIn(ctx)
		var next time.Duration
		switch {
		case api.HasReason(err, api.ReasonRevoked):
			r.log.Error("an administrator revoked this relay; it stops. To enroll it again, remove "+r.path()+" and start it", "err", err)
			r.fail(fmt.Errorf("revoked by an administrator: %w", err))
			return
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !api.IsStatus(err, http.StatusUnauthorized) {
				r.log.Warn("check-in failed", "err", err)
			}
			next = jitter(min(r.interval(), 30*time.Second))
		default:
			r.mu.Lock()
			spread := r.timing.SpreadMillis
			r.mu.Unlock()
			next = r.interval() + spreadDelay(spread)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// soonEvery bounds how often news of another epoch brings a check-in
// forward.
const soonEvery = 10 * time.Second

// interval is the check-in interval the server gives (5 minutes before
// it says).
func (r *Relay) interval() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timing.CheckInSeconds > 0 {
		return time.Duration(r.timing.CheckInSeconds) * time.Second
	}
	return 5 * time.Minute
}

// checkIn reports to the server. A 401 makes the relay enroll again only
// after reenrollAfter of them in a row, as an agent does.
func (r *Relay) checkIn(ctx context.Context) error {
	st := r.State()
	req := api.CheckInRequest{
		Epoch: st.Epoch, Hostname: r.hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: buildinfo.String(),
		Groups: r.cfg.Groups, LastSeq: st.LastSeq, Counters: r.m.counters(),
	}
	resp, err := r.client().CheckIn(ctx, req)
	if api.IsStatus(err, http.StatusUnauthorized) {
		r.mu.Lock()
		r.unauthorized++
		n := r.unauthorized
		r.mu.Unlock()
		if n < reenrollAfter {
			r.log.Error("the server refused the relay's credential", "agent", st.AgentID, "err", err,
				"refusals_in_a_row", n, "enrolling_again_after", reenrollAfter)
			return err
		}
		r.log.Error("the server refused the relay's credential again; enrolling again", "agent", st.AgentID, "err", err, "refusals_in_a_row", n)
		if eerr := r.enroll(ctx); eerr != nil {
			r.log.Error("enrolling again failed; keeping the current credential", "err", eerr)
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.unauthorized = 0
	r.timing = resp.Timing
	r.mu.Unlock()
	if len(resp.EpochProof) > 0 {
		if _, err := r.followEpoch(resp.EpochProof); err != nil {
			r.log.Error("not following the server's epoch statement", "err", err)
		}
	}
	r.event(Event{Kind: EventCheckIn, Seq: resp.LatestSeq})
	return nil
}

// randomID returns 32 random hex digits (an enrollment nonce).
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + mrand.N(d/2+1)
}

func spreadDelay(ms int) time.Duration {
	if ms <= 0 {
		return 0
	}
	return mrand.N(time.Duration(ms) * time.Millisecond)
}
