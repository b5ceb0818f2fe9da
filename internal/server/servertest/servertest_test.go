package servertest_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// A started server beacons on the loopback interface with its key,
// enrolls an agent over URL with its secret, lists it to the admin
// client, and stops listening once closed.
func TestStart(t *testing.T) {
	t.Parallel()
	port := servertest.RandomPort()
	group := server.DefaultConfig().Group
	rcv, err := mcast.NewReceiver(mcast.Config{Group: group, Port: port, Interface: testenv.Loopback(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	// Interface and TTL given here are overridden: loopback, TTL 0.
	ts := servertest.Start(t, server.Config{Server: config.Server{
		Port:           port,
		Interface:      "eth0",
		TTL:            5,
		BeaconInterval: 50 * time.Millisecond,
	},
	})
	if ts.Config.Interface != testenv.Loopback(t) || ts.Config.TTL != 0 {
		t.Errorf("multicast on %q with TTL %d, want the loopback interface with TTL 0", ts.Config.Interface, ts.Config.TTL)
	}
	if !strings.HasPrefix(ts.URL, "http://127.0.0.1:") || !strings.HasSuffix(ts.URL, "/vigil") || !strings.HasPrefix(ts.AdminURL, "http://127.0.0.1:") {
		t.Errorf("URL %q, AdminURL %q", ts.URL, ts.AdminURL)
	}

	// The server's first datagrams may be of other kinds; a beacon comes
	// every BeaconInterval.
	timer := time.AfterFunc(10*time.Second, func() { rcv.Close() })
	defer timer.Stop()
	buf := make([]byte, 2048)
	for {
		n, _, err := rcv.Receive(buf)
		if err != nil {
			t.Fatalf("no beacon on the loopback interface: %v", err)
		}
		env, err := wire.Verify(buf[:n], ts.PublicKey(), time.Now())
		if err != nil {
			t.Fatalf("datagram not signed with the server's key: %v", err)
		}
		if env.Kind == wire.KindBeacon {
			break
		}
	}

	p := ts.AgentPrefs("/nonexistent")
	if p.NodeCommURL != ts.URL || p.MulticastPort != port || p.MulticastInterface != ts.Config.Interface ||
		p.MulticastAddress != group.String() || p.EnrollmentSecret != ts.EnrollSecret() || string(p.ServerKey()) != string(ts.PublicKey()) {
		t.Errorf("AgentPrefs = %+v", p)
	}

	ctx := context.Background()
	var enr api.EnrollResponse
	if err := ts.AgentClient("").Call(ctx, api.RouteEnroll, nil, api.EnrollRequest{
		Secret: ts.EnrollSecret(), Nonce: strings.Repeat("5a", 16), Hostname: "st1", OS: "linux", Arch: "amd64", Version: "test",
	}, &enr); err != nil {
		t.Fatal(err)
	}
	agents, err := ts.Admin().Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].ID != enr.AgentID || agents[0].Hostname != "st1" {
		t.Errorf("agents = %+v, want the one enrolled (%s)", agents, enr.AgentID)
	}

	ts.Close()
	ts.Close()
	for _, addr := range []string{ts.AgentAddr, ts.AdminAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}
