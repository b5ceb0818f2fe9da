// Package command is the catalog of commands the server may issue and agents
// execute, and the validation of their arguments. Both sides use it, so a
// command the server accepts is one every agent of the same version knows.
// There is deliberately no command that runs an arbitrary program.
package command

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Names of the commands.
const (
	Ping    = "ping"    // answer "pong" with the agent's host name
	CheckIn = "checkin" // check in now (within the reply window)
	Set     = "set"     // change settings the server manages
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
	n := []string{Ping, CheckIn, Set}
	sort.Strings(n)
	return n
}

// Validate checks that name is a known command and args fit it.
func Validate(name string, args map[string]string) error {
	switch name {
	case Ping, CheckIn:
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
	}
	return fmt.Errorf("unknown command %q (known: %v)", name, Names())
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
