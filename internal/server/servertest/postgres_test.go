package servertest_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := pgtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// With Store set to a postgres:// URL, Start opens that database: an
// agent enrolled, a command sent and its result posted are in PostgreSQL,
// and no SQLite file is made.
func TestStartPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).NewDatabase(t)
	ts := servertest.Start(t, server.Config{Server: config.Server{Store: config.StoreDSN(dsn), BeaconInterval: time.Hour}})
	ctx := t.Context()
	ac := ts.AgentClient("")
	enr, err := ac.Enroll(ctx, api.EnrollRequest{
		Secret: ts.EnrollSecret(), Nonce: strings.Repeat("5a", 16), Hostname: "pg1", OS: "linux", Arch: "amd64", Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := ts.Admin().Send(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	ac = ts.AgentClient(enr.Token)
	resp, err := ac.PostResults(ctx, []api.Result{{Seq: info.Seq, Status: "ok", Output: "pong", ExecutedAt: time.Now()}})
	if err != nil || len(resp.Accepted) != 1 {
		t.Fatalf("results: %+v, %v", resp, err)
	}
	if _, err := os.Stat(ts.Config.DataDir + "/" + server.FileDatabase); !os.IsNotExist(err) {
		t.Errorf("a SQLite store was made: %v", err)
	}
	ts.Close()

	p, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rs, err := p.Results(ctx, info.Seq)
	if err != nil || len(rs) != 1 || rs[0].AgentID != enr.AgentID || rs[0].Output != "pong" {
		t.Fatalf("results in PostgreSQL: %+v, %v", rs, err)
	}
	if p.Epoch() != ts.Epoch() {
		t.Errorf("epoch %d in PostgreSQL, the server's %d", p.Epoch(), ts.Epoch())
	}
}

// An agent checking in from the epoch another instance just moved the
// store to is answered in that epoch, never sent back to the one the store
// left, whether or not this instance has had the move's notification; and
// a result for a command another instance just issued is accepted.
func TestPostgresOtherInstance(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).NewDatabase(t)
	ts := servertest.Start(t, server.Config{Server: config.Server{Store: config.StoreDSN(dsn), BeaconInterval: time.Hour}})
	ctx := t.Context()
	enr, err := ts.AgentClient("").Enroll(ctx, api.EnrollRequest{
		Secret: ts.EnrollSecret(), Nonce: strings.Repeat("6b", 16), Hostname: "pg2", OS: "linux", Arch: "amd64", Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	ac := ts.AgentClient(enr.Token)
	other, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// Results for commands a second instance issues a moment before.
	ts2 := servertest.Start(t, server.Config{Server: config.Server{Store: config.StoreDSN(dsn), BeaconInterval: time.Hour}})
	for i := range 5 {
		info, err := ts2.Admin().Send(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ac.PostResults(ctx, []api.Result{{Seq: info.Seq, Status: "ok", Output: "pong", ExecutedAt: time.Now()}})
		if err != nil || len(resp.Accepted) != 1 {
			t.Fatalf("result %d for the other instance's command %d: %+v, %v", i, info.Seq, resp, err)
		}
	}
	for i := range 5 {
		e, err := other.NewEpoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ac.CheckIn(ctx, api.CheckInRequest{Epoch: e, Hostname: "pg2", OS: "linux", Arch: "amd64", Version: "test", LastSeq: other.EpochStart()})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Epoch != e || len(resp.EpochProof) != 0 {
			t.Fatalf("check-in %d from the store's new epoch %d: answered in epoch %d (proof %d bytes)", i, e, resp.Epoch, len(resp.EpochProof))
		}
	}
}
