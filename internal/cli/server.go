package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

func openSQLite(path string) (store.Store, error) { return sqlite.Open(path) }

// serverOptions are vigil server's settings: its flags, which its
// preference file may also set.
type serverOptions struct {
	cfg    server.Config
	group  string
	lf     logFlags
	config string
}

func serverFlags(env *Env) (*flag.FlagSet, *serverOptions) {
	d := server.DefaultConfig()
	fs := newFlags(env, "server", "[-config FILE] [flags]")
	o := &serverOptions{cfg: d}
	o.lf.register(fs)
	cfg := &o.cfg
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartServer), "preference file whose keys set these flags (read if it exists; flags given here win)")
	fs.StringVar(&o.group, "group", d.Group.String(), "multicast group commands are sent to (IPv4 or IPv6)")
	fs.StringVar(&cfg.DataDir, "data-dir", d.DataDir, "directory for keys, secrets and the SQLite store")
	fs.StringVar(&cfg.Listen, "listen", d.Listen, "agent API address (agents' NodeCommURL points here)")
	fs.StringVar(&cfg.BasePath, "base-path", d.BasePath, "path of the agent API: the path part of NodeCommURL")
	fs.StringVar(&cfg.AdminListen, "admin-listen", d.AdminListen, "admin API and /metrics address")
	fs.IntVar(&cfg.Port, "port", d.Port, "multicast UDP port")
	fs.StringVar(&cfg.Interface, "interface", "", "interface to send multicast on (default: the system's choice)")
	fs.IntVar(&cfg.TTL, "ttl", d.TTL, "multicast TTL / hop limit (0: this host only)")
	fs.IntVar(&cfg.Repeat, "repeat", d.Repeat, "times each command datagram is sent")
	fs.DurationVar(&cfg.RepeatGap, "repeat-gap", d.RepeatGap, "pause between repeats")
	fs.DurationVar(&cfg.BeaconInterval, "beacon-interval", d.BeaconInterval, "period of the signed beacon")
	fs.DurationVar(&cfg.CheckInInterval, "checkin-interval", d.CheckInInterval, "agents' check-in interval")
	fs.DurationVar(&cfg.Spread, "spread", d.Spread, "window over which agents spread check-ins and replies")
	fs.DurationVar(&cfg.CommandTTL, "command-ttl", d.CommandTTL, "default validity of a command")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve the agent API over HTTPS with this certificate (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "private key for -tls-cert (PEM)")
	return fs, o
}

// finish applies the preference file to the parsed flags and checks what
// the flag package does not.
func (o *serverOptions) finish(fs *flag.FlagSet) error {
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := applyPartFile(fs, o.config, prefs.DefaultPartPath(config.PartServer)); err != nil {
		return err
	}
	g, err := netip.ParseAddr(o.group)
	if err != nil {
		return usageError{fmt.Errorf("-group: %v", err)}
	}
	o.cfg.Group = g
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
	s, err := server.New(cfg, openSQLite)
	if err != nil {
		return err
	}
	defer s.Close()
	defer publishPart(env, log, config.PartServer, serverFlags, args)() // for vigil ports and doctor
	env.running(log, defaultGrace)
	log.Info("server ready", "data_dir", cfg.DataDir,
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
	a, err := agent.New(agent.Config{Prefs: p, Logger: log})
	if err != nil {
		return err
	}
	env.running(log, defaultGrace)
	return a.Run(ctx)
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
