//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
)

// process is a running vigil process: a *fileProc on this host or a
// *netlab.Proc in a lab host.
type process interface {
	Kill()
	Stop() error
	Log() string
	WaitLog(t testing.TB, substr string, timeout time.Duration)
}

// place is where vigil processes run: this host or a lab host.
type place struct {
	name string
	// start starts `vigil args...` in the background.
	start func(t testing.TB, name string, args ...string) process
	// command returns `vigil args...` to run to completion.
	command func(ctx context.Context, args ...string) *exec.Cmd
}

// localPlace runs processes on this host.
func localPlace() place {
	return place{
		name: "local",
		start: func(t testing.TB, name string, args ...string) process {
			t.Helper()
			return startLocal(t, name, args...)
		},
		command: func(ctx context.Context, args ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, vigilBin, args...)
			cmd.Env = cleanEnv()
			cmd.SysProcAttr = sysProcAttr()
			return cmd
		},
	}
}

// hostPlace runs processes inside a lab host's namespace, with the lab's
// environment (labEnv).
func hostPlace(h *netlab.Host) place {
	if h.Env == nil {
		h.Env = labEnv(h.Lab())
	}
	return place{
		name: h.Name,
		start: func(t testing.TB, name string, args ...string) process {
			t.Helper()
			var p *netlab.Proc
			raceCheck(t, h.Name+" "+name, func() string {
				if p == nil {
					return ""
				}
				return p.Log()
			})
			p = h.Start(t, vigilBin, args...)
			return nsProc{p}
		},
		command: func(ctx context.Context, args ...string) *exec.Cmd {
			return h.CommandContext(ctx, vigilBin, args...)
		},
	}
}

// nsProc is a process in a lab host.
type nsProc struct{ *netlab.Proc }

// Stop sends SIGTERM to the process alone, once, and waits up to 10
// seconds before SIGKILL. (netlab.Proc.Stop signals the process and then
// its group: when the process exits cleanly between the two, after it
// stopped handling SIGTERM, the second signal makes its exit status
// "terminated", a false failure.)
func (p nsProc) Stop() error {
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			p.Kill()
		}
	}
	return p.Wait()
}

// member is one agent of a fleet under test.
type member struct {
	name   string // also its Hostname preference
	groups []string
	place  place
	plist  string
	state  string
	proc   process
	id     string
	// killedAfter holds, for each SIGKILL of this agent, the last sequence
	// issued before it: the only commands a kill may have interrupted.
	killedAfter []uint64
}

// issued is a command the test issued, and the status each targeted agent
// must report.
type issued struct {
	api.CommandInfo
	want string // command.StatusOK unless the test says otherwise
}

// fleet is a server's data directory and admin endpoint, its agents, and
// the commands the test issued.
type fleet struct {
	t         *testing.T
	admin     place  // where admin commands run
	adminURL  string // admin API base URL, as seen from admin
	dataDir   string
	members   []*member
	cmds      []issued
	startedAt time.Time
}

// logf logs with the time since the fleet was made.
func (f *fleet) logf(format string, args ...any) {
	f.t.Helper()
	f.t.Logf("[%6.2fs] %s", time.Since(f.startedAt).Seconds(), fmt.Sprintf(format, args...))
}

// vigil runs an admin subcommand (send, agents, results) where admin
// commands run, and returns its standard output.
func (f *fleet) vigil(sub string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{sub, "-admin", f.adminURL, "-token-file", filepath.Join(f.dataDir, server.FileAdminToken)}, args...)
	cmd := f.admin.command(ctx, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("vigil %s: %v: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// addMember writes an agent's preference file. The server's data directory
// must exist (the server must have started once).
func (f *fleet) addMember(name string, pl place, nodeCommURL, group string, port int, ifname string, groups ...string) *member {
	f.t.Helper()
	dd := server.DataDir{Path: f.dataDir}
	pub, err := dd.PublicKey()
	if err != nil {
		f.t.Fatal(err)
	}
	secret, err := dd.EnrollSecret()
	if err != nil {
		f.t.Fatal(err)
	}
	dir := f.t.TempDir()
	m := &member{name: name, groups: groups, place: pl, plist: filepath.Join(dir, name+".plist"), state: filepath.Join(dir, "state")}
	err = prefs.Write(m.plist, &prefs.Agent{
		MulticastAddress: group, MulticastPort: port, MulticastInterface: ifname,
		NodeCommURL: nodeCommURL, ServerPublicKey: pub, EnrollmentSecret: secret,
		StateDirectory: m.state, Groups: groups, CheckInInterval: 5 * time.Second,
		Hostname: name, LogLevel: "info",
	}, plist.XMLFormat)
	if err != nil {
		f.t.Fatal(err)
	}
	f.members = append(f.members, m)
	return m
}

// startAgent starts (or restarts) an agent and waits until it runs.
func (f *fleet) startAgent(m *member) {
	f.t.Helper()
	m.proc = m.place.start(f.t, m.name, "agent", "-config", m.plist)
	m.proc.WaitLog(f.t, "agent running", 30*time.Second)
}

// killAgent SIGKILLs an agent.
func (f *fleet) killAgent(m *member) {
	f.t.Helper()
	m.killedAfter = append(m.killedAfter, f.lastSeq())
	m.proc.Kill()
	f.logf("SIGKILLed agent %s after command %d", m.name, f.lastSeq())
}

// learnIDs maps each member to its agent id through `vigil agents -json`.
func (f *fleet) learnIDs() {
	f.t.Helper()
	byHost := map[string]string{}
	for _, a := range f.agentInfo() {
		if _, dup := byHost[a.Hostname]; dup {
			f.t.Fatalf("two agents report hostname %q (an agent enrolled twice?)", a.Hostname)
		}
		byHost[a.Hostname] = a.ID
	}
	for _, m := range f.members {
		if m.id = byHost[m.name]; m.id == "" {
			f.t.Fatalf("agent %s is not enrolled; enrolled: %v", m.name, byHost)
		}
	}
	if len(byHost) != len(f.members) {
		f.t.Fatalf("%d agents enrolled, want %d: %v", len(byHost), len(f.members), byHost)
	}
}

func (f *fleet) agentInfo() []api.AgentInfo {
	f.t.Helper()
	out, err := f.vigil("agents", "-json")
	if err != nil {
		f.t.Fatal(err)
	}
	var as []api.AgentInfo
	if err := json.Unmarshal(out, &as); err != nil {
		f.t.Fatalf("vigil agents -json: %v\n%s", err, out)
	}
	return as
}

func (f *fleet) lastSeq() uint64 {
	if len(f.cmds) == 0 {
		return 0
	}
	return f.cmds[len(f.cmds)-1].Seq
}

// send issues a command with `vigil send -json` and records it.
func (f *fleet) send(target command.Target, name string, args ...string) api.CommandInfo {
	f.t.Helper()
	return f.sendWant(command.StatusOK, "", target, name, args...)
}

// sendWant is send for a command whose targeted agents must report the
// status want, optionally with an expiry.
func (f *fleet) sendWant(want, expires string, target command.Target, name string, args ...string) api.CommandInfo {
	f.t.Helper()
	cl := []string{"-json"}
	if expires != "" {
		cl = append(cl, "-expires", expires)
	}
	switch {
	case target.All:
		cl = append(cl, "-all")
	case len(target.Groups) > 0:
		cl = append(cl, "-group", strings.Join(target.Groups, ","))
	default:
		cl = append(cl, "-agent", strings.Join(target.Agents, ","))
	}
	cl = append(cl, name)
	cl = append(cl, args...)
	out, err := f.vigil("send", cl...)
	if err != nil {
		f.t.Fatal(err)
	}
	var info api.CommandInfo
	if err := json.Unmarshal(out, &info); err != nil {
		f.t.Fatalf("vigil send -json: %v\n%s", err, out)
	}
	if last := f.lastSeq(); last != 0 && info.Seq != last+1 {
		f.t.Fatalf("command got sequence %d, want %d: someone else issued commands", info.Seq, last+1)
	}
	f.cmds = append(f.cmds, issued{CommandInfo: info, want: want})
	return info
}

// sendPlanned issues the i-th command of a mixed plan: pings to all, to a
// group, to one agent and to two agents, and "set" to a group. Groups are
// those of newStandardFleet: g1 = members 0 and 1, g2 = members 1 and 2.
func (f *fleet) sendPlanned(i int) api.CommandInfo {
	f.t.Helper()
	ms := f.members
	switch i % 6 {
	case 1:
		return f.send(command.Target{Groups: []string{"g1"}}, "set", "checkin_interval="+strconv.Itoa(5+i%4))
	case 2:
		return f.send(command.Target{Agents: []string{ms[i%len(ms)].id}}, "ping")
	case 4:
		return f.send(command.Target{Groups: []string{"g2"}}, "ping")
	case 5:
		return f.send(command.Target{Agents: []string{ms[0].id, ms[len(ms)-1].id}}, "ping")
	}
	return f.send(command.Target{All: true}, "ping")
}

// targets reports whether command c is for member m.
func (m *member) targets(c issued) bool { return c.Target.Matches(m.id, m.groups) }

// mayInterrupt reports whether a SIGKILL of m may have interrupted seq.
func (m *member) mayInterrupt(seq uint64) bool {
	for _, k := range m.killedAfter {
		if seq <= k {
			return true
		}
	}
	return false
}

func (f *fleet) results(seq uint64) (api.CommandResults, error) {
	var res api.CommandResults
	out, err := f.vigil("results", "-json", strconv.FormatUint(seq, 10))
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("vigil results -json %d: %v\n%s", seq, err, out)
	}
	return res, nil
}

// waitResults waits until every agent each command targets has a stored
// result, then checks them: the wanted status (or "interrupted" for at most
// one command per SIGKILL of an agent, issued before the kill) and no result
// from an agent the command did not target.
func (f *fleet) waitResults(timeout time.Duration) {
	f.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	done := map[uint64]api.CommandResults{}
	for {
		var missing []string
		for _, c := range f.cmds {
			if _, ok := done[c.Seq]; ok {
				continue
			}
			res, err := f.results(c.Seq)
			if err != nil {
				// The server may be restarting; try again.
				missing = append(missing, fmt.Sprintf("%d (%v)", c.Seq, err))
				continue
			}
			if who := f.pending(c, res); len(who) > 0 {
				missing = append(missing, fmt.Sprintf("%d %s for %s", c.Seq, c.Name, strings.Join(who, ",")))
				continue
			}
			done[c.Seq] = res
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("after %v, results still missing for %d of %d commands: %s", timeout, len(missing), len(f.cmds), strings.Join(missing, "; "))
		}
		time.Sleep(250 * time.Millisecond)
	}
	f.logf("all %d commands have every targeted agent's result (waited %v)", len(f.cmds), time.Since(start).Round(time.Millisecond))

	interrupted := map[string]int{}
	for _, c := range f.cmds {
		res := done[c.Seq]
		for _, r := range res.Results {
			m := f.byID(r.AgentID)
			switch {
			case m == nil:
				f.t.Errorf("command %d: result from unknown agent %s", c.Seq, r.AgentID)
			case !m.targets(c):
				f.t.Errorf("command %d (%s, target %+v): result %q from agent %s, which it does not target", c.Seq, c.Name, c.Target, r.Status, m.name)
			case r.Status == c.want:
			case r.Status == command.StatusInterrupted && m.mayInterrupt(c.Seq):
				interrupted[m.name]++
				if interrupted[m.name] > len(m.killedAfter) {
					f.t.Errorf("agent %s: %d interrupted commands for %d kills", m.name, interrupted[m.name], len(m.killedAfter))
				}
			default:
				f.t.Errorf("command %d (%s %v): agent %s reported %q (%s), want %q", c.Seq, c.Name, c.Args, m.name, r.Status, r.Output, c.want)
			}
		}
	}
}

// pending lists the targeted agents without a result for c.
func (f *fleet) pending(c issued, res api.CommandResults) []string {
	var who []string
	for _, m := range f.members {
		if !m.targets(c) {
			continue
		}
		i := slices.IndexFunc(res.Results, func(r api.AgentResult) bool { return r.AgentID == m.id })
		if i < 0 || res.Results[i].Status == "pending" {
			who = append(who, m.name)
		}
	}
	return who
}

func (f *fleet) byID(id string) *member {
	for _, m := range f.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

// stopAgents stops every agent gracefully (SIGTERM).
func (f *fleet) stopAgents() {
	f.t.Helper()
	for _, m := range f.members {
		if err := m.proc.Stop(); err != nil {
			f.t.Errorf("agent %s: exit status %v", m.name, err)
		}
	}
}

// checkJournals proves exactly-once from each stopped agent's journal:
// every command targeted at it that it had to run was started exactly once,
// commands it had to pass over (expired) were not started, and nothing else
// was started.
func (f *fleet) checkJournals() {
	f.t.Helper()
	for _, m := range f.members {
		seqs, err := agent.ExecutedSeqs(m.state)
		if err != nil {
			f.t.Fatalf("agent %s journal: %v", m.name, err)
		}
		count := map[uint64]int{}
		for _, s := range seqs {
			count[s]++
		}
		want := 0
		for _, c := range f.cmds {
			n := count[c.Seq]
			delete(count, c.Seq)
			switch {
			case !m.targets(c) && n != 0:
				f.t.Errorf("agent %s started command %d (%s, target %+v) %d times; it does not target the agent", m.name, c.Seq, c.Name, c.Target, n)
			case m.targets(c) && c.want == command.StatusExpired && n != 0:
				f.t.Errorf("agent %s started expired command %d %d times", m.name, c.Seq, n)
			case m.targets(c) && c.want != command.StatusExpired && n != 1:
				f.t.Errorf("agent %s started command %d (%s) %d times, want exactly once", m.name, c.Seq, c.Name, n)
			}
			if m.targets(c) && c.want != command.StatusExpired {
				want++
			}
		}
		if len(count) > 0 {
			var extra []uint64
			for s := range count {
				extra = append(extra, s)
			}
			sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
			f.t.Errorf("agent %s started commands the test never issued: %v", m.name, extra)
		}
		f.logf("agent %s (%s, groups %v): journal shows %d commands started, each once; %d expected", m.name, m.id, m.groups, len(seqs), want)
	}
}

// waitCounters polls `vigil agents -json` until ok accepts every agent's
// reported counters (sent at check-in), and returns them by member name.
func (f *fleet) waitCounters(timeout time.Duration, ok func(m *member, c map[string]uint64) bool) map[string]map[string]uint64 {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]map[string]uint64{}
		all := true
		for _, a := range f.agentInfo() {
			m := f.byID(a.ID)
			if m == nil {
				continue
			}
			got[m.name] = a.Counters
			if !ok(m, a.Counters) {
				all = false
			}
		}
		if all && len(got) == len(f.members) {
			return got
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("agents' reported counters not as expected after %v: %v", timeout, got)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
