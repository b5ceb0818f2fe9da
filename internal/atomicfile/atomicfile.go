// Package atomicfile writes files so that readers see either the old
// content or the new, never a mix: write to a temporary file in the same
// directory, sync it, rename it over the target, and sync the directory.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile atomically replaces path with data, with the given mode.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every platform syncs directories
		d.Close()
	}
	return nil
}
