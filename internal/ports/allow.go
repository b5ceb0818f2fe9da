package ports

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-fleet/vigil/internal/config"
)

// FlowAllowed is the id of the flows an administrator keeps open besides
// Vigil's own (vigil ports -allow), such as SSH. They belong to no part:
// their Part is PartAllow.
const FlowAllowed = "allowed"

// PartAllow is the Part of the FlowAllowed flows.
const PartAllow = "allow"

// SSH is the port the firewall rules warn about when it is not kept open.
var SSH = Allowed{Direction: "in", Protocol: "tcp", Ports: config.PortRange{Lo: 22, Hi: 22}}

// Allowed is a port kept open besides Vigil's flows, written
//
//	[in:|out:]PROTO/PORT[-PORT][@ADDRESS|@NETWORK]
//
// PROTO is tcp or udp; in (the default) accepts connections to this
// machine, from ADDRESS or NETWORK when given; out lets this machine open
// connections, to ADDRESS or NETWORK when given. Examples: "tcp/22",
// "tcp/22@10.0.9.0/24", "out:udp/123@192.0.2.123", "tcp/60000-60010".
type Allowed struct {
	Direction string           // "in" or "out"
	Protocol  string           // "tcp" or "udp"
	Ports     config.PortRange // one port or a range
	Net       netip.Prefix     // the other end (source in, destination out); invalid = any
}

// String writes a in the syntax ParseAllowed reads, "in:" left out.
func (a Allowed) String() string {
	s := a.Protocol + "/" + a.Ports.String()
	if a.Direction == "out" {
		s = "out:" + s
	}
	if a.Net.IsValid() {
		if a.Net.IsSingleIP() {
			s += "@" + a.Net.Addr().String()
		} else {
			s += "@" + a.Net.String()
		}
	}
	return s
}

// MarshalText writes a as String does.
func (a Allowed) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// maxAllowedLen bounds what ParseAllowed reads: the longest valid form is
// far shorter.
const maxAllowedLen = 128

// ParseAllowed reads one port to keep open, in the syntax of Allowed.
// Everything is checked: the direction, the protocol, each port (1 to
// 65535, LOW <= HIGH) and the address or network.
func ParseAllowed(s string) (Allowed, error) {
	if len(s) > maxAllowedLen {
		return Allowed{}, fmt.Errorf("%.20q…: longer than %d bytes", s, maxAllowedLen)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%q: %s; want [in:|out:]tcp|udp/PORT[-PORT][@ADDRESS|@NETWORK], e.g. tcp/22 or tcp/22@10.0.9.0/24", s, fmt.Sprintf(format, args...))
	}
	a := Allowed{Direction: "in"}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return Allowed{}, errors.New(`empty: want [in:|out:]tcp|udp/PORT[-PORT][@ADDRESS|@NETWORK], e.g. tcp/22`)
	}
	if d, r, ok := strings.Cut(rest, ":"); ok && !strings.Contains(d, "/") {
		switch d {
		case "in", "out":
			a.Direction = d
		default:
			return Allowed{}, bad("direction %q is neither in nor out", d)
		}
		rest = r
	}
	rest, network, hasNet := strings.Cut(rest, "@")
	proto, ports, ok := strings.Cut(rest, "/")
	if !ok {
		return Allowed{}, bad("no / between the protocol and the port")
	}
	switch proto {
	case "tcp", "udp":
		a.Protocol = proto
	default:
		return Allowed{}, bad("protocol %q: want tcp or udp", proto)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	l, err := parsePort(lo)
	if err != nil {
		return Allowed{}, bad("%v", err)
	}
	h, err := parsePort(hi)
	if err != nil {
		return Allowed{}, bad("%v", err)
	}
	if l > h {
		return Allowed{}, bad("range %d-%d runs backwards", l, h)
	}
	a.Ports = config.PortRange{Lo: l, Hi: h}
	if hasNet {
		if addr, err := netip.ParseAddr(network); err == nil && addr.Zone() == "" {
			addr = addr.Unmap()
			a.Net = netip.PrefixFrom(addr, addr.BitLen())
		} else if p, err := netip.ParsePrefix(network); err == nil {
			a.Net = p.Masked()
		} else {
			return Allowed{}, bad("%q is neither an IP address nor a network such as 10.0.9.0/24", network)
		}
	}
	return a, nil
}

// parsePort reads a port number, 1 to 65535, in decimal digits only.
func parsePort(s string) (uint16, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || len(s) > 5 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// allowed adds the flows of Config.Allow, and warns when SSH is not among
// them.
func (b *builder) allowed() {
	for _, a := range b.c.Allow {
		f := Flow{
			ID: FlowAllowed, Part: PartAllow, Direction: a.Direction, Protocol: a.Protocol,
			Ports: []config.PortRange{a.Ports}, Step: a.String(),
			Why:    "kept open with -allow " + a.String() + "; not a Vigil flow",
			Target: a.String(),
		}
		other := "any"
		if a.Net.IsValid() {
			other = a.String()[strings.LastIndexByte(a.String(), '@')+1:]
		}
		if a.Direction == "in" {
			f.From, f.To = other, "this host"
			if a.Net.IsValid() {
				f.Src = []netip.Prefix{a.Net}
			}
		} else {
			f.From, f.To = "this host", other
			if a.Net.IsValid() {
				f.Dst = []netip.Prefix{a.Net}
			}
		}
		if !slices.ContainsFunc(b.p.Flows, func(o Flow) bool { return o.ID == FlowAllowed && o.Step == f.Step }) {
			b.add(f)
		}
	}
	if !slices.ContainsFunc(b.c.Allow, func(a Allowed) bool {
		return a.Direction == "in" && a.Protocol == "tcp" && a.Ports.Lo <= 22 && 22 <= a.Ports.Hi
	}) {
		b.p.Warnings = append(b.p.Warnings, SSHWarning)
	}
}

// SSHWarning is the warning of a plan that does not keep SSH open.
const SSHWarning = "SSH (TCP 22) is NOT allowed, nor is anything else but the flows listed: loading these firewall rules on a machine you reach over SSH cuts you off. Keep it open with -allow tcp/22 (better: -allow tcp/22@ADMIN-NETWORK), and any other service of this machine likewise"
