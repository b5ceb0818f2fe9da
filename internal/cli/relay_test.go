package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/relay"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

var testRelayKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

func TestRelayUsage(t *testing.T) {
	dir := t.TempDir()
	ok := []string{"relay", "-server", "http://127.0.0.1:1/vigil", "-server-key", testRelayKey, "-state-dir", dir}
	with := func(extra ...string) []string { return append(append([]string{}, ok...), extra...) }
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"relay", "-server-key", testRelayKey}, 2, "-server is required"},
		{[]string{"relay", "-server", "ftp://x/", "-server-key", testRelayKey}, 2, `-server "ftp://x/": want http(s)://HOST[:PORT]/BASE`},
		{[]string{"relay", "-server", "http://127.0.0.1:1/vigil"}, 2, "-server-key is required"},
		{[]string{"relay", "-server", "http://127.0.0.1:1/vigil", "-server-key", "c2hvcnQ="}, 2, "-server-key: want a base64 Ed25519 public key"},
		{with("-group", "10.1.2.3"), 2, "-group 10.1.2.3: not a multicast address"},
		{with("-group", "nope"), 2, "-group"},
		{with("-port", "0"), 2, "-port 0: want 1 to 65535"},
		{with("-ttl", "256"), 2, "-ttl 256"},
		{with("-repeat", "0"), 2, "-repeat 0"},
		{with("-repeat-gap", "-1s"), 2, "-repeat-gap"},
		{with("-groups", "relays,lab b"), 2, `-groups: "lab b" is not a group name`},
		{with("-state-dir", ""), 2, "-state-dir must not be empty"},
		{with("-log-level", "loud"), 2, "-log-level"},
		{with("-nope"), 2, "flag provided but not defined: -nope"},
		{with("stray"), 2, "unexpected arguments"},
		{with("-upstream", "http://mirror/repo"), 2, "-root is required with -upstream"},
		{with("-config", filepath.Join(dir, "none.plist")), 1, "none.plist"},
		// Not enrolled, and nothing to enroll with.
		{with("-interface", testenv.Loopback(t), "-ttl", "0"), 1, "no -enroll-secret-file"},
		{with("-interface", "no-such-if0", "-ttl", "0"), 1, `interface "no-such-if0"`},
	} {
		code, _, stderr := run(t, noRuntime, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d containing %q", tt.args, code, stderr, tt.code, tt.msg)
		}
	}
	code, _, stderr := run(t, noRuntime, "relay", "-h")
	for _, flag := range []string{"-server ", "-server-key", "-enroll-secret-file", "-groups", "-state-dir", "-group ", "-interface", "-ttl", "-repeat ", "-repeat-gap", "-metrics-listen", "-config"} {
		if code != 0 || !strings.Contains(stderr, flag) {
			t.Errorf("vigil relay -h: exit %d, no %s in\n%s", code, flag, stderr)
		}
	}
	if code, _, stderr := run(t, noRuntime, "help"); code != 0 || !strings.Contains(stderr, "relay ") {
		t.Errorf("vigil help does not list relay: %s", stderr)
	}
}

// The preference file sets every flag; flags on the command line win.
func TestRelayPreferenceFile(t *testing.T) {
	dir := t.TempDir()
	p := writePlist(t, dir, "relay.plist", map[string]any{
		"Server": "https://vigil.example:8443/vigil", "ServerKey": testRelayKey, "ServerCA": "/etc/vigil/ca.pem",
		"EnrollSecretFile": "/etc/vigil/enroll.secret", "Groups": "relays, lab-b", "Hostname": "relay-b",
		"StateDir": dir, "Group": "239.1.2.3", "Port": 9000, "Interface": "eth1", "TTL": 2, "Repeat": 3, "RepeatGap": "50ms",
		"MetricsListen": "127.0.0.1:9108", "LogLevel": "debug",
	})
	o, err := loadPart(relayFlags, p)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Server != "https://vigil.example:8443/vigil" || c.ServerKey != testRelayKey || c.ServerCA != "/etc/vigil/ca.pem" ||
		c.EnrollSecretFile != "/etc/vigil/enroll.secret" || strings.Join(c.Groups, ",") != "relays,lab-b" || c.Hostname != "relay-b" ||
		c.StateDir != dir || c.Group != netip.MustParseAddr("239.1.2.3") || c.Port != 9000 || c.Interface != "eth1" || c.TTL != 2 ||
		c.Repeat != 3 || c.RepeatGap != 50*time.Millisecond || c.MetricsListen != "127.0.0.1:9108" || o.lf.level.text != "debug" {
		t.Fatalf("relay options from file: %+v", c)
	}
	fs, o := relayFlags(quietEnv())
	if err := fs.Parse([]string{"-config", p, "-ttl", "0", "-groups", "relays"}); err != nil {
		t.Fatal(err)
	}
	if err := o.finish(fs); err != nil {
		t.Fatal(err)
	}
	if o.cfg.TTL != 0 || strings.Join(o.cfg.Groups, ",") != "relays" || o.cfg.Port != 9000 {
		t.Fatalf("ttl %d groups %v port %d: the flags must win, the file give the rest", o.cfg.TTL, o.cfg.Groups, o.cfg.Port)
	}

	bad := writePlist(t, dir, "bad.plist", map[string]any{"TTL": "one", "Sever": "http://x/"})
	code, _, stderr := run(t, noRuntime, "relay", "-config", bad)
	for _, want := range []string{"bad.plist", `key TTL: want an integer, got string "one"`, `unknown key "Sever" (did you mean "Server"?)`} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr %q: want %q", code, stderr, want)
		}
	}
}

// vigil relay enrolls with a real server, and stops on cancellation with
// its state saved.
func TestRelayRuns(t *testing.T) {
	ts := servertest.Start(t, server.Config{})
	dir := t.TempDir()
	secret := filepath.Join(dir, "enroll.secret")
	if err := os.WriteFile(secret, []byte(ts.EnrollSecret()), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, &Env{Stdout: &errb, Stderr: &errb, Getenv: func(k string) string { return noRuntime[k] }}, []string{"relay",
			"-server", ts.URL, "-server-key", ts.PublicKeyBase64(), "-enroll-secret-file", secret, "-state-dir", state,
			"-hostname", "relay-cli", "-interface", testenv.Loopback(t), "-ttl", "0", "-port", "47001"})
	}()
	var id string
	for deadline := time.Now().Add(15 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		as, err := ts.Admin().Agents(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Hostname == "relay-cli" && len(a.Groups) == 1 && a.Groups[0] == config.DefaultRelayGroupName {
				id = a.ID
			}
		}
	}
	if id == "" {
		t.Fatalf("the relay never enrolled:\n%s", errb.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("vigil relay did not stop")
	}
	b, err := os.ReadFile(filepath.Join(state, relay.FileState))
	if err != nil {
		t.Fatal(err)
	}
	var st relay.State
	if err := json.Unmarshal(b, &st); err != nil || st.AgentID != id || st.Epoch != ts.Epoch() {
		t.Fatalf("state %s (%v), want agent %s in epoch %d", b, err, id, ts.Epoch())
	}
}

// The settings vigil relay publishes for vigil ports and vigil doctor
// hold every flag but -config and the secret ones.
func TestRelayPublishesItsSettings(t *testing.T) {
	args := []string{"-server", "http://10.0.0.1:8080/vigil", "-server-key", testRelayKey, "-enroll-secret-file", "/etc/vigil/enroll.secret",
		"-state-dir", t.TempDir(), "-interface", "eth1", "-port", "9000", "-groups", "relays,lab-b"}
	b, err := partSettings(relayFlags, args)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"<key>Server</key>", "<string>http://10.0.0.1:8080/vigil</string>", "<key>Interface</key>", "<string>eth1</string>", "<string>relays,lab-b</string>", "<key>Port</key>"} {
		if !strings.Contains(s, want) {
			t.Errorf("published settings lack %s:\n%s", want, s)
		}
	}
	for _, secret := range []string{"EnrollSecretFile", "enroll.secret"} {
		if strings.Contains(s, secret) {
			t.Errorf("published settings hold %s:\n%s", secret, s)
		}
	}
}
