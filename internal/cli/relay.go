package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/lucache"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/relay"
)

// relayOptions are vigil relay's settings: its configuration (whose flags
// its preference file may also set), and the command's own flags.
type relayOptions struct {
	cfg    config.Relay
	lf     logFlags
	config string
}

func relayFlags(env *Env) (*flag.FlagSet, *relayOptions) {
	fs := newFlags(env, "relay", "-server URL -server-key KEY [-enroll-secret-file FILE] [flags]")
	o := &relayOptions{}
	o.lf.register(fs)
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartRelay), "preference file whose keys set these flags (read if it exists; flags given here win)")
	o.cfg.RegisterFlags(fs)
	return fs, o
}

// finish applies the preference file to the parsed flags and checks what
// the flag package does not.
func (o *relayOptions) finish(fs *flag.FlagSet) error {
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := applyPartFile(fs, o.config, prefs.DefaultPartPath(config.PartRelay)); err != nil {
		return err
	}
	if err := o.cfg.Check(); err != nil {
		return usageError{err}
	}
	return nil
}

func runRelay(ctx context.Context, env *Env, args []string) error {
	o, err := parsePart(env, relayFlags, args)
	if err != nil {
		return err
	}
	log, err := o.lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{Relay: o.cfg, Logger: log})
	if err != nil {
		return err
	}
	defer r.Close()
	var cache *lucache.Cache
	if o.cfg.Caches() {
		if cache, err = newRelayCache(o.cfg, log, r.Registry()); err != nil {
			return err
		}
		defer cache.Close()
		if err := cache.Listen(); err != nil {
			return err
		}
		log.Info("definitions cache listening", "http", addrString(cache.HTTPAddr()), "ftp", addrString(cache.FTPAddr()),
			"upstream", o.cfg.Upstream, "dir", cache.Dir())
	}
	defer publishPart(env, log, config.PartRelay, relayFlags, args)() // for vigil ports and doctor
	env.running(log, defaultGrace)
	if cache == nil {
		return r.Run(ctx)
	}
	// The relay and its cache run side by side; either one's failure
	// stops both.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- r.Run(ctx); cancel() }()
	go func() { errs <- cache.Serve(ctx); cancel() }()
	return errors.Join(<-errs, <-errs)
}

// newRelayCache is the relay's definitions cache: a caching LiveUpdate
// server in StateDir/cache, filled from Upstream and verified from the
// pinned root in RootFile.
func newRelayCache(c config.Relay, log *slog.Logger, reg prometheus.Registerer) (*lucache.Cache, error) {
	root, err := os.ReadFile(c.RootFile)
	if err != nil {
		return nil, fmt.Errorf("-root: %w", err)
	}
	return lucache.New(lucache.Config{
		LiveUpdate: config.LiveUpdate{
			HTTPAddr: c.HTTPAddr, FTPAddr: c.FTPAddr, PassivePorts: c.PassivePorts, PublicHost: c.PublicHost,
		},
		Dir:            filepath.Join(c.StateDir, "cache"),
		Upstream:       c.Upstream,
		Root:           root,
		MetadataMaxAge: c.MetadataMaxAge,
		CAFile:         c.UpstreamCA,
		Logger:         log.With("part", "cache"),
		Registerer:     reg,
	})
}

// addrString is a listener's address, or "off".
func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}
