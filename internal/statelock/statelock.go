// Package statelock is the lock a long-running part (the agent, the
// relay) holds on its state directory, so that two processes never share
// one credential and one record of progress: an exclusive flock on a lock
// file, which also holds the holder's PID for the error the next process
// gets. The file stays when the lock is given up: removing it would let a
// third process lock a new file while a second still waits on the old one.
package statelock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// HeldError is the error of Take when another process holds the lock.
type HeldError struct {
	Path string
	PID  int // the holder's, as it wrote it; 0 when unknown
}

func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is locked by the process with PID %d", e.Path, e.PID)
	}
	return e.Path + " is locked by another process"
}

// Take takes the lock of the file at path (created mode 0600 if missing)
// without waiting, and writes this process's PID into it. The lock lasts
// until the returned file is closed. A lock another process holds is a
// *HeldError.
func Take(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		held := &HeldError{Path: path}
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil && pid > 0 {
				held.PID = pid
			}
		}
		return nil, held
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

// Holder names the process holding a lock, for messages: "the agent with
// PID 42", or "another process" when the PID is unknown.
func (e *HeldError) Holder(what string) string {
	if e.PID > 0 {
		return "the " + what + " with PID " + strconv.Itoa(e.PID)
	}
	return "another process"
}
