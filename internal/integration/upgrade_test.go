//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/server"
)

// buildVersion builds ./cmd/vigil into out with buildinfo.Version set to
// version.
func buildVersion(out, version string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out, "-ldflags", "-X github.com/vigil-fleet/vigil/internal/buildinfo.Version=" + version}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/vigil")...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building vigil %s: %v\n%s", version, err, b)
	}
	return nil
}

// buildProgram builds, for this platform, a program whose main is body
// (with fmt, os and time imported): a release that cannot run.
func buildProgram(dir, name, body, out string) error {
	src := filepath.Join(dir, name)
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"time\"\n)\n\n"+
		"var _ = time.Second\n\nfunc main() {\n"+body+"\n}\n"), 0o644)
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", name, err, b)
	}
	return nil
}

// binPlace runs vigil from bin (an agent's own copy of the executable).
func binPlace(bin string) place {
	pl := localPlace()
	pl.start = func(t testing.TB, name string, args ...string) process {
		t.Helper()
		return startBinary(t, bin, name, args...)
	}
	return pl
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(to), 0o755)
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func sameBytes(t *testing.T, path, like string) bool {
	t.Helper()
	a, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(like)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(a, b)
}

// Release versions of the upgrade tests.
const vN, vN1, vBroken, vHang, vTampered = "v1.0.0", "v1.1.0", "v1.2.0", "v1.2.1-hang", "v1.3.0"

// releaseBins are the executables published as releases, built once.
type releaseBins struct{ n, n1, broken, hang string }

var (
	releaseOnce  sync.Once
	releaseBuilt releaseBins
	releaseErr   error
)

// buildReleases builds vigil as vN and vN1, a program that exits 1 at
// start and one that starts but never checks in, next to vigilBin.
func buildReleases(t *testing.T) releaseBins {
	t.Helper()
	releaseOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(vigilBin), "releases")
		b := releaseBins{n: filepath.Join(dir, "n", "vigil"), n1: filepath.Join(dir, "n1", "vigil"),
			broken: filepath.Join(dir, "broken", "vigil"), hang: filepath.Join(dir, "hang", "vigil")}
		if releaseErr = buildVersion(b.n, vN); releaseErr != nil {
			return
		}
		if releaseErr = buildVersion(b.n1, vN1); releaseErr != nil {
			return
		}
		if releaseErr = buildProgram(dir, "broken", `fmt.Fprintln(os.Stderr, "broken release: missing library, cannot start"); os.Exit(1)`, b.broken); releaseErr != nil {
			return
		}
		releaseErr = buildProgram(dir, "hang", `fmt.Fprintln(os.Stderr, "hanging release: waiting for ever"); for { time.Sleep(time.Hour) }`, b.hang)
		releaseBuilt = b
	})
	if releaseErr != nil {
		t.Fatal(releaseErr)
	}
	return releaseBuilt
}

// upgradeLab is a vendor repository with vN and vN1 published, served by
// vigil liveupdate, and a server on loopback.
type upgradeLab struct {
	t    *testing.T
	dir  string
	bins releaseBins
	repo string
	r    *publish.Repo
	lu   string // LiveUpdate URL
	srv  *loopbackServer
	f    *fleet
}

func newUpgradeLab(t *testing.T) *upgradeLab {
	ul := &upgradeLab{t: t, dir: t.TempDir(), bins: buildReleases(t)}
	ul.repo = filepath.Join(ul.dir, "vendor")
	ul.mustVigil("repo", "init", "-dir", ul.repo)
	ul.addRelease(vN, ul.bins.n)
	ul.addRelease(vN1, ul.bins.n1)
	var err error
	if ul.r, err = publish.Open(ul.repo); err != nil {
		t.Fatal(err)
	}
	luAddr := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	ul.lu = "http://" + luAddr + "/"
	luPlist, err := plist.Marshal(map[string]any{"Root": ul.r.PublicDir(), "HTTP": luAddr, "FTP": "off"}, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ul.dir, "liveupdate.plist"), luPlist, 0o644)
	lu := startLocal(t, "liveupdate", "liveupdate", "-config", filepath.Join(ul.dir, "liveupdate.plist"))
	lu.WaitLog(t, "serving HTTP", 30*time.Second)
	ul.srv = newLoopbackServer(t)
	ul.f = ul.srv.fleet(t)
	return ul
}

func (ul *upgradeLab) mustVigil(args ...string) string {
	ul.t.Helper()
	code, out, errOut := runVigil(ul.t, args...)
	if code != 0 {
		ul.t.Fatalf("vigil %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// addRelease publishes bin as release version for this platform.
func (ul *upgradeLab) addRelease(version, bin string) {
	ul.t.Helper()
	ul.mustVigil("repo", "add-release", "-dir", ul.repo, "-os", runtime.GOOS, "-arch", runtime.GOARCH, version, bin)
	ul.mustVigil("repo", "publish", "-dir", ul.repo)
}

// upgradeAgent is an agent of the lab, run from its own copy of vN.
type upgradeAgent struct {
	*member
	bin string
}

// startAgent starts an agent from its own copy of release vN, with the
// lab's LiveUpdate server and the given UpgradeInterval.
func (ul *upgradeLab) startAgent(name string, interval time.Duration) upgradeAgent {
	t := ul.t
	t.Helper()
	bin := filepath.Join(ul.dir, name, "bin", "vigil")
	copyFile(t, ul.bins.n, bin)
	m := ul.f.addMember(name, binPlace(bin), ul.srv.api, testGroup, ul.srv.port, ul.srv.ifname)
	p, err := prefs.Load(m.plist)
	if err != nil {
		t.Fatal(err)
	}
	p.LiveUpdateServers = []string{ul.lu}
	p.RepositoryRoot = ul.r.RootPath()
	p.DefinitionsDirectory = filepath.Join(filepath.Dir(m.plist), "definitions")
	p.UpgradeInterval = interval
	if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	ul.f.startAgent(m)
	return upgradeAgent{m, bin}
}

// waitVersions waits until the server lists each agent (by host name) at
// its version.
func (ul *upgradeLab) waitVersions(want map[string]string) {
	ul.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string]string{}
		for _, ai := range ul.f.agentInfo() {
			got[ai.Hostname] = ai.Version
		}
		ok := true
		for h, v := range want {
			ok = ok && got[h] == v
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ul.t.Fatalf("the server lists versions %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAgentUpgrade: agents running release v1.0.0 upgrade themselves to
// v1.1.0 by command, through their LiveUpdate server, and the server sees
// them at v1.1.0; an agent given a release that exits at start (v1.2.0)
// rolls back to v1.0.0 and reports why; a tampered release (v1.3.0) is
// refused before anything is replaced.
func TestAgentUpgrade(t *testing.T) {
	ul := newUpgradeLab(t)
	bins, mustVigil, addRelease, f, srv, r := ul.bins, ul.mustVigil, ul.addRelease, ul.f, ul.srv, ul.r
	binN, binN1, binBroken, binHang := bins.n, bins.n1, bins.broken, bins.hang
	exe := map[string]string{}
	for _, name := range []string{"up-a", "up-b", "up-c"} {
		exe[name] = ul.startAgent(name, 0).bin
	}
	f.learnIDs()
	a, b, c := f.members[0], f.members[1], f.members[2]
	waitVersions := ul.waitVersions
	waitVersions(map[string]string{"up-a": vN, "up-b": vN, "up-c": vN})
	output := func(seq uint64, m *member) string {
		t.Helper()
		res, err := f.results(seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Results {
			if r.AgentID == m.id {
				return r.Output
			}
		}
		t.Fatalf("no result of %s for command %d", m.name, seq)
		return ""
	}

	// 1. N → N+1 by command (the newest release), on two agents.
	pids := map[string]int{a.name: a.proc.(*fileProc).cmd.Process.Pid, b.name: b.proc.(*fileProc).cmd.Process.Pid}
	up := f.send(command.Target{Agents: []string{a.id, b.id}}, command.Upgrade)
	f.waitResults(3 * time.Minute)
	waitVersions(map[string]string{"up-a": vN1, "up-b": vN1, "up-c": vN})
	for _, m := range []*member{a, b} {
		out := output(up.Seq, m)
		f.logf("%s: upgrade: %s", m.name, out)
		if !strings.Contains(out, "upgraded from "+vN+" to "+vN1) {
			t.Errorf("%s: upgrade result %q", m.name, out)
		}
		if !sameBytes(t, exe[m.name], binN1) {
			t.Errorf("%s: the executable is not release %s", m.name, vN1)
		}
		if !sameBytes(t, exe[m.name]+".old", binN) {
			t.Errorf("%s: %s.old is not release %s", m.name, exe[m.name], vN)
		}
		// The new version runs in the same process (exec), which the
		// service manager (or this test) started.
		fp := m.proc.(*fileProc)
		if fp.exited() || fp.cmd.Process.Pid != pids[m.name] {
			t.Errorf("%s: the agent process %d is gone (%v)", m.name, pids[m.name], fp.err)
		}
		if log := fp.Log(); !strings.Contains(log, "upgrade: the new version checked in; running it in this process") {
			t.Errorf("%s: no exec after the trial in its log", m.name)
		}
	}
	if out := mustVigil("agents", "-admin", srv.admin, "-token-file", filepath.Join(srv.dataDir, server.FileAdminToken)); !strings.Contains(out, vN1) || !strings.Contains(out, "VERSION") {
		t.Errorf("vigil agents does not show %s:\n%s", vN1, out)
	}
	// Upgraded agents still execute commands.
	f.send(command.Target{Agents: []string{a.id, b.id}}, command.Ping)
	f.waitResults(60 * time.Second)
	// Asking again for the version it runs changes nothing.
	again := f.send(command.Target{Agents: []string{a.id}}, command.Upgrade, "version="+vN1)
	f.waitResults(60 * time.Second)
	if out := output(again.Seq, a); !strings.Contains(out, "already running "+vN1) {
		t.Errorf("upgrade to the running version: %q", out)
	}

	// 2. A broken N+1 (exits at start): the agent rolls back to N and
	// says why.
	addRelease(vBroken, binBroken)
	cPid := c.proc.(*fileProc).cmd.Process.Pid
	broken := f.sendWant(command.StatusError, "", command.Target{Agents: []string{c.id}}, command.Upgrade)
	f.waitResults(3 * time.Minute)
	out := output(broken.Seq, c)
	f.logf("%s: upgrade to the broken release: %s", c.name, out)
	for _, want := range []string{"rolled back, still running " + vN, vBroken + " exited before checking in", "exit status 1", "broken release: missing library, cannot start"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback result %q lacks %q", out, want)
		}
	}
	if !sameBytes(t, exe[c.name], binN) {
		t.Errorf("%s: after the rollback the executable is not release %s", c.name, vN)
	}
	if fp := c.proc.(*fileProc); fp.exited() || fp.cmd.Process.Pid != cPid {
		t.Errorf("%s: the agent process is gone after the rollback (%v)", c.name, fp.err)
	}
	f.send(command.Target{Agents: []string{c.id}}, command.Ping)
	f.waitResults(60 * time.Second)
	waitVersions(map[string]string{"up-c": vN})

	// 2b. A release that starts but never checks in: killed at the trial
	// limit, and the agent goes back to N. (A pre-release: fetched only
	// by name.)
	addRelease(vHang, binHang)
	hang := f.sendWant(command.StatusError, "", command.Target{Agents: []string{c.id}}, command.Upgrade, "version="+vHang, "trial=10")
	f.waitResults(3 * time.Minute)
	out = output(hang.Seq, c)
	f.logf("%s: upgrade to the hanging release: %s", c.name, out)
	for _, want := range []string{"rolled back, still running " + vN, vHang + " did not check in within 10s", "hanging release: waiting for ever"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback result %q lacks %q", out, want)
		}
	}
	if !sameBytes(t, exe[c.name], binN) {
		t.Errorf("%s: after the rollback the executable is not release %s", c.name, vN)
	}

	// 3. A tampered release: one byte of the file served flipped. It is
	// refused by verification; the executable is untouched and the
	// agent never stopped.
	addRelease(vTampered, binN1)
	var served string
	filepath.WalkDir(filepath.Join(r.PublicDir(), "targets", "vigil", vTampered), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			served = p
		}
		return nil
	})
	if served == "" {
		t.Fatalf("no served target for %s under %s", vTampered, r.PublicDir())
	}
	data, err := os.ReadFile(served)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	// A new file, not a write through a link the repository may share.
	if err := os.Remove(served); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(served, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(exe[c.name])
	if err != nil {
		t.Fatal(err)
	}
	oldBefore, _ := os.ReadFile(exe[c.name] + ".old")
	logBefore := strings.Count(c.proc.Log(), "stopping to try it")
	tampered := f.sendWant(command.StatusError, "", command.Target{Agents: []string{c.id}}, command.Upgrade, "version="+vTampered)
	f.waitResults(3 * time.Minute)
	out = output(tampered.Seq, c)
	f.logf("%s: upgrade to the tampered release: %s", c.name, out)
	if !strings.Contains(out, "upgrade refused, nothing replaced") || !strings.Contains(out, "does not match its signed hash or length") {
		t.Errorf("tampered release result: %q", out)
	}
	after, err := os.ReadFile(exe[c.name])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the tampered release changed the executable")
	}
	if oldAfter, _ := os.ReadFile(exe[c.name] + ".old"); !bytes.Equal(oldBefore, oldAfter) {
		t.Errorf("the tampered release changed %s.old", exe[c.name])
	}
	if n := strings.Count(c.proc.Log(), "stopping to try it"); n != logBefore {
		t.Errorf("the agent stopped to try the tampered release")
	}
	waitVersions(map[string]string{"up-a": vN1, "up-b": vN1, "up-c": vN})
	for _, ai := range f.agentInfo() {
		f.logf("agent %s %s/%s version %s", ai.Hostname, ai.OS, ai.Arch, ai.Version)
	}
	f.stopAgents()
	f.checkJournals()
}

// TestAgentScheduledUpgrade: an agent with UpgradeInterval upgrades itself
// to the newest release with no command, soon after it starts; one whose
// newest release is broken tries it once, rolls back, and the schedule
// does not try that release again.
func TestAgentScheduledUpgrade(t *testing.T) {
	ul := newUpgradeLab(t)
	s1 := ul.startAgent("sched-1", time.Hour)
	// The first scheduled check comes 15 to 30 seconds after the start.
	s1.proc.WaitLog(t, "upgrade: the new version checked in; running it in this process", 90*time.Second)
	ul.waitVersions(map[string]string{"sched-1": vN1})
	if !sameBytes(t, s1.bin, ul.bins.n1) {
		t.Errorf("sched-1: the executable is not release %s", vN1)
	}
	// The upgraded agent's own first check finds nothing newer.
	s1.proc.WaitLog(t, "already running "+vN1, 90*time.Second)

	ul.addRelease(vBroken, ul.bins.broken)
	s2 := ul.startAgent("sched-2", time.Hour)
	s2.proc.WaitLog(t, "upgrade: the new version failed its trial; going back", 90*time.Second)
	// The agent runs vN again; its next check (15 to 30 seconds after it
	// restarted) avoids the release that failed.
	s2.proc.WaitLog(t, "not trying "+vBroken+" again: it failed its trial", 90*time.Second)
	if n := strings.Count(s2.proc.Log(), "upgrade: trial started"); n != 1 {
		t.Errorf("sched-2 tried a release %d times, want once", n)
	}
	if !sameBytes(t, s2.bin, ul.bins.n) {
		t.Errorf("sched-2: the executable is not release %s after the rollback", vN)
	}
	ul.waitVersions(map[string]string{"sched-1": vN1, "sched-2": vN})
	ul.f.learnIDs()
	ul.f.stopAgents()
}
