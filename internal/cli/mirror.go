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

	"golang.org/x/term"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// mirrorOptions are vigil mirror's settings: its configuration (whose
// flags its preference file may also set), and the command's own flags.
type mirrorOptions struct {
	config.Mirror
	config string
}

func mirrorFlags(env *Env) (*flag.FlagSet, *mirrorOptions) {
	fs := newFlags(env, "mirror", "-root FILE -dir DIR [flags] URL")
	o := &mirrorOptions{}
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartMirror), "preference file whose keys set these flags (read if it exists; flags given here win)")
	o.Mirror.RegisterFlags(fs)
	return fs, o
}

// finish applies the preference file to the parsed flags and checks what
// the flag package does not.
func (o *mirrorOptions) finish(fs *flag.FlagSet) error {
	if err := applyPartFile(fs, o.config, prefs.DefaultPartPath(config.PartMirror)); err != nil {
		return err
	}
	if err := o.Mirror.Finish(fs); err != nil {
		return usageError{err}
	}
	return nil
}

func runMirror(ctx context.Context, env *Env, args []string) error {
	o, err := parsePart(env, mirrorFlags, args)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(o.RootFile)
	if err != nil {
		return fmt.Errorf("-root: %w", err)
	}
	cfg := mirror.Config{
		Upstream: o.Upstream,
		Root:     root,
		Dir:      o.Dir,
		Resolver: o.Resolver,
		Parallel: o.Parallel,
		Keep:     o.Keep,
		Timeout:  o.Timeout,
		Out:      env.Stdout,

		MinRate:          o.MinRate,
		RateWindow:       o.RateWindow,
		RateGrace:        o.RateGrace,
		SessionAllowance: o.SessionAllowance,
	}
	switch {
	case o.MinRate == 0:
		cfg.MinRate = -1 // off
	case o.RateGrace == 0:
		cfg.RateGrace = -1 // judged from the start
	}
	if o.JSON {
		cfg.Out = env.Stderr
	}
	if cfg.TLS, err = caConfig(o.CAFile); err != nil {
		return err
	}
	switch strings.ToLower(o.Progress) {
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
	}
	if o.SelfUpdate {
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
		if o.JSON {
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
	if o.Every == 0 {
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
	fmt.Fprintf(cfg.Out, "Syncing %s into %s every %s; SIGINT or SIGTERM stops\n", o.Upstream, m.Dir(), mirror.NextDelay(o.Every, o.Jitter))
	return m.Every(ctx, o.Every, o.Jitter, func(sum *mirror.Summary, err error) {
		rerr := report(sum, err)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(cfg.Out, "Interrupted: stopping (partial downloads are kept for the next run)\n")
		case rerr != nil:
			fmt.Fprintf(env.Stderr, "vigil mirror: %v\n", rerr)
			fallthrough
		default:
			fmt.Fprintf(cfg.Out, "Next sync in %s\n", mirror.NextDelay(o.Every, o.Jitter))
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

// caConfig returns the TLS configuration that verifies https:// upstreams
// with the CA certificates of file (-ca-cert), or nil for the system's.
func caConfig(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-ca-cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-ca-cert: %s holds no PEM certificate", file)
	}
	return &tls.Config{RootCAs: pool}, nil
}
