package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/service"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// buildVigilBinary builds ./cmd/vigil into dir and returns its path.
func buildVigilBinary(t *testing.T, dir string) string {
	t.Helper()
	goTool := testenv.NeedTool(t, "go", "golang-go")
	out := filepath.Join(dir, "vigil")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "github.com/vigil-fleet/vigil/cmd/vigil")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := fi.Mode(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

// TestServiceInstallUninstall installs every part into a throwaway root
// with the real vigil executable, checks what it wrote (systemd-analyze
// verify on the units), installs again over a preference file that must
// be kept, and uninstalls.
func TestServiceInstallUninstall(t *testing.T) {
	t.Parallel()
	analyze := testenv.NeedTool(t, "systemd-analyze", "systemd")
	bin := buildVigilBinary(t, t.TempDir())
	root := t.TempDir()
	for _, part := range service.Parts {
		cmd := exec.Command(bin, "service", "install", part, "-root", root, "-exe", bin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vigil service install %s: %v\n%s", part, err, out)
		}
		unitPath := filepath.Join(root, "etc/systemd/system/vigil-"+part+".service")
		prefPath := filepath.Join(root, "etc/vigil", part+".plist")
		for _, want := range []string{"wrote " + unitPath, "wrote " + prefPath + ", a preference file skeleton", "not enabled nor started (-root)"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("install %s: output lacks %q:\n%s", part, want, out)
			}
		}
		unit, err := os.ReadFile(unitPath)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := service.Unit(part, bin, "/etc/vigil/"+part+".plist")
		if !bytes.Equal(unit, want) {
			t.Errorf("%s: installed unit differs from service.Unit:\n%s", part, unit)
		}
		wantMode(t, unitPath, 0o644)
		vout, err := exec.Command(analyze, "verify", "--man=no", unitPath).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(vout)) > 0 {
			t.Errorf("%s: systemd-analyze verify %s: %v\n%s", part, unitPath, err, vout)
		}
		sysusers := filepath.Join(root, "etc/sysusers.d/vigil-"+part+".conf")
		if part == config.PartAgent {
			wantMode(t, prefPath, 0o600) // will hold the enrollment secret
			if _, err := os.Stat(sysusers); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("agent (root) got a sysusers file: %v", err)
			}
		} else {
			wantMode(t, prefPath, 0o644) // read by the part's own user
			wantMode(t, sysusers, 0o644)
			b, _ := os.ReadFile(sysusers)
			if !strings.Contains(string(b), "u vigil-"+part+" ") {
				t.Errorf("%s: sysusers file:\n%s", part, b)
			}
		}
		wantMode(t, filepath.Join(root, "etc/vigil"), os.ModeDir|0o755)
	}

	// A second install keeps the preference file as it is and rewrites
	// the unit for the new executable.
	prefPath := filepath.Join(root, "etc/vigil/server.plist")
	mine := []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Listen</key><string>:9090</string></dict></plist>`)
	if err := os.WriteFile(prefPath, mine, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(prefPath, 0o640); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, nil, "service", "install", "server", "-root", root, "-exe", "/opt/vigil/bin/vigil", "-config", "/etc/vigil/server.plist")
	if code != 0 || !strings.Contains(stdout, "kept "+prefPath) {
		t.Fatalf("re-install: code %d\n%s%s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(prefPath); !bytes.Equal(b, mine) {
		t.Errorf("re-install replaced the preference file:\n%s", b)
	}
	wantMode(t, prefPath, 0o640)
	unitPath := filepath.Join(root, "etc/systemd/system/vigil-server.service")
	if b, _ := os.ReadFile(unitPath); !strings.Contains(string(b), "\nExecStart=/opt/vigil/bin/vigil server -config /etc/vigil/server.plist\n") {
		t.Errorf("re-install did not rewrite the unit:\n%s", b)
	}

	// status under -root: installed, the service manager not asked.
	code, stdout, _ = run(t, nil, "service", "status", "server", "-root", root)
	if code != 3 || !strings.Contains(stdout, unitPath+": installed") || !strings.Contains(stdout, "not asked") {
		t.Errorf("status: code %d\n%s", code, stdout)
	}

	// uninstall removes the unit and keeps the preference file and the
	// state; a second uninstall says it is not installed.
	for _, part := range service.Parts {
		code, stdout, stderr := run(t, nil, "service", "uninstall", part, "-root", root)
		if code != 0 || !strings.Contains(stdout, "removed ") {
			t.Fatalf("uninstall %s: code %d\n%s%s", part, code, stdout, stderr)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/systemd/system/vigil-"+part+".service")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("uninstall %s left the unit: %v", part, err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/vigil", part+".plist")); err != nil {
			t.Errorf("uninstall %s removed the preference file: %v", part, err)
		}
	}
	code, _, stderr = run(t, nil, "service", "uninstall", "relay", "-root", root)
	if code != 1 || !strings.Contains(stderr, "vigil relay is not installed as a service: no "+filepath.Join(root, "etc/systemd/system/vigil-relay.service")) {
		t.Errorf("second uninstall: code %d, %s", code, stderr)
	}
	code, stdout, _ = run(t, nil, "service", "status", "relay", "-root", root)
	if code != 3 || !strings.Contains(stdout, ": not installed") {
		t.Errorf("status after uninstall: code %d\n%s", code, stdout)
	}
}

// TestServiceSkeletons reads each part's skeleton as the part would: the
// server runs with it; the others stop at a required key, not at the file.
func TestServiceSkeletons(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := func(part string) string {
		p := filepath.Join(dir, part+".plist")
		if created, err := writeSkeleton(p, part); err != nil || !created {
			t.Fatalf("%s: %v %v", part, created, err)
		}
		return p
	}
	if _, err := loadPart(serverFlags, path(config.PartServer)); err != nil {
		t.Errorf("server skeleton: %v", err)
	}
	if _, err := prefs.Load(path(config.PartAgent)); err == nil || !strings.Contains(err.Error(), "NodeCommURL") {
		t.Errorf("agent skeleton: %v, want the required NodeCommURL named", err)
	}
	if _, err := loadPart(liveUpdateFlags, path(config.PartLiveUpdate)); err == nil || !strings.Contains(err.Error(), "-root is required") {
		t.Errorf("liveupdate skeleton: %v", err)
	}
	if _, err := loadPart(relayFlags, path(config.PartRelay)); err == nil || !strings.Contains(err.Error(), "-server is required") {
		t.Errorf("relay skeleton: %v", err)
	}
	mp := path(config.PartMirror)
	if _, err := loadPart(mirrorFlags, mp); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Errorf("mirror skeleton: %v", err)
	}
	// The mirror's keys are read as such: with the upstream and root
	// given, the skeleton's Dir and Every are what the mirror runs with.
	fs, o := mirrorFlags(quietEnv())
	if err := fs.Parse([]string{"-config", mp, "-upstream", "http://127.0.0.1:1/repo", "-root", "/x/1.root.json"}); err != nil {
		t.Fatal(err)
	}
	if err := o.finish(fs); err != nil {
		t.Fatalf("mirror skeleton with upstream and root: %v", err)
	}
	if o.Mirror.Dir != "/var/lib/vigil-mirror" || o.Mirror.Every != time.Hour {
		t.Errorf("mirror skeleton: Dir %q Every %v", o.Mirror.Dir, o.Mirror.Every)
	}
	// Never replaced.
	if created, err := writeSkeleton(mp, config.PartServer); err != nil || created {
		t.Errorf("skeleton over an existing file: created %v, %v", created, err)
	}
}

func TestServiceUsage(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	otherOS := "darwin"
	if runtime.GOOS == "darwin" {
		otherOS = "linux"
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"service"}, 2, "want install|uninstall|status PART"},
		{[]string{"service", "install"}, 2, "want install|uninstall|status PART"},
		{[]string{"service", "install", "console", "-root", root}, 2, `unknown part "console": want one of server, agent, liveupdate, mirror, relay`},
		{[]string{"service", "restart", "server"}, 2, `unknown action "restart"`},
		{[]string{"service", "install", "server", "-root", "tmp/x", "-exe", "/usr/bin/vigil"}, 2, `-root "tmp/x" is not an absolute path`},
		{[]string{"service", "install", "server", "-root", root}, 2, "-exe is required with -root"},
		{[]string{"service", "install", "server", "-root", root, "-exe", "bin/vigil"}, 2, `executable "bin/vigil" is not an absolute path`},
		{[]string{"service", "install", "server", "-root", root, "-exe", "/usr/bin/vigil", "-config", "server.plist"}, 2, `preference file "server.plist" is not an absolute path`},
		{[]string{"service", "install", "server", "extra", "-root", root}, 2, `unexpected arguments ["extra"`},
		{[]string{"service", "uninstall", "server", "-exe", "/usr/bin/vigil"}, 2, "uninstall takes no -exe"},
		{[]string{"service", "status", "agent", "-no-start"}, 2, "status takes only -root"},
		{[]string{"service", "install", "agent", "-os", "windows", "-root", root, "-exe", "/usr/bin/vigil"}, 2, `-os "windows": want linux or darwin`},
		{[]string{"service", "install", "agent", "-os", otherOS, "-exe", "/usr/bin/vigil"}, 2, "needs -root"},
	} {
		code, _, stderr := run(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("vigil %q: code %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
	// Nothing was written for the refused installs.
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("refused installs wrote into the root: %v", entries)
	}
}

// TestServiceNoSystemd runs status, install and uninstall where systemd
// does not run (this container): each says so, and install and uninstall
// run no program of the service manager.
func TestServiceNoSystemd(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(systemdRunning); err == nil {
		t.Skipf("systemd runs on this machine (%s exists)", systemdRunning)
	}
	const want = "systemd is not running on this machine (no /run/systemd/system)"
	code, stdout, stderr := run(t, nil, "service", "status", "mirror")
	if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stdout, "/etc/systemd/system/vigil-mirror.service: not installed") {
		t.Errorf("status: code %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// install and uninstall on a live system, its files written under a
	// temporary directory.
	root := t.TempDir()
	var ran []string
	m := &serviceManager{goos: "linux", root: root, live: true, booted: systemdRunning, out: io.Discard,
		run: func(_ context.Context, name string, args ...string) (string, error) {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return "", errors.New("must not run")
		}}
	ctx := context.Background()
	// The executable must exist on a live system.
	err := m.install(ctx, config.PartServer, "/usr/bin/vigil", "/etc/vigil/server.plist", true)
	if err == nil || !strings.Contains(err.Error(), "executable: ") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("install of a missing executable: %v", err)
	}
	exe := filepath.Join(root, "usr/bin/vigil")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = m.install(ctx, config.PartServer, "/usr/bin/vigil", "/etc/vigil/server.plist", true)
	if err == nil || !strings.Contains(err.Error(), "is not an executable file") {
		t.Errorf("install of a file that is not executable: %v", err)
	}
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	err = m.install(ctx, config.PartServer, "/usr/bin/vigil", "/etc/vigil/server.plist", true)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the files are written") {
		t.Errorf("install: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/system/vigil-server.service")); err != nil {
		t.Errorf("install wrote no unit: %v", err)
	}
	if err := m.uninstall(ctx, config.PartServer, true); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "-no-start") {
		t.Errorf("uninstall: %v", err)
	}
	if err := m.status(ctx, config.PartServer); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("status: %v", err)
	}
	if len(ran) > 0 {
		t.Errorf("ran %q without systemd", ran)
	}
	// With -no-start, uninstall removes the unit without asking systemd.
	if err := m.uninstall(ctx, config.PartServer, false); err != nil {
		t.Errorf("uninstall -no-start: %v", err)
	}
}

// TestServiceMacOSLayout lays out a macOS installer's payload on any
// system: the launchd plist (checked by plistutil, the keys by
// internal/service's tests) and the preference file skeleton, in their
// places under the root.
func TestServiceMacOSLayout(t *testing.T) {
	t.Parallel()
	plistutil := testenv.NeedTool(t, "plistutil", "plistutil")
	root := t.TempDir()
	code, stdout, stderr := run(t, nil, "service", "install", "agent", "-os", "darwin", "-root", root, "-exe", "/usr/local/bin/vigil")
	if code != 0 {
		t.Fatalf("code %d\n%s%s", code, stdout, stderr)
	}
	plistPath := filepath.Join(root, "Library/LaunchDaemons/com.vigil.agent.plist")
	prefPath := filepath.Join(root, "Library/Preferences/com.vigil.agent.plist")
	wantMode(t, plistPath, 0o644)
	wantMode(t, prefPath, 0o600)
	got, _ := os.ReadFile(plistPath)
	want, _ := service.LaunchdPlist("agent", "/usr/local/bin/vigil", "/Library/Preferences/com.vigil.agent.plist")
	if !bytes.Equal(got, want) {
		t.Errorf("plist differs from service.LaunchdPlist:\n%s", got)
	}
	if out, err := exec.Command(plistutil, "-i", plistPath, "-f", "bin", "-o", filepath.Join(t.TempDir(), "x.bin")).CombinedOutput(); err != nil {
		t.Errorf("plistutil: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a macOS layout holds etc/: %v", err)
	}
	code, stdout, _ = run(t, nil, "service", "uninstall", "agent", "-os", "darwin", "-root", root)
	if code != 0 || !strings.Contains(stdout, "removed "+plistPath) {
		t.Errorf("uninstall: %d %s", code, stdout)
	}
}
