package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// next receives the next event of ch, failing t after 10 seconds.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("events channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

// TestEvents: a Store's events report what another Store over the same
// database commits (appends, results, a new epoch, whose cached value is
// read again), and nothing of what rolls back; a broken events
// connection is opened again and followed by an EventResync.
func TestEvents(t *testing.T) {
	dsn := newDSN(t)
	a, b := mustOpen(t, dsn), mustOpen(t, dsn)
	ctx, cancel := context.WithCancel(t.Context())
	ch := a.Events(ctx)
	if ev := next(t, ch); ev.Kind != store.EventResync {
		t.Fatalf("first event %v, want resync", ev.Kind)
	}

	// A failed append rolls back: no event for it.
	boom := errors.New("boom")
	if _, err := b.AppendCommand(t.Context(), func(uint64) (store.Command, error) { return store.Command{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("append with a failing sign: %v", err)
	}
	c, err := b.AppendCommand(t.Context(), func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventCommands || ev.Seq != c.Seq {
		t.Fatalf("after an append: event %v seq %d, want commands seq %d", ev.Kind, ev.Seq, c.Seq)
	}

	now := time.Now()
	if err := b.EnrollAgent(t.Context(), store.Agent{ID: "a1", Hostname: "h1", EnrolledAt: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	// A result for a command that does not exist is dropped: nothing
	// inserted, no event.
	if err := b.RecordResults(t.Context(), []store.Result{{Seq: c.Seq + 100, AgentID: "a1", Status: "ok", ReceivedAt: now}}); err != nil {
		t.Fatal(err)
	}
	r := store.Result{Seq: c.Seq, AgentID: "a1", Status: "ok", ReceivedAt: now}
	if err := b.RecordResults(t.Context(), []store.Result{r}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventResults {
		t.Fatalf("after results: event %v, want results", ev.Kind)
	}
	// The same result again inserts nothing: no event.
	if err := b.RecordResults(t.Context(), []store.Result{r}); err != nil {
		t.Fatal(err)
	}
	// A revocation names the agent; revoking an agent that does not
	// exist changes nothing and sends nothing; the removal is next.
	if err := b.RevokeAgent(t.Context(), "a1", now); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventAgent || ev.Agent != "a1" {
		t.Fatalf("after a revocation: event %v agent %q, want agent a1", ev.Kind, ev.Agent)
	}
	if err := b.RevokeAgent(t.Context(), "nobody", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown agent: %v, want ErrNotFound", err)
	}
	if err := b.RemoveAgent(t.Context(), "a1", now); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventAgent || ev.Agent != "a1" {
		t.Fatalf("after a removal: event %v agent %q, want agent a1", ev.Kind, ev.Agent)
	}
	// The epoch's event is next.

	old := a.Epoch()
	e, err := b.NewEpoch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventEpoch {
		t.Fatalf("after a new epoch: event %v, want epoch", ev.Kind)
	}
	if a.Epoch() != e || a.Epoch() == old || a.EpochStart() != c.Seq {
		t.Fatalf("after the event the other store's epoch is %d (start %d), want %d (start %d)", a.Epoch(), a.EpochStart(), e, c.Seq)
	}

	// Kill the events' connection: it comes back, with a resync.
	var errs []error
	a.SetListenLog(func(err error, _ time.Duration) { errs = append(errs, err) })
	tag, err := b.Pool().Exec(t.Context(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()")
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminating the listener: %v (%d rows)", err, tag.RowsAffected())
	}
	if ev := next(t, ch); ev.Kind != store.EventResync {
		t.Fatalf("after the connection was killed: event %v, want resync", ev.Kind)
	}
	if len(errs) != 1 || a.listenErrs.Load() != 1 {
		t.Fatalf("listen errors %v (%d), want one", errs, a.listenErrs.Load())
	}
	c2, err := b.AppendCommand(t.Context(), func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventCommands || ev.Seq != c2.Seq {
		t.Fatalf("after reconnecting: event %v seq %d, want commands seq %d", ev.Kind, ev.Seq, c2.Seq)
	}

	cancel()
	for range ch { // closed once ctx is done
	}
}

// TestAppendAfterOtherEpoch: while the sign of an append through a Store
// that has not yet read another instance's new epoch runs, Epoch and
// EpochStart are the new epoch's; a sign refusing with
// store.ErrEpochChanged stores nothing and uses no sequence number.
func TestAppendAfterOtherEpoch(t *testing.T) {
	dsn := newDSN(t)
	a, b := mustOpen(t, dsn), mustOpen(t, dsn)
	sign := func(seq uint64) (store.Command, error) { return command(seq), nil }
	c1, err := a.AppendCommand(t.Context(), sign)
	if err != nil {
		t.Fatal(err)
	}
	old := a.Epoch()
	e, err := b.NewEpoch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var during, start uint64
	_, err = a.AppendCommand(t.Context(), func(seq uint64) (store.Command, error) {
		during, start = a.Epoch(), a.EpochStart()
		if during != old {
			return store.Command{}, store.ErrEpochChanged
		}
		return command(seq), nil
	})
	if !errors.Is(err, store.ErrEpochChanged) || during != e || start != c1.Seq {
		t.Fatalf("append signed in the epoch left: %v; Epoch() %d (start %d) during sign, want %d (start %d)", err, during, start, e, c1.Seq)
	}
	c2, err := a.AppendCommand(t.Context(), sign)
	if err != nil || c2.Seq != c1.Seq+1 {
		t.Fatalf("append in the new epoch: seq %d, %v; want %d", c2.Seq, err, c1.Seq+1)
	}
}
