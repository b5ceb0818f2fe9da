package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/config"
)

func writePlist(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := plist.Marshal(v, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each part reads its preference file; flags on the command line win.
func TestPartPreferenceFiles(t *testing.T) {
	dir := t.TempDir()
	srv := writePlist(t, dir, "server.plist", map[string]any{
		"Listen": "10.0.0.1:8080", "Group": "239.1.2.3", "Port": 9000, "TTL": 3, "BeaconInterval": 45,
	})
	o, err := loadPart(serverFlags, srv)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Listen != "10.0.0.1:8080" || o.cfg.Group.String() != "239.1.2.3" || o.cfg.Port != 9000 || o.cfg.TTL != 3 || o.cfg.BeaconInterval != 45*time.Second {
		t.Fatalf("server options from file: %+v", o.cfg)
	}
	fs, o := serverFlags(quietEnv())
	if err := fs.Parse([]string{"-config", srv, "-ttl", "0"}); err != nil {
		t.Fatal(err)
	}
	if err := o.finish(fs); err != nil {
		t.Fatal(err)
	}
	if o.cfg.TTL != 0 || o.cfg.Port != 9000 {
		t.Fatalf("ttl %d port %d: the flag must win, the file give the rest", o.cfg.TTL, o.cfg.Port)
	}

	lu := writePlist(t, dir, "liveupdate.plist", map[string]any{
		"Root": dir, "HTTP": "off", "FTP": "10.0.0.2:2121", "PassivePorts": "30000-30009",
	})
	l, err := loadPart(liveUpdateFlags, lu)
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.Root != dir || l.cfg.HTTPAddr != "" || l.cfg.FTPAddr != "10.0.0.2:2121" || l.cfg.PassivePorts != (config.PortRange{Lo: 30000, Hi: 30009}) {
		t.Fatalf("liveupdate options from file: %+v", l.cfg)
	}

	mi := writePlist(t, dir, "mirror.plist", map[string]any{
		"Upstream": "ftp://updates.example/repo", "Root": "/etc/vigil/1.root.json", "Dir": dir, "Resolver": "10.0.0.53:53", "Every": 3600,
	})
	m, err := loadPart(mirrorFlags, mi)
	if err != nil {
		t.Fatal(err)
	}
	if m.Upstream != "ftp://updates.example/repo" || m.Resolver != "10.0.0.53:53" || m.Every != time.Hour || m.Jitter != 6*time.Minute {
		t.Fatalf("mirror options from file: %+v", m)
	}
}

func TestPartPreferenceFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writePlist(t, dir, "bad.plist", map[string]any{"TTL": "one", "Lsten": ":1"})
	for _, part := range []string{"server", "liveupdate", "mirror"} {
		code, _, stderr := run(t, nil, part, "-config", bad)
		if code == 0 || !strings.Contains(stderr, "bad.plist") {
			t.Errorf("vigil %s -config bad.plist: exit %d, stderr %q", part, code, stderr)
		}
	}
	code, _, stderr := run(t, nil, "server", "-config", bad)
	for _, want := range []string{`key TTL: want an integer, got string "one"`, `unknown key "Lsten" (did you mean "Listen"?)`} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr %q: want %q", code, stderr, want)
		}
	}
	code, _, stderr = run(t, nil, "liveupdate", "-config", filepath.Join(dir, "none.plist"))
	if code != 1 || !strings.Contains(stderr, "none.plist") {
		t.Errorf("missing -config file: exit %d, stderr %q", code, stderr)
	}
}
