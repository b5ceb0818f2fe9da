package liveupdate

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
)

// Config configures a Server. Zero durations and limits take the defaults
// below; a negative limit means no limit.
type Config struct {
	// Root is the folder served by both protocols: a repository's public/
	// folder, or a mirror's directory. New refuses a Root that holds
	// private keys (a repository directory, with its keys/) with a
	// *PrivateKeyError.
	Root string

	// HTTPAddr and FTPAddr are the listening addresses ("host:port");
	// an empty address disables that protocol. At least one is needed.
	HTTPAddr string
	FTPAddr  string

	// PassivePorts is the inclusive range of ports for FTP passive data
	// connections. The zero range lets the system choose any free port.
	PassivePorts config.PortRange

	// PublicHost is the IPv4 address (or a host name resolved once, at
	// start) announced in PASV replies. Empty: the local address of the
	// client's control connection.
	PublicHost string

	// IdleTimeout closes an HTTP keep-alive connection, or an FTP control
	// connection, that has waited that long for the next request.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading one HTTP request header or one FTP
	// command line once it has started, and waiting for the client to
	// open an FTP passive data connection.
	ReadTimeout time.Duration
	// WriteTimeout bounds every write, and every 256 KiB of a file sent:
	// a client that accepts data slower than that is disconnected.
	WriteTimeout time.Duration
	// ShutdownTimeout is how long Serve waits, once its context is done,
	// for transfers in progress to finish before closing them.
	ShutdownTimeout time.Duration

	// MaxConns caps the connections of each protocol (HTTP connections;
	// FTP control connections, each with at most one data connection).
	MaxConns int
	// MaxConnsPerIP caps the connections of each protocol from one
	// client address.
	MaxConnsPerIP int

	// Logger receives operational messages. Nil: discarded.
	Logger *slog.Logger
	// AccessLog receives one line per request or transfer (see the
	// package documentation). Nil: no access log.
	AccessLog io.Writer

	// noFastPath answers every HTTP request through http.ReadRequest and
	// http.ServeContent (tests compare both paths).
	noFastPath bool
}

// Defaults for zero Config fields.
const (
	DefaultIdleTimeout     = 2 * time.Minute
	DefaultReadTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 60 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultMaxConns        = 2048
	DefaultMaxConnsPerIP   = 64
)

// withDefaults checks c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Root == "" {
		return c, errors.New("liveupdate: no repository root")
	}
	if c.HTTPAddr == "" && c.FTPAddr == "" {
		return c, errors.New("liveupdate: neither HTTP nor FTP address: nothing to serve")
	}
	for _, a := range []struct{ name, addr string }{{"HTTP", c.HTTPAddr}, {"FTP", c.FTPAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return c, fmt.Errorf("liveupdate: %s address %q: %v", a.name, a.addr, err)
		}
	}
	if r := c.PassivePorts; !r.IsZero() && (r.Lo < 1 || r.Lo > r.Hi) {
		return c, fmt.Errorf("liveupdate: passive port range %d-%d: want 1 <= low <= high <= 65535", r.Lo, r.Hi)
	}
	dur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	dur(&c.IdleTimeout, DefaultIdleTimeout)
	dur(&c.ReadTimeout, DefaultReadTimeout)
	dur(&c.WriteTimeout, DefaultWriteTimeout)
	dur(&c.ShutdownTimeout, DefaultShutdownTimeout)
	limit := func(n *int, def int) {
		switch {
		case *n == 0:
			*n = def
		case *n < 0:
			*n = 0 // no limit
		}
	}
	limit(&c.MaxConns, DefaultMaxConns)
	limit(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// resolvePublicHost turns Config.PublicHost into the IPv4 address PASV
// announces; the zero Addr means "the control connection's local address".
func resolvePublicHost(h string) (netip.Addr, error) {
	if h == "" {
		return netip.Addr{}, nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		if !a.Is4() {
			return netip.Addr{}, fmt.Errorf("liveupdate: public host %s: PASV can only announce an IPv4 address", h)
		}
		return a, nil
	}
	ips, err := net.LookupIP(h)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("liveupdate: public host: %v", err)
	}
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil {
			a, _ := netip.AddrFromSlice(ip4)
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("liveupdate: public host %s has no IPv4 address for PASV", h)
}
