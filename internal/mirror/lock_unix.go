//go:build unix

package mirror

import (
	"errors"
	"os"
	"syscall"
)

var errLocked = errors.New("locked")

// lockDir takes an exclusive lock on the file at path (created if
// missing) without waiting; the lock goes with the process.
func lockDir(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
