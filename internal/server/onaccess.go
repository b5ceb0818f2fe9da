package server

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
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
