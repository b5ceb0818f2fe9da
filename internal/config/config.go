// Package config is the configuration of Vigil's parts: the names of the
// parts, the protocol's defaults, the port range type of listeners and FTP
// passive ports, and the settings of each part that has a preference file
// ([Server], [LiveUpdate], [Mirror]; the agent's are prefs.Agent).
//
// A part's settings are described once, here: RegisterFlags registers a
// flag per field with its default, and a flag's name is also the field's
// key in the part's preference file (prefs.FlagKey turns "data-dir" into
// DataDir), so the command line and the file cannot disagree. The parts'
// library configurations embed these structs; ports.Build takes them as
// they are. The package imports only the standard library, so that every
// part, and ports, which describes them all without linking them, can use
// it. docs/architecture.md ("Part configuration") has the whole picture.
package config

import (
	"fmt"
	"strconv"
	"strings"
)

// The parts of Vigil, as named in preference files (PART.plist), the
// runtime directory and vigil ports.
const (
	PartServer     = "server"
	PartAgent      = "agent"
	PartLiveUpdate = "liveupdate"
	PartMirror     = "mirror"
)

// The protocol's defaults (docs/protocol.md): the multicast group and UDP
// port commands are sent to, as in the product Vigil descends from.
const (
	DefaultGroup = "239.255.81.92"
	DefaultPort  = 8192
)

// PortRange is an inclusive range of ports; Lo == Hi for one port. The
// zero value means "unset".
type PortRange struct{ Lo, Hi uint16 }

// String writes "8080" or "30000-30100".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// MarshalText writes the range as String does, and the zero range as "".
func (r PortRange) MarshalText() ([]byte, error) {
	if r.IsZero() {
		return nil, nil
	}
	return []byte(r.String()), nil
}

// UnmarshalText reads what MarshalText writes: a range as ParsePortRange
// takes it, or "" for the zero range.
func (r *PortRange) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = PortRange{}
		return nil
	}
	v, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// IsZero reports whether r is the zero range (unset).
func (r PortRange) IsZero() bool { return r.Lo == 0 && r.Hi == 0 }

// ParsePortRange parses "LOW-HIGH" or a single port, 1 to 65535.
func ParsePortRange(s string) (PortRange, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return PortRange{}, fmt.Errorf("want LOW-HIGH with 1 <= LOW <= HIGH <= 65535, got %q", s)
	}
	return PortRange{Lo: uint16(lo), Hi: uint16(hi)}, nil
}
