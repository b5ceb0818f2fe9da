// Package netlab builds small virtual networks out of Linux network
// namespaces so that tests can run Vigil's server and agents as separate
// "hosts" on one machine and exercise real IPv4/IPv6 unicast and multicast.
//
// A Lab owns a "switch" namespace holding a bridge (br0) with multicast
// snooping disabled, so multicast frames flood to every port (SnoopMulticast
// makes it a snooping switch with a querier instead). Each Host is a
// further namespace with one interface (vgl0) that is one end of a veth pair;
// the other end lives in the switch namespace and is a port of the bridge.
// Veth pairs are created from inside the switch namespace with their peer
// placed directly into the host namespace, so nothing is ever created in,
// moved into or changed in the root namespace: traffic inside a lab cannot
// leave it. Every host gets lo up, an IPv4 address in 10.77.X.0/24, a ULA
// address in fd77:X::/64 and a fixed link-local address (both IPv6 addresses
// without duplicate address detection, so they are usable at once), and a
// 224.0.0.0/4 route on vgl0 for IPv4 multicast.
//
// That bridge is the lab's main subnet. Lab.AddSubnet adds further subnets,
// each a switch namespace and bridge of its own with its own 10.77.X.0/24
// and fd77:X::/64, and Lab.AddRouter joins subnets with a router: a
// namespace with one veth per subnet (vgl0, vgl1, ...), each wired to its
// subnet's bridge as hosts are, with IPv4 and IPv6 forwarding on and no
// multicast routing, so unicast crosses it and multicast stays on the
// subnet it was sent on. Hosts of a joined subnet get default routes
// through the router.
//
// Namespaces are named vgl<pid>_<rand>_<role> (role "sw" for the main
// subnet's switch, the host's number, which is also the last octet of its
// IPv4 address, for a host on it; "s" and the subnet's letter a-z for
// another subnet's switch, the letter and the octet in base 36 for a host
// on it; "r" and the router's number for a router), at most 15 characters, so labs of test binaries running in parallel
// never collide. Each lab holds an flock on a file under
// /run/vigil-netlab for its lifetime; New removes namespaces (and kills any
// processes left in them) of labs whose lock is no longer held, i.e. labs of
// test processes that crashed before their cleanup ran. Every other entry of
// /run/netns — another program's namespace, or a plain file — is left alone,
// and ip's complaints about such entries on its standard error are never
// taken for its output.
//
// Never address a lab host from the root namespace: the root namespace has no
// route into a lab, so a packet sent there would follow its default route and
// leave the machine. Run every client and server inside a host, with
// Host.Command, Host.Run or Host.Start.
//
// Labs need root, iproute2's ip and, for Host.Nft and Host.DropMulticast,
// nftables' nft. Use Require (or RequireNft) at the top of a test to skip
// (or, with VIGIL_REQUIRE_NETNS=1, fail) where labs cannot be created.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

const (
	// namePrefix starts the name of every namespace a lab creates.
	namePrefix = "vgl"
	// bridgeName is the bridge inside a lab's switch namespace.
	bridgeName = "br0"
	// hostIfname is the name of a host's interface inside its namespace.
	hostIfname = "vgl0"
	// maxHosts is the number of host addresses in a lab's /24.
	maxHosts = 254
	// ipTimeout bounds a single ip invocation made by the lab itself.
	ipTimeout = 30 * time.Second
)

// nsPattern matches the namespaces labs create; the first group is the lab ID.
var nsPattern = regexp.MustCompile(`^(` + namePrefix + `[0-9a-z]+_[0-9a-z]+)_[0-9a-z]+$`)

// lockDir holds one lock file per live lab.
func lockDir() string {
	if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
		return "/run/vigil-netlab"
	}
	return filepath.Join(os.TempDir(), "vigil-netlab")
}

var availableOnce = sync.OnceValue(probe)

// Available reports whether labs can be created here: Linux, root, iproute2's
// ip present, and a namespace with a bridge and a veth pair creatable. When
// they cannot, the string says why. The probe runs once per process.
func Available() (bool, string) {
	err := availableOnce()
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

func probe() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("network namespaces need Linux, not %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root (euid is " + strconv.Itoa(os.Geteuid()) + ")")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("iproute2's ip not found in PATH (apt-get install iproute2)")
	}
	id, lock, err := newLabID()
	if err != nil {
		return fmt.Errorf("cannot create lab lock: %w", err)
	}
	defer releaseLock(lock)
	ns := id + "_p"
	if err := netnsOp("add", ns); err != nil {
		return fmt.Errorf("cannot create a network namespace: %w", err)
	}
	// Best effort: a leftover is removed as stale by a later New.
	defer func() { _ = netnsOp("delete", ns) }()
	if err := ipIn(ns, "", "link", "add", bridgeName, "type", "bridge"); err != nil {
		return fmt.Errorf("cannot create a bridge in a namespace: %w", err)
	}
	if err := ipIn(ns, "", "link", "add", "p0", "type", "veth", "peer", "name", "p1"); err != nil {
		return fmt.Errorf("cannot create a veth pair in a namespace: %w", err)
	}
	return nil
}

// Require skips the test when labs are unavailable, giving the reason. When
// the environment variable VIGIL_REQUIRE_NETNS is 1 it fails the test instead,
// so CI that is meant to run lab tests cannot silently skip them.
func Require(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		testenv.SkipOrFail(t, testenv.RequireNetns, "netlab unavailable: "+why)
	}
}

// RequireNft is Require for tests that also need nftables' nft, for Host.Nft
// and Host.DropMulticast: it skips (or, with VIGIL_REQUIRE_NETNS=1, fails)
// the test when labs are unavailable or nft is missing.
func RequireNft(t testing.TB) {
	t.Helper()
	Require(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, testenv.RequireNetns, "netlab: nftables' nft not found in PATH (apt-get install nftables)")
	}
}

// Lab is a set of host namespaces on one or more subnets. New makes the
// lab's main subnet (its bridge in the switch namespace SwitchNS);
// AddSubnet adds others, and AddRouter joins subnets.
type Lab struct {
	t    testing.TB
	id   string
	main *Subnet

	mu      sync.Mutex
	subnets []*Subnet
	hosts   []*Host  // every host and router, in the order added
	spaces  []string // namespaces created, in creation order
	routers int      // routers added
	lock    *os.File
	closed  bool
}

// Host is one namespace of a lab.
type Host struct {
	// Name is the name given to AddHost.
	Name string
	// NS is the network namespace's name (as in `ip netns list`).
	NS string
	// IP4 is the host's address in its subnet's 10.77.X.0/24.
	IP4 netip.Addr
	// IP6 is the host's unique local address in its subnet's fd77:X::/64.
	IP6 netip.Addr
	// LL6 is the host's IPv6 link-local address on Ifname.
	LL6 netip.Addr
	// Ifname is the name of the host's interface inside its namespace.
	Ifname string
	// Subnet is the subnet Ifname is on (for a router: the first of its
	// subnets; see Link for the others).
	Subnet *Subnet
	// Env, when not nil, is the environment of the programs the host's
	// Command, CommandContext, Start and Run run (nil: the test
	// process's). Namespaces do not separate files: set it, for example,
	// to give each lab its own directories where programs would otherwise
	// share the machine's.
	Env []string

	lab   *Lab
	index int    // last octet of IP4
	links []Link // a router's interfaces, one per subnet; nil for a host
}

// New creates a lab: a switch namespace with a bridge whose multicast
// snooping is off, the lab's main subnet. The lab is torn down with
// t.Cleanup: processes left in its namespaces are killed and the namespaces
// deleted. Namespaces of crashed earlier labs are removed first. New fails
// the test if the lab cannot be built; call Require first to skip where labs
// are unavailable.
func New(t testing.TB) *Lab {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Fatalf("netlab: unavailable: %s", why)
	}
	if err := cleanStale(); err != nil {
		t.Logf("netlab: removing stale labs: %v", err)
	}
	id, lock, err := newLabID()
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	l := &Lab{t: t, id: id, lock: lock}
	t.Cleanup(l.close)
	s, err := l.addSubnet("main")
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	l.main = s
	return l
}

// ID is the lab's unique name, the prefix of all of its namespaces.
func (l *Lab) ID() string { return l.id }

// SwitchNS is the name of the namespace holding the main subnet's bridge.
func (l *Lab) SwitchNS() string { return l.main.switchNS }

// Bridge is the name of the bridge inside every switch namespace.
func (l *Lab) Bridge() string { return bridgeName }

// Prefix4 is the main subnet's IPv4 prefix.
func (l *Lab) Prefix4() netip.Prefix { return l.main.net4 }

// Prefix6 is the main subnet's IPv6 unique local prefix.
func (l *Lab) Prefix6() netip.Prefix { return l.main.net6 }

// Main is the lab's main subnet, the one New made and AddHost adds to.
func (l *Lab) Main() *Subnet { return l.main }

// Hosts returns the lab's hosts, routers included, on every subnet, in the
// order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// AddHost creates a host namespace attached to the main subnet's bridge and
// fails the lab's test if it cannot. Host names must be unique within the
// lab. Like New, it must be called from the goroutine running the lab's
// test.
func (l *Lab) AddHost(name string) *Host {
	l.t.Helper()
	h, err := l.main.addHost(name)
	if err != nil {
		l.t.Fatalf("netlab: adding host %q: %v", name, err)
	}
	return h
}

// SnoopMulticast makes the main subnet's switch snoop IGMP and MLD; see
// Subnet.SnoopMulticast.
func (l *Lab) SnoopMulticast(t testing.TB) {
	t.Helper()
	l.main.SnoopMulticast(t)
}

// reserve checks that the lab is up and name is free among its hosts, and
// records h as the lab's. The caller holds l.mu.
func (l *Lab) reserve(h *Host) error {
	if l.closed {
		return errors.New("lab already torn down")
	}
	if h.Name == "" {
		return errors.New("empty host name")
	}
	for _, o := range l.hosts {
		if o.Name == h.Name {
			return errors.New("duplicate host name")
		}
	}
	l.hosts = append(l.hosts, h)
	return nil
}

// addHost creates a host on s.
func (s *Subnet) addHost(name string) (*Host, error) {
	l := s.lab
	l.mu.Lock()
	if s.next >= maxHosts {
		l.mu.Unlock()
		return nil, fmt.Errorf("a subnet holds at most %d hosts", maxHosts)
	}
	h := &Host{Name: name, Ifname: hostIfname, Subnet: s, lab: l}
	if err := l.reserve(h); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	// Reserve the address so concurrent AddHost calls get distinct ones.
	s.next++
	idx := s.next
	h.index = idx
	h.IP4, h.IP6, h.LL6 = s.addrs(idx)
	h.NS = l.id + "_" + s.hostRole(idx)
	s.hosts = append(s.hosts, h)
	l.mu.Unlock()

	if err := l.addNS(h.NS); err != nil {
		return nil, err
	}
	if err := s.wire(h.NS, hostIfname, idx); err != nil {
		return nil, err
	}
	hc := "route add 224.0.0.0/4 dev " + hostIfname + "\n"
	l.mu.Lock()
	gw4, gw6 := s.gw4, s.gw6
	l.mu.Unlock()
	if gw4.IsValid() {
		hc += defaultRoutes(gw4, gw6)
	}
	if err := ipIn(h.NS, hc, "-b", "-"); err != nil {
		return nil, fmt.Errorf("configuring %s: %w", h.NS, err)
	}
	return h, nil
}

// SnoopMulticast makes the subnet's bridge a switch that snoops IGMP and
// MLD and is the subnet's querier: multicast for a group is forwarded only
// to the ports of hosts that reported membership of it, for the hosts
// present and those added later, so a host whose membership reports — or
// the queries that prompt them — are blocked stops receiving the group.
// The timers are short so that tests see this quickly: a query every
// second, answered within half a second, and a membership forgotten 3
// seconds after its last report. The querier takes charge about ten
// seconds after the call; until then no multicast is forwarded to hosts.
func (s *Subnet) SnoopMulticast(t testing.TB) {
	t.Helper()
	s.lab.mu.Lock()
	s.snoop = true
	ports := slices.Clone(s.ports)
	s.lab.mu.Unlock()
	// Intervals are in hundredths of a second.
	batch := "link set " + bridgeName + " type bridge mcast_snooping 1 mcast_querier 1" +
		" mcast_query_interval 100 mcast_query_response_interval 50 mcast_membership_interval 300" +
		" mcast_startup_query_interval 50\n"
	for _, p := range ports {
		batch += "link set p" + strconv.Itoa(p) + " type bridge_slave mcast_flood off\n"
	}
	if err := ipIn(s.switchNS, batch, "-b", "-"); err != nil {
		t.Fatalf("netlab: enabling multicast snooping on subnet %s: %v", s.Name, err)
	}
}

// MembershipTimeout is how long a lab switch made by SnoopMulticast keeps
// a group membership after the host's last report.
const MembershipTimeout = 3 * time.Second

// addNS creates a namespace and records it for teardown.
func (l *Lab) addNS(ns string) error {
	l.mu.Lock()
	l.spaces = append(l.spaces, ns)
	l.mu.Unlock()
	return netnsOp("add", ns)
}

// close kills what is left in the lab's namespaces and deletes them, hosts
// first and the switch last.
func (l *Lab) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	spaces := append([]string(nil), l.spaces...)
	l.mu.Unlock()

	var errs []error
	for i := len(spaces) - 1; i >= 0; i-- {
		if err := destroyNS(spaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	releaseLock(l.lock)
	if err := errors.Join(errs...); err != nil {
		l.t.Errorf("netlab: tearing down lab %s: %v", l.id, err)
	}
}

// destroyNS kills every process in the namespace and deletes it. A namespace
// that does not exist is not an error.
func destroyNS(ns string) error {
	if !nsExists(ns) {
		return nil
	}
	killNSProcs(ns)
	if err := netnsOp("delete", ns); err != nil && nsExists(ns) {
		return err
	}
	return nil
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

// killNSProcs sends SIGKILL to every process in the namespace, repeating
// briefly in case one was forking while it was being killed.
func killNSProcs(ns string) {
	for range 20 {
		pids := nsPids(ns)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			if pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nsPids lists the processes whose network namespace is ns. Zombies, which
// cannot be killed and hold nothing, are left out.
func nsPids(ns string) []int {
	out, err := runOut("", "ip", "netns", "pids", ns)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if st, err := os.ReadFile("/proc/" + f + "/stat"); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// newLabID picks an unused lab ID and returns it with its lock held.
func newLabID() (string, *os.File, error) {
	dir := lockDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	pid := strconv.FormatInt(int64(os.Getpid()), 36)
	for range 20 {
		id := fmt.Sprintf("%s%s_%s", namePrefix, pid, strconv.FormatInt(int64(rand.IntN(36*36)), 36))
		f, ok, err := tryLock(filepath.Join(dir, id+".lock"))
		if err != nil {
			return "", nil, err
		}
		if ok {
			return id, f, nil
		}
	}
	return "", nil, errors.New("no free lab ID")
}

// tryLock opens (creating) path and takes an exclusive flock without
// blocking. It reports false if another lab holds it, or if the file was
// removed by a stale-lab sweep between open and lock.
func tryLock(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	// The lock counts only if path still names the file we locked.
	fi, err1 := f.Stat()
	pi, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
		f.Close()
		return nil, false, nil
	}
	return f, true, nil
}

// releaseLock removes the lock file and then drops the lock.
func releaseLock(f *os.File) {
	if f == nil {
		return
	}
	_ = os.Remove(f.Name())
	_ = f.Close()
}

// cleanStale removes namespaces, and lock files, of labs whose owner is gone.
func cleanStale() error {
	out, err := runOut("", "ip", "netns", "list")
	if err != nil {
		return err
	}
	byLab := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m := nsPattern.FindStringSubmatch(f[0]); m != nil {
			byLab[m[1]] = append(byLab[m[1]], f[0])
		}
	}
	dir := lockDir()
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if id, ok := strings.CutSuffix(e.Name(), ".lock"); ok {
				if _, seen := byLab[id]; !seen {
					byLab[id] = nil
				}
			}
		}
	}
	var errs []error
	for id, spaces := range byLab {
		if len(spaces) > 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		} else if _, err := os.Stat(filepath.Join(dir, id+".lock")); err != nil {
			continue
		}
		f, ok, err := tryLock(filepath.Join(dir, id+".lock"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue // a live lab
		}
		for _, ns := range spaces {
			if err := destroyNS(ns); err != nil {
				errs = append(errs, err)
			}
		}
		releaseLock(f)
	}
	return errors.Join(errs...)
}

// netnsOp runs `ip netns add|delete NAME` for a lab namespace.
func netnsOp(verb, ns string) error {
	if !nsPattern.MatchString(ns) {
		return fmt.Errorf("netlab: refusing to %s namespace %q: not a lab namespace", verb, ns)
	}
	_, err := runOut("", "ip", "netns", verb, ns)
	return err
}

// ipIn runs `ip -n NS args...` with stdin. NS must be a lab namespace: the
// lab never runs ip against the root namespace.
func ipIn(ns, stdin string, args ...string) error {
	if !nsPattern.MatchString(ns) {
		return fmt.Errorf("netlab: refusing to run ip in namespace %q: not a lab namespace", ns)
	}
	_, err := runOut(stdin, "ip", append([]string{"-n", ns}, args...)...)
	return err
}

// runOut runs a command with a timeout and returns its standard output; the
// error includes both outputs. Standard error is kept out of the result:
// ip complains there about entries of /run/netns that are not namespaces
// ("Peer netns reference is invalid" for a plain file someone else put
// there) while still succeeding, and such lines must not be read as output.
func runOut(stdin, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(string(out) + "\n" + stderr.String())
		return string(out), fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, msg)
	}
	return string(out), nil
}
