package doctor

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// partVariants are configurations of each part, with addresses only (no
// resolution), covering every kind of flow ports builds.
var partVariants = struct {
	server     []*config.Server
	agent      []*prefs.Agent
	liveUpdate []*config.LiveUpdate
	mirror     []*config.Mirror
	relay      []*config.Relay
}{
	server: []*config.Server{
		{Listen: ":8080", AdminListen: "127.0.0.1:8081", Group: group, Port: 8192, TTL: 1, Store: "postgres:///vigil?host=/run/postgresql"},
		{Listen: "10.77.0.1:8443", TLSCert: "cert.pem", AdminListen: ":8081", Group: netip.MustParseAddr("ff15::8192"), Port: 9000, TTL: 4, Interface: "eth1",
			Store: "postgres://vigil:hunter2@10.77.0.9:5433,10.77.0.10:5432/vigil"},
	},
	agent: []*prefs.Agent{
		{NodeCommURL: "http://10.77.0.1:8080/vigil", MulticastAddress: group.String(), MulticastPort: 8192, MulticastInterface: "vgl0",
			LiveUpdateServers: []string{"ftp://10.77.0.2/", "http://10.77.0.2:8000/", "https://203.0.113.9/repo", "ftp://user:hunter2@10.77.0.4/"}},
		{NodeCommURL: "https://[fd77:1::1]/v", MulticastAddress: "ff15::8192", MulticastPort: 8192,
			LiveUpdateServers: []string{"ftp://[fd77:1::2]:2121/", "ftp://[fd77:1::2]:2121/"}},
	},
	liveUpdate: []*config.LiveUpdate{
		{HTTPAddr: ":80", FTPAddr: "10.77.0.2:21", PassivePorts: config.PortRange{Lo: 30000, Hi: 30009}},
		{FTPAddr: ":2121"},
		{HTTPAddr: "127.0.0.1:8000"},
	},
	mirror: []*config.Mirror{
		{Upstream: "http://198.51.100.7:8080/repo", Resolver: "10.0.0.53:53"},
		{Upstream: "ftp://198.51.100.7/repo", Resolver: "[fd00::53]:53"},
	},
	relay: []*config.Relay{
		{Server: "http://10.77.0.1:8080/vigil", Group: group, Port: 8192, Interface: "vgl1", TTL: 1},
		{Server: "https://[fd77:1::1]/v", Group: netip.MustParseAddr("ff15::8192"), Port: 8192, TTL: 2,
			Upstream: "ftp://[fd77:1::2]:2121/repo", RootFile: "/etc/vigil/1.root.json", FTPAddr: ":2121", HTTPAddr: "[fd78::1]:80", MetricsListen: "127.0.0.1:9464"},
		{Server: "http://10.77.0.1:8080/vigil", Group: group, Port: 8193, TTL: 1,
			Upstream: "https://user:hunter2@203.0.113.9/repo", HTTPAddr: ":8000", PassivePorts: config.PortRange{Lo: 30000, Hi: 30009}, MetricsListen: ":9464"},
	},
}

// notCheckedKind reports why a flow is documented as not checked from
// the machine it is configured on, or "" for a flow that is checked.
func notCheckedKind(f ports.Flow) string {
	switch {
	case f.Part == ports.PartAllow:
		return NotCheckedAllowed
	case f.Part == config.PartServer && f.ID == ports.FlowCommands:
		return NotCheckedServerCommands
	case (f.Part == config.PartLiveUpdate || f.Part == config.PartRelay) && f.ID == ports.FlowDefinitions && f.Step == "FTP passive data":
		return NotCheckedPassiveData
	}
	return ""
}

// One flow, one rule, one check: every flow of every plan — every
// combination of parts, in each variant, with and without -allow — is
// covered by exactly one check, which runs, or says why not for exactly
// the flows documented as not checked from this machine.
func TestChecksCoverEveryFlow(t *testing.T) {
	t.Parallel()
	allow, err := ports.ParseAllowed("tcp/22@10.0.9.0/24")
	if err != nil {
		t.Fatal(err)
	}
	agentPrefs := &prefs.Agent{StateDirectory: t.TempDir()}
	plans := 0
	for mask := 1; mask < 32; mask++ {
		for v := range 3 {
			for _, withAllow := range []bool{false, true} {
				var c ports.Config
				if mask&1 != 0 {
					c.Server = partVariants.server[v%len(partVariants.server)]
				}
				if mask&2 != 0 {
					c.Agent = partVariants.agent[v%len(partVariants.agent)]
				}
				if mask&4 != 0 {
					c.LiveUpdate = partVariants.liveUpdate[v%len(partVariants.liveUpdate)]
				}
				if mask&8 != 0 {
					c.Mirror = partVariants.mirror[v%len(partVariants.mirror)]
				}
				if mask&16 != 0 {
					c.Relay = partVariants.relay[v%len(partVariants.relay)]
				}
				if withAllow {
					c.Allow = []ports.Allowed{allow}
				}
				name := fmt.Sprintf("parts %05b variant %d allow %v", mask, v, withAllow)
				plan, err := ports.Build(context.Background(), c)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				plans++
				checks, err := Checks(plan, Config{Agent: agentPrefs, MirrorRoot: []byte("{}"), Relay: c.Relay})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				assertCovered(t, name, plan, checks)
			}
		}
	}
	if plans != 31*3*2 {
		t.Fatalf("%d plans built", plans)
	}
}

func assertCovered(t *testing.T, name string, plan *ports.Plan, checks []Check) {
	t.Helper()
	// The flows of the checks, in order, are the plan's flows as a
	// multiset: none left out, none covered twice.
	count := map[string]int{}
	for _, f := range plan.Flows {
		count[fmt.Sprintf("%#v", f)]++
	}
	for _, ck := range checks {
		if len(ck.Flows) == 0 {
			t.Errorf("%s: check %s %s covers no flow", name, ck.Flow, ck.Target)
		}
		if (ck.run == nil) == (ck.NotChecked == "") {
			t.Errorf("%s: check %s %s: runs %v, not checked %q: want exactly one", name, ck.Flow, ck.Target, ck.run != nil, ck.NotChecked)
		}
		if strings.Contains(ck.Target, "hunter2") {
			t.Errorf("%s: check target shows a password: %s", name, ck.Target)
		}
		for _, f := range ck.Flows {
			k := fmt.Sprintf("%#v", f)
			if count[k] == 0 {
				t.Errorf("%s: check %s %s covers a flow not in the plan, or one covered already: %s", name, ck.Flow, ck.Target, k)
			}
			count[k]--
			if want := notCheckedKind(f); ck.NotChecked != want {
				t.Errorf("%s: flow %s of %s (%s): not checked %q, want %q", name, f.ID, f.Part, f.Step, ck.NotChecked, want)
			}
			if f.Part != ck.Part {
				t.Errorf("%s: check of part %s covers flow %s of part %s", name, ck.Part, f.ID, f.Part)
			}
		}
	}
	for k, n := range count {
		if n != 0 {
			t.Errorf("%s: flow has no check: %s", name, k)
		}
	}
}

// A flow doctor has no check for is an error, not a silent gap; so are
// the settings a plan's checks need but were not given.
func TestChecksRefuse(t *testing.T) {
	t.Parallel()
	newFlow := &ports.Plan{Flows: []ports.Flow{{ID: "relay", Part: config.PartServer, Target: ":9000", Why: "a relay"}}}
	if _, err := Checks(newFlow, Config{}); err == nil || !strings.Contains(err.Error(), "no check for flow relay") {
		t.Errorf("unknown flow: %v", err)
	}
	plan, err := ports.Build(context.Background(), ports.Config{Agent: partVariants.agent[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Checks(plan, Config{}); err == nil || !strings.Contains(err.Error(), "agent preferences") {
		t.Errorf("agent without preferences: %v", err)
	}
	plan, err = ports.Build(context.Background(), ports.Config{Mirror: partVariants.mirror[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Checks(plan, Config{}); err == nil || !strings.Contains(err.Error(), "mirror root") {
		t.Errorf("mirror without root: %v", err)
	}
	plan, err = ports.Build(context.Background(), ports.Config{Relay: partVariants.relay[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Checks(plan, Config{}); err == nil || !strings.Contains(err.Error(), "no relay configuration") {
		t.Errorf("relay without its configuration: %v", err)
	}
	newRelayFlow := &ports.Plan{Flows: []ports.Flow{{ID: "gossip", Part: config.PartRelay, Target: ":9000", Why: "relays talk"}}}
	if _, err := Checks(newRelayFlow, Config{Relay: partVariants.relay[0]}); err == nil || !strings.Contains(err.Error(), "no check for flow gossip of part relay") {
		t.Errorf("unknown relay flow: %v", err)
	}
	if _, err := Checks(nil, Config{}); err == nil {
		t.Error("no plan: no error")
	}
}

// Run runs a server's and a LiveUpdate server's checks and returns their
// results in the plan's order, with nothing for the flows not checked.
func TestRunInPlanOrder(t *testing.T) {
	t.Parallel()
	live, dead := testenv.AcceptingAddr(t), testenv.ClosedAddr(t)

	plan, err := ports.Build(context.Background(), ports.Config{
		Server:     &config.Server{Listen: live, AdminListen: dead, Group: group, Port: 8192},
		LiveUpdate: &config.LiveUpdate{FTPAddr: dead, HTTPAddr: live},
	})
	if err != nil {
		t.Fatal(err)
	}
	checks, err := Checks(plan, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 6 {
		t.Fatalf("%d checks, want 6 (agent-api, admin, commands, FTP control, FTP passive data, HTTP)", len(checks))
	}
	res := Run(context.Background(), checks)
	if len(res) != 4 {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	check(t, res[0], true, ports.FlowAgentAPI, live+" (listening)", "accepts TCP connections")
	check(t, res[1], false, ports.FlowAdmin, dead, "connection refused")
	check(t, res[2], false, ports.FlowDefinitions, dead, "connection refused")
	check(t, res[3], true, ports.FlowDefinitions, live+" (listening)")
}

// An agent's checks built from its plan: the agent API with its
// credential, the multicast group with the pinned key, and each
// LiveUpdate server over FTP and HTTP with the metadata verified; then a
// missing RepositoryRoot is reported by each LiveUpdate server's check.
func TestChecksAgentPlan(t *testing.T) {
	t.Parallel()
	l := startServer(t)
	dir := l.enroll(t)
	r := vendorRepo(t, publish.Options{})
	s := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: r.PublicDir(),
	},
	})
	p := &prefs.Agent{
		MulticastAddress: group.String(), MulticastPort: l.port, MulticastInterface: testenv.Loopback(t),
		NodeCommURL: l.url, ServerPublicKey: base64.StdEncoding.EncodeToString(l.srv.PublicKey()),
		StateDirectory: dir, LiveUpdateServers: []string{s.FTPURL, s.HTTPURL}, RepositoryRoot: r.RootPath(),
	}
	plan, err := ports.Build(context.Background(), ports.Config{Agent: &prefs.Agent{
		NodeCommURL: p.NodeCommURL, MulticastAddress: group.String(), MulticastPort: p.MulticastPort, MulticastInterface: p.MulticastInterface,
		LiveUpdateServers: p.LiveUpdateServers,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	checks, err := Checks(plan, Config{Agent: p, Wait: 5 * time.Second, Options: Options{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	res := Run(ctx, checks)
	var b bytes.Buffer
	Write(&b, res)
	t.Logf("\n%s", b.String())
	if len(res) != 1+1+3+2 || Failed(res) {
		t.Fatalf("%d results, failed %v", len(res), Failed(res))
	}
	for i, want := range []string{ports.FlowAgentAPI, ports.FlowCommands, ports.FlowDefinitions, ports.FlowDefinitions, ports.FlowDefinitions, ports.FlowDefinitions, ports.FlowDefinitions} {
		if res[i].Flow != want {
			t.Errorf("result %d: flow %s, want %s", i, res[i].Flow, want)
		}
	}
	check(t, res[1], true, ports.FlowCommands, "signed beacon")
	check(t, res[2], true, ports.FlowDefinitions, "(control)")
	check(t, res[5], true, ports.FlowDefinitions, "(timestamp.json)")

	p.RepositoryRoot = filepath.Join(t.TempDir(), "missing.json")
	checks, err = Checks(plan, Config{Agent: p, Wait: 5 * time.Second, Options: Options{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	var defs []Check
	for _, ck := range checks {
		if ck.Flow == ports.FlowDefinitions {
			defs = append(defs, ck)
		}
	}
	res = Run(ctx, defs)
	if len(res) != 2 {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	check(t, res[0], false, ports.FlowDefinitions, "RepositoryRoot", "missing.json")
	check(t, res[1], false, ports.FlowDefinitions, "RepositoryRoot", "missing.json")
}
