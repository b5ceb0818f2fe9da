package sqlite

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

const (
	benchAgents = 10_000
	benchBatch  = 256
)

// benchStore returns a store holding benchAgents enrolled agents.
func benchStore(b *testing.B) (*Store, []string) {
	b.Helper()
	s := mustOpen(b, filepath.Join(b.TempDir(), "vigil.db"))
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
	if err := s.enrollAgents(b.Context(), as); err != nil {
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
	s, ids := benchStore(b)
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
}

// BenchmarkCheckInsBatchWithReads is BenchmarkCheckInsBatch while two
// goroutines read as agents polling for commands do.
func BenchmarkCheckInsBatchWithReads(b *testing.B) {
	s, ids := benchStore(b)
	ctx := b.Context()
	for range 3 {
		if _, err := s.AppendCommand(ctx, signBench(nil)); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var reads [2]int
	for r := range reads {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if _, err := s.Agent(ctx, ids[i%len(ids)]); err != nil {
					b.Error(err)
					return
				}
				if _, err := s.CommandsAfter(ctx, 1, 100); err != nil {
					b.Error(err)
					return
				}
				reads[r]++
			}
		})
	}
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
	close(done)
	wg.Wait()
	lat.report(b, n*benchBatch, "checkins")
	b.ReportMetric(float64(reads[0]+reads[1])/b.Elapsed().Seconds(), "reads/s")
}

// signBench returns a sign function that signs a realistic envelope with
// Ed25519 (nil key: a fixed test key).
func signBench(key ed25519.PrivateKey) func(uint64) (store.Command, error) {
	if key == nil {
		key = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	}
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
	s := mustOpen(b, filepath.Join(b.TempDir(), "vigil.db"))
	ctx := b.Context()
	sign := signBench(nil)
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
}

// BenchmarkAppendCommandParallel measures AppendCommand from many goroutines
// at once (they take turns on the writer connection).
func BenchmarkAppendCommandParallel(b *testing.B) {
	s := mustOpen(b, filepath.Join(b.TempDir(), "vigil.db"))
	ctx := b.Context()
	sign := signBench(nil)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.AppendCommand(ctx, sign); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRecordResultsBatch measures RecordResults with batches of 256
// results.
func BenchmarkRecordResultsBatch(b *testing.B) {
	s, ids := benchStore(b)
	ctx := b.Context()
	var seq uint64
	newCommand := func() {
		c, err := s.AppendCommand(ctx, signBench(nil))
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
}

// fleetStore returns a store holding n agents enrolled with ImportAgents,
// varied as a fleet is: hostnames, four OSes, versions 1.0 to 1.12, ten
// definitions versions (none for some), one to three groups of twenty,
// last seen over a week, 1% revoked, and 2% with detections. It returns
// the clock the agents' last_seen are placed by.
func fleetStore(b *testing.B, n int) (*Store, store.Clock) {
	b.Helper()
	s := mustOpen(b, filepath.Join(b.TempDir(), "vigil.db"))
	ctx := b.Context()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	oses := []string{"linux", "windows", "darwin", "freebsd"}
	const chunk = 10_000
	for from := 0; from < n; from += chunk {
		as := make([]store.Agent, 0, chunk)
		for i := from; i < min(n, from+chunk); i++ {
			h := uint32(i) * 2654435761
			a := store.Agent{
				ID: fmt.Sprintf("agent-%06d-%08x", i, h), TokenHash: make([]byte, 32),
				Hostname: fmt.Sprintf("host-%08x.corp.example", h), OS: oses[h%4], Arch: "amd64",
				Version: fmt.Sprintf("1.%d.%d", h%13, h%3), Groups: []string{fmt.Sprintf("g%02d", h%20)},
				EnrolledAt: now.Add(-30 * 24 * time.Hour), LastSeen: now.Add(-time.Duration(h%(7*24*3600)) * time.Second),
				Counters: map[string]uint64{},
			}
			if h%10 != 0 {
				a.DefsVer = fmt.Sprintf("2026.11.%02d-1", 1+h%10)
			}
			if h%3 == 0 {
				a.Groups = append(a.Groups, fmt.Sprintf("g%02d", (h>>8)%20), "all")
			}
			a.LastCheckIn = a.LastSeen
			if h%100 == 7 {
				a.Revoked = now
			}
			as = append(as, a)
		}
		if err := s.ImportAgents(ctx, as); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < n; i += 50 {
		h := uint32(i) * 2654435761
		id := fmt.Sprintf("agent-%06d-%08x", i, h)
		if _, err := s.RecordScan(ctx, store.Scan{AgentID: id, ReportID: "r", DefsVer: "d", Detections: make([]store.Detection, 1+h%5)}); err != nil {
			b.Fatal(err)
		}
	}
	return s, store.Clock{Now: now, OnlineWithin: 5 * time.Minute, MissingAfter: 24 * time.Hour}
}

// BenchmarkListAgents measures the console's agent list queries at
// 100,000 agents.
func BenchmarkListAgents(b *testing.B) {
	const n = 100_000
	s, clock := fleetStore(b, n)
	ctx := b.Context()
	page := func(q store.AgentQuery) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				got := 0
				if err := s.ListAgents(ctx, q, func(store.Agent) error { got++; return nil }); err != nil {
					b.Fatal(err)
				}
				if got == 0 {
					b.Fatalf("ListAgents(%+v) listed none", q)
				}
			}
		}
	}
	filter := store.AgentFilter{Group: "g07", Status: store.StatusLate, Clock: clock}
	b.Run("first-page-by-id", page(store.AgentQuery{Limit: 50}))
	b.Run("filtered-page", page(store.AgentQuery{AgentFilter: filter, Offset: 50, Limit: 50}))
	b.Run("last-page", page(store.AgentQuery{Offset: n - 50, Limit: 50}))
	b.Run("hostname-desc-page-1000", page(store.AgentQuery{Sort: store.SortHostname, Desc: true, Offset: 999 * 50, Limit: 50}))
	b.Run("os-desc-first-page", page(store.AgentQuery{Sort: store.SortOS, Desc: true, Limit: 50}))
	b.Run("status-first-page", page(store.AgentQuery{Sort: store.SortStatus, Limit: 50}))
	b.Run("detections-desc-first-page", page(store.AgentQuery{Sort: store.SortDetections, Desc: true, Limit: 50}))
	b.Run("fleet", func(b *testing.B) {
		for b.Loop() {
			if f, err := s.Fleet(ctx, clock); err != nil || f.Total != n {
				b.Fatalf("Fleet = %+v, %v", f, err)
			}
		}
	})
	b.Run("count-filtered", func(b *testing.B) {
		for b.Loop() {
			if c, err := s.CountAgents(ctx, filter); err != nil || c == 0 {
				b.Fatalf("CountAgents = %d, %v", c, err)
			}
		}
	})
	b.Run("dashboard-detections", func(b *testing.B) {
		for b.Loop() {
			for _, d := range []time.Duration{24 * time.Hour, 7 * 24 * time.Hour} {
				if _, err := s.CountDetections(ctx, clock.Now.Add(-d)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("count-all", func(b *testing.B) {
		for b.Loop() {
			if c, err := s.CountAgents(ctx, store.AgentFilter{}); err != nil || c != n {
				b.Fatalf("CountAgents = %d, %v", c, err)
			}
		}
	})
}

// BenchmarkProgress measures Progress of a command for all of 100,000
// agents, half of which reported, and an agent page's AgentResults.
func BenchmarkProgress(b *testing.B) {
	const n = 100_000
	s, clock := fleetStore(b, n)
	ctx := b.Context()
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		cmd, err := signBench(nil)(seq)
		cmd.IssuedAt = clock.Now
		return cmd, err
	})
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	if err := s.ListAgents(ctx, store.AgentQuery{}, func(a store.Agent) error { ids = append(ids, a.ID); return nil }); err != nil {
		b.Fatal(err)
	}
	batch := make([]store.Result, 0, 1000)
	for i := 0; i < n; i += 2 {
		batch = append(batch, store.Result{Seq: c.Seq, AgentID: ids[i], Status: "ok", ReceivedAt: clock.Now})
		if len(batch) == cap(batch) {
			if err := s.RecordResults(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			if p, err := s.Progress(ctx, c.Seq, store.Target{All: true}, c.IssuedAt); err != nil || p.OK == 0 || p.Pending == 0 {
				b.Fatalf("Progress = %+v, %v", p, err)
			}
		}
	})
	b.Run("group", func(b *testing.B) {
		for b.Loop() {
			if p, err := s.Progress(ctx, c.Seq, store.Target{Groups: []string{"g03"}}, c.IssuedAt); err != nil || p.Pending == 0 {
				b.Fatalf("Progress = %+v, %v", p, err)
			}
		}
	})
	b.Run("agent-results", func(b *testing.B) {
		for b.Loop() {
			if rs, err := s.AgentResults(ctx, ids[n/2], 0, 50); err != nil || len(rs) != 1 {
				b.Fatalf("AgentResults = %v, %v", rs, err)
			}
		}
	})
}
