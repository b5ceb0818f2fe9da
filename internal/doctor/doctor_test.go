package doctor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testcert"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Network safety: everything here stays on this host. HTTP and FTP use
// loopback addresses, names are resolved by an in-process DNS server
// (internal/fakedns), and multicast uses the loopback interface with TTL 0.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var group = netip.MustParseAddr("239.255.81.92")

func randomPort() int { return 20000 + rand.IntN(40000) }

// lab is a management server on loopback.
type lab struct {
	*servertest.Server
	srv  *server.Server
	url  string // NodeCommURL
	port int    // multicast port
}

func startServer(t *testing.T) *lab { return startTLSServer(t, "", "") }

// startTLSServer starts a server whose agent API is HTTPS with
// certFile and keyFile (HTTP when "").
func startTLSServer(t *testing.T, certFile, keyFile string) *lab {
	t.Helper()
	ts := servertest.Start(t, server.Config{Server: config.Server{
		Group:           group,
		Repeat:          1,
		BeaconInterval:  150 * time.Millisecond,
		CheckInInterval: time.Hour,
		Spread:          50 * time.Millisecond,
		TLSCert:         certFile,
		TLSKey:          keyFile,
	},
	})
	return &lab{Server: ts, srv: ts.Server, url: ts.URL, port: ts.Config.Port}
}

func (l *lab) stop() { l.Close() }

// enroll runs a real agent until it has enrolled, and returns its state
// directory.
func (l *lab) enroll(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := l.AgentPrefs(dir)
	p.Hostname = "doctor-test"
	a, err := agent.New(agent.Config{Logger: quiet, Prefs: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for a.ID() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not enrol")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return dir
}

func check(t *testing.T, r Result, ok bool, flow string, want ...string) {
	t.Helper()
	var b bytes.Buffer
	Write(&b, []Result{r})
	line := b.String()
	t.Logf("%s", strings.TrimSuffix(line, "\n"))
	if r.OK != ok || r.Flow != flow {
		t.Errorf("want ok=%v flow %s, got: %s", ok, flow, line)
	}
	for _, w := range want {
		if !strings.Contains(r.Target+": "+r.Detail, w) {
			t.Errorf("result does not mention %q: %s", w, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("not one line: %q", line)
	}
}

func TestAgentAPI(t *testing.T) {
	l := startServer(t)
	dir := l.enroll(t)
	st, ok, err := agent.ReadState(dir)
	if err != nil || !ok {
		t.Fatalf("agent state: %v %v", ok, err)
	}
	ctx := context.Background()
	cfg := AgentAPIConfig{NodeCommURL: l.url, StateDir: dir, Timeout: 2 * time.Second}

	check(t, AgentAPI(ctx, cfg), true, ports.FlowAgentAPI, "credential of agent "+st.Identity.AgentID+" accepted")

	// Not enrolled yet: the server answers.
	fresh := cfg
	fresh.StateDir = t.TempDir()
	check(t, AgentAPI(ctx, fresh), true, ports.FlowAgentAPI, "not enrolled yet (no credential in "+fresh.StateDir+")", "server answers")

	// Enrolled with another NodeCommURL: the agent will enrol again.
	other := cfg
	other.NodeCommURL = strings.TrimSuffix(l.url, "/vigil") + "/vigil/"
	check(t, AgentAPI(ctx, other), true, ports.FlowAgentAPI, "will enrol again", "server answers")

	// A wrong base path: 404 named.
	wrong := fresh
	wrong.NodeCommURL = strings.TrimSuffix(l.url, "/vigil") + "/other"
	check(t, AgentAPI(ctx, wrong), false, ports.FlowAgentAPI, "HTTP 404")

	// A corrupted credential: refused with the HTTP status.
	bad := st.Identity
	bad.Token = bad.AgentID + ".0000000000000000000000000000000000000000000"
	b, _ := json.Marshal(bad)
	if err := os.WriteFile(filepath.Join(dir, agent.FileIdentityName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, AgentAPI(ctx, cfg), false, ports.FlowAgentAPI, "refused", "401")

	// The server stopped: connection refused, with the address.
	l.stop()
	hostport := strings.TrimPrefix(strings.TrimSuffix(l.url, "/vigil"), "http://")
	r := AgentAPI(ctx, cfg)
	check(t, r, false, ports.FlowAgentAPI, "connect "+hostport+": connection refused")
	check(t, AgentAPI(ctx, fresh), false, ports.FlowAgentAPI, "not enrolled yet", "connection refused")
}

func TestListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	check(t, Listening(context.Background(), ports.FlowAdmin, addr), true, ports.FlowAdmin, "accepts TCP connections")
	check(t, Listening(context.Background(), ports.FlowAgentAPI, ":"+port), true, ports.FlowAgentAPI, "connecting to 127.0.0.1:"+port)
	ln.Close()
	check(t, Listening(context.Background(), ports.FlowAdmin, addr), false, ports.FlowAdmin, "connection refused")
}

func TestMulticastServerBeacon(t *testing.T) {
	l := startServer(t)
	// An agent already listens on the port: the check shares it.
	agentRcv, err := mcast.NewReceiver(mcast.Config{Group: group, Port: l.port, Interface: testenv.Loopback(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer agentRcv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := Multicast(ctx, group, l.port, testenv.Loopback(t), l.srv.PublicKey(), 5*time.Second)
	check(t, r, true, ports.FlowCommands, fmt.Sprintf("%s:%d on %s", group, l.port, testenv.Loopback(t)), "signed beacon seq 0 from ")
}

func TestMulticastNoSender(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	port := randomPort()
	start := time.Now()
	r := Multicast(context.Background(), group, port, testenv.Loopback(t), pub, 300*time.Millisecond)
	check(t, r, false, ports.FlowCommands, "no signed beacon within 300ms", fmt.Sprintf("is UDP %d to %s allowed in", port, group))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v for a 300ms wait", d)
	}
}

func TestMulticastForeignKey(t *testing.T) {
	pinned, _, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	port := randomPort()
	snd, err := mcast.NewSender(mcast.Config{Group: group, Port: port, Interface: testenv.Loopback(t), TTL: 0, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(30 * time.Millisecond)
		defer tk.Stop()
		for seq := uint64(1); ; seq++ {
			now := time.Now()
			d, err := wire.Sign(other, wire.Header{Kind: wire.KindBeacon, Epoch: 1, Seq: seq, Issued: now, Expires: now.Add(time.Minute)},
				wire.EncodeBeacon(wire.Beacon{IntervalMillis: 30, SpreadMillis: 10}))
			if err == nil {
				snd.Send(d)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	r := Multicast(context.Background(), group, port, testenv.Loopback(t), pinned, 500*time.Millisecond)
	check(t, r, false, ports.FlowCommands, "no signed beacon within 500ms", "failed verification", "signed by another key", "reach this machine, but none verifies", "is ServerPublicKey the server's signing.pub")
}

// vendorRepo is a published repository with one definitions release.
func vendorRepo(t *testing.T, opts publish.Options) *publish.Repo {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("2026112501", map[string][]byte{
		"main.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func rootOf(t *testing.T, r *publish.Repo) []byte {
	t.Helper()
	b, err := os.ReadFile(r.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLiveUpdate(t *testing.T) {
	r := vendorRepo(t, publish.Options{})
	root := rootOf(t, r)
	s := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: r.PublicDir(),
	},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := Options{Timeout: 2 * time.Second}

	res := LiveUpdate(ctx, ports.FlowDefinitions, s.FTPURL, root, o)
	if len(res) != 3 {
		t.Fatalf("FTP: %d results: %+v", len(res), res)
	}
	check(t, res[0], true, ports.FlowDefinitions, s.FTPURL+" (control)", "logged in as anonymous")
	check(t, res[1], true, ports.FlowDefinitions, s.FTPURL+" (passive data)", "EPSV", "/metadata/timestamp.json")
	check(t, res[2], true, ports.FlowDefinitions, s.FTPURL+" (metadata)", "verifies: timestamp version 2", "newest definitions 2026112501")

	res = LiveUpdate(ctx, ports.FlowDefinitionsPublic, s.HTTPURL+"/", root, o)
	if len(res) != 2 {
		t.Fatalf("HTTP: %d results: %+v", len(res), res)
	}
	check(t, res[0], true, ports.FlowDefinitionsPublic, "(timestamp.json)", "HTTP 200 OK")
	check(t, res[1], true, ports.FlowDefinitionsPublic, "(metadata)", "verifies: timestamp version 2")

	// Metadata signed under another root fails verification.
	other := vendorRepo(t, publish.Options{})
	res = LiveUpdate(ctx, ports.FlowDefinitions, s.HTTPURL, rootOf(t, other), o)
	check(t, res[len(res)-1], false, ports.FlowDefinitions, "(metadata)", "refused")

	// A URL that is not the repository's public directory.
	res = LiveUpdate(ctx, ports.FlowDefinitions, s.FTPURL+"/nowhere", root, o)
	if len(res) != 2 {
		t.Fatalf("FTP, wrong path: %d results: %+v", len(res), res)
	}
	check(t, res[0], true, ports.FlowDefinitions, "(control)")
	check(t, res[1], false, ports.FlowDefinitions, "(passive data)", "opened, but RETR /nowhere/metadata/timestamp.json: FTP 550", "public directory")
	res = LiveUpdate(ctx, ports.FlowDefinitions, s.HTTPURL+"/nowhere", root, o)
	check(t, res[0], false, ports.FlowDefinitions, "(timestamp.json)", "HTTP 404", "public directory")

	// A stopped server fails at the first step, which is named.
	s.Close()
	res = LiveUpdate(ctx, ports.FlowDefinitions, s.FTPURL, root, o)
	if len(res) != 1 {
		t.Fatalf("stopped FTP server: %d results: %+v", len(res), res)
	}
	check(t, res[0], false, ports.FlowDefinitions, "(control)", "connect "+strings.TrimPrefix(s.FTPURL, "ftp://")+": connection refused")
	res = LiveUpdate(ctx, ports.FlowDefinitions, s.HTTPURL, root, o)
	if len(res) != 1 {
		t.Fatalf("stopped HTTP server: %d results: %+v", len(res), res)
	}
	check(t, res[0], false, ports.FlowDefinitions, "(timestamp.json)", "connection refused")
}

func TestLiveUpdateTamperedTimestamp(t *testing.T) {
	r := vendorRepo(t, publish.Options{})
	root := rootOf(t, r)
	ts := filepath.Join(r.PublicDir(), "metadata", "timestamp.json")
	b, err := os.ReadFile(ts)
	if err != nil {
		t.Fatal(err)
	}
	// Change the signed expiry by one second: the JSON stays valid, the
	// signature does not.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	signed := m["signed"].(map[string]any)
	exp, _ := time.Parse(time.RFC3339, signed["expires"].(string))
	signed["expires"] = exp.Add(time.Second).UTC().Format(time.RFC3339)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(ts, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: r.PublicDir(),
	},
	})
	ctx := context.Background()
	for _, u := range []string{s.FTPURL, s.HTTPURL} {
		res := LiveUpdate(ctx, ports.FlowDefinitions, u, root, Options{Timeout: 2 * time.Second})
		last := res[len(res)-1]
		check(t, last, false, ports.FlowDefinitions, "(metadata)", "timestamp.json refused: bad or missing signatures")
		if !res[len(res)-2].OK {
			t.Errorf("the transport step failed: %+v", res[len(res)-2])
		}
	}
}

func TestLiveUpdateExpired(t *testing.T) {
	past := func() time.Time { return time.Now().Add(-72 * time.Hour) }
	r := vendorRepo(t, publish.Options{Clock: past})
	s := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: r.PublicDir(),
	},
	})
	res := LiveUpdate(context.Background(), ports.FlowDefinitions, s.HTTPURL, rootOf(t, r), Options{Timeout: 2 * time.Second})
	check(t, res[len(res)-1], false, ports.FlowDefinitions, "(metadata)", "expired")
}

// brokenPassiveFTP is an FTP server whose control connection works but
// whose passive replies announce a port nothing listens on: what a client
// sees when a firewall blocks the passive port range.
func brokenPassiveFTP(t *testing.T) (addr string, deadPort int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort = dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprint(c, "220 test\r\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					cmd, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
					switch strings.ToUpper(cmd) {
					case "USER":
						fmt.Fprint(c, "331 password please\r\n")
					case "PASS":
						fmt.Fprint(c, "230 logged in\r\n")
					case "TYPE":
						fmt.Fprint(c, "200 ok\r\n")
					case "EPSV":
						fmt.Fprintf(c, "229 Entering Extended Passive Mode (|||%d|)\r\n", deadPort)
					case "PASV":
						fmt.Fprintf(c, "227 Entering Passive Mode (127,0,0,1,%d,%d)\r\n", deadPort>>8, deadPort&0xff)
					case "QUIT":
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "502 not implemented\r\n")
					}
				}
			})
		}
	})
	return ln.Addr().String(), deadPort
}

func TestLiveUpdatePassiveBlocked(t *testing.T) {
	addr, dead := brokenPassiveFTP(t)
	u := "ftp://" + addr + "/repo"
	res := LiveUpdate(context.Background(), ports.FlowDefinitions, u, []byte("{}"), Options{Timeout: 2 * time.Second})
	if len(res) != 2 {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	check(t, res[0], true, ports.FlowDefinitions, u+" (control)")
	check(t, res[1], false, ports.FlowDefinitions, u+" (passive data)", fmt.Sprintf("connect 127.0.0.1:%d: connection refused", dead), "passive port range")
}

func TestUpstream(t *testing.T) {
	const name, pool = "liveupdate.vendor.test", "lu-pool.vendor.test"
	up, down := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	dns.AddCNAME(name, pool)
	dns.SetAddrs(pool, up, down)

	r := vendorRepo(t, publish.Options{})
	root := rootOf(t, r)
	// One port, served on one address and free on the other.
	var srv *liveupdate.Server
	var port int
	for attempt := 0; srv == nil; attempt++ {
		if attempt > 50 {
			t.Fatal("no free port on the test addresses")
		}
		port = randomPort()
		l, err := net.Listen("tcp", netip.AddrPortFrom(down, uint16(port)).String())
		if err != nil {
			continue
		}
		l.Close()
		s, err := liveupdate.New(liveupdate.Config{LiveUpdate: config.LiveUpdate{
			Root:     r.PublicDir(),
			HTTPAddr: netip.AddrPortFrom(up, uint16(port)).String(),
		},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			s.Close()
			continue
		}
		srv = s
	}
	liveupdatetest.Serve(t, srv)

	u := fmt.Sprintf("http://%s:%d/", name, port)
	o := Options{Timeout: 2 * time.Second, Version: "v1.0.0", GOOS: "linux", GOARCH: "amd64"}
	res := Upstream(context.Background(), u, dns.Addr(), root, o)
	if len(res) != 4 {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	check(t, res[0], true, ports.FlowDNS, name+" via "+dns.Addr(), pool+" (CNAME)", "has addresses 127.0.0.2, 127.0.0.3")
	check(t, res[1], true, ports.FlowMirrorSync, "at 127.0.0.2", "timestamp version 2 verifies")
	check(t, res[2], false, ports.FlowMirrorSync, "at 127.0.0.3", fmt.Sprintf("connect 127.0.0.3:%d: connection refused", port))
	check(t, res[3], true, ports.FlowSelfUpdate, "at 127.0.0.2", "no Vigil release published for linux/amd64")

	// A release published: the self-update check names it.
	bin := filepath.Join(t.TempDir(), "vigil")
	if err := os.WriteFile(bin, []byte("\x7fELF not really a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRelease("v1.2.0", "linux", "amd64", bin); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	res = Upstream(context.Background(), u, dns.Addr(), root, o)
	check(t, res[1], true, ports.FlowMirrorSync, "at 127.0.0.2", "timestamp version 3 verifies")
	check(t, res[3], true, ports.FlowSelfUpdate, "newest Vigil release v1.2.0; running v1.0.0: newer available")

	// An unknown name fails under ports.FlowDNS.
	res = Upstream(context.Background(), fmt.Sprintf("http://nowhere.vendor.test:%d/", port), dns.Addr(), root, o)
	if len(res) != 1 {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	check(t, res[0], false, ports.FlowDNS, "not found")
}

func TestRender(t *testing.T) {
	res := []Result{
		{Flow: ports.FlowCommands, Target: "239.255.81.92:8192 on lo", OK: true, Detail: "signed beacon seq 7 from 127.0.0.1 after 0.4s", Elapsed: 400 * time.Millisecond},
		{Flow: ports.FlowDefinitionsPublic, Target: "ftp://10.0.0.2/repo (passive data)", Detail: "line one\nline two", Elapsed: 1500 * time.Microsecond},
	}
	var b bytes.Buffer
	if err := Write(&b, res); err != nil {
		t.Fatal(err)
	}
	want := "ok    commands            239.255.81.92:8192 on lo: signed beacon seq 7 from 127.0.0.1 after 0.4s\n" +
		"FAIL  definitions-public  ftp://10.0.0.2/repo (passive data): line one line two\n"
	if b.String() != want {
		t.Errorf("Write:\n%s\nwant:\n%s", b.String(), want)
	}
	if !Failed(res) || Failed(res[:1]) || Failed(nil) {
		t.Error("Failed")
	}
	b.Reset()
	if err := WriteJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	wantJSON := `[{"flow":"commands","target":"239.255.81.92:8192 on lo","ok":true,"detail":"signed beacon seq 7 from 127.0.0.1 after 0.4s","elapsed_ms":400},` +
		`{"flow":"definitions-public","target":"ftp://10.0.0.2/repo (passive data)","ok":false,"detail":"line one line two","elapsed_ms":1.5}]` + "\n"
	if b.String() != wantJSON {
		t.Errorf("WriteJSON:\n%s\nwant:\n%s", b.String(), wantJSON)
	}
	var back []Result
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back) != 2 || back[1].Elapsed != 1500*time.Microsecond || back[0].Flow != ports.FlowCommands {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestAgentAPIHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testcert.Write(t, filepath.Join(dir, "server"))
	otherCA, _, _ := testcert.Write(t, filepath.Join(dir, "other"))
	l := startTLSServer(t, cert, key)
	ctx := context.Background()
	cfg := AgentAPIConfig{NodeCommURL: l.url, CACertFile: ca, StateDir: t.TempDir(), Timeout: 2 * time.Second}
	check(t, AgentAPI(ctx, cfg), true, ports.FlowAgentAPI, "not enrolled yet", "server answers")

	cfg.CACertFile = otherCA
	check(t, AgentAPI(ctx, cfg), false, ports.FlowAgentAPI, "TLS: the server's certificate is not signed by the CA in ServerCACertificate "+otherCA)
	cfg.CACertFile = ""
	check(t, AgentAPI(ctx, cfg), false, ports.FlowAgentAPI, "TLS: the server's certificate is signed by an unknown authority")
	cfg.CACertFile = filepath.Join(dir, "missing.pem")
	check(t, AgentAPI(ctx, cfg), false, ports.FlowAgentAPI, "ServerCACertificate", "missing.pem")
}

// TestSilentServers: servers that accept connections and never answer
// make the checks fail within their step timeout, saying so.
func TestSilentServers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	addr := ln.Addr().String()
	ctx := context.Background()
	step := 300 * time.Millisecond
	start := time.Now()
	check(t, AgentAPI(ctx, AgentAPIConfig{NodeCommURL: "http://" + addr + "/vigil", StateDir: t.TempDir(), Timeout: step}),
		false, ports.FlowAgentAPI, "no answer within 300ms")
	res := LiveUpdate(ctx, ports.FlowDefinitions, "ftp://"+addr+"/", nil, Options{Timeout: step})
	check(t, res[0], false, ports.FlowDefinitions, "(control)", "no answer within 300ms")
	res = LiveUpdate(ctx, ports.FlowDefinitions, "http://"+addr+"/", nil, Options{Timeout: step})
	check(t, res[0], false, ports.FlowDefinitions, "(timestamp.json)", "no answer within 300ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("three checks with a %v step took %v", step, d)
	}
}
