package cli

import (
	"context"
	"flag"

	"github.com/vigil-fleet/vigil/internal/config"
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
	if o.cfg.Caches() {
		log.Warn("this vigil relay does not serve definitions yet: -upstream and the cache's settings are ignored", "upstream", o.cfg.Upstream)
	}
	r, err := relay.New(relay.Config{Relay: o.cfg, Logger: log})
	if err != nil {
		return err
	}
	defer r.Close()
	defer publishPart(env, log, config.PartRelay, relayFlags, args)() // for vigil ports and doctor
	env.running(log, defaultGrace)
	return r.Run(ctx)
}
