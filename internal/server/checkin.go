package server

import (
	"context"
	"slices"
	"sync"

	"github.com/vigil-fleet/vigil/internal/store"
)

// Check-ins are written in group commits (batcher): each waits for its
// transaction's fsync before it is acknowledged. Most check-ins change
// nothing but the agent's last-seen time: the agent reports the state it
// reported last time. Those (over a store no other instance shares) are
// acknowledged at once and written in the next group commit, at the
// latest SeenFlush later, as Fleet buffers its hosts' last-seen times. A
// crash loses at most that much of them (the agent's row keeps the time
// and counters of its check-in before), never a state change: a check-in
// that changes anything else is written before it is acknowledged.
//
// Soft, written later: the last-seen and last check-in times, and the
// counters (agent-side totals the agent sends whole at every check-in:
// the next one restores what a crash lost). Everything else is state,
// written first: hostname, OS, architecture, agent and definitions
// versions, groups, the last command sequence, the on-access state, the
// update state, and every check-in of an agent in another epoch or
// ahead of the server (they move it, see handleCheckIn), or of an agent
// this server has not written a check-in of since it started. The
// revocation check is the server's memory of the agent (agentEntry),
// which a revocation through this server updates before it answers.

// deferredCheckIns holds the check-ins acknowledged before they were
// written, the last of each agent, until the next group commit.
type deferredCheckIns struct {
	mu    sync.Mutex
	m     map[string]deferredCheckIn
	spare map[string]deferredCheckIn // the batcher's, swapped with m
}

// deferredCheckIn is a check-in acknowledged before it was written, and
// the stored check-in whose state it reported the same.
type deferredCheckIn struct {
	c    store.CheckIn
	base *store.CheckIn
}

// defers reports whether the server acknowledges check-ins that change
// nothing but soft fields before writing them. Over a store other
// instances share, an agent revoked through another may still be trusted
// here until its event arrives: its check-ins are written first, and the
// store refuses them.
func (s *Server) defers() bool { return s.cfg.SeenFlush > 0 && !s.shared() }

// deferCheckIn takes c to be written in the next group commit and reports
// true when it changes nothing but soft fields of the agent's stored
// check-in; otherwise it reports false and c must be written before it is
// acknowledged.
func (s *Server) deferCheckIn(c store.CheckIn) bool {
	if !s.defers() {
		return false
	}
	v, ok := s.agents.Load(c.AgentID)
	if !ok {
		return false
	}
	e := v.(*agentEntry)
	if e.revoked || e.removed || e.stored == nil || !sameState(e.stored, &c) {
		return false
	}
	s.deferred.mu.Lock()
	s.deferred.m[c.AgentID] = deferredCheckIn{c: c, base: e.stored}
	s.deferred.mu.Unlock()
	s.m.checkinsDeferred.Inc()
	return true
}

// sameState reports whether two check-ins report the same state: they
// differ at most in soft fields (times and counters).
func sameState(a, b *store.CheckIn) bool {
	return a.AgentID == b.AgentID && a.Hostname == b.Hostname && a.OS == b.OS && a.Arch == b.Arch &&
		a.Version == b.Version && a.DefsVer == b.DefsVer && slices.Equal(a.Groups, b.Groups) &&
		a.LastSeq == b.LastSeq && sameOnAccess(a.OnAccess, b.OnAccess) && sameUpdate(a.Update, b.Update)
}

func sameOnAccess(a, b *store.OnAccess) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Enabled == b.Enabled && a.Running == b.Running && a.Mode == b.Mode && a.Error == b.Error &&
		slices.Equal(a.Paths, b.Paths)
}

func sameUpdate(a, b *store.UpdateState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.From == b.From && a.To == b.To && a.At.Equal(b.At) && a.Bytes == b.Bytes &&
		a.FullBytes == b.FullBytes && a.Deltas == b.Deltas
}

// flushDeferredLoop writes the deferred check-ins every SeenFlush when no
// group commit did meanwhile.
func (s *Server) flushDeferredLoop() { s.every(s.cfg.SeenFlush, s.flushDeferred) }

// flushDeferred writes the deferred check-ins, if any, in a group
// commit. A zero CheckIn is the batcher's item that carries no check-in.
func (s *Server) flushDeferred() {
	s.deferred.mu.Lock()
	n := len(s.deferred.m)
	s.deferred.mu.Unlock()
	if n > 0 {
		s.checkins.add(context.Background(), store.CheckIn{})
	}
}

// flushCheckIns writes a batch of check-ins, with the deferred ones, in
// one transaction; the ones the store refused are returned as refusals.
// Over a store several server instances share, an agent revoked or
// removed through another instance may still have a valid entry in this
// one's memory (agentEntry) until the store's event arrives; its check-in
// refused here corrects the entry (refuseCheckIn).
//
// It runs in the batcher's goroutine, one batch after the other, and so
// orders the writes of an agent's state (agentEntry.stored) and of its
// deferred check-ins: a deferred check-in whose state is no longer the
// stored one (a check-in that changed it was written since) is dropped,
// and never writes an older state over a newer one.
func (s *Server) flushCheckIns(items []store.CheckIn) error {
	s.deferred.mu.Lock()
	deferred := s.deferred.m
	s.deferred.m, s.deferred.spare = s.deferred.spare, nil
	s.deferred.mu.Unlock()

	cs := make([]store.CheckIn, 0, len(items)+len(deferred))
	idx := make([]int, 0, len(items)) // cs index of items[i], -1 for none
	for _, c := range items {
		if c.AgentID == "" {
			idx = append(idx, -1)
			continue
		}
		idx = append(idx, len(cs))
		cs = append(cs, c)
	}
	stateful := len(cs)
	if len(deferred) > 0 {
		var inBatch map[string]bool
		if stateful > 0 {
			inBatch = make(map[string]bool, stateful)
			for _, c := range cs {
				inBatch[c.AgentID] = true
			}
		}
		for id, d := range deferred {
			if inBatch[id] {
				continue
			}
			if v, ok := s.agents.Load(id); !ok || v.(*agentEntry).stored != d.base {
				continue
			}
			cs = append(cs, d.c)
		}
		clear(deferred)
	}
	s.deferred.mu.Lock()
	s.deferred.spare = deferred
	s.deferred.mu.Unlock()
	if len(cs) == 0 {
		return nil
	}

	if stateful > 0 {
		s.m.batchSize.WithLabelValues("checkin").Observe(float64(stateful))
	}
	refused, err := s.store.CheckIns(context.Background(), cs)
	if err != nil {
		s.log.Error("storing check-ins", "err", err, "batch", len(cs), "deferred", len(cs)-stateful)
		return err
	}
	n := 0
	for i := range stateful {
		if !refused[i] {
			n++
			s.noteStored(cs[i])
		}
	}
	s.m.checkins.Add(float64(n))
	if n == stateful {
		return nil
	}
	rf := make(refusals, len(items))
	for i, j := range idx {
		rf[i] = j >= 0 && refused[j]
	}
	return rf
}

// noteStored records c, just written, as the agent's stored check-in and
// its groups as the agent's, unless it was revoked or removed meanwhile.
func (s *Server) noteStored(c store.CheckIn) {
	c.Groups = slices.Clone(c.Groups)
	c.Counters = nil // soft: not compared
	for {
		v, ok := s.agents.Load(c.AgentID)
		if !ok {
			return
		}
		old := v.(*agentEntry)
		if old.revoked || old.removed {
			return
		}
		e := *old
		e.groups, e.stored = c.Groups, &c
		if s.agents.CompareAndSwap(c.AgentID, old, &e) {
			return
		}
	}
}
