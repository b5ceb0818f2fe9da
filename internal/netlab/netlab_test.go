package netlab

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	mcastGroup4 = "239.255.81.92"
	mcastGroup6 = "ff15::5647:4c"
	mcastPort   = 8192
)

// ipOut runs ip with args in the root namespace (or, with -n, in a lab's)
// and returns its standard output. Standard error is shown on failure only:
// ip writes complaints about foreign entries of /run/netns there ("Peer netns
// reference is invalid" for a plain file) even when it succeeds.
func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ip %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return string(out)
}

// rootState is what the root namespace's interfaces look like, with address
// lifetimes (which count down for dynamic addresses) left out.
func rootState(t *testing.T) string {
	t.Helper()
	lft := regexp.MustCompile(`\s*(valid|preferred)_lft \S+`)
	var b strings.Builder
	for _, args := range [][]string{{"-o", "link"}, {"-o", "addr"}} {
		b.WriteString(lft.ReplaceAllString(ipOut(t, args...), ""))
	}
	return b.String()
}

// rootVeths lists the veth interfaces of the root namespace.
func rootVeths(t *testing.T) string {
	t.Helper()
	return ipOut(t, "-o", "link", "show", "type", "veth")
}

// labNamespaces lists the namespaces whose name starts with prefix.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	var ns []string
	for _, line := range strings.Split(ipOut(t, "netns", "list"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			ns = append(ns, f[0])
		}
	}
	return ns
}

// ipLink is the part of an interface, as `ip -j -d link` and `ip -j addr`
// show it, that the topology checks read.
type ipLink struct {
	Ifname      string   `json:"ifname"`
	Flags       []string `json:"flags"`
	Master      string   `json:"master"`
	LinkNetnsID *int     `json:"link_netnsid"`
	LinkInfo    struct {
		InfoKind string `json:"info_kind"`
		InfoData struct {
			McastSnooping *int `json:"mcast_snooping"`
		} `json:"info_data"`
	} `json:"linkinfo"`
	AddrInfo []struct {
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
		Tentative bool   `json:"tentative"`
	} `json:"addr_info"`
}

// ipRoute is a route as `ip -j route` shows it, less what the checks ignore.
type ipRoute struct {
	Dst string `json:"dst"`
	Dev string `json:"dev"`
}

// ipJSON runs ip -j with args (standard output only, see ipOut) and
// decodes its output into v.
func ipJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := ipOut(t, append([]string{"-j"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("ip -j %v: %v\n%s", args, err, out)
	}
}

// peerNamespaces maps the namespace ids that ns knows (link_netnsid) to
// the namespaces' names.
func peerNamespaces(t *testing.T, ns string) map[int]string {
	t.Helper()
	var ids []struct {
		NsID int    `json:"nsid"`
		Name string `json:"name"`
	}
	ipJSON(t, &ids, "-n", ns, "netns", "list-id")
	m := map[int]string{}
	for _, id := range ids {
		m[id.NsID] = id.Name
	}
	return m
}

// peerOf is the name of the namespace l's veth peer lives in, "" if none.
func peerOf(l ipLink, names map[int]string) string {
	if l.LinkNetnsID == nil {
		return ""
	}
	return names[*l.LinkNetnsID]
}

// checkTopology checks that the lab's bridge has one port per host, peered
// with the host's namespace, and that every host's interface, addresses and
// routes are as New and AddHost promise. It reads ip's JSON output (ip -j),
// never its text, and never its standard error.
func checkTopology(t *testing.T, lab *Lab, hosts []*Host) {
	t.Helper()
	var br []ipLink
	ipJSON(t, &br, "-n", lab.SwitchNS(), "-d", "link", "show", lab.Bridge())
	if len(br) != 1 || br[0].LinkInfo.InfoKind != "bridge" || br[0].LinkInfo.InfoData.McastSnooping == nil || *br[0].LinkInfo.InfoData.McastSnooping != 0 {
		t.Errorf("%s is not one bridge with multicast snooping off: %+v", lab.Bridge(), br)
	}
	var ports []ipLink
	ipJSON(t, &ports, "-n", lab.SwitchNS(), "link", "show", "master", lab.Bridge())
	if len(ports) != len(hosts) {
		t.Errorf("bridge has %d ports, want %d: %+v", len(ports), len(hosts), ports)
	}
	switchPeers := peerNamespaces(t, lab.SwitchNS())
	peered := map[string]int{}
	for _, p := range ports {
		if p.Master != lab.Bridge() {
			t.Errorf("port %s has master %q, want %s", p.Ifname, p.Master, lab.Bridge())
		}
		peered[peerOf(p, switchPeers)]++
	}
	for _, h := range hosts {
		if peered[h.NS] != 1 {
			t.Errorf("%d bridge ports peer with %s, want 1: %+v", peered[h.NS], h.NS, ports)
		}
		var link []ipLink
		ipJSON(t, &link, "-n", h.NS, "addr", "show", "dev", h.Ifname)
		if len(link) != 1 {
			t.Fatalf("%s: ip addr show dev %s gave %d interfaces", h, h.Ifname, len(link))
		}
		if peer := peerOf(link[0], peerNamespaces(t, h.NS)); peer != lab.SwitchNS() || !slices.Contains(link[0].Flags, "UP") {
			t.Errorf("%s: %s is not an up veth peered into the switch (peer %q, flags %v)", h, h.Ifname, peer, link[0].Flags)
		}
		var lo []ipLink
		ipJSON(t, &lo, "-n", h.NS, "link", "show", "lo")
		if len(lo) != 1 || !slices.Contains(lo[0].Flags, "UP") {
			t.Errorf("%s: lo not up: %+v", h, lo)
		}
		var routes []ipRoute
		ipJSON(t, &routes, "-n", h.NS, "route", "show")
		if !slices.Contains(routes, ipRoute{Dst: "224.0.0.0/4", Dev: h.Ifname}) {
			t.Errorf("%s: no multicast route: %+v", h, routes)
		}
		addrs := map[string]bool{}
		for _, a := range link[0].AddrInfo {
			addrs[a.Local+"/"+strconv.Itoa(a.PrefixLen)] = true
			if a.Tentative {
				t.Errorf("%s: tentative address %s", h, a.Local)
			}
		}
		for _, want := range []string{h.IP4.String() + "/24", h.IP6.String() + "/64", h.LL6.String() + "/64"} {
			if !addrs[want] {
				t.Errorf("%s: lacks address %s: %v", h, want, addrs)
			}
		}
	}
}

// countGot counts the datagrams "PREFIX-i" a listener logged.
func countGot(p *Proc, prefix string) int {
	return strings.Count(p.Log(), "got "+prefix+"-")
}

// waitCount waits until the listener logged at least n datagrams of prefix.
func waitCount(p *Proc, prefix string, n int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		c := countGot(p, prefix)
		if c >= n || time.Now().After(deadline) {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLossRuleset(t *testing.T) {
	rs, err := lossRuleset(8192, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"table inet vigil_loss\ndelete table inet vigil_loss\n",
		"type filter hook input priority filter; policy accept;",
		"ip daddr 224.0.0.0/4 udp dport 8192 numgen random mod 100 < 30 drop",
		"ip6 daddr ff00::/8 udp dport 8192 numgen random mod 100 < 30 drop",
	} {
		if !strings.Contains(rs, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rs)
		}
	}
	if rs, _ := lossRuleset(8192, 0); strings.Contains(rs, "chain") {
		t.Errorf("0%% should only remove the table:\n%s", rs)
	}
	if rs, _ := lossRuleset(8192, 100); strings.Contains(rs, "numgen") || !strings.Contains(rs, "udp dport 8192 drop") {
		t.Errorf("100%% should drop unconditionally:\n%s", rs)
	}
	for _, bad := range [][2]int{{0, 10}, {70000, 10}, {8192, -1}, {8192, 101}} {
		if _, err := lossRuleset(bad[0], bad[1]); err == nil {
			t.Errorf("lossRuleset(%d, %d) accepted", bad[0], bad[1])
		}
	}
}

func TestLab(t *testing.T) {
	Require(t)
	before := rootState(t)
	vethsBefore := rootVeths(t)
	var id string

	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		id = lab.ID()
		if len(lab.SwitchNS()) > 15 {
			t.Errorf("switch namespace name %q longer than 15", lab.SwitchNS())
		}
		hosts := []*Host{lab.AddHost("a"), lab.AddHost("b"), lab.AddHost("c")}
		a, b, c := hosts[0], hosts[1], hosts[2]
		for _, h := range hosts {
			if !lab.Prefix4().Contains(h.IP4) || !lab.Prefix6().Contains(h.IP6) || !h.LL6.IsLinkLocalUnicast() {
				t.Errorf("%s: addresses %v %v %v outside %v %v", h, h.IP4, h.IP6, h.LL6, lab.Prefix4(), lab.Prefix6())
			}
			if len(h.Ifname) > 15 || len(h.NS) > 15 {
				t.Errorf("%s: names too long: %q %q", h, h.NS, h.Ifname)
			}
		}

		t.Run("topology", func(t *testing.T) { checkTopology(t, lab, hosts) })

		// A host's Env is the environment of what it runs, for Run and
		// Start alike; nil is the test process's.
		t.Run("env", func(t *testing.T) {
			t.Setenv("NETLAB_TEST_ENV", "inherited")
			if got := strings.TrimSpace(c.Run(t, "sh", "-c", "echo $NETLAB_TEST_ENV")); got != "inherited" {
				t.Errorf("with no Env: %q, want the test's environment", got)
			}
			c.Env = []string{"NETLAB_TEST_ENV=own", "PATH=" + os.Getenv("PATH")}
			defer func() { c.Env = nil }()
			if got := strings.TrimSpace(c.Run(t, "sh", "-c", "echo $NETLAB_TEST_ENV")); got != "own" {
				t.Errorf("Run with Env: %q, want own", got)
			}
			p := c.Start(t, "sh", "-c", "echo $NETLAB_TEST_ENV")
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(p.Log()); got != "own" {
				t.Errorf("Start with Env: %q, want own", got)
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

		t.Run("ping", func(t *testing.T) {
			if _, err := exec.LookPath("ping"); err != nil {
				t.Skip("ping not installed; the udp-echo subtest covers reachability")
			}
			for _, src := range hosts {
				for _, dst := range hosts {
					if src == dst {
						continue
					}
					src.Run(t, "ping", "-c1", "-W2", dst.IP4.String())
					src.Run(t, "ping", "-6", "-c1", "-W2", dst.IP6.String())
				}
			}
		})

		t.Run("udp-echo", func(t *testing.T) {
			e4 := startHelper(t, b, "echo", "udp4", "7007", "60")
			e6 := startHelper(t, b, "echo", "udp6", "7007", "60")
			e4.WaitLog(t, "ready", 10*time.Second)
			e6.WaitLog(t, "ready", 10*time.Second)
			for _, src := range []*Host{a, c} {
				if out := runHelper(t, src, "ask", "udp4", b.IP4.String(), "7007", "5"); !strings.Contains(out, "reply from "+b.IP4.String()) {
					t.Errorf("%s -> %s: %s", src, b.IP4, out)
				}
				if out := runHelper(t, src, "ask", "udp6", b.IP6.String(), "7007", "5"); !strings.Contains(out, "reply from ["+b.IP6.String()+"]") {
					t.Errorf("%s -> %s: %s", src, b.IP6, out)
				}
			}
		})

		for _, fam := range []struct{ network, group string }{{"udp4", mcastGroup4}, {"udp6", mcastGroup6}} {
			t.Run("multicast-"+fam.network, func(t *testing.T) {
				port := strconv.Itoa(mcastPort)
				lb := startHelper(t, b, "listen", fam.network, b.Ifname, fam.group, port, "60")
				lc := startHelper(t, c, "listen", fam.network, c.Ifname, fam.group, port, "60")
				lb.WaitLog(t, "ready", 10*time.Second)
				lc.WaitLog(t, "ready", 10*time.Second)
				runHelper(t, a, "send", fam.network, a.Ifname, fam.group, port, "m", "5", "20")
				for _, l := range []*Proc{lb, lc} {
					if n := waitCount(l, "m", 5, 5*time.Second); n != 5 {
						t.Errorf("listener got %d of 5 datagrams; log:\n%s", n, l.Log())
					}
				}
				for _, l := range []*Proc{lb, lc} {
					src := a.IP4.String()
					if fam.network == "udp6" {
						src = "[" + a.IP6.String() + "]"
					}
					if want := "got m-0 from " + src + ":"; !strings.Contains(l.Log(), want) {
						t.Errorf("listener log lacks %q:\n%s", want, l.Log())
					}
					if !strings.Contains(l.Log(), " ttl 1\n") {
						t.Errorf("datagrams not received with TTL/hop limit 1:\n%s", l.Log())
					}
				}
			})
		}

		t.Run("loss", func(t *testing.T) {
			RequireNft(t)
			port := strconv.Itoa(mcastPort)
			lb := startHelper(t, b, "listen", "udp4", b.Ifname, mcastGroup4, port, "60")
			lc := startHelper(t, c, "listen", "udp4", c.Ifname, mcastGroup4, port, "60")
			lb.WaitLog(t, "ready", 10*time.Second)
			lc.WaitLog(t, "ready", 10*time.Second)

			b.DropMulticast(t, mcastPort, 100)
			if rs := b.Run(t, "nft", "list", "table", "inet", lossTable); !strings.Contains(rs, "udp dport 8192 drop") {
				t.Fatalf("loss rule not loaded:\n%s", rs)
			}
			runHelper(t, a, "send", "udp4", a.Ifname, mcastGroup4, port, "drop", "20", "5")
			if n := waitCount(lc, "drop", 20, 5*time.Second); n != 20 {
				t.Fatalf("control listener got %d of 20; log:\n%s", n, lc.Log())
			}
			time.Sleep(200 * time.Millisecond)
			if n := countGot(lb, "drop"); n != 0 {
				t.Errorf("with 100%% loss the host still got %d of 20", n)
			}
			// Unicast to the same port is not multicast loss.
			runHelper(t, a, "send", "udp4", a.Ifname, b.IP4.String(), port, "uni", "3", "20")
			if n := waitCount(lb, "uni", 3, 5*time.Second); n != 3 {
				t.Errorf("unicast to the port under multicast loss: got %d of 3", n)
			}

			b.DropMulticast(t, mcastPort, 0)
			if rs := b.Run(t, "nft", "list", "tables"); strings.Contains(rs, lossTable) {
				t.Errorf("0%% loss left the table:\n%s", rs)
			}
			runHelper(t, a, "send", "udp4", a.Ifname, mcastGroup4, port, "back", "5", "20")
			if n := waitCount(lb, "back", 5, 5*time.Second); n != 5 {
				t.Errorf("after restoring, got %d of 5; log:\n%s", n, lb.Log())
			}

			// Partial loss, replacing the previous rule: 50% of 200.
			b.DropMulticast(t, mcastPort, 100)
			b.DropMulticast(t, mcastPort, 50)
			if rs := b.Run(t, "nft", "list", "table", "inet", lossTable); strings.Count(rs, "drop") != 2 || !strings.Contains(rs, "< 50") {
				t.Fatalf("loss rule not replaced:\n%s", rs)
			}
			runHelper(t, a, "send", "udp4", a.Ifname, mcastGroup4, port, "half", "200", "2")
			if n := waitCount(lc, "half", 200, 10*time.Second); n != 200 {
				t.Fatalf("control listener got %d of 200", n)
			}
			time.Sleep(200 * time.Millisecond)
			// Binomial(200, 0.5): mean 100, sd about 7.
			if n := countGot(lb, "half"); n < 55 || n > 145 {
				t.Errorf("with 50%% loss the host got %d of 200", n)
			} else {
				t.Logf("with 50%% loss the host got %d of 200", n)
			}
			b.DropMulticast(t, mcastPort, 0)
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

// netnsInode returns the inode of a process's network namespace.
func netnsInode(pid int) (string, error) {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]"), nil
}

// gone reports whether pid no longer runs (absent, or a zombie awaiting a
// reaper other than us).
func gone(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(st), ')')
	return i >= 0 && i+2 < len(st) && st[i+2] == 'Z'
}

func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !gone(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestProc(t *testing.T) {
	Require(t)
	lab := New(t)
	h := lab.AddHost("p")

	var fi syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", h.NS), &fi); err != nil {
		t.Fatal(err)
	}
	wantNS := strconv.FormatUint(fi.Ino, 10)

	t.Run("pid-is-program", func(t *testing.T) {
		p := h.Start(t, "sleep", "300")
		pid := p.Pid()
		deadline := time.Now().Add(5 * time.Second)
		for {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) == "sleep" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d is %q, not sleep: ip netns exec did not exec", pid, comm)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if ino, err := netnsInode(pid); err != nil || ino != wantNS {
			t.Fatalf("pid %d in netns %q (%v), want %s", pid, ino, err, wantNS)
		}
		p.Kill()
		if !p.Exited() || !gone(pid) {
			t.Fatalf("pid %d still running after Kill", pid)
		}
		if ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("exit status %v, want killed", p.Cmd.ProcessState)
		}
	})

	t.Run("stop-term", func(t *testing.T) {
		p := h.Start(t, "sleep", "300")
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		err := p.Stop()
		if time.Since(start) > 2*time.Second {
			t.Errorf("Stop took %v for a process that honours SIGTERM", time.Since(start))
		}
		if ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGTERM {
			t.Errorf("Stop: %v, state %v, want terminated by SIGTERM", err, p.Cmd.ProcessState)
		}
	})

	t.Run("stop-escalates-and-kills-group", func(t *testing.T) {
		p := startHelper(t, h, "ignoreterm")
		p.StopTimeout = 300 * time.Millisecond
		p.WaitLog(t, "ready", 10*time.Second)
		m := regexp.MustCompile(`child (\d+)`).FindStringSubmatch(p.Log())
		if m == nil {
			t.Fatalf("no child pid in log:\n%s", p.Log())
		}
		child, _ := strconv.Atoi(m[1])
		if ino, err := netnsInode(child); err != nil || ino != wantNS {
			t.Fatalf("child %d in netns %q (%v), want %s", child, ino, err, wantNS)
		}
		start := time.Now()
		p.Stop()
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("Stop returned after %v, before the SIGTERM grace period", d)
		}
		if ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("state %v, want killed after ignoring SIGTERM", p.Cmd.ProcessState)
		}
		if !waitGone(child, 5*time.Second) {
			t.Errorf("child %d of the stopped process still runs", child)
		}
	})

	var auto *Proc
	var autoPid int
	t.Run("auto-stop", func(t *testing.T) {
		auto = h.Start(t, "sleep", "300")
		autoPid = auto.Pid()
	})
	if !auto.Exited() || !gone(autoPid) {
		t.Errorf("process %d not stopped by its test's cleanup", autoPid)
	}

	t.Run("log", func(t *testing.T) {
		p := h.Start(t, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
		err := p.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("Wait: %v, want exit status 3", err)
		}
		log := p.Log()
		if !strings.Contains(log, "to-stdout") || !strings.Contains(log, "to-stderr") {
			t.Errorf("log lacks output:\n%s", log)
		}
		if fi, err := os.Stat(p.LogPath); err != nil || fi.Size() != int64(len(log)) {
			t.Errorf("log file %s: %v", p.LogPath, err)
		}
		if err := p.Stop(); err == nil {
			t.Errorf("Stop of an exited process lost its status")
		}
	})

	t.Run("run-in-namespace", func(t *testing.T) {
		out, err := h.run("", "ip", "-o", "link")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "eth0") || !strings.Contains(out, h.Ifname) {
			t.Errorf("host namespace links look wrong:\n%s", out)
		}
		if _, err := h.run("", "false"); err == nil {
			t.Errorf("a failing command did not report an error")
		}
	})
}

// makeStale creates what a crashed test binary leaves behind: a namespace
// named like a lab's whose lock nobody holds, with a process running in it.
// It returns the namespace and a channel closed when the process is reaped.
// Other test binaries' labs may sweep such a namespace at any moment, so it
// retries until the process is seen inside the namespace.
func makeStale(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	for range 5 {
		stale := fmt.Sprintf("%szz_%s_sw", namePrefix, strconv.FormatInt(rand.Int64N(1296), 36))
		if err := netnsOp("add", stale); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = destroyNS(stale) })
		var fi syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", stale), &fi); err != nil {
			continue
		}
		orphan := exec.Command("ip", "netns", "exec", stale, "sleep", "300")
		orphan.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := orphan.Start(); err != nil {
			t.Fatal(err)
		}
		reaped := make(chan struct{})
		go func() { _ = orphan.Wait(); close(reaped) }()
		t.Cleanup(func() { _ = orphan.Process.Kill(); <-reaped })
		// Wait until the process has entered the namespace and is sleep.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", orphan.Process.Pid))
			ino, _ := netnsInode(orphan.Process.Pid)
			if strings.TrimSpace(string(comm)) == "sleep" && ino == strconv.FormatUint(fi.Ino, 10) {
				return stale, reaped
			}
			select {
			case <-reaped:
				deadline = time.Time{} // swept by another lab before it got in
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	t.Fatal("could not set up a stale namespace with a process in it")
	return "", nil
}

func TestStaleCleanup(t *testing.T) {
	Require(t)
	stale, reaped := makeStale(t)
	lab := New(t)
	// New sweeps it; so may another test binary's New, which may still be
	// at it, so allow a moment.
	deadline := time.Now().Add(5 * time.Second)
	for nsExists(stale) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if nsExists(stale) {
		t.Errorf("stale namespace %s survived New", stale)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Errorf("process in the stale namespace was not killed")
	}
	// A live lab's namespaces are not stale.
	if err := cleanStale(); err != nil {
		t.Fatal(err)
	}
	if !nsExists(lab.SwitchNS()) {
		t.Errorf("cleanStale removed the live lab %s", lab.ID())
	}
}

func TestNamePattern(t *testing.T) {
	if !nsPattern.MatchString("vgl2n9c_a1_3") || nsPattern.MatchString("vgl") || nsPattern.MatchString("myns") {
		t.Errorf("namespace pattern matches the wrong names")
	}
}

// TestSnoopMulticast: on a snooping switch, a host that reports its
// membership gets the group; one whose IGMP reports are dropped by its own
// firewall does not, once its earlier membership has expired.
func TestSnoopMulticast(t *testing.T) {
	RequireNft(t)
	lab := New(t)
	a, b := lab.AddHost("a"), lab.AddHost("b")
	lab.SnoopMulticast(t)
	c := lab.AddHost("c") // added after: its port must not flood either
	port := strconv.Itoa(mcastPort)
	lb := startHelper(t, b, "listen", "udp4", b.Ifname, mcastGroup4, port, "120")
	lc := startHelper(t, c, "listen", "udp4", c.Ifname, mcastGroup4, port, "120")
	lb.WaitLog(t, "ready", 10*time.Second)
	lc.WaitLog(t, "ready", 10*time.Second)
	// Until the bridge's querier takes charge nothing is forwarded; send
	// until both listeners hear the group.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; countGot(lb, "w") == 0 || countGot(lc, "w") == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the snooping switch never forwarded the group to members b (%d) and c (%d)", countGot(lb, "w"), countGot(lc, "w"))
		}
		runHelper(t, a, "send", "udp4", a.Ifname, mcastGroup4, port, "w", "1", "0")
		time.Sleep(500 * time.Millisecond)
	}
	// c's membership reports are dropped from now on: the membership it
	// had expires.
	c.Nft(t, "table inet t {\n chain o {\n  type filter hook output priority filter;\n  ip protocol igmp drop\n }\n}\n")
	time.Sleep(MembershipTimeout + time.Second)
	runHelper(t, a, "send", "udp4", a.Ifname, mcastGroup4, port, "m", "5", "20")
	if n := waitCount(lb, "m", 5, 5*time.Second); n != 5 {
		t.Errorf("member b got %d of 5 datagrams", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n := countGot(lc, "m"); n != 0 {
		t.Errorf("c, whose membership reports are dropped, got %d datagrams: the switch floods", n)
	}
}

// foreignEntries puts in /run/netns what other programs leave there: a plain
// file and a namespace of their own, with a process running in it, both
// named unlike any lab. They are removed when the test ends. It returns their
// paths and a function reporting whether they are still there untouched.
func foreignEntries(t *testing.T) (file, ns string, intact func() error) {
	t.Helper()
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("xf%s_%s", strconv.FormatInt(int64(os.Getpid()), 36), strconv.FormatInt(rand.Int64N(1296), 36))
	file, ns = base+"_f", base+"_n"
	if nsPattern.MatchString(file) || nsPattern.MatchString(ns) {
		t.Fatalf("foreign names %q %q look like a lab's", file, ns)
	}
	const content = "not a namespace\n"
	filePath := filepath.Join("/run/netns", file)
	if err := os.WriteFile(filePath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(filePath) })
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	var fi syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &fi); err != nil {
		t.Fatal(err)
	}
	ino := strconv.FormatUint(fi.Ino, 10)
	proc := exec.Command("ip", "netns", "exec", ns, "sleep", "300")
	proc.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = proc.Wait(); close(exited) }()
	t.Cleanup(func() { _ = proc.Process.Kill(); <-exited })
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", proc.Process.Pid))
		if got, _ := netnsInode(proc.Process.Pid); strings.TrimSpace(string(comm)) == "sleep" && got == ino {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process never ran in the foreign namespace %s", ns)
		}
		select {
		case <-exited:
			t.Fatalf("the process in the foreign namespace %s exited: %v", ns, proc.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
	}
	intact = func() error {
		if b, err := os.ReadFile(filePath); err != nil || string(b) != content {
			return fmt.Errorf("foreign file %s: %q, %v", filePath, b, err)
		}
		var now syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", ns), &now); err != nil || now.Ino != fi.Ino {
			return fmt.Errorf("foreign namespace %s: inode %d, was %s (%v)", ns, now.Ino, ino, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("the process in the foreign namespace %s was stopped: %v", ns, proc.ProcessState)
		default:
		}
		return nil
	}
	return file, ns, intact
}

// TestForeignEntries: a lab is built, works and is torn down alike when
// /run/netns holds entries it did not make — a plain file, which makes ip
// complain on its standard error, and another program's namespace with a
// process in it — and it leaves those entries and that process alone.
func TestForeignEntries(t *testing.T) {
	Require(t)
	t.Parallel()
	file, ns, intact := foreignEntries(t)
	var id string
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		id = lab.ID()
		hosts := []*Host{lab.AddHost("a"), lab.AddHost("b")}
		checkTopology(t, lab, hosts)
		e := startHelper(t, hosts[1], "echo", "udp4", "7007", "60")
		e.WaitLog(t, "ready", 10*time.Second)
		if out := runHelper(t, hosts[0], "ask", "udp4", hosts[1].IP4.String(), "7007", "5"); !strings.Contains(out, "reply from "+hosts[1].IP4.String()) {
			t.Errorf("a -> b: %s", out)
		}
		if err := cleanStale(); err != nil {
			t.Errorf("cleanStale with foreign entries: %v", err)
		}
		if !nsExists(lab.SwitchNS()) {
			t.Errorf("cleanStale removed the live lab %s", lab.ID())
		}
		if err := intact(); err != nil {
			t.Errorf("while the lab is up: %v", err)
		}
		listed := labNamespaces(t, "")
		if !slices.Contains(listed, file) || !slices.Contains(listed, ns) {
			t.Errorf("ip netns list lacks the foreign entries %s %s: %v", file, ns, listed)
		}
	})
	if id == "" {
		t.Fatal("lab was not created")
	}
	if left := labNamespaces(t, id); len(left) != 0 {
		t.Errorf("namespaces left after cleanup: %v", left)
	}
	if err := intact(); err != nil {
		t.Errorf("after the lab was torn down: %v", err)
	}
}
