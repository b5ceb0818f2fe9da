package netlab

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultStopTimeout is how long Proc.Stop waits after SIGTERM before it
// sends SIGKILL, unless the Proc's StopTimeout says otherwise.
const DefaultStopTimeout = 5 * time.Second

// logTail is how much of a process's log is shown when its test failed.
const logTail = 8 << 10

// Proc is a process running in a host's namespace, started by Host.Start.
// Its stdout and stderr go to the file LogPath. It runs in its own process
// group, and stopping it signals the whole group, so helpers it forks go
// too.
type Proc struct {
	// Cmd is the running command; Cmd.Process.Pid is the program's own
	// pid, since ip netns exec execs it.
	Cmd *exec.Cmd
	// LogPath is the file holding the process's combined output.
	LogPath string
	// StopTimeout overrides DefaultStopTimeout for Stop when positive.
	StopTimeout time.Duration

	host    *Host
	logFile *os.File
	done    chan struct{}
	err     error // the result of Wait, valid once done is closed
	mu      sync.Mutex
}

// Start starts prog inside the host's namespace with its output captured to
// a file in t.TempDir, and fails the test if it cannot. The process is
// stopped (see Stop) when the test ends; if the test failed, the tail of its
// log is then written to the test log.
func (h *Host) Start(t testing.TB, prog string, args ...string) *Proc {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, fileSafe(h.Name)+"-"+fileSafe(filepath.Base(prog))+".log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("netlab: %s: %v", h, err)
	}
	cmd := h.Command(prog, args...)
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("netlab: %s: starting %s: %v", h, prog, err)
	}
	p := &Proc{Cmd: cmd, LogPath: path, host: h, logFile: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop()
		p.logFile.Close()
		if t.Failed() {
			log := p.Log()
			if len(log) > logTail {
				log = "..." + log[len(log)-logTail:]
			}
			t.Logf("netlab: %s %s (pid %d, %v) log %s:\n%s", h, prog, p.Pid(), p.err, p.LogPath, log)
		}
	})
	return p
}

// Pid returns the process's pid, which is also its process group ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Log returns everything the process has written so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit status, as
// exec.Cmd.Wait does.
func (p *Proc) Wait() error {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// WaitLog waits until the process's log contains substr, failing the test if
// it does not within timeout or the process exits first.
func (p *Proc) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), substr) {
			return
		}
		if p.Exited() {
			if strings.Contains(p.Log(), substr) {
				return
			}
			t.Fatalf("netlab: %s: process %d exited (%v) before logging %q; log:\n%s", p.host, p.Pid(), p.Wait(), substr, p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("netlab: %s: process %d did not log %q within %v; log:\n%s", p.host, p.Pid(), substr, timeout, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL to the process and its process group and waits for it.
func (p *Proc) Kill() {
	if !p.Exited() {
		p.signal(syscall.SIGKILL)
	}
	<-p.done
	p.killGroup()
}

// Stop sends SIGTERM to the process and its process group, waits up to
// StopTimeout (DefaultStopTimeout if unset) for it to exit, then sends
// SIGKILL and waits. Whatever is left in the process group is killed. It
// returns the process's exit status, nil for a clean exit.
func (p *Proc) Stop() error {
	if !p.Exited() {
		p.signal(syscall.SIGTERM)
		timeout := p.StopTimeout
		if timeout <= 0 {
			timeout = DefaultStopTimeout
		}
		timer := time.NewTimer(timeout)
		select {
		case <-p.done:
			timer.Stop()
		case <-timer.C:
			p.signal(syscall.SIGKILL)
			<-p.done
		}
	}
	p.killGroup()
	return p.Wait()
}

// signal signals the process group (leader included) while the leader
// runs, once: a program that handles the first SIGTERM by shutting down
// would die of a second one.
func (p *Proc) signal(sig syscall.Signal) {
	if p.Exited() {
		return
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil {
		// No group (yet): signal the process alone, safely through
		// os.Process in case it has been reaped.
		if err := p.Cmd.Process.Signal(sig); errors.Is(err, os.ErrProcessDone) {
			return
		}
	}
}

// killGroup kills what is left of the process group after its leader exited.
func (p *Proc) killGroup() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
}

// fileSafe replaces characters that do not belong in a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
