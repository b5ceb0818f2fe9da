package loadgen_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// BenchmarkRelayFanout measures what a relay (vigil relay) adds to one
// command's fan-out to 1,000 agents. A `vigil server` process multicasts
// on lo with TTL 0 (spread window 1 s, each datagram sent twice 20 ms
// apart); 1,000 simulated agents (each its own socket and agent.Core, as
// in BenchmarkFanout) receive:
//
//   - path=direct: the server's multicast itself;
//   - path=relay: a `vigil relay` process's multicast (its own port on lo,
//     TTL 0, default Repeat 2 / 20 ms), fed by the relay stream
//     (GET /v1/relay/stream) of a stand-in front in this process.
//
// The stand-in: this tree's server has no relay stream handler yet, so
// the front serves the stream itself (it takes the server's datagrams
// from its multicast on lo, once each, and frames them; a stream's
// backlog comes from GET /v1/commands) and passes every other route
// (enroll, check-in, results, commands) to the real server. That hop
// (one multicast receive and one frame write in the load generator's
// process) is counted in the relay's figures: added latency here is an
// upper bound of what a server-side handler would give.
//
// One op is one "ping" to all agents, waited for until each of the 1,000
// agents has executed it. The relay is enrolled, so it is targeted too and
// answers "unsupported" over HTTP: its CPU per command includes that.
// Reported: per-agent exec p50/p99 (from the issue request), added-p99-ms
// (relay p99 minus direct p99 of the same run), relay-cpu-ms/op (utime +
// stime of the relay process), http-fetches (agents that had to catch up
// over HTTP: 0 when every datagram got through).
//
// path=relay/agents=0 times the relay's hop alone, on a machine at rest:
// from the first copy of the server's datagram on its group to the first
// copy of the relay's on the relay's group (hop-p50/p99/max-ms, one probe
// socket on each). With 1,000 agents the probe's goroutines would wait
// behind the agents' for the CPU, so the hop is not timed there.
//
// On loopback the relay's system time grows with the number of listening
// sockets: its sendmsg delivers a copy to each of them (on a real subnet
// the kernel hands one packet to the NIC), so relay-cpu-ms/op with 1,000
// agents is mostly the local delivery of 2 x 1,000 copies.
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

	var directP99 time.Duration
	b.Run("path=direct/agents=1000", func(b *testing.B) {
		lat := fanoutVia(b, srv, hc, ids, loadgen.MulticastConfig{Group: srv.Group, Port: srv.Port, Interface: lo}, nil)
		directP99 = loadgen.Percentile(lat.exec, 99)
	})
	rl := startRelayProcess(b, lo, srv)
	// The hop alone, on a machine at rest: no agent listens.
	b.Run("path=relay/agents=0", func(b *testing.B) {
		fanoutVia(b, srv, hc, nil, loadgen.MulticastConfig{Group: testGroup, Port: rl.port, Interface: lo}, rl)
	})
	b.Run("path=relay/agents=1000", func(b *testing.B) {
		lat := fanoutVia(b, srv, hc, ids, loadgen.MulticastConfig{Group: testGroup, Port: rl.port, Interface: lo}, rl)
		if directP99 > 0 {
			b.ReportMetric(ms(loadgen.Percentile(lat.exec, 99)-directP99), "added-p99-ms")
		}
	})
}

// fanoutVia issues pings to all agents, which listen on mc, and reports
// their latencies (sorted); with rl, the relay process's CPU per op too.
func fanoutVia(b *testing.B, srv *loadgen.ServerProcess, hc *http.Client, ids []loadgen.Identity, mc loadgen.MulticastConfig, rl *relayProcess) fanoutLatencies {
	ctx := context.Background()
	n := len(ids)
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
	if err := fleet.JoinMulticast(mc); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // sockets joined, as BenchmarkFanout

	var lat fanoutLatencies
	ops := 0
	var r0, r1 loadgen.ProcCPU
	var relayed0 float64
	var hop *hopProbe
	var hops []time.Duration
	if rl != nil && n == 0 {
		hop = newHopProbe(b, mcast.Config{Group: srv.Group, Port: srv.Port, Interface: mc.Interface}, mcast.Config{Group: mc.Group, Port: mc.Port, Interface: mc.Interface})
		defer hop.close()
	}
	if rl != nil {
		r0 = rl.cpu(b)
		relayed0 = rl.counter(b, "vigil_relay_datagrams_relayed_total", `kind="command"`)
	}
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
		if n > 0 {
			o, err := col.wait(ci.Seq, n, false, 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			lat.add(t0, o, false)
		}
		if hop != nil {
			d, err := hop.wait(ci.Seq, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			hops = append(hops, d)
		}
	}
	time.Sleep(100 * time.Millisecond) // the last repeat
	if n > 0 {
		lat.report(b, "")
		b.ReportMetric(float64(fleet.Fetches()), "http-fetches")
	}
	if rl != nil {
		r1 = rl.cpu(b)
		cpu := r1.Sub(r0)
		per := func(d time.Duration) float64 { return ms(d) / float64(ops) }
		b.ReportMetric(per(cpu.Total()), "relay-cpu-ms/op")
		b.ReportMetric(per(cpu.User), "relay-user-ms/op")
		b.ReportMetric(per(cpu.System), "relay-sys-ms/op")
		relayed := rl.counter(b, "vigil_relay_datagrams_relayed_total", `kind="command"`) - relayed0
		b.ReportMetric(relayed/float64(ops), "relay-datagrams/op")
		if hop != nil {
			slices.Sort(hops)
			b.ReportMetric(ms(loadgen.Percentile(hops, 50)), "hop-p50-ms")
			b.ReportMetric(ms(loadgen.Percentile(hops, 99)), "hop-p99-ms")
			b.ReportMetric(ms(loadgen.Percentile(hops, 100)), "hop-max-ms")
		}
		b.Logf("relay: %d ops, utime %v stime %v (%d ticks), %v command datagrams multicast", ops, cpu.User, cpu.System, cpu.Ticks(), relayed)
	}
	return lat // report sorted its latencies
}

// hopProbe times the relay's hop for each command: from the first copy of
// the server's datagram on the server's group to the first copy of the
// relay's on the relay's (one socket each, in this process).
type hopProbe struct {
	mu     sync.Mutex
	at     [2]map[uint64]time.Time
	notify chan struct{}
	rcv    [2]*mcast.Receiver
	done   sync.WaitGroup
}

func newHopProbe(b *testing.B, direct, relayed mcast.Config) *hopProbe {
	p := &hopProbe{notify: make(chan struct{}, 1)}
	for i, cfg := range []mcast.Config{direct, relayed} {
		r, err := mcast.NewReceiver(cfg)
		if err != nil {
			p.close()
			b.Fatal(err)
		}
		p.rcv[i], p.at[i] = r, map[uint64]time.Time{}
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			buf := make([]byte, 65536)
			for {
				n, _, err := r.Receive(buf)
				if err != nil {
					return
				}
				now := time.Now()
				h, err := wire.Decode(buf[:n])
				if err != nil || h.Kind == wire.KindBeacon {
					continue
				}
				p.mu.Lock()
				if _, ok := p.at[i][h.Seq]; !ok {
					p.at[i][h.Seq] = now
				}
				p.mu.Unlock()
				select {
				case p.notify <- struct{}{}:
				default:
				}
			}
		}()
	}
	return p
}

// wait returns the hop of command seq once both copies arrived.
func (p *hopProbe) wait(seq uint64, timeout time.Duration) (time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		d, okd := p.at[0][seq]
		r, okr := p.at[1][seq]
		p.mu.Unlock()
		if okd && okr {
			return r.Sub(d), nil
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			return 0, fmt.Errorf("command %d: seen from the server %v, from the relay %v", seq, okd, okr)
		}
	}
}

func (p *hopProbe) close() {
	for _, r := range p.rcv {
		if r != nil {
			r.Close()
		}
	}
	p.done.Wait()
}

// relayProcess is a `vigil relay` child process fed by a streamFront.
type relayProcess struct {
	pid     int
	port    int
	metrics string // /metrics URL
}

func (r *relayProcess) cpu(b *testing.B) loadgen.ProcCPU {
	c, err := loadgen.ReadProcCPU(r.pid)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func (r *relayProcess) counter(b *testing.B, name, sel string) float64 {
	resp, err := http.Get(r.metrics)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return loadgen.ParseCounter(sb.String(), name, sel)
}

// startRelayProcess starts the stand-in front and `vigil relay` behind
// it, multicasting on lo with TTL 0 on a port of its own, and waits until
// the relay has opened its stream.
func startRelayProcess(b *testing.B, lo string, srv *loadgen.ServerProcess) *relayProcess {
	b.Helper()
	front := startStreamFront(b, lo, srv)
	port, err := loadgen.FreeUDPPort()
	if err != nil {
		b.Fatal(err)
	}
	mport, err := loadgen.FreeTCPPort()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	secret := filepath.Join(dir, "enroll.secret")
	if err := os.WriteFile(secret, []byte(srv.EnrollSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	logPath := filepath.Join(dir, "relay.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	maddr := "127.0.0.1:" + strconv.Itoa(mport)
	cmd := exec.Command(vigilBinary(b), "relay", "-server", front.url, "-server-key", base64.StdEncoding.EncodeToString(srv.PublicKey),
		"-enroll-secret-file", secret, "-state-dir", filepath.Join(dir, "state"), "-hostname", "bench-relay",
		"-interface", lo, "-ttl", "0", "-group", testGroup.String(), "-port", strconv.Itoa(port),
		"-metrics-listen", maddr, "-log-level", "warn")
	cmd.Env = append(loadgen.ChildEnv(), "VIGIL_RUNTIME_DIR=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	loadgen.KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	})
	select {
	case <-front.opened:
	case <-exited:
		b.Fatalf("vigil relay exited:\n%s", readFile(logPath))
	case <-time.After(30 * time.Second):
		b.Fatalf("vigil relay did not open its stream within 30s:\n%s", readFile(logPath))
	}
	return &relayProcess{pid: cmd.Process.Pid, port: port, metrics: "http://" + maddr + "/metrics"}
}

// streamFront is the stand-in for the server's relay stream handler (see
// BenchmarkRelayFanout), in front of the real server's agent API.
type streamFront struct {
	url    string
	opened chan struct{}

	mu   sync.Mutex
	subs map[chan []byte]struct{}
	seen map[uint64]bool // command sequences already framed
}

func startStreamFront(b *testing.B, lo string, srv *loadgen.ServerProcess) *streamFront {
	b.Helper()
	priv, err := server.DataDir{Path: srv.DataDir}.SigningKey()
	if err != nil {
		b.Fatal(err)
	}
	up, err := url.Parse(srv.NodeCommURL)
	if err != nil {
		b.Fatal(err)
	}
	f := &streamFront{opened: make(chan struct{}, 1), subs: map[chan []byte]struct{}{}, seen: map[uint64]bool{}}
	rcv, err := mcast.NewReceiver(mcast.Config{Group: srv.Group, Port: srv.Port, Interface: lo})
	if err != nil {
		b.Fatal(err)
	}
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		buf := make([]byte, 65536)
		for {
			n, _, err := rcv.Receive(buf)
			if err != nil {
				return
			}
			f.publish(buf[:n])
		}
	}()
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: up.Scheme, Host: up.Host})
	streamPath := api.RouteRelayStream.URL(up.Path, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != streamPath {
			proxy.ServeHTTP(w, r)
			return
		}
		f.serveStream(w, r, srv.NodeCommURL, priv)
	})}
	go hs.Serve(ln)
	b.Cleanup(func() { hs.Close(); rcv.Close(); <-rdone })
	f.url = "http://" + ln.Addr().String() + up.Path
	return f
}

// publish frames one datagram of the server's multicast to every stream:
// beacons each time, a command (or reference) once, not its repeat.
func (f *streamFront) publish(d []byte) {
	h, err := wire.Decode(d)
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if h.Kind != wire.KindBeacon {
		if f.seen[h.Seq] {
			return
		}
		f.seen[h.Seq] = true
	}
	c := slices.Clone(d)
	for s := range f.subs {
		select {
		case s <- c:
		default: // a stream that cannot keep up loses datagrams, as multicast would
		}
	}
}

func (f *streamFront) serveStream(w http.ResponseWriter, r *http.Request, upstream string, priv ed25519.PrivateKey) {
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil {
		http.Error(w, "after: "+err.Error(), http.StatusBadRequest)
		return
	}
	sub := make(chan []byte, 4096)
	f.mu.Lock()
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, sub)
		f.mu.Unlock()
	}()
	// The backlog, with the relay's own credential.
	c := &api.AgentClient{Client: api.Client{Base: upstream, Auth: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}}
	var backlog [][]byte
	for {
		resp, err := c.CommandsAfter(r.Context(), after, 0)
		var he *api.HTTPError
		if errors.As(err, &he) {
			http.Error(w, he.Message, he.Code)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if len(resp.Commands) == 0 {
			break
		}
		for _, env := range resp.Commands {
			d, err := wire.Announcement(priv, env)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			backlog = append(backlog, d)
			if h, err := wire.Decode(env); err == nil {
				after = max(after, h.Seq)
			}
		}
	}
	w.Header().Set("Content-Type", api.DatagramStreamType)
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	for _, d := range backlog {
		if api.WriteFrame(w, d) != nil {
			return
		}
	}
	fl.Flush()
	select {
	case f.opened <- struct{}{}:
	default:
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case d := <-sub:
			if h, err := wire.Decode(d); err == nil && h.Kind != wire.KindBeacon && h.Seq <= after {
				continue // in the backlog already
			}
			if api.WriteFrame(w, d) != nil {
				return
			}
			fl.Flush()
		}
	}
}
