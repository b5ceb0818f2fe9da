package loadgen_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestWrkCheckIns runs wrk with bench/wrk/checkin.lua for one second
// against an in-process server on loopback with 20 enrolled agents, one of
// them revoked: every other agent's check-in body is stored (its counters
// and on-access state, which enrollment does not set), the revoked
// agent's check-ins are answered 403 and counted by RunWrk as not 2xx.
func TestWrkCheckIns(t *testing.T) {
	testenv.NeedTool(t, "wrk", "wrk")
	var st store.Store
	srv := servertest.StartOpen(t, server.Config{Server: config.Server{BeaconInterval: time.Hour}},
		func(path string) (store.Store, error) {
			s, err := sqlite.Open(path)
			st = s
			return s, err
		})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := "http://" + srv.AgentAddr
	nodeURL := srv.URL

	ids, err := loadgen.Enroll(ctx, loadgen.NewHTTPClient(4), nodeURL, srv.EnrollSecret(), srv.PublicKey(), "wrk", 20, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	revoked := ids[7].AgentID
	if err := st.RevokeAgent(ctx, revoked, time.Now()); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "creds.txt")
	if err := loadgen.WriteWrkCredentials(creds, nodeURL, ids, nil); err != nil {
		t.Fatal(err)
	}
	res, err := loadgen.RunWrk(ctx, loadgen.WrkRun{
		Script: filepath.Join("..", "wrk", "checkin.lua"), Credentials: creds, URL: host,
		Threads: 2, Conns: 4, Duration: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrk: %d requests, %d not 2xx, %.0f/s, p50 %v, p99 %v", res.Requests, res.NonOK, res.PerSecond, res.P50, res.P99)
	if res.Requests < 20 || res.PerSecond <= 0 || res.P99 <= 0 || res.P99 < res.P50 {
		t.Fatalf("implausible wrk report: %+v", res)
	}
	// The revoked agent is one of 20, taken in turn: about 1/20 of the
	// requests.
	if res.NonOK < res.Requests/40 || res.NonOK > res.Requests/10 {
		t.Fatalf("%d of %d answers not 2xx; want about 1/20 (the revoked agent's)", res.NonOK, res.Requests)
	}
	for _, id := range ids {
		a, err := st.Agent(ctx, id.AgentID)
		if err != nil {
			t.Fatal(err)
		}
		if id.AgentID == revoked {
			if a.OnAccess != nil {
				t.Fatalf("the revoked agent's check-in was stored: %+v", a)
			}
			continue
		}
		if a.OnAccess == nil || a.Counters["executed"] != 3 || a.LastCheckIn.IsZero() {
			t.Fatalf("agent %s: wrk's check-in body was not stored: %+v", id.AgentID, a)
		}
	}
}
