package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// noRuntime keeps the tests from reading the settings that parts running
// on this machine publish in the default runtime directory.
var noRuntime = map[string]string{"VIGIL_RUNTIME_DIR": "off"}

func agentPlist(t *testing.T, dir string, extra map[string]any) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{
		"NodeCommURL":     "http://10.77.0.1:8080/vigil",
		"ServerPublicKey": base64.StdEncoding.EncodeToString(pub),
		"StateDirectory":  filepath.Join(dir, "state"),
	}
	for k, x := range extra {
		v[k] = x
	}
	return writePlist(t, dir, "agent.plist", v)
}

func TestPortsCommand(t *testing.T) {
	dir := t.TempDir()
	agent := agentPlist(t, dir, map[string]any{
		"MulticastInterface": "lo",
		"LiveUpdateServers":  []string{"ftp://10.77.0.2/", "http://10.77.0.2/"},
		"RepositoryRoot":     filepath.Join(dir, "1.root.json"),
	})
	lu := writePlist(t, dir, "liveupdate.plist", map[string]any{"Root": dir, "PassivePorts": "30000-30009"})
	srv := writePlist(t, dir, "server.plist", map[string]any{"Listen": "10.77.0.1:8080", "TTL": 2})

	code, out, stderr := run(t, noRuntime, "ports", "-agent", agent, "-liveupdate", lu, "-server", srv)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"(server, agent, liveupdate)", "agent: " + agent,
		"definitions (FTP passive data)", "30000-30009", "1024-65535",
		"TTL 2 (set on the server)", "IGMP",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	code, out, stderr = run(t, noRuntime, "ports", "-agent", agent, "-format", "nft", "-ftp-passive-ports", "30000-30009")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"table inet vigil {", "policy drop",
		`ip daddr 10.77.0.2 tcp dport 30000-30009 accept comment "vigil definitions (FTP passive data)"`,
		`iifname "lo" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft output lacks %q:\n%s", want, out)
		}
	}

	// Without -allow the rules warn that SSH is not allowed; -allow keeps
	// ports open, repeatable and comma-separated.
	if !strings.Contains(out, "# WARNING: SSH (TCP 22) is NOT allowed") {
		t.Errorf("nft output does not warn about SSH:\n%s", out)
	}
	code, out, stderr = run(t, noRuntime, "ports", "-agent", agent, "-format", "nft", "-allow", "tcp/22@10.0.9.0/24,udp/161", "-allow", "out:udp/123")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		`ip saddr 10.0.9.0/24 tcp dport 22 accept comment "vigil allowed (tcp/22@10.0.9.0/24)"`,
		`udp dport 161 accept comment "vigil allowed (udp/161)"`,
		`udp dport 123 accept comment "vigil allowed (out:udp/123)"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft output with -allow lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "NOT allowed") {
		t.Errorf("nft output warns about SSH although -allow tcp/22 was given:\n%s", out)
	}

	code, out, stderr = run(t, noRuntime, "ports", "-liveupdate", lu, "-format", "iptables", "-clients", "10.77.0.0/16,192.0.2.7")
	if code != 0 || !strings.Contains(out, "-A INPUT -s 10.77.0.0/16,192.0.2.7 -p tcp --dport 80 ") {
		t.Errorf("-clients: exit %d, %s%s", code, out, stderr)
	}

	code, out, _ = run(t, noRuntime, "ports", "-liveupdate", lu, "-format", "json")
	var plan struct {
		Parts   []string          `json:"parts"`
		Sources map[string]string `json:"sources"`
		Flows   []struct{ Flow string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || len(plan.Flows) != 3 || plan.Sources["liveupdate"] != lu {
		t.Fatalf("exit %d, JSON %s", code, out)
	}
	for _, f := range []string{"iptables", "ip6tables", "pf"} {
		if code, out, stderr := run(t, noRuntime, "ports", "-liveupdate", lu, "-format", f); code != 0 || !strings.Contains(out, "definitions (HTTP)") {
			t.Errorf("-format %s: exit %d, %s%s", f, code, out, stderr)
		}
	}
}

func TestPortsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writePlist(t, dir, "bad.plist", map[string]any{"PassivePorts": "9-1", "Root": dir})
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-format", "yaml", "-liveupdate", bad}, 2, `-format "yaml"`},
		{[]string{"-liveupdate", bad}, 1, `key PassivePorts: want LOW-HIGH`},
		{[]string{"-agent", filepath.Join(dir, "none.plist")}, 1, "none.plist"},
		{[]string{"-liveupdate", bad, "extra"}, 2, "unexpected arguments"},
		{[]string{"-clients", "10.0.0.0/33", "-liveupdate", bad}, 2, "-clients"},
		{[]string{"-allow", "22", "-liveupdate", bad}, 2, `invalid value "22" for flag -allow`},
		{[]string{"-allow", "tcp/22,ssh", "-liveupdate", bad}, 2, `"ssh": no / between the protocol and the port`},
		{[]string{"-allow", "tcp/22@10.0.0.0/33", "-liveupdate", bad}, 2, "neither an IP address nor a network"},
		{[]string{"-allow", "icmp/8", "-liveupdate", bad}, 2, `protocol "icmp": want tcp or udp`},
	}
	for _, tt := range tests {
		code, _, stderr := run(t, noRuntime, append([]string{"ports"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("vigil ports %q: exit %d, stderr %q; want exit %d with %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}
