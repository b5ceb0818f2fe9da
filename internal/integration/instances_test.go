//go:build linux

package integration

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestInstancesOverPostgres runs four `vigil server` processes over one
// PostgreSQL database, sharing the signing key, admin token and
// enrollment secret (copied from the first one's data directory, as
// docs/operations.md says), all announcing on one multicast group and
// port of lo (TTL 0), and three `vigil agent` processes, each talking to
// a different instance. 1,000 commands are issued at once, 250 through
// each instance's admin API. The store's sequence numbers are 1 to 1,000
// with no gap and no duplicate, each instance answers with the
// fleet-wide latest sequence, and every agent executed each command
// exactly once (its journal) and reported it (one result per command and
// agent in the store).
func TestInstancesOverPostgres(t *testing.T) {
	const instances, each, agents = 4, 250, 3
	dsn := pgtest.Start(t).NewDatabase(t)
	port, ifname := freeUDPPort(t), testenv.Loopback(t)
	start := time.Now()

	ins := startInstances(t, instances, dsn, port)

	f := &fleet{t: t, admin: localPlace(), adminURL: ins[0].admin, dataDir: ins[0].dataDir, startedAt: start}
	for i := range agents {
		f.addMember("pg-a"+strconv.Itoa(i), localPlace(), ins[i%instances].api, testGroup, port, ifname)
	}
	for _, m := range f.members {
		f.startAgent(m)
	}
	f.learnIDs()
	f.logf("%d server instances and %d agents running over one PostgreSQL database", instances, agents)

	client := func(in *pgInstance) *api.AdminClient { return in.client(t) }
	var (
		mu   sync.Mutex
		cmds []api.CommandInfo
		wg   sync.WaitGroup
	)
	issueStart := time.Now()
	for _, in := range ins {
		c := client(in)
		wg.Go(func() {
			for range each {
				info, err := c.Send(context.Background(), api.SendRequest{Name: "ping", Target: command.Target{All: true}})
				if err != nil {
					t.Errorf("send through %s: %v", in.admin, err)
					return
				}
				mu.Lock()
				cmds = append(cmds, info)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	f.logf("issued %d commands through %d instances in %v", len(cmds), instances, time.Since(issueStart).Round(time.Millisecond))

	// No gap, no duplicate: the acknowledged numbers are 1..1000, and so
	// are the store's.
	const total = instances * each
	slices.SortFunc(cmds, func(a, b api.CommandInfo) int { return int(a.Seq) - int(b.Seq) })
	for i, c := range cmds {
		if c.Seq != uint64(i+1) {
			t.Fatalf("acknowledged sequence numbers: position %d holds %d, want %d (a gap or a duplicate)", i, c.Seq, i+1)
		}
		f.cmds = append(f.cmds, issued{CommandInfo: c, want: command.StatusOK})
	}
	st, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored, err := st.CommandsAfter(t.Context(), 0, 2*total)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != total {
		t.Fatalf("%d commands stored, want %d", len(stored), total)
	}
	for i, c := range stored {
		if c.Seq != uint64(i+1) {
			t.Fatalf("stored sequence numbers: position %d holds %d, want %d", i, c.Seq, i+1)
		}
	}

	// Every instance answers with the fleet-wide latest, learnt from the
	// store's events (not only its own 250).
	for i, in := range ins {
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, err := client(in).ServerInfo(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if info.LatestSeq == total {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d answers latest sequence %d, want %d", i+1, info.LatestSeq, total)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Every agent reports every command once.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int
		if err := st.Pool().QueryRow(t.Context(), "SELECT count(*) FROM results").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == total*agents {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d results stored within 2 minutes, want %d", n, total*agents)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.logf("all %d results stored", total*agents)
	for _, m := range f.members {
		var n, lo, hi int
		err := st.Pool().QueryRow(t.Context(), "SELECT count(DISTINCT seq), min(seq), max(seq) FROM results WHERE agent_id = $1", m.id).Scan(&n, &lo, &hi)
		if err != nil {
			t.Fatal(err)
		}
		if n != total || lo != 1 || hi != total {
			t.Errorf("agent %s: results for %d commands (%d-%d), want %d (1-%d)", m.name, n, lo, hi, total, total)
		}
	}

	f.stopAgents()
	f.checkJournals()
	for _, m := range f.members {
		log := m.proc.Log()
		f.logf("agent %s: %d commands executed via multicast, %d via HTTP", m.name,
			countLines(log, "via=multicast"), countLines(log, "via=http"))
	}
}
