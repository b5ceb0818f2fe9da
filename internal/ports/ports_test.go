package ports

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

var group = netip.MustParseAddr("239.255.81.92")

// fullConfig has every part, with addresses only (no resolution).
func fullConfig() Config {
	return Config{
		Server:     &config.Server{Listen: ":8080", AdminListen: "127.0.0.1:8081", Group: group, Port: 8192, TTL: 1},
		Agent:      &prefs.Agent{NodeCommURL: "http://10.77.0.1:8080/vigil", MulticastAddress: group.String(), MulticastPort: 8192, MulticastInterface: "vgl0", LiveUpdateServers: []string{"ftp://10.77.0.2/", "http://10.77.0.2:8000/", "https://203.0.113.9/repo"}},
		LiveUpdate: &config.LiveUpdate{HTTPAddr: ":80", FTPAddr: "10.77.0.2:21", PassivePorts: config.PortRange{Lo: 30000, Hi: 30009}},
		Mirror:     &config.Mirror{Upstream: "http://198.51.100.7:8080/repo", Resolver: "10.0.0.53:53"},
	}
}

// flowKey is what identifies a flow in the expectations below.
func flowKey(f Flow) string {
	ports := make([]string, len(f.Ports))
	for i, p := range f.Ports {
		ports[i] = p.String()
	}
	dst := make([]string, len(f.Dst))
	for i, p := range f.Dst {
		dst[i] = p.Addr().String()
	}
	k := fmt.Sprintf("%s %s %s %s %s", f.Direction, f.ID, f.Protocol, strings.Join(ports, ","), strings.Join(dst, ","))
	if f.Step != "" {
		k += " [" + f.Step + "]"
	}
	if f.LoopbackOnly {
		k += " loopback"
	}
	return k
}

func TestBuild(t *testing.T) {
	g := netip.MustParseAddr("ff15::8192")
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"server", Config{Server: fullConfig().Server}, []string{
			"in agent-api tcp 8080 ",
			"in admin tcp 8081 127.0.0.1 loopback",
			"out commands udp 8192 239.255.81.92",
		}},
		{"server on one address, admin open", Config{Server: &config.Server{Listen: "10.77.0.1:8443", TLSCert: "cert.pem", AdminListen: ":8081", Group: g, Port: 9000, TTL: 4, Interface: "eth1"}}, []string{
			"in agent-api tcp 8443 10.77.0.1",
			"in admin tcp 8081 ",
			"out commands udp 9000 ff15::8192",
		}},
		{"agent", Config{Agent: fullConfig().Agent}, []string{
			"out agent-api tcp 8080 10.77.0.1",
			"in commands udp 8192 239.255.81.92",
			"out commands igmp   [membership]",
			"in commands igmp   [membership]",
			"out definitions tcp 21 10.77.0.2 [FTP control]",
			"out definitions tcp 1024-65535 10.77.0.2 [FTP passive data]",
			"out definitions tcp 8000 10.77.0.2 [HTTP]",
			"out definitions-public tcp 443 203.0.113.9 [HTTPS]",
		}},
		{"agent with the passive range given, IPv6 group", Config{FTPPassive: config.PortRange{Lo: 40000, Hi: 40099}, Agent: &prefs.Agent{NodeCommURL: "https://[fd77:1::1]/v", MulticastAddress: g.String(), MulticastPort: 8192, LiveUpdateServers: []string{"ftp://[fd77:1::2]:2121/"}}}, []string{
			"out agent-api tcp 443 fd77:1::1",
			"in commands udp 8192 ff15::8192",
			"out commands mld   [membership]",
			"in commands mld   [membership]",
			"out definitions tcp 2121 fd77:1::2 [FTP control]",
			"out definitions tcp 40000-40099 fd77:1::2 [FTP passive data]",
		}},
		{"liveupdate", Config{LiveUpdate: fullConfig().LiveUpdate}, []string{
			"in definitions tcp 21 10.77.0.2 [FTP control]",
			"in definitions tcp 30000-30009 10.77.0.2 [FTP passive data]",
			"in definitions tcp 80  [HTTP]",
		}},
		{"liveupdate without passive range, FTP only", Config{LiveUpdate: &config.LiveUpdate{FTPAddr: ":2121"}}, []string{
			"in definitions tcp 2121  [FTP control]",
			"in definitions tcp 1024-65535  [FTP passive data]",
		}},
		{"mirror", Config{Mirror: fullConfig().Mirror}, []string{
			"out dns udp 53 10.0.0.53",
			"out dns tcp 53 10.0.0.53",
			"out mirror-sync tcp 8080 198.51.100.7 [HTTP]",
			"out self-update tcp 8080 198.51.100.7 [HTTP]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(context.Background(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range p.Flows {
				got = append(got, flowKey(f))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// -clients and -admins restrict where the server's and the LiveUpdate
// server's incoming flows may come from, one rule per family.
func TestBuildRestrictsSources(t *testing.T) {
	c := fullConfig()
	c.Server.AdminListen = ":8081"
	c.Clients = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16"), netip.MustParsePrefix("fd77::/16")}
	c.Admins = []netip.Prefix{netip.MustParsePrefix("10.0.9.0/24")}
	p, err := Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteNft(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`ip saddr 10.77.0.0/16 tcp dport 8080 accept comment "vigil agent-api"`,
		`ip6 saddr fd77::/16 tcp dport 8080 accept comment "vigil agent-api"`,
		`ip saddr 10.0.9.0/24 tcp dport 8081 accept comment "vigil admin"`,
		`ip saddr 10.77.0.0/16 ip daddr 10.77.0.2 tcp dport 21 accept comment "vigil definitions (FTP control)"`,
		`ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`, // outgoing: not restricted
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft output lacks %q:\n%s", want, out)
		}
	}
	// The FTP server listens on an IPv4 address only: no IPv6 rule.
	if strings.Contains(out, `ip6 saddr fd77::/16 tcp dport 21 `) {
		t.Errorf("an IPv6 rule for a server listening on IPv4 only:\n%s", out)
	}
	for _, f := range p.Flows {
		if f.ID == FlowAdmin && f.From != "administrators in 10.0.9.0/24" {
			t.Errorf("admin flow from %q", f.From)
		}
	}
}

func TestBuildNotes(t *testing.T) {
	p, err := Build(context.Background(), Config{LiveUpdate: &config.LiveUpdate{FTPAddr: ":21"}, Agent: fullConfig().Agent})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(p.Notes, "\n")
	for _, want := range []string{"no passive port range (PassivePorts)", "-ftp-passive-ports"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	mc := strings.Join(p.Multicast, "\n")
	for _, want := range []string{"group 239.255.81.92, UDP port 8192", "IGMP", "does not cross a router without multicast routing"} {
		if !strings.Contains(mc, want) {
			t.Errorf("multicast section %q lacks %q", mc, want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	s := fullConfig().Server
	bad := *s
	bad.Group = netip.MustParseAddr("10.1.2.3")
	badListen := *s
	badListen.Listen = "vigil.example:8080"
	a := fullConfig().Agent
	badURL := *a
	badURL.LiveUpdateServers = []string{"gopher://10.0.0.1/"}
	badNode := *a
	badNode.NodeCommURL = "10.77.0.1:8080"
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "no Vigil part is configured"},
		{"unicast group", Config{Server: &bad}, "not a multicast address"},
		{"listen on a name", Config{Server: &badListen}, "listen on an IP address"},
		{"unknown scheme", Config{Agent: &badURL}, "want ftp://, http:// or https://"},
		{"NodeCommURL without scheme", Config{Agent: &badNode}, "NodeCommURL"},
		{"liveupdate bad port", Config{LiveUpdate: &config.LiveUpdate{HTTPAddr: ":99999"}}, "port must be 1 to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Host names are resolved to every address, CNAME chains followed; a name
// that does not resolve is allowed to any address, with a note.
func TestBuildResolves(t *testing.T) {
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	dns.AddCNAME("liveupdate.vendor.test", "pool.vendor.test")
	dns.SetAddrs("pool.vendor.test", netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::10"))
	dns.SetAddrs("vigil.corp.test", netip.MustParseAddr("10.1.0.1"))
	p, err := Build(context.Background(), Config{
		Resolver: dns.Addr(),
		Agent:    &prefs.Agent{NodeCommURL: "http://vigil.corp.test:8080/vigil", MulticastAddress: group.String(), MulticastPort: 8192, LiveUpdateServers: []string{"http://nowhere.corp.test/"}},
		Mirror:   &config.Mirror{Upstream: "ftp://liveupdate.vendor.test/repo", Resolver: dns.Addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.Flows {
		got = append(got, flowKey(f))
	}
	port := strings.Split(dns.Addr(), ":")[1]
	want := []string{
		"out agent-api tcp 8080 10.1.0.1",
		"in commands udp 8192 239.255.81.92",
		"out commands igmp   [membership]",
		"in commands igmp   [membership]",
		"out definitions tcp 80  [HTTP]",
		"out dns udp " + port + " 127.0.0.1 loopback",
		"out dns tcp " + port + " 127.0.0.1 loopback",
		"out mirror-sync tcp 21 192.0.2.10,192.0.2.11,2001:db8::10 [FTP control]",
		"out mirror-sync tcp 1024-65535 192.0.2.10,192.0.2.11,2001:db8::10 [FTP passive data]",
		"out self-update tcp 21 192.0.2.10,192.0.2.11,2001:db8::10 [FTP control]",
		"out self-update tcp 1024-65535 192.0.2.10,192.0.2.11,2001:db8::10 [FTP passive data]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	notes := strings.Join(p.Notes, "\n")
	if !strings.Contains(notes, "cannot resolve nowhere.corp.test") || !strings.Contains(notes, "resolves to 3 addresses") {
		t.Fatalf("notes: %s", notes)
	}
	// Both families: one rule per family.
	var fams []int
	for _, r := range p.Rules() {
		if strings.HasPrefix(r.Label(), "vigil mirror-sync (FTP control)") {
			fams = append(fams, r.Family)
		}
	}
	if !slices.Equal(fams, []int{4, 6}) {
		t.Fatalf("mirror-sync control rules for families %v, want [4 6]", fams)
	}
}

func TestRulesMergeAndSkipLoopback(t *testing.T) {
	p, err := Build(context.Background(), fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, r := range p.Rules() {
		labels = append(labels, r.Chain+" "+r.Label())
	}
	if slices.ContainsFunc(labels, func(l string) bool { return strings.Contains(l, "admin") }) {
		t.Errorf("a rule for the loopback-only admin API: %v", labels)
	}
	if !slices.Contains(labels, "output vigil mirror-sync (HTTP), self-update (HTTP)") {
		t.Errorf("mirror-sync and self-update share one rule; rules: %v", labels)
	}
}

func TestJSON(t *testing.T) {
	p, err := Build(context.Background(), fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Parts []string `json:"parts"`
		Flows []struct {
			Flow, Direction, Protocol string
			Ports                     []string
			Dst                       []string
		} `json:"flows"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Parts) != 4 || len(back.Flows) != len(p.Flows) {
		t.Fatalf("JSON %s", b)
	}
	f := back.Flows[len(back.Flows)-1]
	if f.Flow != "self-update" || f.Ports[0] != "8080" || f.Dst[0] != "198.51.100.7/32" {
		t.Fatalf("last flow %+v", f)
	}
}

func TestWriteTable(t *testing.T) {
	p, err := Build(context.Background(), fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"DIR  FLOW", "(server, agent, liveupdate, mirror)",
		"definitions (FTP passive data)", "30000-30009", "group 239.255.81.92 on vgl0",
		"Multicast:", "TTL 1 (set on the server)", "listens on loopback only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// ruleComments are the comments of every Vigil rule in a ruleset.
var ruleComment = regexp.MustCompile(`"(vigil [^"]+)"`)

// comments are the comments of the Vigil rules in a listed ruleset, sorted.
func comments(s string) []string {
	var out []string
	for _, m := range ruleComment.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

func expectedLabels(p *Plan, family int) []string {
	var out []string
	for _, r := range p.Rules() {
		if family == 0 || r.Family == 0 || r.Family == family {
			n := 1
			if r.Protocol == "mld" && family != 0 {
				n = len(mldTypes) // iptables: one rule per ICMPv6 type
			}
			for range n {
				out = append(out, r.Label())
			}
		}
	}
	slices.Sort(out)
	return out
}

func dualConfig() Config {
	c := fullConfig()
	c.Agent.LiveUpdateServers = append(c.Agent.LiveUpdateServers, "http://[fd77:1::2]/")
	c.Server.Group = netip.MustParseAddr("ff15::8192")
	c.Agent.MulticastAddress = c.Server.Group.String()
	c.Clients = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16"), netip.MustParsePrefix("fd77::/16")}
	return c
}

// The nftables script loads into a network namespace, and nft lists every
// rule back.
func TestNftLoads(t *testing.T) {
	netlab.RequireNft(t)
	h := netlab.New(t).AddHost("fw")
	for _, cfg := range []Config{fullConfig(), dualConfig()} {
		p, err := Build(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := p.WriteNft(&b); err != nil {
			t.Fatal(err)
		}
		// Twice: the script replaces the table rather than adding to it.
		h.Nft(t, b.String())
		h.Nft(t, b.String())
		listed := h.Run(t, "nft", "list", "table", "inet", "vigil")
		if got, want := comments(listed), expectedLabels(p, 0); !slices.Equal(got, want) {
			t.Fatalf("nft lists rules\n%s\nwant\n%s\nruleset:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), listed)
		}
		for _, want := range []string{"policy drop", "ct state established,related accept"} {
			if !strings.Contains(listed, want) {
				t.Errorf("ruleset lacks %q", want)
			}
		}
	}
}

func requireIptables(t *testing.T) {
	t.Helper()
	netlab.Require(t)
	for _, tool := range []string{"iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"} {
		testenv.NeedTool(t, tool, "iptables")
	}
}

// The iptables and ip6tables output load with iptables-restore in a
// network namespace, and iptables-save lists every rule back.
func TestIptablesLoads(t *testing.T) {
	requireIptables(t)
	h := netlab.New(t).AddHost("fw")
	p, err := Build(context.Background(), dualConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{4, 6} {
		tool := map[int]string{4: "iptables", 6: "ip6tables"}[fam]
		var b bytes.Buffer
		if err := p.WriteIptables(&b, fam); err != nil {
			t.Fatal(err)
		}
		cmd := h.Command(tool + "-restore")
		cmd.Stdin = &b
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s-restore: %v\n%s\ninput:\n%s", tool, err, out, b.String())
		}
		saved := h.Run(t, tool+"-save", "-t", "filter")
		if got, want := comments(saved), expectedLabels(p, fam); !slices.Equal(got, want) {
			t.Fatalf("%s-save lists\n%s\nwant\n%s\n%s", tool, strings.Join(got, "\n"), strings.Join(want, "\n"), saved)
		}
		for _, want := range []string{":INPUT DROP", ":OUTPUT DROP"} {
			if !strings.Contains(saved, want) {
				t.Errorf("%s-save lacks %q", tool, want)
			}
		}
	}
}

// pf cannot be loaded on Linux: check that each rule says what the flow
// needs — direction, family, protocol, addresses and ports — in pf's
// grammar.
func TestPF(t *testing.T) {
	p, err := Build(context.Background(), dualConfig())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WritePF(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if !slices.Contains(lines, "block all") || !slices.Contains(lines, "set skip on lo0") {
		t.Fatalf("pf output lacks the default block:\n%s", out)
	}
	rule := regexp.MustCompile(`^pass (in|out) quick( on \S+)?( inet6?)? proto (\w+) (?:from (\S+|\{[^}]+\}) to (\S+|\{[^}]+\}) port (\S+|\{[^}]+\})|all(?: icmp6-type \{[^}]+\})? allow-opts) # (vigil .+)$`)
	var got []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "pass ") || strings.Contains(l, "neighbour discovery") {
			continue
		}
		m := rule.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a pf rule of the expected grammar: %q", l)
		}
		got = append(got, m[8])
	}
	slices.Sort(got)
	if want := expectedLabels(p, 0); !slices.Equal(got, want) {
		t.Fatalf("pf rules\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, want := range []string{
		"pass out quick inet6 proto udp from any to ff15::8192 port 8192 # vigil commands",
		"pass in quick inet proto tcp from 10.77.0.0/16 to 10.77.0.2 port 30000:30009 # vigil definitions (FTP passive data)",
		"pass out quick inet proto tcp from any to 10.77.0.2 port 1024:65535 # vigil definitions (FTP passive data)",
		"pass out quick inet6 proto tcp from any to fd77:1::2 port 80 # vigil definitions (HTTP)",
		"pass in quick on vgl0 inet6 proto icmp6 all icmp6-type { 130, 131, 132, 143 } allow-opts # vigil commands (membership)",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("pf output lacks %q:\n%s", want, out)
		}
	}
}

// Every flow names the setting it comes from (what vigil doctor checks),
// and that setting, which may be a URL with credentials, stays out of JSON.
func TestFlowTargets(t *testing.T) {
	t.Parallel()
	c := fullConfig()
	c.Agent.LiveUpdateServers = append(c.Agent.LiveUpdateServers, "http://user:secret@10.77.0.3/")
	p, err := Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"server " + FlowAgentAPI: ":8080", "server " + FlowAdmin: "127.0.0.1:8081", "server " + FlowCommands: "239.255.81.92:8192",
		"agent " + FlowAgentAPI: "http://10.77.0.1:8080/vigil", "agent " + FlowCommands: "239.255.81.92:8192",
		"mirror " + FlowDNS: "http://198.51.100.7:8080/repo", "mirror " + FlowMirrorSync: "http://198.51.100.7:8080/repo", "mirror " + FlowSelfUpdate: "http://198.51.100.7:8080/repo",
	}
	for _, f := range p.Flows {
		if f.Target == "" {
			t.Errorf("flow %s of %s has no Target", flowKey(f), f.Part)
		}
		if w, ok := want[f.Part+" "+f.ID]; ok && f.Target != w {
			t.Errorf("flow %s of %s: Target %q, want %q", flowKey(f), f.Part, f.Target, w)
		}
		if f.Part == "mirror" && f.Resolver != "10.0.0.53:53" {
			t.Errorf("flow %s of the mirror: Resolver %q", flowKey(f), f.Resolver)
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("secret")) || bytes.Contains(b, []byte(`"Target"`)) {
		t.Fatalf("JSON holds the flows' targets: %s", b)
	}
}
