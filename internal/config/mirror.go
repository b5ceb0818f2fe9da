package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Defaults of the slow-retrieval defence of every download of
// definitions and releases, by agents and mirrors (transport.RateLimits).
const (
	// DefaultMinRate is the minimum transfer rate, in bytes per second
	// (4 KiB/s, 32 kbit/s).
	DefaultMinRate = 4 << 10
	// DefaultRateWindow is how far back the rate is measured.
	DefaultRateWindow = 30 * time.Second
	// DefaultRateGrace is how long a transfer runs before its rate is
	// first judged.
	DefaultRateGrace = 10 * time.Second
	// DefaultSessionAllowance is the fixed part of a session's deadline.
	DefaultSessionAllowance = time.Minute
)

// A mirror's defaults, also taken by zero fields of mirror.Config.
const (
	DefaultMirrorParallel = 4
	DefaultMirrorTimeout  = 15 * time.Second
	// MaxMirrorParallel bounds Mirror.Parallel.
	MaxMirrorParallel = 64
	// DefaultMirrorKeep is how many previous states a mirror keeps.
	DefaultMirrorKeep = 3
)

// Mirror is the configuration of a mirror (vigil mirror): each field is a
// flag and a key of its preference file (mirror.plist). vigil mirror
// turns it into a mirror.Config, which also holds what no file can (the
// root metadata's bytes, where to write, how to show progress).
type Mirror struct {
	// Upstream is the vendor repository: ftp://NAME[:PORT]/PATH or
	// http(s)://NAME[:PORT]/PATH. On the command line it may also be the
	// one argument.
	Upstream string
	// RootFile is the repository's pinned root metadata (1.root.json).
	RootFile string
	// Dir is the local repository, served by vigil liveupdate.
	Dir string
	// Resolver is the DNS server (host:port) Upstream's name is resolved
	// with; "" = the system's.
	Resolver string
	// Parallel is the number of simultaneous downloads.
	Parallel int
	// Keep is how many previous states are kept besides the current one.
	Keep int
	// Timeout bounds each wait on an address.
	Timeout time.Duration
	// MinRate, RateWindow, RateGrace and SessionAllowance are the
	// slow-retrieval defence; MinRate 0 turns it off.
	MinRate          int64
	RateWindow       time.Duration
	RateGrace        time.Duration
	SessionAllowance time.Duration
	// Every, when set, keeps the mirror running, syncing at this period
	// plus a random delay up to Jitter (default: a tenth of Every).
	Every, Jitter time.Duration
	// JSON prints each sync's summary as a line of JSON.
	JSON bool
	// Progress is how downloads are shown: bars, lines, off or auto.
	Progress string
	// SelfUpdate replaces the running executable with the newest Vigil
	// release of the repository.
	SelfUpdate bool
	// CAFile is the PEM file of the CAs https:// upstreams are verified
	// with; "" = the system's.
	CAFile string
}

// RegisterFlags sets c to the defaults and registers its flags on fs.
func (c *Mirror) RegisterFlags(fs *flag.FlagSet) {
	*c = Mirror{}
	fs.StringVar(&c.Upstream, "upstream", "", "the vendor repository: ftp://NAME[:PORT]/PATH or http(s)://NAME[:PORT]/PATH (or give it as the argument)")
	fs.StringVar(&c.RootFile, "root", "", "the repository's pinned root metadata, 1.root.json (required)")
	fs.StringVar(&c.Dir, "dir", "", "the local repository, served by vigil liveupdate -root DIR (required; created if missing)")
	fs.StringVar(&c.Resolver, "resolver", "", "DNS server to resolve NAME with, HOST:PORT (default: the system's resolver)")
	fs.IntVar(&c.Parallel, "parallel", DefaultMirrorParallel, fmt.Sprintf("simultaneous downloads (1 to %d)", MaxMirrorParallel))
	fs.IntVar(&c.Keep, "keep", DefaultMirrorKeep, "previous states kept besides the current one, for clients in the middle of an update")
	fs.DurationVar(&c.Timeout, "timeout", DefaultMirrorTimeout, "time allowed for each wait on an address: connecting, a reply, a pause in a transfer (DNS queries: at most 5s)")
	fs.Int64Var(&c.MinRate, "min-rate", DefaultMinRate, "minimum transfer rate in bytes per second: a download slower than that over -rate-window is abandoned and the next address tried (slow-retrieval defence); 0 turns it off")
	fs.DurationVar(&c.RateWindow, "rate-window", DefaultRateWindow, "span over which -min-rate is measured")
	fs.DurationVar(&c.RateGrace, "rate-grace", DefaultRateGrace, "time a download runs before -min-rate is first applied")
	fs.DurationVar(&c.SessionAllowance, "session-allowance", DefaultSessionAllowance, "fixed part of the deadline of a session on one address, which is this plus the signed size of what it fetches at -min-rate")
	fs.DurationVar(&c.Every, "every", 0, "keep running and sync every DURATION (default: sync once and exit)")
	fs.DurationVar(&c.Jitter, "jitter", 0, "with -every, add a random delay up to this to each interval (default: a tenth of -every)")
	fs.BoolVar(&c.JSON, "json", false, "print the summary of each sync as one line of JSON on standard output (the report goes to standard error)")
	fs.StringVar(&c.Progress, "progress", "auto", "download progress: bars (a bar per download), lines (a line per file), off, or auto (bars on a terminal, lines otherwise)")
	fs.BoolVar(&c.SelfUpdate, "self-update", false, "replace this executable with the newest Vigil release in the repository, if newer (the previous one is kept as FILE.old)")
	fs.StringVar(&c.CAFile, "ca-cert", "", "PEM file of the CA certificates that https:// upstreams are verified with (default: the system's)")
}

// Finish completes c once fs, on which RegisterFlags registered c's
// flags, is parsed (and its preference file applied): the upstream given
// as the one argument, -jitter's default; then it checks what the flags'
// types do not. Errors name the flag.
func (c *Mirror) Finish(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	switch {
	case fs.NArg() == 1 && !given["upstream"]:
		c.Upstream = fs.Arg(0)
	case fs.NArg() > 1 || fs.NArg() == 1 && given["upstream"]:
		return fmt.Errorf("unexpected arguments %q: give one upstream URL", fs.Args())
	}
	if c.Upstream == "" {
		return errors.New("give the upstream URL (ftp://NAME/PATH or http(s)://NAME/PATH)")
	}
	if c.RootFile == "" {
		return errors.New("-root is required: the repository's 1.root.json, as shipped by the vendor")
	}
	if c.Dir == "" {
		return errors.New("-dir is required: the local repository directory")
	}
	if c.Every < 0 || c.Jitter < 0 {
		return errors.New("-every and -jitter must not be negative")
	}
	if c.Every > 0 && c.Every < time.Second {
		return fmt.Errorf("-every %v: want at least 1s", c.Every)
	}
	if !given["jitter"] {
		c.Jitter = c.Every / 10
	}
	if c.Parallel < 1 || c.Parallel > MaxMirrorParallel {
		return fmt.Errorf("-parallel %d: want 1 to %d", c.Parallel, MaxMirrorParallel)
	}
	if c.Keep < 0 {
		return fmt.Errorf("-keep %d: want 0 or more", c.Keep)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("-timeout %v: want a positive duration", c.Timeout)
	}
	if c.MinRate < 0 {
		return fmt.Errorf("-min-rate %d: want bytes per second, or 0 for no minimum", c.MinRate)
	}
	if c.RateWindow <= 0 || c.RateGrace < 0 || c.SessionAllowance <= 0 {
		return errors.New("-rate-window and -session-allowance must be positive, -rate-grace not negative")
	}
	switch strings.ToLower(c.Progress) {
	case "auto", "bars", "lines", "off":
	default:
		return fmt.Errorf("-progress %q: want auto, bars, lines or off", c.Progress)
	}
	return nil
}
