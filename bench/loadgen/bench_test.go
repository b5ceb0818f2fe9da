package loadgen_test

// Benchmarks of Vigil's speed goals (fan-out, check-ins, idle agents). They only run with -bench; see
// docs/benchmarks.md for the commands, the machine and the figures. Every
// packet stays on this host: HTTP on 127.0.0.1, multicast on the loopback
// interface with TTL 0, NATS on 127.0.0.1.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"howett.net/plist"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// requireBench skips where the benchmarks cannot run: they read /proc and
// run child processes.
func requireBench(b *testing.B) string {
	if runtime.GOOS != "linux" {
		b.Skip("the load benchmarks read /proc: Linux only")
	}
	if testing.Short() {
		b.Skip("load benchmark skipped in -short mode")
	}
	return loopbackName(b)
}

// startServer builds vigil and starts `vigil server` as a child process
// on loopback, on a multicast port of its own; it is stopped at cleanup.
func startServer(b *testing.B, lo string, o loadgen.ServerOptions) *loadgen.ServerProcess {
	b.Helper()
	bin := vigilBinary(b)
	port, err := loadgen.FreeUDPPort()
	if err != nil {
		b.Fatal(err)
	}
	o.Binary, o.DataDir, o.Group, o.Port, o.Interface = bin, b.TempDir(), testGroup, port, lo
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := loadgen.StartServer(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			b.Error(err)
		}
	})
	return srv
}

func enroll(b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, n int) ([]loadgen.Identity, time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	ids, err := loadgen.Enroll(ctx, hc, srv.NodeCommURL, srv.EnrollSecret, srv.PublicKey, "sim", n, 16, nil)
	if err != nil {
		b.Fatal(err)
	}
	return ids, time.Since(start)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// usage is one reading of what the benchmarks report as differences
// between two readings: the server's metrics and CPU time, this process's
// (the load generator's), the host's, and the kernel's softirq threads'.
type usage struct {
	metrics        string
	srv, gen, soft loadgen.ProcCPU
	host           loadgen.HostCPU
}

func readUsage(ctx context.Context, b *testing.B, srv *loadgen.ServerProcess) usage {
	var u usage
	var err error
	if u.srv, err = srv.CPU(); err != nil {
		b.Fatal(err)
	}
	u.gen = selfCPU(b)
	if u.host, err = loadgen.ReadHostCPU(); err != nil {
		b.Fatal(err)
	}
	if u.soft, err = loadgen.ReadSoftirqThreadsCPU(); err != nil {
		b.Fatal(err)
	}
	if u.metrics, err = srv.Metrics(ctx); err != nil {
		b.Fatal(err)
	}
	return u
}

func selfCPU(b *testing.B) loadgen.ProcCPU {
	c, err := loadgen.ReadProcCPU(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkFanout measures one command reaching many agents. A `vigil
// server` process (spread window 1s, default 2 sends of each datagram 20 ms
// apart) multicasts on lo with TTL 0 to simulated agents, each enrolled
// with its own identity, with its own socket and its own agent.Core. One
// op is one "ping" to all agents issued through the admin API, waited for
// until every agent has executed it and, with results=yes, until every
// agent's result is stored at the server (its POST answered 204, which the
// server sends only after the store committed the result).
//
// Then the peer, in the same run: the same server-signed envelope bytes
// published through an embedded NATS server (in a helper child process,
// so that its CPU time is its own) to 1,000 subscribers, each with its own
// nats.Conn and its own agent.Core verifying and executing it.
func BenchmarkFanout(b *testing.B) {
	lo := requireBench(b)
	const maxAgents = 1000
	if err := loadgen.RaiseNoFile(4*maxAgents + 512); err != nil {
		b.Skip(err)
	}
	srv := startServer(b, lo, loadgen.ServerOptions{Spread: time.Second})
	hc := loadgen.NewHTTPClient(64)
	ids, took := enroll(b, srv, hc, maxAgents)
	b.Logf("enrolled %d agents in %v (%.0f/s)", maxAgents, took.Round(time.Millisecond), maxAgents/took.Seconds())
	nh := startNATSHelper(b)

	for _, n := range []int{0, 100, 500, 1000} {
		b.Run(fmt.Sprintf("agents=%d/results=no", n), func(b *testing.B) { benchVigilFanout(b, srv, hc, ids[:n], false) })
	}
	b.Run("nats/subscribers=1000", func(b *testing.B) { benchNATSFanout(b, srv, hc, ids, nh) })
	// The server sends every command datagram twice by default; each
	// simulated agent verifies both copies (the second is then dropped as
	// old), so on this host the repeat doubles the generator's work. A
	// second server that sends each datagram once is the like-for-like
	// comparison with NATS, which delivers each message once.
	srv1 := startServer(b, lo, loadgen.ServerOptions{Spread: time.Second, Repeat: 1})
	ids1, _ := enroll(b, srv1, hc, maxAgents)
	b.Run("agents=1000/results=no/repeat=1", func(b *testing.B) { benchVigilFanout(b, srv1, hc, ids1, false) })
	for _, n := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("agents=%d/results=yes", n), func(b *testing.B) { benchVigilFanout(b, srv, hc, ids[:n], true) })
	}
}

// settleTime separates the commands of the fan-out benchmarks, so that each
// one reaches a fleet at rest (the previous command's repeat datagram
// handled), as a single command would, rather than a fleet still busy with
// a back-to-back burst.
const settleTime = 100 * time.Millisecond

// settle waits settleTime with the benchmark timer stopped.
func settle(b *testing.B) {
	b.StopTimer()
	time.Sleep(settleTime)
	b.StartTimer()
}

// fanoutLatencies accumulates per-agent latencies over ops.
type fanoutLatencies struct {
	exec, recv, firstRecv, allExec, allStored, issue []time.Duration
	stray                                            int
}

func (l *fanoutLatencies) add(t0 time.Time, o opEvents, reports bool) {
	var last, lastStored, first time.Time
	for i := range o.exec {
		if r := o.recv[i]; !r.IsZero() && (first.IsZero() || r.Before(first)) {
			first = r
		}
		l.exec = append(l.exec, o.exec[i].Sub(t0))
		if !o.recv[i].IsZero() {
			l.recv = append(l.recv, o.recv[i].Sub(t0))
		}
		if o.exec[i].After(last) {
			last = o.exec[i]
		}
		if o.reported[i].After(lastStored) {
			lastStored = o.reported[i]
		}
	}
	l.allExec = append(l.allExec, last.Sub(t0))
	if !first.IsZero() {
		l.firstRecv = append(l.firstRecv, first.Sub(t0))
	}
	if reports {
		l.allStored = append(l.allStored, lastStored.Sub(t0))
	}
	l.stray += o.stray
}

func (l *fanoutLatencies) report(b *testing.B, prefix string) {
	for _, s := range [][]time.Duration{l.exec, l.recv, l.firstRecv, l.allExec, l.allStored, l.issue} {
		slices.Sort(s)
	}
	b.ReportMetric(ms(loadgen.Percentile(l.firstRecv, 50)), prefix+"first-recv-p50-ms")
	b.ReportMetric(ms(loadgen.Percentile(l.recv, 50)), prefix+"recv-p50-ms")
	b.ReportMetric(ms(loadgen.Percentile(l.recv, 99)), prefix+"recv-p99-ms")
	b.ReportMetric(ms(loadgen.Percentile(l.exec, 50)), prefix+"exec-p50-ms")
	b.ReportMetric(ms(loadgen.Percentile(l.exec, 99)), prefix+"exec-p99-ms")
	b.ReportMetric(ms(loadgen.Percentile(l.exec, 100)), prefix+"exec-max-ms")
	b.ReportMetric(ms(loadgen.Percentile(l.allExec, 50)), prefix+"all-exec-p50-ms")
	if len(l.allStored) > 0 {
		b.ReportMetric(ms(loadgen.Percentile(l.allStored, 50)), "all-stored-p50-ms")
		b.ReportMetric(ms(loadgen.Percentile(l.allStored, 100)), "all-stored-max-ms")
	}
	if len(l.issue) > 0 {
		b.ReportMetric(ms(loadgen.Percentile(l.issue, 50)), "issue-p50-ms")
	}
}

// joinFleet makes a simulated agent of each identity, starting at the
// server's latest sequence, reporting its events to the collector it
// returns, and joins them to the server's multicast.
func joinFleet(ctx context.Context, b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, ids []loadgen.Identity, reports bool) (*loadgen.Fleet, *collector) {
	b.Helper()
	info, err := srv.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	col := newCollector()
	fleet, err := loadgen.NewFleet(loadgen.Config{
		NodeCommURL: srv.NodeCommURL, PublicKey: srv.PublicKey, HTTP: hc,
		PostResults: reports, CatchUp: true, OnEvent: col.add,
	}, ids, info.LatestSeq)
	if err != nil {
		b.Fatal(err)
	}
	if err := fleet.JoinMulticast(loadgen.MulticastConfig{Group: srv.Group, Port: srv.Port, Interface: srv.Interface}); err != nil {
		fleet.Close()
		b.Fatal(err)
	}
	return fleet, col
}

func benchVigilFanout(b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, ids []loadgen.Identity, reports bool) {
	ctx := context.Background()
	n := len(ids)
	fleet, col := joinFleet(ctx, b, srv, hc, ids, reports)
	defer fleet.Close()
	time.Sleep(200 * time.Millisecond)

	var lat fanoutLatencies
	var lastSeq uint64
	ops := 0
	u0 := readUsage(ctx, b, srv)
	for b.Loop() {
		settle(b)
		ops++
		col.reset()
		t0 := time.Now()
		ci, err := srv.Issue(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
		if err != nil {
			b.Fatal(err)
		}
		lat.issue = append(lat.issue, time.Since(t0))
		lastSeq = ci.Seq
		if n == 0 {
			continue
		}
		o, err := col.wait(ci.Seq, n, reports, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		lat.add(t0, o, reports)
	}
	// Let the last command's repeat datagram (20 ms later) be sent.
	time.Sleep(100 * time.Millisecond)
	u1 := readUsage(ctx, b, srv)
	cpu, gen, host, soft := u1.srv.Sub(u0.srv), u1.gen.Sub(u0.gen), u1.host.Sub(u0.host), u1.soft.Sub(u0.soft)
	const sent = "vigil_server_datagrams_sent_total"
	datagrams := loadgen.ParseCounter(u1.metrics, sent, `kind="command"`) - loadgen.ParseCounter(u0.metrics, sent, `kind="command"`)

	if reports {
		res, err := srv.Results(ctx, lastSeq)
		if err != nil {
			b.Fatal(err)
		}
		ok := 0
		for _, r := range res.Results {
			if r.Status == command.StatusOK {
				ok++
			}
		}
		if ok != n {
			b.Fatalf("server lists %d ok results for command %d, want %d", ok, lastSeq, n)
		}
	}
	if n > 0 {
		lat.report(b, "")
	} else {
		slices.Sort(lat.issue)
		b.ReportMetric(ms(loadgen.Percentile(lat.issue, 50)), "issue-p50-ms")
	}
	per := func(d time.Duration) float64 { return ms(d) / float64(ops) }
	b.ReportMetric(per(cpu.Total()), "srv-cpu-ms/op")
	b.ReportMetric(per(cpu.User), "srv-user-ms/op")
	b.ReportMetric(per(cpu.System), "srv-sys-ms/op")
	b.ReportMetric(per(cpu.Run), "srv-run-ms/op")
	b.ReportMetric(datagrams/float64(ops), "datagrams/op")
	b.ReportMetric(per(gen.Run), "gen-run-ms/op")
	b.ReportMetric(per(host.Busy), "host-busy-ms/op")
	b.ReportMetric(per(soft.Run), "ksoftirqd-ms/op")
	reportOther(b, host.Busy, ops, cpu.Total()+gen.Total()+soft.Total())
	if n > 0 {
		b.ReportMetric(float64(gen.Run)/float64(time.Microsecond)/float64(ops*n), "gen-us/agent")
		b.ReportMetric(float64(fleet.Fetches()), "http-fetches")
		b.ReportMetric(float64(fleet.TotalCounter(agent.CountOverflow)+uint64(lat.stray)), "drops")
	}
	b.Logf("%d agents, %d ops: server utime+stime %d ticks (user %v, sys %v), schedstat %v; generator %v; host busy %v",
		n, ops, cpu.Ticks(), cpu.User, cpu.System, cpu.Run.Round(time.Microsecond), gen.Run.Round(time.Millisecond), host.Busy)
}

// reportOther reports the CPU time the machine spent busy beyond what the
// processes under test used (utime+stime in ticks): the kernel's own
// threads, and anything else running on the host. A large figure means the
// run was disturbed.
func reportOther(b *testing.B, hostBusy time.Duration, ops int, ours time.Duration) {
	other := hostBusy - ours
	b.ReportMetric(ms(other)/float64(ops), "other-ms/op")
	if hostBusy > 0 && other > hostBusy/5 && other > 200*time.Millisecond {
		b.Logf("WARNING: %v of %v busy CPU time on the host was used by other processes: the run was disturbed", other, hostBusy)
	}
}

// natsHelper is an embedded NATS server running in a child process (this
// test binary, see runNATSHelper).
type natsHelper struct {
	url string
	pid int
}

func startNATSHelper(b *testing.B) *natsHelper {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(loadgen.ChildEnv(), helperEnv+"=nats")
	loadgen.KillWithParent(cmd)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	b.Cleanup(func() {
		stdin.Close() // the helper stops when its stdin closes
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "NATS_URL="); ok {
				lines <- u
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-lines:
		if err := loadgen.CheckLoopbackURL(u); err != nil {
			b.Fatal(err)
		}
		return &natsHelper{url: u, pid: cmd.Process.Pid}
	case <-done:
		b.Fatal("NATS helper exited")
	case <-time.After(30 * time.Second):
		b.Fatal("NATS helper did not start within 30s")
	}
	return nil
}

// runNATSHelper runs an embedded NATS server on 127.0.0.1 (a random port),
// prints its URL and serves until stdin is closed.
func runNATSHelper() int {
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true, MaxConn: 8192,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats helper:", err)
		return 1
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats helper: server not ready")
		return 1
	}
	fmt.Printf("NATS_URL=%s\n", ns.ClientURL())
	io.Copy(io.Discard, os.Stdin)
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}

const natsSubject = "vigil.commands"

func benchNATSFanout(b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, ids []loadgen.Identity, nh *natsHelper) {
	ctx := context.Background()
	n := len(ids)
	info, err := srv.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	col := newCollector()
	fleet, err := loadgen.NewFleet(loadgen.Config{
		NodeCommURL: srv.NodeCommURL, PublicKey: srv.PublicKey, HTTP: hc, OnEvent: col.add,
	}, ids, info.LatestSeq)
	if err != nil {
		b.Fatal(err)
	}
	defer fleet.Close()
	if err := fleet.JoinNATS(nh.url, natsSubject); err != nil {
		b.Fatal(err)
	}
	pub, err := nats.Connect(nh.url, nats.MaxReconnects(0))
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	// An agent's credential fetches the exact signed envelope of each
	// command the server issues: the bytes it multicasts.
	agentAPI := &api.AgentClient{Client: api.Client{Base: srv.NodeCommURL, Auth: ids[0].Token, HTTP: hc}}
	time.Sleep(200 * time.Millisecond)

	var lat fanoutLatencies
	ops := 0
	var envBytes int
	var gen loadgen.ProcCPU // the generator's CPU time from publishing to the last execution
	var host loadgen.HostCPU
	soft0, err := loadgen.ReadSoftirqThreadsCPU()
	if err != nil {
		b.Fatal(err)
	}
	cpu0, err := loadgen.ReadProcCPU(nh.pid)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		settle(b)
		b.StopTimer()
		ci, err := srv.Issue(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
		if err != nil {
			b.Fatal(err)
		}
		cr, err := agentAPI.CommandsAfter(ctx, ci.Seq-1, 1)
		if err != nil {
			b.Fatal(err)
		}
		if len(cr.Commands) != 1 {
			b.Fatalf("fetched %d envelopes for command %d", len(cr.Commands), ci.Seq)
		}
		env := cr.Commands[0]
		envBytes = len(env)
		col.reset()
		g0 := selfCPU(b)
		h0, err := loadgen.ReadHostCPU()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		ops++
		t0 := time.Now()
		if err := pub.Publish(natsSubject, env); err != nil {
			b.Fatal(err)
		}
		o, err := col.wait(ci.Seq, n, false, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		lat.add(t0, o, false)
		b.StopTimer()
		g := selfCPU(b).Sub(g0)
		gen.Run += g.Run
		gen.User += g.User
		gen.System += g.System
		h1, err := loadgen.ReadHostCPU()
		if err != nil {
			b.Fatal(err)
		}
		h := h1.Sub(h0)
		host.Busy += h.Busy
		b.StartTimer()
	}
	cpu1, err := loadgen.ReadProcCPU(nh.pid)
	if err != nil {
		b.Fatal(err)
	}
	soft1, err := loadgen.ReadSoftirqThreadsCPU()
	if err != nil {
		b.Fatal(err)
	}
	soft := soft1.Sub(soft0)
	cpu := cpu1.Sub(cpu0)
	lat.issue = nil
	lat.report(b, "")
	per := func(d time.Duration) float64 { return ms(d) / float64(ops) }
	b.ReportMetric(per(cpu.Total()), "nats-cpu-ms/op")
	b.ReportMetric(per(cpu.User), "nats-user-ms/op")
	b.ReportMetric(per(cpu.System), "nats-sys-ms/op")
	b.ReportMetric(per(cpu.Run), "nats-run-ms/op")
	b.ReportMetric(per(gen.Run), "gen-run-ms/op")
	b.ReportMetric(per(host.Busy), "host-busy-ms/op")
	b.ReportMetric(per(soft.Run), "ksoftirqd-ms/op")
	reportOther(b, host.Busy, ops, cpu.Total()+gen.Total()+soft.Total())
	b.ReportMetric(float64(gen.Run)/float64(time.Microsecond)/float64(ops*n), "gen-us/agent")
	b.ReportMetric(float64(envBytes), "envelope-bytes")
	b.Logf("%d subscribers, %d ops: NATS server utime+stime %d ticks, schedstat %v; generator %v",
		n, ops, cpu.Ticks(), cpu.Run.Round(time.Microsecond), gen.Run.Round(time.Millisecond))
}

// BenchmarkCheckIn measures sustained check-ins from 10,000 simulated
// agents, each enrolled with its own credential, against a `vigil server`
// process with its SQLite store, for 20 s per sub-benchmark over at most 64
// connections: closed loop (as fast as the server answers) and open loop
// at 5,000/s offered. Run it with the default -benchtime (one 20 s window
// per sub-benchmark).
func BenchmarkCheckIn(b *testing.B) {
	lo := requireBench(b)
	const (
		agents   = 10000
		conns    = 64
		duration = 20 * time.Second
	)
	if err := loadgen.RaiseNoFile(4*conns + 512); err != nil {
		b.Skip(err)
	}
	srv := startServer(b, lo, loadgen.ServerOptions{})
	hc := loadgen.NewHTTPClient(conns)
	ids, took := enroll(b, srv, hc, agents)
	b.Logf("enrolled %d agents in %v (%.0f/s)", agents, took.Round(time.Millisecond), agents/took.Seconds())
	fleet, err := loadgen.NewFleet(loadgen.Config{NodeCommURL: srv.NodeCommURL, PublicKey: srv.PublicKey, HTTP: hc}, ids, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer fleet.Close()
	ctx := context.Background()
	// Warm up: every agent checks in once (connections, caches, WAL).
	if s := fleet.RunCheckIns(ctx, loadgen.CheckInLoad{Duration: 5 * time.Second, Workers: conns}); s.Errors > 0 {
		b.Fatalf("warm-up: %d errors: %v", s.Errors, s.FirstErr)
	}
	mem0, _ := srv.Mem()
	b.Logf("server after enrolling and warm-up: VmRSS %.1f MiB, VmHWM %.1f MiB", loadgen.MiB(mem0.RSS), loadgen.MiB(mem0.HWM))

	for _, sc := range []struct {
		name string
		rate float64
	}{{"closed-loop", 0}, {"rate=5000", 5000}} {
		b.Run(fmt.Sprintf("%s/conns=%d", sc.name, conns), func(b *testing.B) {
			var (
				stats          loadgen.CheckInStats
				cpu, gen, soft loadgen.ProcCPU
				host           loadgen.HostCPU
				h              loadgen.Histogram
				mem            loadgen.ProcMem
			)
			for b.Loop() {
				u0 := readUsage(ctx, b, srv)
				stats = fleet.RunCheckIns(ctx, loadgen.CheckInLoad{Duration: duration, Workers: conns, Rate: sc.rate})
				u1 := readUsage(ctx, b, srv)
				cpu, gen, host, soft = u1.srv.Sub(u0.srv), u1.gen.Sub(u0.gen), u1.host.Sub(u0.host), u1.soft.Sub(u0.soft)
				var err error
				if mem, err = srv.Mem(); err != nil {
					b.Fatal(err)
				}
				const hist = "vigil_server_http_request_seconds"
				h = loadgen.ParseHistogram(u1.metrics, hist, `route="checkin"`).Sub(loadgen.ParseHistogram(u0.metrics, hist, `route="checkin"`))
			}
			if stats.Errors > 0 {
				b.Errorf("%d check-ins failed; first: %v", stats.Errors, stats.FirstErr)
			}
			secs := stats.Elapsed.Seconds()
			b.ReportMetric(stats.PerSecond(), "checkins/s")
			b.ReportMetric(ms(loadgen.Percentile(stats.Latencies, 50)), "p50-ms")
			b.ReportMetric(ms(loadgen.Percentile(stats.Latencies, 99)), "p99-ms")
			b.ReportMetric(ms(loadgen.Percentile(stats.Latencies, 100)), "max-ms")
			b.ReportMetric(h.Quantile(0.5)*1000, "srv-p50-ms")
			b.ReportMetric(h.Quantile(0.99)*1000, "srv-p99-ms")
			b.ReportMetric(loadgen.MiB(mem.RSS), "srv-rss-MiB")
			b.ReportMetric(loadgen.MiB(mem.HWM), "srv-hwm-MiB")
			b.ReportMetric(cpu.Total().Seconds()/secs, "srv-cores")
			b.ReportMetric(gen.Run.Seconds()/secs, "gen-cores")
			b.ReportMetric(host.Busy.Seconds()/secs, "host-busy-cores")
			b.ReportMetric(soft.Run.Seconds()/secs, "ksoftirqd-cores")
			other := (host.Busy - cpu.Total() - gen.Total() - soft.Total()).Seconds() / secs
			b.ReportMetric(other, "other-cores")
			if other > 0.1 {
				b.Logf("WARNING: other processes used %.2f cores during the run: the run was disturbed", other)
			}
			b.ReportMetric(float64(stats.Errors), "errors")
			b.Logf("%d check-ins in %v (%d errors); server utime %v stime %v; generator %v",
				stats.OK, stats.Elapsed.Round(time.Millisecond), stats.Errors, cpu.User, cpu.System, gen.Run.Round(time.Millisecond))
		})
	}
}

// BenchmarkAgentIdle runs a real `vigil agent` process against a `vigil
// server` process (beacon every 30 s and check-in every 5 min, the
// defaults), lets it enroll, run one command and report it, and then
// measures its memory and CPU time over 60 s of idleness. Run it with the
// default -benchtime (one window).
func BenchmarkAgentIdle(b *testing.B) {
	lo := requireBench(b)
	const idle = 60 * time.Second
	srv := startServer(b, lo, loadgen.ServerOptions{})
	bin := vigilBinary(b)
	dir := b.TempDir()
	prefsPath := filepath.Join(dir, "agent.plist")
	stateDir := filepath.Join(dir, "state")
	err := prefs.Write(prefsPath, &prefs.Agent{
		MulticastAddress: srv.Group.String(), MulticastPort: srv.Port, MulticastInterface: srv.Interface,
		NodeCommURL: srv.NodeCommURL, ServerPublicKey: base64.StdEncoding.EncodeToString(srv.PublicKey),
		EnrollmentSecret: srv.EnrollSecret, StateDirectory: stateDir, Hostname: "idle-agent",
	}, plist.XMLFormat)
	if err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "agent", "-config", prefsPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = loadgen.ChildEnv()
	loadgen.KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	pid := cmd.Process.Pid
	ctx := context.Background()

	// Wait for enrollment, then run one command through it.
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		deadline := time.Now().Add(limit)
		for !cond() {
			select {
			case <-exited:
				b.Fatalf("agent exited while waiting for %s: %s", what, readFile(logf.Name()))
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				b.Fatalf("no %s within %v: %s", what, limit, readFile(logf.Name()))
			}
		}
	}
	waitFor("enrollment", 30*time.Second, func() bool {
		var as []api.AgentInfo
		return srv.Admin.Call(ctx, api.RouteAdminAgents, nil, nil, &as) == nil && len(as) == 1
	})
	time.Sleep(500 * time.Millisecond) // the agent joins the group after enrolling
	ci, err := srv.Issue(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
	if err != nil {
		b.Fatal(err)
	}
	// Its report is spread over the server's default 5 s window.
	waitFor("result", 30*time.Second, func() bool {
		res, err := srv.Results(ctx, ci.Seq)
		return err == nil && len(res.Results) == 1 && res.Results[0].Status == command.StatusOK
	})
	time.Sleep(5 * time.Second) // the first check-in falls within the spread window of the start

	var (
		cpu        loadgen.ProcCPU
		memStart   loadgen.ProcMem
		memEnd     loadgen.ProcMem
		switches   uint64
		windowTime time.Duration
	)
	for b.Loop() {
		memStart, _ = loadgen.ReadProcMem(pid)
		sw0 := contextSwitches(pid)
		c0, err := loadgen.ReadProcCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		select {
		case <-exited:
			b.Fatalf("agent exited: %s", readFile(logf.Name()))
		case <-time.After(idle):
		}
		c1, err := loadgen.ReadProcCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		windowTime = time.Since(t0)
		cpu = c1.Sub(c0)
		switches = contextSwitches(pid) - sw0
		memEnd, _ = loadgen.ReadProcMem(pid)
	}
	b.ReportMetric(loadgen.MiB(memEnd.RSS), "rss-MiB")
	b.ReportMetric(loadgen.MiB(memEnd.HWM), "hwm-MiB")
	b.ReportMetric(float64(cpu.Ticks()), "idle-ticks")
	b.ReportMetric(float64(cpu.Run)/float64(time.Microsecond), "idle-run-us")
	b.ReportMetric(float64(switches), "idle-wakeups")
	b.Logf("agent pid %d over %v idle: utime+stime %d ticks, schedstat %v, %d context switches; VmRSS %.1f MiB at start, %.1f MiB at end, VmHWM %.1f MiB",
		pid, windowTime.Round(time.Millisecond), cpu.Ticks(), cpu.Run, switches, loadgen.MiB(memStart.RSS), loadgen.MiB(memEnd.RSS), loadgen.MiB(memEnd.HWM))
}

// contextSwitches sums the voluntary and involuntary context switches of
// all threads of pid: how often it was woken or preempted.
func contextSwitches(pid int) uint64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n uint64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
