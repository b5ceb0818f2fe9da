package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// progress is where the agent is in a server's command log.
type progress struct {
	Epoch   uint64
	LastSeq uint64
}

// reenrollAfter is how many check-ins in a row the server must refuse
// with 401 before the agent enrolls again: one refusal may be forged by
// anyone on the path of a plain-HTTP NodeCommURL.
const reenrollAfter = 5

// errWrongPin marks an enrollment refused because the server's signed
// answer does not verify under ServerPublicKey.
var errWrongPin = errors.New("ServerPublicKey does not match the server's signing key")

// enroll obtains an identity, retrying with backoff until ctx is done.
// It returns at once, without keeping anything, when the server refuses
// the request or its answer does not prove the pinned key.
func (a *Agent) enroll(ctx context.Context) error {
	if a.p.EnrollmentSecret == "" {
		return fmt.Errorf("not enrolled and no EnrollmentSecret in the preferences")
	}
	nonce := randomID()
	kid := wire.KeyID(a.p.ServerKey())
	req := api.EnrollRequest{
		Secret: a.p.EnrollmentSecret, Nonce: nonce, KeyID: hex.EncodeToString(kid[:]),
		Hostname: a.hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: buildinfo.String(), Groups: a.p.Groups,
	}
	// The current credential stays in use until enrollment succeeds.
	c := *a.client
	c.Auth = ""
	for backoff := time.Second; ; backoff = min(backoff*2, time.Minute) {
		resp, err := c.Enroll(ctx, req)
		if err == nil {
			e, err := a.verifyStatement(resp.Proof, resp.AgentID, nonce)
			if err != nil {
				return fmt.Errorf("refusing to enroll with %s: %w", a.p.NodeCommURL, err)
			}
			return a.enrolled(resp, e)
		}
		if api.IsStatus(err, http.StatusConflict) {
			return fmt.Errorf("refusing to enroll with %s: %w: %w", a.p.NodeCommURL, errWrongPin, err)
		}
		if api.IsStatus(err, http.StatusForbidden) || api.IsStatus(err, http.StatusBadRequest) {
			return fmt.Errorf("enrollment refused: %w", err)
		}
		a.log.Warn("enrollment failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(jitter(backoff)):
		}
	}
}

// verifyStatement checks an epoch statement from the server: signed by
// the pinned key, of kind epoch, unexpired, for agent, echoing nonce (""
// for a statement that moves an enrolled agent to a new epoch).
func (a *Agent) verifyStatement(b []byte, agent, nonce string) (*wire.Envelope, error) {
	return wire.VerifyStatement(b, a.p.ServerKey(), "ServerPublicKey", errWrongPin, agent, nonce, time.Now())
}

// saveProgress records where the running core is, before its identity
// or epoch changes.
func (a *Agent) saveProgress() {
	switch {
	case a.core == nil:
	case a.core.Epoch == a.progress.Epoch:
		a.progress.LastSeq = max(a.progress.LastSeq, a.core.LastSeq())
	default:
		a.progress = progress{Epoch: a.core.Epoch, LastSeq: a.core.LastSeq()}
	}
}

// startAfter is where the agent starts in epoch when a signed statement
// says seq: after seq, or after the highest sequence it has handled in
// that epoch when that is higher. No answer, signed or not, makes it
// handle a sequence again.
func (a *Agent) startAfter(epoch, seq uint64) uint64 {
	if epoch == a.progress.Epoch {
		return max(seq, a.progress.LastSeq)
	}
	return seq
}

// enrolled keeps a verified enrollment: the new identity, the journal's
// baseline, and (in the same epoch) the results not yet reported.
func (a *Agent) enrolled(resp api.EnrollResponse, e *wire.Envelope) error {
	a.saveProgress()
	start := a.startAfter(e.Epoch, e.Seq)
	keep := e.Epoch == a.progress.Epoch
	if !keep {
		a.dropResults("the server's command log is another one (epoch %d, the results' was %d)", e.Epoch, a.progress.Epoch)
	}
	if err := a.journal.Reset(e.Epoch, start, keep); err != nil {
		return err
	}
	was := a.id.AgentID
	a.id = Identity{AgentID: resp.AgentID, Token: resp.Token, Epoch: e.Epoch, EpochIssued: e.Issued, Server: a.p.NodeCommURL}
	if err := writeJSON(a.path(FileIdentityName), a.id); err != nil {
		return err
	}
	a.timing = resp.Timing
	a.unauthorized = 0
	a.progress = progress{Epoch: e.Epoch, LastSeq: start}
	a.newCore(start)
	a.log.Info("enrolled", "agent", a.id.AgentID, "epoch", a.id.Epoch, "latest_seq", e.Seq, "starting_after", start,
		"previous_agent", was, "unreported_results", len(a.results))
	a.onEvent(Event{Kind: EventEnrolled, Agent: a.id.AgentID, Seq: start})
	return nil
}

// dropResults forgets the results not yet reported, each logged as an
// error, when they answer commands of another epoch.
func (a *Agent) dropResults(why string, args ...any) {
	for _, r := range a.results {
		a.log.Error("dropping an unreported result: "+fmt.Sprintf(why, args...), "seq", r.Seq, "status", r.Status)
	}
	a.results = nil
}

// followEpoch follows a check-in answer's epoch statement: when it
// verifies, names this agent, is unexpired, names another epoch and was
// issued after the statement that put the agent in its epoch, the agent
// moves to that epoch, starting after the statement's sequence. It reports
// whether the agent moved.
func (a *Agent) followEpoch(b []byte) (bool, error) {
	e, err := a.verifyStatement(b, a.id.AgentID, "")
	if err != nil {
		return false, err
	}
	if e.Epoch == a.id.Epoch {
		return false, nil
	}
	if !e.Issued.After(a.id.EpochIssued) {
		return false, fmt.Errorf("epoch statement for epoch %d issued at %s is not newer than the one for epoch %d (issued at %s): a replay, ignored",
			e.Epoch, e.Issued.UTC().Format(time.RFC3339Nano), a.id.Epoch, a.id.EpochIssued.UTC().Format(time.RFC3339Nano))
	}
	a.saveProgress()
	from := a.id.Epoch
	start := a.startAfter(e.Epoch, e.Seq)
	a.dropResults("the server moved from epoch %d to %d; the command log they answer is gone", from, e.Epoch)
	if err := a.journal.Reset(e.Epoch, start, false); err != nil {
		return false, err
	}
	id := a.id
	id.Epoch, id.EpochIssued = e.Epoch, e.Issued
	if err := writeJSON(a.path(FileIdentityName), id); err != nil {
		return false, err
	}
	a.id = id
	a.progress = progress{Epoch: e.Epoch, LastSeq: start}
	a.newCore(start)
	a.log.Error("the server moved to a new epoch (was its data directory restored from a backup?); following it",
		"agent", a.id.AgentID, "from", from, "to", e.Epoch, "starting_after", start)
	a.onEvent(Event{Kind: EventEpoch, Agent: a.id.AgentID, Seq: start})
	return true, nil
}

// checkRevoked notes a 403 "revoked" answer: the agent stops talking to
// the server for good (until its identity is removed), and says so.
func (a *Agent) checkRevoked(err error) bool {
	if !api.HasReason(err, api.ReasonRevoked) {
		return false
	}
	if !a.revoked {
		a.revoked = true
		a.id.Revoked = time.Now().UTC()
		a.log.Error("an administrator revoked this agent; it stops talking to the server and handling its commands. To enroll it again, stop it, remove "+
			a.path(FileIdentityName)+" and start it", "agent", a.id.AgentID, "err", err)
		if werr := writeJSON(a.path(FileIdentityName), a.id); werr != nil {
			a.log.Error("recording the revocation", "err", werr)
		}
		a.onEvent(Event{Kind: EventRevoked, Agent: a.id.AgentID})
	}
	return true
}
