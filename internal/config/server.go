package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Server is the configuration of a management server (vigil server):
// each field is a flag of vigil server and, named as prefs.FlagKey names
// it, a key of its preference file (server.plist). The server's library
// configuration (server.Config) embeds it.
type Server struct {
	// DataDir holds keys, secrets and (by default) the SQLite store.
	DataDir string
	// Store is where the server keeps its state: "" for the SQLite store
	// in DataDir, or a postgres:// (postgresql://) URL of a PostgreSQL
	// database (see StoreDSN).
	Store StoreDSN
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
	// SeenFlush is how often the check-ins answered before they were
	// written (those that change only the agent's last-seen time and
	// counters) are written: a crash loses at most this much of them,
	// never a state change. Negative (the flag's 0) writes every check-in
	// before answering it. Only a store no other instance shares (SQLite)
	// answers check-ins before writing them.
	SeenFlush time.Duration

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
		SeenFlush:       time.Second,
	}
}

// RegisterFlags sets c to the defaults and registers its flags on fs.
func (c *Server) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultServer()
	*c = d
	fs.TextVar(&c.Group, "group", d.Group, "multicast group commands are sent to: an IPv4 or IPv6 `address`")
	fs.StringVar(&c.DataDir, "data-dir", d.DataDir, "directory for keys, secrets and the SQLite store")
	fs.Var(&c.Store, "store", "where the server keeps its state: empty for SQLite in -data-dir, or a postgres://… URL of a PostgreSQL database")
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
	fs.DurationVar(&c.SeenFlush, "seen-flush", d.SeenFlush, "check-ins that change nothing but the agent's last-seen time are answered at once and written within this `interval` (0: every check-in is written before it is answered; SQLite only)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve the agent API over HTTPS with this certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "private key for -tls-cert (PEM)")
	fs.StringVar(&c.AdminTLSCert, "admin-tls-cert", "", "serve the admin API and the console over HTTPS with this certificate (PEM)")
	fs.StringVar(&c.AdminTLSKey, "admin-tls-key", "", "private key for -admin-tls-cert (PEM)")
	fs.BoolVar(&c.AdminInsecureHTTP, "admin-insecure-http", false, "serve the console over plain HTTP even on an address other hosts reach (passwords and sessions travel in clear)")
}

// StoreDSN is a server's Store setting: "" for the SQLite store in its
// data directory, or the URL of a PostgreSQL database
// (postgres://[USER[:PASSWORD]@][HOST][:PORT]/DBNAME[?PARAMS], as pgx
// takes it; a Unix socket directory is ?host=/run/postgresql). Set takes
// any text, so that a mistyped URL is never echoed by the flag package
// (it may hold a password); Check says what is wrong with it without
// repeating it. As a flag.Getter it yields the URL with its password
// replaced (Redacted), which is what published settings carry.
type StoreDSN string

// Set implements flag.Value.
func (d *StoreDSN) Set(v string) error { *d = StoreDSN(v); return nil }

// String implements flag.Value.
func (d *StoreDSN) String() string {
	if d == nil {
		return ""
	}
	return string(*d)
}

// Get implements flag.Getter: the URL without its password.
func (d *StoreDSN) Get() any { return d.Redacted() }

// IsPostgres reports whether d names a PostgreSQL database (rather than
// the SQLite store in the data directory).
func (d StoreDSN) IsPostgres() bool { return d != "" }

// Check reports whether d is "" or a postgres:// or postgresql:// URL.
// Its errors never hold the password (nor the URL).
func (d StoreDSN) Check() error {
	if d == "" {
		return nil
	}
	u, err := url.Parse(string(d))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error repeats the URL, password included
		}
		return fmt.Errorf("not a URL (%v): want postgres://… or postgresql://…, or nothing for SQLite in the data directory", err)
	}
	switch u.Scheme {
	case "postgres", "postgresql":
	case "":
		return errors.New("not a URL: want postgres://… or postgresql://… (a keyword=value connection string is not accepted), or nothing for SQLite in the data directory")
	default:
		return fmt.Errorf("unsupported scheme %q: want postgres://… or postgresql://…, or nothing for SQLite in the data directory", u.Scheme)
	}
	if u.Opaque != "" {
		return errors.New("want postgres://HOST/DBNAME, with two slashes")
	}
	ports := []string{u.Query().Get("port")}
	for _, h := range strings.Split(u.Host, ",") {
		if _, p, err := net.SplitHostPort(h); err == nil {
			ports = append(ports, p)
		}
	}
	for _, p := range ports {
		if n, err := strconv.Atoi(p); p != "" && (err != nil || n < 1 || n > 65535) {
			return fmt.Errorf("port %q: want 1 to 65535", p)
		}
	}
	return nil
}

// Redacted returns d with the password of its user and of a password
// parameter replaced by "xxxxx"; a URL that does not parse becomes
// "(unparsable URL)".
func (d StoreDSN) Redacted() string {
	if d == "" {
		return ""
	}
	u, err := url.Parse(string(d))
	if err != nil {
		return "(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Where names the database d points to, for logs and messages, without
// credentials: "database vigil on db.example:5432", "database vigil on
// /run/postgresql" (a Unix socket directory), "SQLite in the data
// directory" for "".
func (d StoreDSN) Where() string {
	if d == "" {
		return "SQLite in the data directory"
	}
	u, err := url.Parse(string(d))
	if err != nil {
		return "(unparsable URL)"
	}
	db := strings.TrimPrefix(u.Path, "/")
	if v := u.Query().Get("dbname"); v != "" {
		db = v
	}
	if db == "" {
		db = "(the user's default)"
	}
	host := u.Host
	if h := u.Query().Get("host"); h != "" {
		host = h
	}
	if host == "" {
		host = "(the default socket)"
	}
	return "database " + db + " on " + host
}

// TCPEndpoints returns the host:port pairs d connects to over TCP ("host"
// and "port" parameters included, comma-separated lists of hosts, the
// default port 5432), none for Unix sockets (a host that starts with
// "/"), and none for "". d must have passed Check.
func (d StoreDSN) TCPEndpoints() []string {
	if d == "" {
		return nil
	}
	u, err := url.Parse(string(d))
	if err != nil {
		return nil
	}
	q := u.Query()
	var hosts []string
	if u.Host != "" {
		hosts = strings.Split(u.Host, ",")
	}
	if h := q.Get("host"); h != "" {
		hosts = strings.Split(h, ",")
	}
	defPort := "5432"
	if p := q.Get("port"); p != "" {
		defPort = p
	}
	var out []string
	for _, h := range hosts {
		if h == "" || strings.HasPrefix(h, "/") {
			continue // a Unix socket directory
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = strings.Trim(h, "[]"), defPort
		}
		if host == "" {
			continue // libpq's default: a Unix socket
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out
}

// Scrub returns s with every occurrence of d's passwords (the user's and
// a password parameter's) replaced by "xxxxx": for error messages of
// libraries that may repeat the URL.
func (d StoreDSN) Scrub(s string) string {
	u, err := url.Parse(string(d))
	if err != nil {
		if d != "" {
			s = strings.ReplaceAll(s, string(d), "(unparsable URL)")
		}
		return s
	}
	var pws []string
	if p, ok := u.User.Password(); ok && p != "" {
		pws = append(pws, p, url.QueryEscape(p), url.PathEscape(p))
	}
	if p := u.Query().Get("password"); p != "" {
		pws = append(pws, p, url.QueryEscape(p))
	}
	for _, p := range pws {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}
