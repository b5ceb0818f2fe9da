// Package onaccess is the platform-independent core of on-access scanning
// (issue 12): it decides, for every access the kernel reports (an open, an
// exec, a close after a write), whether to scan the file, answers the
// kernel's permission requests, and reports detections. It knows nothing
// of fanotify or Endpoint Security: the agent adapts the kernel's events
// into Requests and the scan engine into a Scanner.
//
// A Guard runs a pool of workers fed from a bounded queue. For each
// request:
//
//   - an excluded path or process is allowed at once, in Submit;
//   - a close after a write invalidates the file's cached verdict;
//   - an open or exec of a file larger than Config.MaxFileSize is allowed
//     unscanned;
//   - otherwise the verdict cache, keyed by the file's identity (device,
//     inode, size, modification and change times) and the definitions
//     release, answers at once on a hit; on a miss the Scanner scans the
//     file and the verdict is cached. Requests for a file whose scan is
//     in progress wait for that scan instead of scanning it again.
//
// The machine must never lock up because scanning is slow: every
// permission request is answered exactly once, and within
// Config.VerdictTimeout of its Submit: a verdict not ready by then is
// answered "allow" (fail-open, logged at most once per Config.LogInterval
// and counted), and the late verdict still fills the cache. A full queue,
// a scan error and Close also allow. Only Mode Block denies, and only a
// file found infected.
//
// Metrics (vigil_onaccess_*) are registered on the Registerer the caller
// gives.
package onaccess

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is the kind of access a Request reports.
type Kind uint8

const (
	// Open is a file being opened (fanotify FAN_OPEN_PERM / FAN_OPEN).
	Open Kind = iota + 1
	// Exec is a file being opened for execution (FAN_OPEN_EXEC_PERM).
	Exec
	// CloseWrite is a file opened for writing being closed
	// (FAN_CLOSE_WRITE): its cached verdict is no longer true.
	CloseWrite
)

var kindNames = [...]string{Open: "open", Exec: "exec", CloseWrite: "close_write"}

// Kinds are the kinds of access, in order.
var Kinds = []Kind{Open, Exec, CloseWrite}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Mode says what an infected file's access gets.
type Mode uint8

const (
	// Notify reports detections and allows every access.
	Notify Mode = iota + 1
	// Block denies the permission requests for infected files.
	Block
)

func (m Mode) String() string {
	switch m {
	case Notify:
		return "notify"
	case Block:
		return "block"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses "notify" or "block".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "notify":
		return Notify, nil
	case "block":
		return Block, nil
	}
	return 0, fmt.Errorf("on-access mode %q: want notify or block", s)
}

// Stat is a file's identity for the verdict cache: the same Stat, under
// the same definitions release, is the same content. Ctime is part of it
// because a modification time can be set back (touch -d) and a write on a
// mount that is not watched sends no close-after-write; the change time
// cannot be set back.
type Stat struct {
	Dev, Ino uint64
	Size     int64
	// Mtime and Ctime are nanoseconds since the epoch.
	Mtime, Ctime int64
	// NoIdentity is set when the platform gives no device and inode: the
	// file's verdict is then not cached.
	NoIdentity bool
}

// StatFile returns f's identity, from fstat(2) on Linux and macOS.
func StatFile(f *os.File) (Stat, error) {
	fi, err := f.Stat()
	if err != nil {
		return Stat{}, err
	}
	return statOf(fi), nil
}

// StatPath returns the identity of the file at path (following symbolic
// links).
func StatPath(path string) (Stat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stat{}, err
	}
	return statOf(fi), nil
}

// Request is one access, as the kernel reports it.
type Request struct {
	// Kind is the access.
	Kind Kind
	// Path is the file's path, for exclusions and reports.
	Path string
	// PID and Exe are the accessing process and its executable's path.
	PID int
	Exe string
	// File, when not nil, is the file open for reading (fanotify's event
	// descriptor). Submit takes it over: the Guard closes it when done with
	// it, after Answer and after the scan, whichever is later. When nil,
	// the Guard opens Path to scan it.
	File *os.File
	// Stat, when not nil, is the file's identity; otherwise the Guard
	// stats File (or Path).
	Stat *Stat
	// Permission is set when the kernel waits for an answer; Answer then
	// must not be nil. The Guard calls Answer exactly once, from any
	// goroutine, with true to allow the access and false to deny it.
	Permission bool
	Answer     func(allow bool)
	// Clean, when not nil, is called (from a worker, before Answer) when
	// the file is found clean under the current release, with the
	// identity the verdict is for and that release: the platform may
	// remember the verdict where it is cheaper to look up (fanotify's
	// ignore marks), and must forget it when the file changes or the
	// release does.
	Clean func(st Stat, release string)
}

// Verdict is a Scanner's finding on one file.
type Verdict struct {
	Infected  bool
	Signature string
	// SHA256 is the hex digest of the infected file, when the Scanner
	// gives it: detections carry it (reports, quarantine).
	SHA256 string
}

// Scanner scans a file.
type Scanner interface {
	// Scan returns f's verdict. f is open for reading; Scan must not close
	// it, and should read it with ReadAt (its offset is not defined). Scan
	// must return soon after ctx is done (the Guard is closing).
	Scan(ctx context.Context, f *os.File) (Verdict, error)
}

// ScannerFunc is a function as a Scanner.
type ScannerFunc func(ctx context.Context, f *os.File) (Verdict, error)

// Scan calls fn.
func (fn ScannerFunc) Scan(ctx context.Context, f *os.File) (Verdict, error) { return fn(ctx, f) }

// Detection is an infected file's access: the agent sends it to the server
// as a scan's detections are, and quarantines the file if its policy says
// so.
type Detection struct {
	Path      string
	Signature string
	SHA256    string // Verdict.SHA256
	Size      int64  // the file's size when its verdict was made
	PID       int
	Exe       string
	Kind      Kind
	// Blocked is set when the access was denied; not when the mode is
	// Notify, the request was no permission request, or the verdict came
	// after the timeout.
	Blocked bool
	// Release is the definitions release the verdict was made with.
	Release string
	// Cached is set when the verdict came from the cache (the file was
	// found infected on an earlier access).
	Cached bool
	Time   time.Time
}

// Defaults for Config's zero fields.
const (
	DefaultVerdictTimeout = 2 * time.Second
	DefaultQueueSize      = 1024
	DefaultCacheEntries   = 65536
	DefaultLogInterval    = time.Minute
)

// Config configures a Guard.
type Config struct {
	// Mode is Notify or Block.
	Mode Mode
	// ExcludePaths are path prefixes never scanned. A prefix matches by
	// whole components: /tmp/a excludes /tmp/a and /tmp/a/x, not /tmp/ab.
	ExcludePaths []string
	// ExcludeExes are the executables whose accesses are never scanned,
	// matched as ExcludePaths are (a directory excludes every program
	// below it).
	ExcludeExes []string
	// ExcludePIDs are processes whose accesses are never scanned (the
	// agent's own).
	ExcludePIDs []int
	// ScanCloseWrite scans a file after a close after a write (besides
	// invalidating its verdict), so that a file written is known at once
	// (notify mode reports a download when it is saved) and its next open
	// finds its verdict cached. Otherwise a close after a write only
	// invalidates.
	ScanCloseWrite bool
	// MaxFileSize, when positive, is the largest file scanned: larger
	// ones are allowed unscanned, and counted.
	MaxFileSize int64
	// VerdictTimeout is how long a permission request may wait for its
	// verdict, from Submit; then it is allowed. Default
	// DefaultVerdictTimeout.
	VerdictTimeout time.Duration
	// Workers is the number of scanning goroutines. Default GOMAXPROCS.
	Workers int
	// QueueSize is the number of requests waiting for a worker; a request
	// that finds the queue full is allowed unscanned. Default
	// DefaultQueueSize.
	QueueSize int
	// CacheEntries bounds the verdict cache (least recently used entries
	// go first). Default DefaultCacheEntries.
	CacheEntries int
	// Release is the definitions release in use; see Guard.SetRelease.
	Release string
	// OnDetection, when not nil, is called with every detection, from a
	// worker, after the access was answered. It should hand the detection
	// off quickly: the worker scans nothing meanwhile.
	OnDetection func(Detection)
	// Logger logs fail-opens, full queues and scan errors, each at most
	// once per LogInterval with a count. Default slog.Default().
	Logger      *slog.Logger
	LogInterval time.Duration
	// Metrics, when not nil, is the set of metrics the Guard counts in
	// (see NewMetrics); otherwise it makes its own, registered on
	// Registerer when that is not nil.
	Metrics    *Metrics
	Registerer prometheus.Registerer
}
