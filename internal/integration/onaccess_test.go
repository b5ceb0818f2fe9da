package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

const eicarString = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// scriptMarker is what the test body signature finds in a script.
const scriptMarker = "VIGIL-ONACCESS-TEST-MARKER"

// needOnAccess ends t unless this machine can run an on-access agent:
// root (fanotify needs CAP_SYS_ADMIN).
func needOnAccess(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, testenv.RequireNetns, "on-access scanning needs root (fanotify)")
	}
	if _, err := os.Stat("/proc/sys/fs/fanotify"); err != nil {
		testenv.SkipOrFail(t, testenv.RequireNetns, "this kernel has no fanotify")
	}
}

// watchedDir returns a new directory for an agent to watch, on the tmpfs
// /dev/shm when it allows programs to run: the agent marks the whole
// filesystem holding it, and on a filesystem of its own the rest of the
// machine's opens do not pass through the agent (nor wait for it when the
// test stops it).
func watchedDir(t *testing.T) string {
	t.Helper()
	if shmExec() {
		dir, err := os.MkdirTemp("/dev/shm", "vigil-onaccess-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// shmExec reports whether /dev/shm is a tmpfs mounted without noexec.
func shmExec() bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 4 && fs[1] == "/dev/shm" && fs[2] == "tmpfs" {
			for _, o := range strings.Split(fs[3], ",") {
				if o == "noexec" {
					return false
				}
			}
			return true
		}
	}
	return false
}

// onAccessAgent is an agent process with on-access scanning.
type onAccessAgent struct {
	s       *loopbackServer
	f       *fleet
	m       *member
	admin   *api.AdminClient
	metrics string // base URL of its /metrics
}

// newOnAccessAgent writes the preferences of an agent watching dir with
// edit applied, installs test definitions (EICAR by hash, scriptMarker by
// body) and starts it, waiting until on-access scanning runs.
func newOnAccessAgent(t *testing.T, dir string, edit func(p *prefs.Agent)) *onAccessAgent {
	t.Helper()
	s := newLoopbackServer(t)
	f := s.fleet(t)
	m := s.addAgent(f, "guarded")
	p, err := prefs.Load(m.plist)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	p.OnAccess, p.OnAccessPaths, p.OnAccessMode = true, []string{dir}, "block"
	p.MetricsAddress = metricsAddr
	if edit != nil {
		edit(p)
	}
	if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	installTestDefinitions(t, filepath.Join(m.state, "definitions"))
	oa := &onAccessAgent{s: s, f: f, m: m, admin: s.adminClient(t), metrics: "http://" + metricsAddr + "/metrics"}
	f.startAgent(m)
	m.proc.WaitLog(t, "on-access scanning running", 60*time.Second)
	return oa
}

// installTestDefinitions installs a release "1" in the agent's definitions
// layout, as an update would.
func installTestDefinitions(t *testing.T, defs string) {
	t.Helper()
	rel := filepath.Join(defs, "releases", "1")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"test.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Vigil.Test.EICAR\n",
		"test.ndb": fmt.Sprintf("Vigil.Test.Script:0:*:%x\n", scriptMarker),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rel, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join("releases", "1"), filepath.Join(defs, "current")); err != nil {
		t.Fatal(err)
	}
}

// metric returns the sum of the samples of the metric name (with the
// label text, e.g. `kind="open"`, when not empty) the agent exports.
func (oa *onAccessAgent) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	resp, err := http.Get(oa.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if label != "" && !strings.Contains(line, label) {
			continue
		}
		fs := strings.Fields(line)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// detection waits until the server lists a detection of path matching ok.
func (oa *onAccessAgent) detection(t *testing.T, path string, ok func(d api.DetectionInfo) bool) api.DetectionInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []api.DetectionInfo
	for time.Now().Before(deadline) {
		ds, err := oa.admin.Detections(t.Context(), "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Path == path && ok(d) {
				return d
			}
		}
		last = ds
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no detection of %s as wanted reached the server; it has %+v", path, last)
	return api.DetectionInfo{}
}

// state waits until the agent's check-in reports an on-access state
// matching ok.
func (oa *onAccessAgent) state(t *testing.T, what string, ok func(s *api.OnAccessState) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *api.OnAccessState
	for time.Now().Before(deadline) {
		as, err := oa.admin.Agents(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.OnAccess != nil && ok(a.OnAccess) {
				return
			}
			last = a.OnAccess
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the agent's check-in never reported on-access %s; last %+v", what, last)
}

// cat runs cat on path and returns its output and error.
func cat(t *testing.T, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "cat", path).CombinedOutput()
	return string(out), err
}

func mustCat(t *testing.T, path, want string) {
	t.Helper()
	if out, err := cat(t, path); err != nil || out != want {
		t.Fatalf("cat %s = %q, %v; want %q", path, out, err, want)
	}
}

func mustDeny(t *testing.T, path string) {
	t.Helper()
	out, err := cat(t, path)
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("cat %s = %q, %v; want it denied with a permission error", path, out, err)
	}
}

func writeTestFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// TestOnAccessBlock runs a real agent in block mode on a watched
// directory: an EICAR file cannot be read, and its detection (with the
// process) reaches the server and the file is quarantined; a clean file
// opens; a clean file overwritten with infected bytes is caught on its
// next open; an infected script cannot be executed; an excluded directory
// is never scanned; the server turns on-access to notify and off with
// "set", and the check-ins report it.
func TestOnAccessBlock(t *testing.T) {
	t.Parallel()
	needOnAccess(t)
	dir := watchedDir(t)
	quarantine := t.TempDir()
	excluded := filepath.Join(dir, "excluded")
	if err := os.Mkdir(excluded, 0o755); err != nil {
		t.Fatal(err)
	}
	eicar := filepath.Join(dir, "eicar.com")
	clean := filepath.Join(dir, "clean.txt")
	cleanText := strings.Repeat("c", len(eicarString)-1) + "\n"
	script := filepath.Join(dir, "sub", "deeper", "run.sh")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	goodScript := filepath.Join(dir, "sub", "good.sh")
	excludedEicar := filepath.Join(excluded, "eicar.com")
	writeTestFile(t, eicar, eicarString, 0o644)
	writeTestFile(t, clean, cleanText, 0o644)
	writeTestFile(t, script, "#!/bin/sh\necho "+scriptMarker+"\n", 0o755)
	writeTestFile(t, goodScript, "#!/bin/sh\necho good\n", 0o755)
	writeTestFile(t, excludedEicar, eicarString, 0o644)

	oa := newOnAccessAgent(t, dir, func(p *prefs.Agent) {
		p.QuarantineDirectory = quarantine
		p.OnAccessExcludePaths = []string{excluded}
	})
	oa.state(t, "running in block mode", func(s *api.OnAccessState) bool {
		return s.Enabled && s.Running && s.Mode == "block" && len(s.Paths) == 1 && s.Paths[0] == dir
	})

	// EICAR: denied, reported with the process, quarantined.
	mustDeny(t, eicar)
	catPath, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	catPath, _ = filepath.EvalSymlinks(catPath)
	d := oa.detection(t, eicar, func(d api.DetectionInfo) bool { return d.Access == "open" })
	if !d.Blocked || d.Signature != "Vigil.Test.EICAR" || d.PID <= 0 || d.Process != catPath || d.Quarantine == "" {
		t.Errorf("detection %+v: want blocked, Vigil.Test.EICAR, by %s with its pid, quarantined", d, catPath)
	}
	if _, err := os.Stat(eicar); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after quarantine: %v, want it gone", eicar, err)
	}

	// A clean file opens, with its content, again and again.
	for range 3 {
		mustCat(t, clean, cleanText)
	}

	// Written with infected bytes: the close after the write is scanned,
	// the file reported (close_write, not blocked: nothing waited) and
	// quarantined before anyone opens it.
	written := filepath.Join(dir, "download.bin")
	writeTestFile(t, written, eicarString, 0o644)
	d = oa.detection(t, written, func(d api.DetectionInfo) bool { return d.Access == "close_write" })
	if d.Blocked || d.Quarantine == "" {
		t.Errorf("close_write detection %+v: want reported, not blocked, and quarantined", d)
	}

	// An infected script cannot be run; a clean one runs.
	if out, err := exec.Command(goodScript).CombinedOutput(); err != nil || string(out) != "good\n" {
		t.Fatalf("clean script: %q, %v", out, err)
	}
	out2, err := exec.Command(script).CombinedOutput()
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("infected script ran: %q, %v; want EPERM", out2, err)
	}
	oa.detection(t, script, func(d api.DetectionInfo) bool {
		return d.Signature == "Vigil.Test.Script" && d.Blocked && (d.Access == "exec" || d.Access == "open")
	})

	// Excluded: read, never scanned.
	misses := oa.metric(t, "vigil_onaccess_cache_misses_total", "")
	excl := oa.metric(t, "vigil_onaccess_excluded_total", "")
	mustCat(t, excludedEicar, eicarString)
	if got := oa.metric(t, "vigil_onaccess_excluded_total", ""); got <= excl {
		t.Errorf("excluded accesses %v, then %v: the excluded file's open was not counted", excl, got)
	}
	if got := oa.metric(t, "vigil_onaccess_cache_misses_total", ""); got != misses {
		t.Errorf("scans %v, then %v after opening an excluded file", misses, got)
	}
	if oa.metric(t, "vigil_onaccess_verdict_seconds_count", `source="scan"`) == 0 {
		t.Error("no verdict latency observed")
	}

	// The server switches the agent to notify: EICAR is read, and
	// reported unblocked.
	fresh := filepath.Join(dir, "eicar2.com")
	writeTestFile(t, fresh, eicarString, 0o644)
	oa.f.send(command.Target{All: true}, command.Set, command.SettingOnAccessMode+"=notify", command.SettingOnAccess+"=on")
	oa.state(t, "running in notify mode", func(s *api.OnAccessState) bool { return s.Running && s.Mode == "notify" })
	// The written file may have been quarantined as it was closed (it was
	// written while block mode ran): write it again.
	writeTestFile(t, fresh, eicarString, 0o644)
	if out, err := cat(t, fresh); err == nil && out != eicarString {
		t.Fatalf("cat in notify mode = %q", out)
	}
	oa.detection(t, fresh, func(d api.DetectionInfo) bool { return !d.Blocked })

	// Off: the check-in says so.
	oa.f.send(command.Target{All: true}, command.Set, command.SettingOnAccess+"=off")
	oa.state(t, "off", func(s *api.OnAccessState) bool { return !s.Enabled && !s.Running })
	writeTestFile(t, eicar, eicarString, 0o644)
	mustCat(t, eicar, eicarString)
}

// TestOnAccessAgentKilled: a clean file overwritten with infected bytes
// (same size, same inode) is caught on its next open, the verdict cached
// for it and the kernel's ignore mark notwithstanding; an agent stopped
// mid-verdict holds the opens of its watched files (the guard: a cat is
// seen waiting), and once it is SIGKILLed every file opens at once,
// infected ones too.
func TestOnAccessAgentKilled(t *testing.T) {
	t.Parallel()
	needOnAccess(t)
	dir := watchedDir(t)
	clean := filepath.Join(dir, "clean.txt")
	eicar := filepath.Join(dir, "eicar.com")
	writeTestFile(t, clean, "clean\n", 0o644)
	writeTestFile(t, eicar, eicarString, 0o644)
	oa := newOnAccessAgent(t, dir, func(p *prefs.Agent) {
		p.OnAccessVerdictTimeout = 60 * time.Second
		p.OnAccessEvents = []string{"open", "exec"} // no scan at close: the open must catch it
	})
	mustDeny(t, eicar)

	victim := filepath.Join(dir, "victim.txt")
	victimText := strings.Repeat("v", len(eicarString))
	writeTestFile(t, victim, victimText, 0o644)
	for range 3 {
		mustCat(t, victim, victimText)
	}
	if oa.metric(t, "vigil_onaccess_cache_misses_total", "") < 1 {
		t.Fatal("the clean file was never scanned")
	}
	fh, err := os.OpenFile(victim, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte(eicarString), 0); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	mustDeny(t, victim)
	d := oa.detection(t, victim, func(d api.DetectionInfo) bool { return d.Access == "open" && d.Blocked })
	if d.Quarantine != "" {
		t.Errorf("detection %+v quarantined by an agent without QuarantineDirectory", d)
	}

	pid := oa.m.proc.(*fileProc).cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill returns once the signal is sent; a thread of the agent may
	// still answer an event until every thread has stopped.
	waitStopped(t, pid)
	cmd := exec.Command("cat", clean)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The guard: the cat waits for the stopped agent's answer.
	waitWchan(t, cmd.Process.Pid, "fanotify")
	select {
	case err := <-done:
		t.Fatalf("cat finished (%v) while the agent was stopped: the open was not held", err)
	default:
	}
	killed := time.Now()
	oa.m.proc.Kill()
	select {
	case err := <-done:
		if err != nil || out.String() != "clean\n" {
			t.Fatalf("cat after SIGKILL: %q, %v", out.String(), err)
		}
		t.Logf("the held open completed %v after SIGKILL", time.Since(killed))
	case <-time.After(10 * time.Second):
		t.Fatal("cat still waiting 10 s after the agent was SIGKILLed")
	}
	mustCat(t, eicar, eicarString)
}

// waitWchan waits until process pid sleeps in a kernel function whose
// name holds substr.
// waitStopped waits until every thread of process pid is stopped (state
// T in /proc/PID/task/TID/stat).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		stopped := len(tasks) > 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			// The state follows the command name in parentheses.
			i := strings.LastIndexByte(string(b), ')')
			if err != nil || i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not stop", pid)
}

func waitWchan(t *testing.T, pid int, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
		if err != nil && last != "" {
			t.Fatalf("process %d ended before it was seen waiting in %s (last wchan %q): %v", pid, substr, last, err)
		}
		if err == nil {
			last = string(b)
			if strings.Contains(last, substr) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never waited in %s (last wchan %q)", pid, substr, last)
}

// TestOnAccessSlowFailsOpen: with a verdict timeout far shorter than the
// scan of a large file takes, the open goes through when the timeout
// passes, and is counted as a fail-open; the machine does not wait for a
// slow agent.
func TestOnAccessSlowFailsOpen(t *testing.T) {
	t.Parallel()
	needOnAccess(t)
	dir := watchedDir(t)
	big := filepath.Join(dir, "big.bin")
	data := make([]byte, 96<<20)
	rand.Read(data)
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	data = nil
	oa := newOnAccessAgent(t, dir, func(p *prefs.Agent) {
		p.OnAccessVerdictTimeout = 10 * time.Millisecond
		p.OnAccessMaxFileSize = 1 << 30
		p.OnAccessEvents = []string{"open"}
	})
	if n := oa.metric(t, "vigil_onaccess_fail_opens_total", ""); n != 0 {
		t.Fatalf("fail-opens before the test: %v", n)
	}
	start := time.Now()
	if err := exec.Command("cmp", "-s", big, big).Run(); err != nil {
		t.Fatalf("reading the large file: %v", err)
	}
	t.Logf("opened and read %d MiB in %v", 96, time.Since(start))
	if n := oa.metric(t, "vigil_onaccess_fail_opens_total", ""); n < 1 {
		t.Fatalf("fail-opens %v, want the open counted", n)
	}
	if !strings.Contains(oa.m.proc.Log(), "verdicts not ready within the timeout") {
		t.Error("the fail-open was not logged")
	}
}
