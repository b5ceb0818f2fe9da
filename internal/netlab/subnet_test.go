package netlab

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkSubnet checks that subnet s's bridge has one port per attachment
// (its hosts and its router), each peered with that namespace.
func checkSubnet(t *testing.T, s *Subnet, attached []*Host) {
	t.Helper()
	var ports []ipLink
	ipJSON(t, &ports, "-n", s.SwitchNS(), "link", "show", "master", bridgeName)
	if len(ports) != len(attached) {
		t.Errorf("subnet %s: bridge has %d ports, want %d: %+v", s, len(ports), len(attached), ports)
	}
	names := peerNamespaces(t, s.SwitchNS())
	peered := map[string]int{}
	for _, p := range ports {
		peered[peerOf(p, names)]++
	}
	for _, h := range attached {
		if peered[h.NS] != 1 {
			t.Errorf("subnet %s: %d bridge ports peer with %s, want 1", s, peered[h.NS], h)
		}
	}
}

// defaultVia returns the gateways of a host's IPv4 and IPv6 default routes.
func defaultVia(t *testing.T, h *Host) (string, string) {
	t.Helper()
	var r4, r6 []struct {
		Gateway string `json:"gateway"`
	}
	ipJSON(t, &r4, "-n", h.NS, "route", "show", "default")
	ipJSON(t, &r6, "-n", h.NS, "-6", "route", "show", "default")
	var g4, g6 string
	if len(r4) == 1 {
		g4 = r4[0].Gateway
	}
	if len(r6) == 1 {
		g6 = r6[0].Gateway
	}
	return g4, g6
}

// TestRouter builds two subnets joined by a router — one host of the near
// subnet added before the router, the far subnet's hosts after it — and
// checks the wiring and routes, that unicast crosses the router (IPv4 and
// IPv6, its TTL lowered by the hop) and that multicast sent with TTL 8 on
// one subnet reaches that subnet only: the router forwards no multicast.
func TestRouter(t *testing.T) {
	Require(t)
	before := rootState(t)
	vethsBefore := rootVeths(t)
	var id string

	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		id = lab.ID()
		near := lab.Main()
		far := lab.AddSubnet("far")
		a1 := lab.AddHost("a1")
		r := lab.AddRouter("router", near, far)
		a2 := near.AddHost("a2")
		b1, b2 := far.AddHost("b1"), far.AddHost("b2")
		all := []*Host{a1, a2, b1, b2, r}

		if near.Prefix4() == far.Prefix4() || near.Prefix6() == far.Prefix6() {
			t.Fatalf("subnets share a prefix: %v %v", near, far)
		}
		if got := lab.Subnets(); len(got) != 2 || got[0] != near || got[1] != far {
			t.Errorf("Subnets() = %v", got)
		}
		if got := lab.Hosts(); !slices.Equal(got, []*Host{a1, r, a2, b1, b2}) {
			t.Errorf("Hosts() = %v", got)
		}
		if got := far.Hosts(); !slices.Equal(got, []*Host{b1, b2}) {
			t.Errorf("far.Hosts() = %v", got)
		}
		if near.Router() != r || far.Router() != r || !r.IsRouter() || a1.IsRouter() {
			t.Errorf("router not recorded: %v %v", near.Router(), far.Router())
		}
		for _, h := range all {
			if len(h.NS) > 15 || !nsPattern.MatchString(h.NS) {
				t.Errorf("%s: namespace name %q", h, h.NS)
			}
		}
		for _, s := range []*Subnet{near, far} {
			if len(s.SwitchNS()) > 15 || !nsPattern.MatchString(s.SwitchNS()) {
				t.Errorf("%s: switch namespace name %q", s, s.SwitchNS())
			}
		}
		for _, h := range []*Host{a1, a2} {
			if h.Subnet != near || !near.Prefix4().Contains(h.IP4) {
				t.Errorf("%s not on the near subnet: %v %v", h, h.Subnet, h.IP4)
			}
		}
		for _, h := range []*Host{b1, b2} {
			if h.Subnet != far || !far.Prefix4().Contains(h.IP4) || !far.Prefix6().Contains(h.IP6) {
				t.Errorf("%s not on the far subnet: %v %v %v", h, h.Subnet, h.IP4, h.IP6)
			}
		}
		links := r.Links()
		if len(links) != 2 || links[0].Subnet != near || links[1].Subnet != far ||
			links[0].Ifname != "vgl0" || links[1].Ifname != "vgl1" ||
			!near.Prefix4().Contains(links[0].IP4) || !far.Prefix4().Contains(links[1].IP4) {
			t.Fatalf("router links: %+v", links)
		}
		rn, _ := r.LinkOn(near)
		rf, _ := r.LinkOn(far)
		if _, ok := a1.LinkOn(far); ok {
			t.Errorf("a1 claims a link on the far subnet")
		}

		t.Run("topology", func(t *testing.T) {
			checkSubnet(t, near, []*Host{a1, r, a2})
			checkSubnet(t, far, []*Host{r, b1, b2})
			for _, h := range []*Host{a1, a2} {
				if g4, g6 := defaultVia(t, h); g4 != rn.IP4.String() || g6 != rn.IP6.String() {
					t.Errorf("%s: default routes via %q and %q, want the router's %v and %v", h, g4, g6, rn.IP4, rn.IP6)
				}
			}
			for _, h := range []*Host{b1, b2} {
				if g4, g6 := defaultVia(t, h); g4 != rf.IP4.String() || g6 != rf.IP6.String() {
					t.Errorf("%s: default routes via %q and %q, want the router's %v and %v", h, g4, g6, rf.IP4, rf.IP6)
				}
			}
			for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
				if out := strings.TrimSpace(r.Run(t, "cat", f)); out != "1" {
					t.Errorf("router: %s = %q, want 1", f, out)
				}
				if out := strings.TrimSpace(a1.Run(t, "cat", f)); out != "0" {
					t.Errorf("host a1: %s = %q, want 0 (only routers forward)", f, out)
				}
			}
			for _, k := range links {
				var addrs []ipLink
				ipJSON(t, &addrs, "-n", r.NS, "addr", "show", "dev", k.Ifname)
				got := map[string]bool{}
				for _, a := range addrs[0].AddrInfo {
					got[a.Local] = true
				}
				if !got[k.IP4.String()] || !got[k.IP6.String()] || !got[k.LL6.String()] {
					t.Errorf("router %s lacks its addresses %v %v %v: %v", k.Ifname, k.IP4, k.IP6, k.LL6, got)
				}
			}
		})

		t.Run("root-untouched", func(t *testing.T) {
			if got := rootState(t); got != before {
				t.Errorf("root namespace interfaces changed while the lab is up:\nbefore:\n%s\nnow:\n%s", before, got)
			}
			if got := rootVeths(t); got != vethsBefore {
				t.Errorf("root namespace veths changed:\nbefore:\n%s\nnow:\n%s", vethsBefore, got)
			}
		})

		t.Run("unicast-crosses", func(t *testing.T) {
			e4 := startHelper(t, b1, "echo", "udp4", "7007", "60")
			e6 := startHelper(t, a2, "echo", "udp6", "7007", "60")
			e4.WaitLog(t, "ready", 10*time.Second)
			e6.WaitLog(t, "ready", 10*time.Second)
			if out := runHelper(t, a1, "ask", "udp4", b1.IP4.String(), "7007", "5"); !strings.Contains(out, "reply from "+b1.IP4.String()) {
				t.Errorf("a1 -> b1 %s: %s", b1.IP4, out)
			}
			if out := runHelper(t, b2, "ask", "udp6", a2.IP6.String(), "7007", "5"); !strings.Contains(out, "reply from ["+a2.IP6.String()+"]") {
				t.Errorf("b2 -> a2 %s: %s", a2.IP6, out)
			}
		})

		for _, fam := range []struct{ network, group string }{{"udp4", mcastGroup4}, {"udp6", mcastGroup6}} {
			t.Run("multicast-stays-"+fam.network, func(t *testing.T) {
				port := strconv.Itoa(mcastPort)
				la2 := startHelper(t, a2, "listen", fam.network, a2.Ifname, fam.group, port, "60")
				lb1 := startHelper(t, b1, "listen", fam.network, b1.Ifname, fam.group, port, "60")
				lb2 := startHelper(t, b2, "listen", fam.network, b2.Ifname, fam.group, port, "60")
				for _, l := range []*Proc{la2, lb1, lb2} {
					l.WaitLog(t, "ready", 10*time.Second)
				}
				// TTL 8: enough hops to cross the router, were it to
				// route multicast.
				runHelper(t, a1, "sendttl", fam.network, a1.Ifname, fam.group, port, "m", "5", "20", "8")
				if n := waitCount(la2, "m", 5, 5*time.Second); n != 5 {
					t.Fatalf("a2, on the sender's subnet, got %d of 5 datagrams; log:\n%s", n, la2.Log())
				}
				if !strings.Contains(la2.Log(), " ttl 8\n") {
					t.Errorf("a2 did not get the datagrams with TTL 8:\n%s", la2.Log())
				}
				// Unicast to the far hosts, on the same port, does cross,
				// one hop lower: proof that they were listening and that
				// the router routes.
				dst1, dst2 := b1.IP4.String(), b2.IP4.String()
				hop := " ttl 63\n"
				if fam.network == "udp6" {
					dst1, dst2 = b1.IP6.String(), b2.IP6.String()
				}
				runHelper(t, a1, "sendttl", fam.network, a1.Ifname, dst1, port, "u", "3", "20", "8")
				runHelper(t, a1, "sendttl", fam.network, a1.Ifname, dst2, port, "u", "3", "20", "8")
				for _, l := range []*Proc{lb1, lb2} {
					if n := waitCount(l, "u", 3, 5*time.Second); n != 3 {
						t.Errorf("far listener got %d of 3 unicast datagrams; log:\n%s", n, l.Log())
					}
					if !strings.Contains(l.Log(), hop) {
						t.Errorf("far listener's unicast did not arrive one hop down (%q):\n%s", hop, l.Log())
					}
					if n := countGot(l, "m"); n != 0 {
						t.Errorf("far listener got %d multicast datagrams from the other subnet: the router forwards multicast\n%s", n, l.Log())
					}
				}
				// And multicast sent on the far subnet stays there.
				runHelper(t, b1, "sendttl", fam.network, b1.Ifname, fam.group, port, "f", "5", "20", "8")
				if n := waitCount(lb2, "f", 5, 5*time.Second); n != 5 {
					t.Fatalf("b2 got %d of 5 datagrams from b1; log:\n%s", n, lb2.Log())
				}
				time.Sleep(200 * time.Millisecond)
				if n := countGot(la2, "f"); n != 0 {
					t.Errorf("a2 got %d multicast datagrams from the far subnet", n)
				}
			})
		}

		t.Run("errors", func(t *testing.T) {
			third := lab.AddSubnet("third")
			if _, err := lab.addRouter("r2", []*Subnet{far, third}); err == nil || !strings.Contains(err.Error(), "already joined") {
				t.Errorf("a second router on subnet far: %v", err)
			}
			if _, err := lab.addRouter("r3", []*Subnet{third}); err == nil {
				t.Errorf("a router on one subnet was accepted")
			}
			if _, err := lab.addRouter("r4", []*Subnet{third, third}); err == nil {
				t.Errorf("a router on one subnet twice was accepted")
			}
			if _, err := lab.addSubnet("far"); err == nil {
				t.Errorf("a duplicate subnet name was accepted")
			}
			if _, err := third.addHost("a1"); err == nil {
				t.Errorf("a duplicate host name on another subnet was accepted")
			}
		})
	})

	if id == "" {
		t.Fatal("lab was not created")
	}
	if ns := labNamespaces(t, id); len(ns) != 0 {
		t.Errorf("namespaces left after cleanup: %v", ns)
	}
	if _, err := os.Stat(filepath.Join(lockDir(), id+".lock")); !os.IsNotExist(err) {
		t.Errorf("lock file of lab %s left after cleanup (%v)", id, err)
	}
	if got := rootState(t); got != before {
		t.Errorf("root namespace interfaces changed:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if got := rootVeths(t); got != vethsBefore {
		t.Errorf("root namespace veths changed:\nbefore:\n%s\nafter:\n%s", vethsBefore, got)
	}
}
