package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// FileLockName is the lock file in the state directory: the running
// agent holds an exclusive flock on it and writes its PID into it.
const FileLockName = "lock"

// stateLock is an agent's hold on its state directory: two agents on one
// state directory would both execute every command.
type stateLock struct {
	f *os.File
}

// lockStateDir takes the state directory's lock without waiting. When
// another process holds it, the error names that process's PID.
func lockStateDir(path string) (*stateLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil && pid > 0 {
				holder = "the agent with PID " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("state directory %s is in use by %s (lock file %s): only one agent may run on a state directory", filepath.Dir(path), holder, path)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &stateLock{f: f}, nil
}

// release gives the lock up. The file stays: removing it would let a
// third agent lock a new file while a second still waits on the old one.
func (l *stateLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
