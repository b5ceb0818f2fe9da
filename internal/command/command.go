// Package command owns Vigil's command: its body (Command, Target and
// their matching; Encode and Decode of the JSON that a wire.KindCommand
// envelope carries as bytes), the catalog of commands the server may issue
// and agents execute (Specs), the one validation of a command
// (Command.Validate), the result statuses, and the Registry of handlers by
// name that an agent fills, so that catalog and agent line up by name.
// Both sides use it, so a command the server accepts is one every agent of
// the same version knows. There is deliberately no command that runs an
// arbitrary program. docs/protocol.md specifies the body and the commands.
package command

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/semver"
)

// Names of the commands.
const (
	Ping    = "ping"    // answer "pong" with the agent's host name
	CheckIn = "checkin" // check in now (within the reply window)
	Set     = "set"     // change settings the server manages
	Update  = "update"  // update definitions from the LiveUpdate servers now
	Scan    = "scan"    // scan files with the installed definitions and report detections
	Restore = "restore" // put a quarantined file back where it was
	Upgrade = "upgrade" // replace the agent's executable with a release, on trial
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
	// ArgVersion is upgrade's release version (v1.2.3); absent, the
	// newest release for the agent's platform.
	ArgVersion = "version"
	// ArgTrial is upgrade's trial limit in whole seconds: the new
	// executable must check in within it or the agent rolls back.
	ArgTrial = "trial"
)

// Limits of upgrade's trial.
const (
	MinTrial     = 10 * time.Second
	MaxTrial     = time.Hour
	DefaultTrial = 2 * time.Minute
)

// Settings that "set" may change, with their validation.
const (
	// SettingCheckInInterval is the check-in interval in seconds (5-86400).
	SettingCheckInInterval = "checkin_interval"
	// SettingOnAccess turns on-access scanning "on" or "off"; "default"
	// goes back to the agent's OnAccess preference.
	SettingOnAccess = "onaccess"
	// SettingOnAccessMode is on-access scanning's mode: "notify" (report
	// only) or "block" (deny opens and execs of infected files); "default"
	// goes back to the agent's OnAccessMode preference.
	SettingOnAccessMode = "onaccess_mode"
)

// Values of the on-access settings.
const (
	On      = "on"
	Off     = "off"
	Default = "default"
	Notify  = "notify"
	Block   = "block"
)

// MinCheckIn and MaxCheckIn bound the check-in interval.
const (
	MinCheckIn = 5 * time.Second
	MaxCheckIn = 24 * time.Hour
)

// Arg documents one argument of a command, given as NAME=VALUE.
type Arg struct {
	Name     string // e.g. "paths"
	Value    string // what the value is, e.g. "SECONDS" or "yes|no"
	Doc      string // what it means and its limits
	Required bool   // the command needs it
}

// Spec documents one command: its name, what it does and its arguments.
// [Command.Validate] knows only the commands [Specs] lists.
type Spec struct {
	Name    string
	Summary string
	Args    []Arg
	// AnyArgs: the command needs at least one of Args (set).
	AnyArgs bool
}

// Specs returns the documentation of every command, sorted by name. The
// slice is the caller's to modify.
func Specs() []Spec {
	s := []Spec{
		{Name: Ping, Summary: "answer \"pong\" with the agent's host name"},
		{Name: CheckIn, Summary: "check in with the server now (within the reply window)"},
		{Name: Set, Summary: "change settings the server manages (at least one)", AnyArgs: true, Args: []Arg{
			{Name: SettingCheckInInterval, Value: "SECONDS", Doc: fmt.Sprintf("check-in interval, whole seconds from %d to %d",
				int(MinCheckIn/time.Second), int(MaxCheckIn/time.Second))},
			{Name: SettingOnAccess, Value: "on|off|default", Doc: "on-access scanning (default: the agent's OnAccess preference)"},
			{Name: SettingOnAccessMode, Value: "notify|block|default", Doc: "on-access mode: report only, or deny opens and execs of infected files (default: the agent's OnAccessMode preference)"},
		}},
		{Name: Update, Summary: "update definitions from the LiveUpdate servers now"},
		{Name: Scan, Summary: "scan files with the installed definitions and report detections", Args: []Arg{
			{Name: ArgPaths, Value: "PATH[,PATH...]", Doc: "clean absolute paths to scan (default: the agent's ScanPaths)"},
			{Name: ArgQuarantine, Value: "yes|no", Doc: "quarantine what is found (default: yes when the agent has a QuarantineDirectory)"},
		}},
		{Name: Restore, Summary: "put a quarantined file back where it was", Args: []Arg{
			{Name: ArgID, Value: "QUARANTINE-ID", Doc: "the quarantine id listed with the detection (32 hex digits)", Required: true},
		}},
		{Name: Upgrade, Summary: "replace the agent's executable with a release from its LiveUpdate servers, verified; roll back if it does not check in", Args: []Arg{
			{Name: ArgVersion, Value: "VERSION", Doc: "the release, e.g. v1.2.3 (default: the newest for the agent's OS and architecture)"},
			{Name: ArgTrial, Value: "SECONDS", Doc: fmt.Sprintf("the new executable must check in within this, or the agent goes back to the old one (%d to %d, default %d)",
				int(MinTrial/time.Second), int(MaxTrial/time.Second), int(DefaultTrial/time.Second))},
		}},
	}
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	return s
}

// Names returns the known command names, sorted.
func Names() []string {
	var n []string
	for _, s := range Specs() {
		n = append(n, s.Name)
	}
	return n
}

// Synopsis is one line of a command's use, e.g. "restore id=QUARANTINE-ID"
// or "scan [paths=PATH[,PATH...]] [quarantine=yes|no]".
func (s Spec) Synopsis() string {
	parts := []string{s.Name}
	for _, a := range s.Args {
		p := a.Name + "=" + a.Value
		if !a.Required && !s.AnyArgs {
			p = "[" + p + "]"
		}
		parts = append(parts, p)
	}
	if s.AnyArgs {
		parts = append(parts, "...")
	}
	return strings.Join(parts, " ")
}

// checkArgs checks that name is a known command and args fit it.
func checkArgs(name string, args map[string]string) error {
	if !slices.Contains(Names(), name) {
		return fmt.Errorf("unknown command %q (known: %s)", name, strings.Join(Names(), ", "))
	}
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
	case Upgrade:
		for k, v := range args {
			switch k {
			case ArgVersion:
				if err := semver.Check(v); err != nil {
					return fmt.Errorf("upgrade: %s: %w", ArgVersion, err)
				}
			case ArgTrial:
				if _, err := TrialLimit(v); err != nil {
					return err
				}
			default:
				return fmt.Errorf("upgrade: unknown argument %q (known: %s, %s)", k, ArgVersion, ArgTrial)
			}
		}
		return nil
	}
	// A command listed in Specs with no case above.
	return fmt.Errorf("command %q has no validation", name)
}

// TrialLimit parses upgrade's trial argument ("" is the default).
func TrialLimit(v string) (time.Duration, error) {
	if v == "" {
		return DefaultTrial, nil
	}
	n, err := strconv.Atoi(v)
	d := time.Duration(n) * time.Second
	if err != nil || d < MinTrial || d > MaxTrial {
		return 0, fmt.Errorf("upgrade: %s: want whole seconds from %d to %d, got %q", ArgTrial, int(MinTrial/time.Second), int(MaxTrial/time.Second), v)
	}
	return d, nil
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
	case SettingOnAccess:
		if value != On && value != Off && value != Default {
			return nil, fmt.Errorf("setting %s: want %s, %s or %s, got %q", key, On, Off, Default, value)
		}
		return value, nil
	case SettingOnAccessMode:
		if value != Notify && value != Block && value != Default {
			return nil, fmt.Errorf("setting %s: want %s, %s or %s, got %q", key, Notify, Block, Default, value)
		}
		return value, nil
	}
	return nil, fmt.Errorf("unknown setting %q (known: %s, %s, %s)", key, SettingCheckInInterval, SettingOnAccess, SettingOnAccessMode)
}
