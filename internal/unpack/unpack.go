package unpack

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// ClamAV's default limits (libclamav/default.h), the defaults of
// clamscan's --max-filesize, --max-scansize, --max-files and
// --max-recursion.
const (
	DefaultMaxFileSize  = 100 << 20 // --max-filesize: 100 MiB
	DefaultMaxScanSize  = 400 << 20 // --max-scansize: 400 MiB
	DefaultMaxFiles     = 10000     // --max-files
	DefaultMaxRecursion = 17        // --max-recursion
)

// Limits bound what one Walk opens, with ClamAV's names and meanings.
// A zero MaxFileSize, MaxScanSize or MaxFiles means no limit, as it does
// to libclamav; but clamscan's --max-filesize=0 and --max-scansize=0 mean
// 4 GiB - 1 (ParseSize gives what clamscan's flags give), and
// --max-files=0 no limit. A zero MaxRecursion means the default, 17, as
// ClamAV takes --max-recursion=0. MaxFileSize is cut to 2 GiB - 3, as
// libclamav cuts it: larger files are never scanned.
type Limits struct {
	// MaxFileSize (--max-filesize): a file larger than this is not
	// scanned; a decompressed stream (gzip, bzip2, xz) or tar member that
	// would exceed it is not scanned (tar: scanned up to the limit); a zip
	// member is cut to it.
	MaxFileSize int64
	// MaxScanSize (--max-scansize): the total size of the objects scanned
	// for one file, the file itself included.
	MaxScanSize int64
	// MaxFiles (--max-files): the number of objects scanned for one file,
	// the file itself included.
	MaxFiles int
	// MaxRecursion (--max-recursion): how many levels an object may be
	// below the file: the file is level 0, and objects deeper than
	// MaxRecursion-1 are not scanned.
	MaxRecursion int
}

// DefaultLimits returns ClamAV's defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxFileSize:  DefaultMaxFileSize,
		MaxScanSize:  DefaultMaxScanSize,
		MaxFiles:     DefaultMaxFiles,
		MaxRecursion: DefaultMaxRecursion,
	}
}

// Options tune a Walk. DefaultOptions is clamscan's default.
type Options struct {
	Limits Limits
	// AlertExceedsMax (clamscan --alert-exceeds-max) reports the first
	// limit reached in a file as the alert Heuristics.Limits.Exceeded.*
	// (MaxFileSize, MaxScanSize, MaxFiles, MaxRecursion). Without it a
	// limit silently ends that branch, as clamscan does by default.
	AlertExceedsMax bool
	// AlertEncrypted (clamscan --alert-encrypted or
	// --alert-encrypted-archive) reports an encrypted zip entry as
	// Heuristics.Encrypted.Zip. Encrypted entries are never extracted
	// (ClamAV tries only the passwords of .pwdb databases, which Vigil
	// does not load).
	AlertEncrypted bool
	// NoHeuristicAlerts (clamscan --heuristic-alerts=no) turns off
	// Heuristics.Zip.OverlappingFiles: a zip with overlapping entries is
	// then skipped silently.
	NoHeuristicAlerts bool
	// TempDir holds the temporary files of objects too large to keep in
	// memory; "" means os.TempDir().
	TempDir string
	// MemLimit is the size up to which an extracted object is kept in
	// memory; larger ones are written to a temporary file. 0 means 1 MiB.
	MemLimit int
}

// DefaultOptions returns clamscan's defaults: ClamAV's limits, limits
// and encryption not alerted, heuristic alerts on.
func DefaultOptions() Options {
	return Options{Limits: DefaultLimits()}
}

// Alert names, as ClamAV reports them.
const (
	AlertMaxFileSize  = "Heuristics.Limits.Exceeded.MaxFileSize"
	AlertMaxScanSize  = "Heuristics.Limits.Exceeded.MaxScanSize"
	AlertMaxFiles     = "Heuristics.Limits.Exceeded.MaxFiles"
	AlertMaxRecursion = "Heuristics.Limits.Exceeded.MaxRecursion"
	AlertEncryptedZip = "Heuristics.Encrypted.Zip"
	AlertZipOverlap   = "Heuristics.Zip.OverlappingFiles"
	AlertXZDictSize   = "Heuristics.XZ.DicSizeLimit"
)

// Object is one thing ClamAV scans: the file itself or something found
// in it.
type Object struct {
	// Path names the object as clamscan --archive-verbose does: the
	// file's path, then for each archive member on the way
	// "!TYPE:name", TYPE being the archive's type (Type) and name the
	// member's name as stored (zip: at most 255 bytes; tar: the 100-byte
	// name field). A decompressed stream (gzip, bzip2, xz) adds nothing:
	// "a.tar.gz!POSIX_TAR:x/evil.exe". Detections are reported on the
	// file's path (Object.Root), as clamscan prints them.
	Path string
	// Root is the path of the file given to Walk.
	Root string
	// Name is the member's name in its archive; "" for the file itself
	// and for decompressed streams.
	Name string
	// Depth is ClamAV's recursion level: 0 for the file, one more for
	// each member or decompressed stream (and for each zip found
	// embedded in another file).
	Depth int
	// Type is the object's type by content (filetype.Detect).
	Type filetype.Type
	// Containers are the types of the objects holding this one, the
	// outermost (the file) first and the direct container last: ClamAV's
	// recursion stack, which a logical signature's Container and
	// Intermediates look at. Empty for the file itself.
	Containers []filetype.Type
	// Size is the object's size in bytes.
	Size int64
	// R reads the object; it is valid only during the callback.
	R io.ReaderAt
}

// Alert is a heuristic detection: one of the Alert* names, raised on
// the object Path names (the first such object: each name is reported
// once per file, as ClamAV keeps a file's indicators by name). ClamAV
// counts them as "potentially unwanted": they do not end the scan of a
// file; without --allmatch clamscan prints one of them for the file only
// when no signature matched it, with --allmatch all of them after the
// signatures. (ClamAV 1.4 keeps them in a hash map, so which one it
// prints when a file raised several names is arbitrary; Result.Alerts
// is in the order they were raised.)
type Alert struct {
	Name string
	Path string
}

// Limit records a limit that ended a branch (alerted or not), for
// debugging output.
type Limit struct {
	Name   string // the Alert* name of the limit
	Path   string // the object it stopped, or its container
	Detail string
}

// maxLimitsKept bounds Result.Limits.
const maxLimitsKept = 64

// Result is what Walk found besides the objects.
type Result struct {
	Objects int   // objects yielded
	Bytes   int64 // their total size
	Alerts  []Alert
	Limits  []Limit // at most 64
}

// ErrStop, returned by the callback, ends the walk without error: the
// scanner found what it looked for (clamscan stops at the first
// detection without --allmatch).
var ErrStop = errors.New("unpack: stop")

// ErrDetected, returned by the callback, says the object matched and the
// walk goes on (clamscan --allmatch). The callback must return ErrStop or
// ErrDetected for an object that matched: like ClamAV, Walk skips an
// object identical to one already scanned clean in the same file (see
// docs/archives.md), and stops caching once anything matched.
var ErrDetected = errors.New("unpack: detected")

// WalkFile opens path and walks it as Walk does, naming it path.
func WalkFile(ctx context.Context, path string, opts Options, fn func(*Object) error) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Result{}, err
	}
	return Walk(ctx, f, fi.Size(), path, opts, fn)
}

// Walk yields every object ClamAV would scan in a file of size bytes read
// from r, named path: the file's members and decompressed streams, each
// one's own members and so on, and the file itself, in ClamAV's order —
// an archive's members before the archive's own bytes (ClamAV scans the
// raw archive after extracting it), depth first, the file itself last;
// a zip found embedded in another file (a self-extracting archive) after
// that file.
//
// fn is called once for each object; it returns ErrStop (matched, stop:
// clamscan's default) or ErrDetected (matched, go on: --allmatch) when
// the object matched, nil when it did not; another error ends the walk
// and is returned. As ClamAV's clean cache does, an object identical
// (MD5 and size) to one already scanned clean in this file is counted
// against the limits but neither opened nor yielded again; nothing more
// is cached once anything matched or alerted.
//
// A file larger than MaxFileSize is not yielded (with AlertExceedsMax,
// the alert Heuristics.Limits.Exceeded.MaxFileSize is returned), nor one
// larger than MaxScanSize, nor one ClamAV ignores (filetype.Ignored): Walk may
// yield nothing for a file, which clamscan then reports "OK".
// Damaged archives are opened as far as ClamAV would open them and never
// cause an error; the error returned is fn's, ctx's, or a read error of
// r itself.
func Walk(ctx context.Context, r io.ReaderAt, size int64, path string, opts Options, fn func(*Object) error) (Result, error) {
	if size < 0 {
		return Result{}, fmt.Errorf("unpack: %s: negative size %d", path, size)
	}
	w := &walker{ctx: ctx, opts: opts, lim: opts.Limits, fn: fn, root: path}
	if w.lim.MaxRecursion <= 0 {
		w.lim.MaxRecursion = DefaultMaxRecursion
	}
	if w.lim.MaxFileSize > maxFileSizeCap {
		w.lim.MaxFileSize = maxFileSizeCap
	}
	if w.opts.MemLimit <= 0 {
		w.opts.MemLimit = 1 << 20
	}
	if w.lim.MaxFileSize > 0 && size > w.lim.MaxFileSize {
		// cl_scandesc_callback: the file is not scanned at all.
		w.note(AlertMaxFileSize, path, fmt.Sprintf("file of %d bytes > max-filesize %d", size, w.lim.MaxFileSize))
		if opts.AlertExceedsMax {
			w.res.Alerts = append(w.res.Alerts, Alert{Name: AlertMaxFileSize, Path: path})
		}
		return w.res, nil
	}
	n := &node{r: r, size: size, path: path, depth: 0}
	err := w.scan(n, true)
	if errors.Is(err, ErrStop) {
		err = nil
	}
	return w.res, err
}

type status int

const (
	stOK status = iota
	stMaxScanSize
	stMaxFileSize
	stMaxFiles
	stMaxRecursion
)

func (s status) alert() string {
	switch s {
	case stMaxScanSize:
		return AlertMaxScanSize
	case stMaxFileSize:
		return AlertMaxFileSize
	case stMaxFiles:
		return AlertMaxFiles
	case stMaxRecursion:
		return AlertMaxRecursion
	}
	return ""
}

type walker struct {
	ctx  context.Context
	opts Options
	lim  Limits
	fn   func(*Object) error
	root string

	files    int   // ClamAV's ctx->scannedfiles
	scanSize int64 // ClamAV's ctx->scansize
	exceeded bool  // ClamAV's ctx->limit_exceeded: one limit alert per file
	res      Result
	alerted  bool              // an alert or detection in the file: nothing more is cached clean
	stack    []*node           // the objects being scanned, outermost first
	clean    map[cleanKey]bool // objects scanned clean
}

type cleanKey struct {
	sum  [md5.Size]byte
	size int64
}

// node is an object being scanned.
type node struct {
	dontCache bool // a limit stopped something below it
	r         io.ReaderAt
	size      int64
	path      string
	name      string
	depth     int
	typ       filetype.Type // set when the object is typed (scan)
}

func (w *walker) note(name, path, detail string) {
	if len(w.res.Limits) < maxLimitsKept {
		w.res.Limits = append(w.res.Limits, Limit{Name: name, Path: path, Detail: detail})
	}
}

// exceed records a limit reached, and alerts the first one of the file
// when asked to (cli_append_potentially_unwanted_if_heur_exceedsmax).
func (w *walker) exceed(st status, path, detail string) {
	w.note(st.alert(), path, detail)
	if w.exceeded {
		return
	}
	w.exceeded = true
	if w.opts.AlertExceedsMax {
		w.alert(st.alert(), path)
	}
}

// alert records a heuristic alert, once per name: ClamAV keeps a file's
// indicators by name (and reports each name once).
func (w *walker) alert(name, path string) {
	w.alerted = true
	for _, a := range w.res.Alerts {
		if a.Name == name {
			return
		}
	}
	w.res.Alerts = append(w.res.Alerts, Alert{Name: name, Path: path})
}

// check is ClamAV's cli_checklimits for need bytes.
func (w *walker) check(need int64, path string) status {
	l := w.lim
	var st status
	var detail string
	switch {
	case need > 0 && l.MaxScanSize > 0 && l.MaxScanSize-w.scanSize < need:
		st, detail = stMaxScanSize, fmt.Sprintf("%d bytes with %d of max-scansize %d left", need, l.MaxScanSize-w.scanSize, l.MaxScanSize)
	case need > 0 && l.MaxFileSize > 0 && l.MaxFileSize < need:
		st, detail = stMaxFileSize, fmt.Sprintf("%d bytes > max-filesize %d", need, l.MaxFileSize)
	case l.MaxFiles > 0 && w.files >= l.MaxFiles:
		st, detail = stMaxFiles, fmt.Sprintf("max-files %d reached", l.MaxFiles)
	default:
		return stOK
	}
	w.exceed(st, path, detail)
	return st
}

// push is ClamAV's cli_recursion_stack_push for an object of size bytes
// below an object at depth parent: the limits, then the recursion level.
func (w *walker) push(parent int, size int64, path string) status {
	if st := w.check(size, path); st != stOK {
		w.emax()
		return st
	}
	if parent >= w.lim.MaxRecursion-1 {
		w.exceed(stMaxRecursion, path, fmt.Sprintf("level %d > max-recursion %d - 1", parent+1, w.lim.MaxRecursion))
		w.emax()
		return stMaxRecursion
	}
	return stOK
}

// child scans an extracted object below parent (cli_magic_scan_desc):
// nothing for 5 bytes or less, the limits and recursion level, then the
// object. The status is the push's, which ends the parent archive's
// loop when not stOK, as in ClamAV.
func (w *walker) child(parent *node, data *spool, name, path string) (status, error) {
	if data.size() <= 5 {
		return stOK, nil
	}
	if st := w.push(parent.depth, data.size(), path); st != stOK {
		return st, nil
	}
	return stOK, w.scan(&node{r: data.readerAt(), size: data.size(), path: path, name: name, depth: parent.depth + 1}, false)
}

// memberPath names a member of an archive of type t.
func memberPath(parent string, t filetype.Type, name string) string {
	return parent + "!" + typeName(t) + ":" + name
}

// scan is ClamAV's cli_magic_scan of one object: count it against the
// limits, type it, open it, yield it, then look for embedded zips.
func (w *walker) scan(n *node, root bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	head := make([]byte, min(n.size, filetype.MagicSize))
	if _, err := n.r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", n.path, err)
	}
	t := filetype.Detect(head)
	n.typ = t
	if n.size <= 5 {
		// ClamAV ignores such small objects; the file itself is still
		// yielded (the scanner counts it, and matches nothing in it).
		if !root {
			return nil
		}
		return w.yield(n, t)
	}
	w.stack = append(w.stack, n)
	defer func() { w.stack = w.stack[:len(w.stack)-1] }()
	// cli_updatelimits.
	if st := w.check(n.size, n.path); st != stOK {
		w.emax()
		return nil
	}
	w.files++
	w.scanSize += n.size
	if w.lim.MaxScanSize > 0 && w.scanSize > w.lim.MaxScanSize {
		w.scanSize = w.lim.MaxScanSize
	}
	// ClamAV's clean cache: an object identical (MD5 and size) to one
	// already scanned clean is not scanned again, nor opened. ClamAV's
	// cache lives as long as its engine; this one, for one file. Only
	// archives are hashed: skipping a clean leaf again changes nothing
	// but the scanner's work (it is counted against the limits either
	// way), and hashing every leaf costs more than scanning it.
	var key cleanKey
	cacheable := !root && opened(t)
	if cacheable {
		h := md5.New()
		if _, err := io.Copy(h, io.NewSectionReader(n.r, 0, n.size)); err != nil {
			return fmt.Errorf("read %s: %w", n.path, err)
		}
		key = cleanKey{size: n.size}
		h.Sum(key.sum[:0])
		if w.clean[key] {
			return nil
		}
	}
	if t == filetype.Ignored {
		// ClamAV neither matches nor opens these (MP3, Ogg, SQLite, ...).
		return nil
	}
	var err error
	switch t {
	case filetype.ZIP, filetype.OOXMLWord, filetype.OOXMLPPT, filetype.OOXMLXL, filetype.OOXMLHWP:
		err = w.unzip(n)
	case filetype.GZ:
		err = w.gunzip(n)
	case filetype.BZ:
		err = w.bunzip2(n)
	case filetype.XZ:
		err = w.unxz(n)
	case filetype.PosixTar, filetype.OldTar:
		err = w.untar(n, t)
	}
	if err != nil {
		return err
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if err := w.yield(n, t); err != nil {
		return err
	}
	if sfxSearched(t) {
		if err := w.sfx(n); err != nil {
			return err
		}
	}
	// clean_cache_add: not after any alert in the file, nor for an
	// object on whose way down a limit stopped something.
	if cacheable && !w.alerted && !n.dontCache {
		if w.clean == nil {
			w.clean = map[cleanKey]bool{}
		}
		w.clean[key] = true
	}
	return nil
}

// emax is ClamAV's emax_reached: the objects being scanned (the stack)
// are not cached as clean.
func (w *walker) emax() {
	for _, n := range w.stack {
		n.dontCache = true
	}
}

func (w *walker) yield(n *node, t filetype.Type) error {
	w.res.Objects++
	w.res.Bytes += n.size
	var containers []filetype.Type
	for _, c := range w.stack {
		if c != n {
			containers = append(containers, c.typ)
		}
	}
	err := w.fn(&Object{Path: n.path, Root: w.root, Name: n.name, Depth: n.depth, Type: t, Containers: containers, Size: n.size, R: n.r})
	switch {
	case errors.Is(err, ErrDetected):
		w.alerted = true
		return nil
	case errors.Is(err, ErrStop):
		w.alerted = true
	}
	return err
}

// sfxSearched reports whether ClamAV looks for zips embedded in objects
// of type t (scanraw's type recognition: not in gzip, zip or tar, nor in
// a file it typed HTML).
func sfxSearched(t filetype.Type) bool {
	switch t {
	case filetype.GZ, filetype.ZIP, filetype.PosixTar, filetype.OldTar, filetype.HTML:
		return false
	}
	return true
}
