//go:build !unix

package ports

import "os"

// processExists reports whether a process with this PID exists.
func processExists(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
