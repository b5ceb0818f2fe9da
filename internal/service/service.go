// Package service makes the service-manager definitions of Vigil's
// long-running parts: a hardened systemd unit per part (Unit), the
// sysusers.d line that creates the part's system user (Sysusers), and a
// launchd daemon plist for macOS (LaunchdPlist). vigil service install
// writes them on a live system; vigil package puts them in packages.
//
// Each part runs as "EXE PART -config FILE", so that its preference file
// is the whole of its settings (the unit gives no other flag) and SIGHUP
// (systemctl reload) re-reads it. The server, the LiveUpdate server, the
// mirror and the relay run as their own system user (vigil-PART) with an
// empty or one-capability bounding set and a read-only view of the system
// but for their state directory; the agent runs as root, because it must
// read every file to scan it, move any file into quarantine and watch
// file systems with fanotify, and keeps the few capabilities that needs.
// docs/service.md explains each setting.
package service

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/config"
)

// Parts are the parts that run as services, in the order vigil service
// lists them.
var Parts = []string{config.PartServer, config.PartAgent, config.PartLiveUpdate, config.PartMirror, config.PartRelay}

// spec is what a part's unit keeps besides the hardening every part has.
type spec struct {
	description string
	// user is the system user the part runs as; "" for root.
	user string
	// stateDir is the StateDirectory= name (under /var/lib), "" for none;
	// stateMode its mode.
	stateDir, stateMode string
	// logsDir is the LogsDirectory= name (under /var/log), "" for none.
	logsDir string
	// caps is the capability bounding set; ambient says whether they are
	// also ambient (a non-root user gets them only so).
	caps    []string
	ambient bool
	// umask is the part's UMask=.
	umask string
	// restart is the Restart= policy.
	restart string
	// agent: the part keeps broad access to the file system (no
	// ProtectSystem, ProtectHome, PrivateTmp).
	broad bool
	// syscalls are allowed besides @system-service.
	syscalls []string
}

var specs = map[string]spec{
	config.PartServer: {
		description: "Vigil management server",
		user:        "vigil-server",
		stateDir:    "vigil-server", stateMode: "0700",
		umask:   "0077",
		restart: "on-failure",
	},
	config.PartAgent: {
		description: "Vigil agent",
		stateDir:    "vigil", stateMode: "0700",
		// Read every file and traverse every directory (scans), write and
		// unlink in directories of other users and change the mode of
		// their files (quarantine: move, chmod 0600, restore; rename out
		// of sticky /tmp), fanotify_init and fanotify_mark (on-access
		// scanning), readlink /proc/PID/exe of other users' processes
		// (OnAccessExcludeProcesses).
		caps:    []string{"CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"},
		umask:   "0077",
		restart: "always", // self-update exits 0 and relies on being restarted
		broad:   true,
		// On-access scanning; they are in @privileged, not @system-service.
		syscalls: []string{"fanotify_init", "fanotify_mark"},
	},
	config.PartLiveUpdate: {
		description: "Vigil LiveUpdate server",
		user:        "vigil-liveupdate",
		logsDir:     "vigil-liveupdate",
		caps:        []string{"CAP_NET_BIND_SERVICE"}, // :80 and :21
		ambient:     true,
		umask:       "0077",
		restart:     "on-failure",
	},
	config.PartMirror: {
		description: "Vigil mirror",
		user:        "vigil-mirror",
		// The LiveUpdate server (another user) serves the mirror's -dir:
		// it must be readable by others.
		stateDir: "vigil-mirror", stateMode: "0755",
		umask:   "0022",
		restart: "on-failure",
	},
	config.PartRelay: {
		description: "Vigil relay",
		user:        "vigil-relay",
		stateDir:    "vigil-relay", stateMode: "0700",
		caps:    []string{"CAP_NET_BIND_SERVICE"}, // the cache's :80 and :21
		ambient: true,
		umask:   "0077",
		restart: "on-failure",
	},
}

// CheckPart returns an error naming the parts when part is not one of
// Parts.
func CheckPart(part string) error {
	if _, ok := specs[part]; !ok {
		return fmt.Errorf("unknown part %q: want one of %s", part, strings.Join(Parts, ", "))
	}
	return nil
}

// User returns the system user part runs as, "root" for the agent.
func User(part string) (string, error) {
	if err := CheckPart(part); err != nil {
		return "", err
	}
	if u := specs[part].user; u != "" {
		return u, nil
	}
	return "root", nil
}

// UnitName is the systemd unit of part: vigil-PART.service.
func UnitName(part string) string { return "vigil-" + part + ".service" }

// Label is the launchd label of part: com.vigil.PART.
func Label(part string) string { return "com.vigil." + part }

// StateDir returns the directory (under /var/lib) systemd creates for
// part with StateDirectory=, owned by its user; "" for the LiveUpdate
// server, which writes nothing.
func StateDir(part string) string {
	if s := specs[part].stateDir; s != "" {
		return "/var/lib/" + s
	}
	return ""
}

// checkPath refuses a path a unit cannot hold as it is: relative, not
// clean, or with a character systemd would read as a separator, a
// specifier (%) or a variable ($).
func checkPath(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s is empty", what)
	case !filepath.IsAbs(p) || !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%s %q is not an absolute path", what, p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%s %q is not a clean path (want %q)", what, p, filepath.Clean(p))
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" \t\"'\\%$;", r) {
			return fmt.Errorf("%s %q holds %q, which a systemd unit would not take as part of a path", what, p, r)
		}
	}
	return nil
}

func check(part, exe, cfg string) error {
	if err := CheckPart(part); err != nil {
		return err
	}
	if err := checkPath("executable", exe); err != nil {
		return err
	}
	return checkPath("preference file", cfg)
}

// Unit is the systemd unit of part (config.PartServer, PartAgent,
// PartLiveUpdate, PartMirror, PartRelay) running exe with its preference
// file config. Both must be absolute, clean paths without spaces, quotes,
// backslashes, % or $.
func Unit(part, exe, cfg string) ([]byte, error) {
	if err := check(part, exe, cfg); err != nil {
		return nil, err
	}
	s := specs[part]
	var b bytes.Buffer
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# %s: written by vigil service install (or vigil package).", UnitName(part))
	line("# docs/service.md explains every setting. Local changes belong in a drop-in:")
	line("# systemctl edit %s", UnitName(part))
	line("[Unit]")
	line("Description=%s", s.description)
	line("Documentation=https://github.com/vigil-fleet/vigil/blob/main/docs/service.md")
	line("After=network-online.target")
	line("Wants=network-online.target")
	line("")
	line("[Service]")
	line("Type=exec")
	line("ExecStart=%s %s -config %s", exe, part, cfg)
	// Every part re-reads its preference file on SIGHUP (internal/cli/
	// signals.go, reload.go).
	line("ExecReload=/bin/kill -HUP $MAINPID")
	line("Restart=%s", s.restart)
	line("RestartSec=5s")
	// The preference file is the whole of the settings: vigil ports and
	// vigil doctor read it, not a runtime directory the sandbox would
	// need to share between users.
	line("Environment=VIGIL_RUNTIME_DIR=off")
	line("StandardOutput=journal")
	line("StandardError=journal")
	line("SyslogIdentifier=vigil-%s", part)
	if s.user != "" {
		line("User=%s", s.user)
		line("Group=%s", s.user)
	} else {
		line("User=root")
	}
	if s.stateDir != "" {
		line("StateDirectory=%s", s.stateDir)
		line("StateDirectoryMode=%s", s.stateMode)
	}
	if s.logsDir != "" {
		line("LogsDirectory=%s", s.logsDir)
		line("LogsDirectoryMode=0750")
	}
	line("UMask=%s", s.umask)
	line("")
	line("# Hardening (docs/service.md).")
	line("NoNewPrivileges=yes")
	line("CapabilityBoundingSet=%s", strings.Join(s.caps, " "))
	if s.ambient {
		line("AmbientCapabilities=%s", strings.Join(s.caps, " "))
	}
	if s.broad {
		line("# The agent reads every file, quarantines any file and updates its own")
		line("# executable: it keeps a writable view of the whole system, /home and /tmp.")
		line("# It also stays in the host's mount namespace (no ProtectKernel*, no")
		line("# ProtectControlGroups), so that its fanotify marks are on the mounts every")
		line("# process uses; and in its UTS namespace, so that it reports the current host")
		line("# name. The capabilities it lacks (CAP_SYS_MODULE, CAP_SYS_TIME, CAP_SYSLOG,")
		line("# ...) keep it from what those settings would forbid.")
		line("ProtectSystem=no")
		line("ProtectHome=no")
		line("PrivateTmp=no")
		line("ProtectClock=yes")
	} else {
		line("ProtectSystem=strict")
		line("ProtectHome=yes")
		line("PrivateTmp=yes")
		line("PrivateDevices=yes")
		line("PrivateMounts=yes")
		line("ProtectProc=invisible")
		line("RestrictSUIDSGID=yes")
		line("MemoryDenyWriteExecute=yes")
		line("RemoveIPC=yes")
		if s.stateDir != "" {
			// StateDirectory= makes it writable already; said again so
			// that a drop-in moving the state adds its own
			// ReadWritePaths= beside it.
			line("ReadWritePaths=%s", StateDir(part))
		}
		line("ProtectKernelTunables=yes")
		line("ProtectKernelModules=yes")
		line("ProtectKernelLogs=yes")
		line("ProtectControlGroups=yes")
		line("ProtectClock=yes")
		line("ProtectHostname=yes")
	}
	line("RestrictRealtime=yes")
	line("RestrictNamespaces=yes")
	line("LockPersonality=yes")
	line("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK")
	line("SystemCallArchitectures=native")
	line("SystemCallFilter=%s", strings.Join(append([]string{"@system-service"}, s.syscalls...), " "))
	line("SystemCallErrorNumber=EPERM")
	line("")
	line("[Install]")
	line("WantedBy=multi-user.target")
	return b.Bytes(), nil
}

// Sysusers is the sysusers.d(5) file that creates part's system user and
// group (for the agent, which runs as root, an error): a package installs
// it as /usr/lib/sysusers.d/vigil-PART.conf and runs systemd-sysusers;
// vigil service install writes /etc/sysusers.d/vigil-PART.conf and runs
// it too.
func Sysusers(part string) ([]byte, error) {
	if err := CheckPart(part); err != nil {
		return nil, err
	}
	s := specs[part]
	if s.user == "" {
		return nil, fmt.Errorf("the %s runs as root: it has no system user", part)
	}
	home := StateDir(part)
	if home == "" {
		home = "/"
	}
	return fmt.Appendf(nil, "# The system user of %s (%s).\nu %s - \"%s\" %s /usr/sbin/nologin\n", UnitName(part), s.description, s.user, s.description, home), nil
}

// LaunchdKeys are the launchd.plist(5) keys LaunchdPlist may write, all
// documented by Apple.
var LaunchdKeys = []string{"Label", "ProgramArguments", "RunAtLoad", "KeepAlive", "StandardOutPath", "StandardErrorPath", "UserName", "GroupName", "ProcessType", "Umask"}

// launchd is a daemon plist; plist writes the fields in this order.
type launchd struct {
	Label             string   `plist:"Label"`
	ProgramArguments  []string `plist:"ProgramArguments"`
	RunAtLoad         bool     `plist:"RunAtLoad"`
	KeepAlive         any      `plist:"KeepAlive"`
	StandardOutPath   string   `plist:"StandardOutPath"`
	StandardErrorPath string   `plist:"StandardErrorPath"`
	UserName          string   `plist:"UserName,omitempty"`
	GroupName         string   `plist:"GroupName,omitempty"`
	ProcessType       string   `plist:"ProcessType"`
	Umask             int      `plist:"Umask"`
}

// MacUser is the macOS user of part, "" for root (the agent):
// _vigil-PART, created with dscl (docs/service.md).
func MacUser(part string) string {
	if specs[part].user == "" {
		return ""
	}
	return "_" + specs[part].user
}

// LogPath is the file launchd sends part's standard output and error to
// on macOS.
func LogPath(part string) string { return "/Library/Logs/" + Label(part) + ".log" }

// LaunchdPlist is the launchd daemon plist
// (/Library/LaunchDaemons/com.vigil.PART.plist) of the same: Label
// com.vigil.PART, run at load, kept alive (the agent always, since
// self-update exits 0 to be restarted; the others when they exit with an
// error), its output in /Library/Logs/com.vigil.PART.log.
func LaunchdPlist(part, exe, cfg string) ([]byte, error) {
	if err := CheckPart(part); err != nil {
		return nil, err
	}
	// launchd takes any path in ProgramArguments; only require absolute,
	// clean ones.
	for _, p := range []struct{ what, v string }{{"executable", exe}, {"preference file", cfg}} {
		if p.v == "" || !strings.HasPrefix(p.v, "/") || filepath.Clean(p.v) != p.v {
			return nil, fmt.Errorf("%s %q is not an absolute, clean path", p.what, p.v)
		}
	}
	s := specs[part]
	d := launchd{
		Label:             Label(part),
		ProgramArguments:  []string{exe, part, "-config", cfg},
		RunAtLoad:         true,
		StandardOutPath:   LogPath(part),
		StandardErrorPath: LogPath(part),
		ProcessType:       "Standard",
		Umask:             0o077,
	}
	if s.restart == "always" {
		d.KeepAlive = true
	} else {
		d.KeepAlive = map[string]bool{"SuccessfulExit": false}
	}
	if s.stateMode == "0755" {
		d.Umask = 0o022
	}
	if u := MacUser(part); u != "" {
		d.UserName, d.GroupName = u, u
	}
	out, err := plist.MarshalIndent(d, plist.XMLFormat, "\t")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
