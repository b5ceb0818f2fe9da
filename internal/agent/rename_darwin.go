package agent

import "golang.org/x/sys/unix"

// renameNoReplace renames (sdir, sname) to (ddir, dname), failing with
// EEXIST when the destination exists.
func renameNoReplace(sdir int, sname string, ddir int, dname string) error {
	return unix.RenameatxNp(sdir, sname, ddir, dname, unix.RENAME_EXCL)
}
