//go:build unix

package liveupdate

import "syscall"

// oNonblock opens FIFOs without waiting for a writer; it has no effect on
// regular files and directories.
const oNonblock = syscall.O_NONBLOCK
