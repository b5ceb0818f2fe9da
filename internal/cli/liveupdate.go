package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// liveUpdateOptions are vigil liveupdate's settings: its flags, which its
// preference file may also set.
type liveUpdateOptions struct {
	cfg                liveupdate.Config
	httpAddr, ftpAddr  string
	passive, accessLog string
	lf                 logFlags
	config             string
}

func liveUpdateFlags(env *Env) (*flag.FlagSet, *liveUpdateOptions) {
	fs := newFlags(env, "liveupdate", "-root DIR [flags]")
	o := &liveUpdateOptions{}
	o.lf.register(fs)
	cfg := &o.cfg
	fs.StringVar(&o.config, "config", prefs.DefaultPartPath(config.PartLiveUpdate), "preference file whose keys set these flags (read if it exists; flags given here win)")
	fs.StringVar(&cfg.Root, "root", "", "folder to serve (required): a repository's public/ folder (DIR/public of vigil repo -dir DIR) or a mirror's -dir, never a tree holding private keys")
	fs.StringVar(&o.httpAddr, "http", ":80", `HTTP address ("off" or "" disables HTTP)`)
	fs.StringVar(&o.ftpAddr, "ftp", ":21", `FTP control address ("off" or "" disables FTP)`)
	fs.StringVar(&o.passive, "passive-ports", "", "FTP passive data port range LOW-HIGH, e.g. 30000-30100 (default: any free port)")
	fs.StringVar(&cfg.PublicHost, "public-host", "", "IPv4 address (or host name) announced in PASV replies (default: the address the client connected to)")
	fs.IntVar(&cfg.MaxConns, "max-conns", liveupdate.DefaultMaxConns, "most connections per protocol (-1: no limit)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", liveupdate.DefaultMaxConnsPerIP, "most connections per protocol from one address (-1: no limit)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", liveupdate.DefaultIdleTimeout, "close HTTP keep-alive and FTP control connections idle this long")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", liveupdate.DefaultReadTimeout, "time allowed to send a request header or FTP command, or to open a passive data connection")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", liveupdate.DefaultWriteTimeout, "time allowed for a client to accept each write and each 256 KiB of a file")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", liveupdate.DefaultShutdownTimeout, "on SIGINT/SIGTERM, time given to transfers in progress")
	fs.StringVar(&o.accessLog, "access-log", "", `access log file, "-" for standard output (default: none)`)
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
	cfg := &o.cfg
	if cfg.Root == "" {
		return usageError{fmt.Errorf("-root is required")}
	}
	cfg.HTTPAddr = offOr(o.httpAddr)
	cfg.FTPAddr = offOr(o.ftpAddr)
	if cfg.HTTPAddr == "" && cfg.FTPAddr == "" {
		return usageError{fmt.Errorf("-http and -ftp are both off: nothing to serve")}
	}
	if o.passive != "" {
		r, err := config.ParsePortRange(o.passive)
		if err != nil {
			return usageError{fmt.Errorf("-passive-ports: %v", err)}
		}
		cfg.PassivePorts = r
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"idle-timeout", cfg.IdleTimeout}, {"read-timeout", cfg.ReadTimeout}, {"write-timeout", cfg.WriteTimeout}, {"shutdown-timeout", cfg.ShutdownTimeout}} {
		if d.v <= 0 {
			return usageError{fmt.Errorf("-%s must be positive, got %v", d.name, d.v)}
		}
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"max-conns", cfg.MaxConns}, {"max-conns-per-ip", cfg.MaxConnsPerIP}} {
		if l.v == 0 || l.v < -1 {
			return usageError{fmt.Errorf("-%s must be positive or -1 (no limit), got %d", l.name, l.v)}
		}
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
	switch o.accessLog {
	case "":
	case "-":
		cfg.AccessLog = env.Stdout
	default:
		f, err := os.OpenFile(o.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
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

// offOr maps "off" (any case) to "", which disables a protocol.
func offOr(addr string) string {
	if strings.EqualFold(strings.TrimSpace(addr), "off") {
		return ""
	}
	return strings.TrimSpace(addr)
}
