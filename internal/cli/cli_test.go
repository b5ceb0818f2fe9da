package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/command"
)

func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = Run(ctx, &Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, args)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badPlist := filepath.Join(dir, "bad.plist")
	os.WriteFile(badPlist, []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>MulticastPort</key><string>abc</string></dict></plist>`), 0o644)
	tokenEnv := map[string]string{"VIGIL_ADMIN_TOKEN": "x", "VIGIL_ADMIN_URL": "http://127.0.0.1:1"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"no command", nil, nil, 2, "Usage: vigil COMMAND"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"bad flag", nil, []string{"server", "-nope"}, 2, "flag provided but not defined"},
		{"server non-multicast group", nil, []string{"server", "-group", "10.1.2.3", "-data-dir", dir}, 1, "not a multicast address"},
		{"server bad group", nil, []string{"server", "-group", "nope"}, 2, "-group"},
		{"server stray argument", nil, []string{"server", "extra"}, 2, "unexpected arguments"},
		{"agent missing config", nil, []string{"agent", "-config", filepath.Join(dir, "none.plist")}, 1, "none.plist"},
		{"agent malformed config", nil, []string{"agent", "-config", badPlist}, 1, "key MulticastPort"},
		{"send no target", tokenEnv, []string{"send", "ping"}, 2, "give one of -all, -group, -agent"},
		{"send no command", tokenEnv, []string{"send", "-all"}, 2, "name a command"},
		{"send unknown command", tokenEnv, []string{"send", "-all", "exec"}, 2, `unknown command "exec"`},
		{"send bad argument", tokenEnv, []string{"send", "-all", "restore", "id=../x"}, 2, "restore takes one argument"},
		{"send bad setting syntax", tokenEnv, []string{"send", "-all", "set", "checkin_interval"}, 2, "want NAME=VALUE"},
		{"send no token", nil, []string{"send", "-all", "-data-dir", dir, "ping"}, 1, "admin token"},
		{"send server down", tokenEnv, []string{"send", "-all", "ping"}, 1, "connection refused"},
		{"results bad seq", tokenEnv, []string{"results", "x"}, 2, "not a sequence number"},
		{"demo bad agents", nil, []string{"demo", "-agents", "0"}, 2, "-agents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d containing %q", code, stderr, tt.code, tt.msg)
			}
		})
	}
}

// vigil send -h, and its error when no command is named, list every command
// the agents execute with each argument, from the catalog.
func TestSendListsCommands(t *testing.T) {
	t.Parallel()
	tokenEnv := map[string]string{"VIGIL_ADMIN_TOKEN": "x", "VIGIL_ADMIN_URL": "http://127.0.0.1:1"}
	code, _, help := run(t, nil, "send", "-h")
	if code != 0 {
		t.Fatalf("send -h: exit %d", code)
	}
	code, _, noCmd := run(t, tokenEnv, "send", "-all")
	if code != 2 {
		t.Fatalf("send with no command: exit %d", code)
	}
	for _, out := range []string{help, noCmd} {
		for _, s := range command.Specs() {
			if !strings.Contains(out, "  "+s.Synopsis()+"\n      "+s.Summary+"\n") {
				t.Errorf("output lacks command %s:\n%s", s.Synopsis(), out)
			}
			for _, a := range s.Args {
				if !strings.Contains(out, a.Name+"="+a.Value+": "+a.Doc) {
					t.Errorf("output lacks argument %s of %s:\n%s", a.Name, s.Name, out)
				}
			}
		}
	}
}

// A flag error is printed once, by Run, not also by the flag package
// (which would add the whole usage as well).
func TestFlagErrorPrintedOnce(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, nil, "send", "-expires", "soon", "-all", "ping")
	want := "vigil send: invalid value \"soon\" for flag -expires: parse error (see 'vigil send -h')\n"
	if code != 2 || stderr != want {
		t.Fatalf("exit %d, stderr %q; want exit 2 and only %q", code, stderr, want)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "vigil ") {
		t.Fatalf("version: %d %q", code, out)
	}
}
