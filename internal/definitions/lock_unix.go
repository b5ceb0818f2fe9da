//go:build unix

package definitions

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockState takes the exclusive update lock on path, failing with ErrBusy
// at once if another process holds it. The lock dies with the process.
func lockState(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("definitions update: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("definitions update: %w (lock %s)", ErrBusy, path)
		}
		return nil, fmt.Errorf("definitions update: lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
