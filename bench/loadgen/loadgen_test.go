package loadgen_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

// helperEnv makes the test binary run as a helper process (see TestMain).
const helperEnv = "VIGIL_LOADGEN_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "nats":
		os.Exit(runNATSHelper())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
	code := m.Run()
	cleanupBinary()
	os.Exit(code)
}

// testGroup is the multicast group tests and benchmarks use, always on the
// loopback interface with TTL 0 and on a port of their own.
var testGroup = netip.MustParseAddr("239.255.81.92")

// loopbackName finds the loopback interface ("lo" on Linux).
func loopbackName(t testing.TB) string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Name
		}
	}
	t.Skip("no loopback interface is up")
	return ""
}

// collector gathers fleet events and lets a test or benchmark wait for one
// command's events.
type collector struct {
	mu     sync.Mutex
	events []loadgen.Event
	notify chan struct{}
}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

func (c *collector) add(ev loadgen.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *collector) reset() {
	c.mu.Lock()
	c.events = c.events[:0]
	c.mu.Unlock()
}

// opEvents is what n agents did with one command.
type opEvents struct {
	exec, recv, reported []time.Time // by agent index; zero when missing
	nExec, nReported     int
	stray                int // events for another sequence number
}

// wait waits until all n agents (indexes 0..n-1) executed seq and, with
// reports, had their result acknowledged, or until timeout. A Failed event
// is an error.
func (c *collector) wait(seq uint64, n int, reports bool, timeout time.Duration) (opEvents, error) {
	o := opEvents{exec: make([]time.Time, n), recv: make([]time.Time, n), reported: make([]time.Time, n)}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		c.mu.Lock()
		evs := c.events[seen:]
		seen = len(c.events)
		var failed error
		for _, ev := range evs {
			if ev.Seq != seq && ev.Kind != loadgen.Failed {
				o.stray++
				continue
			}
			switch ev.Kind {
			case loadgen.Executed:
				if o.exec[ev.Agent].IsZero() {
					o.nExec++
				}
				o.exec[ev.Agent], o.recv[ev.Agent] = ev.At, ev.Received
			case loadgen.Reported:
				if o.reported[ev.Agent].IsZero() {
					o.nReported++
				}
				o.reported[ev.Agent] = ev.At
			case loadgen.Failed:
				if failed == nil {
					failed = fmt.Errorf("agent %d: %w", ev.Agent, ev.Err)
				}
			}
		}
		c.mu.Unlock()
		if failed != nil {
			return o, failed
		}
		if o.nExec == n && (!reports || o.nReported == n) {
			return o, nil
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			return o, fmt.Errorf("command %d after %s: %d of %d agents executed it, %d results acknowledged",
				seq, timeout, o.nExec, n, o.nReported)
		}
	}
}

// TestFleet runs an in-process server and a fleet of 20 simulated agents
// on the loopback interface: each enrolls, receives one command over
// multicast, executes it and reports its result, which the store then
// holds; then each checks in.
func TestFleet(t *testing.T) {
	lo := loopbackName(t)
	port, err := loadgen.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var st store.Store
	srv, err := server.New(server.Config{Server: config.Server{
		DataDir:        dir,
		Listen:         "127.0.0.1:0",
		AdminListen:    "127.0.0.1:0",
		Group:          testGroup,
		Port:           port,
		Interface:      lo,
		TTL:            0,
		Spread:         200 * time.Millisecond,
		BeaconInterval: time.Hour,
	},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, func(path string) (store.Store, error) {
		s, err := sqlite.Open(path)
		st = s
		return s, err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	agentLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, agentLn, adminLn) }()
	defer func() {
		cancel()
		<-served
	}()
	nodeURL := "http://" + agentLn.Addr().String() + server.DefaultConfig().BasePath

	const n = 20
	hc := loadgen.NewHTTPClient(8)
	ids, err := loadgen.Enroll(ctx, hc, nodeURL, srv.EnrollSecret(), srv.PublicKey(), "test", n, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id.AgentID == "" || id.Token == "" || seen[id.AgentID] || seen[id.Token] {
			t.Fatalf("identity %+v is empty or not unique", id)
		}
		seen[id.AgentID], seen[id.Token] = true, true
	}
	if _, err := loadgen.Enroll(ctx, hc, nodeURL, "wrong", srv.PublicKey(), "bad", 1, 1, nil); !api.IsStatus(err, 403) {
		t.Fatalf("enrolling with a wrong secret: %v, want 403", err)
	}
	// The enrollment's proof does not verify under another key.
	otherKey, _, _ := ed25519.GenerateKey(nil)
	if _, err := loadgen.Enroll(ctx, hc, nodeURL, srv.EnrollSecret(), otherKey, "pin", 1, 1, nil); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Fatalf("enrolling with a wrong pinned key: %v, want an error about the public key", err)
	}
	for _, id := range ids {
		if id.Epoch != srv.Epoch() || id.EpochIssued.IsZero() {
			t.Fatalf("identity %+v: want the server's epoch %d from a signed statement", id, srv.Epoch())
		}
	}

	col := newCollector()
	fleet, err := loadgen.NewFleet(loadgen.Config{
		NodeCommURL: nodeURL, PublicKey: srv.PublicKey(), HTTP: hc, PostResults: true, CatchUp: true, OnEvent: col.add,
	}, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	if err := fleet.JoinMulticast(loadgen.MulticastConfig{Group: testGroup, Port: port, Interface: lo}); err != nil {
		t.Fatal(err)
	}
	c, err := srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := col.wait(c.Seq, n, true, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if ops.recv[i].IsZero() || ops.exec[i].Before(ops.recv[i]) {
			t.Errorf("agent %d: executed at %v, received at %v: want a multicast receipt before execution", i, ops.exec[i], ops.recv[i])
		}
	}
	rs, err := st.Results(ctx, c.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != n {
		t.Fatalf("store holds %d results for command %d, want %d", len(rs), c.Seq, n)
	}
	for _, r := range rs {
		if r.Status != command.StatusOK || !seen[r.AgentID] {
			t.Errorf("result %+v: want status ok from a fleet agent", r)
		}
	}
	if got := fleet.TotalCounter("executed"); got != n {
		t.Errorf("fleet executed %d commands, want %d", got, n)
	}

	for i := range n {
		if err := fleet.CheckIn(ctx, i); err != nil {
			t.Fatalf("agent %d check-in: %v", i, err)
		}
	}
	stats := fleet.RunCheckIns(ctx, loadgen.CheckInLoad{Duration: 300 * time.Millisecond, Workers: 2, Rate: 200})
	if stats.OK == 0 || stats.Errors != 0 {
		t.Fatalf("check-in run: %d ok, %d errors (%v)", stats.OK, stats.Errors, stats.FirstErr)
	}
	as, err := st.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if !seen[a.ID] {
			continue // enrolled by the server, refused by the wrong pin
		}
		if a.LastSeq != c.Seq || a.Version != loadgen.Version {
			t.Errorf("agent %s: last_seq %d version %q after check-in, want %d %q", a.ID, a.LastSeq, a.Version, c.Seq, loadgen.Version)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080/vigil", "http://[::1]:1/", "nats://127.0.0.1:4222"} {
		if err := loadgen.CheckLoopbackURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://192.0.2.1:8080/", "http://example.com/", "http://localhost:80/", "ftp://127.0.0.1/"} {
		if err := loadgen.CheckLoopbackURL(u); err == nil {
			t.Errorf("%s: accepted, want refused", u)
		}
	}
	if _, err := loadgen.NewFleet(loadgen.Config{NodeCommURL: "http://192.0.2.1/", PublicKey: make([]byte, 32)}, nil, 0); err == nil {
		t.Error("NewFleet accepted a non-loopback URL")
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0.1, 1}} {
		if got := loadgen.Percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := loadgen.Percentile(nil, 50); got != 0 {
		t.Errorf("empty: %v", got)
	}
}

func TestHistogram(t *testing.T) {
	text := `# HELP x y
vigil_server_http_request_seconds_bucket{route="checkin",le="0.001"} 10
vigil_server_http_request_seconds_bucket{route="checkin",le="0.005"} 90
vigil_server_http_request_seconds_bucket{route="checkin",le="+Inf"} 100
vigil_server_http_request_seconds_bucket{route="enroll",le="0.001"} 7
`
	h := loadgen.ParseHistogram(text, "vigil_server_http_request_seconds", `route="checkin"`)
	if len(h.Bounds) != 3 || h.Quantile(0.5) != 0.005 || !math.IsInf(h.Quantile(0.99), 1) || h.Quantile(0.1) != 0.001 {
		t.Fatalf("parsed %+v: p50 %v p99 %v", h, h.Quantile(0.5), h.Quantile(0.99))
	}
	if got := loadgen.ParseCounter(text+"vigil_x_total{kind=\"command\"} 4\nvigil_x_total{kind=\"beacon\"} 2\n", "vigil_x_total", `kind="command"`); got != 4 {
		t.Errorf("counter = %v, want 4", got)
	}
	d := h.Sub(loadgen.Histogram{Bounds: h.Bounds, Counts: []float64{10, 10, 10}})
	if d.Quantile(0.5) != 0.005 {
		t.Fatalf("delta %+v", d)
	}
}

func TestProcReadings(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	c, err := loadgen.ReadProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c.Run <= 0 {
		t.Errorf("schedstat run time %v, want > 0", c.Run)
	}
	m, err := loadgen.ReadProcMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.HWM < m.RSS {
		t.Errorf("memory %+v", m)
	}
	h, err := loadgen.ReadHostCPU()
	if err != nil || h.Busy <= 0 || h.Total < h.Busy {
		t.Errorf("host CPU %+v, %v", h, err)
	}
	if _, err := loadgen.ReadProcCPU(-1); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reading a missing process: %v", err)
	}
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// vigilBinary builds the vigil binary once per test process, or returns
// VIGIL_BENCH_BINARY when set (a binary built from another tree, to
// compare two trees in one session).
func vigilBinary(tb testing.TB) string {
	if p := os.Getenv("VIGIL_BENCH_BINARY"); p != "" {
		return p
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "vigil-loadgen-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "vigil")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binErr = loadgen.BuildVigil(ctx, binPath)
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

func cleanupBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
