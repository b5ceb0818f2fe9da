package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/service"
)

// vigil service install|uninstall|status PART: a part as a systemd unit
// (Linux) or a launchd daemon (macOS). docs/service.md.

var serviceSynopsis = "install|uninstall|status PART [flags]   (PART: " + strings.Join(service.Parts, ", ") + ")"

// systemdRunning is the directory whose presence says systemd is the
// running init system (sd_booted(3)).
const systemdRunning = "/run/systemd/system"

// serviceManager does the work of vigil service for one system.
type serviceManager struct {
	goos string // "linux" or "darwin": which service manager
	root string // "/" or the -root directory everything is written under
	// live: root is the running system's, whose service manager is asked.
	live bool
	// booted is the path whose presence says systemd runs (systemdRunning).
	booted string
	out    io.Writer
	// run runs a program of the service manager (systemctl, launchctl,
	// systemd-sysusers) and returns its combined output.
	run func(ctx context.Context, name string, args ...string) (string, error)
}

func runProgram(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// path is p (absolute on the target system) under the root.
func (m *serviceManager) path(p string) string { return filepath.Join(m.root, p) }

// definition is where part's unit or plist lives on the target system.
func (m *serviceManager) definition(part string) string {
	if m.goos == "darwin" {
		return "/Library/LaunchDaemons/" + service.Label(part) + ".plist"
	}
	return "/etc/systemd/system/" + service.UnitName(part)
}

func sysusersPath(part string) string { return "/etc/sysusers.d/vigil-" + part + ".conf" }

// checkSystemd returns an error saying systemd does not run here.
func (m *serviceManager) checkSystemd() error {
	if _, err := os.Stat(m.booted); err != nil {
		return fmt.Errorf("systemd is not running on this machine (no %s): cannot ask it about units, enable or start them", m.booted)
	}
	return nil
}

func runService(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "service", serviceSynopsis)
	exe := fs.String("exe", "", "install: the vigil executable the service runs, an absolute path on the target system (default: this executable; required with -root)")
	cfg := fs.String("config", "", "install: the part's preference file (default: its documented place, /etc/vigil/PART.plist; macOS /Library/Preferences/com.vigil.PART.plist)")
	root := fs.String("root", "/", "write under this directory instead of / and do not ask the service manager (packaging, tests)")
	goos := fs.String("os", runtime.GOOS, "with -root: the target system, linux (systemd) or darwin (launchd), e.g. to lay out a macOS installer's payload on Linux")
	noStart := fs.Bool("no-start", false, "install: write and do not enable or start; uninstall: do not stop or disable")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usageError{fmt.Errorf("want %s", serviceSynopsis)}
	}
	verb, part := fs.Arg(0), fs.Arg(1)
	// Flags may follow the part.
	if err := parse(fs, fs.Args()[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if err := service.CheckPart(part); err != nil {
		return usageError{err}
	}
	if !filepath.IsAbs(*root) {
		return usageError{fmt.Errorf("-root %q is not an absolute path", *root)}
	}
	switch {
	case *goos != "linux" && *goos != "darwin":
		return usageError{fmt.Errorf("-os %q: want linux or darwin", *goos)}
	case *goos != runtime.GOOS && filepath.Clean(*root) == "/":
		return usageError{fmt.Errorf("-os %s on %s needs -root: this system's service manager is %s's", *goos, runtime.GOOS, runtime.GOOS)}
	}
	m := &serviceManager{goos: *goos, root: filepath.Clean(*root), live: filepath.Clean(*root) == "/", booted: systemdRunning, out: env.Stdout, run: runProgram}
	switch verb {
	case "install":
		if *exe == "" {
			if !m.live {
				return usageError{errors.New("-exe is required with -root: the executable's path on the target system")}
			}
			p, err := os.Executable()
			if err == nil {
				p, err = filepath.EvalSymlinks(p)
			}
			if err != nil {
				return fmt.Errorf("cannot tell this executable's path (give -exe): %w", err)
			}
			*exe = p
		}
		if *cfg == "" {
			*cfg = m.prefPath(part)
		}
		return m.install(ctx, part, *exe, *cfg, !*noStart)
	case "uninstall":
		if flagSet(fs, "exe") || flagSet(fs, "config") {
			return usageError{errors.New("uninstall takes no -exe or -config")}
		}
		return m.uninstall(ctx, part, !*noStart)
	case "status":
		if flagSet(fs, "exe") || flagSet(fs, "config") || flagSet(fs, "no-start") {
			return usageError{errors.New("status takes only -root and -os")}
		}
		return m.status(ctx, part)
	}
	return usageError{fmt.Errorf("unknown action %q: want install, uninstall or status", verb)}
}

// prefPath is part's documented preference file on m's system.
func (m *serviceManager) prefPath(part string) string {
	if m.goos == "darwin" {
		return "/Library/Preferences/com.vigil." + part + ".plist"
	}
	return "/etc/vigil/" + part + ".plist"
}

// install writes part's service definition (replacing one vigil wrote
// before), its system user's sysusers.d file and, when none exists, a
// preference file skeleton; then, on a live system and when start, has
// the service manager enable and start it. A part whose preference file
// was only just created as a skeleton is enabled but not started: it
// cannot run before its required keys are set.
func (m *serviceManager) install(ctx context.Context, part, exe, cfg string, start bool) error {
	var def []byte
	var err error
	if m.goos == "darwin" {
		def, err = service.LaunchdPlist(part, exe, cfg)
	} else {
		def, err = service.Unit(part, exe, cfg)
	}
	if err != nil {
		return usageError{err}
	}
	if m.live {
		// The service manager would only find out at start.
		fi, err := os.Stat(m.path(exe))
		if err != nil {
			return fmt.Errorf("executable: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("executable %s is not an executable file (mode %v)", exe, fi.Mode())
		}
	}
	defPath := m.definition(part)
	if err := writeFileMode(m.path(defPath), def, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(m.out, "wrote %s\n", m.path(defPath))
	if m.goos != "darwin" && part != config.PartAgent {
		su, err := service.Sysusers(part)
		if err != nil {
			return err
		}
		if err := writeFileMode(m.path(sysusersPath(part)), su, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(m.out, "wrote %s (system user %s)\n", m.path(sysusersPath(part)), mustUser(part))
	}
	created, err := writeSkeleton(m.path(cfg), part)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(m.out, "wrote %s, a preference file skeleton: set the keys it names\n", m.path(cfg))
	} else {
		fmt.Fprintf(m.out, "kept %s, the preference file that exists\n", m.path(cfg))
	}
	runnable := !created || part == config.PartServer
	if !m.live || !start {
		fmt.Fprintf(m.out, "not enabled nor started (%s)\n", map[bool]string{true: "-no-start", false: "-root"}[m.live])
		return nil
	}
	if m.goos == "darwin" {
		if !runnable {
			fmt.Fprintf(m.out, "not loaded: set the required keys in %s, then run: launchctl bootstrap system %s\n", cfg, defPath)
			return nil
		}
		// A plist loaded before must be unloaded for the new one to count.
		m.run(ctx, "launchctl", "bootout", "system/"+service.Label(part))
		if _, err := m.run(ctx, "launchctl", "bootstrap", "system", defPath); err != nil {
			return err
		}
		fmt.Fprintf(m.out, "loaded and started %s\n", service.Label(part))
		return nil
	}
	if err := m.checkSystemd(); err != nil {
		return fmt.Errorf("%w; the files are written: start vigil %s -config %s some other way, or install with -no-start", err, part, cfg)
	}
	if part != config.PartAgent {
		if _, err := m.run(ctx, "systemd-sysusers", sysusersPath(part)); err != nil {
			return err
		}
	}
	if _, err := m.run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	unit := service.UnitName(part)
	if !runnable {
		if _, err := m.run(ctx, "systemctl", "enable", unit); err != nil {
			return err
		}
		fmt.Fprintf(m.out, "enabled %s, not started: set the required keys in %s, then run: systemctl start %s\n", unit, cfg, unit)
		return nil
	}
	if _, err := m.run(ctx, "systemctl", "enable", "--now", unit); err != nil {
		return err
	}
	fmt.Fprintf(m.out, "enabled and started %s (logs: journalctl -u %s)\n", unit, unit)
	return nil
}

func mustUser(part string) string {
	u, _ := service.User(part)
	return u
}

// uninstall stops and disables part's service (on a live system, when
// stop) and removes its definition; the preference file, the state and
// the system user stay.
func (m *serviceManager) uninstall(ctx context.Context, part string, stop bool) error {
	defPath := m.definition(part)
	if _, err := os.Lstat(m.path(defPath)); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("vigil %s is not installed as a service: no %s", part, m.path(defPath))
		}
		return err
	}
	if m.live && stop {
		if m.goos == "darwin" {
			if _, err := m.run(ctx, "launchctl", "bootout", "system/"+service.Label(part)); err != nil {
				fmt.Fprintf(m.out, "note: %v\n", err)
			}
		} else {
			if err := m.checkSystemd(); err != nil {
				return fmt.Errorf("%w; give -no-start to remove the unit all the same", err)
			}
			if _, err := m.run(ctx, "systemctl", "disable", "--now", service.UnitName(part)); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(m.path(defPath)); err != nil {
		return err
	}
	fmt.Fprintf(m.out, "removed %s; kept the preference file and the state\n", m.path(defPath))
	if m.live && stop && m.goos != "darwin" {
		if _, err := m.run(ctx, "systemctl", "daemon-reload"); err != nil {
			return err
		}
	}
	return nil
}

// status says whether part's service is installed, enabled and active.
// Its exit status is 0 when the service is active, 3 when it is not
// (as systemctl is-active), 1 when the service manager cannot be asked.
func (m *serviceManager) status(ctx context.Context, part string) error {
	defPath := m.path(m.definition(part))
	_, err := os.Stat(defPath)
	installed := err == nil
	fmt.Fprintf(m.out, "%s: %s\n", defPath, map[bool]string{true: "installed", false: "not installed"}[installed])
	if !m.live {
		fmt.Fprintln(m.out, "-root given: the service manager was not asked")
		return exitError{code: 3}
	}
	if m.goos == "darwin" {
		_, err := m.run(ctx, "launchctl", "print", "system/"+service.Label(part))
		fmt.Fprintf(m.out, "loaded: %v\n", err == nil)
		if err != nil {
			return exitError{code: 3}
		}
		return nil
	}
	if err := m.checkSystemd(); err != nil {
		return err
	}
	unit := service.UnitName(part)
	// is-enabled and is-active print their answer and exit non-zero for
	// "disabled", "inactive" and the like: the answer is the output.
	enabled, _ := m.run(ctx, "systemctl", "is-enabled", unit)
	active, _ := m.run(ctx, "systemctl", "is-active", unit)
	enabled, active = firstLine(enabled), firstLine(active)
	fmt.Fprintf(m.out, "enabled: %s\nactive: %s\n", enabled, active)
	if active != "active" {
		return exitError{code: 3}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if s == "" {
		return "unknown"
	}
	return s
}

// writeFileMode writes data to path atomically with mode perm (umask
// aside), creating
// its directory (mode 0755) when missing.
func writeFileMode(path string, data []byte, perm os.FileMode) error {
	err := os.MkdirAll(filepath.Dir(path), 0o755)
	if err == nil {
		err = atomicfile.WriteFile(path, data, perm)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeSkeleton writes part's preference file skeleton at path unless a
// file is there already (it is never replaced), and reports whether it
// wrote one. The agent's (which holds the enrollment secret) is mode
// 0600; the others' hold no secret and are 0644, readable by the part's
// system user.
func writeSkeleton(path, part string) (bool, error) {
	perm := os.FileMode(0o644)
	if part == config.PartAgent {
		perm = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, iofs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = f.Write(skeleton(part))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, perm)
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("writing the preference file skeleton %s: %w", path, err)
	}
	return true, nil
}

// skeleton is part's preference file skeleton: a plist whose comments
// name the keys to set; its keys are those with a service-specific value.
func skeleton(part string) []byte {
	var keys []string // key, type, value triples
	var notes string
	switch part {
	case config.PartServer:
		notes = "Every key is optional: the server runs with the defaults (DataDir /var/lib/vigil-server,\n" +
			"     Listen :8080, AdminListen 127.0.0.1:8081). Keys are the flags of vigil server -h."
	case config.PartAgent:
		var req []string
		for _, k := range prefs.Keys() {
			if k.Required {
				req = append(req, k.Name)
			}
		}
		notes = "Required: " + strings.Join(req, ", ") + ", and EnrollmentSecret until the agent\n" +
			"     has enrolled. vigil agent -keys lists every key; docs/agent-preferences.md explains them."
	case config.PartLiveUpdate:
		notes = "Required: Root, the folder to serve (a mirror's Dir, /var/lib/vigil-mirror, or a\n" +
			"     repository's public/). Keys are the flags of vigil liveupdate -h."
	case config.PartMirror:
		notes = "Required: Upstream and Root (the repository's 1.root.json). Every keeps the mirror\n" +
			"     running as a service; Dir is its state directory. Keys are the flags of vigil mirror -h."
		keys = []string{"Dir", "string", service.StateDir(config.PartMirror), "Every", "string", "1h"}
	case config.PartRelay:
		notes = "Required: Server and ServerKey, and EnrollSecretFile until the relay has enrolled.\n" +
			"     Keys are the flags of vigil relay -h."
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<!-- Preference file of vigil ` + part + `, written by vigil service install.
     ` + notes + `
     After a change, send the part SIGHUP (systemctl reload vigil-` + part + `; macOS:
     launchctl kill HUP system/com.vigil.` + part + `): docs/service.md says which keys apply at
     once and which need a restart. -->
<dict>
`)
	for i := 0; i+2 < len(keys); i += 3 {
		fmt.Fprintf(&b, "\t<key>%s</key>\n\t<%s>%s</%s>\n", keys[i], keys[i+1], keys[i+2], keys[i+1])
	}
	b.WriteString("</dict>\n</plist>\n")
	return []byte(b.String())
}
