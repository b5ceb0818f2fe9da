//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

const testGroup = "239.255.81.92"

// loopbackServer is a `vigil server` on 127.0.0.1 and lo (TTL 0) that can
// be killed and restarted on the same data directory and addresses.
type loopbackServer struct {
	t       *testing.T
	args    []string
	proc    *fileProc
	starts  int
	api     string // agent API base URL (NodeCommURL)
	admin   string // admin API base URL
	port    int    // multicast port
	ifname  string
	dataDir string
}

func newLoopbackServer(t *testing.T, extra ...string) *loopbackServer {
	t.Helper()
	s := &loopbackServer{t: t, port: freeUDPPort(t), ifname: testenv.Loopback(t), dataDir: t.TempDir()}
	listen := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	admin := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	s.api = "http://" + listen + "/vigil"
	s.admin = "http://" + admin
	s.args = append([]string{"server",
		"-data-dir", s.dataDir, "-listen", listen, "-admin-listen", admin,
		"-group", testGroup, "-port", strconv.Itoa(s.port), "-interface", s.ifname, "-ttl", "0",
		"-beacon-interval", "500ms", "-spread", "200ms", "-checkin-interval", "5s",
	}, extra...)
	s.start()
	return s
}

func (s *loopbackServer) start() {
	s.t.Helper()
	s.starts++
	s.proc = startLocal(s.t, "server"+strconv.Itoa(s.starts), s.args...)
	s.proc.WaitLog(s.t, "server listening", 30*time.Second)
}

func (s *loopbackServer) fleet(t *testing.T) *fleet {
	return &fleet{t: t, admin: localPlace(), adminURL: s.admin, dataDir: s.dataDir, startedAt: time.Now()}
}

// addAgent adds an agent on lo to f.
func (s *loopbackServer) addAgent(f *fleet, name string, groups ...string) *member {
	return f.addMember(name, localPlace(), s.api, testGroup, s.port, s.ifname, groups...)
}

// adminClient is an admin API client for checks the CLI does not offer.
func (s *loopbackServer) adminClient(t *testing.T) *api.AdminClient {
	tok, err := server.DataDir{Path: s.dataDir}.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	return &api.AdminClient{Client: api.Client{Base: s.admin, Auth: tok, HTTP: &http.Client{Timeout: 10 * time.Second}}}
}

// TestLoopbackKill runs a server and three agents as processes on this host
// and issues a steady stream of commands while first an agent and then the
// server are SIGKILLed and restarted. Every agent must start every command
// targeted at it exactly once and no other, and report each result.
func TestLoopbackKill(t *testing.T) {
	srv := newLoopbackServer(t)
	f := srv.fleet(t)
	srv.addAgent(f, "lb-a0", "g1")
	srv.addAgent(f, "lb-a1", "g1", "g2")
	srv.addAgent(f, "lb-a2", "g2")
	for _, m := range f.members {
		f.startAgent(m)
	}
	f.learnIDs()
	f.logf("server and 3 agents running; multicast %s:%d on %s", testGroup, srv.port, srv.ifname)

	const total = 30
	const pace = 100 * time.Millisecond
	victim := f.members[1]
	var downFrom, downTo uint64 // commands issued while the victim was down
	for i := range total {
		f.sendPlanned(i)
		time.Sleep(pace)
		switch i {
		case 7:
			f.killAgent(victim)
			downFrom = f.lastSeq() + 1
		case 13:
			downTo = f.lastSeq()
			f.startAgent(victim)
			f.logf("restarted agent %s", victim.name)
		case 19:
			srv.proc.Kill()
			f.logf("SIGKILLed the server after command %d", f.lastSeq())
			time.Sleep(300 * time.Millisecond)
			srv.start()
			f.logf("restarted the server on the same data directory and addresses")
		}
	}
	f.logf("issued %d commands (%d to %d)", len(f.cmds), f.cmds[0].Seq, f.lastSeq())

	f.waitResults(60 * time.Second)

	// The server's log of commands is exactly what the test issued.
	info, err := srv.adminClient(t).ServerInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.LatestSeq != f.lastSeq() {
		t.Errorf("server's latest sequence is %d, the test issued up to %d", info.LatestSeq, f.lastSeq())
	}

	f.stopAgents()
	f.checkJournals()

	// The restarted agent fetched what it missed while down over HTTP.
	missed := 0
	for _, c := range f.cmds {
		if c.Seq >= downFrom && c.Seq <= downTo && victim.targets(c) {
			missed++
		}
	}
	if n := countLines(victim.proc.Log(), "via=http"); n < missed {
		t.Errorf("restarted agent %s logged %d commands executed via HTTP, want at least the %d it missed", victim.name, n, missed)
	} else {
		f.logf("restarted agent %s executed %d commands via HTTP (%d missed while down)", victim.name, n, missed)
	}

	checkResumed(t, f, info.Epoch)
}

// checkResumed checks that restarts resumed rather than started over: every
// agent enrolled once (one journal baseline) with the server's epoch.
func checkResumed(t *testing.T, f *fleet, epoch uint64) {
	t.Helper()
	for _, m := range f.members {
		b, err := os.ReadFile(filepath.Join(m.state, agent.FileJournalName))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "B ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("agent %s: %d journal baselines (enrollments), want 1", m.name, n)
		}
		b, err = os.ReadFile(filepath.Join(m.state, agent.FileIdentityName))
		if err != nil {
			t.Fatal(err)
		}
		var id agent.Identity
		if err := json.Unmarshal(b, &id); err != nil {
			t.Fatal(err)
		}
		if id.AgentID != m.id || (epoch != 0 && id.Epoch != epoch) {
			t.Errorf("agent %s: identity %s epoch %d, want %s epoch %d", m.name, id.AgentID, id.Epoch, m.id, epoch)
		}
	}
}
