package agent_test

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/mcast"
)

// TestAgentCountsReceiverDrops: datagrams the multicast receiver drops
// before the agent sees them — sent to the port's unicast address, or too
// large for the agent's buffer — are in the agent's counters, which it
// reports at check-in, and in its metrics.
func TestAgentCountsReceiverDrops(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	p := f.prefs(t, t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.MetricsAddress = ln.Addr().String()
	ln.Close()
	r := startAgent(t, p)
	waitFor(t, "enrollment", func() bool { return r.count("checkin") >= 1 })

	uc, err := net.Dial("udp4", "127.0.0.1:"+strconv.Itoa(p.MulticastPort))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	snd, err := mcast.NewSender(mcast.Config{Group: netip.MustParseAddr(p.MulticastAddress), Port: p.MulticastPort, Interface: p.MulticastInterface, TTL: 0, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	big := make([]byte, 3000)
	const n = 3
	for range n {
		if _, err := uc.Write([]byte("not for a group")); err != nil {
			t.Fatal(err)
		}
		if err := snd.Send(big); err != nil {
			t.Fatal(err)
		}
	}
	c := r.a.Counters()
	waitFor(t, "the receiver's drops counted", func() bool {
		return c.Get(agent.CountUnicast) == n && c.Get(agent.CountTruncated) == n
	})
	if s := c.Snapshot(); s[agent.CountUnicast] != n || s[agent.CountTruncated] != n || s[agent.CountMalformed] != 0 {
		t.Fatalf("snapshot reported at check-in: %v", s)
	}
	resp, err := http.Get("http://" + p.MetricsAddress + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`vigil_agent_datagrams_total{counter="unicast"} 3`,
		`vigil_agent_datagrams_total{counter="truncated"} 3`,
		`vigil_agent_datagrams_total{counter="kernel_dropped"} 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
}
