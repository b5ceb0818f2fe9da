package loadgen_test

import (
	"context"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
)

// BenchmarkRelayFanout measures what a relay (vigil relay) adds to one
// command's fan-out to 1,000 agents. A `vigil server` process multicasts
// on lo with TTL 0 (spread window 1 s, each datagram sent twice 20 ms
// apart) on its port; a `vigil relay` process, enrolled with it, reads
// the server's relay stream (GET /v1/relay/stream, docs/protocol.md
// §2.7) straight from the server and multicasts every datagram on lo
// with TTL 0 on a port of its own (default Repeat 2 / 20 ms). Nothing
// stands between the two processes.
//
// path=direct/agents=0/relay=none, before the relay starts, is the
// server's CPU time per command with no stream open (srv-cpu-ms/op): the
// baseline for what the stream, and the relay's "unsupported" answers,
// cost the server in the sub-benchmarks after it.
//
// path=relay/agents=0 times the relay's hop alone, on a machine at rest:
// from the first copy of the server's datagram on the server's port to
// the first copy of the relay's on the relay's port (hop-p50/p99/max-ms,
// one probe socket on each, no agent listening). The server wakes its
// streams as soon as a command is stored, beside its own multicast, so a
// hop can be slightly negative. With 1,000 agents the
// probe's goroutines would wait behind the agents' for the CPU, so the
// hop is not timed there.
//
// paths=interleaved/agents=1000 compares the two paths under the same
// load. One op is two "ping" commands to all agents, one per path (direct
// first on even ops, relay first on odd ones), each waited for until the
// 1,000 simulated agents (each its own socket and agent.Core, as in
// BenchmarkFanout) have executed it. For each command a fresh fleet of
// the same 1,000 identities is made and joined either to the server's
// port (path=direct) or to the relay's (path=relay) only: the agents of
// one path never hear the other's multicast, so the relay path measures
// the relay. Fleet set-up, a GC and a settle happen with the timer
// stopped; whichever path is not being measured still sends its
// datagrams (the server multicasts, the relay relays), to no socket.
//
// Reported, by path (direct-, relay-): per-agent exec p50/p99 pooled over
// all of the path's commands; the median over commands of each command's
// p99 (p99-med); the server's and the relay's CPU time (utime+stime) in
// each command's window, from its issue to 100 ms after its last
// execution (srv-cpu-ms/direct-op, relay-cpu-ms/relay-op, ...; the
// -run- figures are the threads' schedstat, precise where utime+stime
// come in 10 ms ticks). Then
// added-p99-ms (pooled relay p99 minus pooled direct p99), added-p99-med-ms
// (the median over ops of the relay command's p99 minus the direct
// command's p99 of the same op: robust to a disturbed op or a drift of
// the machine's load; added-p99-q1/q3-ms are the quartiles of those
// differences, the noise it stands in), relay-cpu-ms/cmd and srv-cpu-ms/cmd (utime+stime
// from the sub-benchmark's start over all its commands, whichever path),
// stream-frames/cmd (command datagrams the server wrote on the relay
// stream), relay-datagrams/cmd (command datagrams the relay multicast)
// and http-fetches (agents that had to catch up over HTTP: 0 when every
// datagram got through). other-ms/cmd is the host's busy CPU time beyond
// the processes under test (server, relay, load generator, softirq
// threads): other work on a shared machine, which the interleaving spreads
// evenly over both paths.
//
// The relay is enrolled, so "all" targets it too and it answers
// "unsupported" over HTTP: its CPU includes that, as the server's
// includes the stream. On loopback a sender's system time grows with the
// number of sockets listening on its port: its sendmsg delivers a copy to
// each (on a real subnet the kernel hands one packet to the NIC), so
// relay-cpu-ms/relay-op and srv-cpu-ms/direct-op with 1,000 agents are
// mostly the local delivery of 2 x 1,000 copies.
func BenchmarkRelayFanout(b *testing.B) {
	lo := requireBench(b)
	const agents = 1000
	if err := loadgen.RaiseNoFile(4*agents + 512); err != nil {
		b.Skip(err)
	}
	srv := startServer(b, lo, loadgen.ServerOptions{Spread: time.Second})
	hc := loadgen.NewHTTPClient(64)
	ids, took := enroll(b, srv, hc, agents)
	b.Logf("enrolled %d agents in %v", agents, took.Round(time.Millisecond))
	// The server's CPU per command before any relay stream is open: the
	// baseline of what the stream (and the relay's answers) cost it.
	b.Run("path=direct/agents=0/relay=none", func(b *testing.B) { benchServerAlone(b, srv) })
	rl := startRelayProcess(b, lo, srv)
	if rl.port == srv.Port {
		b.Fatalf("the relay multicasts on the server's port %d", rl.port)
	}
	direct := loadgen.MulticastConfig{Group: srv.Group, Port: srv.Port, Interface: lo}
	relayed := loadgen.MulticastConfig{Group: testGroup, Port: rl.port, Interface: lo}

	b.Run("path=relay/agents=0", func(b *testing.B) { benchRelayHop(b, srv, rl, direct, relayed) })
	b.Run("paths=interleaved/agents=1000", func(b *testing.B) {
		benchRelayInterleaved(b, srv, hc, ids, rl, [2]loadgen.MulticastConfig{direct, relayed})
	})
}

// relayUsage is one reading of the server's and the relay's CPU time and
// metrics.
type relayUsage struct {
	srv, relay, gen, soft loadgen.ProcCPU
	host                  loadgen.HostCPU
	streamed, relayedCmds float64
}

func readRelayUsage(ctx context.Context, b *testing.B, srv *loadgen.ServerProcess, rl *relayProcess) relayUsage {
	var u relayUsage
	var err error
	if u.srv, err = srv.CPU(); err != nil {
		b.Fatal(err)
	}
	u.relay = rl.cpu(b)
	u.gen = selfCPU(b)
	if u.host, err = loadgen.ReadHostCPU(); err != nil {
		b.Fatal(err)
	}
	if u.soft, err = loadgen.ReadSoftirqThreadsCPU(); err != nil {
		b.Fatal(err)
	}
	m, err := srv.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	u.streamed = loadgen.ParseCounter(m, "vigil_server_relay_datagrams_sent_total", `kind="command"`)
	u.relayedCmds = rl.counter(b, "vigil_relay_datagrams_relayed_total", `kind="command"`)
	return u
}

// reportRelayUsage reports the server's and the relay's CPU time per
// command between two readings, and the datagrams the stream and the
// relay carried.
func reportRelayUsage(b *testing.B, u0, u1 relayUsage, cmds int, unit string) {
	per := func(d time.Duration) float64 { return ms(d) / float64(cmds) }
	rc, sc := u1.relay.Sub(u0.relay), u1.srv.Sub(u0.srv)
	b.ReportMetric(per(rc.Total()), "relay-cpu-ms/"+unit)
	b.ReportMetric(per(rc.Run), "relay-run-ms/"+unit)
	b.ReportMetric(per(sc.Total()), "srv-cpu-ms/"+unit)
	b.ReportMetric(per(sc.Run), "srv-run-ms/"+unit)
	// The host's busy time beyond the server's, the relay's, this
	// process's and the softirq threads': other processes on the host.
	host, gen, soft := u1.host.Sub(u0.host), u1.gen.Sub(u0.gen), u1.soft.Sub(u0.soft)
	other := host.Busy - rc.Total() - sc.Total() - gen.Total() - soft.Total()
	b.ReportMetric(per(gen.Run), "gen-run-ms/"+unit)
	b.ReportMetric(per(other), "other-ms/"+unit)
	if host.Busy > 0 && other > host.Busy/5 && other > 200*time.Millisecond {
		b.Logf("WARNING: %v of %v busy CPU time on the host was used by other processes: the run was disturbed", other, host.Busy)
	}
	b.ReportMetric((u1.streamed-u0.streamed)/float64(cmds), "stream-frames/"+unit)
	b.ReportMetric((u1.relayedCmds-u0.relayedCmds)/float64(cmds), "relay-datagrams/"+unit)
	b.Logf("%d commands: relay utime %v stime %v (%d ticks), schedstat %v; server utime %v stime %v (%d ticks); %v command frames streamed, %v command datagrams multicast by the relay",
		cmds, rc.User, rc.System, rc.Ticks(), rc.Run.Round(time.Microsecond), sc.User, sc.System, sc.Ticks(),
		u1.streamed-u0.streamed, u1.relayedCmds-u0.relayedCmds)
}

// benchServerAlone issues commands with no agent and no relay listening
// and reports the server's CPU time per command.
func benchServerAlone(b *testing.B, srv *loadgen.ServerProcess) {
	ctx := context.Background()
	c0, err := srv.CPU()
	if err != nil {
		b.Fatal(err)
	}
	ops := 0
	for b.Loop() {
		settle(b)
		if _, err := srv.Issue(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}}); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	time.Sleep(100 * time.Millisecond) // the last repeat
	c1, err := srv.CPU()
	if err != nil {
		b.Fatal(err)
	}
	c := c1.Sub(c0)
	b.ReportMetric(ms(c.Total())/float64(ops), "srv-cpu-ms/op")
	b.ReportMetric(ms(c.Run)/float64(ops), "srv-run-ms/op")
}

// benchRelayHop times the relay's hop with no agent listening.
func benchRelayHop(b *testing.B, srv *loadgen.ServerProcess, rl *relayProcess, direct, relayed loadgen.MulticastConfig) {
	ctx := context.Background()
	hop := newHopProbe(b, mcast.Config{Group: direct.Group, Port: direct.Port, Interface: direct.Interface},
		mcast.Config{Group: relayed.Group, Port: relayed.Port, Interface: relayed.Interface})
	defer hop.close()
	var hops []time.Duration
	u0 := readRelayUsage(ctx, b, srv, rl)
	for b.Loop() {
		settle(b)
		ci, err := srv.Issue(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
		if err != nil {
			b.Fatal(err)
		}
		d, err := hop.wait(ci.Seq, 10*time.Second)
		if err != nil {
			b.Fatalf("%v\nrelay log:\n%s", err, readFile(rl.logPath))
		}
		hops = append(hops, d)
	}
	time.Sleep(100 * time.Millisecond) // the last repeats
	u1 := readRelayUsage(ctx, b, srv, rl)
	slices.Sort(hops)
	b.ReportMetric(ms(loadgen.Percentile(hops, 50)), "hop-p50-ms")
	b.ReportMetric(ms(loadgen.Percentile(hops, 99)), "hop-p99-ms")
	b.ReportMetric(ms(loadgen.Percentile(hops, 100)), "hop-max-ms")
	reportRelayUsage(b, u0, u1, len(hops), "op")
}

// pathRun accumulates one path's figures in benchRelayInterleaved.
type pathRun struct {
	name       string
	mc         loadgen.MulticastConfig
	lat        fanoutLatencies
	p99s       []time.Duration // each command's p99
	srv, relay loadgen.ProcCPU // summed over the path's command windows
	cmds       int
	fetches    uint64
}

func benchRelayInterleaved(b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, ids []loadgen.Identity, rl *relayProcess, mc [2]loadgen.MulticastConfig) {
	ctx := context.Background()
	paths := [2]*pathRun{{name: "direct", mc: mc[0]}, {name: "relay", mc: mc[1]}}
	var added []time.Duration // per op: relay p99 minus direct p99
	ops := 0
	u0 := readRelayUsage(ctx, b, srv, rl)
	for b.Loop() {
		var p99 [2]time.Duration
		for k := range 2 {
			i := k ^ ops%2 // direct first on even ops, relay first on odd ones
			p99[i] = fanoutOnce(ctx, b, srv, hc, ids, rl, paths[i])
		}
		added = append(added, p99[1]-p99[0])
		ops++
	}
	u1 := readRelayUsage(ctx, b, srv, rl)

	var fetches uint64
	for _, p := range paths {
		l := &p.lat
		slices.Sort(l.exec)
		slices.Sort(l.recv)
		b.ReportMetric(ms(loadgen.Percentile(l.recv, 50)), p.name+"-recv-p50-ms")
		b.ReportMetric(ms(loadgen.Percentile(l.exec, 50)), p.name+"-exec-p50-ms")
		b.ReportMetric(ms(loadgen.Percentile(l.exec, 99)), p.name+"-exec-p99-ms")
		b.ReportMetric(ms(median(p.p99s)), p.name+"-p99-med-ms")
		per := func(d time.Duration) float64 { return ms(d) / float64(p.cmds) }
		b.ReportMetric(per(p.srv.Total()), "srv-cpu-ms/"+p.name+"-op")
		b.ReportMetric(per(p.srv.Run), "srv-run-ms/"+p.name+"-op")
		b.ReportMetric(per(p.relay.Total()), "relay-cpu-ms/"+p.name+"-op")
		b.ReportMetric(per(p.relay.Run), "relay-run-ms/"+p.name+"-op")
		b.ReportMetric(per(p.relay.User), "relay-user-ms/"+p.name+"-op")
		b.ReportMetric(per(p.relay.System), "relay-sys-ms/"+p.name+"-op")
		b.ReportMetric(float64(p.fetches), p.name+"-http-fetches")
		fetches += p.fetches
		b.Logf("path=%s: %d commands; in their windows server utime %v stime %v, relay utime %v stime %v (schedstat %v)",
			p.name, p.cmds, p.srv.User, p.srv.System, p.relay.User, p.relay.System, p.relay.Run.Round(time.Microsecond))
	}
	d, r := paths[0], paths[1]
	b.ReportMetric(ms(loadgen.Percentile(r.lat.exec, 50)-loadgen.Percentile(d.lat.exec, 50)), "added-p50-ms")
	b.ReportMetric(ms(loadgen.Percentile(r.lat.exec, 99)-loadgen.Percentile(d.lat.exec, 99)), "added-p99-ms")
	b.ReportMetric(ms(median(added)), "added-p99-med-ms") // median sorted added
	b.ReportMetric(ms(loadgen.Percentile(added, 25)), "added-p99-q1-ms")
	b.ReportMetric(ms(loadgen.Percentile(added, 75)), "added-p99-q3-ms")
	b.ReportMetric(float64(fetches), "http-fetches")
	reportRelayUsage(b, u0, u1, d.cmds+r.cmds, "cmd")
}

// fanoutOnce issues one ping to all agents, listening on p's port only,
// and returns the command's per-agent exec p99; it adds the command's
// latencies and the server's and the relay's CPU time in its window to p.
func fanoutOnce(ctx context.Context, b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, ids []loadgen.Identity, rl *relayProcess, p *pathRun) time.Duration {
	b.StopTimer()
	info, err := srv.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	col := newCollector()
	fleet, err := loadgen.NewFleet(loadgen.Config{
		NodeCommURL: srv.NodeCommURL, PublicKey: srv.PublicKey, HTTP: hc, CatchUp: true, OnEvent: col.add,
	}, ids, info.LatestSeq)
	if err != nil {
		b.Fatal(err)
	}
	defer fleet.Close()
	if err := fleet.JoinMulticast(p.mc); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // sockets joined, as BenchmarkFanout
	runtime.GC()                       // the previous fleet's garbage, not in this command's time
	time.Sleep(settleTime)
	s0, err := srv.CPU()
	if err != nil {
		b.Fatal(err)
	}
	r0 := rl.cpu(b)
	b.StartTimer()

	t0 := time.Now()
	ci, err := srv.Issue(ctx, api.SendRequest{Name: "ping", Target: command.Target{All: true}})
	if err != nil {
		b.Fatal(err)
	}
	issued := time.Since(t0)
	o, err := col.wait(ci.Seq, len(ids), false, 30*time.Second)
	if err != nil {
		b.Fatalf("path=%s, command %d: %v", p.name, ci.Seq, err)
	}

	b.StopTimer()
	time.Sleep(100 * time.Millisecond) // the last repeats
	s1, err := srv.CPU()
	if err != nil {
		b.Fatal(err)
	}
	cpuAdd(&p.srv, s1.Sub(s0))
	cpuAdd(&p.relay, rl.cpu(b).Sub(r0))
	p.cmds++
	p.fetches += fleet.Fetches()
	p.lat.issue = append(p.lat.issue, issued)
	p.lat.add(t0, o, false)
	exec := make([]time.Duration, len(o.exec))
	for i, at := range o.exec {
		exec[i] = at.Sub(t0)
	}
	slices.Sort(exec)
	p99 := loadgen.Percentile(exec, 99)
	p.p99s = append(p.p99s, p99)
	fleet.Close() // timer stopped; the deferred Close is then a no-op
	b.StartTimer()
	return p99
}
