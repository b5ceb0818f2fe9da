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

// SeenFlush: a preference file's or flag's interval reaches the server;
// 0 is the server's "write every check-in before answering" (negative),
// and a negative value is refused.
func TestServerSeenFlush(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		file    map[string]any
		args    []string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: time.Second},
		{name: "file", file: map[string]any{"SeenFlush": 5}, want: 5 * time.Second},
		{name: "flag", args: []string{"-seen-flush", "250ms"}, want: 250 * time.Millisecond},
		{name: "off", file: map[string]any{"SeenFlush": 0}, want: -1},
		{name: "negative", args: []string{"-seen-flush", "-1s"}, wantErr: "-seen-flush (preference key SeenFlush) -1s: negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, tt.name+".plist")
			if tt.file != nil {
				writePlist(t, dir, tt.name+".plist", tt.file)
			} else {
				writePlist(t, dir, tt.name+".plist", map[string]any{})
			}
			fs, o := serverFlags(quietEnv())
			if err := fs.Parse(append([]string{"-config", file}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			err := o.finish(fs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.SeenFlush != tt.want {
				t.Fatalf("SeenFlush %v, want %v", o.cfg.SeenFlush, tt.want)
			}
		})
	}
}
