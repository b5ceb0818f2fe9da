//go:build linux

package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/netlab"
)

// TestNetnsMultiHost runs the server and three agents on four hosts of a
// network-namespace lab, multicasting with TTL 1 across the lab's bridge:
//
//	(a) on a clean network every agent executes every command targeted at
//	    it once, all received by multicast;
//	(b) with 30% of multicast datagrams dropped by nftables in every agent's
//	    namespace, every agent still executes every command once, fetching
//	    what it missed over HTTP (its via_http counter shows it);
//	(c) with the loss still on, an agent and then the server are SIGKILLed
//	    mid-stream and restarted: still exactly once for everyone.
//
// Admin commands run inside the server's namespace against its admin API on
// 127.0.0.1 there; the test process sends nothing itself.
func TestNetnsMultiHost(t *testing.T) {
	t.Parallel()
	netlab.RequireNft(t)
	lab := netlab.New(t)
	srvHost := lab.AddHost("server")
	hosts := []*netlab.Host{lab.AddHost("agent1"), lab.AddHost("agent2"), lab.AddHost("agent3")}

	const (
		group     = "239.255.81.92"
		port      = 8192
		apiPort   = 8080
		adminAddr = "127.0.0.1:8081"
	)
	dataDir := t.TempDir()
	srvArgs := []string{"server",
		"-data-dir", dataDir, "-listen", srvHost.IP4.String() + ":" + strconv.Itoa(apiPort), "-admin-listen", adminAddr,
		"-group", group, "-port", strconv.Itoa(port), "-interface", srvHost.Ifname, "-ttl", "1",
		// One datagram per command, so that loss is loss.
		"-repeat", "1",
		"-beacon-interval", "500ms", "-spread", "200ms", "-checkin-interval", "5s",
	}
	srvPlace := hostPlace(srvHost)
	startServer := func() process {
		p := srvPlace.start(t, "server", srvArgs...)
		p.WaitLog(t, "server listening", 30*time.Second)
		return p
	}
	srv := startServer()

	f := &fleet{t: t, admin: srvPlace, adminURL: "http://" + adminAddr, dataDir: dataDir, startedAt: time.Now()}
	nodeComm := "http://" + srvHost.IP4.String() + ":" + strconv.Itoa(apiPort) + "/vigil"
	groups := [][]string{{"g1"}, {"g1", "g2"}, {"g2"}}
	for i, h := range hosts {
		f.addMember(h.Name, hostPlace(h), nodeComm, group, port, h.Ifname, groups[i]...)
	}
	for _, m := range f.members {
		f.startAgent(m)
	}
	f.learnIDs()
	f.logf("lab %s: server %s, agents %s %s %s", lab.ID(), srvHost.IP4, hosts[0].IP4, hosts[1].IP4, hosts[2].IP4)

	// expectExecuted is how many commands each agent process has executed
	// once it has them all (no agent restarts before phase c).
	expectExecuted := func(m *member) uint64 {
		n := uint64(0)
		for _, c := range f.cmds {
			if m.targets(c) {
				n++
			}
		}
		return n
	}
	// settle ends a phase: a "checkin" to all makes every agent report its
	// counters; wait for every result and for those counters.
	settle := func() map[string]map[string]uint64 {
		f.send(command.Target{All: true}, "checkin")
		f.waitResults(60 * time.Second)
		return f.waitCounters(30*time.Second, func(m *member, c map[string]uint64) bool {
			return c[agent.CountExecuted] == expectExecuted(m)
		})
	}

	// (a) Clean network.
	for i := range 12 {
		f.sendPlanned(i)
		time.Sleep(80 * time.Millisecond)
	}
	counters := settle()
	for _, m := range f.members {
		if n := counters[m.name][agent.CountViaHTTP]; n != 0 {
			t.Errorf("phase a (no loss): agent %s fetched %d commands over HTTP, want all by multicast; counters %v", m.name, n, counters[m.name])
		}
	}
	f.logf("phase a: %d commands, every agent got every one by multicast: %v", len(f.cmds), counters)

	// (b) 30% multicast loss in every agent's namespace.
	for _, h := range hosts {
		h.DropMulticast(t, port, 30)
	}
	startB := len(f.cmds)
	for i := range 30 {
		f.sendPlanned(i)
		time.Sleep(80 * time.Millisecond)
	}
	counters = settle()
	total := uint64(0)
	for _, m := range f.members {
		n := counters[m.name][agent.CountViaHTTP]
		total += n
		if n == 0 {
			t.Errorf("phase b (30%% loss): agent %s fetched nothing over HTTP; counters %v", m.name, counters[m.name])
		}
	}
	f.logf("phase b: %d commands with 30%% loss; %d fetched over HTTP in all (of %d command deliveries): %v",
		len(f.cmds)-startB, total, 3*(len(f.cmds)-startB), counters)

	// (c) Loss on; SIGKILL an agent, then the server, mid-stream.
	victim := f.members[2]
	for i := range 20 {
		f.sendPlanned(i)
		time.Sleep(80 * time.Millisecond)
		switch i {
		case 3:
			f.killAgent(victim)
		case 8:
			f.startAgent(victim)
			f.logf("restarted agent %s", victim.name)
		case 12:
			srv.Kill()
			f.logf("SIGKILLed the server after command %d", f.lastSeq())
			time.Sleep(300 * time.Millisecond)
			srv = startServer()
			f.logf("restarted the server")
		}
	}
	f.send(command.Target{All: true}, "ping")
	f.waitResults(60 * time.Second)
	f.stopAgents()
	f.checkJournals()
	checkResumed(t, f, 0)
}
