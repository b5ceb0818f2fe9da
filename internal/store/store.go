// Package store defines what the management server keeps: its identity
// (epoch), enrolled agents and their last check-in (on-access scanning's
// state included), the signed command log, per-agent command results, and
// the agents' reports of scans and of on-access scanning with their
// detections. Implementations live in sub-packages
// (store/sqlite; a PostgreSQL one for several server instances is a second
// implementation of the same interface).
//
// Every method that returns without error has made its change durable: the
// server acknowledges nothing to an agent or an administrator before the
// store has returned.
//
// Times are kept to the microsecond at least (finer digits may be dropped, as
// PostgreSQL does) and their location is not kept; the zero time reads back
// as the zero time.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when an agent or command does not exist.
var ErrNotFound = errors.New("not found")

// Agent is an enrolled agent and what it last reported.
type Agent struct {
	ID         string
	TokenHash  []byte // SHA-256 of the agent's bearer credential
	Hostname   string
	OS         string
	Arch       string
	Version    string // agent version
	DefsVer    string // definitions version
	Groups     []string
	LastSeq    uint64 // last command sequence the agent executed or skipped
	EnrolledAt time.Time
	LastSeen   time.Time // enrollment or last check-in, whichever is later
	// LastCheckIn is the time of the last check-in (zero before the first):
	// when Version, DefsVer, Groups, LastSeq, Counters and OnAccess were
	// reported.
	LastCheckIn time.Time
	Counters    map[string]uint64 // agent-side counters (dropped datagrams by reason, ...)
	// OnAccess is the on-access scanning state of the last check-in; nil
	// when it reported none (an agent older than on-access scanning, or
	// no check-in yet).
	OnAccess *OnAccess
	// Revoked is when an administrator revoked the agent's credential
	// (zero: it is not revoked).
	Revoked time.Time
}

// CheckIn is one agent's report; it updates the agent's row (At becomes
// both its LastSeen and its LastCheckIn).
type CheckIn struct {
	AgentID  string
	Hostname string
	OS       string
	Arch     string
	Version  string
	DefsVer  string
	Groups   []string
	LastSeq  uint64
	Counters map[string]uint64
	OnAccess *OnAccess // nil: the agent reported none, and the agent's becomes nil
	At       time.Time
}

// OnAccess is an agent's on-access scanning as it reported it at check-in.
type OnAccess struct {
	Enabled bool     // the agent's preference or the server's "set onaccess" asks for it
	Running bool     // it is watching files
	Mode    string   // "notify" or "block"
	Paths   []string // the trees watched
	Error   string   // why it is not running (or what went wrong), "" if nothing
}

// Command is one entry of the command log. Envelope is the signed wire
// envelope (see package wire) exactly as announced and served.
type Command struct {
	Seq      uint64
	Name     string
	Target   string // JSON of command.Target, for listing
	Envelope []byte
	IssuedAt time.Time
	Expires  time.Time
}

// Result is what one agent reported for one command.
type Result struct {
	Seq        uint64
	AgentID    string
	Status     string // "ok", "error", "unsupported", "expired", "interrupted"
	Output     string
	ExecutedAt time.Time
	ReceivedAt time.Time
}

// Scan is one agent's scan report: the summary and what it found. A report
// of on-access scanning's detections is a Scan of Kind ScanKindOnAccess.
type Scan struct {
	ID         int64 // assigned by the store
	AgentID    string
	ReportID   string // chosen by the agent; a report sent twice is stored once
	Kind       string // "" for a scan, ScanKindOnAccess for on-access detections
	Seq        uint64 // the scan command, 0 for a scheduled scan
	DefsVer    string // definitions version used
	StartedAt  time.Time
	FinishedAt time.Time
	Files      int64 // files scanned
	Bytes      int64 // bytes scanned
	Skipped    int64 // files skipped (unreadable, special, too large)
	Detections []Detection
	ReceivedAt time.Time
}

// Detection is one infected file an agent found.
type Detection struct {
	ID         int64 // assigned by the store
	ScanID     int64
	AgentID    string
	Path       string
	Signature  string
	SHA256     string
	DefsVer    string
	FoundAt    time.Time
	Quarantine string // the agent's quarantine id when the file was quarantined
	// Access, PID, Process and Blocked are set for on-access detections:
	// the access that found the file ("open", "exec", "close_write"), the
	// process that made it and its executable, and whether it was denied.
	Access  string
	PID     int
	Process string
	Blocked bool
}

// ScanKindOnAccess is the Kind of a Scan of on-access detections.
const ScanKindOnAccess = "onaccess"

// Store is the server's persistent state. Implementations are safe for
// concurrent use.
type Store interface {
	// Epoch returns the store's epoch, a random non-zero number chosen when
	// the store was created and chosen again by NewEpoch. Sequence numbers
	// are unique across epochs: NewEpoch does not restart them.
	Epoch() uint64
	// EpochStart returns the latest sequence number when the store entered
	// its current epoch: 0 for the epoch it was created with. The commands
	// of the current epoch are those after it.
	EpochStart() uint64
	// NewEpoch moves the store to a new random non-zero epoch, different
	// from the current one, and returns it once it is durable. The next
	// command's sequence number is the one it would have been (EpochStart
	// becomes the latest sequence number).
	NewEpoch(ctx context.Context) (uint64, error)

	// EnrollAgent inserts a new agent; its ID must be unique.
	EnrollAgent(ctx context.Context, a Agent) error
	// Agent returns one agent (revoked agents too), or ErrNotFound (for
	// removed agents too).
	Agent(ctx context.Context, id string) (Agent, error)
	// Agents lists all agents but removed ones, ordered by ID.
	Agents(ctx context.Context) ([]Agent, error)
	// CheckIns applies a batch of check-ins in one transaction. Check-ins
	// for unknown, removed or revoked agents are ignored.
	CheckIns(ctx context.Context, cs []CheckIn) error
	// RevokeAgent marks an agent revoked at the given time; revoking a
	// revoked agent keeps the first time. ErrNotFound when there is no
	// such agent (or it was removed).
	RevokeAgent(ctx context.Context, id string, at time.Time) error
	// RemoveAgent removes an agent at the given time: Agent and Agents no
	// longer return it, its token hash is erased and its check-ins and
	// results are ignored. What it reported before (results, scans,
	// detections) is kept. ErrNotFound when there is no such agent (or it
	// was removed already). A removed agent's id is never enrolled again.
	RemoveAgent(ctx context.Context, id string, at time.Time) error

	// AppendCommand assigns the next sequence number, calls sign with it to
	// obtain the command (its envelope signed with that number), and stores
	// it, all atomically: a sequence number is never reused or skipped.
	AppendCommand(ctx context.Context, sign func(seq uint64) (Command, error)) (Command, error)
	// LatestSeq returns the highest sequence number, 0 when there is none.
	LatestSeq(ctx context.Context) (uint64, error)
	// Command returns one command, or ErrNotFound.
	Command(ctx context.Context, seq uint64) (Command, error)
	// CommandsAfter returns up to limit commands with Seq > after, in order.
	// A limit of zero or less returns none.
	CommandsAfter(ctx context.Context, after uint64, limit int) ([]Command, error)
	// RecentCommands returns up to limit commands, newest first. A limit of
	// zero or less returns none.
	RecentCommands(ctx context.Context, limit int) ([]Command, error)

	// RecordResults stores results in one transaction; a second result for
	// the same (Seq, AgentID) replaces nothing and is not an error. Results
	// for a command or an agent that does not exist (or was removed or
	// revoked) are ignored, like check-ins for unknown agents.
	RecordResults(ctx context.Context, rs []Result) error
	// Results returns the results of one command ordered by agent ID.
	Results(ctx context.Context, seq uint64) ([]Result, error)

	// RecordScan stores a scan report and its detections in one
	// transaction and returns its id. A report whose (AgentID, ReportID) is
	// already stored is not stored again; its existing id is returned.
	RecordScan(ctx context.Context, sc Scan) (int64, error)
	// Scans returns up to limit scan reports (without detections), newest
	// first, of one agent or of all when agentID is "".
	Scans(ctx context.Context, agentID string, limit int) ([]Scan, error)
	// Detections returns up to limit detections, newest first, of one
	// agent or of all when agentID is "".
	Detections(ctx context.Context, agentID string, limit int) ([]Detection, error)

	// Close releases the store.
	Close() error
}
