package storecopy_test

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/store/storecopy"
)

// BenchmarkCopy copies a SQLite store of 10,000 agents (checked in, in
// groups), 10 commands and 100,000 results into a new PostgreSQL database,
// the check before commit included; rows/s counts every row copied.
func BenchmarkCopy(b *testing.B) {
	const agents, commands = 10000, 10
	ctx := b.Context()
	path := filepath.Join(b.TempDir(), "vigil.db")
	s, err := sqlite.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	as := make([]store.Agent, agents)
	for i := range as {
		id := fmt.Sprintf("agent-%06d", i)
		h := sha256.Sum256([]byte(id))
		as[i] = store.Agent{ID: id, TokenHash: h[:], Hostname: "host-" + id, OS: "linux", Arch: "amd64", Version: "1.2.3",
			DefsVer: "20261130", Groups: []string{"lab", fmt.Sprintf("rack-%d", i%40)}, EnrolledAt: now, LastSeen: now,
			Counters: map[string]uint64{"executed": uint64(i)}}
	}
	if err := s.ImportAgents(ctx, as); err != nil {
		b.Fatal(err)
	}
	for range commands {
		c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
			return store.Command{Seq: seq, Name: "ping", Target: `{"all":true}`, Envelope: make([]byte, 200), IssuedAt: now, Expires: now.Add(time.Hour)}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		rs := make([]store.Result, agents)
		for i := range rs {
			rs[i] = store.Result{Seq: c.Seq, AgentID: as[i].ID, Status: "ok", Output: "pong", ExecutedAt: now, ReceivedAt: now}
		}
		if err := s.RecordResults(ctx, rs); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	ro, err := sqlite.OpenReadOnly(path)
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	cl := pgtest.Shared(b)
	rows := 0
	for b.Loop() {
		b.StopTimer()
		p := openPG(b, cl.NewDatabase(b))
		b.StartTimer()
		d, err := storecopy.Copy(ctx, ro, p)
		if err != nil {
			b.Fatal(err)
		}
		rows = 0
		for _, n := range d.Counts {
			rows += n
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
