package loadgen_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
)

// BenchmarkCheckInTools measures check-ins from 1,000 enrolled agents with
// two load tools against the same servers, alternating: the project's
// generator (loadgen.Fleet.RunCheckIns, closed loop, its own HTTP/1.1
// exchange with each agent's request encoded once (rawcheckin.go), one
// check-in in flight per connection) and wrk (bench/wrk/checkin.lua, each
// request a real check-in body with one agent's credential). Three
// set-ups: one `vigil server` on SQLite, one on PostgreSQL, and two on one
// PostgreSQL database with the load split across both (half the agents
// enrolled through each, half the connections to each). PostgreSQL is a
// throwaway cluster (internal/store/pgtest) with fsync on.
//
// Each measurement is a 10 s window over 64 connections (wrk: -t2 -c64);
// VIGIL_BENCH_ROUNDS (default 2) is the number of generator/wrk pairs per
// set-up, VIGIL_BENCH_TOOLS (default "generator,wrk") the tools to run,
// VIGIL_BENCH_CONNS, VIGIL_BENCH_WRK_THREADS and VIGIL_BENCH_SECONDS
// change the connections, wrk's threads and the window. Every check-in a
// tool counts as answered is checked against the server's
// vigil_server_checkins_total (check-ins stored before their answer) plus
// vigil_server_checkins_deferred_total (check-ins that changed no state,
// answered first and written in the next group commit: docs/protocol.md
// §4).
// wrk must be installed (Debian: apt-get install wrk). Run:
//
//	cd bench && go test -run '^$' -bench 'BenchmarkCheckInTools' -timeout 30m -v ./loadgen
func BenchmarkCheckInTools(b *testing.B) {
	lo := requireBench(b)
	script, err := filepath.Abs(filepath.Join("..", "wrk", "checkin.lua"))
	if err != nil {
		b.Fatal(err)
	}
	rounds, conns, window := envInt(b, "VIGIL_BENCH_ROUNDS", 2), envInt(b, "VIGIL_BENCH_CONNS", 64), time.Duration(envInt(b, "VIGIL_BENCH_SECONDS", 10))*time.Second
	const agents = 1000
	wrkThreads = envInt(b, "VIGIL_BENCH_WRK_THREADS", 2)
	if err := loadgen.RaiseNoFile(uint64(8*conns + 1024)); err != nil {
		b.Skip(err)
	}
	for _, sc := range []struct {
		name      string
		postgres  bool
		instances int
	}{
		{"store=sqlite/instances=1", false, 1},
		{"store=postgres/instances=1", true, 1},
		{"store=postgres/instances=2", true, 2},
	} {
		b.Run(sc.name, func(b *testing.B) {
			dsn, pgData := "", ""
			if sc.postgres {
				c := pgtest.StartWith(b, pgtest.Options{Fsync: true})
				dsn, pgData = c.NewDatabase(b), filepath.Join(c.Dir, "data")
			}
			var srvs []*loadgen.ServerProcess
			for i := range sc.instances {
				o := loadgen.ServerOptions{Store: dsn}
				if i > 0 {
					o.KeysFrom = srvs[0].DataDir
				}
				srvs = append(srvs, startServer(b, lo, o))
			}
			// Each instance enrolls its share of the agents and takes its
			// share of the connections.
			per, share := agents/sc.instances, conns/sc.instances
			var parts []toolTarget
			for i, srv := range srvs {
				hc := loadgen.NewHTTPClient(share)
				ids, took := enroll(b, srv, hc, per)
				b.Logf("instance %d: enrolled %d agents in %v", i+1, per, took.Round(time.Millisecond))
				fleet, err := loadgen.NewFleet(loadgen.Config{NodeCommURL: srv.NodeCommURL, PublicKey: srv.PublicKey, HTTP: hc}, ids, 0)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(fleet.Close)
				creds := filepath.Join(b.TempDir(), "creds.txt")
				if err := loadgen.WriteWrkCredentials(creds, srv.NodeCommURL, ids, nil); err != nil {
					b.Fatal(err)
				}
				parts = append(parts, toolTarget{srv: srv, fleet: fleet, creds: creds, conns: share, pgData: pgData})
			}
			ctx := context.Background()
			// Warm up: every agent checks in once with each tool's body.
			if s := runGenerator(ctx, parts, 3*time.Second); s.Errors > 0 {
				b.Fatalf("warm-up: %d errors: %v", s.Errors, s.FirstErr)
			}
			if _, err := runWrk(ctx, parts, script, 2*time.Second); err != nil {
				b.Fatal(err)
			}
			tools := os.Getenv("VIGIL_BENCH_TOOLS")
			for round := 1; round <= rounds; round++ {
				b.Run("tool=generator/round="+strconv.Itoa(round), func(b *testing.B) {
					if tools != "" && !strings.Contains(tools, "generator") {
						b.Skip("VIGIL_BENCH_TOOLS leaves the generator out")
					}
					var stats loadgen.CheckInStats
					var tu toolUsage
					for b.Loop() {
						tu = measure(ctx, b, parts, func() int {
							stats = runGenerator(ctx, parts, window)
							return stats.OK
						})
					}
					if stats.Errors > 0 {
						b.Errorf("%d check-ins failed; first: %v", stats.Errors, stats.FirstErr)
					}
					tu.report(b, stats.Elapsed, stats.PerSecond(), loadgen.Percentile(stats.Latencies, 50), loadgen.Percentile(stats.Latencies, 99))
				})
				b.Run("tool=wrk/round="+strconv.Itoa(round), func(b *testing.B) {
					if tools != "" && !strings.Contains(tools, "wrk") {
						b.Skip("VIGIL_BENCH_TOOLS leaves wrk out")
					}
					var res loadgen.WrkResult
					var tu toolUsage
					for b.Loop() {
						tu = measure(ctx, b, parts, func() int {
							var err error
							if res, err = runWrk(ctx, parts, script, window); err != nil {
								b.Fatal(err)
							}
							return res.Requests - res.NonOK
						})
					}
					b.Logf("wrk's report:\n%s", res.Output)
					if res.NonOK > 0 || res.SocketErrs > 0 {
						b.Errorf("wrk: %d answers not 2xx, %d socket errors", res.NonOK, res.SocketErrs)
					}
					tu.report(b, window, res.PerSecond, res.P50, res.P99)
				})
			}
		})
	}
}

// toolTarget is one server instance with its share of the agents: as a
// generator fleet and as wrk's credentials file.
type toolTarget struct {
	srv   *loadgen.ServerProcess
	fleet *loadgen.Fleet
	creds string
	conns int
	// pgData is the PostgreSQL cluster's data directory ("" on SQLite).
	pgData string
}

// runGenerator runs the generator's closed loop against every instance at
// once, each with its agents and connections, and merges the outcomes.
func runGenerator(ctx context.Context, parts []toolTarget, d time.Duration) loadgen.CheckInStats {
	all := make([]loadgen.CheckInStats, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { all[i] = p.fleet.RunCheckIns(ctx, loadgen.CheckInLoad{Duration: d, Workers: p.conns}) })
	}
	wg.Wait()
	var s loadgen.CheckInStats
	for _, x := range all {
		s.OK += x.OK
		s.Errors += x.Errors
		if s.FirstErr == nil {
			s.FirstErr = x.FirstErr
		}
		s.Elapsed = max(s.Elapsed, x.Elapsed)
		s.Latencies = append(s.Latencies, x.Latencies...)
	}
	slices.Sort(s.Latencies)
	return s
}

// wrkThreads is wrk's -t over all instances: 2, one per core, unless
// VIGIL_BENCH_WRK_THREADS says otherwise.
var wrkThreads = 2

// runWrk runs one wrk per instance at once (wrkThreads split between the
// instances), each over its share of the connections. With two, the
// rate is the sum and p50/p99 the larger of the two reports'.
func runWrk(ctx context.Context, parts []toolTarget, script string, d time.Duration) (loadgen.WrkResult, error) {
	threads := max(1, wrkThreads/len(parts))
	all := make([]loadgen.WrkResult, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() {
			all[i], errs[i] = loadgen.RunWrk(ctx, loadgen.WrkRun{
				Script: script, Credentials: p.creds, URL: hostURL(p.srv.NodeCommURL),
				Threads: threads, Conns: p.conns, Duration: d,
			})
		})
	}
	wg.Wait()
	var r loadgen.WrkResult
	for i, x := range all {
		if errs[i] != nil {
			return r, errs[i]
		}
		r.Requests += x.Requests
		r.NonOK += x.NonOK
		r.SocketErrs += x.SocketErrs
		r.PerSecond += x.PerSecond
		r.P50, r.P99, r.Max = max(r.P50, x.P50), max(r.P99, x.P99), max(r.Max, x.Max)
		r.Output += x.Output
	}
	return r, nil
}

// toolUsage is what a window cost: the servers' CPU, the load tool's (this
// process and its children: wrk), the host's, and the check-ins the
// servers stored.
type toolUsage struct {
	batches float64       // store transactions of check-ins
	soft    time.Duration // the kernel's ksoftirqd threads
	db      time.Duration // PostgreSQL's processes
	srv     []loadgen.ProcCPU
	tool    time.Duration
	host    loadgen.HostCPU
	stored  float64
	acked   int
}

// measure runs load, which returns the check-ins the tool saw answered,
// between two readings of the servers' and the host's CPU, and fails b
// when the servers stored fewer check-ins than were answered.
func measure(ctx context.Context, b *testing.B, parts []toolTarget, load func() int) toolUsage {
	var tu toolUsage
	read := func() ([]loadgen.ProcCPU, float64, loadgen.HostCPU, time.Duration, float64, time.Duration, time.Duration) {
		var cpus []loadgen.ProcCPU
		stored, batches := 0.0, 0.0
		for _, p := range parts {
			c, err := p.srv.CPU()
			if err != nil {
				b.Fatal(err)
			}
			cpus = append(cpus, c)
			m, err := p.srv.Metrics(ctx)
			if err != nil {
				b.Fatal(err)
			}
			stored += loadgen.ParseCounter(m, "vigil_server_checkins_total", "") +
				loadgen.ParseCounter(m, "vigil_server_checkins_deferred_total", "")
			batches += loadgen.ParseCounter(m, "vigil_server_store_batch_size_count", `kind="checkin"`)
		}
		h, err := loadgen.ReadHostCPU()
		if err != nil {
			b.Fatal(err)
		}
		soft, err := loadgen.ReadSoftirqThreadsCPU()
		if err != nil {
			b.Fatal(err)
		}
		return cpus, stored, h, selfAndChildrenCPU(b), batches, soft.Total(), postgresCPU(parts[0].pgData)
	}
	c0, s0, h0, t0, n0, k0, d0 := read()
	tu.acked = load()
	c1, s1, h1, t1, n1, k1, d1 := read()
	tu.batches, tu.soft, tu.db = n1-n0, k1-k0, d1-d0
	for i := range c0 {
		tu.srv = append(tu.srv, c1[i].Sub(c0[i]))
	}
	tu.host, tu.tool, tu.stored = h1.Sub(h0), t1-t0, s1-s0
	if tu.stored < float64(tu.acked) {
		b.Errorf("the servers stored %.0f check-ins, the tool saw %d answered", tu.stored, tu.acked)
	}
	return tu
}

func (tu toolUsage) report(b *testing.B, elapsed time.Duration, rate float64, p50, p99 time.Duration) {
	secs := elapsed.Seconds()
	b.ReportMetric(rate, "checkins/s")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	var srv time.Duration
	for _, c := range tu.srv {
		srv += c.Total()
	}
	b.ReportMetric(srv.Seconds()/secs, "srv-cores")
	b.ReportMetric(tu.tool.Seconds()/secs, "tool-cores")
	b.ReportMetric(tu.host.Busy.Seconds()/secs, "host-busy-cores")
	b.ReportMetric(tu.soft.Seconds()/secs, "ksoftirqd-cores")
	b.ReportMetric(tu.db.Seconds()/secs, "db-cores")
	other := (tu.host.Busy - srv - tu.tool - tu.soft - tu.db).Seconds() / secs
	b.ReportMetric(other, "other-cores")
	if other > 0.1 {
		b.Logf("WARNING: other processes used %.2f cores during the window: the run was disturbed", other)
	}
	if tu.batches > 0 {
		b.ReportMetric(tu.stored/tu.batches, "checkins/batch")
	}
	if tu.acked > 0 {
		b.ReportMetric(float64(srv.Microseconds())/float64(tu.acked), "srv-µs/checkin")
	}
	b.Logf("%d check-ins answered, %.0f stored by the servers; server CPU %v, tool CPU %v",
		tu.acked, tu.stored, srv.Round(time.Millisecond), tu.tool.Round(time.Millisecond))
}

// selfAndChildrenCPU is this process's CPU time and that of its waited-for
// children (wrk).
func selfAndChildrenCPU(b *testing.B) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

// postgresCPU is the CPU time of the PostgreSQL cluster with data
// directory dataDir (0 for ""): its postmaster, read from postmaster.pid,
// and the postmaster's children (backends, writers), read from /proc. A
// backend that exited between two readings is missed.
func postgresCPU(dataDir string) time.Duration {
	if dataDir == "" {
		return 0
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(pidFile), "\n")
	master, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total time.Duration
	for _, p := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// Fields after the command name: state, then the parent's PID.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); pid != master && ppid != master {
			continue
		}
		if c, err := loadgen.ReadProcCPU(pid); err == nil {
			total += c.Total()
		}
	}
	return total
}

// hostURL is u's scheme and host: the URL wrk is given.
func hostURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	return pu.Scheme + "://" + pu.Host
}

// envInt reads a positive integer from the environment, def when unset.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
