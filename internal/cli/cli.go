// Package cli implements the vigil command line: one binary whose
// subcommands are the server, the agent, the admin commands and the demo.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// subcommand is one vigil command.
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

func commands() []subcommand {
	return []subcommand{
		{"server", "run the management server", runServer},
		{"agent", "run the agent daemon", runAgent},
		{"send", "issue a command to agents and print its sequence number", runSend},
		{"agents", "list enrolled agents", runAgents},
		{"results", "show the per-agent results of a command", runResults},
		{"detections", "list infected files the agents found (scans and on-access scanning)", runDetections},
		{"users", "list, add, remove users of the admin API and console; set their passwords and roles", runUsers},
		{"tokens", "list, add, remove a user's API tokens", runTokens},
		{"audit", "show the audit log: logins, commands, restores, user and token changes (-csv)", runAudit},
		{"enroll-secret", "rotate the enrollment secret new agents enroll with", runEnrollSecret},
		{"scan", "scan files with the installed definitions, like clamscan", runScan},
		{"demo", "run a server and agents on this host and show them at work", runDemo},
		{"repo", "publish signed definitions and releases (TUF repository)", runRepo},
		{"liveupdate", "serve a definitions repository over FTP and HTTP (read-only)", runLiveUpdate},
		{"mirror", "keep a local LiveUpdate repository in step with the vendor's servers", runMirror},
		{"relay", "re-multicast the server's signed commands on a subnet its multicast does not reach", runRelay},
		{"store", "copy a SQLite store into PostgreSQL (vigil store migrate)", runStore},
		{"package", "build a .deb, .rpm or tarball of the agent, server or LiveUpdate server with its preferences baked in", runPackage},
		{"ports", "list the network flows of this machine's Vigil parts, as a table or firewall rules", runPorts},
		{"doctor", "check each network flow of this machine's Vigil parts for real", runDoctor},
		{"service", "install, uninstall a part as a systemd unit or launchd daemon, or show its status", runService},
		{"version", "print the version", runVersion},
	}
}

// Env is what a subcommand may touch besides its arguments.
type Env struct {
	Stdin          io.Reader // passwords, when not from a terminal; nil reads as empty
	Stdout, Stderr io.Writer
	Getenv         func(string) string

	proc *process // signal handling, set by Main; nil when Run is called alone
}

// errUsage marks errors that are the user's command line.
type usageError struct{ error }

// exitError ends a command with exit code code, printing err like other
// errors unless it is nil (vigil scan exits 1 when it found something).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// Main runs vigil with args (without the program name) and returns the exit
// code.
func Main(args []string) int {
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	ctx, proc := watchSignals(context.Background(), cmd, env.Stderr, os.Exit)
	defer proc.stop()
	env.proc = proc
	return Run(ctx, env, args)
}

// Run is Main with its environment given.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			if ee.err != nil {
				fmt.Fprintf(env.Stderr, "vigil %s: %s\n", c.name, safeLines(ee.err.Error()))
			}
			return ee.code
		case errors.As(err, new(usageError)):
			fmt.Fprintf(env.Stderr, "vigil %s: %s\n", c.name, safeLines(err.Error()))
			return 2
		default:
			fmt.Fprintf(env.Stderr, "vigil %s: %s\n", c.name, safeLines(err.Error()))
			return 1
		}
	}
	fmt.Fprintf(env.Stderr, "vigil: unknown command %q\n\n", args[0])
	usage(env.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "vigil %s: signed multicast commands and definition updates for a fleet\n\nUsage: vigil COMMAND [flags]\n\nCommands:\n", buildinfo.String())
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'vigil COMMAND -h' for a command's flags.\n")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(env *Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("vigil "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: vigil %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning errors into usage errors. The flag package
// prints an error and the usage itself; parse silences it so that Run
// prints the error once, and prints the usage only for -h.
func parse(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		usage()
		return err
	}
	return usageError{fmt.Errorf("%w (see '%s -h')", err, fs.Name())}
}

// applyPartFile applies a part's preference file to fs, already parsed:
// path, which must exist when it is not the default, or the default file
// when it exists. The -config flag itself cannot be set by the file.
func applyPartFile(fs *flag.FlagSet, path, def string) error {
	err := prefs.ApplyFile(fs, path, "config")
	if errors.Is(err, iofs.ErrNotExist) && path == def && !flagSet(fs, "config") {
		return nil
	}
	return err
}

// partOptions are the settings of a part that has a preference file
// (server, LiveUpdate server, mirror): its flags, and finish, which
// applies the file to the parsed flags and checks what the flag package
// does not.
type partOptions interface {
	finish(fs *flag.FlagSet) error
}

// parsePart parses a part's command line, then its preference file, and
// makes SIGHUP re-read the file the same way (reload.go).
func parsePart[O partOptions](env *Env, flags func(*Env) (*flag.FlagSet, O), args []string) (O, error) {
	fs, o := flags(env)
	if err := parse(fs, args); err != nil {
		return o, err
	}
	if err := o.finish(fs); err != nil {
		return o, err
	}
	env.proc.setReloader(partReloader(fs, func() (*flag.FlagSet, O, error) {
		fs, o := flags(quietEnv())
		if err := fs.Parse(args); err != nil {
			return nil, o, err
		}
		return fs, o, o.finish(fs)
	}))
	return o, nil
}

// loadPart reads a part's preference file as its command would with no
// flags, for vigil ports and vigil doctor.
func loadPart[O partOptions](flags func(*Env) (*flag.FlagSet, O), path string) (O, error) {
	fs, o := flags(quietEnv())
	if err := fs.Parse([]string{"-config", path}); err != nil {
		return o, err
	}
	return o, o.finish(fs)
}

// quietEnv is an environment whose output is discarded, for flag sets
// used only to read preference files.
func quietEnv() *Env {
	return &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
}

type logFlags struct {
	level  levelFlag
	format string
}

// levelFlag is -log-level: its text, and the level of the loggers made
// with logFlags.logger, which a reload on SIGHUP changes live.
type levelFlag struct {
	text string
	lv   slog.LevelVar
}

func (l *levelFlag) String() string {
	if l == nil {
		return ""
	}
	return l.text
}

func (l *levelFlag) Set(s string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("want debug, info, warn or error, got %q", s)
	}
	l.text = s
	l.lv.Set(lv)
	return nil
}

// Get makes -log-level a flag.Getter of a string, as the preference files
// and the published settings see it.
func (l *levelFlag) Get() any { return l.text }

func (l *levelFlag) live() {}

func (l *logFlags) register(fs *flag.FlagSet) {
	l.level.text = "info"
	fs.Var(&l.level, "log-level", "log level: debug, info, warn, error (a SIGHUP applies a new value from the preference file)")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: &l.level.lv}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("-log-format: want text or json, got %q", l.format)}
}

func runVersion(_ context.Context, env *Env, args []string) error {
	fs := newFlags(env, "version", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "vigil", buildinfo.String())
	return nil
}
