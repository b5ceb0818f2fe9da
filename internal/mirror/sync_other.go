//go:build !linux

package mirror

import "os"

// syncEachFile tells whether each downloaded target is synced on its own:
// without syncfs(2), yes, before its rename.
const syncEachFile = true

// syncFS is not available: files are synced one by one.
func syncFS(string) error { return nil }

// startWriteback does nothing where sync_file_range(2) is not available.
func startWriteback(*os.File, int64, int64) {}

// setDirect: direct I/O is used on Linux only.
func setDirect(*os.File, bool) bool { return false }

// allocBuffer returns an aligned buffer of n bytes from Go's heap.
func allocBuffer(n int) ([]byte, func()) { return alignedBuffer(n), func() {} }
