package scan

import "syscall"

// setfsuid sets this thread's file system user ID.
func setfsuid(uid int) error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
