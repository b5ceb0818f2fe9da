package agent

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// upgradeStateDir makes a state directory whose journal started command 5
// (the upgrade) without a result, as the old process leaves it, and whose
// upgrade state file is st.
func upgradeStateDir(t *testing.T, st upgradeState) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileJournalName), []byte("S 4\nR 4 {\"seq\":4,\"status\":\"ok\"}\nA 4\nS 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(dir, FileUpgradeName), st); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newUpgradeAgent(t *testing.T, dir string) *Agent {
	t.Helper()
	a, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Prefs: &prefs.Agent{
		MulticastAddress: "239.255.81.92", MulticastPort: 8192, NodeCommURL: "http://127.0.0.1:1/vigil",
		StateDirectory: dir, Hostname: "upgrade-test",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// The agent that starts after a decided upgrade reports the decision for
// the upgrade command (instead of "interrupted"), records it in its
// journal and removes the state file.
func TestUpgradeResultReportedByNextAgent(t *testing.T) {
	dir := upgradeStateDir(t, upgradeState{Seq: 5, From: "v1.0.0", To: "v1.1.0", Phase: phaseDone,
		Status: command.StatusError, Output: "upgrade to v1.1.0 rolled back, still running v1.0.0: exit status 1"})
	a := newUpgradeAgent(t, dir)
	if len(a.results) != 1 || a.results[0].Seq != 5 || a.results[0].Status != command.StatusError || !strings.Contains(a.results[0].Output, "rolled back") {
		t.Fatalf("pending results %+v, want the rollback of command 5", a.results)
	}
	if _, err := os.Stat(filepath.Join(dir, FileUpgradeName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the upgrade state file is still there (%v)", err)
	}
	a.Close()
	// The journal holds the result: a restart reports it, not "interrupted".
	st, err := readJournal(filepath.Join(dir, FileJournalName))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pending) != 1 || st.Pending[0].Status != command.StatusError || len(st.Open) != 0 {
		t.Errorf("journal after the report: pending %+v, open %v", st.Pending, st.Open)
	}
}

// An agent that finds the upgrade still on trial (the old process died
// during the trial) reports that, naming the version it runs.
func TestUpgradeStoppedDuringTrial(t *testing.T) {
	dir := upgradeStateDir(t, upgradeState{Seq: 5, From: "v1.0.0", To: "v1.1.0", Phase: phaseTrial})
	a := newUpgradeAgent(t, dir)
	if len(a.results) != 1 || a.results[0].Status != command.StatusError || !strings.Contains(a.results[0].Output, "stopped while version v1.1.0 was on trial") {
		t.Fatalf("pending results %+v", a.results)
	}
}

// A trial child leaves the upgrade command unreported (the old process
// decides) and the state file in place.
func TestUpgradeTrialChildLeavesResult(t *testing.T) {
	dir := upgradeStateDir(t, upgradeState{Seq: 5, From: "v1.0.0", To: "v1.1.0", Phase: phaseTrial})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The agent owns the descriptor it is given, as a child owns fd 3.
	fd, err := syscall.Dup(int(w.Fd()))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(TrialEnv, strconv.Itoa(fd))
	a := newUpgradeAgent(t, dir)
	if len(a.results) != 0 {
		t.Errorf("a trial child would report %+v", a.results)
	}
	if _, err := os.Stat(filepath.Join(dir, FileUpgradeName)); err != nil {
		t.Errorf("the trial child removed the upgrade state: %v", err)
	}
	a.trialCheckedIn()
	a.trialCheckedIn() // once only
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "ok\n" {
		t.Errorf("trial pipe got %q, %v; want one ok", b, err)
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 2}
	io.WriteString(tb, "one\ntw")
	io.WriteString(tb, "o\n\nthree\nfour")
	if got := tb.String(); got != "two | three | four" {
		t.Errorf("tail %q", got)
	}
}
