// Package api defines Vigil's HTTP APIs — the agent API under the base path
// that an agent's NodeCommURL points at, and the admin API: their JSON
// messages, their routes in one table (Route; the server registers its
// handlers from it and the clients build their URLs from it, so no other
// package writes an API path or query string), and typed clients for both
// (AgentClient, AdminClient). docs/protocol.md specifies them.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/command"
)

// EnrollRequest is sent once by a new agent. Nonce is 32 to 64 lower-case
// hex digits the agent chose at random; the server's signed answer (Proof)
// echoes it, so an answer cannot be replayed to another enrollment.
// KeyID, when set, is the id (16 hex digits, wire.KeyID) of the key the
// agent pins: a server that signs with another key refuses the request
// (409) before it enrolls anything, so a misconfigured agent leaves no
// agent behind on the server. (The proof is what the agent trusts; this
// only spares the server a ghost.)
type EnrollRequest struct {
	Secret   string   `json:"secret"`
	Nonce    string   `json:"nonce"`
	KeyID    string   `json:"key_id,omitempty"`
	Hostname string   `json:"hostname"`
	OS       string   `json:"os"`
	Arch     string   `json:"arch"`
	Version  string   `json:"version"`
	Groups   []string `json:"groups,omitempty"`
}

// EnrollResponse gives the agent its identity. Token is the agent's bearer
// credential; the server keeps only its hash. Proof is a wire envelope of
// kind KindEpoch signed with the server's command key, whose statement
// names AgentID and echoes the request's nonce: the agent takes its epoch
// and starting sequence from Proof only, after verifying it under its
// pinned key (which proves the pin is right). Epoch and LatestSeq repeat
// them for people reading the answer.
type EnrollResponse struct {
	AgentID   string `json:"agent_id"`
	Token     string `json:"token"`
	Epoch     uint64 `json:"epoch,string"`
	LatestSeq uint64 `json:"latest_seq"`
	Proof     []byte `json:"proof"`
	Timing
}

// Timing is what the server tells agents about pacing.
type Timing struct {
	// CheckInSeconds is the interval between check-ins.
	CheckInSeconds int `json:"checkin_interval_s"`
	// SpreadMillis is the window over which agents spread replies.
	SpreadMillis int `json:"spread_ms"`
}

// ServerInfo is what GET /admin/v1/server answers: the server's epoch,
// latest sequence, public key, multicast settings and timing.
type ServerInfo struct {
	Epoch     uint64 `json:"epoch,string"`
	LatestSeq uint64 `json:"latest_seq"`
	PublicKey string `json:"public_key"`
	Group     string `json:"multicast_group"`
	Port      int    `json:"multicast_port"`
	Interface string `json:"multicast_interface,omitempty"`
	TTL       int    `json:"multicast_ttl"`
	BasePath  string `json:"base_path"`
	Timing
}

// CheckInRequest is the agent's periodic report.
type CheckInRequest struct {
	// Epoch is the epoch the agent is in.
	Epoch    uint64            `json:"epoch,string"`
	Hostname string            `json:"hostname"`
	OS       string            `json:"os"`
	Arch     string            `json:"arch"`
	Version  string            `json:"version"`
	DefsVer  string            `json:"defs_version,omitempty"`
	Groups   []string          `json:"groups,omitempty"`
	LastSeq  uint64            `json:"last_seq"`
	Counters map[string]uint64 `json:"counters,omitempty"`
	// OnAccess is the state of on-access scanning; nil from an agent
	// older than it.
	OnAccess *OnAccessState `json:"on_access,omitempty"`
	// Update is the agent's last definitions update that installed a
	// release; nil before its first (and from an agent older than it).
	Update *UpdateState `json:"update,omitempty"`
}

// UpdateState is an agent's last definitions update that installed a
// release, as it reports it at check-in: which release it installed, how
// it got there (a chain of deltas or the full release) and how many bytes
// that took.
type UpdateState struct {
	// From is the release installed before ("" for none); To the release
	// the update installed.
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// At is when the update installed To.
	At time.Time `json:"at"`
	// Bytes is what the update downloaded: metadata and targets (deltas,
	// or the full release), including what a fallback fetched.
	Bytes int64 `json:"bytes"`
	// FullBytes is the signed length of To's full release: what the
	// update would have downloaded without deltas.
	FullBytes int64 `json:"full_bytes"`
	// Deltas is the number of deltas applied; 0 when the full release
	// was downloaded.
	Deltas int `json:"deltas"`
}

// Summary is the update in a few words, as listings show it:
// "2026120203, 41 KB of 22 MB (2 deltas)", or "2026120203, 22 MB (full)"
// when it downloaded the full release.
func (u UpdateState) Summary() string {
	if u.Deltas == 0 {
		return fmt.Sprintf("%s, %s (full)", u.To, ByteSize(u.Bytes))
	}
	d := "deltas"
	if u.Deltas == 1 {
		d = "delta"
	}
	return fmt.Sprintf("%s, %s of %s (%d %s)", u.To, ByteSize(u.Bytes), ByteSize(u.FullBytes), u.Deltas, d)
}

// ByteSize writes n bytes for people: "512 B", "41 KB", "22 MB", "1.5 GB"
// (units of 1024, one decimal below 10).
func ByteSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KB", "MB", "GB", "TB", "PB", "EB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// Bounds of an OnAccessState the server accepts.
const (
	// MaxOnAccessPaths bounds the trees a check-in says on-access
	// scanning watches.
	MaxOnAccessPaths = 64
	// MaxOnAccessError bounds the bytes of OnAccessState.Error.
	MaxOnAccessError = 1024
)

// OnAccessState is an agent's on-access scanning as it reports it at
// check-in. Its counters (events, cache hits, fail-opens, detections) are
// among the check-in's Counters, named onaccess_*.
type OnAccessState struct {
	// Enabled: the agent's preference, or the server's "set onaccess",
	// asks for on-access scanning.
	Enabled bool `json:"enabled"`
	// Running: it is watching files now; when Enabled and not Running,
	// Error says why.
	Running bool   `json:"running"`
	Mode    string `json:"mode,omitempty"` // "notify" or "block"
	// Paths are the trees watched.
	Paths []string `json:"paths,omitempty"`
	Error string   `json:"error,omitempty"`
}

// CheckInResponse tells the agent whether anything changed: Changed is
// false when LatestSeq equals the agent's LastSeq, the cheap common case.
// EpochProof is set when the agent is not in the server's epoch (the
// server moved to a new epoch, for example after noticing that its data
// directory was restored from a backup): a signed KindEpoch envelope for
// this agent that it follows, as it follows an enrollment's Proof.
type CheckInResponse struct {
	Changed    bool   `json:"changed"`
	Epoch      uint64 `json:"epoch,string"`
	LatestSeq  uint64 `json:"latest_seq"`
	EpochProof []byte `json:"epoch_proof,omitempty"`
	Timing
}

// CommandsResponse lists signed command envelopes after a sequence number.
// Envelopes are the exact signed bytes (base64 in JSON); agents verify
// them exactly as they verify datagrams.
type CommandsResponse struct {
	Epoch     uint64   `json:"epoch,string"`
	LatestSeq uint64   `json:"latest_seq"`
	Commands  [][]byte `json:"commands"`
}

// Result is an agent's outcome for one command.
type Result struct {
	Seq        uint64    `json:"seq"`
	Status     string    `json:"status"` // one of command's Status constants
	Output     string    `json:"output,omitempty"`
	ExecutedAt time.Time `json:"executed_at"`
}

// MaxOutput is the most bytes of a result's Output the server accepts;
// agents cut longer outputs with TruncateOutput.
const MaxOutput = 4 << 10

// ResultsRequest carries a batch of results.
type ResultsRequest struct {
	Results []Result `json:"results"`
}

// ResultsResponse judges each result of a batch: Accepted lists the
// sequence numbers stored (or stored before), Refused the results the
// server will never accept, with the reason. An agent forgets both; a
// result in neither list (there are none today) would be sent again.
// A failure of the whole request (a non-2xx status) refuses nothing: the
// agent sends the batch again later.
type ResultsResponse struct {
	Accepted []uint64        `json:"accepted"`
	Refused  []RefusedResult `json:"refused,omitempty"`
}

// RefusedResult is a result the server refused for good.
type RefusedResult struct {
	Seq   uint64 `json:"seq"`
	Error string `json:"error"`
}

// AgentInfo is an agent as the admin API lists it.
type AgentInfo struct {
	ID         string    `json:"id"`
	Hostname   string    `json:"hostname"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	Version    string    `json:"version"`
	DefsVer    string    `json:"defs_version,omitempty"`
	Groups     []string  `json:"groups,omitempty"`
	LastSeq    uint64    `json:"last_seq"`
	EnrolledAt time.Time `json:"enrolled_at"`
	LastSeen   time.Time `json:"last_seen"`
	// LastCheckIn is when the agent last checked in: the time of every
	// figure above that the agent reports (version, definitions, last_seq,
	// counters).
	LastCheckIn time.Time         `json:"last_checkin,omitzero"`
	Counters    map[string]uint64 `json:"counters,omitempty"`
	// OnAccess is the on-access state of the agent's last check-in.
	OnAccess *OnAccessState `json:"on_access,omitempty"`
	// Update is the definitions update the agent's last check-in
	// reported: its last that installed a release (nil: none reported).
	Update *UpdateState `json:"update,omitempty"`
	// Revoked is when the agent's credential was revoked (zero: it is not).
	Revoked time.Time `json:"revoked,omitzero"`
}

// SendRequest issues a command.
type SendRequest struct {
	Name      string            `json:"name"`
	Args      map[string]string `json:"args,omitempty"`
	Target    command.Target    `json:"target"`
	ExpiresIn string            `json:"expires_in,omitempty"` // Go duration; server default when empty
	// Strict refuses (400) a command whose target names an agent id or a
	// group that no enrolled agent has, instead of warning.
	Strict bool `json:"strict,omitempty"`
}

// CommandInfo is a command as the admin API lists it.
type CommandInfo struct {
	Seq      uint64            `json:"seq"`
	Name     string            `json:"name"`
	Args     map[string]string `json:"args,omitempty"`
	Target   command.Target    `json:"target"`
	IssuedAt time.Time         `json:"issued_at"`
	Expires  time.Time         `json:"expires"`
	Bytes    int               `json:"envelope_bytes"`
	// Warnings are set in the answer to issuing a command: for example an
	// agent id or group that no enrolled agent has.
	Warnings []string `json:"warnings,omitempty"`
}

// AgentResult is one agent's result as the admin API lists it. Status is
// "pending" for targeted agents that have not reported.
type AgentResult struct {
	AgentID    string    `json:"agent_id"`
	Hostname   string    `json:"hostname,omitempty"`
	Status     string    `json:"status"`
	Output     string    `json:"output,omitempty"`
	ExecutedAt time.Time `json:"executed_at,omitzero"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// For a pending agent: when it was last seen, and whether its last
	// check-in said it had handled this command already (its result is on
	// its way, within the reply window).
	LastSeen time.Time `json:"last_seen,omitzero"`
	Reached  bool      `json:"reached,omitempty"`
}

// CommandResults is a command with its per-agent results, and the timing
// that explains how long pending results may take: agents reply within
// the spread window after receiving the command, and agents that missed
// it by multicast fetch it at their next check-in.
type CommandResults struct {
	CommandInfo
	Timing
	Results []AgentResult `json:"results"`
}

// ScanReport is an agent's report of one scan.
type ScanReport struct {
	// ReportID is chosen by the agent; sending a report again stores it once.
	ReportID string `json:"report_id"`
	// Kind is "" for a scan, ScanKindOnAccess for the detections of
	// on-access scanning (Files counts the files found infected; Bytes
	// and Skipped are 0).
	Kind       string      `json:"kind,omitempty"`
	Seq        uint64      `json:"seq,omitempty"` // the scan command, 0 for a scheduled scan
	DefsVer    string      `json:"defs_version"`
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt time.Time   `json:"finished_at"`
	Files      int64       `json:"files"`
	Bytes      int64       `json:"bytes"`
	Skipped    int64       `json:"skipped"`
	Detections []Detection `json:"detections"`
}

// Detection is one infected file. A file name need not be UTF-8 (a Unix
// name is bytes); JSON strings must be, so a name that is not valid UTF-8
// travels in PathBytes too, exactly, with Path holding it with U+FFFD in
// place of the invalid bytes, for display. SetPath and FullPath fill and
// read the pair.
type Detection struct {
	Path       string    `json:"path"`
	PathBytes  []byte    `json:"path_bytes,omitempty"`
	Signature  string    `json:"signature"`
	SHA256     string    `json:"sha256"`
	FoundAt    time.Time `json:"found_at"`
	Quarantine string    `json:"quarantine,omitempty"` // quarantine id, for "restore"
	// Access, for an on-access detection, is the access that found the
	// file: "open", "exec" or "close_write"; empty for a scan's.
	Access string `json:"access,omitempty"`
	// PID and Process are the process that accessed the file and its
	// executable (on-access detections only; Process may be empty when
	// the process ended before it was read).
	PID     int    `json:"pid,omitempty"`
	Process string `json:"process,omitempty"`
	// Blocked: the access was denied (on-access, mode block).
	Blocked bool `json:"blocked,omitempty"`
}

// SetPath sets Path, and PathBytes when name is not valid UTF-8.
func (d *Detection) SetPath(name string) {
	d.Path, d.PathBytes = name, nil
	if !utf8.ValidString(name) {
		d.Path, d.PathBytes = strings.ToValidUTF8(name, "\uFFFD"), []byte(name)
	}
}

// FullPath is the file's name exactly: PathBytes when set, else Path.
func (d Detection) FullPath() string {
	if d.PathBytes != nil {
		return string(d.PathBytes)
	}
	return d.Path
}

// CheckPath reports whether Path and PathBytes agree: PathBytes absent, or
// not valid UTF-8 and shown as Path.
func (d Detection) CheckPath() error {
	if d.PathBytes == nil {
		return nil
	}
	if utf8.Valid(d.PathBytes) {
		return errors.New("path_bytes is valid UTF-8: send it as path alone")
	}
	if d.Path != strings.ToValidUTF8(string(d.PathBytes), "\uFFFD") {
		return errors.New("path is not path_bytes with U+FFFD for its invalid bytes")
	}
	return nil
}

// ScanKindOnAccess is the Kind of a ScanReport of on-access detections.
const ScanKindOnAccess = "onaccess"

// ScanAck is the answer to a scan report.
type ScanAck struct {
	ID int64 `json:"id"`
}

// DetectionInfo is a detection as the admin API lists it.
type DetectionInfo struct {
	ID       int64  `json:"id"`
	ScanID   int64  `json:"scan_id"`
	AgentID  string `json:"agent_id"`
	Hostname string `json:"hostname,omitempty"`
	DefsVer  string `json:"defs_version"`
	Detection
}

// ScanInfo is a scan report as the admin API lists it.
type ScanInfo struct {
	ID         int64     `json:"id"`
	AgentID    string    `json:"agent_id"`
	Kind       string    `json:"kind,omitempty"`
	Seq        uint64    `json:"seq,omitempty"`
	DefsVer    string    `json:"defs_version"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Files      int64     `json:"files"`
	Bytes      int64     `json:"bytes"`
	Skipped    int64     `json:"skipped"`
	ReceivedAt time.Time `json:"received_at"`
}

// Error is the body of every non-2xx response. Reason, when set, is a
// machine-readable word for the error (see the Reason constants).
type Error struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

// Reasons given in Error.Reason.
const (
	// ReasonRevoked: the agent's credential was revoked by an
	// administrator (403). The agent must not enroll again by itself.
	ReasonRevoked = "revoked"
)

// HTTPError is returned by clients for non-2xx responses.
type HTTPError struct {
	Code    int
	Message string
	Reason  string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// IsStatus reports whether err is a HTTPError with the given code.
func IsStatus(err error, code int) bool {
	var se *HTTPError
	return errors.As(err, &se) && se.Code == code
}

// HasReason reports whether err is a HTTPError with the given reason.
func HasReason(err error, reason string) bool {
	var se *HTTPError
	return errors.As(err, &se) && se.Reason == reason
}

// TruncateOutput cuts s to at most MaxOutput bytes of valid UTF-8, ending
// a cut output with a note that says so. Invalid UTF-8 is replaced.
func TruncateOutput(s string) string { return truncate(s, MaxOutput, " …[cut to 4 KiB]") }

// TruncateOnAccessError cuts s, made valid UTF-8, to MaxOnAccessError
// bytes.
func TruncateOnAccessError(s string) string { return truncate(s, MaxOnAccessError, " …[cut]") }

func truncate(s string, max int, note string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len(note)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + note
}
