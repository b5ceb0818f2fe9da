package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// Several server instances may share one store (PostgreSQL). Each issues
// and announces its own commands; it learns of the others' commands,
// results and epoch moves from the store's events (store.Notifier), so
// that its beacons and answers carry the fleet-wide latest sequence and
// epoch, and its console's live pages follow every instance's results.
// A store only one process opens (SQLite) has no events: the server's own
// issuing is all there is.

// shared reports whether other instances may write to the server's store.
func (s *Server) shared() bool {
	_, ok := s.store.(store.Notifier)
	return ok
}

// raiseLatest makes the server's latest sequence at least seq. When it
// rises, the relay streams wake to send the commands up to it: every
// path by which the server learns of a command (its own issuing, another
// instance's store event, a read of the store) comes through here.
func (s *Server) raiseLatest(seq uint64) {
	for {
		old := s.latest.Load()
		if seq <= old {
			return
		}
		if s.latest.CompareAndSwap(old, seq) {
			s.commandsChanged.Notify()
			return
		}
	}
}

// refreshLatest returns the latest sequence, read again from the store
// when other instances share it (one of them may have issued commands
// this one has not heard of yet).
func (s *Server) refreshLatest(ctx context.Context) (uint64, error) {
	if !s.shared() {
		return s.latest.Load(), nil
	}
	l, err := s.store.LatestSeq(ctx)
	if err != nil {
		return 0, err
	}
	s.raiseLatest(l)
	return s.latest.Load(), nil
}

// listenLogger is a store.Notifier that reports the failures of its
// listening connection (the PostgreSQL store).
type listenLogger interface {
	SetListenLog(func(err error, retryIn time.Duration))
}

// followStore follows the events of a shared store until the server
// stops.
func (s *Server) followStore(n store.Notifier) {
	defer s.wg.Done()
	if l, ok := n.(listenLogger); ok {
		l.SetListenLog(func(err error, retryIn time.Duration) {
			s.log.Warn("store events: the listening connection failed; other instances' commands, results "+
				"and epoch are not followed until it is back", "err", err, "retry_in", retryIn)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := n.Events(ctx)
	for {
		select {
		case <-s.stop:
			cancel()
			for range events { // closed once the store's listener is done
			}
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			s.onStoreEvent(ctx, ev)
		}
	}
}

func (s *Server) onStoreEvent(ctx context.Context, ev store.Event) {
	s.m.storeEvents.WithLabelValues(ev.Kind.String()).Inc()
	switch ev.Kind {
	case store.EventCommands:
		s.raiseLatest(ev.Seq)
	case store.EventResults:
		s.resultsChanged.Notify() // the console's live pages
	case store.EventAgent:
		s.refreshAgent(ctx, ev.Agent)
	case store.EventEpoch, store.EventResync:
		if _, err := s.refreshLatest(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reading the latest sequence after a store event", "event", ev.Kind, "err", err)
		}
		s.epochMu.Lock()
		s.followEpochLocked()
		s.epochMu.Unlock()
		if ev.Kind == store.EventResync {
			s.resultsChanged.Notify()
			// Revocations may have been missed: credentials are read
			// from the store again, and each open relay stream's agent
			// now.
			s.agents.Clear()
			for _, id := range s.relays.agents() {
				s.refreshAgent(ctx, id)
			}
		}
	}
}

// followEpochLocked moves the server to the store's epoch when another
// instance moved the store to a new one. epochMu must be held for
// writing.
func (s *Server) followEpochLocked() {
	ep, e := s.ep.Load(), s.store.Epoch()
	if e == ep.epoch {
		return
	}
	start := s.store.EpochStart()
	s.raiseLatest(start)
	s.ep.Store(&epochState{epoch: e, start: start, issuedFrom: s.latest.Load(), left: ep.epoch, leftLatest: start})
	s.m.epochChanges.Inc()
	s.log.Warn("another server instance moved the store to a new epoch; following it",
		"old_epoch", ep.epoch, "new_epoch", e, "first_seq", fmt.Sprint(start+1))
}

// refreshEpoch reads the shared store's epoch and latest sequence again,
// follows the epoch if another instance moved it, and returns the
// server's epoch and latest sequence.
func (s *Server) refreshEpoch(ctx context.Context) (*epochState, uint64, error) {
	n, ok := s.store.(store.Notifier)
	if !ok {
		return s.ep.Load(), s.latest.Load(), nil
	}
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	if err := n.RefreshEpoch(ctx); err != nil {
		return nil, 0, err
	}
	if _, err := s.refreshLatest(ctx); err != nil {
		return nil, 0, err
	}
	s.followEpochLocked()
	return s.ep.Load(), s.latest.Load(), nil
}

// refreshAgent reads again what this instance holds of an agent's
// credential, after another instance revoked or removed it (or this one:
// the event comes back), and ends its relay stream. The entry read now,
// after the change committed, replaces any read before it.
func (s *Server) refreshAgent(ctx context.Context, id string) {
	a, err := s.store.Agent(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.agents.Store(id, &agentEntry{removed: true})
	case err != nil:
		// Read again at the agent's next request.
		s.agents.Delete(id)
		if ctx.Err() == nil {
			s.log.Warn("reading a revoked or removed agent after a store event", "agent", id, "err", err)
		}
	default:
		s.agents.Store(id, &agentEntry{tokenHash: a.TokenHash, groups: a.Groups, revoked: !a.Revoked.IsZero()})
		if a.Revoked.IsZero() {
			return
		}
	}
	s.relays.end(id, errAgentRevoked)
}
