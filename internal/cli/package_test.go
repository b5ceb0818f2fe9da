package cli

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/packaging"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testcert"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// packageAgentDeb builds an agent .deb for s with vigil package agent
// (packaging this test binary, which runs as vigil under
// VIGIL_CLI_TEST_MAIN=1) and returns its path.
func packageAgentDeb(t *testing.T, s *servertest.Server, extra ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "agent.deb")
	args := append([]string{"package", "agent",
		"-server", s.URL,
		"-server-key-file", filepath.Join(s.Config.DataDir, server.FilePublicKey),
		"-enroll-secret-file", filepath.Join(s.Config.DataDir, server.FileEnrollSecret),
		"-group", "lab,building-7",
		"-interface", s.Config.Interface, "-port", strconv.Itoa(s.Config.Port),
		"-format", "deb", "-version", "1.2.3", "-o", out}, extra...)
	if code, stdout, stderr := run(t, nil, args...); code != 0 || strings.TrimSpace(stdout) != out {
		t.Fatalf("vigil %s: exit %d, stdout %q\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the agent package, which holds the enrollment secret, is %v (%v), want mode 0600", st.Mode(), err)
	}
	return out
}

// dpkgRoot makes an empty dpkg database under a new directory, a root to
// install packages into with dpkgIn.
func dpkgRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/updates", "var/lib/dpkg/info", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// dpkgIn runs dpkg on root: the maintainer scripts run outside a chroot,
// with DPKG_ROOT set to root.
func dpkgIn(t *testing.T, root string, args ...string) string {
	t.Helper()
	all := append([]string{"--root=" + root, "--force-not-root", "--force-script-chrootless", "--log=/dev/null"}, args...)
	out, err := exec.Command("dpkg", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	return string(out)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestPackageAgentDeb builds the agent .deb, inspects it, installs it into
// a throwaway root, checks the unit, the preference file and what the
// maintainer scripts made, removes and purges it, and runs lintian on it.
func TestPackageAgentDeb(t *testing.T) {
	testenv.NeedTool(t, "dpkg-deb", "dpkg")
	testenv.NeedTool(t, "dpkg", "dpkg")
	analyze := testenv.NeedTool(t, "systemd-analyze", "systemd")
	s := servertest.Start(t, server.Config{})
	deb := packageAgentDeb(t, s)
	l := packaging.LayoutOf(packaging.PartAgent)

	// The control part: fields, conffiles, maintainer scripts.
	info, err := exec.Command("dpkg-deb", "-I", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -I: %v\n%s", err, info)
	}
	for _, want := range []string{"Package: vigil-agent", "Version: 1.2.3-1", "Architecture: " + runtime.GOARCH,
		" conffiles", " postinst", " prerm", " postrm"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	control := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, control).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	conffiles, _ := os.ReadFile(filepath.Join(control, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != l.Config {
		t.Errorf("conffiles = %q, want %s", conffiles, l.Config)
	}
	script := func(name string) string {
		b, err := os.ReadFile(filepath.Join(control, name))
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(filepath.Join(control, name)); st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", name, st.Mode())
		}
		return string(b)
	}
	postinst, prerm, postrm := script("postinst"), script("prerm"), script("postrm")
	for _, c := range []struct{ script, name, want string }{
		{postinst, "postinst", "[ -d /run/systemd/system ]"},
		{postinst, "postinst", "systemctl daemon-reload"},
		{postinst, "postinst", "systemctl enable --now vigil-agent.service"},
		{postinst, "postinst", `mkdir -p "$root/var/lib/vigil"`},
		{prerm, "prerm", "systemctl disable --now vigil-agent.service"},
		{postrm, "postrm", `rm -rf "$root/var/lib/vigil"`},
	} {
		if !strings.Contains(c.script, c.want) {
			t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.script)
		}
	}
	for name, sh := range map[string]string{"postinst": postinst, "prerm": prerm, "postrm": postrm} {
		if out, err := exec.Command("sh", "-n", filepath.Join(control, name)).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s\n%s", name, err, out, sh)
		}
	}

	// The data part: files and modes.
	list, err := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, list)
	}
	for path, mode := range map[string]string{
		l.Exe:    "-rwxr-xr-x root/root",
		l.Config: "-rw------- root/root",
		l.Unit:   "-rw-r--r-- root/root",
	} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(mode) + `\s.*\s\.` + regexp.QuoteMeta(path) + `$`)
		if !re.Match(list) {
			t.Errorf("dpkg-deb -c: no %s with %s:\n%s", path, mode, list)
		}
	}

	// Install into a throwaway root: the scripts must cope without
	// systemd, and with DPKG_ROOT leave this machine's services alone.
	root := dpkgRoot(t)
	dpkgIn(t, root, "-i", deb)
	st, err := os.Stat(filepath.Join(root, "var/lib/vigil"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("postinst made no state directory of mode 0700: %v %v", st, err)
	}
	exe, err := os.ReadFile(filepath.Join(root, l.Exe))
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if want, _ := os.ReadFile(self); !slices.Equal(exe, want) {
		t.Errorf("%s is not the running executable (%d bytes, want %d)", l.Exe, len(exe), len(want))
	}

	// The preference file loads as the agent loads it, with the values baked in.
	cfgPath := filepath.Join(root, l.Config)
	if st, err := os.Stat(cfgPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", l.Config, st, err)
	}
	p, err := prefs.Load(cfgPath)
	if err != nil {
		t.Fatalf("installed preference file: %v", err)
	}
	secret, _ := os.ReadFile(filepath.Join(s.Config.DataDir, server.FileEnrollSecret))
	if p.NodeCommURL != s.URL || p.ServerPublicKey != s.PublicKeyBase64() ||
		p.EnrollmentSecret != strings.TrimSpace(string(secret)) || !slices.Equal(p.Groups, []string{"lab", "building-7"}) ||
		p.StateDirectory != "/var/lib/vigil" || p.MulticastPort != s.Config.Port || p.MulticastInterface != s.Config.Interface {
		t.Errorf("installed preferences: %+v", p)
	}

	// The unit as installed, with its ExecStart program in the root:
	// systemd-analyze verify checks the keys, the values and the program.
	unit, err := os.ReadFile(filepath.Join(root, l.Unit))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+l.Exe+" agent -config "+l.Config+"\n") {
		t.Errorf("unit's ExecStart does not run %s agent -config %s:\n%s", l.Exe, l.Config, unit)
	}
	vdir := t.TempDir()
	rooted := strings.Replace(string(unit), "ExecStart="+l.Exe, "ExecStart="+filepath.Join(root, l.Exe), 1)
	if err := os.WriteFile(filepath.Join(vdir, l.UnitName), []byte(rooted), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", filepath.Join(vdir, l.UnitName))
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}

	// Upgrade to 1.2.4 with a locally edited preference file: dpkg keeps
	// the edit (--force-confold answers its question), the state stays.
	state := filepath.Join(root, "var/lib/vigil/credential")
	if err := os.WriteFile(state, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	edited := *p
	edited.LogLevel = "debug"
	if err := prefs.Write(cfgPath, &edited, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	deb2 := packageAgentDeb(t, s, "-version", "1.2.4")
	dpkgIn(t, root, "--force-confold", "-i", deb2)
	if status, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "vigil-agent").CombinedOutput(); err != nil || !strings.Contains(string(status), "1.2.4-1") {
		t.Errorf("after the upgrade dpkg-query says %q (%v), want 1.2.4-1", status, err)
	}
	if p2, err := prefs.Load(cfgPath); err != nil || p2.LogLevel != "debug" {
		t.Errorf("the upgrade lost the local edit of %s: %+v %v", l.Config, p2, err)
	}
	if !exists(state) {
		t.Error("the upgrade removed the state directory's content")
	}

	// Remove: the program and unit go, the preference file (a conffile)
	// and the state directory stay.
	dpkgIn(t, root, "-r", "vigil-agent")
	for _, gone := range []string{l.Exe, l.Unit} {
		if exists(filepath.Join(root, gone)) {
			t.Errorf("%s left after dpkg -r", gone)
		}
	}
	for _, kept := range []string{l.Config, "var/lib/vigil/credential"} {
		if !exists(filepath.Join(root, kept)) {
			t.Errorf("%s removed by dpkg -r; only a purge removes it", kept)
		}
	}
	// Purge: nothing of the package is left.
	dpkgIn(t, root, "-P", "vigil-agent")
	for _, gone := range []string{l.Config, "etc/vigil", "var/lib/vigil"} {
		if exists(filepath.Join(root, gone)) {
			t.Errorf("%s left after dpkg -P", gone)
		}
	}

	// lintian: no error. Its warnings are logged.
	lintian := testenv.NeedTool(t, "lintian", "lintian")
	out, err := exec.Command(lintian, "--fail-on", "error", deb).CombinedOutput()
	var tags []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			tags = append(tags, line)
		}
		if strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	t.Logf("lintian: %d warnings:\n%s", len(tags), strings.Join(tags, "\n"))
}

// TestPackageAgentEnrolls installs the agent .deb into a throwaway root
// and runs the packaged executable with the packaged preference file
// (its StateDirectory in that root) against a real server: the baked
// preferences enroll the agent and it checks in.
func TestPackageAgentEnrolls(t *testing.T) {
	testenv.NeedTool(t, "dpkg", "dpkg")
	s := servertest.Start(t, server.Config{})
	root := dpkgRoot(t)
	stateDir := filepath.Join(root, "var/lib/vigil")
	deb := packageAgentDeb(t, s, "-state-dir", stateDir)
	dpkgIn(t, root, "-i", deb)
	l := packaging.LayoutOf(packaging.PartAgent)
	if st, err := os.Stat(filepath.Join(root, stateDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("postinst made no state directory %s under the root: %v %v", stateDir, st, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, l.Exe), "agent", "-config", filepath.Join(root, l.Config), "-log-level", "debug")
	cmd.Env = append(os.Environ(), "VIGIL_CLI_TEST_MAIN=1", "VIGIL_RUNTIME_DIR=off")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logged []string
	done := make(chan struct{})
	enrolled := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logged = append(logged, sc.Text())
			mu.Unlock()
			if strings.Contains(sc.Text(), "msg=enrolled") {
				select {
				case enrolled <- sc.Text():
				default:
				}
			}
		}
		close(enrolled)
		close(done)
	}()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		<-done
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("packaged agent's log:\n%s", strings.Join(logged, "\n"))
			mu.Unlock()
		}
	}()
	if _, ok := <-enrolled; !ok {
		t.Fatal("the packaged agent exited before enrolling")
	}
	// The server sees it, in the baked groups, once it has checked in.
	for {
		agents, err := s.Admin().Agents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(agents) == 1 && !agents[0].LastCheckIn.IsZero() {
			if !slices.Equal(agents[0].Groups, []string{"building-7", "lab"}) && !slices.Equal(agents[0].Groups, []string{"lab", "building-7"}) {
				t.Errorf("agent's groups %q, want lab and building-7", agents[0].Groups)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the packaged agent enrolled but did not check in: %+v", agents)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Its credential is in the packaged StateDirectory.
	if entries, _ := os.ReadDir(stateDir); len(entries) == 0 {
		t.Errorf("nothing in the state directory %s", stateDir)
	}
}

// TestPackageRefuses: what vigil package refuses, and why.
func TestPackageRefuses(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.pub")
	os.WriteFile(key, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o644)
	secret := filepath.Join(dir, "enroll.secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	agent := []string{"package", "agent", "-server", "http://vigil.example.com:8080/vigil", "-server-key-file", key,
		"-enroll-secret-file", secret, "-format", "deb", "-o", filepath.Join(dir, "x.deb")}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no part", []string{"package"}, 2, "name the part"},
		{"bad part", []string{"package", "mirror"}, 2, `cannot package "mirror"`},
		{"missing flags", []string{"package", "agent", "-format", "deb"}, 2, "-server, -server-key-file, -enroll-secret-file required"},
		{"no format", append(slices.Clone(agent[:len(agent)-4]), "-o", filepath.Join(dir, "x.deb")), 2, "-format is required"},
		{"bad format", append(slices.Clone(agent), "-format", "msi"), 2, `format "msi"`},
		{"other arch", append(slices.Clone(agent), "-arch", other), 2, "is built for " + runtime.GOARCH + " ("},
		{"bad url", append(slices.Clone(agent), "-server", "ftp://x/"), 1, "/etc/vigil/agent.plist: key NodeCommURL"},
		{"bad group", append(slices.Clone(agent), "-group", "a b"), 1, "/etc/vigil/agent.plist: key Groups"},
		{"ca for http", append(slices.Clone(agent), "-server-ca", key), 1, "no PEM certificate"},
		{"root not json", append(slices.Clone(agent), "-repository-root", key), 1, "not JSON"},
		{"liveupdate without root", append(slices.Clone(agent), "-liveupdate", "http://lu.example.com/"), 1, "key RepositoryRoot: missing"},
		{"server data dir", []string{"package", "server", "-format", "deb", "-data-dir", "/srv/vigil", "-o", filepath.Join(dir, "s.deb")}, 2, "lets it write only /var/lib/vigil-server"},
		{"server bad key", []string{"package", "server", "-format", "deb", "-store", "mysql://x", "-o", filepath.Join(dir, "s.deb")}, 2, "-store (preference key Store): unsupported scheme"},
		{"liveupdate no root", []string{"package", "liveupdate", "-format", "deb", "-o", filepath.Join(dir, "l.deb")}, 2, "-root is required"},
	} {
		code, _, stderr := run(t, nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, code, stderr, c.code, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("refused packages left files: %v", entries)
	}
}

// TestPackageServer: the server's flags given to vigil package server are
// in its packaged preference file, which the server loads as given; the
// package creates its system user and links /usr/bin/vigil.
func TestPackageServer(t *testing.T) {
	testenv.NeedTool(t, "dpkg", "dpkg")
	testenv.NeedTool(t, "systemd-sysusers", "systemd")
	out := filepath.Join(t.TempDir(), "server.deb")
	args := []string{"package", "server", "-format", "deb", "-listen", ":9443", "-checkin-interval", "90s", "-ttl", "4",
		"-admin-insecure-http", "-log-level", "debug", "-o", out}
	if code, _, stderr := run(t, nil, args...); code != 0 {
		t.Fatalf("vigil %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("the server package is %v (%v), want mode 0644", st.Mode(), err)
	}
	root := dpkgRoot(t)
	dpkgIn(t, root, "-i", out)
	l := packaging.LayoutOf(packaging.PartServer)
	o, err := loadPart(serverFlags, filepath.Join(root, l.Config))
	if err != nil {
		t.Fatalf("installed server.plist: %v", err)
	}
	if o.cfg.Listen != ":9443" || o.cfg.CheckInInterval != 90*time.Second || o.cfg.TTL != 4 || !o.cfg.AdminInsecureHTTP ||
		o.lf.level.text != "debug" || o.cfg.DataDir != "/var/lib/vigil-server" {
		t.Errorf("installed server preferences: %+v", o.cfg.Server)
	}
	if st, err := os.Stat(filepath.Join(root, "var/lib/vigil-server")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("no state directory of mode 0700: %v %v", st, err)
	}
	if target, err := os.Readlink(filepath.Join(root, "usr/bin/vigil")); err != nil || filepath.Join(root, "usr/bin", target) != filepath.Join(root, l.Exe) {
		t.Errorf("/usr/bin/vigil -> %q (%v), want %s", target, err, l.Exe)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !strings.Contains(string(passwd), "vigil-server:") {
		t.Errorf("postinst created no vigil-server user in the root's /etc/passwd:\n%s", passwd)
	}
	lintian := testenv.NeedTool(t, "lintian", "lintian")
	if lo, err := exec.Command(lintian, "--fail-on", "error", out).CombinedOutput(); err != nil || strings.Contains(string(lo), "\nE: ") || strings.HasPrefix(string(lo), "E: ") {
		t.Errorf("lintian on the server package: %v\n%s", err, lo)
	}
	dpkgIn(t, root, "-P", "vigil-server")
	if exists(filepath.Join(root, "var/lib/vigil-server")) || exists(filepath.Join(root, l.Config)) {
		t.Error("purge left the server's state directory or preference file")
	}
}

// TestPackageAgentFiles: the CA certificate and repository root the agent
// package is given are installed as configuration files at the paths its
// preference file names.
func TestPackageAgentFiles(t *testing.T) {
	testenv.NeedTool(t, "dpkg-deb", "dpkg")
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.pub")
	os.WriteFile(key, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o644)
	secret := filepath.Join(dir, "enroll.secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	ca, _, _ := testcert.Write(t, t.TempDir())
	root := filepath.Join(dir, "1.root.json")
	os.WriteFile(root, []byte(`{"signed":{"_type":"root"},"signatures":[]}`), 0o644)
	out := filepath.Join(dir, "agent.deb")
	args := []string{"package", "agent", "-server", "https://vigil.example.com:8443/vigil", "-server-key-file", key,
		"-enroll-secret-file", secret, "-server-ca", ca, "-repository-root", root,
		"-liveupdate", "ftp://lu.example.com/,http://lu.example.com/", "-format", "deb", "-o", out}
	if code, _, stderr := run(t, nil, args...); code != 0 {
		t.Fatalf("vigil %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	x := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-R", out, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R: %v\n%s", err, b)
	}
	conffiles, _ := os.ReadFile(filepath.Join(x, "DEBIAN/conffiles"))
	for _, want := range []string{"/etc/vigil/agent.plist", agentCAPath, agentRootPath} {
		if !strings.Contains(string(conffiles), want+"\n") {
			t.Errorf("conffiles lack %s:\n%s", want, conffiles)
		}
	}
	p, err := prefs.Load(filepath.Join(x, "etc/vigil/agent.plist"))
	if err != nil {
		t.Fatal(err)
	}
	if p.ServerCACertificate != agentCAPath || p.RepositoryRoot != agentRootPath ||
		!slices.Equal(p.LiveUpdateServers, []string{"ftp://lu.example.com/", "http://lu.example.com/"}) {
		t.Errorf("preferences: %+v", p)
	}
	for src, dst := range map[string]string{ca: agentCAPath, root: agentRootPath} {
		want, _ := os.ReadFile(src)
		if got, err := os.ReadFile(filepath.Join(x, dst)); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s in the package is not %s: %v", dst, src, err)
		}
	}
}
