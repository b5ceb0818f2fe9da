package cvd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WriteDir writes the container's files, the files for which keep
// returns true (all when keep is nil), into the existing directory dir.
// A file is created only if no file of that name exists there. On error,
// the files it wrote are removed.
func (c *Container) WriteDir(dir string, keep func(name string) bool) (written []string, err error) {
	defer func() {
		if err != nil {
			for _, w := range written {
				os.Remove(filepath.Join(dir, w))
			}
			written = nil
		}
	}()
	for _, f := range c.Files {
		if keep != nil && !keep(f.Name) {
			continue
		}
		if err := checkEntryName(f.Name); err != nil {
			return written, err
		}
		p := filepath.Join(dir, f.Name)
		fd, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return written, fmt.Errorf("unpacking %s: %s already exists in %s", c.Name, f.Name, dir)
			}
			return written, fmt.Errorf("unpacking %s: %w", c.Name, err)
		}
		written = append(written, f.Name)
		_, werr := fd.Write(f.Data)
		cerr := fd.Close()
		if werr != nil {
			return written, fmt.Errorf("unpacking %s: %w", c.Name, werr)
		}
		if cerr != nil {
			return written, fmt.Errorf("unpacking %s: %w", c.Name, cerr)
		}
	}
	return written, nil
}

// Unpack checks the container at path (Open) and writes its files into
// dir (WriteDir). A container that fails a check writes nothing.
func Unpack(path, dir string, keys Keys, lim Limits, keep func(name string) bool) (*Container, error) {
	c, err := Open(path, keys, lim)
	if err != nil {
		return nil, err
	}
	if _, err := c.WriteDir(dir, keep); err != nil {
		return nil, err
	}
	return c, nil
}
