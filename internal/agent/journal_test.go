package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
)

func TestJournalReplay(t *testing.T) {
	p := filepath.Join(t.TempDir(), "journal")
	j, st, err := OpenJournal(p)
	if err != nil || st.LastSeq != 0 {
		t.Fatalf("open: %v %+v", err, st)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(j.Reset(7, 10, false))
	must(j.Start(11))
	must(j.Result(api.Result{Seq: 11, Status: "ok", Output: "pong"}))
	must(j.Acked([]uint64{11}))
	must(j.Skip(12))
	must(j.Start(13))
	must(j.Result(api.Result{Seq: 13, Status: "ok"}))
	must(j.Start(14)) // the agent dies while running 14
	j.Close()

	_, st, err = OpenJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 7 || st.LastSeq != 14 {
		t.Fatalf("state %+v", st)
	}
	if len(st.Pending) != 2 || st.Pending[0].Seq != 13 || st.Pending[1].Seq != 14 || st.Pending[1].Status != command.StatusInterrupted {
		t.Fatalf("pending %+v", st.Pending)
	}
	if got := st.Started; len(got) != 3 {
		t.Fatalf("started %v", got)
	}
}

func TestJournalTornLineAndGarbage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "journal")
	os.WriteFile(p, []byte("B 1 5\nS 6\nR 6 {\"seq\":6,\"sta"), 0o600)
	j, st, err := OpenJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSeq != 6 || len(st.Pending) != 1 || st.Pending[0].Status != command.StatusInterrupted {
		t.Fatalf("state %+v", st)
	}
	j.Skip(7)
	j.Close()
	b, _ := os.ReadFile(p)
	if string(b) != "B 1 5\nS 6\nK 7\n" {
		t.Fatalf("torn line not cut: %q", b)
	}
	os.WriteFile(p, []byte("B 1 5\nX 6\n"), 0o600)
	if _, _, err := OpenJournal(p); err == nil || !strings.Contains(err.Error(), p+":2") {
		t.Fatalf("garbage journal: %v", err)
	}
}

// TestJournalResetKeeps: a reset that keeps (re-enrollment in the same
// epoch) carries the unacknowledged results and the commands still
// running to the new baseline; one that does not (another epoch) drops
// them.
func TestJournalResetKeeps(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "journal")
	j, _, err := OpenJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { j.Close() }()
	for _, err := range []error{
		j.Reset(7, 10, false),
		j.Start(11), j.Result(api.Result{Seq: 11, Status: "ok", Output: "pong"}), j.Acked([]uint64{11}),
		j.Start(12), j.Result(api.Result{Seq: 12, Status: "ok", Output: "unreported"}),
		j.Start(13), // a deferred command, still running
		j.Reset(7, 13, true),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := readJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 7 || st.LastSeq != 13 || len(st.Pending) != 2 || st.Pending[0].Output != "unreported" ||
		st.Pending[1].Seq != 13 || len(st.Open) != 1 || st.Open[0] != 13 {
		t.Fatalf("after a keeping reset: %+v", st)
	}
	// The running command finishes after the reset.
	if err := j.Result(api.Result{Seq: 13, Status: "ok", Output: "scanned"}); err != nil {
		t.Fatal(err)
	}
	if st, _ = readJournal(p); len(st.Pending) != 2 || st.Pending[1].Output != "scanned" || len(st.Open) != 0 {
		t.Fatalf("after the running command's result: %+v", st)
	}
	if err := j.Reset(8, 2, false); err != nil {
		t.Fatal(err)
	}
	if st, _ = readJournal(p); st.Epoch != 8 || st.LastSeq != 2 || len(st.Pending) != 0 {
		t.Fatalf("after a reset to another epoch: %+v", st)
	}
}
