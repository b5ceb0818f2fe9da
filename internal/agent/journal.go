package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/command"
)

// Journal records an agent's progress through the command log so that a
// restart neither re-runs a command nor forgets a result.
type Journal interface {
	// Start is called, and must be durable, before a command executes.
	Start(seq uint64) error
	// Skip records a command that is not for this agent.
	Skip(seq uint64) error
	// Result records a command's outcome (durably) until the server has it.
	Result(r api.Result) error
	// Acked records that the server stored these results.
	Acked(seqs []uint64) error
}

// journalState is what a journal file says after replay.
type journalState struct {
	Epoch   uint64
	LastSeq uint64
	Pending []api.Result // results the server has not acknowledged, in order
	Started []uint64     // commands executed (or begun) since the last compaction
	// Open are the commands started without a result: each has an
	// "interrupted" result in Pending (for a journal read at start-up), or
	// is still running (a deferred command, when the agent resets the
	// journal while it runs).
	Open []uint64
}

// FileJournal is the on-disk journal: an append-only file of lines
//
//	B <epoch> <seq>        baseline: epoch and the sequence to start after
//	S <seq>                command started (synced before it runs)
//	K <seq>                command skipped (not targeted)
//	R <seq> <json>         result, not yet acknowledged (synced)
//	A <seq>                result acknowledged by the server
//
// It is compacted on open when it grows large.
type FileJournal struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

const journalCompactSize = 1 << 20

// OpenJournal replays the journal at path and opens it for appending.
// A command started but without result (the agent died while running it)
// gets an "interrupted" result: it is never run again.
func OpenJournal(path string) (*FileJournal, journalState, error) {
	st, err := readJournal(path)
	if err != nil {
		return nil, st, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > journalCompactSize {
		if err := writeJournal(path, st); err != nil {
			return nil, st, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, st, err
	}
	if err := cutTornLine(f); err != nil {
		f.Close()
		return nil, st, fmt.Errorf("%s: %w", path, err)
	}
	return &FileJournal{path: path, f: f}, st, nil
}

func readJournal(path string) (journalState, error) {
	var st journalState
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	} else if err != nil {
		return st, err
	}
	// A torn last line (the machine stopped mid-write) was never synced,
	// so nothing was acknowledged for it; it is ignored here and cut off
	// by OpenJournal.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	results := map[uint64]api.Result{}
	started := map[uint64]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		op, rest, _ := strings.Cut(text, " ")
		bad := func() error { return fmt.Errorf("%s:%d: malformed journal line %q", path, line, text) }
		switch op {
		case "B":
			e, s, ok := strings.Cut(rest, " ")
			epoch, err1 := strconv.ParseUint(e, 10, 64)
			seq, err2 := strconv.ParseUint(s, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return st, bad()
			}
			st = journalState{Epoch: epoch, LastSeq: seq}
			results, started = map[uint64]api.Result{}, map[uint64]bool{}
		case "S", "K", "A":
			seq, err := strconv.ParseUint(rest, 10, 64)
			if err != nil {
				return st, bad()
			}
			switch op {
			case "S":
				started[seq] = true
				st.Started = append(st.Started, seq)
			case "A":
				delete(results, seq)
				delete(started, seq)
			}
			st.LastSeq = max(st.LastSeq, seq)
		case "R":
			s, js, _ := strings.Cut(rest, " ")
			seq, err := strconv.ParseUint(s, 10, 64)
			var r api.Result
			if err != nil || json.Unmarshal([]byte(js), &r) != nil || r.Seq != seq {
				return st, bad()
			}
			results[seq] = r
			delete(started, seq)
			st.LastSeq = max(st.LastSeq, seq)
		default:
			return st, bad()
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	for seq := range started {
		st.Open = append(st.Open, seq)
		results[seq] = api.Result{Seq: seq, Status: command.StatusInterrupted, Output: "agent stopped while the command ran; not run again"}
	}
	slices.Sort(st.Open)
	for _, r := range results {
		st.Pending = append(st.Pending, r)
	}
	sort.Slice(st.Pending, func(i, j int) bool { return st.Pending[i].Seq < st.Pending[j].Seq })
	return st, nil
}

// cutTornLine truncates f after its last newline.
func cutTornLine(f *os.File) error {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return err
	}
	if n := bytes.LastIndexByte(b, '\n') + 1; n != len(b) {
		return f.Truncate(int64(n))
	}
	return nil
}

// writeJournal atomically replaces the journal with a compact one.
func writeJournal(path string, st journalState) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "B %d %d\n", st.Epoch, st.LastSeq)
	for _, r := range st.Pending {
		if slices.Contains(st.Open, r.Seq) {
			continue // its "interrupted" result comes from the S line
		}
		js, _ := json.Marshal(r)
		fmt.Fprintf(&buf, "R %d %s\n", r.Seq, js)
	}
	for _, seq := range st.Open {
		fmt.Fprintf(&buf, "S %d\n", seq)
	}
	return atomicfile.WriteFile(path, buf.Bytes(), 0o600)
}

// Reset starts the journal afresh at a baseline: epoch, and the sequence
// after which the agent starts (after enrollment, or when the agent
// follows the server to a new epoch). With keep, the results the server
// has not acknowledged, and the commands started without a result, stay
// (the agent reports them under its new identity); without, they go (they
// answer commands of another epoch).
func (j *FileJournal) Reset(epoch, seq uint64, keep bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := journalState{Epoch: epoch, LastSeq: seq}
	if keep {
		old, err := readJournal(j.path)
		if err != nil {
			return err
		}
		st.Pending, st.Open = old.Pending, old.Open
	}
	if err := writeJournal(j.path, st); err != nil {
		return err
	}
	j.f.Close()
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	j.f = f
	return err
}

func (j *FileJournal) append(line string, sync bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.WriteString(line); err != nil {
		return err
	}
	if sync {
		return j.f.Sync()
	}
	return nil
}

// Start implements Journal.
func (j *FileJournal) Start(seq uint64) error { return j.append(fmt.Sprintf("S %d\n", seq), true) }

// Skip implements Journal. It is not synced: losing it only means the
// agent decides again that the command is not its own.
func (j *FileJournal) Skip(seq uint64) error { return j.append(fmt.Sprintf("K %d\n", seq), false) }

// Result implements Journal.
func (j *FileJournal) Result(r api.Result) error {
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return j.append(fmt.Sprintf("R %d %s\n", r.Seq, js), true)
}

// Acked implements Journal.
func (j *FileJournal) Acked(seqs []uint64) error {
	var b strings.Builder
	for _, s := range seqs {
		fmt.Fprintf(&b, "A %d\n", s)
	}
	return j.append(b.String(), false)
}

// Close closes the journal file.
func (j *FileJournal) Close() error { return j.f.Close() }

// Path is the journal's file.
func (j *FileJournal) Path() string { return j.path }

// ExecutedSeqs reads a journal file and returns every sequence number that
// was started, in journal order, since the journal's baseline (its last
// compaction, enrollment or change of epoch). Tests use
// it to prove each command ran exactly once.
func ExecutedSeqs(stateDir string) ([]uint64, error) {
	st, err := readJournal(filepath.Join(stateDir, FileJournalName))
	return st.Started, err
}

// MemJournal is a Journal in memory, for simulated agents.
type MemJournal struct{}

// Start implements Journal.
func (MemJournal) Start(uint64) error { return nil }

// Skip implements Journal.
func (MemJournal) Skip(uint64) error { return nil }

// Result implements Journal.
func (MemJournal) Result(api.Result) error { return nil }

// Acked implements Journal.
func (MemJournal) Acked([]uint64) error { return nil }
