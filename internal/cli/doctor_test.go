package cli

import (
	"net"
	"strings"
	"testing"
)

// vigil doctor on a LiveUpdate server machine: its listeners accept, or
// the failing one is named and the exit code is 1.
func TestDoctorCommand(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	good := writePlist(t, dir, "good.plist", map[string]any{"Root": dir, "HTTP": ln.Addr().String(), "FTP": "off"})
	code, out, stderr := run(t, noRuntime, "doctor", "-liveupdate", good)
	if code != 0 || !strings.HasPrefix(out, "Read from liveupdate: "+good+" (preference file)\nok") || !strings.Contains(out, "definitions") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	bad := writePlist(t, dir, "bad.plist", map[string]any{"Root": dir, "HTTP": ln.Addr().String(), "FTP": closedAddr})
	code, out, stderr = run(t, noRuntime, "doctor", "-liveupdate", bad, "-json")
	if code != 1 || !strings.Contains(out, `"ok": false`) && !strings.Contains(out, `"ok":false`) || !strings.Contains(stderr, "1 of 2 checks failed") ||
		!strings.HasPrefix(out, "[") || !strings.Contains(stderr, "Read from liveupdate: "+bad) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, _, stderr := run(t, noRuntime, "doctor", "-wait", "-1s", "-liveupdate", good); code != 2 || !strings.Contains(stderr, "-wait") {
		t.Fatalf("negative -wait: exit %d, %q", code, stderr)
	}
}
