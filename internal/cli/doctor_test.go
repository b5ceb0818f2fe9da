package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// vigil doctor on a LiveUpdate server machine: its listeners accept, or
// the failing one is named and the exit code is 1.
func TestDoctorCommand(t *testing.T) {
	dir := t.TempDir()
	live, closedAddr := testenv.AcceptingAddr(t), testenv.ClosedAddr(t)

	good := writePlist(t, dir, "good.plist", map[string]any{"Root": dir, "HTTP": live, "FTP": "off"})
	code, out, stderr := run(t, noRuntime, "doctor", "-liveupdate", good)
	if code != 0 || !strings.HasPrefix(out, "Read from liveupdate: "+good+" (preference file)\nok") || !strings.Contains(out, "definitions") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	bad := writePlist(t, dir, "bad.plist", map[string]any{"Root": dir, "HTTP": live, "FTP": closedAddr})
	code, out, stderr = run(t, noRuntime, "doctor", "-liveupdate", bad, "-json")
	if code != 1 || !strings.Contains(out, `"ok": false`) && !strings.Contains(out, `"ok":false`) || !strings.Contains(stderr, "1 of 2 checks failed") ||
		!strings.HasPrefix(out, "[") || !strings.Contains(stderr, "Read from liveupdate: "+bad) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, _, stderr := run(t, noRuntime, "doctor", "-wait", "-1s", "-liveupdate", good); code != 2 || !strings.Contains(stderr, "-wait") {
		t.Fatalf("negative -wait: exit %d, %q", code, stderr)
	}
}

// vigil doctor on a mirror machine: the upstream name resolves through
// its resolver, its address answers with metadata that verifies from the
// mirror's root, and the self-update check runs there, in that order; a
// root that cannot be read is an error before any check.
func TestDoctorMirror(t *testing.T) {
	t.Parallel()
	httpURL, _, resolver, rootFile := mirrorWorld(t)
	dir := t.TempDir()
	good := writePlist(t, dir, "mirror.plist", map[string]any{"Upstream": httpURL, "Root": rootFile, "Dir": filepath.Join(dir, "local"), "Resolver": resolver})
	code, out, stderr := run(t, noRuntime, "doctor", "-mirror", good)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a source line and 3 results:\n%s", out)
	}
	for i, want := range []string{
		"Read from mirror: " + good,
		"ok    dns          liveupdate.vendor.test via " + resolver + ": liveupdate.vendor.test → pool.vendor.test (CNAME) has address 127.0.0.1",
		"ok    mirror-sync  " + httpURL + " at 127.0.0.1: answers: timestamp version 2 verifies",
		"ok    self-update  " + httpURL + " at 127.0.0.1 (Vigil release for ",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d: %q, want it to begin %q", i, lines[i], want)
		}
	}
	bad := writePlist(t, dir, "bad.plist", map[string]any{"Upstream": httpURL, "Root": filepath.Join(dir, "missing.json"), "Dir": filepath.Join(dir, "local"), "Resolver": resolver})
	code, out, stderr = run(t, noRuntime, "doctor", "-mirror", bad)
	if code != 1 || !strings.Contains(stderr, "mirror: -root") || strings.Contains(out, "ok ") {
		t.Fatalf("missing root: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
