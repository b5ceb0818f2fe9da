package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// relayKey is a valid server key for relay.plist files whose server is
// not contacted.
const relayKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// vigil ports on a relay machine: relay.plist read as vigil relay reads
// it, its flows in the table, its rules in every format, -clients and
// -admins restricting its cache and metrics.
func TestPortsRelay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	relay := writePlist(t, dir, "relay.plist", map[string]any{
		"Server": "http://10.77.0.1:8080/vigil", "ServerKey": relayKey, "Interface": "lo", "TTL": 2,
		"Upstream": "ftp://10.77.0.2/repo", "Root": filepath.Join(dir, "1.root.json"), "PassivePorts": "30000-30009",
		"FTP": "10.78.0.5:21", "HTTP": ":8000", "MetricsListen": ":9464", "LogLevel": "debug",
	})
	code, out, stderr := run(t, noRuntime, "ports", "-relay", relay)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"(relay)", "relay: " + relay + " (preference file)",
		"GET /v1/relay/stream (Server http://10.77.0.1:8080/vigil)",
		"group 239.255.81.92 (agents of this subnet) on lo", "TTL 2 (set on the relay)",
		"definitions (FTP passive data)", "30000-30009", "cache-fill (FTP control)", "metrics",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	code, out, stderr = run(t, noRuntime, "ports", "-relay", relay, "-format", "nft", "-clients", "10.78.0.0/16", "-admins", "10.0.9.0/24", "-allow", "tcp/22")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		`ip daddr 10.77.0.1 tcp dport 8080 accept comment "vigil agent-api"`,
		`oifname "lo" ip daddr 239.255.81.92 udp dport 8192 accept comment "vigil commands"`,
		`ip saddr 10.78.0.0/16 ip daddr 10.78.0.5 tcp dport 30000-30009 accept comment "vigil definitions (FTP passive data)"`,
		`ip saddr 10.78.0.0/16 tcp dport 8000 accept comment "vigil definitions (HTTP)"`,
		`ip daddr 10.77.0.2 tcp dport 1024-65535 accept comment "vigil cache-fill (FTP passive data)"`,
		`ip saddr 10.0.9.0/24 tcp dport 9464 accept comment "vigil metrics"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"iptables", "ip6tables", "pf"} {
		if code, out, stderr := run(t, noRuntime, "ports", "-relay", relay, "-format", f); code != 0 || !strings.Contains(out, "vigil definitions (HTTP)") {
			t.Errorf("-format %s: exit %d, %s%s", f, code, out, stderr)
		}
	}
	code, out, _ = run(t, noRuntime, "ports", "-relay", relay, "-format", "json")
	var plan struct {
		Parts   []string          `json:"parts"`
		Sources map[string]string `json:"sources"`
		Flows   []struct{ Flow, Part string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || len(plan.Flows) != 8 || plan.Sources["relay"] != relay || plan.Flows[0].Part != "relay" {
		t.Fatalf("exit %d, JSON %s", code, out)
	}

	// relay.plist is checked as vigil relay checks it; the errors name the
	// key.
	for _, tt := range []struct {
		v    map[string]any
		want string
	}{
		{map[string]any{"Server": "10.77.0.1:8080", "ServerKey": relayKey}, "-server"},
		{map[string]any{"Server": "http://10.77.0.1/vigil", "ServerKey": "short"}, "-server-key"},
		{map[string]any{"Server": "http://10.77.0.1/vigil", "ServerKey": relayKey, "Upstream": "http://10.77.0.2/"}, "-root is required with -upstream"},
		{map[string]any{"Server": "http://10.77.0.1/vigil", "ServerKey": relayKey, "Grup": "239.1.2.3"}, `unknown key "Grup" (did you mean "Group"?)`},
	} {
		bad := writePlist(t, t.TempDir(), "relay.plist", tt.v)
		if code, _, stderr := run(t, noRuntime, "ports", "-relay", bad); code == 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("relay.plist %v: exit %d, stderr %q; want %q", tt.v, code, stderr, tt.want)
		}
	}
}

// vigil doctor on a relay machine, against a real server and a real
// LiveUpdate server on loopback: the server's agent API answers, signed
// datagrams arrive on the relay's group (here the server's own, on lo
// with TTL 0: the bytes a relay re-sends verbatim), the cache's
// listeners accept and its upstream serves metadata that verifies from
// the relay's root. Pointed at closed ports, each check fails, naming the
// address, and vigil doctor exits 1.
func TestDoctorRelay(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Server: config.Server{
		Repeat: 1, BeaconInterval: 100 * time.Millisecond, CheckInInterval: time.Hour, Spread: 10 * time.Millisecond,
	}})
	repo, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	up := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: repo.PublicDir()}})
	cacheHTTP, metrics := testenv.AcceptingAddr(t), testenv.AcceptingAddr(t)
	dir := t.TempDir()
	settings := map[string]any{
		"Server": ts.URL, "ServerKey": ts.PublicKeyBase64(),
		"Group": ts.Config.Group.String(), "Port": ts.Config.Port, "Interface": ts.Config.Interface, "TTL": 0,
		"Upstream": up.HTTPURL, "Root": repo.RootPath(), "HTTP": cacheHTTP, "FTP": "off", "MetricsListen": metrics,
		"StateDir": filepath.Join(dir, "state"),
	}
	good := writePlist(t, dir, "relay.plist", settings)
	code, out, stderr := run(t, noRuntime, "doctor", "-relay", good, "-wait", "10s", "-timeout", "2s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		"Read from relay: " + good + " (preference file)",
		"ok    agent-api    " + ts.URL + ": without the relay's own credential",
		"ok    commands     " + ts.Config.Group.String() + ":" + strconv.Itoa(ts.Config.Port) + " on " + ts.Config.Interface + ": signed beacon seq",
		"ok    definitions  " + cacheHTTP + " (listening): accepts TCP connections",
		"ok    cache-fill   " + up.HTTPURL + " (timestamp.json): GET metadata/timestamp.json: HTTP 200 OK",
		"ok    cache-fill   " + up.HTTPURL + " (metadata): verifies",
		"ok    metrics      " + metrics + " (listening): accepts TCP connections",
	}
	if len(lines) != len(want) {
		t.Fatalf("want %d lines:\n%s", len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to begin %q", i, lines[i], w)
		}
	}

	closed := testenv.ClosedAddr(t)
	settings["Server"] = "http://" + closed + "/vigil"
	settings["Upstream"] = "http://" + closed + "/repo"
	settings["HTTP"], settings["MetricsListen"] = closed, closed
	settings["Port"] = ts.Config.Port + 1
	bad := writePlist(t, dir, "bad.plist", settings)
	code, out, stderr = run(t, noRuntime, "doctor", "-relay", bad, "-wait", "300ms", "-timeout", "2s", "-json")
	if code != 1 || !strings.Contains(stderr, "5 of 5 checks failed") || !strings.Contains(stderr, "Read from relay: "+bad) {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	var res []struct {
		Flow   string `json:"flow"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 5 {
		t.Fatalf("JSON %s: %v", out, err)
	}
	for i, w := range []struct{ flow, detail string }{
		{"agent-api", "connect " + closed + ": connection refused"},
		{"commands", "no signed beacon within 300ms: is vigil relay running"},
		{"definitions", "connect " + closed + ": connection refused"},
		{"cache-fill", "connect " + closed + ": connection refused"},
		{"metrics", "connect " + closed + ": connection refused"},
	} {
		if res[i].Flow != w.flow || res[i].OK || !strings.Contains(res[i].Detail, w.detail) {
			t.Errorf("result %d: %+v, want a failed %s with %q", i, res[i], w.flow, w.detail)
		}
	}
}

// A running vigil relay publishes its settings (partSettings, as
// publishPart writes them): vigil ports reads them from the runtime
// directory and says so; nothing named like a secret is published, so
// vigil doctor checks the relay's flows but says that it needs the
// preference file to verify what the relay multicasts.
func TestRelayPublishedSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "enroll.secret")
	args := []string{
		// Loopback addresses only: doctor below connects to them.
		"-server", "http://127.0.0.1:1/vigil", "-server-key", relayKey, "-enroll-secret-file", secret,
		"-groups", "relays,lab-b", "-interface", "lo", "-ttl", "0", "-http", "127.0.0.1:8000", "-ftp", "off",
		"-upstream", "http://127.0.0.1:1/repo", "-root", filepath.Join(dir, "1.root.json"), "-metrics-listen", "127.0.0.1:9464",
		"-log-level", "debug",
	}
	data, err := partSettings(relayFlags, args)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if _, err := plist.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Config", "EnrollSecretFile"} {
		if _, ok := keys[k]; ok {
			t.Errorf("published key %s", k)
		}
	}
	if keys["ServerKey"] != relayKey {
		t.Errorf("published ServerKey %v, want the server's public key %s (public, and doctor's multicast check needs it)", keys["ServerKey"], relayKey)
	}
	if keys["Groups"] != "relays,lab-b" || keys["Interface"] != "lo" || keys["HTTP"] != "127.0.0.1:8000" {
		t.Errorf("published %v", keys)
	}
	rt := filepath.Join(dir, "run")
	pub, err := ports.Publish(rt, config.PartRelay, data)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Remove()

	o, err := loadPart(relayFlags, pub.Path)
	if err != nil {
		t.Fatal(err)
	}
	if c := o.cfg; c.Server != "http://127.0.0.1:1/vigil" || c.ServerKey != relayKey || c.EnrollSecretFile != "" || c.Interface != "lo" || c.TTL != 0 ||
		strings.Join(c.Groups, ",") != "relays,lab-b" || c.FTPAddr != "" || c.MetricsListen != "127.0.0.1:9464" {
		t.Fatalf("read back %+v", o.cfg)
	}

	env := map[string]string{"VIGIL_RUNTIME_DIR": rt}
	source := "relay: " + pub.Path + " (settings of the running vigil relay, pid " + strconv.Itoa(os.Getpid()) + ")"
	code, out, stderr := run(t, env, "ports")
	if code != 0 || !strings.Contains(out, source) || !strings.Contains(out, "cache-fill (HTTP)") {
		t.Fatalf("vigil ports: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run(t, nil, "ports", "-runtime-dir", rt, "-format", "json")
	var plan struct {
		Running map[string]int `json:"running"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || plan.Running["relay"] != os.Getpid() {
		t.Fatalf("vigil ports -format json: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run(t, env, "doctor", "-timeout", "1s", "-wait", "1s")
	if code != 1 || !strings.HasPrefix(out, "Read from "+source+"\n") || !strings.Contains(out, "FAIL  agent-api    http://127.0.0.1:1/vigil") ||
		!strings.Contains(out, "FAIL  commands     239.255.81.92:8192 on lo: no signed beacon within 1.0s") {
		t.Fatalf("vigil doctor: exit %d\n%s%s", code, out, stderr)
	}

	// After the relay exits, nothing is configured here any more.
	if err := pub.Remove(); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, env, "ports"); code != 2 || !strings.Contains(stderr, "no server, LiveUpdate server or relay publishes its settings in "+rt) ||
		!strings.Contains(stderr, "-relay FILE") {
		t.Fatalf("vigil ports after the relay exits: exit %d, %s", code, stderr)
	}
}
