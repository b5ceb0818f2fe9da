//go:build unix

package ports

import (
	"errors"
	"syscall"
)

// processExists reports whether a process with this PID exists (signal 0:
// nothing is sent). EPERM means it exists but belongs to another user.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
