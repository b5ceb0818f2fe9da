package loadgen_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
)

// BenchmarkEnroll measures enrolling 100,000 agents (VIGIL_BENCH_AGENTS
// changes the number) through the agent API of a fresh `vigil server`:
// each a real POST /v1/enroll with the enrollment secret and a nonce of
// its own, its signed answer verified, 32 at a time (the server's default
// bound on enrollments at once), over 32 connections. One sub-benchmark
// per store: SQLite, and PostgreSQL (a throwaway cluster, fsync on).
// Reported: total time, rate, per-enrollment p50 / p99 / max, the server's
// CPU and memory. Run:
//
//	cd bench && go test -run '^$' -bench 'BenchmarkEnroll$' -timeout 30m -v ./loadgen
func BenchmarkEnroll(b *testing.B) {
	lo := requireBench(b)
	n := envInt(b, "VIGIL_BENCH_AGENTS", 100000)
	const parallel = 32
	for _, sc := range []struct {
		name     string
		postgres bool
	}{{"store=sqlite", false}, {"store=postgres", true}} {
		b.Run(sc.name, func(b *testing.B) {
			dsn := ""
			if sc.postgres {
				dsn = pgtest.StartWith(b, pgtest.Options{Fsync: true}).NewDatabase(b)
			}
			srv := startServer(b, lo, loadgen.ServerOptions{Store: dsn, LogLevel: "warn"})
			hc := loadgen.NewHTTPClient(parallel)
			var (
				took    []time.Duration
				elapsed time.Duration
				cpu     loadgen.ProcCPU
			)
			for b.Loop() {
				c0, err := srv.CPU()
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
				start := time.Now()
				var ids []loadgen.Identity
				ids, took, err = loadgen.EnrollTimed(ctx, hc, srv.NodeCommURL, srv.EnrollSecret, srv.PublicKey, "enr", n, parallel, nil)
				elapsed = time.Since(start)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				c1, err := srv.CPU()
				if err != nil {
					b.Fatal(err)
				}
				cpu = c1.Sub(c0)
				seen := make(map[string]bool, len(ids))
				for _, id := range ids {
					if id.AgentID == "" || seen[id.AgentID] {
						b.Fatalf("enrollment gave an empty or repeated agent id %q", id.AgentID)
					}
					seen[id.AgentID] = true
				}
			}
			slices.Sort(took)
			mem, err := srv.Mem()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(elapsed.Seconds(), "total-s")
			b.ReportMetric(float64(n)/elapsed.Seconds(), "enrollments/s")
			b.ReportMetric(ms(loadgen.Percentile(took, 50)), "p50-ms")
			b.ReportMetric(ms(loadgen.Percentile(took, 99)), "p99-ms")
			b.ReportMetric(ms(loadgen.Percentile(took, 100)), "max-ms")
			b.ReportMetric(cpu.Total().Seconds()/elapsed.Seconds(), "srv-cores")
			b.ReportMetric(float64(cpu.Total().Microseconds())/float64(n), "srv-µs/enrollment")
			b.ReportMetric(loadgen.MiB(mem.HWM), "srv-hwm-MiB")
			b.Logf("%d agents enrolled in %v", n, elapsed.Round(time.Millisecond))
		})
	}
}
