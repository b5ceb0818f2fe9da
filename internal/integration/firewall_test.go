//go:build linux

package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// firewallHost is a lab host whose firewall holds only the rules that
// vigil ports generated for its role.
type firewallHost struct {
	h      *netlab.Host
	pl     place
	script string // the generated nftables script
	format string // "nft" or "iptables"
}

// generate runs vigil ports inside the host for the parts' files and
// loads the result as the host's whole firewall.
func (fh *firewallHost) generate(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := fh.pl.command(ctx, append([]string{"ports", "-format", fh.format}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: vigil ports %s: %v\n%s", fh.h.Name, strings.Join(args, " "), err, stderr.String())
	}
	fh.script = string(out)
	fh.load(t, fh.script)
}

func (fh *firewallHost) load(t *testing.T, script string) {
	t.Helper()
	if fh.format == "nft" {
		fh.h.Nft(t, script)
		return
	}
	// -w: wait for the xtables lock, which the legacy backend holds
	// across namespaces, should another lab be loading rules.
	cmd := fh.h.Command("iptables-restore", "-w")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: iptables-restore: %v\n%s", fh.h.Name, err, out)
	}
}

var ruleLabel = regexp.MustCompile(`"vigil ([^"]+)"`)

// rules are the generated rule lines and their labels ("agent-api",
// "definitions (FTP passive data)", …).
func (fh *firewallHost) rules() (lines []int, labels []string) {
	for i, l := range strings.Split(fh.script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if m := ruleLabel.FindStringSubmatch(l); m != nil {
			lines = append(lines, i)
			labels = append(labels, m[1])
		}
	}
	return lines, labels
}

// without is the script with line i removed.
func (fh *firewallHost) without(i int) string {
	ls := strings.Split(fh.script, "\n")
	return strings.Join(append(ls[:i:i], ls[i+1:]...), "\n")
}

// doctor runs vigil doctor in a host and returns its exit code and output.
func doctor(t *testing.T, pl place, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := pl.command(ctx, append([]string{"doctor"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("vigil doctor: %v", err)
		}
	}
	return code, string(out)
}

// TestFirewallFromPorts builds a server, a LiveUpdate server and two
// agents on separate lab hosts whose firewalls drop everything except what
// `vigil ports --format nft` generated for each host's role, on a switch
// that snoops IGMP like a managed one (so the agents' IGMP rules matter). The whole system works through
// them — enrollment, multicast commands, updates over FTP and over HTTP —
// and vigil doctor says so. Then each generated rule in turn is removed:
// the flow it serves fails and vigil doctor, run where that flow starts
// or ends, names it.
func TestFirewallFromPorts(t *testing.T) {
	t.Parallel()
	testFirewall(t, "nft")
}

// TestFirewallFromPortsIptables is the same system with the rules vigil
// ports wrote for iptables-restore.
func TestFirewallFromPortsIptables(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "iptables-restore", "iptables")
	testFirewall(t, "iptables")
}

func testFirewall(t *testing.T, format string) {
	netlab.RequireNft(t)
	lab := netlab.New(t)
	lab.SnoopMulticast(t)
	srvH, luH, ftpH, httpH := lab.AddHost("server"), lab.AddHost("liveupdate"), lab.AddHost("agentftp"), lab.AddHost("agenthttp")
	hosts := map[string]*firewallHost{}
	for _, h := range []*netlab.Host{srvH, luH, ftpH, httpH} {
		hosts[h.Name] = &firewallHost{h: h, pl: hostPlace(h), format: format}
	}
	dir := t.TempDir()
	const (
		group   = "239.255.81.92"
		port    = 8192
		passive = "30000-30009"
	)

	// The vendor's repository with one definitions release.
	r, err := publish.Init(filepath.Join(dir, "vendor"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("2026112601", map[string][]byte{
		"vigil-test.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}

	// Each part's preference file, in its usual form.
	writeFile := func(name string, v map[string]any) string {
		b, err := plist.Marshal(v, plist.XMLFormat)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dataDir := filepath.Join(dir, "server")
	srvPlist := writeFile("server.plist", map[string]any{
		"DataDir": dataDir, "Listen": srvH.IP4.String() + ":8080", "AdminListen": "127.0.0.1:8081",
		"Group": group, "Port": port, "Interface": srvH.Ifname, "TTL": 1,
		"BeaconInterval": "1s", "Spread": "200ms", "CheckinInterval": 5,
	})
	luPlist := writeFile("liveupdate.plist", map[string]any{
		"Root": r.PublicDir(), "HTTP": luH.IP4.String() + ":80", "FTP": luH.IP4.String() + ":21",
		"PassivePorts": passive,
	})
	hosts["server"].generate(t, "-server", srvPlist)
	hosts["liveupdate"].generate(t, "-liveupdate", luPlist)

	srv := hosts["server"].pl.start(t, "server", "server", "-config", srvPlist)
	srv.WaitLog(t, "server listening", 30*time.Second)
	lu := hosts["liveupdate"].pl.start(t, "liveupdate", "liveupdate", "-config", luPlist)
	lu.WaitLog(t, "serving FTP", 30*time.Second)

	f := &fleet{t: t, admin: hosts["server"].pl, adminURL: "http://127.0.0.1:8081", dataDir: dataDir, startedAt: time.Now()}
	nodeComm := "http://" + srvH.IP4.String() + ":8080/vigil"
	agentPlists := map[string]string{}
	for _, a := range []struct {
		h   *netlab.Host
		url string
	}{{ftpH, "ftp://" + luH.IP4.String() + "/"}, {httpH, "http://" + luH.IP4.String() + "/"}} {
		m := f.addMember(a.h.Name, hostPlace(a.h), nodeComm, group, port, a.h.Ifname)
		p, err := prefs.Load(m.plist)
		if err != nil {
			t.Fatal(err)
		}
		p.LiveUpdateServers = []string{a.url}
		p.RepositoryRoot = r.RootPath()
		p.DefinitionsDirectory = filepath.Join(filepath.Dir(m.plist), "definitions")
		if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
			t.Fatal(err)
		}
		agentPlists[a.h.Name] = m.plist
		hosts[a.h.Name].generate(t, "-agent", m.plist, "-ftp-passive-ports", passive)
	}
	for _, m := range f.members {
		f.startAgent(m)
	}
	f.learnIDs()
	f.logf("lab %s (%s rules): server %s, liveupdate %s, agents %s (FTP) and %s (HTTP)", lab.ID(), format, srvH.IP4, luH.IP4, ftpH.IP4, httpH.IP4)

	// The whole system works through the generated firewalls.
	f.send(command.Target{All: true}, "ping")
	f.send(command.Target{All: true}, "update")
	f.waitResults(90 * time.Second)
	// The new version reaches the server with each agent's next check-in.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		var behind []string
		for _, a := range f.agentInfo() {
			if a.DefsVer != "2026112601" {
				behind = append(behind, a.Hostname+" at "+a.DefsVer)
			}
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents report other definitions than 2026112601 after the update: %s", strings.Join(behind, ", "))
		}
	}

	// vigil doctor agrees, on every host. The switch's querier takes
	// charge some seconds after the lab starts: until then multicast is
	// not forwarded, so the agents' first check may wait for it.
	doctorArgs := map[string][]string{
		"server":     {"-server", srvPlist},
		"liveupdate": {"-liveupdate", luPlist},
		"agentftp":   {"-agent", agentPlists["agentftp"], "-wait", "3s", "-timeout", "2s"},
		"agenthttp":  {"-agent", agentPlists["agenthttp"], "-wait", "3s", "-timeout", "2s"},
	}
	for name, args := range doctorArgs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, out := doctor(t, hosts[name].pl, args...)
			if code == 0 {
				f.logf("vigil doctor on %s:\n%s", name, out)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("vigil doctor on %s fails with every generated rule loaded (exit %d):\n%s", name, code, out)
			}
			time.Sleep(time.Second)
		}
	}

	// Each generated rule, removed alone, breaks its flow, and vigil
	// doctor names the flow.
	type where struct{ host, step string }
	// checkedBy says where the failure shows: the agent whose flow the
	// rule serves, and the word of the doctor line that names the step.
	checkedBy := func(host, label string) []where {
		switch {
		case strings.HasPrefix(label, "agent-api"), label == "commands":
			if host == "server" {
				return []where{{"agentftp", ""}, {"agenthttp", ""}}
			}
			return []where{{host, ""}}
		case label == "commands (membership)":
			return []where{{host, ""}}
		case strings.Contains(label, "FTP control"):
			return []where{{"agentftp", "control"}}
		case strings.Contains(label, "FTP passive data"):
			return []where{{"agentftp", "passive"}}
		case strings.Contains(label, "HTTP"):
			return []where{{"agenthttp", "http"}}
		}
		t.Fatalf("host %s: no check known for rule %q", host, label)
		return nil
	}
	for _, name := range []string{"server", "liveupdate", "agentftp", "agenthttp"} {
		fh := hosts[name]
		lines, labels := fh.rules()
		if len(lines) == 0 {
			t.Fatalf("%s: no rules in the generated script:\n%s", name, fh.script)
		}
		for i, line := range lines {
			label := labels[i]
			fh.load(t, fh.without(line))
			membership := label == "commands (membership)"
			if membership {
				// Without IGMP out, the host's reports are dropped; without
				// IGMP in, it never hears the queries that prompt them.
				// Either way its membership expires on the switch (and
				// vigil doctor's join, on a host already a member, reports
				// nothing new).
				time.Sleep(netlab.MembershipTimeout + time.Second)
			}
			for _, w := range checkedBy(name, label) {
				flow := strings.SplitN(label, " ", 2)[0]
				code, out := doctor(t, hosts[w.host].pl, doctorArgs[w.host]...)
				if code == 0 || !failNames(out, flow, w.step) {
					t.Errorf("%s without rule %q: vigil doctor on %s exits %d and does not name flow %s (%s) as failing:\n%s",
						name, label, w.host, code, flow, w.step, out)
				} else {
					f.logf("%s without rule %q: vigil doctor on %s: %s", name, label, w.host, failLines(out))
				}
			}
			fh.load(t, fh.script)
			if membership {
				time.Sleep(2 * time.Second) // the next query brings the membership back
			}
		}
	}
	f.stopAgents()
}

// failNames reports whether doctor output has a failing line for flow
// whose text mentions step (any, if step is "").
func failNames(out, flow, step string) bool {
	for _, l := range strings.Split(out, "\n") {
		fs := strings.Fields(l)
		if len(fs) >= 2 && fs[0] == "FAIL" && fs[1] == flow && strings.Contains(strings.ToLower(l), step) {
			return true
		}
	}
	return false
}

func failLines(out string) string {
	var fl []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FAIL") {
			fl = append(fl, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(fl, " | ")
}
