package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-fleet/vigil/internal/statelock"
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
	f, err := statelock.Take(path)
	var held *statelock.HeldError
	switch {
	case errors.As(err, &held):
		return nil, fmt.Errorf("state directory %s is in use by %s (lock file %s): only one agent may run on a state directory",
			filepath.Dir(path), held.Holder("agent"), path)
	case err != nil:
		return nil, fmt.Errorf("state directory lock: %w", err)
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
