package cli

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/prefs"
)

// A part declares the keys it applies live with onReload: its hook gets
// the re-read settings, and the keys it returns are logged as applied and
// no longer as needing a restart.
func TestReloadHook(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := writePlist(t, dir, "server.plist", map[string]any{"Spread": 10, "Port": 9000})
	env := &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }, proc: &process{part: true}}
	o, err := parsePart(env, serverFlags, []string{"-config", conf, "-port", "9100"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Spread != 10*time.Second || o.cfg.Port != 9100 {
		t.Fatalf("spread %v port %d", o.cfg.Spread, o.cfg.Port)
	}
	var spread time.Duration
	onReload(env, func(next *serverOptions) []string {
		spread = next.cfg.Spread
		return []string{"Spread"}
	})
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	rl := env.proc.reloaderOf()

	writeFileAtomic(t, conf, map[string]any{"Spread": 20, "Port": 9001, "Repeat": 5})
	rl.reload(log)
	if spread != 20*time.Second {
		t.Errorf("the hook saw spread %v, want 20s", spread)
	}
	want := `level=WARN msg="preference changed; it takes effect at the next restart" key=Repeat
level=INFO msg="preference applied" key=Spread
level=INFO msg="preference file reloaded" file=` + conf + ` applied=[Spread] restart_needed=[Repeat]
`
	if logb.String() != want {
		t.Errorf("log:\n%s\nwant (Port is given on the command line, which wins):\n%s", logb.String(), want)
	}

	// A key needing a restart is named again at the next SIGHUP; an
	// applied one is in force.
	logb.Reset()
	rl.reload(log)
	if got := logb.String(); !strings.Contains(got, "key=Repeat") || strings.Contains(got, "key=Spread") {
		t.Errorf("second reload:\n%s", got)
	}

	// An invalid file changes nothing.
	logb.Reset()
	spread = 0
	writeFileAtomic(t, conf, map[string]any{"Spread": "soon", "Repeat": 1})
	rl.reload(log)
	if got := logb.String(); spread != 0 || !strings.Contains(got, `level=ERROR msg="preference file not reloaded; nothing changed"`) || !strings.Contains(got, "key Spread") {
		t.Errorf("invalid file: hook saw %v; log:\n%s", spread, got)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// Every agent preference key is compared on reload: each is a field of
// prefs.Agent of the same name.
func TestAgentValuesCoverKeys(t *testing.T) {
	t.Parallel()
	a, err := prefs.Parse("agent.plist", []byte(`<?xml version="1.0"?><plist version="1.0"><dict>
<key>NodeCommURL</key><string>http://127.0.0.1:1/vigil</string>
<key>ServerPublicKey</key><string>`+strings.Repeat("A", 43)+`=</string>
<key>EnrollmentSecret</key><string>s</string>
<key>StateDirectory</key><string>`+filepath.Join(t.TempDir(), "state")+`</string>
</dict></plist>`))
	if err != nil {
		t.Fatal(err)
	}
	v := agentValues(a)
	for _, k := range prefs.Keys() {
		if _, ok := v[k.Name]; !ok {
			t.Errorf("key %s not compared", k.Name)
		}
	}
	if v["MulticastPort"] != "8192" {
		t.Errorf("MulticastPort %q", v["MulticastPort"])
	}
	if _, ok := agentValues(a, "LogLevel")["LogLevel"]; ok {
		t.Error("LogLevel given with -log-level is compared")
	}
}
