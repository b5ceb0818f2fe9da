package server

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
)

const (
	maxOnAccessPaths = api.MaxOnAccessPaths
	maxOnAccessError = api.MaxOnAccessError
)

// onAccessAccesses are the accesses an on-access detection may name.
var onAccessAccesses = []string{"open", "exec", "close_write"}

// onAccessState checks the on-access state of a check-in and returns it as
// the store keeps it; nil (an agent older than on-access scanning) is nil.
func onAccessState(o *api.OnAccessState) (*store.OnAccess, error) {
	if o == nil {
		return nil, nil
	}
	switch o.Mode {
	case "", command.Notify, command.Block:
	default:
		return nil, fmt.Errorf("on_access.mode: want %s or %s, got %q", command.Notify, command.Block, logValue(o.Mode))
	}
	if len(o.Paths) > maxOnAccessPaths {
		return nil, fmt.Errorf("on_access.paths: at most %d", maxOnAccessPaths)
	}
	for i, p := range o.Paths {
		if !validAbsPath(p) {
			return nil, fmt.Errorf("on_access.paths[%d]: want an absolute path of at most %d bytes of UTF-8", i, maxPath)
		}
	}
	if len(o.Error) > maxOnAccessError || !utf8.ValidString(o.Error) {
		return nil, fmt.Errorf("on_access.error: at most %d bytes of UTF-8", maxOnAccessError)
	}
	return &store.OnAccess{Enabled: o.Enabled, Running: o.Running, Mode: o.Mode, Paths: slices.Clone(o.Paths), Error: o.Error}, nil
}

// validAbsPath reports whether p is an absolute path of at most maxPath
// bytes of UTF-8, without NUL.
func validAbsPath(p string) bool {
	return path.IsAbs(p) && len(p) <= maxPath && utf8.ValidString(p) && !strings.Contains(p, "\x00")
}

// checkDetectionKind checks the fields of a detection that depend on the
// report's kind: an on-access detection names its access (and a close
// after write, a notification, was never blocked), its process id and
// executable are bounded; a scan's detection has none of them.
func checkDetectionKind(kind string, d api.Detection) error {
	if kind != api.ScanKindOnAccess {
		if d.Access != "" || d.PID != 0 || d.Process != "" || d.Blocked {
			return fmt.Errorf("access, pid, process and blocked are for on-access detections (a report of kind %q)", api.ScanKindOnAccess)
		}
		return nil
	}
	if !slices.Contains(onAccessAccesses, d.Access) {
		return fmt.Errorf("access: want %s, got %q", strings.Join(onAccessAccesses, ", "), logValue(d.Access))
	}
	if d.Blocked && d.Access == "close_write" {
		return fmt.Errorf("blocked: a close_write is reported after the fact and cannot be blocked")
	}
	if d.PID < 0 || d.PID > math.MaxInt32 {
		return fmt.Errorf("pid: want 0 to %d, got %d", math.MaxInt32, d.PID)
	}
	if d.Process != "" && !validAbsPath(d.Process) {
		return fmt.Errorf("process: want an absolute path of at most %d bytes of UTF-8", maxPath)
	}
	return nil
}

// maxUpdateAhead is how far in the future (by the server's clock) the
// time of an update a check-in reports may be: clocks disagree, but not
// by a day.
const maxUpdateAhead = 24 * time.Hour

// maxDefsVersion is the longest definitions version: the rule is the
// repository's (repo.CheckDefinitionsVersion, 1 to 20 decimal digits),
// written again here so that the server does not link the repository
// format and its dependencies.
const maxDefsVersion = 20

// checkDefsVersion reports whether v is a definitions version.
func checkDefsVersion(name, v string) error {
	if len(v) == 0 || len(v) > maxDefsVersion {
		return fmt.Errorf("%s: want a definitions version (1 to %d digits), got %q", name, maxDefsVersion, logValue(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return fmt.Errorf("%s: want a definitions version (digits only), got %q", name, logValue(v))
		}
	}
	return nil
}

// updateState checks the update state of a check-in and returns it as the
// store keeps it; nil (no update yet, or an agent older than it) is nil.
func updateState(u *api.UpdateState, now time.Time) (*store.UpdateState, error) {
	if u == nil {
		return nil, nil
	}
	if u.From != "" {
		if err := checkDefsVersion("update.from", u.From); err != nil {
			return nil, err
		}
	}
	if err := checkDefsVersion("update.to", u.To); err != nil {
		return nil, err
	}
	switch {
	case u.Bytes < 0:
		return nil, fmt.Errorf("update.bytes: want 0 or more, got %d", u.Bytes)
	case u.FullBytes < 0:
		return nil, fmt.Errorf("update.full_bytes: want 0 or more, got %d", u.FullBytes)
	case u.Deltas < 0:
		return nil, fmt.Errorf("update.deltas: want 0 or more, got %d", u.Deltas)
	case u.At.After(now.Add(maxUpdateAhead)):
		return nil, fmt.Errorf("update.at: %s is more than %s after the server's clock (%s)",
			u.At.UTC().Format(time.RFC3339), maxUpdateAhead, now.UTC().Format(time.RFC3339))
	}
	st := &store.UpdateState{From: u.From, To: u.To, Bytes: u.Bytes, FullBytes: u.FullBytes, Deltas: u.Deltas}
	if !u.At.IsZero() {
		st.At = u.At.UTC().Truncate(time.Microsecond)
	}
	return st, nil
}
