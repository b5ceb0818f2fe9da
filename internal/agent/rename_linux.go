package agent

import (
	"errors"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames (sdir, sname) to (ddir, dname), failing with
// EEXIST when the destination exists.
func renameNoReplace(sdir int, sname string, ddir int, dname string) error {
	err := unix.Renameat2(sdir, sname, ddir, dname, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	// A file system without RENAME_NOREPLACE: a hard link fails on an
	// existing destination too.
	if err := unix.Linkat(sdir, sname, ddir, dname, 0); err != nil {
		return err
	}
	return unix.Unlinkat(sdir, sname, 0)
}
