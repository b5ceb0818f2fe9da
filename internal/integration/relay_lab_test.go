//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// The relay lab's fixed addresses inside its namespaces.
const (
	rlGroup     = "239.255.81.92"
	rlPort      = 8192
	rlAPIPort   = 8080
	rlAdminAddr = "127.0.0.1:8081"
	rlDefsVer   = "2026120301"
)

// rlEveryAgent targets the lab's five agents: their groups, not "all",
// which would take in the relay too (it enrolls as a node, in group
// "relays", and answers commands that target it "unsupported").
var rlEveryAgent = command.Target{Groups: []string{"near", "far"}}

// relayLab is TestRelayLab's network and what runs on it.
//
// Subnet near (the lab's main subnet): the PostgreSQL host (db), two
// server instances (srv1, srv2), nginx in front of them (lb), a LiveUpdate
// server (lu) and two agents (near1, near2). Subnet far: the relay's host
// (relay) and three agents (far1-far3). A router joins them: unicast
// crosses it, multicast does not.
//
// PostgreSQL runs in the db host's namespace and listens on its lab
// address, with a password (pgtest's Listen and NetNS options): each
// server instance runs on a host of its own and reaches the database over
// the lab's network, as separate machines would. (Running both instances
// beside the database on its Unix socket would have been simpler, but
// would test neither the database's network path nor two machines behind
// one load balancer.)
type relayLab struct {
	top  *testing.T
	lab  *netlab.Lab
	near *netlab.Subnet
	far  *netlab.Subnet

	router, db, lb, lu, relayH *netlab.Host
	srvH                       [2]*netlab.Host
	srvArgs                    [2][]string
	srv                        [2]process
	dataDir                    [2]string

	dsn      string // the servers' DSN (TCP, in the lab)
	localDSN string // the same database over the cluster's Unix socket, for this process
	access   string // nginx's access log
	repoRoot string // the definitions repository's 1.root.json
	nodeComm string // agents' NodeCommURL: nginx

	f         *fleet
	nearM     []*member
	farM      []*member
	capNear   *labCapture                  // datagrams on the near subnet (on lb)
	capFar    *labCapture                  // datagrams on the far subnet (on far1)
	counters  map[string]map[string]uint64 // as of command settledAt
	settledAt uint64

	relay      process // nil until startRelay succeeded, and after it was killed
	relayed    bool    // relay-multicast passed: the relay carried the commands
	relayState string
}

// TestRelayLab is issue 14's lab: two subnets joined by a router (IP
// forwarding on, no multicast routing), two `vigil server` instances over
// one PostgreSQL behind nginx and two agents on the near subnet, a relay
// and three agents on the far one. Its steps, in order, each a subtest:
//
//   - enrolled: all five agents enrolled through nginx (setup);
//   - far-catch-up-over-http: commands reach the near agents by multicast
//     and the far agents only over HTTP (their via_http counter equals
//     what they executed, and nginx logged their fetches);
//   - kill-server-instance: one instance SIGKILLed while agents post
//     results; every result an agent's journal records as acknowledged is
//     in the store, then and at the end, and every result arrives;
//   - forged-datagrams-far: a stand-in for a hostile relay, on the relay's
//     host, multicasts forged, altered and replayed datagrams on the far
//     subnet: nothing runs, and the far agents' drop counters count each;
//   - relay-multicast: with `vigil relay` up, commands reach the far agents
//     by multicast through it, with no HTTP catch-up (counted);
//   - relay-definitions: the far agents, whose only LiveUpdate server is
//     the relay (the router drops their traffic to the LiveUpdate server),
//     update their definitions from the relay's cache;
//   - relay-killed: with the relay SIGKILLed, the far agents catch up over
//     HTTP again.
//
// Every agent's journal then shows each command targeted at it started
// exactly once. The relay steps run `vigil relay` with the flags of
// config.Relay; where the binary has no relay subcommand they fail (not
// skip), saying so.
func TestRelayLab(t *testing.T) {
	t.Parallel()
	netlab.RequireNft(t)
	nginx := testenv.NeedTool(t, "nginx", "nginx")
	testenv.PostgresBin(t)
	rl := newRelayLab(t, nginx)
	f := rl.f

	step := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(st *testing.T) {
			f.t = st
			defer func() { f.t = t }()
			fn(st)
		})
	}

	step("far-catch-up-over-http", func(t *testing.T) {
		base := rl.baseline(t)
		mark := rl.accessLines()
		for i := range 6 {
			switch i % 3 {
			case 1:
				f.send(command.Target{Groups: []string{"far"}}, "ping")
			case 2:
				f.send(command.Target{Groups: []string{"near"}}, "ping")
			default:
				f.send(rlEveryAgent, "ping")
			}
			time.Sleep(50 * time.Millisecond)
		}
		got := rl.settle(t)
		for _, m := range rl.nearM {
			if d := delta(got, base, m, agent.CountViaHTTP); d != 0 {
				t.Errorf("near agent %s fetched %d commands over HTTP, want all by multicast: %v", m.name, d, got[m.name])
			}
		}
		for _, m := range rl.farM {
			// via_http counts every command fetched, for the agent or
			// not.
			ex, via := delta(got, base, m, agent.CountExecuted), delta(got, base, m, agent.CountViaHTTP)
			if seen := ex + delta(got, base, m, agent.CountNotTargeted); ex == 0 || via != seen {
				t.Errorf("far agent %s executed %d commands and passed over %d; %d fetched over HTTP, want all (multicast does not cross the router): %v",
					m.name, ex, seen-ex, via, got[m.name])
			}
			if n := rl.fetches(mark, m); n == 0 {
				t.Errorf("nginx logged no command fetch (GET .../v1/commands) from far agent %s", m.name)
			}
		}
		f.logf("far agents caught up over HTTP: %v", got)
	})

	step("kill-server-instance", func(t *testing.T) { rl.killInstance(t) })
	step("forged-datagrams-far", func(t *testing.T) { rl.forged(t) })

	step("relay-multicast", func(t *testing.T) {
		rl.relayState = filepath.Join(rl.top.TempDir(), "relay")
		rl.relay = startRelay(t, rl.top, rl.relayH, rl.relayConfig())
		rl.waitRelayEnrolled(t, 60*time.Second)
		// The stream is up once the server's beacons come out of the
		// relay on the far subnet: signed by the server (not the hostile
		// stand-in's forged one, sent from the same host) and issued
		// after the relay started.
		pub := rl.serverKey(t)
		started := time.Now()
		rl.capFar.wait(t, "a server beacon from the relay", 60*time.Second, func(d captured, e *wire.Envelope) bool {
			v, err := wire.Verify(d.b, pub, time.Now())
			return err == nil && d.src == rl.relayH.IP4 && v.Kind == wire.KindBeacon && v.Issued.After(started)
		})
		base := rl.baseline(t)
		mark := rl.accessLines()
		first := f.lastSeq() + 1
		for i := range 6 {
			if i%2 == 1 {
				f.send(command.Target{Groups: []string{"far"}}, "ping")
			} else {
				f.send(rlEveryAgent, "ping")
			}
			time.Sleep(50 * time.Millisecond)
		}
		got := rl.settle(t)
		for _, m := range append(append([]*member(nil), rl.nearM...), rl.farM...) {
			ex, via := delta(got, base, m, agent.CountExecuted), delta(got, base, m, agent.CountViaHTTP)
			if ex == 0 || via != 0 {
				t.Errorf("agent %s executed %d commands, %d fetched over HTTP; want all by multicast (far agents through the relay): %v", m.name, ex, via, got[m.name])
			}
		}
		for _, m := range rl.farM {
			if n := rl.fetches(mark, m); n != 0 {
				t.Errorf("nginx logged %d command fetches from far agent %s with the relay up, want none", n, m.name)
			}
		}
		for seq := first; seq <= f.lastSeq(); seq++ {
			rl.capFar.wait(t, fmt.Sprintf("command %d from the relay", seq), 10*time.Second, func(d captured, e *wire.Envelope) bool {
				v, err := wire.Verify(d.b, pub, time.Now())
				return err == nil && d.src == rl.relayH.IP4 && v.Kind != wire.KindBeacon && v.Seq == seq
			})
		}
		rl.relayed = !t.Failed()
		f.logf("with the relay up, commands %d-%d reached every agent by multicast: %v", first, f.lastSeq(), got)
	})

	step("relay-definitions", func(t *testing.T) {
		if rl.relay == nil {
			t.Fatal("the relay is not running (see relay-multicast)")
		}
		rl.baseline(t)
		upd := f.send(command.Target{Groups: []string{"far"}}, "update")
		defer func() {
			// A failed update is reported here; later steps check their
			// own commands, so take what the agents reported as what this
			// command wants from now on.
			if res, err := f.results(upd.Seq); t.Failed() && err == nil && len(res.Results) > 0 {
				for i := range f.cmds {
					if f.cmds[i].Seq == upd.Seq {
						f.cmds[i].want = res.Results[0].Status
					}
				}
			}
		}()
		f.waitResults(120 * time.Second)
		if t.Failed() {
			t.FailNow()
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			var behind []string
			for _, a := range f.agentInfo() {
				if m := f.byID(a.ID); m != nil && slices.Contains(rl.farM, m) && a.DefsVer != rlDefsVer {
					behind = append(behind, a.Hostname+" at "+a.DefsVer)
				}
			}
			if len(behind) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("far agents report other definitions than %s after the update: %s", rlDefsVer, strings.Join(behind, ", "))
			}
		}
		for _, m := range rl.farM {
			p, err := prefs.Load(m.plist)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(definitions.CurrentLink(p.DefinitionsDirectory), "vigil-relaylab.hdb")); err != nil {
				t.Errorf("far agent %s: installed definitions: %v", m.name, err)
			}
		}
		cached := 0
		filepath.WalkDir(filepath.Join(rl.relayState, "cache"), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				cached++
			}
			return nil
		})
		if cached == 0 {
			t.Errorf("the relay's cache %s holds no file", filepath.Join(rl.relayState, "cache"))
		}
		rl.counters = rl.settle(t)
		f.logf("far agents installed %s from the relay's cache (%d files cached)", rlDefsVer, cached)
	})

	step("relay-killed", func(t *testing.T) {
		if rl.relay == nil {
			t.Fatal("the relay is not running (see relay-multicast)")
		}
		if !rl.relayed {
			// Catching up behind a relay that never relayed shows
			// nothing about killing one.
			t.Fatal("the relay never carried commands to the far agents (see relay-multicast)")
		}
		rl.relay.Kill()
		rl.relay = nil
		f.logf("SIGKILLed the relay")
		base := rl.baseline(t)
		mark := rl.accessLines()
		for range 4 {
			f.send(rlEveryAgent, "ping")
			time.Sleep(50 * time.Millisecond)
		}
		got := rl.settle(t)
		for _, m := range rl.farM {
			ex, via := delta(got, base, m, agent.CountExecuted), delta(got, base, m, agent.CountViaHTTP)
			if ex != 5 || via != ex+delta(got, base, m, agent.CountNotTargeted) {
				t.Errorf("far agent %s executed %d commands (want 5), %d fetched over HTTP; want all over HTTP behind a dead relay: %v", m.name, ex, via, got[m.name])
			}
			if n := rl.fetches(mark, m); n == 0 {
				t.Errorf("nginx logged no command fetch from far agent %s behind the dead relay", m.name)
			}
		}
		for _, m := range rl.nearM {
			if d := delta(got, base, m, agent.CountViaHTTP); d != 0 {
				t.Errorf("near agent %s fetched %d commands over HTTP", m.name, d)
			}
		}
		f.logf("behind the dead relay the far agents caught up over HTTP: %v", got)
	})

	f.t = t
	f.stopAgents()
	f.checkJournals()
}

// newRelayLab builds the lab and starts everything but the relay, and
// checks that every agent enrolled through nginx.
func newRelayLab(t *testing.T, nginx string) *relayLab {
	rl := &relayLab{top: t, lab: netlab.New(t)}
	rl.near = rl.lab.Main()
	rl.far = rl.lab.AddSubnet("far")
	rl.router = rl.lab.AddRouter("router", rl.near, rl.far)
	rl.db = rl.lab.AddHost("db")
	rl.srvH = [2]*netlab.Host{rl.lab.AddHost("srv1"), rl.lab.AddHost("srv2")}
	rl.lb = rl.lab.AddHost("lb")
	rl.lu = rl.lab.AddHost("lu")
	nearH := []*netlab.Host{rl.lab.AddHost("near1"), rl.lab.AddHost("near2")}
	rl.relayH = rl.far.AddHost("relay")
	farH := []*netlab.Host{rl.far.AddHost("far1"), rl.far.AddHost("far2"), rl.far.AddHost("far3")}
	rl.nodeComm = "http://" + rl.lb.IP4.String() + "/vigil"
	start := time.Now()

	// The far agents reach the LiveUpdate server only through the relay:
	// the router drops what else on the far subnet sends it.
	rl.router.Nft(t, fmt.Sprintf(`table inet relaylab {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr %s ip saddr != %s ip daddr %s counter drop
	}
}
`, rl.far.Prefix4(), rl.relayH.IP4, rl.lu.IP4))

	// PostgreSQL on the db host's lab address; started after the lab, so
	// stopped before it goes.
	pg := pgtest.StartWith(t, pgtest.Options{Listen: rl.db.IP4, NetNS: rl.db.NS})
	rl.localDSN = pg.NewDatabase(t)
	rl.dsn = pg.TCPDSN(pgtest.Database(rl.localDSN))

	// Two instances sharing the first one's keys and secrets, placed
	// before the second starts (docs/operations.md).
	for i, h := range rl.srvH {
		rl.dataDir[i] = filepath.Join(t.TempDir(), "data")
		if i > 0 {
			copySecrets(t, rl.dataDir[0], rl.dataDir[i])
		}
		rl.srvArgs[i] = []string{"server", "-store", rl.dsn, "-data-dir", rl.dataDir[i],
			"-listen", h.IP4.String() + ":" + strconv.Itoa(rlAPIPort), "-admin-listen", rlAdminAddr,
			"-group", rlGroup, "-port", strconv.Itoa(rlPort), "-interface", h.Ifname, "-ttl", "1",
			"-beacon-interval", "500ms", "-spread", "200ms", "-checkin-interval", "5s"}
		rl.startInstance(t, t, i)
	}

	rl.access = startNginx(t, rl.lb, nginx, rl.srvH[:])
	// nginx answers, from both subnets.
	runLabHelper(t, nearH[0], "waithttp", rl.nodeComm+"/v1/commands", "30")
	runLabHelper(t, farH[0], "waithttp", rl.nodeComm+"/v1/commands", "30")

	// The vendor's repository with one definitions release, served by a
	// LiveUpdate server on the near subnet.
	dir := t.TempDir()
	r, err := publish.Init(filepath.Join(dir, "vendor"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData(rlDefsVer, map[string][]byte{
		"vigil-relaylab.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	rl.repoRoot = r.RootPath()
	luPlist := filepath.Join(dir, "liveupdate.plist")
	b, err := plist.Marshal(map[string]any{"Root": r.PublicDir(), "HTTP": rl.lu.IP4.String() + ":80", "FTP": "off"}, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(luPlist, b, 0o644); err != nil {
		t.Fatal(err)
	}
	lu := hostPlace(rl.lu).start(t, "liveupdate", "liveupdate", "-config", luPlist)
	lu.WaitLog(t, "serving HTTP", 30*time.Second)

	// Datagrams seen on each subnet, for the rest of the test.
	rl.capNear = startLabCapture(t, rl.lb, rlGroup, rlPort)
	rl.capFar = startLabCapture(t, farH[0], rlGroup, rlPort)

	f := &fleet{t: t, admin: hostPlace(rl.srvH[0]), adminURL: "http://" + rlAdminAddr, dataDir: rl.dataDir[0], startedAt: start}
	rl.f = f
	for _, h := range nearH {
		rl.nearM = append(rl.nearM, f.addMember(h.Name, hostPlace(h), rl.nodeComm, rlGroup, rlPort, h.Ifname, "near"))
	}
	for _, h := range farH {
		m := f.addMember(h.Name, hostPlace(h), rl.nodeComm, rlGroup, rlPort, h.Ifname, "far")
		p, err := prefs.Load(m.plist)
		if err != nil {
			t.Fatal(err)
		}
		// The relay's cache is the far agents' only LiveUpdate server.
		p.LiveUpdateServers = []string{"http://" + rl.relayH.IP4.String() + "/"}
		p.RepositoryRoot = rl.repoRoot
		p.DefinitionsDirectory = filepath.Join(filepath.Dir(m.plist), "definitions")
		if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
			t.Fatal(err)
		}
		rl.farM = append(rl.farM, m)
	}
	for _, m := range f.members {
		f.startAgent(m)
	}
	f.learnIDs()
	f.logf("lab %s: near %v (db %s, servers %s %s, nginx %s, liveupdate %s, agents %s %s), far %v (relay %s, agents %s %s %s), router %s/%s",
		rl.lab.ID(), rl.near.Prefix4(), rl.db.IP4, rl.srvH[0].IP4, rl.srvH[1].IP4, rl.lb.IP4, rl.lu.IP4, nearH[0].IP4, nearH[1].IP4,
		rl.far.Prefix4(), rl.relayH.IP4, farH[0].IP4, farH[1].IP4, farH[2].IP4, rl.router.IP4, rl.router.Links()[1].IP4)

	// Every agent enrolled through nginx (and nginx passed each
	// enrollment to an instance).
	t.Run("enrolled", func(t *testing.T) {
		for _, m := range f.members {
			n := 0
			for _, e := range rl.accessSince(0) {
				if e.remote == rl.hostOf(m).IP4.String() && e.method == "POST" && strings.HasSuffix(e.uri, "/v1/enroll") && e.status == "201" && e.upstream != "" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("agent %s: %d enrollments through nginx, want 1", m.name, n)
			}
		}
	})
	rl.counters = rl.settle(t)
	return rl
}

// startInstance starts server instance i (again), its process owned by
// owner's cleanup, and waits until it listens.
func (rl *relayLab) startInstance(t, owner testing.TB, i int) {
	t.Helper()
	rl.srv[i] = hostPlace(rl.srvH[i]).start(owner, fmt.Sprintf("server%d", i+1), rl.srvArgs[i]...)
	rl.srv[i].WaitLog(t, "server listening", 60*time.Second)
}

// startNginx runs nginx in h as the load balancer of the servers' agent
// APIs and returns its access log's path. Responses are not buffered
// (proxy_buffering off) and idle upstream reads time out after an hour,
// so the relay's never-ending stream passes through; a request that
// cannot reach one instance is passed to the other, unless it was sent
// already and is not idempotent (nginx's default).
func startNginx(t *testing.T, h *netlab.Host, nginx string, servers []*netlab.Host) string {
	t.Helper()
	dir := t.TempDir()
	var upstream strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&upstream, "\t\tserver %s:%d max_fails=1 fail_timeout=2s;\n", s.IP4, rlAPIPort)
	}
	access := filepath.Join(dir, "access.log")
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
user root root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	log_format lab '$remote_addr $request_method $uri $status $upstream_addr';
	access_log %[2]s lab;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream vigil {
%[3]s		keepalive 16;
	}
	server {
		listen %[4]s:80;
		location / {
			proxy_pass http://vigil;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_buffering off;
			proxy_read_timeout 1h;
			proxy_connect_timeout 2s;
		}
	}
}
`, dir, access, upstream.String(), h.IP4)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log")}
	h.Run(t, nginx, append([]string{"-t"}, args...)...)
	h.Start(t, nginx, args...)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log:\n%s", b)
		}
	})
	return access
}

// accessEntry is one line of nginx's access log.
type accessEntry struct{ remote, method, uri, status, upstream string }

// accessSince returns the access log's entries from line n on.
func (rl *relayLab) accessSince(n int) []accessEntry {
	f, err := os.Open(rl.access)
	if err != nil {
		return nil
	}
	defer f.Close()
	var es []accessEntry
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		if i < n {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		e := accessEntry{remote: fs[0], method: fs[1], uri: fs[2], status: fs[3]}
		if len(fs) > 4 {
			e.upstream = strings.Join(fs[4:], " ")
		}
		es = append(es, e)
	}
	return es
}

// accessLines is the number of lines in the access log now.
func (rl *relayLab) accessLines() int {
	b, _ := os.ReadFile(rl.access)
	return bytes.Count(b, []byte("\n"))
}

// fetches counts the command fetches (GET .../v1/commands...) from m's
// host in the access log since line mark.
func (rl *relayLab) fetches(mark int, m *member) int {
	n := 0
	for _, e := range rl.accessSince(mark) {
		if e.remote == rl.hostOf(m).IP4.String() && e.method == "GET" && strings.Contains(e.uri, "/v1/commands") {
			n++
		}
	}
	return n
}

// hostOf is the lab host an agent runs on (named as the agent).
func (rl *relayLab) hostOf(m *member) *netlab.Host {
	for _, h := range rl.lab.Hosts() {
		if h.Name == m.name {
			return h
		}
	}
	rl.top.Fatalf("no host for agent %s", m.name)
	return nil
}

// settle has every agent report its counters (a "checkin" to all), waits
// for every result and for each agent's executed count to be what the
// commands issued make it, and returns the counters.
func (rl *relayLab) settle(t *testing.T) map[string]map[string]uint64 {
	t.Helper()
	f := rl.f
	f.send(rlEveryAgent, "checkin")
	f.waitResults(120 * time.Second)
	got := f.waitCounters(60*time.Second, func(m *member, c map[string]uint64) bool {
		n := uint64(0)
		for _, c := range f.cmds {
			if m.targets(c) {
				n++
			}
		}
		return c[agent.CountExecuted] == n
	})
	rl.counters, rl.settledAt = got, f.lastSeq()
	return got
}

// baseline returns the agents' counters as of the last command issued:
// those of the last settle, or a new settle's if commands were issued
// since (a step that failed half-way).
func (rl *relayLab) baseline(t *testing.T) map[string]map[string]uint64 {
	t.Helper()
	if rl.settledAt != rl.f.lastSeq() {
		return rl.settle(t)
	}
	return rl.counters
}

// serverKey is the servers' public key.
func (rl *relayLab) serverKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	key, err := server.DataDir{Path: rl.dataDir[0]}.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return key.Public().(ed25519.PublicKey)
}

// delta is how much counter k of m grew from base to got.
func delta(got, base map[string]map[string]uint64, m *member, k string) uint64 {
	return got[m.name][k] - base[m.name][k]
}

// ackedResults reads, from each agent's journal, the results the server
// acknowledged ("A SEQ" lines), as agent ID -> sequences.
func (rl *relayLab) ackedResults(t *testing.T) map[string][]uint64 {
	t.Helper()
	acked := map[string][]uint64{}
	for _, m := range rl.f.members {
		b, err := os.ReadFile(filepath.Join(m.state, agent.FileJournalName))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "A "); ok {
				seq, err := strconv.ParseUint(rest, 10, 64)
				if err != nil {
					t.Fatalf("agent %s journal: %q", m.name, line)
				}
				acked[m.id] = append(acked[m.id], seq)
			}
		}
	}
	return acked
}

// checkAcked checks that every acknowledged result is in the store, and
// returns how many there were.
func (rl *relayLab) checkAcked(t *testing.T, st *postgres.Store, acked map[string][]uint64) int {
	t.Helper()
	stored := map[string]map[uint64]bool{}
	rows, err := st.Pool().Query(t.Context(), "SELECT agent_id, seq FROM results")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var seq uint64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		if stored[id] == nil {
			stored[id] = map[uint64]bool{}
		}
		stored[id][seq] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for id, seqs := range acked {
		for _, s := range seqs {
			n++
			if !stored[id][s] {
				t.Errorf("agent %s's result for command %d was acknowledged but is not in the store", rl.f.byID(id).name, s)
			}
		}
	}
	return n
}

// killInstance SIGKILLs server instance 2 while commands flow and agents
// post results, once nginx shows it has acknowledged results, and checks
// that no acknowledged result is lost; then starts it again.
func (rl *relayLab) killInstance(t *testing.T) {
	f := rl.f
	st, err := postgres.Open(t.Context(), rl.localDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	victim := rl.srvH[1].IP4.String() + ":" + strconv.Itoa(rlAPIPort)
	mark := rl.accessLines()
	// acknowledgedBy counts results POSTs that instance 2 answered 200
	// since the step began.
	acknowledgedBy := func() int {
		n := 0
		for _, e := range rl.accessSince(mark) {
			if e.method == "POST" && strings.HasSuffix(e.uri, "/v1/results") && e.status == "200" && strings.HasSuffix(e.upstream, victim) {
				n++
			}
		}
		return n
	}
	killed := false
	var before int
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 24 || !killed; i++ {
		f.send(rlEveryAgent, "ping")
		time.Sleep(60 * time.Millisecond)
		if !killed && i >= 8 && acknowledgedBy() > 0 {
			before = acknowledgedBy()
			rl.srv[1].Kill()
			killed = true
			f.logf("SIGKILLed server instance 2 after command %d; it had acknowledged %d result posts", f.lastSeq(), before)
			n := rl.checkAcked(t, st, rl.ackedResults(t))
			f.logf("right after the kill: all %d results the agents' journals record as acknowledged are in the store", n)
		}
		if !killed && time.Now().After(deadline) {
			t.Fatalf("server instance 2 acknowledged no result posts through nginx within 20 s (of %d)", len(rl.accessSince(mark)))
		}
	}
	f.waitResults(120 * time.Second)
	n := rl.checkAcked(t, st, rl.ackedResults(t))
	var dups int
	if err := st.Pool().QueryRow(t.Context(), "SELECT count(*) FROM (SELECT agent_id, seq FROM results GROUP BY 1, 2 HAVING count(*) > 1) d").Scan(&dups); err != nil {
		t.Fatal(err)
	}
	if dups != 0 {
		t.Errorf("%d (agent, command) pairs have more than one result stored", dups)
	}
	f.logf("every result arrived; all %d acknowledged results are in the store", n)
	rl.startInstance(t, rl.top, 1)
	f.logf("restarted server instance 2")
	rl.counters = rl.settle(t)
}

// forged has a stand-in for a hostile relay, on the relay's host,
// multicast on the far subnet what a relay could make without the
// server's key: a command and a beacon signed with another key, another
// key's signature under the server's key id, a real command renumbered,
// that with a bit of its body and of its signature flipped, and a real
// command replayed twice. Nothing may run, and the far agents' counters
// must count each by its reason.
func (rl *relayLab) forged(t *testing.T) {
	f := rl.f
	rl.baseline(t)
	c1 := f.send(rlEveryAgent, "ping")
	raw := rl.capNear.wait(t, fmt.Sprintf("command %d", c1.Seq), 10*time.Second, func(_ captured, e *wire.Envelope) bool {
		return e.Kind == wire.KindCommand && e.Seq == c1.Seq
	}).b
	base := rl.settle(t)
	e1, err := wire.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	key, err := server.DataDir{Path: rl.dataDir[0]}.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	next := f.lastSeq() + 1
	now := time.Now()
	hdr := wire.Header{Kind: wire.KindCommand, Epoch: e1.Epoch, Seq: next, Issued: now, Expires: now.Add(time.Hour)}
	sign := func(k ed25519.PrivateKey, h wire.Header, body []byte) []byte {
		t.Helper()
		b, err := wire.Sign(k, h, body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 0x01
		return b
	}
	ping := mustEncode(t, command.Command{Name: "ping", Target: command.Target{All: true}})
	impostor := sign(otherKey, hdr, ping)
	kid := wire.KeyID(key.Public().(ed25519.PublicKey))
	copy(impostor[6:14], kid[:])
	renumbered := bytes.Clone(raw)
	binary.BigEndian.PutUint64(renumbered[22:30], next)
	hostile := [][]byte{
		sign(otherKey, hdr, ping), // forged command
		sign(otherKey, wire.Header{Kind: wire.KindBeacon, Epoch: e1.Epoch, Seq: next + 1000, Issued: now, Expires: now.Add(time.Hour)},
			wire.EncodeBeacon(wire.Beacon{IntervalMillis: 500})), // forged beacon
		impostor,                            // another key's signature under the server's key id
		renumbered,                          // altered: a real command renumbered
		flip(renumbered, wire.HeaderSize+3), // altered body
		flip(renumbered, len(renumbered)-1), // altered signature
		raw, raw,                            // replayed
	}
	var lines strings.Builder
	for _, d := range hostile {
		lines.WriteString(hex.EncodeToString(d) + "\n")
	}
	file := filepath.Join(t.TempDir(), "hostile")
	if err := os.WriteFile(file, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runLabHelper(t, rl.relayH, "send", rl.relayH.Ifname, rlGroup, strconv.Itoa(rlPort), "1", file); !strings.Contains(out, fmt.Sprintf("sent %d", len(hostile))) {
		t.Fatalf("the hostile relay's sender: %s", out)
	}
	// Every far agent received them all (the capture on far1 shows them
	// on the wire).
	for _, d := range hostile[:6] {
		rl.capFar.wait(t, "a hostile datagram", 10*time.Second, func(c captured, _ *wire.Envelope) bool {
			return c.src == rl.relayH.IP4 && bytes.Equal(c.b, d)
		})
	}
	got := rl.settle(t)
	want := map[string]uint64{agent.CountWrongKey: 2, agent.CountBadSig: 4, agent.CountOld: 2}
	for _, m := range rl.farM {
		for k, v := range want {
			if d := delta(got, base, m, k); d != v {
				t.Errorf("far agent %s: counter %s grew by %d, want %d (counters %v)", m.name, k, d, v, got[m.name])
			}
		}
	}
	for _, m := range rl.nearM {
		// (Not "old": the near agents count the server's repeated
		// datagrams there.)
		for _, k := range []string{agent.CountWrongKey, agent.CountBadSig} {
			if d := delta(got, base, m, k); d != 0 {
				t.Errorf("near agent %s: counter %s grew by %d: the far subnet's datagrams reached it", m.name, k, d)
			}
		}
	}
	f.logf("the far agents dropped the hostile relay's datagrams by reason, and ran nothing of them: %v", got)
}

// relayConfig is the relay's command line for this lab, as config.Relay
// names its flags: the server through nginx, its key, the enrollment
// secret, multicast on the far subnet with TTL 1, and the definitions
// cache on ports 80 and 21 filling from the LiveUpdate server.
func (rl *relayLab) relayConfig() []string {
	pub, err := server.DataDir{Path: rl.dataDir[0]}.PublicKey()
	if err != nil {
		rl.top.Fatal(err)
	}
	return []string{
		"-server", rl.nodeComm,
		"-server-key", strings.TrimSpace(pub),
		"-enroll-secret-file", filepath.Join(rl.dataDir[0], server.FileEnrollSecret),
		"-hostname", "relay",
		"-state-dir", rl.relayState,
		"-interface", rl.relayH.Ifname,
		"-group", rlGroup,
		"-port", strconv.Itoa(rlPort),
		"-ttl", "1",
		"-upstream", "http://" + rl.lu.IP4.String() + "/",
		"-root", rl.repoRoot,
		"-http", ":80",
		"-ftp", ":21",
		"-metrics-listen", "127.0.0.1:9108",
	}
}

// startRelay starts `vigil relay FLAGS...` in h, its process owned by
// owner's cleanup. The flags are first parsed and checked with
// config.Relay, the relay's own flag set: a command line the relay would
// refuse fails here. Where the vigil binary has no relay subcommand, t
// fails (it does not skip): the relay steps are part of the lab test.
func startRelay(t, owner *testing.T, h *netlab.Host, flags []string) process {
	t.Helper()
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c config.Relay
	c.RegisterFlags(fs)
	if err := fs.Parse(flags); err != nil {
		t.Fatalf("the relay's command line does not parse with config.Relay's flags: %v (%q)", err, flags)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("the relay's command line fails config.Relay.Check: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := hostPlace(h).command(ctx, "relay", "-h").CombinedOutput()
	if strings.Contains(string(out), `unknown command "relay"`) {
		t.Fatalf("the vigil binary built from this tree has no relay subcommand (`vigil relay -h`: %s): the relay steps cannot run until vigil relay is merged",
			strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]))
	}
	return hostPlace(h).start(owner, "relay", append([]string{"relay"}, flags...)...)
}

// waitRelayEnrolled waits until the relay is enrolled (it enrolls as a
// node, under its -hostname).
func (rl *relayLab) waitRelayEnrolled(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, a := range rl.f.agentInfo() {
			if a.Hostname == "relay" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not enroll within %v", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
