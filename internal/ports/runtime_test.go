package ports

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/netlab"
)

func TestRuntimeDir(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{"": DefaultRuntimeDir(), "off": "", "OFF": "", "/tmp/x": "/tmp/x"} {
		if got := RuntimeDir(env); got != want {
			t.Errorf("RuntimeDir(%q) = %q, want %q", env, got, want)
		}
	}
}

// writePID writes a PID file as Publish does, for another process.
func writePID(t *testing.T, dir, part string, pid int, start string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, part+".plist"), []byte("<plist/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, part+".pid"), []byte(fmt.Sprintf("%d %s\n", pid, start)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A process publishes, is found while it runs, and removes its files.
func TestPublishFindRemove(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run", "vigil")
	settings := []byte("<plist><dict><key>Listen</key><string>:8080</string></dict></plist>")
	p, err := Publish(dir, config.PartServer, settings)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p.Path); err != nil || string(b) != string(settings) {
		t.Fatalf("published %q, %v", b, err)
	}
	r, note, err := FindRunning(dir, config.PartServer)
	if err != nil || note != "" || r == nil || r.PID != os.Getpid() || r.Path != filepath.Join(dir, "server.plist") {
		t.Fatalf("FindRunning = %+v, %q, %v", r, note, err)
	}
	// Publishing again (a restart of the same process's part) replaces.
	if _, err := Publish(dir, config.PartServer, settings); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("left after Remove: %v", ents)
	}
	if r, note, err := FindRunning(dir, config.PartServer); r != nil || note != "" || err != nil {
		t.Fatalf("after Remove: %+v, %q, %v", r, note, err)
	}
	if r, note, err := FindRunning(filepath.Join(dir, "missing"), config.PartLiveUpdate); r != nil || note != "" || err != nil {
		t.Fatalf("missing directory: %+v, %q, %v", r, note, err)
	}
	if _, err := Publish(dir, "../etc", settings); err == nil {
		t.Fatal("a part name with a path published")
	}
}

// exitedPID is the PID of a process that has exited and been reaped.
func exitedPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// Files whose process is gone, or whose PID now belongs to another
// process, or without a valid PID file, are ignored with a note that says
// why; the files of a live process are not overwritten.
func TestFindRunningStale(t *testing.T) {
	t.Parallel()
	parent := os.Getppid()
	parentStart, _ := procStart(parent)
	if parentStart == "" {
		t.Skip("no /proc: start times cannot be checked here")
	}
	tests := []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"dead", func(dir string) { writePID(t, dir, config.PartServer, exitedPID(t), "-") }, "which is no longer running"},
		{"PID reused", func(dir string) { writePID(t, dir, config.PartServer, parent, "1") }, "its PID now belongs to another process"},
		{"no PID file", func(dir string) {
			writePID(t, dir, config.PartServer, parent, parentStart)
			os.Remove(filepath.Join(dir, "server.pid"))
		}, "no server.pid beside it"},
		{"bad PID file", func(dir string) {
			writePID(t, dir, config.PartServer, parent, parentStart)
			os.WriteFile(filepath.Join(dir, "server.pid"), []byte("twelve\n"), 0o644)
		}, "not a PID file"},
		{"negative PID", func(dir string) { writePID(t, dir, config.PartServer, -1, "-") }, `"-1" is not a PID`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(dir)
			r, note, err := FindRunning(dir, config.PartServer)
			if err != nil || r != nil || !strings.Contains(note, tt.want) || !strings.HasPrefix(note, "ignored "+filepath.Join(dir, "server.plist")) {
				t.Fatalf("FindRunning = %+v, %q, %v; want a note with %q", r, note, err, tt.want)
			}
			// A stale file is taken over by the next process.
			p, err := Publish(dir, config.PartServer, []byte("<plist/>"))
			if err != nil {
				t.Fatal(err)
			}
			if r, _, _ := FindRunning(dir, config.PartServer); r == nil || r.PID != os.Getpid() {
				t.Fatalf("after taking over: %+v", r)
			}
			p.Remove()
		})
	}

	// Files of another live process: found, and not overwritten.
	dir := t.TempDir()
	writePID(t, dir, config.PartLiveUpdate, parent, parentStart)
	if r, note, err := FindRunning(dir, config.PartLiveUpdate); r == nil || r.PID != parent || note != "" || err != nil {
		t.Fatalf("live process: %+v, %q, %v", r, note, err)
	}
	_, err := Publish(dir, config.PartLiveUpdate, []byte("<plist><dict/></plist>"))
	var busy *ErrBusy
	if !errors.As(err, &busy) || busy.PID != parent || !strings.Contains(err.Error(), fmt.Sprintf("pid %d, which is running", parent)) {
		t.Fatalf("Publish over a live process's files: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "liveupdate.plist")); string(b) != "<plist/>" {
		t.Fatalf("the live process's settings were overwritten: %q", b)
	}
}

// A part running in another network namespace is not this machine's as
// far as the firewall is concerned: its files are ignored with a note.
func TestFindRunningOtherNetNS(t *testing.T) {
	netlab.Require(t)
	t.Parallel()
	h := netlab.New(t).AddHost("other")
	p := h.Start(t, "sh", "-c", "echo ready; exec sleep 120")
	p.WaitLog(t, "ready", 30*time.Second) // ip has entered the namespace and run sh
	start, _ := procStart(p.Pid())
	if start == "" {
		t.Fatal("no start time for the process in the namespace")
	}
	dir := t.TempDir()
	writePID(t, dir, config.PartServer, p.Pid(), start)
	r, note, err := FindRunning(dir, config.PartServer)
	if err != nil || r != nil || !strings.Contains(note, fmt.Sprintf("pid %d runs in another network namespace", p.Pid())) {
		t.Fatalf("FindRunning = %+v, %q, %v", r, note, err)
	}
}
