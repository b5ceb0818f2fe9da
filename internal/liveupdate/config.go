package liveupdate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
)

// Config configures a Server. Zero durations and limits take package
// config's defaults (config.DefaultIdleTimeout…); a negative limit means
// no limit.
type Config struct {
	// LiveUpdate is the part's configuration: its flags and preference
	// keys (package config). Its AccessLogFile is vigil liveupdate's to
	// open; the server writes to AccessLog.
	config.LiveUpdate

	// Logger receives operational messages. Nil: discarded.
	Logger *slog.Logger
	// AccessLog receives one line per request or transfer (see the
	// package documentation). Nil: no access log.
	AccessLog io.Writer

	// Fill, when set, makes the server a cache in front of another
	// repository (package lucache fills Root from its upstream). It is
	// called with the server's context (done when the server stops) and
	// the name of a regular file relative to Root, slash-separated
	// ("targets/definitions/SHA256.1.tar"), when a client asks for a
	// file (HTTP GET or HEAD, FTP RETR, SIZE, MDTM, MLST) that is
	// missing, and before serving a file that is there but whose name
	// says it may change (one served with "Cache-Control: no-cache":
	// timestamp.json and other unversioned names; not directories).
	// When it returns nil the file is opened (again) and served, or not
	// found if it is still missing. An error is answered "not found"
	// (HTTP 404, FTP 550), or "try later" (HTTP 503 with Retry-After, FTP
	// 450 to RETR) when it is ErrUnavailable (errors.Is); an error that
	// is neither that nor fs.ErrNotExist is logged as a warning. With
	// Fill set, the HTTP fast path serves only files whose names say
	// they never change; the others take the slower path, which calls
	// Fill. Fill must be safe for concurrent use.
	Fill func(ctx context.Context, name string) error
	// Hit, when set, is called with the name (as for Fill) of every
	// regular file served without a call to Fill for its absence: a
	// cache's hits. It must be quick and safe for concurrent use.
	Hit func(name string)

	// noFastPath answers every HTTP request through http.ReadRequest and
	// http.ServeContent (tests compare both paths).
	noFastPath bool
}

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
	dur(&c.IdleTimeout, config.DefaultIdleTimeout)
	dur(&c.ReadTimeout, config.DefaultReadTimeout)
	dur(&c.WriteTimeout, config.DefaultWriteTimeout)
	dur(&c.ShutdownTimeout, config.DefaultShutdownTimeout)
	limit := func(n *int, def int) {
		switch {
		case *n == 0:
			*n = def
		case *n < 0:
			*n = 0 // no limit
		}
	}
	limit(&c.MaxConns, config.DefaultMaxConns)
	limit(&c.MaxConnsPerIP, config.DefaultMaxConnsPerIP)
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
