package liveupdate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// maxPathLen bounds a requested path, in bytes.
const maxPathLen = 4096

var (
	// errBadPath is a malformed path: "..", ".", empty segments, control
	// bytes, backslashes, too long.
	errBadPath = errors.New("malformed path")
	// errNotFound covers everything that exists but is not served
	// (dotfiles, special files, symlinks leaving the root) as well as
	// what does not exist: a client cannot tell them apart.
	errNotFound = errors.New("not found")
	// errReadOnly is every write.
	errReadOnly = errors.New("read-only server: writes are refused")
)

// repo is the repository seen through an os.Root.
type repo struct {
	root *os.Root
}

func openRepo(dir string) (*repo, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("liveupdate: repository root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("liveupdate: repository root %s is not a directory", dir)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("liveupdate: repository root: %w", err)
	}
	return &repo{root: r}, nil
}

func (r *repo) close() error { return r.root.Close() }

// cleanName turns a client's absolute, slash-separated path ("/a/b",
// "/a/dir/", "/") into a name relative to the root ("a/b", "a/dir", ".").
// It refuses malformed paths with errBadPath and paths naming a dotfile
// with errNotFound. It never cleans: a path that would need cleaning is
// malformed.
func cleanName(p string) (string, error) {
	if len(p) > maxPathLen || !strings.HasPrefix(p, "/") {
		return "", errBadPath
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", errBadPath
		}
	}
	if p == "/" {
		return ".", nil
	}
	name := strings.TrimSuffix(p[1:], "/")
	if name == "" {
		return "", errBadPath // "//"
	}
	hidden := false
	for seg := range strings.SplitSeq(name, "/") {
		switch {
		case seg == "", seg == ".", seg == "..":
			return "", errBadPath
		case seg[0] == '.':
			hidden = true
		}
	}
	if hidden {
		return "", errNotFound
	}
	return name, nil
}

// stat returns the FileInfo of a served file or directory, following
// symlinks inside the root.
func (r *repo) stat(p string) (fs.FileInfo, error) {
	name, err := cleanName(p)
	if err != nil {
		return nil, err
	}
	fi, err := r.root.Stat(name)
	if err != nil {
		return nil, notFound(err)
	}
	if !served(fi) {
		return nil, errNotFound
	}
	return fi, nil
}

// open opens a served file or directory for reading. Special files are
// opened non-blocking (a FIFO would otherwise wait for a writer) and then
// refused.
func (r *repo) open(p string) (*os.File, fs.FileInfo, error) {
	name, err := cleanName(p)
	if err != nil {
		return nil, nil, err
	}
	f, err := r.root.OpenFile(name, os.O_RDONLY|oNonblock, 0)
	if err != nil {
		return nil, nil, notFound(err)
	}
	fi, err := f.Stat()
	if err != nil || !served(fi) {
		f.Close()
		return nil, nil, errNotFound
	}
	return f, fi, nil
}

// entry is one line of a directory listing.
type entry struct {
	name string
	info fs.FileInfo
}

// list returns the served entries of directory p, sorted by name: no
// dotfiles, no special files, no symlinks that dangle or leave the root
// (symlinks inside it are listed as what they point to).
func (r *repo) list(p string) ([]entry, error) {
	d, fi, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if !fi.IsDir() {
		return nil, errNotDir
	}
	des, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	name, _ := cleanName(p)
	out := make([]entry, 0, len(des))
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") || strings.ContainsFunc(n, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '\\' }) {
			continue
		}
		var info fs.FileInfo
		if de.Type()&fs.ModeSymlink != 0 {
			info, err = r.root.Stat(name + "/" + n)
		} else {
			info, err = de.Info()
		}
		if err != nil || !served(info) {
			continue
		}
		out = append(out, entry{n, info})
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

var errNotDir = errors.New("not a directory")

func served(fi fs.FileInfo) bool { return fi.Mode().IsRegular() || fi.IsDir() }

// notFound maps file system errors to errNotFound, keeping the cause for
// the operational log.
func notFound(err error) error {
	return fmt.Errorf("%w: %w", errNotFound, err)
}
