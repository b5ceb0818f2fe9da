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

	"github.com/vigil-fleet/vigil/internal/mirror"
)

func runMirror(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "mirror", "-root FILE -dir DIR [flags] URL")
	upstream := fs.String("upstream", "", "the vendor repository: ftp://NAME[:PORT]/PATH or http(s)://NAME[:PORT]/PATH (or give it as the argument)")
	rootFile := fs.String("root", "", "the repository's pinned root metadata, 1.root.json (required)")
	dir := fs.String("dir", "", "the local repository, served by vigil liveupdate -root DIR (required; created if missing)")
	resolver := fs.String("resolver", "", "DNS server to resolve NAME with, HOST:PORT (default: the system's resolver)")
	parallel := fs.Int("parallel", mirror.DefaultParallel, fmt.Sprintf("simultaneous downloads (1 to %d)", mirror.MaxParallel))
	keep := fs.Int("keep", 3, "previous states kept besides the current one, for clients in the middle of an update")
	timeout := fs.Duration("timeout", mirror.DefaultTimeout, "time allowed for each wait on an address: connecting, a reply, a pause in a transfer (DNS queries: at most 5s)")
	every := fs.Duration("every", 0, "keep running and sync every DURATION (default: sync once and exit)")
	jitter := fs.Duration("jitter", 0, "with -every, add a random delay up to this to each interval (default: a tenth of -every)")
	asJSON := fs.Bool("json", false, "print the summary of each sync as one line of JSON on standard output (the report goes to standard error)")
	progress := fs.String("progress", "auto", "download progress: bars (a bar per download), lines (a line per file), off, or auto (bars on a terminal, lines otherwise)")
	selfUpdate := fs.Bool("self-update", false, "replace this executable with the newest Vigil release in the repository, if newer (the previous one is kept as FILE.old)")
	caFile := fs.String("ca-cert", "", "PEM file of the CA certificates that https:// upstreams are verified with (default: the system's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 1 && *upstream == "":
		*upstream = fs.Arg(0)
	case fs.NArg() > 1 || fs.NArg() == 1 && *upstream != "":
		return usageError{fmt.Errorf("unexpected arguments %q: give one upstream URL", fs.Args())}
	}
	if *upstream == "" {
		return usageError{errors.New("give the upstream URL (ftp://NAME/PATH or http(s)://NAME/PATH)")}
	}
	if *rootFile == "" {
		return usageError{errors.New("-root is required: the repository's 1.root.json, as shipped by the vendor")}
	}
	if *dir == "" {
		return usageError{errors.New("-dir is required: the local repository directory")}
	}
	if *every < 0 || *jitter < 0 {
		return usageError{errors.New("-every and -jitter must not be negative")}
	}
	if *every > 0 && *every < time.Second {
		return usageError{fmt.Errorf("-every %v: want at least 1s", *every)}
	}
	jitterSet := false
	fs.Visit(func(f *flag.Flag) { jitterSet = jitterSet || f.Name == "jitter" })
	if !jitterSet {
		*jitter = *every / 10
	}
	if *parallel < 1 || *parallel > mirror.MaxParallel {
		return usageError{fmt.Errorf("-parallel %d: want 1 to %d", *parallel, mirror.MaxParallel)}
	}
	if *keep < 0 {
		return usageError{fmt.Errorf("-keep %d: want 0 or more", *keep)}
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("-timeout %v: want a positive duration", *timeout)}
	}
	root, err := os.ReadFile(*rootFile)
	if err != nil {
		return fmt.Errorf("-root: %w", err)
	}
	cfg := mirror.Config{
		Upstream: *upstream,
		Root:     root,
		Dir:      *dir,
		Resolver: *resolver,
		Parallel: *parallel,
		Keep:     *keep,
		Timeout:  *timeout,
		Out:      env.Stdout,
	}
	if *asJSON {
		cfg.Out = env.Stderr
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca-cert: %s holds no PEM certificate", *caFile)
		}
		cfg.TLS = &tls.Config{RootCAs: pool}
	}
	switch strings.ToLower(*progress) {
	case "auto":
		if isTerminal(env.Stderr) {
			cfg.Progress = mirror.NewBarProgress(env.Stderr)
		} else {
			cfg.Progress = mirror.NewLogProgress(cfg.Out)
		}
	case "bars":
		cfg.Progress = mirror.NewBarProgress(env.Stderr)
	case "lines":
		cfg.Progress = mirror.NewLogProgress(cfg.Out)
	case "off":
	default:
		return usageError{fmt.Errorf("-progress %q: want auto, bars, lines or off", *progress)}
	}
	if *selfUpdate {
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
		if *asJSON {
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
	if *every == 0 {
		sum, err := m.Sync(ctx)
		if rerr := report(sum, err); rerr != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", rerr)
			}
			return rerr
		}
		return nil
	}
	fmt.Fprintf(cfg.Out, "Syncing %s into %s every %s; SIGINT or SIGTERM stops\n", *upstream, m.Dir(), mirror.NextDelay(*every, *jitter))
	return m.Every(ctx, *every, *jitter, func(sum *mirror.Summary, err error) {
		rerr := report(sum, err)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(cfg.Out, "Interrupted: stopping (partial downloads are kept for the next run)\n")
		case rerr != nil:
			fmt.Fprintf(env.Stderr, "vigil mirror: %v\n", rerr)
			fallthrough
		default:
			fmt.Fprintf(cfg.Out, "Next sync in %s\n", mirror.NextDelay(*every, *jitter))
		}
	})
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
