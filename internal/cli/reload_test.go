package cli

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/prefs"
)

// On reload, a key the part applies live (LogLevel) is applied and logged
// as applied; every other changed key is named as needing a restart, again
// at each reload; a flag given on the command line wins over the file; an
// invalid file changes nothing.
func TestReloadAppliesLiveKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := writePlist(t, dir, "server.plist", map[string]any{"LogLevel": "info", "Port": 9000})
	env := &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }, proc: &process{part: true}}
	o, err := parsePart(env, serverFlags, []string{"-config", conf, "-port", "9100"})
	if err != nil {
		t.Fatal(err)
	}
	if o.lf.level.lv.Level() != slog.LevelInfo || o.cfg.Port != 9100 {
		t.Fatalf("level %v port %d", o.lf.level.lv.Level(), o.cfg.Port)
	}
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	rl := env.proc.reloaderOf()

	writeFileAtomic(t, conf, map[string]any{"LogLevel": "debug", "Port": 9001, "Repeat": 5})
	rl.reload(log)
	if o.lf.level.lv.Level() != slog.LevelDebug {
		t.Errorf("level %v after the reload, want debug", o.lf.level.lv.Level())
	}
	want := `level=INFO msg="preference applied" key=LogLevel
level=WARN msg="preference changed; it takes effect at the next restart" key=Repeat
level=INFO msg="preference file reloaded" file=` + conf + ` applied=[LogLevel] restart_needed=[Repeat]
`
	if logb.String() != want {
		t.Errorf("log:\n%s\nwant (Port is given on the command line, which wins):\n%s", logb.String(), want)
	}

	// A key needing a restart is named again at the next reload; an
	// applied one is in force.
	logb.Reset()
	rl.reload(log)
	if got := logb.String(); !strings.Contains(got, "key=Repeat") || strings.Contains(got, "key=LogLevel") {
		t.Errorf("second reload:\n%s", got)
	}

	// An invalid file changes nothing.
	logb.Reset()
	writeFileAtomic(t, conf, map[string]any{"LogLevel": "loud", "Repeat": 1})
	rl.reload(log)
	if got := logb.String(); o.lf.level.lv.Level() != slog.LevelDebug || !strings.Contains(got, `level=ERROR msg="preference file not reloaded; nothing changed"`) {
		t.Errorf("invalid file: level %v; log:\n%s", o.lf.level.lv.Level(), got)
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
