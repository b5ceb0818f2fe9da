package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// newShared starts a server over the PostgreSQL database dsn, multicasting
// on the loopback interface with TTL 0.
func newShared(t *testing.T, dsn string, port int) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Interface, cfg.TTL, cfg.Port = t.TempDir(), testenv.Loopback(t), 0, port
	cfg.BeaconInterval = time.Hour
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg, func(string) (store.Store, error) { return postgres.Open(context.Background(), dsn) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor waits until ok holds, failing t after 10 seconds.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollowSharedStore: two servers over one PostgreSQL database learn
// each other's commands (latest sequence), results (the console's live
// pages wake) and epoch moves from the store's events.
func TestFollowSharedStore(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	port := 20000 + int(time.Now().UnixNano()%30000)
	a, b := newShared(t, dsn, port), newShared(t, dsn, port)
	ctx := t.Context()

	cmd, err := a.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Read again on demand (a result for it may reach b first) ...
	if l, err := b.refreshLatest(ctx); err != nil || l != cmd.Seq {
		t.Fatalf("b's latest read again: %d, %v; want %d", l, err, cmd.Seq)
	}
	// ... and followed from the events.
	cmd2, err := a.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b follows a's second command", func() bool { return b.LatestSeq() == cmd2.Seq })

	// Results a records wake b's console.
	changed := b.resultsChanged.Changed()
	now := time.Now()
	if err := a.store.EnrollAgent(ctx, store.Agent{ID: "agent1", Hostname: "h1", EnrolledAt: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := a.flushResults([]store.Result{{Seq: cmd.Seq, AgentID: "agent1", Status: "ok", ReceivedAt: now}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("b's console was not woken by a's results")
	}

	// a moves the store to a new epoch; b follows.
	old := b.Epoch()
	e, err := a.store.NewEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b follows the new epoch", func() bool { return b.Epoch() == e })
	if ep := b.ep.Load(); ep.start != cmd2.Seq || ep.left != old {
		t.Fatalf("b's epoch state %+v, want start %d, left %d", *ep, cmd2.Seq, old)
	}
}

// TestIssueAfterOtherEpoch: a command issued right after another instance
// moved the store to a new epoch, before or after this server heard of
// it, is signed in the new epoch.
func TestIssueAfterOtherEpoch(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	a := newShared(t, dsn, 20000+int(time.Now().UnixNano()%30000))
	other, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i := range 5 {
		e, err := other.NewEpoch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := a.Issue(t.Context(), command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
		if err != nil {
			t.Fatalf("issue %d after another instance's new epoch: %v", i, err)
		}
		env, err := wire.Decode(cmd.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if env.Header.Epoch != e || a.Epoch() != e {
			t.Fatalf("issue %d: command signed in epoch %d, server in %d; the store moved to %d", i, env.Header.Epoch, a.Epoch(), e)
		}
	}
}

// The PostgreSQL store's listening failures reach the server's log.
var _ listenLogger = (*postgres.Store)(nil)
