package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/unpack"
)

// DefaultMaxDirRecursion is clamscan's default --max-dir-recursion: how
// many levels of directories are entered, the directory given being the
// first.
const DefaultMaxDirRecursion = 15

// Options tune ScanPaths. The zero value scans as clamscan does by
// default: ClamAV's limits, one detection per file, directories entered
// down to 15 levels, without following symbolic links inside trees.
type Options struct {
	// Exclude lists paths not to scan, with everything under them. A
	// relative path is taken from the working directory; "/a/b" excludes
	// "/a/b" and "/a/b/c" but not "/a/bc".
	Exclude []string
	// ExcludePatterns are filepath.Match patterns. A pattern without a
	// "/" is matched against base names ("*.iso", ".git"); one with a "/"
	// against whole absolute paths ("/home/*/Downloads"). A matching
	// directory is not entered.
	ExcludePatterns []string
	// Limits are clamscan's --max-filesize, --max-scansize, --max-files
	// and --max-recursion, with unpack.Limits' meanings (a zero size or
	// count: no limit). The zero Limits means unpack.DefaultLimits(),
	// ClamAV's defaults. A file larger than MaxFileSize is not read, and
	// reported clean as clamscan reports it (with AlertExceedsMax, as
	// Heuristics.Limits.Exceeded.MaxFileSize).
	Limits unpack.Limits
	// MaxDirRecursion is clamscan's --max-dir-recursion: directories
	// deeper than this many levels (the directory given is level 1) are
	// not entered, silently as clamscan does; 0 means
	// DefaultMaxDirRecursion, and a negative value enters no directory
	// (clamscan's --max-dir-recursion=0).
	MaxDirRecursion int
	// AllMatch is clamscan's --allmatch: every signature that matches
	// every object of a file is reported (one Detection per match, so a
	// signature matching two members of an archive is reported twice, as
	// clamscan prints it twice), then the file's alerts. Without it, one
	// Detection per file: the first signature that matched, or else the
	// file's alert.
	AllMatch bool
	// AlertExceedsMax is clamscan's --alert-exceeds-max: the first limit
	// reached in a file is reported as Heuristics.Limits.Exceeded.*.
	AlertExceedsMax bool
	// AlertEncrypted is clamscan's --alert-encrypted (and
	// --alert-encrypted-archive): an encrypted zip entry is reported as
	// Heuristics.Encrypted.Zip.
	AlertEncrypted bool
	// NoHeuristicAlerts is clamscan's --heuristic-alerts=no: overlapping
	// zip entries (Heuristics.Zip.OverlappingFiles) are not reported.
	NoHeuristicAlerts bool
	// FollowSymlinks follows symbolic links met inside a tree, but only to
	// targets inside the same tree (the path given, with its own links
	// resolved); others are reported as skipped. Links given as paths are
	// always followed.
	FollowSymlinks bool
	// OneFileSystem does not enter directories on another file system
	// than the path given (reported as skipped).
	OneFileSystem bool
	// Workers is the number of files scanned in parallel; 0 means
	// GOMAXPROCS.
	Workers int
}

// Detection is a file that matched a signature.
type Detection struct {
	Path      string `json:"path"`
	Signature string `json:"signature"`
	SHA256    string `json:"sha256"` // hex digest of the file
	Size      int64  `json:"size"`
}

// MarshalJSON writes a detection with, for a file name that is not valid
// UTF-8 (JSON strings must be), its exact bytes as path_bytes (base64)
// beside the path shown with U+FFFD, as the agents' reports carry it.
func (d Detection) MarshalJSON() ([]byte, error) {
	type plain Detection
	return json.Marshal(struct {
		plain
		PathBytes []byte `json:"path_bytes,omitempty"`
	}{plain(d), nameBytes(d.Path)})
}

// MarshalJSON writes a skipped path as Detection.MarshalJSON does.
func (s Skipped) MarshalJSON() ([]byte, error) {
	type plain Skipped
	return json.Marshal(struct {
		plain
		PathBytes []byte `json:"path_bytes,omitempty"`
	}{plain(s), nameBytes(s.Path)})
}

// nameBytes is a file name's bytes when it is not valid UTF-8, else nil.
func nameBytes(name string) []byte {
	if utf8.ValidString(name) {
		return nil
	}
	return []byte(name)
}

// unpackOptions are the options of the walk of each file.
func (o *Options) unpackOptions() unpack.Options {
	u := unpack.DefaultOptions()
	if o.Limits != (unpack.Limits{}) {
		u.Limits = o.Limits
	}
	u.AlertExceedsMax = o.AlertExceedsMax
	u.AlertEncrypted = o.AlertEncrypted
	u.NoHeuristicAlerts = o.NoHeuristicAlerts
	return u
}

// maxDirDepth is the deepest directory level entered.
func (o *Options) maxDirDepth() int {
	switch {
	case o.MaxDirRecursion == 0:
		return DefaultMaxDirRecursion
	case o.MaxDirRecursion < 0:
		return 0
	}
	return o.MaxDirRecursion
}

// Skipped is a path that was not scanned, and why.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Summary is the outcome of ScanPaths.
type Summary struct {
	Files      int64         `json:"files"` // files scanned
	Dirs       int64         `json:"dirs"`  // directories read
	Bytes      int64         `json:"bytes"` // size of the files scanned
	Detections []Detection   `json:"detections"`
	Skipped    []Skipped     `json:"skipped"`
	Duration   time.Duration `json:"duration_ns"`
}

// InfectedFiles is the number of files with at least one detection.
func (s *Summary) InfectedFiles() int {
	n := 0
	for i, d := range s.Detections {
		if i == 0 || d.Path != s.Detections[i-1].Path {
			n++
		}
	}
	return n
}

// EventKind tells what an Event reports.
type EventKind int

// Event kinds.
const (
	EventClean    EventKind = iota // a file scanned, nothing found
	EventInfected                  // a file scanned, Detections found
	EventSkipped                   // a path not scanned, for Reason
)

// Event reports one file as ScanPaths goes.
type Event struct {
	Kind       EventKind
	Path       string
	Size       int64
	Detections []Detection // EventInfected, in the order clamscan prints them
	Reason     string      // EventSkipped
	// Limits lists the limits that stopped something in the file (for
	// debugging output: clamscan says nothing of them by default).
	Limits []unpack.Limit
}

// job is a file to scan.
type job struct {
	path string      // as reported
	open string      // what to open (a link's target)
	info os.FileInfo // from lstat (or stat of the target)
}

// ScanPaths scans files and directory trees with the engine's
// signatures. onEvent, if not nil, is called for every file scanned or
// path skipped, from one goroutine at a time. A path that cannot be read
// is reported as skipped, not returned as an error; the error is ctx's
// when it is cancelled (the Summary then covers what was scanned) or a bad
// option.
func (e *Engine) ScanPaths(ctx context.Context, paths []string, opts Options, onEvent func(Event)) (Summary, error) {
	start := time.Now()
	if e.err != nil {
		return Summary{}, e.err
	}
	for _, p := range opts.ExcludePatterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return Summary{}, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
	}
	w := &walker{e: e, ctx: ctx, opts: opts, onEvent: onEvent, jobs: make(chan job, 64), visited: map[devIno]bool{}}
	for _, x := range opts.Exclude {
		a, err := filepath.Abs(x)
		if err != nil {
			return Summary{}, fmt.Errorf("exclude %q: %w", x, err)
		}
		w.exclude = append(w.exclude, a)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			m := e.newMatcher()
			for j := range w.jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				w.scanFile(m, j)
			}
		})
	}
	for _, p := range paths {
		if ctx.Err() != nil {
			break
		}
		w.root(p)
	}
	close(w.jobs)
	wg.Wait()
	s := w.sum
	// By path; each file's detections stay in the order clamscan prints
	// them.
	slices.SortStableFunc(s.Detections, func(a, b Detection) int { return strings.Compare(a.Path, b.Path) })
	slices.SortStableFunc(s.Skipped, func(a, b Skipped) int { return strings.Compare(a.Path, b.Path) })
	s.Duration = time.Since(start)
	return s, ctx.Err()
}

type devIno struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (devIno, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return devIno{}, false
	}
	return devIno{uint64(st.Dev), uint64(st.Ino)}, true //nolint:unconvert // Dev is int32 on darwin
}

type walker struct {
	e       *Engine
	ctx     context.Context
	opts    Options
	onEvent func(Event)
	jobs    chan job
	exclude []string
	visited map[devIno]bool // directories entered (walker goroutine only)

	mu  sync.Mutex // guards sum and onEvent calls
	sum Summary
}

func (w *walker) emit(ev Event) {
	if w.onEvent != nil {
		w.onEvent(ev)
	}
}

func (w *walker) skip(path, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sum.Skipped = append(w.sum.Skipped, Skipped{Path: path, Reason: reason})
	w.emit(Event{Kind: EventSkipped, Path: path, Reason: reason})
}

// excluded reports whether the absolute path abs is excluded.
func (w *walker) excluded(abs string) bool {
	for _, x := range w.exclude {
		if abs == x || strings.HasPrefix(abs, x+string(filepath.Separator)) || x == string(filepath.Separator) {
			return true
		}
	}
	base := filepath.Base(abs)
	for _, p := range w.opts.ExcludePatterns {
		name := base
		if strings.Contains(p, "/") {
			name = abs
		}
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// reason turns a file system error into a short reason.
func reason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.ELOOP):
		return "too many levels of symbolic links"
	}
	return err.Error()
}

func specialKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "FIFO (named pipe)"
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeCharDevice != 0:
		return "character device"
	case mode&fs.ModeDevice != 0:
		return "block device"
	}
	return "irregular file"
}

// within reports whether path is root or under it.
func within(path, root string) bool {
	return path == root || root == string(filepath.Separator) || strings.HasPrefix(path, root+string(filepath.Separator))
}

// root scans one path given to ScanPaths.
func (w *walker) root(p string) {
	abs, err := filepath.Abs(p)
	if err != nil {
		w.skip(p, err.Error())
		return
	}
	if w.excluded(abs) {
		return
	}
	fi, err := os.Stat(p) // paths given are followed, like clamscan does
	if err != nil {
		if _, lerr := os.Lstat(p); lerr == nil {
			w.skip(p, "symbolic link: "+reason(err))
		} else {
			w.skip(p, reason(err))
		}
		return
	}
	tree, err := filepath.EvalSymlinks(abs)
	if err != nil {
		w.skip(p, reason(err))
		return
	}
	switch {
	case fi.IsDir():
		id, _ := idOf(fi)
		w.dir(p, abs, tree, id.dev, fi, 1)
	case fi.Mode().IsRegular():
		w.file(job{path: p, open: tree, info: fi})
	default:
		w.skip(p, specialKind(fi.Mode()))
	}
}

// file queues a regular file.
func (w *walker) file(j job) {
	select {
	case w.jobs <- j:
	case <-w.ctx.Done():
	}
}

// dir walks directory path (abs: its absolute form; tree: the resolved
// root of the tree it belongs to; dev: the root's device) at level depth
// (the directory given is level 1). Like clamscan, a directory deeper
// than max-dir-recursion is silently not entered.
func (w *walker) dir(path, abs, tree string, dev uint64, fi os.FileInfo, depth int) {
	if depth > w.opts.maxDirDepth() {
		return
	}
	if id, ok := idOf(fi); ok {
		if w.visited[id] {
			w.skip(path, "directory already scanned (symbolic link loop)")
			return
		}
		w.visited[id] = true
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		w.skip(path, reason(err))
		return
	}
	w.mu.Lock()
	w.sum.Dirs++
	w.mu.Unlock()
	for _, ent := range entries {
		if w.ctx.Err() != nil {
			return
		}
		name := ent.Name()
		child := filepath.Join(path, name)
		childAbs := filepath.Join(abs, name)
		if w.excluded(childAbs) {
			continue
		}
		info, err := ent.Info() // lstat
		if err != nil {
			w.skip(child, reason(err))
			continue
		}
		mode := info.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			if !w.opts.FollowSymlinks {
				continue // like clamscan: links inside trees are not followed
			}
			w.link(child, childAbs, tree, dev, depth+1)
		case mode.IsDir():
			if w.opts.OneFileSystem {
				if id, ok := idOf(info); ok && id.dev != dev {
					w.skip(child, "on another file system")
					continue
				}
			}
			w.dir(child, childAbs, tree, dev, info, depth+1)
		case mode.IsRegular():
			w.file(job{path: child, open: childAbs, info: info})
		default:
			w.skip(child, specialKind(mode))
		}
	}
}

// link follows a symbolic link met in a tree, if it stays in the tree; a
// directory it names is at level depth.
func (w *walker) link(path, abs, tree string, dev uint64, depth int) {
	target, err := filepath.EvalSymlinks(abs)
	if err != nil {
		w.skip(path, "symbolic link: "+reason(err))
		return
	}
	if !within(target, tree) {
		w.skip(path, "symbolic link to "+target+", outside the scanned tree: not followed")
		return
	}
	if w.excluded(target) {
		return
	}
	fi, err := os.Stat(target)
	if err != nil {
		w.skip(path, "symbolic link: "+reason(err))
		return
	}
	switch {
	case fi.IsDir():
		if id, ok := idOf(fi); ok && w.visited[id] {
			w.skip(path, "symbolic link to a directory already scanned ("+target+")")
			return
		}
		if w.opts.OneFileSystem {
			if id, ok := idOf(fi); ok && id.dev != dev {
				w.skip(path, "on another file system")
				return
			}
		}
		w.dir(path, abs, tree, dev, fi, depth)
	case fi.Mode().IsRegular():
		w.file(job{path: path, open: target, info: fi})
	default:
		w.skip(path, specialKind(fi.Mode()))
	}
}

// openFlags never block (a FIFO swapped in after lstat) and never follow
// a link swapped in after lstat.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// scanFile scans one file (in a worker).
func (w *walker) scanFile(m *matcher, j job) {
	f, err := os.OpenFile(j.open, openFlags, 0)
	if err != nil {
		w.skip(j.path, reason(err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		w.skip(j.path, reason(err))
		return
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, j.info) {
		w.skip(j.path, "changed while being scanned (no longer the regular file listed)")
		return
	}
	size := fi.Size()
	names, res, err := w.e.scanObjects(w.ctx, m, f, size, j.path, &w.opts)
	if err != nil {
		if w.ctx.Err() == nil {
			w.skip(j.path, "read error: "+reason(err))
		}
		return
	}
	var dets []Detection
	if len(names) > 0 {
		// The file's own SHA-256, whatever object matched: the file is
		// what is reported and quarantined.
		h := sha256.New()
		var sum string
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err == nil {
			sum = hex.EncodeToString(h.Sum(nil))
		}
		for _, name := range names {
			dets = append(dets, Detection{Path: j.path, Signature: name, SHA256: sum, Size: size})
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sum.Files++
	w.sum.Bytes += size
	if len(dets) > 0 {
		w.sum.Detections = append(w.sum.Detections, dets...)
		w.emit(Event{Kind: EventInfected, Path: j.path, Size: size, Detections: dets, Limits: res.Limits})
	} else {
		w.emit(Event{Kind: EventClean, Path: j.path, Size: size, Limits: res.Limits})
	}
}
