package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"howett.net/plist"
)

// startPart runs vigil ARGS as a process (see startVigil) publishing its
// settings in the runtime directory dir, and waits until it logs line.
func startPart(t *testing.T, dir, line string, args ...string) *vigilProc {
	t.Helper()
	p := startVigilEnv(t, []string{"VIGIL_RUNTIME_DIR=" + dir}, args...)
	p.expect(regexp.QuoteMeta(line))
	return p
}

// A server and a LiveUpdate server started with flags only, as in the
// README, publish their settings while they run: vigil ports lists their
// real ports and vigil doctor checks them, both saying they read the
// running parts' settings. A clean exit removes the files; the files of a
// process killed with SIGKILL are ignored, with a note.
func TestPortsAndDoctorSeeRunningParts(t *testing.T) {
	rt := filepath.Join(t.TempDir(), "run")
	env := map[string]string{"VIGIL_RUNTIME_DIR": rt}
	dataDir := filepath.Join(t.TempDir(), "server")
	agentAPI, admin, luHTTP := freeAddr(t), freeAddr(t), freeAddr(t)
	srv := startPart(t, rt, "server listening", "server", "-data-dir", dataDir, "-listen", agentAPI,
		"-admin-listen", admin, "-interface", "lo", "-ttl", "0")
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "timestamp.json"), []byte(`{"v":1}`), 0o644)
	lu := startPart(t, rt, "serving HTTP", "liveupdate", "-root", root, "-http", luHTTP, "-ftp", "off")

	port := func(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }
	code, out, stderr := run(t, env, "ports")
	if code != 0 {
		t.Fatalf("vigil ports: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"(server, liveupdate)",
		"server: " + filepath.Join(rt, "server.plist") + " (settings of the running vigil server, pid " + strconv.Itoa(srv.cmd.Process.Pid) + ")",
		"liveupdate: " + filepath.Join(rt, "liveupdate.plist") + " (settings of the running vigil liveupdate, pid " + strconv.Itoa(lu.cmd.Process.Pid) + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("vigil ports lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []struct{ flow, port string }{{"agent-api", port(agentAPI)}, {"admin", port(admin)}, {"definitions", port(luHTTP)}} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) > 5 && f[0] == "in" && f[1] == want.flow && strings.Contains(l, " "+want.port+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("vigil ports has no incoming %s flow on port %s:\n%s", want.flow, want.port, out)
		}
	}
	code, out, stderr = run(t, env, "ports", "-format", "json")
	var plan struct {
		Sources map[string]string `json:"sources"`
		Running map[string]int    `json:"running"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil {
		t.Fatalf("vigil ports -format json: exit %d, %s%s", code, out, stderr)
	}
	if plan.Running["server"] != srv.cmd.Process.Pid || plan.Running["liveupdate"] != lu.cmd.Process.Pid || plan.Sources["server"] != filepath.Join(rt, "server.plist") {
		t.Errorf("JSON sources %v, running %v", plan.Sources, plan.Running)
	}

	// vigil doctor checks the listeners of the running parts.
	code, out, stderr = run(t, env, "doctor")
	if code != 0 || !strings.HasPrefix(out, "Read from server: "+filepath.Join(rt, "server.plist")+" (settings of the running vigil server") {
		t.Fatalf("vigil doctor: exit %d\n%s%s", code, out, stderr)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"ok agent-api " + agentAPI, "ok admin " + admin, "ok definitions " + luHTTP} {
		if !strings.Contains(flat, want) {
			t.Errorf("vigil doctor lacks %q:\n%s", want, out)
		}
	}

	// Nothing secret is published: not the server's secrets, nor the
	// paths of private keys.
	published, err := os.ReadFile(filepath.Join(rt, "server.plist"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin.token", "enroll.secret", "signing.key"} {
		secret, err := os.ReadFile(filepath.Join(dataDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.TrimSpace(string(secret)); len(s) > 8 && strings.Contains(string(published), s) {
			t.Errorf("the published settings hold %s", f)
		}
	}

	// A clean exit (SIGTERM) removes the files.
	lu.signalAndWait(syscall.SIGTERM)
	for _, f := range []string{"liveupdate.plist", "liveupdate.pid"} {
		if _, err := os.Stat(filepath.Join(rt, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a clean exit: %v", f, err)
		}
	}

	// SIGKILL leaves the server's files: they are ignored, with a note.
	srv.signalAndWait(syscall.SIGKILL)
	if _, err := os.Stat(filepath.Join(rt, "server.plist")); err != nil {
		t.Fatalf("the killed server's file: %v", err)
	}
	stale := "ignored " + filepath.Join(rt, "server.plist") + ": left by vigil server pid " + strconv.Itoa(srv.cmd.Process.Pid) + ", which is no longer running"
	code, _, stderr = run(t, env, "ports")
	if code != 2 || !strings.Contains(stderr, "no Vigil part is configured") || !strings.Contains(stderr, stale) {
		t.Fatalf("vigil ports after SIGKILL: exit %d, stderr %q; want exit 2 with %q", code, stderr, stale)
	}
	agent := agentPlist(t, t.TempDir(), nil)
	code, out, stderr = run(t, env, "ports", "-agent", agent)
	if code != 0 || !strings.Contains(out, "(agent)\n") || !strings.Contains(out, stale) || strings.Contains(out, "agent-api  agents") {
		t.Fatalf("vigil ports -agent after SIGKILL: exit %d, %s%s", code, out, stderr)
	}
	good := writePlist(t, t.TempDir(), "lu.plist", map[string]any{"Root": root, "HTTP": agentAPI, "FTP": "off"})
	code, out, stderr = run(t, env, "doctor", "-liveupdate", good)
	if !strings.Contains(out, "Note: "+stale) || !strings.Contains(out, "Read from liveupdate: "+good+" (preference file)") {
		t.Fatalf("vigil doctor after SIGKILL: exit %d, %s%s", code, out, stderr)
	}
	// A runtime directory of "off" is not read at all.
	if code, _, stderr := run(t, map[string]string{"VIGIL_RUNTIME_DIR": "off"}, "ports"); code != 2 || strings.Contains(stderr, "ignored") {
		t.Fatalf("VIGIL_RUNTIME_DIR=off: exit %d, %s", code, stderr)
	}
	if code, _, stderr := run(t, nil, "ports", "-runtime-dir", rt); code != 2 || !strings.Contains(stderr, stale) {
		t.Fatalf("-runtime-dir: exit %d, %s", code, stderr)
	}
}

// The published settings are the part's effective settings under its
// preference keys, read back by loadPart to the same configuration, with
// no -config and no flag that may carry a secret.
func TestPartSettings(t *testing.T) {
	dir := t.TempDir()
	file := writePlist(t, dir, "server.plist", map[string]any{"TTL": 3, "BeaconInterval": 7})
	data, err := partSettings(serverFlags, []string{"-config", file, "-listen", "10.1.2.3:8443", "-tls-cert", "/etc/vigil/tls.pem", "-tls-key", "/etc/vigil/tls-key.pem", "-group", "ff15::8192"})
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if _, err := plist.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if k == "Config" || k == "TLSKey" {
			t.Errorf("published key %s", k)
		}
	}
	p := filepath.Join(dir, "published.plist")
	os.WriteFile(p, data, 0o644)
	o, err := loadPart(serverFlags, p)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Listen != "10.1.2.3:8443" || c.TLSCert != "/etc/vigil/tls.pem" || c.TLSKey != "" || c.TTL != 3 || c.BeaconInterval != 7*time.Second || c.Group.String() != "ff15::8192" {
		t.Fatalf("read back %+v", c)
	}
	for _, name := range []string{"tls-key", "admin-token", "enroll-secret", "password", "api-credential"} {
		if !secretFlag(name) {
			t.Errorf("-%s is not taken for a secret", name)
		}
	}
	for _, name := range []string{"listen", "keyboard", "tls-cert", "data-dir"} {
		if secretFlag(name) {
			t.Errorf("-%s is taken for a secret", name)
		}
	}
}
