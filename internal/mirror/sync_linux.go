//go:build linux

package mirror

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncEachFile tells whether each downloaded target is synced on its own.
// On Linux one syncfs(2) after the downloads makes every file and rename
// durable at once (one journal commit instead of one per file).
const syncEachFile = false

// syncFS makes everything written to the file system holding dir durable.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// startWriteback asks the kernel to start writing the range of f to disk
// now, without waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE), so
// that the disk works while the network does and the final syncfs has
// little left to wait for.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// setDirect turns direct I/O (O_DIRECT) on or off for f and tells whether
// it is now on. A file system without direct I/O leaves it off.
func setDirect(f *os.File, on bool) bool {
	fd := int(f.Fd())
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return false
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl); err != nil {
		return false
	}
	return on
}

// allocBuffer returns n bytes of page-aligned memory outside Go's heap,
// so that the garbage collector's heap target does not grow with the
// download buffers, and a function that releases it (after which it must
// not be used).
func allocBuffer(n int) ([]byte, func()) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return alignedBuffer(n), func() {}
	}
	return b, func() { _ = unix.Munmap(b) }
}
