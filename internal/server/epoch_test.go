package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// copyFile copies a file (the server's store, stopped) for a backup or a
// restore.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRestoredServerMovesToNewEpoch: the server's data directory is
// restored from a backup older than what agents have seen. The first agent
// that checks in ahead of the server makes it log the loss, move to a new
// epoch (stored before it answers) and answer with a signed statement of
// it; every other agent of the old epoch gets one too; commands, beacons
// and statements from then on carry the new epoch, which survives a
// restart. Before the fix, the agent got 409 and the new commands, which
// reused sequence numbers it had seen, were dropped without a word.
func TestRestoredServerMovesToNewEpoch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, server.FileDatabase)
	backup := filepath.Join(t.TempDir(), "backup.db")

	// Before the backup: two commands; then the backup (server stopped).
	f := newFixtureAt(t, dir, nil)
	ahead := f.enroll(t, "lab")
	behind := f.enroll(t, "lab")
	second := f.enroll(t, "lab")
	oldEpoch := f.srv.Epoch()
	issue := func(f *fixture) uint64 {
		t.Helper()
		c, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c.Seq
	}
	issue(f)
	issue(f)
	f.srv.Close()
	copyFile(t, db, backup)

	// After the backup: commands 3-5, which agents ahead and second run.
	f = newFixtureAt(t, dir, nil)
	for range 3 {
		issue(f)
	}
	f.srv.Close()

	// The restore, server stopped: back to 2.
	copyFile(t, backup, db)
	for _, ext := range []string{"-wal", "-shm"} {
		os.Remove(db + ext)
	}
	f = newFixtureAt(t, dir, func(c *server.Config) { c.BeaconInterval = 20 * time.Millisecond })
	if f.srv.Epoch() != oldEpoch || f.srv.LatestSeq() != 2 {
		t.Fatalf("restored server: epoch %d latest %d", f.srv.Epoch(), f.srv.LatestSeq())
	}
	reused := issue(f) // 3 again: agents that saw 5 drop it

	// The agent ahead checks in.
	var ci api.CheckInResponse
	err := f.agentClient(ahead.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: oldEpoch, Hostname: "ahead", Groups: []string{"lab"}, LastSeq: 5}, &ci)
	if err != nil {
		t.Fatalf("check-in of the agent ahead: %v", err)
	}
	newEpoch := f.srv.Epoch()
	if newEpoch == oldEpoch || ci.Epoch != newEpoch || len(ci.EpochProof) == 0 {
		t.Fatalf("check-in answer %+v; server epoch %d (old %d): want a new epoch with a proof", ci, newEpoch, oldEpoch)
	}
	e, st := verifyStatement(t, f.srv.PublicKey(), ci.EpochProof)
	if e.Epoch != newEpoch || e.Seq != reused || st.Agent != ahead.AgentID || st.Nonce != "" || st.Previous != oldEpoch {
		t.Fatalf("epoch statement %+v %+v, want epoch %d from %d for %s, previous %d", e.Header, st, newEpoch, reused, ahead.AgentID, oldEpoch)
	}
	// Logged: the error naming the agent and both sequences, and the
	// commands to send again.
	errLine := f.log.lines("level=ERROR", "ahead of the server", ahead.AgentID)
	if len(errLine) != 1 || !strings.Contains(errLine[0], "agent_last_seq=5") || !strings.Contains(errLine[0], "server_latest_seq=3") {
		t.Fatalf("error lines %q", errLine)
	}
	resend := f.log.lines("level=WARN", "send them again")
	if len(resend) != 1 || !strings.Contains(resend[0], "first_seq=3") || !strings.Contains(resend[0], "last_seq=3") || !strings.Contains(resend[0], "3 ping") {
		t.Fatalf("warning about the reused commands: %q", resend)
	}

	// Commands, beacons and the admin API now carry the new epoch;
	// numbering goes on.
	next, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ne, err := wire.Decode(next.Envelope); err != nil || ne.Epoch != newEpoch || ne.Seq != reused+1 {
		t.Fatalf("command after the move: %+v, %v", ne, err)
	}
	for {
		b := f.receive(t, wire.KindBeacon)
		if b.Epoch == newEpoch {
			break
		}
		if b.Epoch != oldEpoch {
			t.Fatalf("beacon of epoch %d", b.Epoch)
		}
	}
	info, err := f.admin().ServerInfo(ctx)
	if err != nil || info.Epoch != newEpoch {
		t.Fatalf("server info %+v, %v", info, err)
	}

	// Another agent of the old epoch, behind: a statement starting it
	// where the new epoch starts, so that it fetches what it missed.
	ci = api.CheckInResponse{}
	if err := f.agentClient(behind.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: oldEpoch, Hostname: "behind", LastSeq: 1}, &ci); err != nil {
		t.Fatal(err)
	}
	e, st = verifyStatement(t, f.srv.PublicKey(), ci.EpochProof)
	if e.Epoch != newEpoch || e.Seq != reused || st.Agent != behind.AgentID || !ci.Changed || ci.LatestSeq != next.Seq {
		t.Fatalf("agent behind: answer %+v, statement %+v %+v", ci, e.Header, st)
	}
	// A second agent that was ahead moves without a second new epoch, and
	// is named in a warning.
	ci = api.CheckInResponse{}
	if err := f.agentClient(second.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: oldEpoch, Hostname: "second", LastSeq: 5}, &ci); err != nil {
		t.Fatal(err)
	}
	if f.srv.Epoch() != newEpoch || ci.Epoch != newEpoch || len(ci.EpochProof) == 0 {
		t.Fatalf("second agent ahead: server epoch %d, answer %+v", f.srv.Epoch(), ci)
	}
	if w := f.log.lines("level=WARN", second.AgentID, "agent_last_seq=5"); len(w) != 1 {
		t.Fatalf("warnings naming the second agent: %q", w)
	}
	// An agent in the new epoch gets no statement.
	ci = api.CheckInResponse{}
	if err := f.agentClient(ahead.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: newEpoch, Hostname: "ahead", LastSeq: reused}, &ci); err != nil {
		t.Fatal(err)
	}
	if ci.EpochProof != nil || !ci.Changed {
		t.Fatalf("agent in the new epoch: %+v", ci)
	}

	// The new epoch is stored: a restarted server is in it.
	f.srv.Close()
	f = newFixtureAt(t, dir, nil)
	ci = api.CheckInResponse{}
	if f.srv.Epoch() != newEpoch || f.srv.LatestSeq() != next.Seq {
		t.Fatalf("after a restart: epoch %d latest %d, want %d %d", f.srv.Epoch(), f.srv.LatestSeq(), newEpoch, next.Seq)
	}
	if err := f.agentClient(behind.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: oldEpoch, Hostname: "behind", LastSeq: 1}, &ci); err != nil {
		t.Fatal(err)
	}
	if e, _ := verifyStatement(t, f.srv.PublicKey(), ci.EpochProof); e.Seq != reused {
		t.Fatalf("after a restart, a statement starting at %d, want %d", e.Seq, reused)
	}
}

// TestConcurrentAheadCheckIns: agents ahead checking in at once move the
// server to one new epoch, not one each.
func TestConcurrentAheadCheckIns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	old := f.srv.Epoch()
	const n = 8
	ens := make([]api.EnrollResponse, n)
	for i := range ens {
		ens[i] = f.enroll(t)
	}
	epochs := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ci, err := f.agentClient(ens[i].Token).CheckIn(ctx, api.CheckInRequest{Epoch: old, Hostname: "h" + strconv.Itoa(i), LastSeq: 7})
			if err != nil {
				t.Error(err)
				return
			}
			e, _ := verifyStatement(t, f.srv.PublicKey(), ci.EpochProof)
			epochs[i] = e.Epoch
		})
	}
	wg.Wait()
	for i, e := range epochs {
		if e != f.srv.Epoch() || e == old {
			t.Errorf("agent %d moved to epoch %d; the server is in %d (old %d)", i, e, f.srv.Epoch(), old)
		}
	}
	if moves := f.log.lines("moved to a new epoch"); len(moves) != 1 {
		t.Fatalf("%d moves to a new epoch: %q", len(moves), moves)
	}
}
