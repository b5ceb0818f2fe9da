package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// mirrorOptions are vigil mirror's settings: its flags, which its
// preference file may also set.
type mirrorOptions struct {
	upstream, rootFile, dir, resolver string
	parallel, keep                    int
	minRate                           int64
	timeout, every, jitter            time.Duration
	rateWindow, rateGrace, allowance  time.Duration
	asJSON, selfUpdate                bool
	progress, caFile, config          string
}

func mirrorFlags(env *Env) (*flag.FlagSet, *mirrorOptions) {
	fs := newFlags(env, "mirror", "-root FILE -dir DIR [flags] URL")
	o := &mirrorOptions{}
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartMirror), "preference file whose keys set these flags (read if it exists; flags given here win)")
	fs.StringVar(&o.upstream, "upstream", "", "the vendor repository: ftp://NAME[:PORT]/PATH or http(s)://NAME[:PORT]/PATH (or give it as the argument)")
	fs.StringVar(&o.rootFile, "root", "", "the repository's pinned root metadata, 1.root.json (required)")
	fs.StringVar(&o.dir, "dir", "", "the local repository, served by vigil liveupdate -root DIR (required; created if missing)")
	fs.StringVar(&o.resolver, "resolver", "", "DNS server to resolve NAME with, HOST:PORT (default: the system's resolver)")
	fs.IntVar(&o.parallel, "parallel", mirror.DefaultParallel, fmt.Sprintf("simultaneous downloads (1 to %d)", mirror.MaxParallel))
	fs.IntVar(&o.keep, "keep", 3, "previous states kept besides the current one, for clients in the middle of an update")
	fs.DurationVar(&o.timeout, "timeout", mirror.DefaultTimeout, "time allowed for each wait on an address: connecting, a reply, a pause in a transfer (DNS queries: at most 5s)")
	fs.Int64Var(&o.minRate, "min-rate", transport.DefaultMinRate, "minimum transfer rate in bytes per second: a download slower than that over -rate-window is abandoned and the next address tried (slow-retrieval defence); 0 turns it off")
	fs.DurationVar(&o.rateWindow, "rate-window", transport.DefaultRateWindow, "span over which -min-rate is measured")
	fs.DurationVar(&o.rateGrace, "rate-grace", transport.DefaultRateGrace, "time a download runs before -min-rate is first applied")
	fs.DurationVar(&o.allowance, "session-allowance", transport.DefaultSessionAllowance, "fixed part of the deadline of a session on one address, which is this plus the signed size of what it fetches at -min-rate")
	fs.DurationVar(&o.every, "every", 0, "keep running and sync every DURATION (default: sync once and exit)")
	fs.DurationVar(&o.jitter, "jitter", 0, "with -every, add a random delay up to this to each interval (default: a tenth of -every)")
	fs.BoolVar(&o.asJSON, "json", false, "print the summary of each sync as one line of JSON on standard output (the report goes to standard error)")
	fs.StringVar(&o.progress, "progress", "auto", "download progress: bars (a bar per download), lines (a line per file), off, or auto (bars on a terminal, lines otherwise)")
	fs.BoolVar(&o.selfUpdate, "self-update", false, "replace this executable with the newest Vigil release in the repository, if newer (the previous one is kept as FILE.old)")
	fs.StringVar(&o.caFile, "ca-cert", "", "PEM file of the CA certificates that https:// upstreams are verified with (default: the system's)")
	return fs, o
}

// finish applies the preference file to the parsed flags and checks what
// the flag package does not.
func (o *mirrorOptions) finish(fs *flag.FlagSet) error {
	if err := applyPartFile(fs, o.config, prefs.DefaultPartPath(config.PartMirror)); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 1 && !flagSet(fs, "upstream"):
		o.upstream = fs.Arg(0)
	case fs.NArg() > 1 || fs.NArg() == 1 && flagSet(fs, "upstream"):
		return usageError{fmt.Errorf("unexpected arguments %q: give one upstream URL", fs.Args())}
	}
	if o.upstream == "" {
		return usageError{errors.New("give the upstream URL (ftp://NAME/PATH or http(s)://NAME/PATH)")}
	}
	if o.rootFile == "" {
		return usageError{errors.New("-root is required: the repository's 1.root.json, as shipped by the vendor")}
	}
	if o.dir == "" {
		return usageError{errors.New("-dir is required: the local repository directory")}
	}
	if o.every < 0 || o.jitter < 0 {
		return usageError{errors.New("-every and -jitter must not be negative")}
	}
	if o.every > 0 && o.every < time.Second {
		return usageError{fmt.Errorf("-every %v: want at least 1s", o.every)}
	}
	if !flagSet(fs, "jitter") {
		o.jitter = o.every / 10
	}
	if o.parallel < 1 || o.parallel > mirror.MaxParallel {
		return usageError{fmt.Errorf("-parallel %d: want 1 to %d", o.parallel, mirror.MaxParallel)}
	}
	if o.keep < 0 {
		return usageError{fmt.Errorf("-keep %d: want 0 or more", o.keep)}
	}
	if o.timeout <= 0 {
		return usageError{fmt.Errorf("-timeout %v: want a positive duration", o.timeout)}
	}
	if o.minRate < 0 {
		return usageError{fmt.Errorf("-min-rate %d: want bytes per second, or 0 for no minimum", o.minRate)}
	}
	if o.rateWindow <= 0 || o.rateGrace < 0 || o.allowance <= 0 {
		return usageError{errors.New("-rate-window and -session-allowance must be positive, -rate-grace not negative")}
	}
	return nil
}

func runMirror(ctx context.Context, env *Env, args []string) error {
	o, err := parsePart(env, mirrorFlags, args)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(o.rootFile)
	if err != nil {
		return fmt.Errorf("-root: %w", err)
	}
	cfg := mirror.Config{
		Upstream: o.upstream,
		Root:     root,
		Dir:      o.dir,
		Resolver: o.resolver,
		Parallel: o.parallel,
		Keep:     o.keep,
		Timeout:  o.timeout,
		Out:      env.Stdout,

		MinRate:          o.minRate,
		RateWindow:       o.rateWindow,
		RateGrace:        o.rateGrace,
		SessionAllowance: o.allowance,
	}
	switch {
	case o.minRate == 0:
		cfg.MinRate = -1 // off
	case o.rateGrace == 0:
		cfg.RateGrace = -1 // judged from the start
	}
	if o.asJSON {
		cfg.Out = env.Stderr
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca-cert: %s holds no PEM certificate", o.caFile)
		}
		cfg.TLS = &tls.Config{RootCAs: pool}
	}
	switch strings.ToLower(o.progress) {
	case "auto":
		if isTerminal(env.Stderr) {
			cfg.Progress = newBarProgress(env.Stderr)
		} else {
			cfg.Progress = newLogProgress(cfg.Out)
		}
	case "bars":
		cfg.Progress = newBarProgress(env.Stderr)
	case "lines":
		cfg.Progress = newLogProgress(cfg.Out)
	case "off":
	default:
		return usageError{fmt.Errorf("-progress %q: want auto, bars, lines or off", o.progress)}
	}
	if o.selfUpdate {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("-self-update: cannot find this executable: %w", err)
		}
		if cfg.SelfUpdateExe, err = filepath.EvalSymlinks(exe); err != nil {
			return fmt.Errorf("-self-update: %w", err)
		}
	}
	m, err := mirror.New(cfg)
	if err != nil {
		return err
	}
	report := func(sum *mirror.Summary, err error) error {
		if o.asJSON {
			b, jerr := json.Marshal(sum)
			if jerr != nil {
				return jerr
			}
			fmt.Fprintf(env.Stdout, "%s\n", b)
		} else {
			sum.WriteText(cfg.Out)
		}
		if err == nil && sum.SelfUpdate != nil && sum.SelfUpdate.Error != "" {
			err = fmt.Errorf("self-update: %s", sum.SelfUpdate.Error)
		}
		return err
	}
	env.running(nil, defaultGrace)
	if o.every == 0 {
		sum, err := m.Sync(ctx)
		if rerr := report(sum, err); rerr != nil {
			var be *mirror.BehindError
			switch {
			case ctx.Err() != nil:
				return fmt.Errorf("interrupted: %w", rerr)
			case errors.As(rerr, &be):
				return exitError{code: exitBehind, err: rerr}
			}
			return rerr
		}
		return nil
	}
	fmt.Fprintf(cfg.Out, "Syncing %s into %s every %s; SIGINT or SIGTERM stops\n", o.upstream, m.Dir(), mirror.NextDelay(o.every, o.jitter))
	return m.Every(ctx, o.every, o.jitter, func(sum *mirror.Summary, err error) {
		rerr := report(sum, err)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(cfg.Out, "Interrupted: stopping (partial downloads are kept for the next run)\n")
		case rerr != nil:
			fmt.Fprintf(env.Stderr, "vigil mirror: %v\n", rerr)
			fallthrough
		default:
			fmt.Fprintf(cfg.Out, "Next sync in %s\n", mirror.NextDelay(o.every, o.jitter))
		}
	})
}

// exitBehind is vigil mirror's exit status when the sync ended behind the
// newest state an address announced (mirror.BehindError): the local copy
// is complete and verifies, but is not the newest.
const exitBehind = 3

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
