package config

import (
	"flag"
	"net/netip"
	"time"
)

// Server is the configuration of a management server (vigil server):
// each field is a flag of vigil server and, named as prefs.FlagKey names
// it, a key of its preference file (server.plist). The server's library
// configuration (server.Config) embeds it.
type Server struct {
	// DataDir holds keys, secrets and (by default) the SQLite store.
	DataDir string
	// Listen is the agent API address (host:port).
	Listen string
	// BasePath is the path of the agent API; agents' NodeCommURL ends in it.
	BasePath string
	// AdminListen is the admin API and /metrics address.
	AdminListen string

	// Group, Port, Interface and TTL say where commands are multicast.
	Group     netip.Addr
	Port      int
	Interface string
	TTL       int
	// Repeat is how many times each command datagram is sent.
	Repeat int
	// RepeatGap is the pause between repeats.
	RepeatGap time.Duration
	// BeaconInterval is the period of the signed beacon.
	BeaconInterval time.Duration

	// CheckInInterval and Spread are announced to agents.
	CheckInInterval time.Duration
	Spread          time.Duration
	// CommandTTL is how long a command stays valid when not said otherwise.
	CommandTTL time.Duration

	// TLSCert and TLSKey, when set, serve the agent API over HTTPS.
	TLSCert, TLSKey string
	// AdminTLSCert and AdminTLSKey, when set, serve the admin API and the
	// console over HTTPS.
	AdminTLSCert, AdminTLSKey string
	// AdminInsecureHTTP lets the console be served over plain HTTP on an
	// address other hosts reach; without it the server refuses to.
	AdminInsecureHTTP bool
}

// DefaultServer returns a server's defaults.
func DefaultServer() Server {
	return Server{
		DataDir:         "/var/lib/vigil-server",
		Listen:          ":8080",
		BasePath:        "/vigil",
		AdminListen:     "127.0.0.1:8081",
		Group:           netip.MustParseAddr(DefaultGroup),
		Port:            DefaultPort,
		TTL:             1,
		Repeat:          2,
		RepeatGap:       20 * time.Millisecond,
		BeaconInterval:  30 * time.Second,
		CheckInInterval: 5 * time.Minute,
		Spread:          5 * time.Second,
		CommandTTL:      24 * time.Hour,
	}
}

// RegisterFlags sets c to the defaults and registers its flags on fs.
func (c *Server) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultServer()
	*c = d
	fs.TextVar(&c.Group, "group", d.Group, "multicast group commands are sent to: an IPv4 or IPv6 `address`")
	fs.StringVar(&c.DataDir, "data-dir", d.DataDir, "directory for keys, secrets and the SQLite store")
	fs.StringVar(&c.Listen, "listen", d.Listen, "agent API address (agents' NodeCommURL points here)")
	fs.StringVar(&c.BasePath, "base-path", d.BasePath, "path of the agent API: the path part of NodeCommURL")
	fs.StringVar(&c.AdminListen, "admin-listen", d.AdminListen, "admin API and /metrics address")
	fs.IntVar(&c.Port, "port", d.Port, "multicast UDP port")
	fs.StringVar(&c.Interface, "interface", "", "interface to send multicast on (default: the system's choice)")
	fs.IntVar(&c.TTL, "ttl", d.TTL, "multicast TTL / hop limit (0: this host only)")
	fs.IntVar(&c.Repeat, "repeat", d.Repeat, "times each command datagram is sent")
	fs.DurationVar(&c.RepeatGap, "repeat-gap", d.RepeatGap, "pause between repeats")
	fs.DurationVar(&c.BeaconInterval, "beacon-interval", d.BeaconInterval, "period of the signed beacon")
	fs.DurationVar(&c.CheckInInterval, "checkin-interval", d.CheckInInterval, "agents' check-in interval")
	fs.DurationVar(&c.Spread, "spread", d.Spread, "window over which agents spread check-ins and replies")
	fs.DurationVar(&c.CommandTTL, "command-ttl", d.CommandTTL, "default validity of a command")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve the agent API over HTTPS with this certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "private key for -tls-cert (PEM)")
	fs.StringVar(&c.AdminTLSCert, "admin-tls-cert", "", "serve the admin API and the console over HTTPS with this certificate (PEM)")
	fs.StringVar(&c.AdminTLSKey, "admin-tls-key", "", "private key for -admin-tls-cert (PEM)")
	fs.BoolVar(&c.AdminInsecureHTTP, "admin-insecure-http", false, "serve the console over plain HTTP even on an address other hosts reach (passwords and sessions travel in clear)")
}
