package liveupdate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
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
	// errPrivateKey is a file that is a private key: not found, to
	// clients.
	errPrivateKey = fmt.Errorf("%w: a private key", errNotFound)
	// errReadOnly is every write.
	errReadOnly = errors.New("read-only server: writes are refused")
)

// ErrUnavailable is what a Config.Fill error that means "try later" is
// (errors.Is): the file may exist but cannot be had now (the upstream is
// down). It is answered 503 over HTTP and 450 to an FTP RETR.
var ErrUnavailable = errors.New("temporarily unavailable")

// repo is the repository seen through an os.Root.
type repo struct {
	root *os.Root
	log  *slog.Logger

	// fill and hit are Config.Fill and Config.Hit; ctx is the context
	// fill gets, cancelled by stopFill.
	fill     func(ctx context.Context, name string) error
	hit      func(name string)
	ctx      context.Context
	stopFill context.CancelFunc
}

// openRepo opens the tree to serve, refusing one that holds private keys
// (see checkNoKeys) with a *PrivateKeyError.
func openRepo(dir string, log *slog.Logger) (*repo, error) {
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
	complete, err := checkNoKeys(r, dir, keyCheckEntries)
	if err != nil {
		r.Close()
		return nil, err
	}
	if !complete {
		log.Info("large tree: checked the first entries for private keys at start; the rest are refused per request if they are keys",
			"root", dir, "entries", keyCheckEntries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &repo{root: r, log: log, ctx: ctx, stopFill: cancel}, nil
}

func (r *repo) close() error {
	r.stopFill()
	return r.root.Close()
}

// mayChange reports whether a file's name says it may change (it is
// served with "Cache-Control: no-cache"): Config.Fill is consulted before
// such a file is served.
func mayChange(name string) bool { return cacheControl(path.Base(name)) != cacheImmutable }

// callFill calls Config.Fill for name and maps its error for clients.
func (r *repo) callFill(name string) error {
	err := r.fill(r.ctx, name)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnavailable):
		r.log.Debug("fill: unavailable", "path", name, "err", err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, fs.ErrNotExist):
		r.log.Debug("fill: not found", "path", name, "err", err)
	default:
		r.log.Warn("fill failed", "path", name, "err", err)
	}
	return notFound(err)
}

// openFill is open for a client's request of a file: with Config.Fill
// set, it fills a missing file, and revalidates one that may change,
// before opening it (see Config.Fill).
func (r *repo) openFill(p string) (*os.File, fs.FileInfo, error) {
	name, err := cleanName(p)
	if err != nil {
		return nil, nil, err
	}
	filled := false // Fill was called for a missing file: not a hit
	if r.fill != nil && mayChange(name) {
		fi, serr := r.root.Stat(name)
		if serr != nil || !fi.IsDir() { // directories are listed as they are
			if err := r.callFill(name); err != nil {
				return nil, nil, err
			}
			filled = serr != nil
		}
	}
	f, fi, err := r.open(p)
	if err != nil && r.fill != nil && !mayChange(name) && errors.Is(err, fs.ErrNotExist) {
		if err := r.callFill(name); err != nil {
			return nil, nil, err
		}
		filled = true
		f, fi, err = r.open(p)
	}
	if err == nil && !filled && r.hit != nil && fi.Mode().IsRegular() {
		r.hit(name)
	}
	return f, fi, err
}

// statFill is stat for a client's request about a file (FTP SIZE, MDTM,
// MLST), filling as openFill does.
func (r *repo) statFill(p string) (fs.FileInfo, error) {
	if r.fill == nil {
		return r.stat(p)
	}
	name, err := cleanName(p)
	if err != nil {
		return nil, err
	}
	fi, err := r.stat(p)
	switch {
	case err == nil && (fi.IsDir() || !mayChange(name)):
		return fi, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if err := r.callFill(name); err != nil {
		return nil, err
	}
	return r.stat(p)
}

// cleanName turns a client's absolute, slash-separated path ("/a/b",
// "/a/dir/", "/") into a name relative to the root ("a/b", "a/dir", ".").
// It refuses malformed paths with errBadPath, and paths naming a dotfile or
// a private key name (a keys directory, a "*.key" file) with errNotFound. It never cleans: a path that would need cleaning is
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
		case seg[0] == '.', privateName(seg):
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
	if fi.Mode().IsRegular() {
		// Whatever its name or the symlink it was reached by, a private
		// key is never served.
		key, err := fileIsPrivateKey(f, fi.Size())
		if err != nil || key {
			f.Close()
			if key {
				r.log.Warn("refused to serve a private key: remove it from the served tree", "path", name)
				return nil, nil, errPrivateKey
			}
			return nil, nil, notFound(err)
		}
	}
	return f, fi, nil
}

// entry is one line of a directory listing.
type entry struct {
	name string
	info fs.FileInfo
}

// list returns the served entries of directory p, sorted by name: no
// dotfiles, no private key names, no special files, no symlinks that dangle or leave the root
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
		if strings.HasPrefix(n, ".") || privateName(n) || strings.ContainsFunc(n, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '\\' }) {
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
