package ports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/netlab"
)

func TestParseAllowed(t *testing.T) {
	t.Parallel()
	good := []struct{ in, want string }{
		{"tcp/22", "tcp/22"},
		{"in:tcp/22", "tcp/22"},
		{" tcp/22 ", "tcp/22"},
		{"udp/161-162", "udp/161-162"},
		{"tcp/22@10.0.9.0/24", "tcp/22@10.0.9.0/24"},
		{"tcp/22@10.0.9.7/24", "tcp/22@10.0.9.0/24"},
		{"tcp/22@10.0.9.7", "tcp/22@10.0.9.7"},
		{"tcp/22@fd00::/8", "tcp/22@fd00::/8"},
		{"tcp/22@::ffff:10.1.2.3", "tcp/22@10.1.2.3"},
		{"out:udp/123@192.0.2.123", "out:udp/123@192.0.2.123"},
		{"out:tcp/443@2001:db8::1", "out:tcp/443@2001:db8::1"},
		{"tcp/65535", "tcp/65535"},
		{"tcp/1-65535", "tcp/1-65535"},
		{"tcp/00022", "tcp/22"},
	}
	for _, g := range good {
		a, err := ParseAllowed(g.in)
		if err != nil {
			t.Errorf("ParseAllowed(%q): %v", g.in, err)
			continue
		}
		if a.String() != g.want {
			t.Errorf("ParseAllowed(%q) = %s, want %s", g.in, a, g.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"22", "no / between"},
		{"ssh", "no / between"},
		{"tcp/", `port ""`},
		{"tcp/0", `port "0"`},
		{"tcp/65536", `port "65536"`},
		{"tcp/22x", `port "22x"`},
		{"tcp/+22", `port "+22"`},
		{"tcp/-22", `port ""`},
		{"tcp/22-", `port ""`},
		{"tcp/30-20", "runs backwards"},
		{"tcp/1-2-3", `port "2-3"`},
		{"sctp/22", `protocol "sctp"`},
		{"TCP/22", `protocol "TCP"`},
		{"icmp/8", `protocol "icmp"`},
		{"both:tcp/22", `direction "both"`},
		{"tcp/22@", "neither an IP address nor a network"},
		{"tcp/22@example.com", "neither an IP address nor a network"},
		{"tcp/22@10.0.0.0/33", "neither an IP address nor a network"},
		{"tcp/22@fe80::1%eth0", "neither an IP address nor a network"},
		{"tcp/22@10.0.0.1@10.0.0.2", "neither an IP address nor a network"},
		{strings.Repeat("x", 200), "longer than"},
	}
	for _, b := range bad {
		_, err := ParseAllowed(b.in)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParseAllowed(%q) = %v, want an error with %q", b.in, err, b.want)
		}
	}
}

// What ParseAllowed accepts, String writes back in a form it reads the
// same.
func FuzzParseAllowed(f *testing.F) {
	for _, s := range []string{"tcp/22", "out:udp/123@192.0.2.1", "tcp/22@fd00::/8", "in:tcp/1-65535@10.0.0.0/8", "tcp/22@::ffff:1.2.3.4", "x:y/z@", "tcp/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAllowed(s)
		if err != nil {
			return
		}
		if a.Ports.Lo < 1 || a.Ports.Lo > a.Ports.Hi || (a.Protocol != "tcp" && a.Protocol != "udp") || (a.Direction != "in" && a.Direction != "out") {
			t.Fatalf("ParseAllowed(%q) = %+v", s, a)
		}
		b, err := ParseAllowed(a.String())
		if err != nil || b != a {
			t.Fatalf("ParseAllowed(%q) = %+v; its String %q reads back as %+v, %v", s, a, a.String(), b, err)
		}
	})
}

func mustAllow(t testing.TB, specs ...string) []Allowed {
	t.Helper()
	var out []Allowed
	for _, s := range specs {
		a, err := ParseAllowed(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// Without -allow tcp/22 every output warns that SSH is not allowed; with
// it, the kept-open ports are flows of their own, in the table, in JSON
// and as rules of every firewall format.
func TestAllowedInEveryFormat(t *testing.T) {
	t.Parallel()
	c := Config{LiveUpdate: &config.LiveUpdate{HTTPAddr: ":8000"}}
	p, err := Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := func(p *Plan) map[string]string {
		m := map[string]string{}
		var b bytes.Buffer
		p.WriteTable(&b)
		m["table"] = b.String()
		js, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		m["json"] = string(js)
		b.Reset()
		p.WriteNft(&b)
		m["nft"] = b.String()
		for fam, name := range map[int]string{4: "iptables", 6: "ip6tables"} {
			b.Reset()
			p.WriteIptables(&b, fam)
			m[name] = b.String()
		}
		b.Reset()
		p.WritePF(&b)
		m["pf"] = b.String()
		return m
	}
	for name, out := range outputs(p) {
		if !strings.Contains(out, "SSH (TCP 22) is NOT allowed") || !strings.Contains(out, "-allow tcp/22") {
			t.Errorf("%s output does not warn that SSH is not allowed:\n%s", name, out)
		}
		if name != "table" && name != "json" && !strings.Contains(out, "# WARNING: SSH (TCP 22) is NOT allowed") {
			t.Errorf("%s output's comments do not warn that SSH is not allowed:\n%s", name, out)
		}
	}

	c.Allow = mustAllow(t, "tcp/22@10.0.9.0/24", "tcp/22@fd00:9::/64", "udp/161-162", "out:udp/123@192.0.2.123")
	p, err = Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings with SSH allowed: %q", p.Warnings)
	}
	want := map[string][]string{
		"table": {"allowed (udp/161-162)"}, // the rows are checked below
		"json":  {`{"flow":"allowed","part":"allow","direction":"in","from":"10.0.9.0/24","to":"this host","protocol":"tcp","ports":["22"],"step":"tcp/22@10.0.9.0/24"`},
		"nft": {
			"# Also kept open (-allow): tcp/22@10.0.9.0/24, tcp/22@fd00:9::/64, udp/161-162, out:udp/123@192.0.2.123.",
			`ip saddr 10.0.9.0/24 tcp dport 22 accept comment "vigil allowed (tcp/22@10.0.9.0/24)"`,
			`ip6 saddr fd00:9::/64 tcp dport 22 accept comment "vigil allowed (tcp/22@fd00:9::/64)"`,
			`udp dport 161-162 accept comment "vigil allowed (udp/161-162)"`,
			`ip daddr 192.0.2.123 udp dport 123 accept comment "vigil allowed (out:udp/123@192.0.2.123)"`,
		},
		"iptables": {
			`-A INPUT -s 10.0.9.0/24 -p tcp --dport 22 -m comment --comment "vigil allowed (tcp/22@10.0.9.0/24)" -j ACCEPT`,
			`-A INPUT -p udp --dport 161:162 -m comment --comment "vigil allowed (udp/161-162)" -j ACCEPT`,
			`-A OUTPUT -d 192.0.2.123 -p udp --dport 123 -m comment --comment "vigil allowed (out:udp/123@192.0.2.123)" -j ACCEPT`,
		},
		"ip6tables": {
			`-A INPUT -s fd00:9::/64 -p tcp --dport 22 -m comment --comment "vigil allowed (tcp/22@fd00:9::/64)" -j ACCEPT`,
			`-A INPUT -p udp --dport 161:162 -m comment --comment "vigil allowed (udp/161-162)" -j ACCEPT`,
		},
		"pf": {
			"pass in quick inet proto tcp from 10.0.9.0/24 to any port 22 # vigil allowed (tcp/22@10.0.9.0/24)",
			"pass in quick inet6 proto tcp from fd00:9::/64 to any port 22 # vigil allowed (tcp/22@fd00:9::/64)",
			"pass in quick proto udp from any to any port 161:162 # vigil allowed (udp/161-162)",
			"pass out quick inet proto udp from any to 192.0.2.123 port 123 # vigil allowed (out:udp/123@192.0.2.123)",
		},
	}
	outs := outputs(p)
	for name, out := range outs {
		if strings.Contains(out, "NOT allowed") {
			t.Errorf("%s output warns about SSH although it is allowed:\n%s", name, out)
		}
		for _, w := range want[name] {
			if !strings.Contains(out, w) {
				t.Errorf("%s output lacks %q:\n%s", name, w, out)
			}
		}
	}
	rows := map[string]bool{}
	for _, l := range strings.Split(outs["table"], "\n") {
		rows[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, w := range []string{
		"in allowed (tcp/22@10.0.9.0/24) 10.0.9.0/24 this host tcp 22 kept open with -allow tcp/22@10.0.9.0/24; not a Vigil flow",
		"out allowed (out:udp/123@192.0.2.123) this host 192.0.2.123 udp 123 kept open with -allow out:udp/123@192.0.2.123; not a Vigil flow",
	} {
		if !rows[w] {
			t.Errorf("table lacks the row %q:\n%s", w, outs["table"])
		}
	}
	// An IPv4 source gets no ip6tables rule, and the reverse.
	for fam, other := range map[string]string{"iptables": "fd00:9::/64", "ip6tables": "10.0.9.0/24"} {
		for _, l := range strings.Split(outs[fam], "\n") {
			if strings.HasPrefix(l, "-A") && strings.Contains(l, other) {
				t.Errorf("%s rule for the other family: %s", fam, l)
			}
		}
	}
}

// TestHelperProcess is not a test: the lab tests run the test binary in a
// host's namespace as `TESTBIN -test.run=^TestHelperProcess$ -- MODE
// ARGS...`. Modes: "accept PORT..." listens on the TCP ports (both
// families), prints "listening" and accepts until SIGTERM or a minute has
// passed; "dial HOST:PORT" connects, waiting at most two seconds, and
// prints "connected", "timeout" (dropped) or the error.
func TestHelperProcess(t *testing.T) {
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		t.Skip("helper process for the lab tests; not a test")
	}
	switch args[1] {
	case "accept":
		for _, p := range args[2:] {
			ln, err := net.Listen("tcp", net.JoinHostPort("::", p))
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		fmt.Println("listening")
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		select {
		case <-ctx.Done():
		case <-time.After(time.Minute):
		}
		os.Exit(0)
	case "dial":
		c, err := net.DialTimeout("tcp", args[2], 2*time.Second)
		var ne net.Error
		switch {
		case err == nil:
			c.Close()
			fmt.Println("connected")
		case errors.As(err, &ne) && ne.Timeout():
			fmt.Println("timeout")
		default:
			fmt.Println(err)
		}
		os.Exit(0)
	}
	fmt.Println("unknown helper mode", args[1])
	os.Exit(2)
}

func helper(t *testing.T, mode string, args ...string) (string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe, append([]string{"-test.run=^TestHelperProcess$", "--", mode}, args...)
}

// dial connects from h to addr and reports "connected", "timeout" or the
// error. It may run on any goroutine.
func dial(exe string, args []string, h *netlab.Host, addr netip.Addr, port int) string {
	cmd := h.Command(exe, append(args, netip.AddrPortFrom(addr, uint16(port)).String())...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("dial helper: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestAllowedPortsPass loads the rules generated with -allow into a host
// of a lab (nftables in one, iptables and ip6tables in another) and
// connects from a second host: the Vigil port and the port kept open
// accept, another listening port is dropped. Without -allow, the SSH port
// is dropped too: the lock-out the README's one-liner caused.
func TestAllowedPortsPass(t *testing.T) {
	netlab.RequireNft(t)
	requireIptables(t)
	t.Parallel()
	lab := netlab.New(t)
	fwNft, fwIpt, client := lab.AddHost("fwnft"), lab.AddHost("fwipt"), lab.AddHost("client")
	const vigilPort, sshPort, otherPort = 8000, 22, 2222
	plan := func(allow ...string) *Plan {
		p, err := Build(context.Background(), Config{LiveUpdate: &config.LiveUpdate{HTTPAddr: fmt.Sprintf(":%d", vigilPort)}, Allow: mustAllow(t, allow...)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, h := range []*netlab.Host{fwNft, fwIpt} {
		exe, args := helper(t, "accept", fmt.Sprint(vigilPort), fmt.Sprint(sshPort), fmt.Sprint(otherPort))
		h.Start(t, exe, args...).WaitLog(t, "listening", 30*time.Second)
	}
	loadIptables := func(p *Plan) {
		for _, fam := range []int{4, 6} {
			var b bytes.Buffer
			if err := p.WriteIptables(&b, fam); err != nil {
				t.Fatal(err)
			}
			tool := map[int]string{4: "iptables-restore", 6: "ip6tables-restore"}[fam]
			cmd := fwIpt.Command(tool)
			cmd.Stdin = &b
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s\n%s", tool, err, out, b.String())
			}
		}
	}
	loadNft := func(p *Plan) {
		var b bytes.Buffer
		if err := p.WriteNft(&b); err != nil {
			t.Fatal(err)
		}
		fwNft.Nft(t, b.String())
	}
	// check connects from the client to each firewalled host, on both
	// families, to each port at once, and compares what happened.
	check := func(what string, want map[int]string) {
		t.Helper()
		exe, args := helper(t, "dial")
		type probe struct {
			fw   *netlab.Host
			addr netip.Addr
			port int
		}
		got := map[probe]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, fw := range []*netlab.Host{fwNft, fwIpt} {
			for _, addr := range []netip.Addr{fw.IP4, fw.IP6} {
				for port := range want {
					wg.Go(func() {
						r := dial(exe, args, client, addr, port)
						mu.Lock()
						got[probe{fw, addr, port}] = r
						mu.Unlock()
					})
				}
			}
		}
		wg.Wait()
		for p, r := range got {
			if r != want[p.port] {
				t.Errorf("%s: TCP from %s to %s %v port %d: %s, want %s", what, client.Name, p.fw.Name, p.addr, p.port, r, want[p.port])
			}
		}
	}

	// Before any rule, every port answers: the listeners are there.
	check("no firewall", map[int]string{vigilPort: "connected", sshPort: "connected", otherPort: "connected"})

	loadNft(plan())
	loadIptables(plan())
	check("without -allow", map[int]string{vigilPort: "connected", sshPort: "timeout", otherPort: "timeout"})

	p := plan("tcp/22")
	loadNft(p)
	loadIptables(p)
	check("with -allow tcp/22", map[int]string{vigilPort: "connected", sshPort: "connected", otherPort: "timeout"})

	// Restricted to the client's address: open to it; restricted to
	// another network, dropped.
	p = plan("tcp/22@"+client.IP4.String(), "tcp/22@"+client.IP6.String(), "tcp/2222@192.0.2.0/24")
	loadNft(p)
	loadIptables(p)
	check("with -allow tcp/22@CLIENT", map[int]string{vigilPort: "connected", sshPort: "connected", otherPort: "timeout"})
	if !slices.ContainsFunc(p.Rules(), func(r Rule) bool { return r.Label() == "vigil allowed (tcp/2222@192.0.2.0/24)" }) {
		t.Fatalf("no rule for tcp/2222@192.0.2.0/24: %+v", p.Rules())
	}
}
