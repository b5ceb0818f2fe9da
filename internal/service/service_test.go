package service_test

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/service"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// verify runs systemd-analyze verify on unit, written as dir/name, and
// returns its output and whether it accepted it without a word: verify
// exits 0 on unknown keys and bad values, which it only prints.
func verify(t *testing.T, analyze, dir, name string, unit []byte) (string, bool) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", p)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	return string(out), err == nil && len(bytes.TrimSpace(out)) == 0
}

// unitValues returns the values of key in unit, in order.
func unitValues(unit []byte, key string) []string {
	var vs []string
	for _, l := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

func one(t *testing.T, part string, unit []byte, key string) string {
	t.Helper()
	vs := unitValues(unit, key)
	if len(vs) != 1 {
		t.Errorf("%s: %s= appears %d times: %q", part, key, len(vs), vs)
		return ""
	}
	return vs[0]
}

func TestUnitsVerify(t *testing.T) {
	t.Parallel()
	analyze := testenv.NeedTool(t, "systemd-analyze", "systemd")
	// verify checks that ExecStart's program exists and is executable:
	// the test binary is one.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, part := range service.Parts {
		unit, err := service.Unit(part, exe, "/etc/vigil/"+part+".plist")
		if err != nil {
			t.Fatalf("%s: %v", part, err)
		}
		if out, ok := verify(t, analyze, dir, service.UnitName(part), unit); !ok {
			t.Errorf("%s: systemd-analyze verify:\n%s\n%s", part, out, unit)
		}
	}
	// The check can fail: a unknown key, a bad value, a missing program.
	good, _ := service.Unit(config.PartServer, exe, "/etc/vigil/server.plist")
	for name, unit := range map[string][]byte{
		"vigil-unknownkey.service": bytes.Replace(good, []byte("Type=exec\n"), []byte("Type=exec\nNoSuchKey=1\n"), 1),
		"vigil-badvalue.service":   bytes.Replace(good, []byte("ProtectHome=yes"), []byte("ProtectHome=perhaps"), 1),
		"vigil-noexe.service":      bytes.Replace(good, []byte(exe), []byte(filepath.Join(dir, "no-such-vigil")), 1),
	} {
		if out, ok := verify(t, analyze, dir, name, unit); ok {
			t.Errorf("%s accepted by systemd-analyze verify (%q)", name, out)
		}
	}
}

func TestUnitSettings(t *testing.T) {
	t.Parallel()
	for _, part := range service.Parts {
		unit, err := service.Unit(part, "/usr/bin/vigil", "/etc/vigil/"+part+".plist")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := one(t, part, unit, "ExecStart"), "/usr/bin/vigil "+part+" -config /etc/vigil/"+part+".plist"; got != want {
			t.Errorf("%s: ExecStart=%s, want %s", part, got, want)
		}
		if got := one(t, part, unit, "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
			t.Errorf("%s: ExecReload=%s", part, got)
		}
		if got := one(t, part, unit, "NoNewPrivileges"); got != "yes" {
			t.Errorf("%s: NoNewPrivileges=%s", part, got)
		}
		user, _ := service.User(part)
		if got := one(t, part, unit, "User"); got != user {
			t.Errorf("%s: User=%s, want %s", part, got, user)
		}
		caps := strings.Fields(one(t, part, unit, "CapabilityBoundingSet"))
		switch part {
		case config.PartAgent:
			if user != "root" {
				t.Errorf("agent runs as %s, want root", user)
			}
			if got := one(t, part, unit, "Restart"); got != "always" {
				t.Errorf("agent: Restart=%s, want always (self-update exits 0 to be restarted)", got)
			}
			want := []string{"CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}
			if !slices.Equal(caps, want) {
				t.Errorf("agent: CapabilityBoundingSet %q, want %q", caps, want)
			}
			for _, k := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp"} {
				if got := one(t, part, unit, k); got != "no" {
					t.Errorf("agent: %s=%s; it must see and change every file", k, got)
				}
			}
			if unitValues(unit, "AmbientCapabilities") != nil {
				t.Error("agent: AmbientCapabilities for root")
			}
			// Settings that put the agent in a mount (or UTS) namespace
			// of its own, where its fanotify mount marks would miss the
			// accesses of every other process, and its host name would
			// not follow the host's.
			for _, k := range []string{"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "PrivateDevices", "PrivateMounts", "ProtectProc", "ProcSubset", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ProtectHostname"} {
				if vs := unitValues(unit, k); vs != nil {
					t.Errorf("agent: %s=%s would give it namespaces of its own", k, vs)
				}
			}
		default:
			if user != "vigil-"+part {
				t.Errorf("%s runs as %s", part, user)
			}
			if got := one(t, part, unit, "Restart"); got != "on-failure" {
				t.Errorf("%s: Restart=%s", part, got)
			}
			for k, want := range map[string]string{"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "Group": user, "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "PrivateDevices": "yes", "ProtectProc": "invisible", "MemoryDenyWriteExecute": "yes"} {
				if got := one(t, part, unit, k); got != want {
					t.Errorf("%s: %s=%s, want %s", part, k, got, want)
				}
			}
			var want []string
			if part == config.PartLiveUpdate || part == config.PartRelay {
				want = []string{"CAP_NET_BIND_SERVICE"}
			}
			if !slices.Equal(caps, want) {
				t.Errorf("%s: CapabilityBoundingSet %q, want %q", part, caps, want)
			}
			if got := strings.Fields(strings.Join(unitValues(unit, "AmbientCapabilities"), " ")); !slices.Equal(got, want) {
				t.Errorf("%s: AmbientCapabilities %q, want %q", part, got, want)
			}
			if sd := service.StateDir(part); sd != "" {
				if got := one(t, part, unit, "ReadWritePaths"); got != sd {
					t.Errorf("%s: ReadWritePaths=%s, want %s", part, got, sd)
				}
				if got := one(t, part, unit, "StateDirectory"); "/var/lib/"+got != sd {
					t.Errorf("%s: StateDirectory=%s, want %s", part, got, sd)
				}
			}
		}
	}
	if got := service.StateDir(config.PartServer); got != config.DefaultServer().DataDir {
		t.Errorf("server state %s, its default -data-dir %s", got, config.DefaultServer().DataDir)
	}
	if got := service.StateDir(config.PartRelay); got != config.DefaultRelayStateDir {
		t.Errorf("relay state %s, its default -state-dir %s", got, config.DefaultRelayStateDir)
	}
}

func TestUnitRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ part, exe, cfg, want string }{
		{"console", "/usr/bin/vigil", "/etc/vigil/x.plist", `unknown part "console": want one of server, agent, liveupdate, mirror, relay`},
		{"server", "vigil", "/etc/vigil/server.plist", `executable "vigil" is not an absolute path`},
		{"server", "/usr/bin/vigil", "etc/server.plist", `preference file "etc/server.plist" is not an absolute path`},
		{"server", "/usr/bin/../bin/vigil", "/etc/vigil/server.plist", `not a clean path`},
		{"server", "/opt/my vigil/vigil", "/etc/vigil/server.plist", `holds ' '`},
		{"server", "/usr/bin/vigil", "/etc/vigil/100%.plist", `holds '%'`},
		{"agent", "", "/etc/vigil/agent.plist", `executable is empty`},
	} {
		_, err := service.Unit(tc.part, tc.exe, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Unit(%q, %q, %q) = %v, want an error with %q", tc.part, tc.exe, tc.cfg, err, tc.want)
		}
	}
	if _, err := service.LaunchdPlist("agent", "usr/bin/vigil", "/x.plist"); err == nil {
		t.Error("LaunchdPlist took a relative executable")
	}
	if _, err := service.Sysusers(config.PartAgent); err == nil {
		t.Error("Sysusers gave the agent, which runs as root, a user")
	}
}

func TestSysusers(t *testing.T) {
	t.Parallel()
	for _, part := range service.Parts {
		if part == config.PartAgent {
			continue
		}
		b, err := service.Sysusers(part)
		if err != nil {
			t.Fatal(err)
		}
		user, _ := service.User(part)
		var line string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "u ") {
				line = l
			}
		}
		if !strings.HasPrefix(line, "u "+user+" - \"") || !strings.HasSuffix(line, " /usr/sbin/nologin") {
			t.Errorf("%s: sysusers line %q", part, line)
		}
	}
}

// documentedLaunchdKeys are the top-level keys launchd.plist(5) documents
// (macOS 14), written out here rather than taken from the package.
var documentedLaunchdKeys = []string{
	"Label", "Disabled", "UserName", "GroupName", "inetdCompatibility", "LimitLoadToHosts",
	"LimitLoadFromHosts", "LimitLoadToSessionType", "LimitLoadToHardware", "LimitLoadFromHardware",
	"Program", "ProgramArguments", "EnableGlobbing", "EnableTransactions", "EnablePressuredExit",
	"OnDemand", "ServiceIPC", "KeepAlive", "RunAtLoad", "RootDirectory", "WorkingDirectory",
	"EnvironmentVariables", "Umask", "TimeOut", "ExitTimeOut", "ThrottleInterval", "InitGroups",
	"WatchPaths", "QueueDirectories", "StartOnMount", "StartInterval", "StartCalendarInterval",
	"StandardInPath", "StandardOutPath", "StandardErrorPath", "Debug", "WaitForDebugger",
	"SoftResourceLimits", "HardResourceLimits", "Nice", "ProcessType", "AbandonProcessGroup",
	"LowPriorityIO", "LowPriorityBackgroundIO", "MaterializeDatalessFiles", "LaunchOnlyOnce",
	"MachServices", "Sockets", "LaunchEvents", "SessionCreate", "LegacyTimers", "AssociatedBundleIdentifiers",
}

// documentedKeepAliveKeys are the keys of a KeepAlive dictionary.
var documentedKeepAliveKeys = []string{"SuccessfulExit", "NetworkState", "PathState", "OtherJobEnabled", "Crashed"}

func TestLaunchdPlist(t *testing.T) {
	t.Parallel()
	plistutil := testenv.NeedTool(t, "plistutil", "plistutil")
	dir := t.TempDir()
	for _, part := range service.Parts {
		cfg := "/Library/Preferences/com.vigil." + part + ".plist"
		xml, err := service.LaunchdPlist(part, "/usr/local/bin/vigil", cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Round trip through libplist: XML -> binary -> XML, and the
		// result decodes to the same dictionary.
		in, bin, back := filepath.Join(dir, part+".plist"), filepath.Join(dir, part+".bin"), filepath.Join(dir, part+".back.plist")
		if err := os.WriteFile(in, xml, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"-i", in, "-f", "bin", "-o", bin}, {"-i", bin, "-f", "xml", "-o", back}} {
			if out, err := exec.Command(plistutil, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s: plistutil %q: %v\n%s", part, args, err, out)
			}
		}
		binData, _ := os.ReadFile(bin)
		if !bytes.HasPrefix(binData, []byte("bplist00")) {
			t.Fatalf("%s: plistutil wrote no binary plist: %q", part, binData[:min(len(binData), 16)])
		}
		var orig, rt map[string]any
		if _, err := plist.Unmarshal(xml, &orig); err != nil {
			t.Fatalf("%s: %v", part, err)
		}
		backData, _ := os.ReadFile(back)
		if _, err := plist.Unmarshal(backData, &rt); err != nil {
			t.Fatalf("%s: plistutil's XML: %v", part, err)
		}
		if !reflect.DeepEqual(orig, rt) {
			t.Errorf("%s: changed through plistutil:\n%v\n%v", part, orig, rt)
		}
		for k := range orig {
			if !slices.Contains(documentedLaunchdKeys, k) {
				t.Errorf("%s: key %s is not a documented launchd key", part, k)
			}
			if !slices.Contains(service.LaunchdKeys, k) {
				t.Errorf("%s: key %s missing from service.LaunchdKeys", part, k)
			}
		}
		if ka, ok := orig["KeepAlive"].(map[string]any); ok {
			for k := range ka {
				if !slices.Contains(documentedKeepAliveKeys, k) {
					t.Errorf("%s: KeepAlive key %s is not documented", part, k)
				}
			}
		}
		if orig["Label"] != "com.vigil."+part || orig["RunAtLoad"] != true {
			t.Errorf("%s: Label %v RunAtLoad %v", part, orig["Label"], orig["RunAtLoad"])
		}
		args, _ := orig["ProgramArguments"].([]any)
		if !reflect.DeepEqual(args, []any{"/usr/local/bin/vigil", part, "-config", cfg}) {
			t.Errorf("%s: ProgramArguments %v", part, args)
		}
		if orig["StandardErrorPath"] != service.LogPath(part) {
			t.Errorf("%s: StandardErrorPath %v", part, orig["StandardErrorPath"])
		}
		switch part {
		case config.PartAgent:
			if orig["KeepAlive"] != true {
				t.Errorf("agent: KeepAlive %v, want true (self-update exits 0 to be restarted)", orig["KeepAlive"])
			}
			if _, ok := orig["UserName"]; ok {
				t.Errorf("agent: UserName %v; it runs as root", orig["UserName"])
			}
		default:
			if !reflect.DeepEqual(orig["KeepAlive"], map[string]any{"SuccessfulExit": false}) {
				t.Errorf("%s: KeepAlive %v", part, orig["KeepAlive"])
			}
			if orig["UserName"] != "_vigil-"+part {
				t.Errorf("%s: UserName %v", part, orig["UserName"])
			}
		}
	}
	// The key check can fail.
	for _, k := range service.LaunchdKeys {
		if !slices.Contains(documentedLaunchdKeys, k) {
			t.Errorf("service.LaunchdKeys holds %s, which launchd does not document", k)
		}
	}
	if slices.Contains(documentedLaunchdKeys, "Restart") {
		t.Error("the documented list is wrong")
	}
}

// syscallGroups returns the system-call groups systemd-analyze
// syscall-filter lists, each with its members (groups expanded).
func syscallGroups(t *testing.T, analyze string) map[string]map[string]bool {
	t.Helper()
	out, err := exec.Command(analyze, "syscall-filter").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	raw := map[string][]string{}
	cur := ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "@"):
			cur = strings.Fields(l)[0]
		case f == "" || strings.HasPrefix(f, "#") || cur == "":
		default:
			raw[cur] = append(raw[cur], f)
		}
	}
	var expand func(g string, into map[string]bool)
	expand = func(g string, into map[string]bool) {
		for _, m := range raw[g] {
			if strings.HasPrefix(m, "@") {
				expand(m, into)
			} else {
				into[m] = true
			}
		}
	}
	groups := map[string]map[string]bool{}
	for g := range raw {
		groups[g] = map[string]bool{}
		expand(g, groups[g])
	}
	return groups
}

// TestUnitSystemCalls checks each unit's SystemCallFilter= against the
// system calls the part makes, as systemd groups them: a call left out
// would fail with EPERM (SystemCallErrorNumber=) at run time.
func TestUnitSystemCalls(t *testing.T) {
	t.Parallel()
	analyze := testenv.NeedTool(t, "systemd-analyze", "systemd")
	groups := syscallGroups(t, analyze)
	if len(groups["@system-service"]) < 100 || groups["@system-service"]["fanotify_init"] {
		t.Fatalf("@system-service as listed: %d calls, fanotify_init %v", len(groups["@system-service"]), groups["@system-service"]["fanotify_init"])
	}
	// Calls of the Go runtime and of every part (files written atomically,
	// sockets, multicast), and those of the agent (quarantine, fanotify,
	// self-update's exec).
	common := []string{"clone", "clone3", "futex", "mmap", "madvise", "rt_sigaction", "sched_getaffinity", "epoll_pwait", "openat", "renameat", "fsync", "socket", "bind", "setsockopt", "sendmsg", "recvmsg", "getrandom", "flock"}
	agent := append([]string{"fanotify_init", "fanotify_mark", "renameat2", "linkat", "unlinkat", "fchmod", "newfstatat", "readlinkat", "execve"}, common...)
	for _, part := range service.Parts {
		unit, _ := service.Unit(part, "/usr/bin/vigil", "/etc/vigil/"+part+".plist")
		allowed := map[string]bool{}
		for _, f := range strings.Fields(one(t, part, unit, "SystemCallFilter")) {
			if strings.HasPrefix(f, "@") {
				g, ok := groups[f]
				if !ok {
					t.Errorf("%s: SystemCallFilter group %s unknown to systemd-analyze", part, f)
				}
				for c := range g {
					allowed[c] = true
				}
			} else {
				allowed[f] = true
			}
		}
		need := common
		if part == config.PartAgent {
			need = agent
		}
		for _, c := range need {
			if !allowed[c] {
				t.Errorf("%s: SystemCallFilter does not allow %s", part, c)
			}
		}
		if part != config.PartAgent && allowed["fanotify_init"] {
			t.Errorf("%s: SystemCallFilter allows fanotify_init, which only the agent uses", part)
		}
	}
}

// TestUnitsSecurity rates each unit with systemd-analyze security
// --offline (exposure from 0, locked down, to 10, an unprotected root
// service) and fails when one rises above its bound: 2.5 for the parts
// that run as their own user, 5.5 for the agent, which must see and change
// every file (docs/service.md). Measured with systemd 252: server and
// mirror 1.5, liveupdate and relay 1.7, agent 4.7.
func TestUnitsSecurity(t *testing.T) {
	t.Parallel()
	analyze := testenv.NeedTool(t, "systemd-analyze", "systemd")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, part := range service.Parts {
		unit, _ := service.Unit(part, exe, "/etc/vigil/"+part+".plist")
		p := filepath.Join(dir, service.UnitName(part))
		if err := os.WriteFile(p, unit, 0o644); err != nil {
			t.Fatal(err)
		}
		bound := "25" // tenths, as --threshold takes them
		if part == config.PartAgent {
			bound = "55"
		}
		out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", "--threshold="+bound, p).CombinedOutput()
		var exposure string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "Overall exposure level") {
				exposure = strings.TrimSpace(l)
			}
		}
		if exposure == "" {
			t.Fatalf("%s: systemd-analyze security printed no exposure level (%v):\n%s", part, err, out)
		}
		if err != nil {
			t.Errorf("%s: above %s tenths: %s", part, bound, exposure)
		} else {
			t.Logf("%s: %s", part, exposure)
		}
	}
}

// TestAgentCapabilitiesScan runs the real vigil scan as root confined to
// the agent unit's CapabilityBoundingSet (and NoNewPrivileges), as systemd
// would, over a file of another user in a directory only that user may
// enter: the agent's capabilities must let it read the file and find the
// signature. Without CAP_DAC_READ_SEARCH and CAP_DAC_OVERRIDE the same
// scan is denied, which is why the agent keeps them.
func TestAgentCapabilitiesScan(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, testenv.RequireNetns, "reading another user's files as a confined root needs root")
	}
	setpriv := testenv.NeedTool(t, "setpriv", "util-linux")
	goTool := testenv.NeedTool(t, "go", "golang-go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "vigil")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/vigil-fleet/vigil/cmd/vigil").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The user's tree: uid 4242, the directory 0700, the file 0600.
	home := filepath.Join(dir, "home")
	file := filepath.Join(home, "payload.txt")
	payload := []byte("vigil capability test payload\n")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, home} {
		if err := os.Chown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defs := filepath.Join(dir, "defs")
	if err := os.Mkdir(defs, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(payload)
	if err := os.WriteFile(filepath.Join(defs, "test.hdb"), fmt.Appendf(nil, "%x:%d:Vigil.Test.Capabilities\n", sum, len(payload)), 0o644); err != nil {
		t.Fatal(err)
	}

	unit, _ := service.Unit(config.PartAgent, bin, "/etc/vigil/agent.plist")
	caps := strings.Fields(one(t, "agent", unit, "CapabilityBoundingSet"))
	scan := func(caps []string) (string, error) {
		set := "-all"
		for _, c := range caps {
			set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		}
		cmd := exec.Command(setpriv, "--no-new-privs", "--bounding-set="+set, "--inh-caps=-all", bin, "scan", "-d", defs, file)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := scan(caps)
	if !strings.Contains(out, file+": Vigil.Test.Capabilities FOUND") {
		t.Errorf("scan with the agent's capabilities %q (%v):\n%s", caps, err, out)
	}
	var without []string
	for _, c := range caps {
		if c != "CAP_DAC_READ_SEARCH" && c != "CAP_DAC_OVERRIDE" {
			without = append(without, c)
		}
	}
	out, err = scan(without)
	if err == nil || !strings.Contains(out, "permission denied") || strings.Contains(out, "FOUND") {
		t.Errorf("scan without CAP_DAC_READ_SEARCH and CAP_DAC_OVERRIDE (%v) was not denied:\n%s", err, out)
	}
}
