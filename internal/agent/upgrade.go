package agent

// Self-update ("upgrade"): see docs/selfupdate.md.
//
// The running agent (version N) fetches and verifies the release, replaces
// its executable (selfupdate.Replace keeps FILE.old), writes the upgrade
// state file, and stops its main loop, releasing the state directory: Run
// returns an *UpgradeReady. Its Trial starts the new executable as a trial
// child with the same command line and VIGIL_UPGRADE_TRIAL naming a pipe;
// the child runs a whole agent and writes "ok" to the pipe after its first
// accepted check-in. On "ok" the old process stops the child and execs the
// new executable in its own place (same PID, so the service manager sees
// no restart); otherwise it kills the child, renames FILE.old back and
// returns, and the caller runs version N again. Whichever agent starts
// next reads the upgrade state file and reports the command's result.

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/selfupdate"
)

// FileUpgradeName is the upgrade state file in the state directory: it
// exists from the replacement of the executable until the next agent to
// start has reported the upgrade command's result.
const FileUpgradeName = "upgrade.json"

// FileUpgradeFailedName, in the state directory, holds the version of
// the last release that failed its trial: the schedule (UpgradeInterval)
// does not try it again.
const FileUpgradeFailedName = "upgrade-failed"

// TrialEnv is the environment variable that makes an agent a trial child:
// its value is the number of the file descriptor it writes "ok" to after
// its first accepted check-in.
const TrialEnv = "VIGIL_UPGRADE_TRIAL"

// fetchTimeout bounds the fetch of one release.
const fetchTimeout = 10 * time.Minute

// stopChildGrace is how long a trial child has to stop on SIGTERM.
const stopChildGrace = 30 * time.Second

// upgradeState is the upgrade state file.
type upgradeState struct {
	Seq   uint64 `json:"seq,string"`
	Epoch uint64 `json:"epoch,string"`
	From  string `json:"from"`
	To    string `json:"to"`
	Exe   string `json:"exe"`
	Old   string `json:"old"`
	// Phase is "trial" while the new executable is on trial, "done" once
	// the old process decided; Status and Output are then the result.
	Phase  string `json:"phase"`
	Status string `json:"status,omitempty"`
	Output string `json:"output,omitempty"`
}

const (
	phaseTrial = "trial"
	phaseDone  = "done"
)

type upgradeReq struct {
	Seq     uint64
	Epoch   uint64
	Version string
	Trial   time.Duration
	Exe     string
	Spread  time.Duration
	Avoid   string // with no Version: do not fetch this one (scheduled)
}

type upgradeOutcome struct {
	upgradeReq
	Rel definitions.Release
	Err error
}

// UpgradeReady is what Run returns when it stopped to put a new
// executable on trial: the executable is replaced already, the state
// directory is released. The caller must call Trial.
type UpgradeReady struct {
	st       upgradeState
	trial    time.Duration
	log      *slog.Logger
	stateDir string
}

func (u *UpgradeReady) Error() string {
	return fmt.Sprintf("agent stopped to try version %s (was %s)", u.st.To, u.st.From)
}

// upgrade validates an upgrade command and hands it to the upgrade worker;
// its result comes when the release is fetched (or later, from the next
// agent to start, when the executable was replaced).
func (a *Agent) upgrade(c command.Command) (string, string) {
	if err := c.Validate(); err != nil {
		return command.StatusError, err.Error()
	}
	if a.upd == nil {
		return command.StatusError, "this agent has no LiveUpdateServers in its preferences"
	}
	if a.trialOut != nil {
		return command.StatusError, "this agent is itself on trial after an upgrade; send upgrade again once it is upgraded"
	}
	if a.upgrading {
		return command.StatusError, "an upgrade is already under way"
	}
	trial, _ := command.TrialLimit(c.Args[command.ArgTrial])
	exe, err := executable()
	if err != nil {
		return command.StatusError, err.Error()
	}
	a.upgradeReq <- upgradeReq{Seq: a.core.Running(), Epoch: a.id.Epoch, Version: c.Args[command.ArgVersion], Trial: trial, Exe: exe,
		Spread: time.Duration(a.timing.SpreadMillis) * time.Millisecond}
	a.upgrading = true
	return StatusDeferred, ""
}

func executable() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", fmt.Errorf("cannot find this agent's executable: %w", err)
	}
	return exe, nil
}

// scheduledUpgrade asks the upgrade worker for the newest release
// (UpgradeInterval), unless the agent is revoked (a trial could not check
// in) or itself on trial; a release that failed its trial is avoided.
func (a *Agent) scheduledUpgrade() {
	if a.revoked || a.trialOut != nil || a.upgrading {
		return
	}
	exe, err := executable()
	if err != nil {
		a.log.Error("scheduled upgrade", "err", err)
		return
	}
	avoid := ""
	if b, err := os.ReadFile(a.path(FileUpgradeFailedName)); err == nil {
		avoid = strings.TrimSpace(string(b))
	}
	a.upgradeReq <- upgradeReq{Trial: command.DefaultTrial, Exe: exe, Avoid: avoid}
	a.upgrading = true
}

// upgradeWorker fetches releases one at a time, off the main loop.
func (a *Agent) upgradeWorker(ctx context.Context) {
	serve(ctx, a.upgradeReq, a.upgradeDone, func(r upgradeReq) time.Duration { return r.Spread }, fetchTimeout,
		func(ctx context.Context, req upgradeReq) upgradeOutcome {
			rel, err := a.upd.FetchRelease(ctx, req.Version, runtime.GOOS, runtime.GOARCH, buildinfo.String(), req.Avoid)
			return upgradeOutcome{upgradeReq: req, Rel: rel, Err: err}
		},
		func(o upgradeOutcome) { // a release fetched for nobody
			if o.Rel.Path != "" {
				os.Remove(o.Rel.Path)
			}
		})
}

// upgraded handles a fetched release in the main loop: it reports a
// failure or "already running", or replaces the executable and returns
// the *UpgradeReady that stops Run.
func (a *Agent) upgraded(o upgradeOutcome) error {
	a.upgrading = false
	if o.Rel.Path != "" {
		defer os.Remove(o.Rel.Path)
	}
	r := api.Result{Seq: o.Seq, Status: command.StatusOK}
	switch {
	case o.Err != nil:
		r.Status, r.Output = command.StatusError, "upgrade refused, nothing replaced: "+o.Err.Error()
	case o.Rel.Current:
		r.Output = fmt.Sprintf("already running %s (the release asked for is %s on %s)", buildinfo.String(), o.Rel.Version, o.Rel.Server)
	case o.Rel.Avoided:
		r.Output = fmt.Sprintf("not trying %s again: it failed its trial (%s); running %s", o.Rel.Version, FileUpgradeFailedName, buildinfo.String())
	default:
		old, err := selfupdate.Replace(o.Exe, o.Rel.Path, o.Rel.Target, runtime.GOOS, runtime.GOARCH)
		if err == nil && old == "" {
			err = errors.New("the executable was replaced but the old one could not be kept; not trying it")
		}
		if err != nil {
			r.Status, r.Output = command.StatusError, "upgrade refused: "+err.Error()
			break
		}
		st := upgradeState{Seq: o.Seq, Epoch: o.Epoch, From: buildinfo.String(), To: o.Rel.Version, Exe: o.Exe, Old: old, Phase: phaseTrial}
		if err := writeJSON(a.path(FileUpgradeName), st); err != nil {
			if rerr := os.Rename(old, o.Exe); rerr != nil {
				err = fmt.Errorf("%w; and putting %s back failed: %v", err, old, rerr)
			}
			r.Status, r.Output = command.StatusError, "upgrade abandoned: saving its state: "+err.Error()
			break
		}
		a.log.Info("upgrade: executable replaced; stopping to try it", "from", st.From, "to", st.To, "exe", o.Exe, "server", o.Rel.Server, "trial", o.Trial)
		return &UpgradeReady{st: st, trial: o.Trial, log: a.log, stateDir: a.p.StateDirectory}
	}
	if o.Err == nil {
		for _, sk := range o.Rel.Skipped {
			r.Output += "; skipped " + sk.Error()
		}
	}
	if r.Status != command.StatusOK {
		a.log.Error("upgrade failed", "err", r.Output)
	}
	a.onEvent(Event{Kind: EventExecuted, Agent: a.ID(), Seq: o.Seq, Name: command.Upgrade, Status: r.Status, Output: r.Output})
	if o.Seq == 0 {
		a.log.Info("scheduled upgrade", "status", r.Status, "output", r.Output)
		return nil
	}
	if !a.sameEpoch(o.Seq, o.Epoch) {
		return nil
	}
	rec, err := a.core.Complete(r)
	if err != nil {
		a.log.Error("recording upgrade result", "err", err)
		return nil
	}
	a.queue([]api.Result{rec})
	return nil
}

// loadUpgrade, at start, picks up the upgrade state file: a trial child
// leaves the upgrade command unreported (the old process decides);
// another agent reports the decision, or, if the state is still "trial",
// that the agent stopped during the trial, and removes the file.
func (a *Agent) loadUpgrade() error {
	var st upgradeState
	ok, err := readJSON(a.path(FileUpgradeName), &st)
	if err != nil || !ok {
		return err
	}
	drop := func() {
		a.results = slices.DeleteFunc(a.results, func(r api.Result) bool { return r.Seq == st.Seq })
	}
	if a.trialOut != nil {
		drop()
		return nil
	}
	r := api.Result{Seq: st.Seq, Status: st.Status, Output: st.Output}
	if st.Phase != phaseDone {
		r.Status = command.StatusError
		r.Output = fmt.Sprintf("the agent stopped while version %s was on trial (upgrading from %s); it now runs %s", st.To, st.From, buildinfo.String())
	}
	if st.Epoch == a.progress.Epoch && st.Seq != 0 {
		drop()
		r.ExecutedAt = time.Now().UTC()
		r.Output = api.TruncateOutput(r.Output)
		if err := a.journal.Result(r); err != nil {
			return fmt.Errorf("recording the upgrade's result: %w", err)
		}
		a.results = append(a.results, r)
		slices.SortFunc(a.results, func(x, y api.Result) int { return cmp.Compare(x.Seq, y.Seq) })
	}
	a.log.Info("upgrade finished", "status", r.Status, "output", r.Output, "running", buildinfo.String())
	if err := os.Remove(a.path(FileUpgradeName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// trialSetup makes this agent a trial child when TrialEnv is set.
func (a *Agent) trialSetup() error {
	v, ok := os.LookupEnv(TrialEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(TrialEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q: want the number of an inherited file descriptor", TrialEnv, v)
	}
	a.trialOut = os.NewFile(uintptr(fd), "upgrade-trial")
	a.log.Info("upgrade: this executable is on trial; it must check in", "version", buildinfo.String())
	return nil
}

// trialCheckedIn tells the old process, once, that this trial child
// checked in.
func (a *Agent) trialCheckedIn() {
	if a.trialOut == nil || a.trialSignalled {
		return
	}
	a.trialSignalled = true
	if _, err := io.WriteString(a.trialOut, "ok\n"); err != nil {
		a.log.Error("upgrade: telling the old process that the trial checked in", "err", err)
	}
	a.trialOut.Close()
}

// Trial runs the new executable as a trial child with this process's
// command line, and waits until it checks in, exits, the trial limit
// passes, or ctx ends. On check-in it stops the child and execs the new
// executable in this process's place: it does not return unless the exec
// fails. Otherwise it kills the child, puts the old executable back,
// records why, and returns nil: the caller runs the agent (the old
// version) again, which reports the result. It returns an error only
// when the state cannot be recorded or the old executable cannot be put
// back.
func (u *UpgradeReady) Trial(ctx context.Context) error {
	reason, stderrTail := u.try(ctx)
	if reason == "" {
		u.st.Phase, u.st.Status = phaseDone, command.StatusOK
		u.st.Output = fmt.Sprintf("upgraded from %s to %s: the new executable checked in", u.st.From, u.st.To)
		if err := writeJSON(filepath.Join(u.stateDir, FileUpgradeName), u.st); err != nil {
			return fmt.Errorf("upgrade: recording the result: %w", err)
		}
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, TrialEnv+"=") })
		u.log.Info("upgrade: the new version checked in; running it in this process", "version", u.st.To, "exe", u.st.Exe)
		err := syscall.Exec(u.st.Exe, os.Args, env)
		return fmt.Errorf("upgrade: executing %s: %w (it is installed: the next start runs it)", u.st.Exe, err)
	}
	if stderrTail != "" {
		reason += "; its last output: " + stderrTail
	}
	u.log.Error("upgrade: the new version failed its trial; going back", "version", u.st.To, "reason", reason)
	if err := os.Rename(u.st.Old, u.st.Exe); err != nil {
		return fmt.Errorf("upgrade: %s failed its trial (%s), and putting %s back failed: %w", u.st.To, reason, u.st.Old, err)
	}
	if d, err := os.Open(filepath.Dir(u.st.Exe)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if err := atomicfile.WriteFile(filepath.Join(u.stateDir, FileUpgradeFailedName), []byte(u.st.To+"\n"), 0o600); err != nil {
		u.log.Error("upgrade: recording the failed version", "err", err)
	}
	u.st.Phase, u.st.Status = phaseDone, command.StatusError
	u.st.Output = fmt.Sprintf("upgrade to %s rolled back, still running %s: %s", u.st.To, u.st.From, reason)
	if err := writeJSON(filepath.Join(u.stateDir, FileUpgradeName), u.st); err != nil {
		return fmt.Errorf("upgrade: recording the rollback: %w", err)
	}
	return nil
}

// try runs the trial child and returns "" when it checked in, else why
// not and the last lines it wrote to stderr. The child is stopped when try
// returns.
func (u *UpgradeReady) try(ctx context.Context) (reason, stderrTail string) {
	r, w, err := os.Pipe()
	if err != nil {
		return "cannot make the trial's pipe: " + err.Error(), ""
	}
	defer r.Close()
	tail := &tailBuffer{max: 8}
	cmd := exec.Command(u.st.Exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, TrialEnv+"=") }), TrialEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout = os.Stdout
	cmd.Stderr = io.MultiWriter(os.Stderr, tail)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Sprintf("version %s did not start: %v", u.st.To, err), ""
	}
	w.Close()
	u.log.Info("upgrade: trial started", "version", u.st.To, "pid", cmd.Process.Pid, "limit", u.trial)
	checkedIn := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		checkedIn <- line == "ok\n"
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	limit := time.NewTimer(u.trial)
	defer limit.Stop()
	stop := func(sig syscall.Signal) {
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(stopChildGrace):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	for {
		select {
		case ok := <-checkedIn:
			if ok {
				stop(syscall.SIGTERM)
				return "", ""
			}
			checkedIn = nil // the pipe closed: the child is exiting; wait for its status
		case err := <-exited:
			return fmt.Sprintf("version %s exited before checking in (%v, after %s)", u.st.To, exitStatus(err), time.Since(start).Round(time.Millisecond)), tail.String()
		case <-limit.C:
			stop(syscall.SIGKILL)
			return fmt.Sprintf("version %s did not check in within %s", u.st.To, u.trial), tail.String()
		case <-ctx.Done():
			stop(syscall.SIGKILL)
			return fmt.Sprintf("the agent was stopped while version %s was on trial", u.st.To), tail.String()
		}
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tailBuffer keeps the last max lines written to it.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  string
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.part + string(p)
	parts := strings.Split(s, "\n")
	t.part = parts[len(parts)-1]
	if len(t.part) > 4096 {
		t.part = t.part[:4096]
	}
	for _, l := range parts[:len(parts)-1] {
		if l = strings.TrimSpace(l); l != "" {
			t.lines = append(t.lines, l)
		}
	}
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if p := strings.TrimSpace(t.part); p != "" {
		lines = append(slices.Clone(lines), p)
	}
	return strings.Join(lines, " | ")
}
