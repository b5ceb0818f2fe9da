//go:build linux

package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/netlab"
)

// vigilBin is the vigil binary TestMain builds.
var vigilBin string

// runtimeBase is the runtime directory (VIGIL_RUNTIME_DIR) of the vigil
// processes run on this host; each lab gets its own under it (labEnv).
var runtimeBase string

// raceEnabled is set by race_test.go when the tests run with -race; the
// binary is then built with -race too.
var raceEnabled bool

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "vigil-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	vigilBin = filepath.Join(dir, "vigil")
	// The servers the tests run publish their settings here, not in the
	// machine's /run/vigil.
	runtimeBase = filepath.Join(dir, "run")
	os.Setenv("VIGIL_RUNTIME_DIR", runtimeBase)
	if raceEnabled && os.Getenv("GORACE") == "" {
		// The binary is built with -race too. By default a race-enabled
		// program sleeps a second at exit (every CLI call would take one)
		// and only reports races; make a race end the process at once, so
		// that the test notices, and raceCheck names it.
		os.Setenv("GORACE", "halt_on_error=1 atexit_sleep_ms=0")
	}
	if err := buildVigil(vigilBin); err != nil {
		fmt.Fprintln(os.Stderr, "integration: building vigil:", err)
		return 1
	}
	return m.Run()
}

// buildVigil builds ./cmd/vigil of this module into out.
func buildVigil(out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out1, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out1))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside a Go module (go env GOMOD is %q)", gomod)
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/vigil")
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = filepath.Dir(gomod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// cleanEnv is the environment for vigil processes: the test's, without the
// variables that would redirect admin commands.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VIGIL_ADMIN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// labEnv is the environment of vigil processes in the hosts of lab:
// cleanEnv with a runtime directory of the lab's own, shared by its hosts
// (as all of them shared one before labs ran in parallel), so that a
// server of one lab never publishes its settings where vigil ports or
// vigil doctor in another lab reads them.
func labEnv(lab *netlab.Lab) []string {
	return append(cleanEnv(), "VIGIL_RUNTIME_DIR="+filepath.Join(runtimeBase, lab.SwitchNS()))
}

// freeTCPPort returns a port of 127.0.0.1 that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeUDPPort returns a UDP port no socket was bound to a moment ago, for a
// multicast group of the test's own.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// fileProc is a process started on this host with its output in a file. It
// runs in its own process group and gets SIGKILL if the test binary dies.
type fileProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startLocal starts vigil with args on this host; it is stopped when the
// test ends, and its log shown if the test failed.
func startLocal(t testing.TB, name string, args ...string) *fileProc {
	t.Helper()
	return startBinary(t, vigilBin, name, args...)
}

// startBinary starts the executable bin with args on this host, as
// startLocal starts vigil.
func startBinary(t testing.TB, bin, name string, args ...string) *fileProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &fileProc{name: name, cmd: cmd, logPath: path, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	raceCheck(t, name, p.Log)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			log := p.Log()
			if len(log) > 8<<10 {
				log = "..." + log[len(log)-8<<10:]
			}
			t.Logf("%s (pid %d, %v) log %s:\n%s", name, cmd.Process.Pid, p.err, path, log)
		}
	})
	return p
}

func (p *fileProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the process and waits for it.
func (p *fileProc) Kill() {
	_ = p.cmd.Process.Kill() // safe once reaped: os.Process knows
	<-p.done
}

// Stop sends SIGTERM and waits up to 10 seconds, then SIGKILL.
func (p *fileProc) Stop() error {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	return p.err
}

// Log returns the process's output so far.
func (p *fileProc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// WaitLog waits until the log holds substr.
func (p *fileProc) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Log(), substr) {
		if p.exited() {
			if strings.Contains(p.Log(), substr) {
				return
			}
			t.Fatalf("%s exited (%v) before logging %q; log:\n%s", p.name, p.err, substr, p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %v; log:\n%s", p.name, substr, timeout, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLines counts the lines of a log holding substr.
func countLines(log, substr string) int {
	n := 0
	for _, l := range bytes.Split([]byte(log), []byte("\n")) {
		if bytes.Contains(l, []byte(substr)) {
			n++
		}
	}
	return n
}

// sysProcAttr puts a process in its own process group (so a terminal's
// signals do not reach it) and kills it if the test binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// raceCheck fails the test, when it ends, if a process's log reports a data
// race. It must be registered before the process's own cleanup (which stops
// it), so that it runs after that.
func raceCheck(t testing.TB, name string, log func() string) {
	t.Cleanup(func() {
		if l := log(); strings.Contains(l, "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", name, l)
		}
	})
}
