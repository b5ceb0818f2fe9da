package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// liveUpdateOptions are vigil liveupdate's settings: its configuration
// (whose flags its preference file may also set), and the command's own
// flags.
type liveUpdateOptions struct {
	cfg    liveupdate.Config
	lf     logFlags
	config string
}

func liveUpdateFlags(env *Env) (*flag.FlagSet, *liveUpdateOptions) {
	fs := newFlags(env, "liveupdate", "-root DIR [flags]")
	o := &liveUpdateOptions{}
	o.lf.register(fs)
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartLiveUpdate), "preference file whose keys set these flags (read if it exists; flags given here win)")
	o.cfg.LiveUpdate.RegisterFlags(fs)
	return fs, o
}

// finish applies the preference file to the parsed flags and checks what
// the flag package does not.
func (o *liveUpdateOptions) finish(fs *flag.FlagSet) error {
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := applyPartFile(fs, o.config, prefs.DefaultPartPath(config.PartLiveUpdate)); err != nil {
		return err
	}
	if err := o.cfg.LiveUpdate.Check(); err != nil {
		return usageError{err}
	}
	return nil
}

func runLiveUpdate(ctx context.Context, env *Env, args []string) error {
	o, err := parsePart(env, liveUpdateFlags, args)
	if err != nil {
		return err
	}
	cfg := o.cfg
	log, err := o.lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	switch cfg.AccessLogFile {
	case "":
	case "-":
		cfg.AccessLog = env.Stdout
	default:
		f, err := os.OpenFile(cfg.AccessLogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("-access-log: %w", err)
		}
		defer f.Close()
		cfg.AccessLog = f
	}
	s, err := liveupdate.New(cfg)
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		s.Close()
		return err
	}
	defer publishPart(env, log, config.PartLiveUpdate, liveUpdateFlags, args)() // for vigil ports and doctor
	env.running(log, cfg.ShutdownTimeout+graceMargin)
	return s.Serve(ctx)
}
