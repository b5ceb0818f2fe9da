package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// maxSubnets is the most subnets a lab holds: the main one and one per
// letter a-z, the letter naming the subnet's namespaces.
const maxSubnets = 27

// Subnet is one broadcast domain of a lab: a bridge in a switch namespace
// of its own, an IPv4 /24 in 10.77.X.0/24 and a ULA /64 in fd77:X::/64 (X
// distinct among the lab's subnets), and the hosts and router interfaces
// attached to the bridge. Multicast sent on a subnet stays on it: the
// lab's routers forward unicast only.
type Subnet struct {
	// Name is the name given to AddSubnet ("main" for the lab's main
	// subnet).
	Name string

	lab      *Lab
	letter   string // "" for the main subnet, else a-z: names its namespaces
	switchNS string
	net4     netip.Prefix
	net6     netip.Prefix

	// Guarded by lab.mu.
	next     int   // last octet given out
	ports    []int // bridge ports (p<octet>) attached
	hosts    []*Host
	snoop    bool
	router   *Host
	gw4, gw6 netip.Addr // the router's addresses on this subnet
}

// AddSubnet creates a further subnet of the lab, with its own switch
// namespace and bridge (multicast snooping off), and fails the lab's test
// if it cannot. Subnet names must be unique within the lab; a lab holds at
// most 27 subnets, the main one included. Join subnets with AddRouter.
func (l *Lab) AddSubnet(name string) *Subnet {
	l.t.Helper()
	s, err := l.addSubnet(name)
	if err != nil {
		l.t.Fatalf("netlab: adding subnet %q: %v", name, err)
	}
	return s
}

// Subnets returns the lab's subnets, the main one first.
func (l *Lab) Subnets() []*Subnet {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.subnets)
}

func (l *Lab) addSubnet(name string) (*Subnet, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab already torn down")
	}
	if name == "" {
		l.mu.Unlock()
		return nil, errors.New("empty subnet name")
	}
	used := map[int]bool{}
	for _, o := range l.subnets {
		if o.Name == name {
			l.mu.Unlock()
			return nil, errors.New("duplicate subnet name")
		}
		used[int(o.net4.Addr().As4()[2])] = true
	}
	k := len(l.subnets)
	if k >= maxSubnets {
		l.mu.Unlock()
		return nil, fmt.Errorf("a lab holds at most %d subnets", maxSubnets)
	}
	x := 1 + rand.IntN(254)
	for used[x] {
		x = 1 + rand.IntN(254)
	}
	s := &Subnet{
		Name: name,
		lab:  l,
		net4: netip.MustParsePrefix(fmt.Sprintf("10.77.%d.0/24", x)),
		net6: netip.MustParsePrefix(fmt.Sprintf("fd77:%d::/64", x)),
	}
	if k == 0 {
		s.switchNS = l.id + "_sw"
	} else {
		s.letter = string(rune('a' + k - 1))
		s.switchNS = l.id + "_s" + s.letter
	}
	l.subnets = append(l.subnets, s)
	l.mu.Unlock()

	if err := l.addNS(s.switchNS); err != nil {
		return nil, err
	}
	// No addresses and no IPv6 link-local addresses in the switch: it only
	// forwards frames and never speaks itself.
	batch := strings.Join([]string{
		"link set lo up",
		"link add " + bridgeName + " type bridge mcast_snooping 0",
		"link set " + bridgeName + " addrgenmode none",
		"link set " + bridgeName + " up",
	}, "\n") + "\n"
	if err := ipIn(s.switchNS, batch, "-b", "-"); err != nil {
		return nil, fmt.Errorf("setting up switch %s: %w", s.switchNS, err)
	}
	return s, nil
}

// Lab returns the lab the subnet belongs to.
func (s *Subnet) Lab() *Lab { return s.lab }

// SwitchNS is the name of the namespace holding the subnet's bridge.
func (s *Subnet) SwitchNS() string { return s.switchNS }

// Prefix4 is the subnet's IPv4 prefix.
func (s *Subnet) Prefix4() netip.Prefix { return s.net4 }

// Prefix6 is the subnet's IPv6 unique local prefix.
func (s *Subnet) Prefix6() netip.Prefix { return s.net6 }

// String returns the subnet's name and IPv4 prefix.
func (s *Subnet) String() string { return s.Name + "(" + s.net4.String() + ")" }

// Hosts returns the hosts added to the subnet (routers left out), in the
// order they were added.
func (s *Subnet) Hosts() []*Host {
	s.lab.mu.Lock()
	defer s.lab.mu.Unlock()
	return slices.Clone(s.hosts)
}

// Router returns the router the subnet is joined to, nil if none.
func (s *Subnet) Router() *Host {
	s.lab.mu.Lock()
	defer s.lab.mu.Unlock()
	return s.router
}

// AddHost creates a host namespace attached to the subnet's bridge and
// fails the lab's test if it cannot; as Lab.AddHost. Once the subnet is
// joined to a router the host's default routes (IPv4 and IPv6) go through
// it, whether the host was added before or after the router.
func (s *Subnet) AddHost(name string) *Host {
	s.lab.t.Helper()
	h, err := s.addHost(name)
	if err != nil {
		s.lab.t.Fatalf("netlab: adding host %q to subnet %s: %v", name, s.Name, err)
	}
	return h
}

// hostRole is the last part of the namespace name of the subnet's host
// with address octet idx: the octet in decimal on the main subnet (as labs
// always named hosts), the subnet's letter and the octet in base 36 on the
// others, so that names stay within 15 characters.
func (s *Subnet) hostRole(idx int) string {
	if s.letter == "" {
		return strconv.Itoa(idx)
	}
	return s.letter + strconv.FormatInt(int64(idx), 36)
}

// addrs returns the addresses of octet idx on the subnet.
func (s *Subnet) addrs(idx int) (ip4, ip6, ll6 netip.Addr) {
	b4 := s.net4.Addr().As4()
	b4[3] = byte(idx)
	b6 := s.net6.Addr().As16()
	b6[15] = byte(idx)
	return netip.AddrFrom4(b4), netip.AddrFrom16(b6), netip.MustParseAddr("fe80::" + strconv.FormatInt(int64(idx), 16))
}

// wire attaches namespace ns to the subnet's bridge through a veth pair
// whose switch end is port p<idx> and whose other end is ifname in ns,
// created from inside the switch namespace with its peer placed directly
// into ns, and gives ifname the subnet's addresses of octet idx (IPv6
// without duplicate address detection) and brings it and lo up.
func (s *Subnet) wire(ns, ifname string, idx int) error {
	port := "p" + strconv.Itoa(idx)
	sw := strings.Join([]string{
		"link add " + port + " type veth peer name " + ifname + " netns " + ns,
		"link set " + port + " addrgenmode none",
		"link set " + port + " master " + bridgeName,
		"link set " + port + " up",
	}, "\n") + "\n"
	s.lab.mu.Lock()
	s.ports = append(s.ports, idx)
	if s.snoop {
		sw += "link set " + port + " type bridge_slave mcast_flood off\n"
	}
	s.lab.mu.Unlock()
	if err := ipIn(s.switchNS, sw, "-b", "-"); err != nil {
		return fmt.Errorf("wiring %s to the switch of subnet %s: %w", ns, s.Name, err)
	}
	ip4, ip6, ll6 := s.addrs(idx)
	hc := strings.Join([]string{
		"link set lo up",
		"link set " + ifname + " addrgenmode none",
		"addr add " + ip4.String() + "/24 dev " + ifname,
		"addr add " + ip6.String() + "/64 dev " + ifname + " nodad",
		"addr add " + ll6.String() + "/64 dev " + ifname + " nodad",
		"link set " + ifname + " up",
	}, "\n") + "\n"
	if err := ipIn(ns, hc, "-b", "-"); err != nil {
		return fmt.Errorf("configuring %s on %s: %w", ifname, ns, err)
	}
	return nil
}

// defaultRoutes is the ip batch that routes a host's traffic for other
// subnets through the router at gw4 and gw6. "replace" makes it
// idempotent.
func defaultRoutes(gw4, gw6 netip.Addr) string {
	return "route replace default via " + gw4.String() + "\n" +
		"route replace ::/0 via " + gw6.String() + "\n"
}

// Link is one interface of a router: its name in the router's namespace,
// the subnet it is on and its addresses there.
type Link struct {
	Subnet *Subnet
	Ifname string
	IP4    netip.Addr
	IP6    netip.Addr
	LL6    netip.Addr
}

// Links returns a router's interfaces, one per subnet in the order given
// to AddRouter; for a host, its one interface.
func (h *Host) Links() []Link {
	if h.links != nil {
		return slices.Clone(h.links)
	}
	return []Link{{Subnet: h.Subnet, Ifname: h.Ifname, IP4: h.IP4, IP6: h.IP6, LL6: h.LL6}}
}

// LinkOn returns the host's interface on subnet s, and false if it has
// none there.
func (h *Host) LinkOn(s *Subnet) (Link, bool) {
	for _, k := range h.Links() {
		if k.Subnet == s {
			return k, true
		}
	}
	return Link{}, false
}

// IsRouter reports whether the host was made by AddRouter.
func (h *Host) IsRouter() bool { return h.links != nil }

// AddRouter creates a router joining two or more of the lab's subnets and
// fails the lab's test if it cannot: a namespace with one interface per
// subnet (vgl0, vgl1, ... in the order given), each with the next free
// addresses of its subnet, and IPv4 and IPv6 forwarding on. It does no
// multicast routing (no multicast routing daemon runs, and the kernel
// forwards no multicast without one), so multicast stays on the subnet it
// was sent on while unicast crosses. Every host of the subnets, present
// and future, gets default routes through the router's address on its
// subnet. A subnet joins at most one router. The returned Host's Ifname,
// IP4, IP6 and LL6 are those of its first subnet; Links lists all.
func (l *Lab) AddRouter(name string, subnets ...*Subnet) *Host {
	l.t.Helper()
	h, err := l.addRouter(name, subnets)
	if err != nil {
		l.t.Fatalf("netlab: adding router %q: %v", name, err)
	}
	return h
}

func (l *Lab) addRouter(name string, subnets []*Subnet) (*Host, error) {
	if len(subnets) < 2 {
		return nil, fmt.Errorf("a router joins at least two subnets, got %d", len(subnets))
	}
	l.mu.Lock()
	for i, s := range subnets {
		if s == nil || s.lab != l {
			l.mu.Unlock()
			return nil, errors.New("a subnet of another lab (or nil)")
		}
		if slices.Index(subnets, s) != i {
			l.mu.Unlock()
			return nil, fmt.Errorf("subnet %s given twice", s.Name)
		}
		if s.router != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("subnet %s is already joined to router %s", s.Name, s.router.Name)
		}
		if s.next >= maxHosts {
			l.mu.Unlock()
			return nil, fmt.Errorf("subnet %s is full", s.Name)
		}
	}
	if l.routers >= 35 {
		l.mu.Unlock()
		return nil, errors.New("a lab holds at most 35 routers")
	}
	h := &Host{Name: name, lab: l}
	if err := l.reserve(h); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	l.routers++
	h.NS = l.id + "_r" + strconv.FormatInt(int64(l.routers), 36)
	idx := make([]int, len(subnets))
	for i, s := range subnets {
		s.next++
		idx[i] = s.next
		s.router = h
	}
	l.mu.Unlock()

	if err := l.addNS(h.NS); err != nil {
		return nil, err
	}
	for i, s := range subnets {
		ifname := "vgl" + strconv.Itoa(i)
		if err := s.wire(h.NS, ifname, idx[i]); err != nil {
			return nil, err
		}
		ip4, ip6, ll6 := s.addrs(idx[i])
		h.links = append(h.links, Link{Subnet: s, Ifname: ifname, IP4: ip4, IP6: ip6, LL6: ll6})
	}
	first := h.links[0]
	h.Subnet, h.Ifname, h.IP4, h.IP6, h.LL6, h.index = first.Subnet, first.Ifname, first.IP4, first.IP6, first.LL6, idx[0]
	// Forwarding is a sysctl of the namespace: written from inside it.
	if _, err := execIn(h.NS, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"); err != nil {
		return nil, fmt.Errorf("turning forwarding on in %s: %w", h.NS, err)
	}
	for _, k := range h.links {
		s := k.Subnet
		l.mu.Lock()
		s.gw4, s.gw6 = k.IP4, k.IP6
		hosts := slices.Clone(s.hosts)
		l.mu.Unlock()
		for _, o := range hosts {
			if err := ipIn(o.NS, defaultRoutes(k.IP4, k.IP6), "-b", "-"); err != nil {
				return nil, fmt.Errorf("routing %s through %s: %w", o, h.Name, err)
			}
		}
	}
	return h, nil
}

// execIn runs prog inside lab namespace ns (never the root namespace) and
// returns its standard output.
func execIn(ns, prog string, args ...string) (string, error) {
	if !nsPattern.MatchString(ns) {
		return "", fmt.Errorf("netlab: refusing to run %s in namespace %q: not a lab namespace", prog, ns)
	}
	return runOut("", "ip", append([]string{"netns", "exec", ns, prog}, args...)...)
}
