package relay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// FileLock is the lock file in StateDir: the running relay holds an
// exclusive flock on it and writes its PID into it, as an agent does in
// its state directory (two relays on one state directory would share one
// credential and overwrite each other's progress).
const FileLock = "relay.lock"

// lockStateDir takes the state directory's lock without waiting; when
// another process holds it, the error names that process's PID.
func lockStateDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("-state-dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil && pid > 0 {
				holder = "the relay with PID " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("-state-dir %s is in use by %s (lock file %s): only one relay may run on a state directory", filepath.Dir(path), holder, path)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return f, nil
}
