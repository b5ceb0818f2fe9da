package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// PartRelay is a relay's part name (relay.plist, vigil ports).
const PartRelay = "relay"

// Relay is the configuration of a relay (vigil relay): one per subnet the
// server's multicast does not reach. A relay enrolls with the server like
// an agent, keeps a resumable stream of the server's signed datagrams
// (commands and beacons) and multicasts each one verbatim on its own
// subnet; and, when Upstream is set, it serves definitions to that subnet
// as a caching LiveUpdate server that fills from Upstream on the first
// request and verifies every file against the signed metadata. Each field
// is a flag and a key of its preference file (relay.plist).
type Relay struct {
	// Server is the server's agent API URL (an agent's NodeCommURL), as
	// http(s)://HOST[:PORT]/BASE.
	Server string
	// ServerKey is the server's Ed25519 public key, base64 (an agent's
	// ServerPublicKey): enrollment is refused unless the server proves
	// it, and the relay multicasts only what verifies under it.
	ServerKey string
	// ServerCA is a PEM CA file pinned for an https:// Server; "" = the
	// system's.
	ServerCA string
	// EnrollSecretFile holds the enrollment secret (vigil server writes
	// it as DATA-DIR/enroll.secret). Needed until the relay is enrolled.
	EnrollSecretFile string
	// Groups are the groups the relay asks to belong to as an enrolled
	// node (it runs no command: those that target it are answered
	// "unsupported").
	Groups []string
	// Hostname overrides the name the relay enrolls under.
	Hostname string
	// StateDir holds the relay's credential and the last sequence it
	// relayed; the definitions cache is StateDir/cache.
	StateDir string

	// Group, Port, Interface and TTL say where the relay multicasts on
	// its subnet; Repeat and RepeatGap as for the server.
	Group     netip.Addr
	Port      int
	Interface string
	TTL       int
	Repeat    int
	RepeatGap time.Duration

	// Upstream is the LiveUpdate server (or mirror) the definitions cache
	// fills from: ftp://, http:// or https:// URL of a repository. ""
	// turns the cache off.
	Upstream string
	// RootFile is the repository's pinned root metadata (1.root.json);
	// required with Upstream.
	RootFile string
	// UpstreamCA is a PEM CA file an https:// Upstream is verified with;
	// "" = the system's.
	UpstreamCA string
	// HTTPAddr and FTPAddr are the cache's listening addresses, as a
	// LiveUpdate server's; "" disables that protocol.
	HTTPAddr, FTPAddr string
	// PassivePorts and PublicHost are the cache's FTP passive settings,
	// as a LiveUpdate server's.
	PassivePorts PortRange
	PublicHost   string
	// MetadataMaxAge is how old the cache's view of the upstream's
	// timestamp may be before a client's request for timestamp.json
	// makes it ask the upstream again.
	MetadataMaxAge time.Duration

	// MetricsListen is the host:port of the relay's Prometheus /metrics;
	// "" = none.
	MetricsListen string
}

// A relay's defaults.
const (
	DefaultRelayStateDir       = "/var/lib/vigil-relay"
	DefaultRelayGroupName      = "relays"
	DefaultRelayMetadataMaxAge = 30 * time.Second
)

// DefaultRelay returns a relay's defaults.
func DefaultRelay() Relay {
	return Relay{
		Groups:         []string{DefaultRelayGroupName},
		StateDir:       DefaultRelayStateDir,
		Group:          netip.MustParseAddr(DefaultGroup),
		Port:           DefaultPort,
		TTL:            1,
		Repeat:         2,
		RepeatGap:      20 * time.Millisecond,
		HTTPAddr:       DefaultLiveUpdateHTTP,
		FTPAddr:        DefaultLiveUpdateFTP,
		MetadataMaxAge: DefaultRelayMetadataMaxAge,
	}
}

// RegisterFlags sets c to the defaults and registers its flags on fs.
func (c *Relay) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultRelay()
	*c = d
	fs.StringVar(&c.Server, "server", "", "the server's agent API URL, http(s)://HOST[:PORT]/BASE, as agents' NodeCommURL (required)")
	fs.StringVar(&c.ServerKey, "server-key", "", "the server's Ed25519 public key, base64, as agents' ServerPublicKey (required)")
	fs.StringVar(&c.ServerCA, "server-ca", "", "PEM CA file pinned for an https:// -server (default: the system's CAs)")
	fs.StringVar(&c.EnrollSecretFile, "enroll-secret-file", "", "file holding the enrollment secret (needed until the relay is enrolled)")
	fs.Var((*listFlag)(&c.Groups), "groups", "comma-separated groups the relay enrolls in (it answers commands that target it \"unsupported\")")
	fs.StringVar(&c.Hostname, "hostname", "", "name to enroll under (default: the host's name)")
	fs.StringVar(&c.StateDir, "state-dir", d.StateDir, "directory for the relay's credential, progress and definitions cache")
	fs.TextVar(&c.Group, "group", d.Group, "multicast group to send on this subnet: an IPv4 or IPv6 `address`")
	fs.IntVar(&c.Port, "port", d.Port, "multicast UDP port")
	fs.StringVar(&c.Interface, "interface", "", "interface to multicast on (default: the system's choice)")
	fs.IntVar(&c.TTL, "ttl", d.TTL, "multicast TTL / hop limit (0: this host only)")
	fs.IntVar(&c.Repeat, "repeat", d.Repeat, "times each command datagram is sent")
	fs.DurationVar(&c.RepeatGap, "repeat-gap", d.RepeatGap, "pause between repeats")
	fs.StringVar(&c.Upstream, "upstream", "", "LiveUpdate server or mirror the definitions cache fills from: ftp://, http:// or https:// URL (default: no cache)")
	fs.StringVar(&c.UpstreamCA, "upstream-ca", "", "PEM CA file an https:// -upstream is verified with (default: the system's CAs)")
	fs.StringVar(&c.RootFile, "root", "", "the repository's pinned root metadata, 1.root.json (required with -upstream)")
	fs.Var((*offAddr)(&c.HTTPAddr), "http", "the cache's HTTP `address` (\"off\" or \"\" disables HTTP)")
	fs.Var((*offAddr)(&c.FTPAddr), "ftp", "the cache's FTP control `address` (\"off\" or \"\" disables FTP)")
	fs.TextVar(&c.PassivePorts, "passive-ports", PortRange{}, "the cache's FTP passive data port `range` LOW-HIGH (default: any free port)")
	fs.StringVar(&c.PublicHost, "public-host", "", "IPv4 address (or host name) the cache announces in PASV replies (default: the address the client connected to)")
	fs.DurationVar(&c.MetadataMaxAge, "metadata-max-age", d.MetadataMaxAge, "age after which a request for timestamp.json makes the cache ask its upstream again (0: every time)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "host:port for Prometheus /metrics (default: none)")
}

// Check checks what the flags' types do not. Errors name the flag.
func (c *Relay) Check() error {
	if c.Server == "" {
		return errors.New("-server is required: the server's agent API URL (agents' NodeCommURL)")
	}
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-server %q: want http(s)://HOST[:PORT]/BASE", c.Server)
	}
	if c.ServerKey == "" {
		return errors.New("-server-key is required: the server's public key (base64), as agents' ServerPublicKey")
	}
	if k, err := base64.StdEncoding.DecodeString(c.ServerKey); err != nil || len(k) != 32 {
		return errors.New("-server-key: want a base64 Ed25519 public key (32 bytes)")
	}
	if c.StateDir == "" {
		return errors.New("-state-dir must not be empty")
	}
	for _, g := range c.Groups {
		if g == "" || strings.ContainsAny(g, ", \t\n") {
			return fmt.Errorf("-groups: %q is not a group name", g)
		}
	}
	if !c.Group.IsMulticast() {
		return fmt.Errorf("-group %v: not a multicast address", c.Group)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("-port %d: want 1 to 65535", c.Port)
	}
	if c.TTL < 0 || c.TTL > 255 {
		return fmt.Errorf("-ttl %d: want 0 to 255", c.TTL)
	}
	if c.Repeat < 1 || c.Repeat > 10 {
		return fmt.Errorf("-repeat %d: want 1 to 10", c.Repeat)
	}
	if c.RepeatGap < 0 {
		return fmt.Errorf("-repeat-gap %v: must not be negative", c.RepeatGap)
	}
	if c.Upstream != "" {
		u, err := url.Parse(c.Upstream)
		if err != nil || (u.Scheme != "ftp" && u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-upstream %q: want ftp://, http:// or https://HOST[:PORT]/PATH", c.Upstream)
		}
		if c.RootFile == "" {
			return errors.New("-root is required with -upstream: the repository's 1.root.json")
		}
		if c.HTTPAddr == "" && c.FTPAddr == "" {
			return errors.New("-http and -ftp are both off: the cache would serve nothing (leave -upstream empty for no cache)")
		}
	}
	if c.MetadataMaxAge < 0 {
		return fmt.Errorf("-metadata-max-age %v: must not be negative", c.MetadataMaxAge)
	}
	return nil
}

// Caches reports whether the relay runs its definitions cache.
func (c *Relay) Caches() bool { return c.Upstream != "" }

// listFlag is a comma-separated list flag, a string in preference files
// ("relays,lab-b").
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Get implements flag.Getter: the list as the comma-separated string a
// preference file holds.
func (l *listFlag) Get() any { return l.String() }

func (l *listFlag) Set(s string) error {
	*l = nil
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
