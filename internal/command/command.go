// Package command is the catalog of commands the server may issue and agents
// execute, and the validation of their arguments. Both sides use it, so a
// command the server accepts is one every agent of the same version knows.
// There is deliberately no command that runs an arbitrary program.
package command

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Names of the commands.
const (
	Ping    = "ping"    // answer "pong" with the agent's host name
	CheckIn = "checkin" // check in now (within the reply window)
	Set     = "set"     // change settings the server manages
	Update  = "update"  // update definitions from the LiveUpdate servers now
	Scan    = "scan"    // scan files with the installed definitions and report detections
	Restore = "restore" // put a quarantined file back where it was
)

// Arguments of scan and restore.
const (
	// ArgPaths is scan's comma-separated list of absolute paths; absent,
	// the agent's ScanPaths preference.
	ArgPaths = "paths"
	// ArgQuarantine is scan's "yes" or "no": whether to quarantine what it
	// finds; absent, yes when the agent has a QuarantineDirectory.
	ArgQuarantine = "quarantine"
	// ArgID is restore's quarantine id, as listed with the detection.
	ArgID = "id"
)

// Settings that "set" may change, with their validation.
const (
	// SettingCheckInInterval is the check-in interval in seconds (5-86400).
	SettingCheckInInterval = "checkin_interval"
)

// MinCheckIn and MaxCheckIn bound the check-in interval.
const (
	MinCheckIn = 5 * time.Second
	MaxCheckIn = 24 * time.Hour
)

// Names returns the known command names, sorted.
func Names() []string {
	n := []string{Ping, CheckIn, Set, Update, Scan, Restore}
	sort.Strings(n)
	return n
}

// Validate checks that name is a known command and args fit it.
func Validate(name string, args map[string]string) error {
	switch name {
	case Ping, CheckIn, Update:
		if len(args) != 0 {
			return fmt.Errorf("%s takes no arguments", name)
		}
		return nil
	case Set:
		if len(args) == 0 {
			return fmt.Errorf("set needs at least one setting, e.g. %s=300", SettingCheckInInterval)
		}
		for k, v := range args {
			if _, err := ParseSetting(k, v); err != nil {
				return err
			}
		}
		return nil
	case Scan:
		for k, v := range args {
			switch k {
			case ArgPaths:
				if _, err := ScanPaths(v); err != nil {
					return err
				}
			case ArgQuarantine:
				if v != "yes" && v != "no" {
					return fmt.Errorf("scan: %s must be yes or no, got %q", ArgQuarantine, v)
				}
			default:
				return fmt.Errorf("scan: unknown argument %q (known: %s, %s)", k, ArgPaths, ArgQuarantine)
			}
		}
		return nil
	case Restore:
		id, ok := args[ArgID]
		if len(args) != 1 || !ok || !quarantineID.MatchString(id) {
			return fmt.Errorf("restore takes one argument, %s=QUARANTINE-ID (32 hex digits)", ArgID)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q (known: %v)", name, Names())
}

var quarantineID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidQuarantineID reports whether s is a quarantine id.
func ValidQuarantineID(s string) bool { return quarantineID.MatchString(s) }

// ScanPaths splits and checks scan's paths argument.
func ScanPaths(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("scan: %s: %q is not a clean absolute path", ArgPaths, p)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseSetting validates one setting of the "set" command and returns its
// typed value.
func ParseSetting(key, value string) (any, error) {
	switch key {
	case SettingCheckInInterval:
		n, err := strconv.Atoi(value)
		d := time.Duration(n) * time.Second
		if err != nil || d < MinCheckIn || d > MaxCheckIn {
			return nil, fmt.Errorf("setting %s: want whole seconds from %d to %d, got %q", key, int(MinCheckIn/time.Second), int(MaxCheckIn/time.Second), value)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown setting %q (known: %s)", key, SettingCheckInInterval)
}
