package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
)

// epochState is the epoch the server is in. Values are replaced, never
// changed.
type epochState struct {
	epoch uint64
	// start is the latest sequence number when the server entered the
	// epoch: the epoch's commands are those after it.
	start uint64
	// issuedFrom is the latest sequence number when this process started
	// in the epoch or entered it: the commands after it were issued by
	// this process.
	issuedFrom uint64
	// left is the epoch this process left for this one (0 if none), and
	// leftLatest the latest sequence number then.
	left, leftLatest uint64
}

// agentAhead handles a check-in from an agent in the server's epoch whose
// last sequence is ahead of the server's latest: the agent saw commands
// the server no longer has (its data directory was restored from a backup,
// or replaced), so the server has reused, or is about to reuse, sequence
// numbers the agent has handled, and the agent would drop the commands
// issued under them. The server moves to a new epoch, stored before
// anything is answered, and logs what was lost. It returns the epoch and
// the latest sequence to answer with, and whether this call moved the
// server (another check-in may have moved it meanwhile).
func (s *Server) agentAhead(ctx context.Context, id string, req api.CheckInRequest) (*epochState, uint64, bool, error) {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	if s.shared() {
		// Another instance may have issued the commands the agent saw, or
		// moved the store to a new epoch, before this one heard of it.
		if _, err := s.refreshLatest(ctx); err != nil {
			return nil, 0, false, err
		}
		s.followEpochLocked()
	}
	ep, latest := s.ep.Load(), s.latest.Load()
	if req.Epoch != ep.epoch || req.LastSeq <= latest {
		return ep, latest, false, nil
	}
	s.log.Error("an agent is ahead of the server: the server lost the commands after its latest "+
		"(was its data directory restored from a backup?); moving to a new epoch",
		"agent", id, "hostname", logValue(req.Hostname), "agent_last_seq", req.LastSeq,
		"server_latest_seq", latest, "epoch", ep.epoch,
		"lost_seqs", fmt.Sprintf("%d-%d", latest+1, req.LastSeq))
	// The agent hanging up must not abandon the move half-way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	e, err := s.store.NewEpoch(ctx)
	if err != nil {
		s.log.Error("moving to a new epoch", "err", err)
		return nil, 0, false, err
	}
	next := &epochState{epoch: e, start: s.store.EpochStart(), issuedFrom: latest, left: ep.epoch, leftLatest: latest}
	s.ep.Store(next)
	s.m.epochChanges.Inc()
	s.log.Error("moved to a new epoch; agents follow it at their next check-in",
		"old_epoch", ep.epoch, "new_epoch", e, "first_seq", next.start+1)
	s.logReused(ctx, ep, latest)
	return next, latest, true, nil
}

// logReused warns about the commands this process issued in the epoch it
// is leaving: their sequence numbers were already used before the
// restore, so agents that were ahead dropped them; the administrator
// should send them again.
func (s *Server) logReused(ctx context.Context, ep *epochState, latest uint64) {
	if ep.issuedFrom >= latest {
		s.log.Warn("no command was issued since the server started, so none of this run's was dropped; "+
			"if the server ran since its data directory was restored, the commands it issued then reused "+
			"sequence numbers that agents ahead of it had seen, and those agents dropped them: send them again",
			"epoch", ep.epoch, "latest_seq", latest)
		return
	}
	const most = 50
	cs, err := s.store.CommandsAfter(ctx, ep.issuedFrom, most)
	var list []string
	for _, c := range cs {
		list = append(list, fmt.Sprintf("%d %s %s", c.Seq, c.Name, c.Target))
	}
	if latest-ep.issuedFrom > most {
		list = append(list, fmt.Sprintf("and %d more", latest-ep.issuedFrom-most))
	}
	if err != nil {
		list = append(list, fmt.Sprintf("(listing them: %v)", err))
	}
	s.log.Warn("commands issued since the server started reused sequence numbers that agents ahead of "+
		"the server had already seen: those agents dropped them; send them again so that every agent runs them",
		"epoch", ep.epoch, "first_seq", ep.issuedFrom+1, "last_seq", latest, "commands", strings.Join(list, "; "))
}

// noteEpochMove logs an agent moving to the server's epoch at check-in:
// a warning when it was ahead of the server in the epoch the server left
// (it dropped the commands issued there since the restore), else a debug
// line.
func (s *Server) noteEpochMove(id string, req api.CheckInRequest, ep *epochState) {
	if ep.left != 0 && req.Epoch == ep.left && req.LastSeq > ep.leftLatest {
		s.log.Warn("an agent was ahead of the server in the epoch the server left; it moves to the new epoch",
			"agent", id, "hostname", logValue(req.Hostname), "agent_last_seq", req.LastSeq,
			"server_latest_seq", ep.leftLatest, "old_epoch", ep.left, "epoch", ep.epoch)
		return
	}
	s.log.Debug("agent moves to the server's epoch", "agent", id, "agent_epoch", req.Epoch, "epoch", ep.epoch)
}
