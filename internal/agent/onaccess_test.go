package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/onaccess"
)

// The server's "set" overrides the on-access preferences and is kept in
// settings.json; "default" goes back to the preference; turning on-access
// on with nothing to watch is refused and changes nothing.
func TestSetOnAccess(t *testing.T) {
	t.Parallel()
	a := scanAgent(t)
	a.oa.want = make(chan onAccessConfig, 1)
	set := func(args map[string]string) (string, string) {
		return a.set(command.Command{Name: command.Set, Target: command.Target{All: true}, Args: args})
	}
	saved := func() Settings {
		var s Settings
		b, err := os.ReadFile(a.path(FileSettingsName))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if c := a.onAccessConfig(); c.Enabled || c.Mode != "notify" {
		t.Fatalf("default configuration %+v: want off, notify", c)
	}

	st, out := set(map[string]string{command.SettingOnAccess: "on"})
	if st != command.StatusError || !strings.Contains(out, "OnAccessPaths") {
		t.Fatalf("set onaccess=on without paths: %s %q", st, out)
	}
	if a.settings != (Settings{}) {
		t.Fatalf("a refused set changed the settings: %+v", a.settings)
	}
	if _, err := os.Stat(a.path(FileSettingsName)); !os.IsNotExist(err) {
		t.Fatalf("a refused set saved settings: %v", err)
	}

	a.p.OnAccessPaths = []string{"/srv"}
	a.p.OnAccessMode = "notify"
	st, out = set(map[string]string{command.SettingOnAccess: "on", command.SettingOnAccessMode: "block"})
	if st != command.StatusOK || !strings.Contains(out, "onaccess=on onaccess_mode=block") {
		t.Fatalf("set: %s %q", st, out)
	}
	c := <-a.oa.want
	if !c.Enabled || c.Mode != "block" || !slices.Equal(c.Paths, []string{"/srv"}) {
		t.Errorf("configuration asked for %+v", c)
	}
	if !slices.Contains(c.Never, a.p.StateDirectory) || !slices.Contains(c.Never, a.p.QuarantineDirectory) || !slices.Contains(c.Never, a.defsRoot()) {
		t.Errorf("the agent's own directories are not excluded: %v", c.Never)
	}
	if s := saved(); s.OnAccess != "on" || s.OnAccessMode != "block" {
		t.Errorf("saved %+v", s)
	}

	st, out = set(map[string]string{command.SettingOnAccessMode: "default"})
	if st != command.StatusOK || !strings.Contains(out, "onaccess_mode=notify") {
		t.Fatalf("set onaccess_mode=default: %s %q", st, out)
	}
	if s := saved(); s.OnAccess != "on" || s.OnAccessMode != "" {
		t.Errorf("saved %+v", s)
	}
	st, _ = set(map[string]string{command.SettingOnAccess: "off"})
	if c := <-a.oa.want; st != command.StatusOK || c.Enabled {
		t.Errorf("set onaccess=off: %s, configuration %+v", st, c)
	}
}

// Detections become one report of kind onaccess: repeats of the same
// access collapsed, each with its access, process and blocking, the file
// quarantined (an infected file is moved once), the definitions version
// named; a process path that is not absolute is left out.
func TestOnAccessReport(t *testing.T) {
	t.Parallel()
	a := scanAgent(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "eicar.com")
	if err := os.WriteFile(path, []byte(eicarForTests), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256Hex(eicarForTests)
	now := time.Now()
	d := onaccess.Detection{Path: path, Signature: "Eicar-Test-Signature", SHA256: sum, Size: int64(len(eicarForTests)),
		PID: 4242, Exe: "/usr/bin/cat", Kind: onaccess.Open, Blocked: true, Release: "/var/lib/vigil/definitions/releases/2026120201", Time: now}
	a.oa.detected(d)
	a.oa.detected(d) // the same again
	d2 := d
	d2.PID, d2.Exe, d2.Kind, d2.Blocked = 7, "bash (deleted)", onaccess.Exec, false
	a.oa.detected(d2)
	a.oa.flushDetections()
	rep := savedReport(t, a)
	if rep.Kind != api.ScanKindOnAccess || rep.Seq != 0 || rep.Files != 1 || rep.DefsVer != "2026120201" || len(rep.Detections) != 2 {
		t.Fatalf("report %+v", rep)
	}
	x, y := rep.Detections[0], rep.Detections[1]
	if x.Access != "open" || !x.Blocked || x.PID != 4242 || x.Process != "/usr/bin/cat" || x.SHA256 != sum || x.Quarantine == "" {
		t.Errorf("first detection %+v", x)
	}
	if y.Access != "exec" || y.Blocked || y.PID != 7 || y.Process != "" || y.Quarantine != x.Quarantine {
		t.Errorf("second detection %+v", y)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the infected file is still in place: %v", err)
	}
}

const eicarForTests = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
