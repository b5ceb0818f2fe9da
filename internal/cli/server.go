package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

func openSQLite(path string) (store.Store, error) { return sqlite.Open(path) }

// storeOpener returns how the server opens its store: the SQLite store
// at the data directory's path when dsn is "", else the PostgreSQL
// database dsn names (the path is then unused).
func storeOpener(ctx context.Context, dsn config.StoreDSN) func(path string) (store.Store, error) {
	if !dsn.IsPostgres() {
		return openSQLite
	}
	return func(string) (store.Store, error) {
		st, err := postgres.Open(ctx, string(dsn))
		if err != nil {
			// pgx redacts a URL's password in its errors, not a
			// password parameter's: scrub both.
			return nil, fmt.Errorf("store %s: %s", dsn.Where(), dsn.Scrub(err.Error()))
		}
		return st, nil
	}
}

// serverOptions are vigil server's settings: its configuration (whose
// flags its preference file may also set), and the command's own flags.
type serverOptions struct {
	cfg    server.Config
	lf     logFlags
	config string
}

func serverFlags(env *Env) (*flag.FlagSet, *serverOptions) {
	fs := newFlags(env, "server", "[-config FILE] [flags]")
	o := &serverOptions{cfg: server.DefaultConfig()}
	o.lf.register(fs)
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartServer), "preference file whose keys set these flags (read if it exists; flags given here win)")
	o.cfg.Server.RegisterFlags(fs)
	return fs, o
}

// finish applies the preference file to the parsed flags.
func (o *serverOptions) finish(fs *flag.FlagSet) error {
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := applyPartFile(fs, o.config, prefs.DefaultPartPath(config.PartServer)); err != nil {
		return err
	}
	if err := o.cfg.Store.Check(); err != nil {
		return fmt.Errorf("-store (preference key Store): %w", err)
	}
	switch {
	case o.cfg.SeenFlush < 0:
		return fmt.Errorf("-seen-flush (preference key SeenFlush) %v: negative (0 writes every check-in before answering it)", o.cfg.SeenFlush)
	case o.cfg.SeenFlush == 0:
		o.cfg.SeenFlush = -1 // the server's "never defer"
	}
	return nil
}

func runServer(ctx context.Context, env *Env, args []string) error {
	o, err := parsePart(env, serverFlags, args)
	if err != nil {
		return err
	}
	cfg := o.cfg
	log, err := o.lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	s, err := server.New(cfg, storeOpener(ctx, cfg.Store))
	if err != nil {
		return err
	}
	defer s.Close()
	defer publishPart(env, log, config.PartServer, serverFlags, args)() // for vigil ports and doctor
	env.running(log, defaultGrace)
	log.Info("server ready", "data_dir", cfg.DataDir, "store", cfg.Store.Where(),
		"public_key_file", filepath.Join(cfg.DataDir, server.FilePublicKey),
		"admin_token_file", filepath.Join(cfg.DataDir, server.FileAdminToken),
		"enroll_secret_file", filepath.Join(cfg.DataDir, server.FileEnrollSecret))
	return s.ListenAndServe(ctx)
}

func runAgent(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "agent", "[-config FILE]")
	var lf logFlags
	lf.register(fs)
	config := fs.String("config", prefs.DefaultPath(), "preference file (XML or binary plist)")
	keys := fs.Bool("keys", false, "list the preference keys and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *keys {
		for _, k := range prefs.Keys() {
			req := ""
			if k.Required {
				req = " (required)"
			}
			fmt.Fprintf(env.Stdout, "%s (%s, default %q)%s\n    %s\n", k.Name, k.Type, k.Default, req, k.Doc)
		}
		return nil
	}
	p, err := prefs.Load(*config)
	if err != nil {
		return err
	}
	levelFromFlag := flagSet(fs, "log-level")
	if p.LogLevel != "" && !levelFromFlag {
		if err := lf.level.Set(p.LogLevel); err != nil {
			return fmt.Errorf("%s: key LogLevel: %v", *config, err)
		}
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	env.proc.setReloader(agentReloader(*config, p, prefs.Load, &lf.level, levelFromFlag))
	for {
		a, err := agent.New(agent.Config{Prefs: p, Logger: log})
		if err != nil {
			return err
		}
		env.running(log, defaultGrace)
		err = a.Run(ctx)
		var up *agent.UpgradeReady
		if !errors.As(err, &up) {
			return err
		}
		// The executable was replaced: try it; on success Trial execs it
		// in this process's place, else it went back to this version,
		// which runs again and reports why (docs/selfupdate.md).
		if err := up.Trial(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// flagSet reports whether a flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}
