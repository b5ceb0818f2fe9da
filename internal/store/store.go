// Package store defines what the management server keeps: its identity
// (epoch), enrolled agents and their last check-in (on-access scanning's
// state included), the signed command log, per-agent command results,
// the agents' reports of scans and of on-access scanning with their
// detections, and the web console's sessions (shared by every server
// instance over the store). Implementations live in sub-packages
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

// ErrNotFound is returned when an agent, command, user or API token does
// not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when a user or an API token (a user's token of
// that name, or of that hash) exists already.
var ErrExists = errors.New("already exists")

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
	// when Version, DefsVer, Groups, LastSeq, Counters, OnAccess and Update were
	// reported.
	LastCheckIn time.Time
	Counters    map[string]uint64 // agent-side counters (dropped datagrams by reason, ...)
	// OnAccess is the on-access scanning state of the last check-in; nil
	// when it reported none (an agent older than on-access scanning, or
	// no check-in yet).
	OnAccess *OnAccess
	// Update is the agent's last definitions update as the last check-in
	// reported it; nil when it reported none.
	Update *UpdateState
	// Revoked is when an administrator revoked the agent's credential
	// (zero: it is not revoked).
	Revoked time.Time
	// Detections is how many detections the agent has reported (scans'
	// and on-access scanning's), counted by the store; it is ignored by
	// EnrollAgent.
	Detections int
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
	OnAccess *OnAccess    // nil: the agent reported none, and the agent's becomes nil
	Update   *UpdateState // nil: the agent reported none, and the agent's becomes nil
	At       time.Time
}

// UpdateState is an agent's last definitions update that installed a
// release, as it reported it at check-in (see api.UpdateState).
type UpdateState struct {
	From      string    // the definitions version installed before, "" for none
	To        string    // the definitions version the update installed
	At        time.Time // when it installed To
	Bytes     int64     // what the update downloaded
	FullBytes int64     // the length of To's full release
	Deltas    int       // deltas applied; 0 when the full release was downloaded
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

// User is a named administrator of the server (package auth gives the
// meaning of its fields; the store keeps them as given).
type User struct {
	Name         string
	Role         string    // "viewer", "operator" or "admin"
	PasswordHash string    // the encoded password hash (auth.HashPassword)
	Created      time.Time // when it was added
}

// APIToken is one of a user's API tokens. The store keeps the token's
// hash, never the token.
type APIToken struct {
	ID       string // unique, chosen by the caller; a handle for listing
	User     string // the owner; removing the user removes its tokens
	Name     string // unique among the user's tokens
	Hash     []byte // SHA-256 of the token
	Created  time.Time
	LastUsed time.Time // zero: never used
}

// Session is a web console login, kept in the store so that every server
// instance over it knows it. The store keeps the SHA-256 of the session's
// id (the browser's cookie), never the id: reading the store does not
// give a session away.
type Session struct {
	IDHash   []byte // SHA-256 of the session id; unique
	CSRF     string // the token its state-changing requests carry
	User     string // who logged in
	Role     string // the user's role at login
	Via      string // how the user proved who it is (auth.ViaPassword)
	Addr     string // the client's address at login
	Created  time.Time
	LastUsed time.Time
}

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	ID     int64 // assigned by the store, increasing
	Time   time.Time
	Actor  string
	Addr   string
	Action string
	Target string
	Detail string
	OK     bool
}

// AuditQuery selects audit entries: those of Actor and of Action (each
// when not ""), at or after Since and before Until (each when not zero),
// at most Limit of them (none when zero or less: all that match).
type AuditQuery struct {
	Actor, Action string
	Since, Until  time.Time
	Limit         int
}

// Agent statuses, from when an agent was last seen (Clock says where the
// lines fall) and whether it was revoked.
const (
	StatusOnline  = "online"  // seen within Clock.OnlineWithin
	StatusLate    = "late"    // neither online nor missing
	StatusMissing = "missing" // silent for more than Clock.MissingAfter
	StatusRevoked = "revoked" // its credential was revoked
)

// Clock places the lines between agent statuses: an agent not revoked is
// online when Now-LastSeen <= OnlineWithin, missing when Now-LastSeen >
// MissingAfter, and late in between.
type Clock struct {
	Now                        time.Time
	OnlineWithin, MissingAfter time.Duration
}

// Status is an agent's status at c.
func (c Clock) Status(a Agent) string {
	silent := c.Now.Sub(a.LastSeen)
	switch {
	case !a.Revoked.IsZero():
		return StatusRevoked
	case silent <= c.OnlineWithin:
		return StatusOnline
	case silent > c.MissingAfter:
		return StatusMissing
	}
	return StatusLate
}

// AgentFilter selects agents (never removed ones). Every field left at its
// zero value selects all.
type AgentFilter struct {
	// Search is a case-insensitive (ASCII) substring of the hostname or
	// the ID.
	Search  string
	Group   string // one of the agent's groups
	OS      string // exactly
	Version string // the agent version, exactly
	// DefsVer is the definitions version exactly; NoDefs selects the
	// agents that reported none instead (DefsVer is then ignored).
	DefsVer string
	NoDefs  bool
	// Status is one of the Status constants, placed by Clock.
	Status string
	Clock  Clock
	// Detected: true selects agents with at least one detection, false
	// those with none.
	Detected *bool
}

// Orders of an agent list (AgentQuery.Sort). Versions order naturally
// (runs of digits as numbers: 0.9 before 0.10, release 99 before 100);
// groups as lists (each name in turn, a shorter list first); status from
// the freshest agent to the stalest, revoked agents last. Ties are broken
// by ID, so that pages do not overlap; Desc reverses the whole order, the
// tie-break included (one index serves a sort both ways).
const (
	SortID         = "id"
	SortHostname   = "hostname"
	SortStatus     = "status"
	SortOS         = "os"
	SortVersion    = "version"
	SortDefs       = "defs"
	SortGroups     = "groups"
	SortLastSeen   = "lastseen"
	SortDetections = "detections"
)

// AgentSorts lists the orders ListAgents knows.
var AgentSorts = []string{SortID, SortHostname, SortStatus, SortOS, SortVersion, SortDefs, SortGroups, SortLastSeen, SortDetections}

// AgentQuery is a filtered, ordered page of agents: those Filter selects,
// in the order of Sort ("" is SortID) reversed by Desc, skipping Offset of
// them and at most Limit (all when zero or less).
type AgentQuery struct {
	AgentFilter
	Sort   string
	Desc   bool
	Offset int
	Limit  int
}

// Fleet sums up the agents (removed ones not counted) at a Clock: how many
// of each status, and how many report each definitions version, agent
// version, OS and group ("" for agents that reported no version or OS).
// Revoked agents are counted in every figure.
type Fleet struct {
	Total, Online, Late, Missing, Revoked int
	ByDefs, ByVersion, ByOS, ByGroup      map[string]int
}

// Target says which agents a command is for, as command.Target does: all,
// or those in any of Groups or named in Agents.
type Target struct {
	All    bool
	Groups []string
	Agents []string
}

// Progress is how far a command has come: of the agents it targets (not
// removed, not revoked, enrolled before it was issued, matched by its
// Target), how many have not reported (Pending); of every agent that
// reported, those whose status is "ok" (OK) and the others (Failed).
type Progress struct {
	OK, Failed, Pending int
}

// DetectionQuery selects detections: those of AgentID (when not ""),
// whose signature holds Signature as a case-insensitive (ASCII) substring
// (when not ""), found at or after Since and before Until (each when not
// zero), at most Limit (all when zero or less), newest first.
type DetectionQuery struct {
	AgentID      string
	Signature    string
	Since, Until time.Time
	Limit        int
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
	// ListAgents calls fn with the agents q selects, in its order, page
	// by page as the store reads them (memory stays flat however many
	// match), stopping at fn's first error, which it returns.
	ListAgents(ctx context.Context, q AgentQuery, fn func(Agent) error) error
	// CountAgents counts the agents f selects.
	CountAgents(ctx context.Context, f AgentFilter) (int, error)
	// Fleet sums up the agents at c.
	Fleet(ctx context.Context, c Clock) (Fleet, error)
	// CheckIns applies a batch of check-ins in one transaction. Check-ins
	// for unknown, removed or revoked agents are not applied: refused[i]
	// says so of cs[i] (nil when none was refused). Over a store several
	// server instances share, that is how an instance learns of an agent
	// revoked through another before its event arrives.
	CheckIns(ctx context.Context, cs []CheckIn) (refused []bool, err error)
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
	// AgentResults returns one agent's results of the commands with Seq >
	// after, newest first, at most limit (none when zero or less).
	AgentResults(ctx context.Context, agentID string, after uint64, limit int) ([]Result, error)
	// Progress counts how far the command seq, issued at issued for t,
	// has come.
	Progress(ctx context.Context, seq uint64, t Target, issued time.Time) (Progress, error)
	// Targets calls fn with the ID and hostname of each agent a command
	// issued at issued for t targets (those Progress counts: not removed,
	// not revoked, enrolled before it; whether they reported or not),
	// ordered by ID, stopping at fn's first error, which it returns.
	Targets(ctx context.Context, t Target, issued time.Time, fn func(id, hostname string) error) error

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
	// QueryDetections calls fn with the detections q selects, newest
	// first (by FoundAt, then ID), stopping at fn's first error, which it
	// returns.
	QueryDetections(ctx context.Context, q DetectionQuery, fn func(Detection) error) error
	// CountDetections counts the detections found at or after since.
	CountDetections(ctx context.Context, since time.Time) (int, error)

	// AddUser adds a user; ErrExists when one of that name exists.
	AddUser(ctx context.Context, u User) error
	// User returns one user, or ErrNotFound.
	User(ctx context.Context, name string) (User, error)
	// Users lists the users ordered by name.
	Users(ctx context.Context) ([]User, error)
	// SetUserRole changes a user's role and returns the one it had, or
	// ErrNotFound.
	SetUserRole(ctx context.Context, name, role string) (old string, err error)
	// SetUserPassword replaces a user's password hash, or ErrNotFound.
	SetUserPassword(ctx context.Context, name, hash string) error
	// RemoveUser removes a user and its API tokens, in one transaction,
	// or ErrNotFound.
	RemoveUser(ctx context.Context, name string) error

	// AddToken stores an API token for an existing user (ErrNotFound
	// when there is no such user); ErrExists when the user has a token
	// of that name, or the ID or the hash is taken.
	AddToken(ctx context.Context, t APIToken) error
	// TokenByHash returns the token with that hash, or ErrNotFound.
	TokenByHash(ctx context.Context, hash []byte) (APIToken, error)
	// Tokens lists a user's tokens ordered by name (every user's, ordered
	// by user then name, when user is "").
	Tokens(ctx context.Context, user string) ([]APIToken, error)
	// RemoveToken removes a user's token by name, or ErrNotFound.
	RemoveToken(ctx context.Context, user, name string) error
	// TouchToken records that the token id was used at; an unknown id is
	// not an error (it may have been removed meanwhile).
	TouchToken(ctx context.Context, id string, at time.Time) error

	// CreateSession stores a new session, first removing the least
	// recently used ones (by LastUsed) so that, with it, at most max
	// remain (max zero or less: no bound); ErrExists when a session has
	// that IDHash.
	CreateSession(ctx context.Context, s Session, max int) error
	// Session returns the session whose id hashes to idHash, or
	// ErrNotFound.
	Session(ctx context.Context, idHash []byte) (Session, error)
	// TouchSession sets a session's LastUsed to at, unless it is later
	// already; an unknown session is not an error (it may have ended
	// meanwhile).
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
	// RemoveSession removes a session; an unknown one is not an error.
	RemoveSession(ctx context.Context, idHash []byte) error
	// PruneSessions removes the sessions last used before idleBefore or
	// created before createdBefore, and returns how many it removed.
	PruneSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error)
	// CountSessions counts the sessions.
	CountSessions(ctx context.Context) (int, error)

	// AppendAudit adds an entry to the audit log and returns its ID.
	AppendAudit(ctx context.Context, e AuditEvent) (int64, error)
	// AuditLog calls fn with the entries q selects, newest first (by
	// Time, then ID), stopping at fn's first error, which it returns.
	AuditLog(ctx context.Context, q AuditQuery, fn func(AuditEvent) error) error

	// Close releases the store.
	Close() error
}
