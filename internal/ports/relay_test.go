package ports

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// relayConfig is a relay with its defaults, streaming from a server at an
// address (no resolution) and multicasting on vgl1; no cache, no metrics.
func relayConfig() *config.Relay {
	r := config.DefaultRelay()
	r.Server = "http://10.77.0.1:8080/vigil"
	r.Interface = "vgl1"
	return &r
}

// A relay's flows and the firewall rules they give, for each shape of
// relay: stream only, with a cache (FTP and HTTP listeners, the fill from
// the upstream), with metrics, with an IPv6 group.
func TestBuildRelay(t *testing.T) {
	t.Parallel()
	stream := relayConfig()

	cache := relayConfig()
	cache.Upstream = "ftp://10.77.0.2/repo"
	cache.RootFile = "/etc/vigil/1.root.json"
	cache.FTPAddr = "10.77.9.1:21"
	cache.PassivePorts = config.PortRange{Lo: 30000, Hi: 30009}

	httpsCache := relayConfig()
	httpsCache.Upstream = "https://user:hunter2@203.0.113.9/repo"
	httpsCache.FTPAddr = ""
	httpsCache.HTTPAddr = ":8000"

	metrics := relayConfig()
	metrics.MetricsListen = ":9464"
	localMetrics := relayConfig()
	localMetrics.MetricsListen = "127.0.0.1:9464"

	v6 := relayConfig()
	v6.Server = "https://[fd77:1::1]/v"
	v6.Group = netip.MustParseAddr("ff15::8192")
	v6.Port = 9000
	v6.Interface = ""
	v6.TTL = 3

	tests := []struct {
		name  string
		r     *config.Relay
		flows []string
		rules []string // chain: nft rule
	}{
		{"stream only", stream, []string{
			"out agent-api tcp 8080 10.77.0.1",
			"out commands udp 8192 239.255.81.92",
		}, []string{
			`output: ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
			`output: oifname "vgl1" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
		}},
		{"with cache", cache, []string{
			"out agent-api tcp 8080 10.77.0.1",
			"out commands udp 8192 239.255.81.92",
			"in definitions tcp 21 10.77.9.1 [FTP control]",
			"in definitions tcp 30000-30009 10.77.9.1 [FTP passive data]",
			"in definitions tcp 80  [HTTP]",
			"out cache-fill tcp 21 10.77.0.2 [FTP control]",
			"out cache-fill tcp 1024-65535 10.77.0.2 [FTP passive data]",
		}, []string{
			`output: ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
			`output: oifname "vgl1" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
			`input: ip daddr 10.77.9.1 tcp dport 21 accept comment "vigil definitions (FTP control)"`,
			`input: ip daddr 10.77.9.1 tcp dport 30000-30009 accept comment "vigil definitions (FTP passive data)"`,
			`input: tcp dport 80 accept comment "vigil definitions (HTTP)"`,
			`output: ip daddr 10.77.0.2 tcp dport 21 accept comment "vigil cache-fill (FTP control)"`,
			`output: ip daddr 10.77.0.2 tcp dport 1024-65535 accept comment "vigil cache-fill (FTP passive data)"`,
		}},
		{"with an HTTPS upstream and HTTP only", httpsCache, []string{
			"out agent-api tcp 8080 10.77.0.1",
			"out commands udp 8192 239.255.81.92",
			"in definitions tcp 8000  [HTTP]",
			"out cache-fill tcp 443 203.0.113.9 [HTTPS]",
		}, []string{
			`output: ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
			`output: oifname "vgl1" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
			`input: tcp dport 8000 accept comment "vigil definitions (HTTP)"`,
			`output: ip daddr 203.0.113.9 tcp dport 443 accept comment "vigil cache-fill (HTTPS)"`,
		}},
		{"with metrics", metrics, []string{
			"out agent-api tcp 8080 10.77.0.1",
			"out commands udp 8192 239.255.81.92",
			"in metrics tcp 9464 ",
		}, []string{
			`output: ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
			`output: oifname "vgl1" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
			`input: tcp dport 9464 accept comment "vigil metrics"`,
		}},
		{"with metrics on loopback", localMetrics, []string{
			"out agent-api tcp 8080 10.77.0.1",
			"out commands udp 8192 239.255.81.92",
			"in metrics tcp 9464 127.0.0.1 loopback",
		}, []string{
			`output: ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
			`output: oifname "vgl1" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
		}},
		{"IPv6 group", v6, []string{
			"out agent-api tcp 443 fd77:1::1",
			"out commands udp 9000 ff15::8192",
		}, []string{
			`output: ip6 daddr fd77:1::1 tcp dport 443 accept comment "vigil agent-api"`,
			`output: ip6 daddr ff15::8192 udp dport 9000 accept comment "vigil commands"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(context.Background(), Config{Relay: tt.r})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Parts, []string{config.PartRelay}) {
				t.Errorf("parts %v", p.Parts)
			}
			var got []string
			for _, f := range p.Flows {
				got = append(got, flowKey(f))
				if f.Part != config.PartRelay || f.Target == "" {
					t.Errorf("flow %s: part %q, target %q", flowKey(f), f.Part, f.Target)
				}
			}
			if !slices.Equal(got, tt.flows) {
				t.Fatalf("flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.flows, "\n"))
			}
			var rules []string
			for _, r := range p.Rules() {
				rules = append(rules, r.Chain+": "+r.nft())
			}
			if !slices.Equal(rules, tt.rules) {
				t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(rules, "\n"), strings.Join(tt.rules, "\n"))
			}
		})
	}
}

// What the relay's flows say besides ports and addresses: the multicast
// section with the relay's TTL, the notes (TTL 0, no passive range), the
// URL's password kept out of everything printed, and each flow's Target.
func TestBuildRelayNotesAndTargets(t *testing.T) {
	t.Parallel()
	r := relayConfig()
	r.TTL = 0
	r.Upstream = "http://user:hunter2@10.77.0.2:8080/repo"
	r.MetricsListen = "10.77.9.1:9464"
	p, err := Build(context.Background(), Config{Relay: r})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(p.Notes, "\n")
	for _, want := range []string{"the relay's multicast TTL is 0", "the relay's cache has no passive port range (PassivePorts)"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if mc := strings.Join(p.Multicast, "\n"); !strings.Contains(mc, "group 239.255.81.92, UDP port 8192, TTL 0 (set on the relay), on interface vgl1") {
		t.Errorf("multicast section:\n%s", mc)
	}
	want := map[string]string{
		FlowAgentAPI: r.Server, FlowCommands: "239.255.81.92:8192", FlowCacheFill: r.Upstream, FlowMetrics: r.MetricsListen,
	}
	for _, f := range p.Flows {
		if w, ok := want[f.ID]; ok && f.Target != w {
			t.Errorf("flow %s: Target %q, want %q", flowKey(f), f.Target, w)
		}
	}
	var b bytes.Buffer
	if err := p.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	for _, want := range []string{
		"Vigil network flows of this machine (relay)",
		"GET /v1/relay/stream (Server http://10.77.0.1:8080/vigil)",
		"group 239.255.81.92 (agents of this subnet) on vgl1",
		"re-sent verbatim by multicast on this subnet, TTL 0",
		"definitions (FTP passive data)", "cache-fill (HTTP)", "(Upstream http://10.77.0.2:8080/repo)",
		"metrics", "Prometheus",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "hunter2") {
		t.Errorf("table shows the upstream's password:\n%s", table)
	}
}

// -clients restricts the relay's cache like a LiveUpdate server's
// listeners, and -admins its metrics like the server's admin API; its
// outgoing flows are not restricted.
func TestBuildRelayRestrictsSources(t *testing.T) {
	t.Parallel()
	r := relayConfig()
	r.Upstream = "http://10.77.0.2/repo"
	r.FTPAddr = ""
	r.MetricsListen = ":9464"
	p, err := Build(context.Background(), Config{
		Relay:   r,
		Clients: []netip.Prefix{netip.MustParsePrefix("10.78.0.0/16")},
		Admins:  []netip.Prefix{netip.MustParsePrefix("10.0.9.0/24")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteNft(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`ip saddr 10.78.0.0/16 tcp dport 80 accept comment "vigil definitions (HTTP)"`,
		`ip saddr 10.0.9.0/24 tcp dport 9464 accept comment "vigil metrics"`,
		`ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
		`ip daddr 10.77.0.2 tcp dport 80 accept comment "vigil cache-fill (HTTP)"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft output lacks %q:\n%s", want, out)
		}
	}
}

func TestBuildRelayErrors(t *testing.T) {
	t.Parallel()
	mod := func(f func(r *config.Relay)) *config.Relay { r := relayConfig(); f(r); return r }
	tests := []struct {
		name string
		r    *config.Relay
		want string
	}{
		{"no server", mod(func(r *config.Relay) { r.Server = "" }), `relay: Server "": want http(s)://HOST[:PORT]/BASE`},
		{"server without scheme", mod(func(r *config.Relay) { r.Server = "10.77.0.1:8080" }), "relay: Server"},
		{"unicast group", mod(func(r *config.Relay) { r.Group = netip.MustParseAddr("10.1.2.3") }), "relay: Group 10.1.2.3 is not a multicast address"},
		{"bad port", mod(func(r *config.Relay) { r.Port = 70000 }), "relay: multicast Port 70000: want 1 to 65535"},
		{"bad TTL", mod(func(r *config.Relay) { r.TTL = 256 }), "relay: TTL 256"},
		{"upstream scheme", mod(func(r *config.Relay) { r.Upstream = "gopher://10.0.0.1/" }), `relay: Upstream "gopher://10.0.0.1/": want ftp://, http:// or https://`},
		{"cache on a name", mod(func(r *config.Relay) { r.Upstream = "http://10.0.0.1/"; r.HTTPAddr = "relay.example:80" }), "listen on an IP address"},
		{"metrics bad port", mod(func(r *config.Relay) { r.MetricsListen = ":99999" }), "metrics address (MetricsListen)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), Config{Relay: tt.r})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// A relay with every flow, beside a server on the same machine, loads as
// nftables and ip6tables rules into a network namespace, which lists every
// rule back.
func TestRelayRulesLoad(t *testing.T) {
	requireIptables(t)
	netlab.RequireNft(t)
	h := netlab.New(t).AddHost("fw")
	r := relayConfig()
	r.Server = "http://[fd77:1::1]:8080/vigil"
	r.Group = netip.MustParseAddr("ff15::8192")
	r.Upstream = "ftp://[fd77:1::2]/repo"
	r.PassivePorts = config.PortRange{Lo: 30000, Hi: 30009}
	r.MetricsListen = ":9464"
	p, err := Build(context.Background(), Config{Relay: r, Server: fullConfig().Server, Clients: []netip.Prefix{netip.MustParsePrefix("fd78::/16")}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteNft(&b); err != nil {
		t.Fatal(err)
	}
	h.Nft(t, b.String())
	listed := h.Run(t, "nft", "list", "table", "inet", "vigil")
	if got, want := comments(listed), expectedLabels(p, 0); !slices.Equal(got, want) {
		t.Fatalf("nft lists rules\n%s\nwant\n%s\nruleset:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), listed)
	}
	b.Reset()
	if err := p.WriteIptables(&b, 6); err != nil {
		t.Fatal(err)
	}
	cmd := h.Command("ip6tables-restore")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip6tables-restore: %v\n%s", err, out)
	}
	saved := h.Run(t, "ip6tables-save", "-t", "filter")
	if got, want := comments(saved), expectedLabels(p, 6); !slices.Equal(got, want) {
		t.Fatalf("ip6tables-save lists\n%s\nwant\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), saved)
	}
	for _, want := range []string{`vigil cache-fill (FTP passive data)`, `vigil metrics`, `vigil commands`} {
		if !strings.Contains(saved, want) {
			t.Errorf("ip6tables-save lacks %q", want)
		}
	}
}

// A running relay publishes its settings under its preference file's keys
// (the server's public key and the enrollment secret file left out, as
// flags named like secrets are); FindRunning finds them, and read back
// with the relay's flags they give the same flows as the relay's own
// configuration.
func TestRuntimeRelayRoundTrip(t *testing.T) {
	t.Parallel()
	r := relayConfig()
	r.Upstream = "http://10.77.0.2/repo"
	r.RootFile = "/etc/vigil/1.root.json"
	r.PassivePorts = config.PortRange{Lo: 30000, Hi: 30009}
	r.Groups = []string{"relays", "lab-b"}
	r.MetricsListen = "127.0.0.1:9464"
	r.ServerKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

	// The settings as the cli publishes them: every flag's value under
	// its key, integers as integers, but those named like a secret.
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	var published config.Relay
	published.RegisterFlags(fs)
	published = *r
	settings := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "server-key" || f.Name == "enroll-secret-file" {
			return
		}
		v := any(f.Value.String())
		if n, ok := f.Value.(flag.Getter).Get().(int); ok {
			v = int64(n)
		}
		settings[prefs.FlagKey(f.Name)] = v
	})
	data, err := plist.Marshal(settings, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	pub, err := Publish(dir, config.PartRelay, data)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Remove()
	running, note, err := FindRunning(dir, config.PartRelay)
	if err != nil || note != "" || running == nil || running.PID != os.Getpid() || running.Path != filepath.Join(dir, "relay.plist") {
		t.Fatalf("FindRunning = %+v, %q, %v", running, note, err)
	}

	fs = flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var back config.Relay
	back.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := prefs.ApplyFile(fs, running.Path); err != nil {
		t.Fatal(err)
	}
	if back.ServerKey != "" {
		t.Errorf("the server key was published: %q", back.ServerKey)
	}
	back.ServerKey = r.ServerKey
	if !slices.Equal(back.Groups, r.Groups) || back.Group != r.Group || back.PassivePorts != r.PassivePorts || back.Upstream != r.Upstream ||
		back.MetricsListen != r.MetricsListen || back.HTTPAddr != r.HTTPAddr || back.RepeatGap != r.RepeatGap {
		t.Fatalf("read back %+v\nwant %+v", back, *r)
	}
	want, err := Build(context.Background(), Config{Relay: r})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Build(context.Background(), Config{Relay: &back})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Flows) != len(want.Flows) || len(got.Flows) != 7 {
		t.Fatalf("%d flows from the published settings, %d from the relay's", len(got.Flows), len(want.Flows))
	}
	for i := range got.Flows {
		if flowKey(got.Flows[i]) != flowKey(want.Flows[i]) {
			t.Errorf("flow %d: %s, want %s", i, flowKey(got.Flows[i]), flowKey(want.Flows[i]))
		}
	}
	if err := pub.Remove(); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := FindRunning(dir, config.PartRelay); r != nil {
		t.Fatalf("found after Remove: %+v", r)
	}
}
