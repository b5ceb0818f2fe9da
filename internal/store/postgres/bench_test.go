package postgres

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
)

// The same figures as the SQLite store's benchmarks
// (internal/store/sqlite/bench_test.go), so that the two compare.
const (
	benchAgents = 10_000
	benchBatch  = 256
)

// benchCluster starts a cluster of its own for a benchmark: with fsync on
// (the default of these benchmarks, as the SQLite store fsyncs each commit)
// or off.
func benchCluster(b *testing.B, fsync bool) *pgtest.Cluster {
	return pgtest.StartWith(b, pgtest.Options{Fsync: fsync})
}

// fsyncModes runs bench with fsync on and off.
func fsyncModes(b *testing.B, bench func(b *testing.B, c *pgtest.Cluster)) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", on), func(b *testing.B) { bench(b, benchCluster(b, on)) })
	}
}

// benchStore returns a store holding benchAgents enrolled agents.
func benchStore(b *testing.B, c *pgtest.Cluster) (*Store, []string) {
	b.Helper()
	s := mustOpen(b, c.NewDatabase(b))
	ids := make([]string, benchAgents)
	as := make([]store.Agent, benchAgents)
	now := time.Now()
	for i := range as {
		ids[i] = fmt.Sprintf("agent-%05d-%08x", i, uint32(i)*2654435761)
		as[i] = store.Agent{
			ID: ids[i], TokenHash: make([]byte, 32), Hostname: ids[i] + ".corp.example", OS: "linux",
			Arch: "amd64", Version: "1.4.2", DefsVer: "2026.03.14-1", Groups: []string{"all", "web"},
			EnrolledAt: now, LastSeen: now, Counters: map[string]uint64{},
		}
	}
	if err := s.ImportAgents(b.Context(), as); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(b.Context(), "VACUUM ANALYZE agents"); err != nil {
		b.Fatal(err)
	}
	return s, ids
}

// latencies collects the duration of each call and reports percentiles.
type latencies []time.Duration

func (l *latencies) time(f func()) {
	start := time.Now()
	f()
	*l = append(*l, time.Since(start))
}

func (l latencies) report(b *testing.B, items int, unit string) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	pct := func(p float64) float64 {
		return float64(l[min(len(l)-1, int(float64(len(l))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(items)/b.Elapsed().Seconds(), unit+"/s")
}

func checkInBatch(ids []string, round int, batch []store.CheckIn) {
	now := time.Now()
	for j := range batch {
		k := (round*len(batch) + j) % len(ids)
		batch[j] = store.CheckIn{
			AgentID: ids[k], Hostname: ids[k] + ".corp.example", OS: "linux", Arch: "amd64",
			Version: "1.4.2", DefsVer: "2026.03.14-1", Groups: []string{"all", "web", "eu-west"},
			LastSeq: uint64(round), At: now,
			Counters: map[string]uint64{"bad_sig": 1, "stale": uint64(round), "replay": 0},
		}
	}
}

// BenchmarkCheckInsBatch measures CheckIns with batches of 256 check-ins
// spread over 10,000 agents, as the server's group commit issues them.
func BenchmarkCheckInsBatch(b *testing.B) {
	fsyncModes(b, func(b *testing.B, c *pgtest.Cluster) {
		s, ids := benchStore(b, c)
		ctx := b.Context()
		batch := make([]store.CheckIn, benchBatch)
		var lat latencies
		n := 0
		for b.Loop() {
			checkInBatch(ids, n, batch)
			n++
			lat.time(func() {
				if _, err := s.CheckIns(ctx, batch); err != nil {
					b.Fatal(err)
				}
			})
		}
		lat.report(b, n*benchBatch, "checkins")
	})
}

// BenchmarkCheckInsBatchTwoInstances is BenchmarkCheckInsBatch from two
// Stores (two server instances' pools) over one database at once, each
// with its own half of the agents.
func BenchmarkCheckInsBatchTwoInstances(b *testing.B) {
	fsyncModes(b, func(b *testing.B, c *pgtest.Cluster) {
		s, ids := benchStore(b, c)
		other, err := Open(b.Context(), s.pool.Config().ConnString())
		if err != nil {
			b.Fatal(err)
		}
		defer other.Close()
		ctx := b.Context()
		var lat [2]latencies
		n := 0
		for b.Loop() {
			done := make(chan struct{})
			for i, st := range []*Store{s, other} {
				go func() {
					defer func() { done <- struct{}{} }()
					batch := make([]store.CheckIn, benchBatch)
					checkInBatch(ids[i*len(ids)/2:(i+1)*len(ids)/2], n, batch)
					lat[i].time(func() {
						if _, err := st.CheckIns(ctx, batch); err != nil {
							b.Error(err)
						}
					})
				}()
			}
			<-done
			<-done
			n++
		}
		lat[0].report(b, 2*n*benchBatch, "checkins")
	})
}

// signBench returns a sign function that signs a realistic envelope with
// Ed25519.
func signBench() func(uint64) (store.Command, error) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	return func(seq uint64) (store.Command, error) {
		body := make([]byte, 48+200)
		copy(body, "VGL1\x01\x01")
		binary.BigEndian.PutUint64(body[22:], seq)
		env := append(body, ed25519.Sign(key, body)...)
		now := time.Now()
		return store.Command{Seq: seq, Name: "run-script", Target: `{"groups":["web"]}`, Envelope: env,
			IssuedAt: now, Expires: now.Add(time.Hour)}, nil
	}
}

// BenchmarkAppendCommand measures AppendCommand, one at a time.
func BenchmarkAppendCommand(b *testing.B) {
	fsyncModes(b, func(b *testing.B, c *pgtest.Cluster) {
		s := mustOpen(b, c.NewDatabase(b))
		ctx := b.Context()
		sign := signBench()
		var lat latencies
		n := 0
		for b.Loop() {
			lat.time(func() {
				if _, err := s.AppendCommand(ctx, sign); err != nil {
					b.Fatal(err)
				}
			})
			n++
		}
		lat.report(b, n, "commands")
	})
}

// BenchmarkRecordResultsBatch measures RecordResults with batches of 256
// results.
func BenchmarkRecordResultsBatch(b *testing.B) {
	fsyncModes(b, func(b *testing.B, c *pgtest.Cluster) {
		s, ids := benchStore(b, c)
		ctx := b.Context()
		var seq uint64
		newCommand := func() {
			c, err := s.AppendCommand(ctx, signBench())
			if err != nil {
				b.Fatal(err)
			}
			seq = c.Seq
		}
		newCommand()
		batch := make([]store.Result, benchBatch)
		var lat latencies
		n, k := 0, 0
		for b.Loop() {
			now := time.Now()
			for j := range batch {
				if k == len(ids) {
					b.StopTimer()
					newCommand()
					b.StartTimer()
					k = 0
				}
				batch[j] = store.Result{Seq: seq, AgentID: ids[k], Status: "ok", Output: "exit 0\nall good\n",
					ExecutedAt: now, ReceivedAt: now}
				k++
			}
			n++
			lat.time(func() {
				if err := s.RecordResults(ctx, batch); err != nil {
					b.Fatal(err)
				}
			})
		}
		lat.report(b, n*benchBatch, "results")
	})
}

// BenchmarkFleetQueries measures the console's queries over 100,000
// agents (fsync off: they only read): Fleet, a count, and first pages of
// 50 in the orders with and without an index, and a search.
func BenchmarkFleetQueries(b *testing.B) {
	const agents = 100_000
	c := benchCluster(b, false)
	s := mustOpen(b, c.NewDatabase(b))
	ctx := b.Context()
	now := time.Now()
	for chunk := range agents / 10_000 {
		as := make([]store.Agent, 10_000)
		for i := range as {
			n := chunk*10_000 + i
			id := fmt.Sprintf("%016x", uint64(n)*0x9E3779B97F4A7C15)
			as[i] = store.Agent{ID: id, TokenHash: []byte{1}, Hostname: fmt.Sprintf("host-%06d.corp.example", n),
				OS: []string{"linux", "windows", "darwin"}[n%3], Arch: "amd64",
				Version: fmt.Sprintf("1.%d.%d", n%12, n%7), DefsVer: fmt.Sprintf("2026.03.%02d-1", n%28),
				Groups:     []string{[]string{"web", "db", "mail", "build", "desk"}[n%5], []string{"eu", "us"}[n%2]},
				EnrolledAt: now, LastSeen: now.Add(-time.Duration(n) * time.Second)}
		}
		if err := s.ImportAgents(ctx, as); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	clock := store.Clock{Now: now, OnlineWithin: time.Minute, MissingAfter: time.Hour}
	b.Run("Fleet", func(b *testing.B) {
		for b.Loop() {
			if f, err := s.Fleet(ctx, clock); err != nil || f.Total != agents {
				b.Fatal(f.Total, err)
			}
		}
	})
	b.Run("CountAgents/group", func(b *testing.B) {
		for b.Loop() {
			if n, err := s.CountAgents(ctx, store.AgentFilter{Group: "db"}); err != nil || n != agents/5 {
				b.Fatal(n, err)
			}
		}
	})
	for _, q := range []struct {
		name string
		q    store.AgentQuery
	}{
		{"version-desc", store.AgentQuery{Sort: store.SortVersion, Desc: true}},
		{"hostname-desc", store.AgentQuery{Sort: store.SortHostname, Desc: true}},
		{"hostname-offset-50000", store.AgentQuery{Sort: store.SortHostname, Offset: 50_000}},
		{"status", store.AgentQuery{Sort: store.SortStatus}},
		{"group-os", store.AgentQuery{AgentFilter: store.AgentFilter{Group: "mail"}, Sort: store.SortOS}},
		{"search", store.AgentQuery{AgentFilter: store.AgentFilter{Search: "ST-01234"}}},
	} {
		b.Run("ListAgents/"+q.name, func(b *testing.B) {
			q.q.Limit = 50
			for b.Loop() {
				n := 0
				if err := s.ListAgents(ctx, q.q, func(store.Agent) error { n++; return nil }); err != nil || n == 0 {
					b.Fatal(n, err)
				}
			}
		})
	}
}
