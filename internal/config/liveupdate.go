package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// LiveUpdate is the configuration of a LiveUpdate server (vigil
// liveupdate): each field is a flag and a key of its preference file
// (liveupdate.plist). The server's library configuration
// (liveupdate.Config) embeds it.
type LiveUpdate struct {
	// Root is the folder served by both protocols: a repository's public/
	// folder, or a mirror's directory. liveupdate.New refuses a Root that
	// holds private keys (a repository directory, with its keys/).
	Root string

	// HTTPAddr and FTPAddr are the listening addresses ("host:port");
	// an empty address disables that protocol. At least one is needed.
	HTTPAddr string
	FTPAddr  string

	// PassivePorts is the inclusive range of ports for FTP passive data
	// connections. The zero range lets the system choose any free port.
	PassivePorts PortRange

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
	// Zero takes the default; -1 means no limit.
	MaxConns int
	// MaxConnsPerIP caps the connections of each protocol from one
	// client address. Zero takes the default; -1 means no limit.
	MaxConnsPerIP int

	// AccessLogFile is the file vigil liveupdate appends its access log
	// to, "-" for standard output, "" for none.
	AccessLogFile string
}

// A LiveUpdate server's defaults, also taken by zero fields of
// liveupdate.Config.
const (
	DefaultLiveUpdateHTTP  = ":80"
	DefaultLiveUpdateFTP   = ":21"
	DefaultIdleTimeout     = 2 * time.Minute
	DefaultReadTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 60 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultMaxConns        = 2048
	DefaultMaxConnsPerIP   = 64
)

// RegisterFlags sets c to the defaults and registers its flags on fs.
func (c *LiveUpdate) RegisterFlags(fs *flag.FlagSet) {
	*c = LiveUpdate{HTTPAddr: DefaultLiveUpdateHTTP, FTPAddr: DefaultLiveUpdateFTP}
	fs.StringVar(&c.Root, "root", "", "folder to serve (required): a repository's public/ folder (DIR/public of vigil repo -dir DIR) or a mirror's -dir, never a tree holding private keys")
	fs.Var((*offAddr)(&c.HTTPAddr), "http", "HTTP `address` (\"off\" or \"\" disables HTTP)")
	fs.Var((*offAddr)(&c.FTPAddr), "ftp", "FTP control `address` (\"off\" or \"\" disables FTP)")
	fs.TextVar(&c.PassivePorts, "passive-ports", PortRange{}, "FTP passive data port `range` LOW-HIGH, e.g. 30000-30100 (default: any free port)")
	fs.StringVar(&c.PublicHost, "public-host", "", "IPv4 address (or host name) announced in PASV replies (default: the address the client connected to)")
	fs.IntVar(&c.MaxConns, "max-conns", DefaultMaxConns, "most connections per protocol (-1: no limit)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", DefaultMaxConnsPerIP, "most connections per protocol from one address (-1: no limit)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "close HTTP keep-alive and FTP control connections idle this long")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", DefaultReadTimeout, "time allowed to send a request header or FTP command, or to open a passive data connection")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", DefaultWriteTimeout, "time allowed for a client to accept each write and each 256 KiB of a file")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGINT/SIGTERM, time given to transfers in progress")
	fs.StringVar(&c.AccessLogFile, "access-log", "", `access log file, "-" for standard output (default: none)`)
}

// Check checks what the flags' types do not: the settings a LiveUpdate
// server given on its command line or in its file must have. Errors name
// the flag.
func (c *LiveUpdate) Check() error {
	if c.Root == "" {
		return errors.New("-root is required")
	}
	if c.HTTPAddr == "" && c.FTPAddr == "" {
		return errors.New("-http and -ftp are both off: nothing to serve")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"idle-timeout", c.IdleTimeout}, {"read-timeout", c.ReadTimeout}, {"write-timeout", c.WriteTimeout}, {"shutdown-timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("-%s must be positive, got %v", d.name, d.v)
		}
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"max-conns", c.MaxConns}, {"max-conns-per-ip", c.MaxConnsPerIP}} {
		if l.v == 0 || l.v < -1 {
			return fmt.Errorf("-%s must be positive or -1 (no limit), got %d", l.name, l.v)
		}
	}
	return nil
}

// offAddr is a listening address flag where "off" (any case) or ""
// disables the protocol (stored as "").
type offAddr string

func (a *offAddr) String() string { return string(*a) }

// Get makes the flag a flag.Getter of a string, as preference files and
// the settings published for vigil ports see it.
func (a *offAddr) Get() any { return string(*a) }

func (a *offAddr) Set(s string) error {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		s = ""
	}
	*a = offAddr(s)
	return nil
}
