package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testcert"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// resend stands for a relay's multicast: it receives the server's
// datagrams on the server's group and port and sends each, verbatim, to
// the group on port, on loopback with TTL 0 and multicast loopback on, as
// vigil relay sends on its subnet. It stops when the test ends.
func resend(t *testing.T, l *lab, port int) {
	t.Helper()
	lo := testenv.Loopback(t)
	rcv, err := mcast.NewReceiver(mcast.Config{Group: group, Port: l.port, Interface: lo})
	if err != nil {
		t.Fatal(err)
	}
	snd, err := mcast.NewSender(mcast.Config{Group: group, Port: port, Interface: lo, TTL: 0, Loopback: true})
	if err != nil {
		rcv.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := rcv.Receive(buf)
			if err != nil {
				return
			}
			snd.Send(buf[:n])
		}
	})
	t.Cleanup(func() { rcv.Close(); wg.Wait(); snd.Close() })
}

// relayWorld is a relay's configuration on loopback: a real server and
// its datagrams re-sent to the relay's port, a real LiveUpdate server as
// the cache's upstream, and listeners standing for the cache's and the
// metrics' (the relay itself is not needed: doctor checks its flows).
type relayWorld struct {
	relay    *config.Relay
	upstream *liveupdatetest.Server
	srv      *lab
}

func newRelayWorld(t *testing.T) *relayWorld {
	t.Helper()
	l := startServer(t)
	r := vendorRepo(t, publish.Options{})
	up := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: r.PublicDir()}})
	port := randomPort()
	for port == l.port {
		port = randomPort()
	}
	resend(t, l, port)
	return &relayWorld{srv: l, upstream: up, relay: &config.Relay{
		Server: l.url, ServerKey: base64.StdEncoding.EncodeToString(l.srv.PublicKey()),
		Group: group, Port: port, Interface: testenv.Loopback(t), TTL: 0,
		Upstream: up.HTTPURL, RootFile: r.RootPath(),
		HTTPAddr: testenv.AcceptingAddr(t), FTPAddr: testenv.AcceptingAddr(t), PassivePorts: config.PortRange{Lo: 30000, Hi: 30009},
		MetricsListen: testenv.AcceptingAddr(t),
	}}
}

// runRelay builds the relay's plan as vigil doctor does and runs its
// checks.
func runRelay(t *testing.T, r *config.Relay, wait time.Duration) []Result {
	t.Helper()
	plan, err := ports.Build(context.Background(), ports.Config{Relay: r})
	if err != nil {
		t.Fatal(err)
	}
	checks, err := Checks(plan, Config{Relay: r, Wait: wait, Options: Options{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := Run(ctx, checks)
	var b bytes.Buffer
	Write(&b, res)
	t.Logf("\n%s", b.String())
	return res
}

func flowsOf(res []Result) string {
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.Flow
	}
	return strings.Join(ids, " ")
}

// A relay's checks, through real sockets: the server's agent API answers
// as a Vigil server, the server's datagrams re-sent to the relay's group
// come back verified, the cache's and metrics' listeners accept, and the
// upstream serves metadata that verifies from the relay's root — over
// HTTP, then over FTP (control, passive data, metadata); in the plan's
// order.
func TestChecksRelayPlan(t *testing.T) {
	t.Parallel()
	w := newRelayWorld(t)
	r := w.relay
	res := runRelay(t, r, 5*time.Second)
	if Failed(res) {
		t.Fatalf("a check failed")
	}
	if got, want := flowsOf(res), "agent-api commands definitions definitions cache-fill cache-fill metrics"; got != want {
		t.Fatalf("results for %s, want %s", got, want)
	}
	check(t, res[0], true, ports.FlowAgentAPI, r.Server, "without the relay's own credential", "server answers as a Vigil agent API (HTTP 401")
	check(t, res[1], true, ports.FlowCommands, r.Group.String(), r.Interface, "signed beacon seq")
	check(t, res[2], true, ports.FlowDefinitions, r.FTPAddr+" (listening)", "accepts TCP connections")
	check(t, res[3], true, ports.FlowDefinitions, r.HTTPAddr+" (listening)")
	check(t, res[4], true, ports.FlowCacheFill, r.Upstream+" (timestamp.json)", "HTTP 200 OK")
	check(t, res[5], true, ports.FlowCacheFill, r.Upstream+" (metadata)", "verifies: timestamp version 2", "newest definitions 2026112501")
	check(t, res[6], true, ports.FlowMetrics, r.MetricsListen+" (listening)")

	ftp := *r
	ftp.Upstream = w.upstream.FTPURL
	ftp.FTPAddr, ftp.MetricsListen = "", ""
	res = runRelay(t, &ftp, 5*time.Second)
	if got, want := flowsOf(res), "agent-api commands definitions cache-fill cache-fill cache-fill"; got != want || Failed(res) {
		t.Fatalf("results for %s (failed: %v), want %s", got, Failed(res), want)
	}
	check(t, res[3], true, ports.FlowCacheFill, ftp.Upstream+" (control)", "logged in as anonymous")
	check(t, res[4], true, ports.FlowCacheFill, ftp.Upstream+" (passive data)", "/metadata/timestamp.json")
	check(t, res[5], true, ports.FlowCacheFill, ftp.Upstream+" (metadata)", "verifies")
}

// A relay whose flows do not work: each failing check names what failed
// and why, in one line.
func TestChecksRelayFailures(t *testing.T) {
	t.Parallel()
	w := newRelayWorld(t)
	closed := testenv.ClosedAddr(t)

	// Everything pointing at a closed port, and a group nobody sends to.
	bad := *w.relay
	bad.Server = "http://" + closed + "/vigil"
	bad.Upstream = "http://" + closed + "/repo"
	bad.HTTPAddr, bad.FTPAddr, bad.MetricsListen = closed, "", closed
	bad.Port = w.relay.Port + 1
	if bad.Port == w.srv.port {
		bad.Port++
	}
	start := time.Now()
	res := runRelay(t, &bad, 300*time.Millisecond)
	if got, want := flowsOf(res), "agent-api commands definitions cache-fill metrics"; got != want {
		t.Fatalf("results for %s, want %s", got, want)
	}
	for _, r := range res {
		if r.OK {
			t.Errorf("check passed: %+v", r)
		}
	}
	check(t, res[0], false, ports.FlowAgentAPI, "without the relay's own credential", "connect "+closed+": connection refused", "is the server running")
	check(t, res[1], false, ports.FlowCommands, "no signed beacon within 300ms", "is vigil relay running, with its stream from the server open (agent-api)")
	check(t, res[2], false, ports.FlowDefinitions, closed+" (listening)", "connection refused")
	check(t, res[3], false, ports.FlowCacheFill, "(timestamp.json)", "connect "+closed+": connection refused")
	check(t, res[4], false, ports.FlowMetrics, closed+" (listening)", "connection refused")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failing checks took %v", d)
	}

	// The settings a running relay publishes have no server key: the
	// check says so rather than listening for nothing.
	noKey := *w.relay
	noKey.ServerKey = ""
	noKey.RootFile = filepath.Join(t.TempDir(), "missing.json")
	res = runRelay(t, &noKey, 5*time.Second)
	check(t, res[1], false, ports.FlowCommands, "ServerKey (-server-key) is not set here", "-relay FILE")
	check(t, res[4], false, ports.FlowCacheFill, "RootFile (-root)", "missing.json")

	// Datagrams re-sent, but the relay is told another server's key.
	other := *w.relay
	other.ServerKey = base64.StdEncoding.EncodeToString(make([]byte, 32))
	other.Upstream = ""
	res = runRelay(t, &other, time.Second)
	check(t, res[1], false, ports.FlowCommands, "failed verification", "signed by another key", "is the relay's ServerKey (-server-key) the server's signing.pub")

	// The upstream serves metadata of another repository: refused.
	otherRoot := *w.relay
	otherRoot.RootFile = vendorRepo(t, publish.Options{}).RootPath()
	res = runRelay(t, &otherRoot, 5*time.Second)
	check(t, res[5], false, ports.FlowCacheFill, "(metadata)", "refused")
}

// The relay's server over HTTPS: verified with the relay's ServerCA, and
// failures name the relay's settings, not the agent's.
func TestChecksRelayHTTPS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := testcert.Write(t, filepath.Join(dir, "server"))
	otherCA, _, _ := testcert.Write(t, filepath.Join(dir, "other"))
	l := startTLSServer(t, cert, key)
	r := &config.Relay{Server: l.url, ServerCA: ca, Group: group, Port: randomPort(), TTL: 0}
	// The agent-api check, built from the relay's plan as vigil doctor
	// builds it.
	agentAPI := func() Result {
		t.Helper()
		plan, err := ports.Build(context.Background(), ports.Config{Relay: r})
		if err != nil {
			t.Fatal(err)
		}
		checks, err := Checks(plan, Config{Relay: r, Options: Options{Timeout: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		if len(checks) != 2 || checks[0].Flow != ports.FlowAgentAPI {
			t.Fatalf("%d checks, first %s", len(checks), checks[0].Flow)
		}
		return Run(context.Background(), checks[:1])[0]
	}
	check(t, agentAPI(), true, ports.FlowAgentAPI, "server answers as a Vigil agent API")
	r.ServerCA = otherCA
	check(t, agentAPI(), false, ports.FlowAgentAPI, "not signed by the CA in the relay's ServerCA (-server-ca) "+otherCA)
	r.ServerCA = ""
	check(t, agentAPI(), false, ports.FlowAgentAPI, "unknown authority: set the relay's ServerCA (-server-ca) to its CA")

	// An https:// upstream of the cache: verified with RelayTLS (the
	// relay's UpstreamCA), and a failure names that setting. The server
	// is no repository: with the right CA the check gets as far as its
	// 404.
	r.Upstream, r.RootFile, r.HTTPAddr = l.url, filepath.Join(dir, "1.root.json"), "127.0.0.1:8000"
	if err := os.WriteFile(r.RootFile, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	cacheFill := func(tc *tls.Config) Result {
		t.Helper()
		plan, err := ports.Build(context.Background(), ports.Config{Relay: r})
		if err != nil {
			t.Fatal(err)
		}
		checks, err := Checks(plan, Config{Relay: r, RelayTLS: tc, Options: Options{Timeout: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range checks {
			if c.Flow == ports.FlowCacheFill {
				return Run(context.Background(), []Check{c})[0]
			}
		}
		t.Fatal("no cache-fill check")
		return Result{}
	}
	check(t, cacheFill(nil), false, ports.FlowCacheFill, "unknown authority: set the relay's UpstreamCA (-upstream-ca) to its CA")
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	check(t, cacheFill(&tls.Config{RootCAs: pool}), false, ports.FlowCacheFill, "HTTP 404")
}
