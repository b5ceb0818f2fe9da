// Package storetest is a conformance suite for implementations of
// store.Store. An implementation's tests call Run with a function that opens
// a new, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(filepath.Join(t.TempDir(), "vigil.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Run closes every store it opens (Close may therefore be called twice if
// open also registers a cleanup). Times are compared to the microsecond, the
// precision the store package promises.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// Run runs the conformance suite against stores returned by open. Each
// subtest opens its own store and subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Epoch", testEpoch},
		{"Empty", testEmpty},
		{"EnrollAndGet", testEnrollAndGet},
		{"EnrollDuplicate", testEnrollDuplicate},
		{"NotFound", testNotFound},
		{"CheckIns", testCheckIns},
		{"CheckInsEmpty", testCheckInsEmpty},
		{"CheckInsRefused", testCheckInsRefused},
		{"AppendCommandDense", testAppendDense},
		{"AppendCommandConcurrent", testAppendConcurrent},
		{"AppendCommandSignError", testAppendSignError},
		{"AppendCommandCanceled", testAppendCanceled},
		{"CommandsAfter", testCommandsAfter},
		{"RecentCommands", testRecentCommands},
		{"Results", testResults},
		{"ResultsUnknown", testResultsUnknown},
		{"Times", testTimes},
		{"ConcurrentMixed", testConcurrentMixed},
		{"Scans", testScans},
		{"NewEpoch", testNewEpoch},
		{"NewEpochConcurrent", testNewEpochConcurrent},
		{"RevokeAndRemove", testRevokeAndRemove},
		{"Users", testUsers},
		{"Tokens", testTokens},
		{"Audit", testAudit},
		{"ListAgents", testListAgents},
		{"ListAgentsPages", testListAgentsPages},
		{"DetectionsCount", testDetectionsCount},
		{"Fleet", testFleet},
		{"FleetEmpty", testFleetEmpty},
		{"ProgressTargets", testProgressTargets},
		{"AgentResults", testAgentResults},
		{"QueryDetections", testQueryDetections},
		{"Sessions", testSessions}, {"SessionsBounded", testSessionsBounded}, {"SessionsPrune", testSessionsPrune},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// t0 is a time with nanoseconds and a zone, neither of which a store has to
// keep.
var t0 = time.Date(2026, time.March, 14, 15, 9, 26, 535897932, time.FixedZone("X", 5*3600+30*60))

func testEpoch(t *testing.T, s store.Store) {
	if s.Epoch() == 0 {
		t.Fatal("Epoch() = 0, want a non-zero epoch")
	}
	if a, b := s.Epoch(), s.Epoch(); a != b {
		t.Fatalf("Epoch() changed from %d to %d", a, b)
	}
}

func testEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	if as, err := s.Agents(ctx); err != nil || len(as) != 0 {
		t.Errorf("Agents() = %v, %v; want none", as, err)
	}
	if seq, err := s.LatestSeq(ctx); err != nil || seq != 0 {
		t.Errorf("LatestSeq() = %d, %v; want 0", seq, err)
	}
	if cs, err := s.CommandsAfter(ctx, 0, 10); err != nil || len(cs) != 0 {
		t.Errorf("CommandsAfter(0, 10) = %v, %v; want none", cs, err)
	}
	if cs, err := s.RecentCommands(ctx, 10); err != nil || len(cs) != 0 {
		t.Errorf("RecentCommands(10) = %v, %v; want none", cs, err)
	}
	if rs, err := s.Results(ctx, 1); err != nil || len(rs) != 0 {
		t.Errorf("Results(1) = %v, %v; want none", rs, err)
	}
	if err := s.RecordResults(ctx, nil); err != nil {
		t.Errorf("RecordResults(nil) = %v", err)
	}
}

func testEnrollAndGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	agents := []store.Agent{
		{
			ID:          "web-02",
			TokenHash:   bytes.Repeat([]byte{0xab, 0x00}, 16),
			Hostname:    "web-02.example.net",
			OS:          "linux",
			Arch:        "amd64",
			Version:     "1.4.2",
			DefsVer:     "2026.03.14-1",
			Groups:      []string{"web", "eu-west", "débutant"},
			LastSeq:     math.MaxInt64,
			EnrolledAt:  t0,
			LastSeen:    t0.Add(time.Hour),
			LastCheckIn: t0.Add(time.Hour),
			Counters:    map[string]uint64{"bad_sig": 3, "stale": 1 << 63, "max": math.MaxUint64},
		},
		{ID: "revoked", TokenHash: []byte{4}, EnrolledAt: t0, Revoked: t0.Add(time.Minute)},
		{ID: "guarded", TokenHash: []byte{5}, EnrolledAt: t0, LastCheckIn: t0, OnAccess: &store.OnAccess{
			Enabled: true, Running: true, Mode: "block", Paths: []string{"/home", "/srv/wéb"}}},
		{ID: "broken", TokenHash: []byte{6}, EnrolledAt: t0, OnAccess: &store.OnAccess{Enabled: true, Error: "fanotify_init: operation not permitted"}},
		{ID: "off", TokenHash: []byte{7}, EnrolledAt: t0, OnAccess: &store.OnAccess{}},
		{ID: "updated", TokenHash: []byte{8}, EnrolledAt: t0, LastCheckIn: t0, Update: &store.UpdateState{
			From: "2026120201", To: "2026120203", At: t0.Add(-time.Minute), Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2}},
		{ID: "first-update", TokenHash: []byte{9}, EnrolledAt: t0, Update: &store.UpdateState{To: "1", FullBytes: math.MaxInt64, Bytes: math.MaxInt64}},
		{ID: "db-01", TokenHash: []byte{1}, EnrolledAt: t0},
		{ID: "a", TokenHash: []byte{2}},
		{ID: "web-01", TokenHash: []byte{3}, Hostname: "web-01", Groups: []string{"web"}, LastSeq: 7},
	}
	for _, a := range agents {
		if err := s.EnrollAgent(ctx, a); err != nil {
			t.Fatalf("EnrollAgent(%q): %v", a.ID, err)
		}
	}
	for _, want := range agents {
		t.Run(want.ID, func(t *testing.T) {
			got, err := s.Agent(ctx, want.ID)
			if err != nil {
				t.Fatalf("Agent(%q): %v", want.ID, err)
			}
			if d := agentDiff(want, got); d != "" {
				t.Errorf("Agent(%q): %s", want.ID, d)
			}
		})
	}
	got, err := s.Agents(ctx)
	if err != nil {
		t.Fatalf("Agents: %v", err)
	}
	want := slices.Clone(agents)
	sort.Slice(want, func(i, j int) bool { return want[i].ID < want[j].ID })
	if len(got) != len(want) {
		t.Fatalf("Agents() returned %d agents, want %d", len(got), len(want))
	}
	for i := range want {
		if d := agentDiff(want[i], got[i]); d != "" {
			t.Errorf("Agents()[%d]: %s", i, d)
		}
	}
}

func testEnrollDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := store.Agent{ID: "dup", TokenHash: []byte{1}, Hostname: "first", EnrolledAt: t0}
	if err := s.EnrollAgent(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.EnrollAgent(ctx, store.Agent{ID: "dup", TokenHash: []byte{2}, Hostname: "second"}); err == nil {
		t.Fatal("second EnrollAgent with the same ID succeeded")
	}
	got, err := s.Agent(ctx, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if d := agentDiff(first, got); d != "" {
		t.Errorf("after the refused enrollment: %s", d)
	}
	if as, err := s.Agents(ctx); err != nil || len(as) != 1 {
		t.Errorf("Agents() = %d agents, %v; want 1", len(as), err)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.EnrollAgent(ctx, store.Agent{ID: "present", TokenHash: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 2)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"agent", func() error { _, err := s.Agent(ctx, "absent"); return err }},
		{"agent-prefix", func() error { _, err := s.Agent(ctx, "pres"); return err }},
		{"command-0", func() error { _, err := s.Command(ctx, 0); return err }},
		{"command-next", func() error { _, err := s.Command(ctx, 3); return err }},
		{"command-huge", func() error { _, err := s.Command(ctx, math.MaxUint64); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("error = %v, want ErrNotFound", err)
			}
		})
	}
}

func testCheckIns(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolled := map[string]store.Agent{}
	for _, id := range []string{"a1", "a2", "a3"} {
		a := store.Agent{
			ID: id, TokenHash: []byte("hash-" + id), Hostname: "old-" + id, OS: "linux", Arch: "arm64",
			Version: "1.0", DefsVer: "d1", Groups: []string{"old"}, LastSeq: 1, EnrolledAt: t0,
			Counters: map[string]uint64{"old": 1},
		}
		if err := s.EnrollAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		enrolled[id] = a
	}
	batch := []store.CheckIn{
		{
			AgentID: "a1", Hostname: "new-a1", OS: "darwin", Arch: "amd64", Version: "2.0", DefsVer: "d2",
			Groups: []string{"mac", "eu"}, LastSeq: 41, At: t0.Add(time.Minute),
			Counters: map[string]uint64{"bad_sig": 2, "big": 1<<63 + 5, "onaccess_events": 7},
			OnAccess: &store.OnAccess{Enabled: true, Running: true, Mode: "notify", Paths: []string{"/"}},
			Update:   &store.UpdateState{From: "2026120201", To: "2026120203", At: t0.Add(30 * time.Second), Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2},
		},
		{AgentID: "ghost", Hostname: "ghost", LastSeq: 9, At: t0},
		// Empty groups and counters replace the old ones.
		{AgentID: "a3", Hostname: "new-a3", OS: "windows", Arch: "amd64", Version: "2.1", DefsVer: "d3",
			LastSeq: math.MaxInt64, At: t0.Add(2 * time.Minute)},
	}
	if _, err := s.CheckIns(ctx, batch); err != nil {
		t.Fatalf("CheckIns: %v", err)
	}
	want := map[string]store.Agent{"a2": enrolled["a2"]}
	apply := func(c store.CheckIn) {
		a := enrolled[c.AgentID]
		a.Hostname, a.OS, a.Arch, a.Version, a.DefsVer = c.Hostname, c.OS, c.Arch, c.Version, c.DefsVer
		a.Groups, a.LastSeq, a.Counters, a.LastSeen, a.LastCheckIn = c.Groups, c.LastSeq, c.Counters, c.At, c.At
		a.OnAccess, a.Update = c.OnAccess, c.Update
		want[c.AgentID] = a
	}
	apply(batch[0])
	apply(batch[2])
	check := func(when string) {
		t.Helper()
		for id, w := range want {
			got, err := s.Agent(ctx, id)
			if err != nil {
				t.Fatalf("Agent(%q): %v", id, err)
			}
			if d := agentDiff(w, got); d != "" {
				t.Errorf("Agent(%q) after %s: %s", id, when, d)
			}
		}
	}
	check("check-in")
	// The on-access and update states are the last check-in's: a new one
	// replaces them, and a check-in without one leaves none.
	next := []store.CheckIn{
		{AgentID: "a1", Hostname: "new-a1", LastSeq: 42, At: t0.Add(3 * time.Minute)},
		{AgentID: "a3", Hostname: "new-a3", LastSeq: 1, At: t0.Add(3 * time.Minute),
			OnAccess: &store.OnAccess{Enabled: true, Mode: "block", Paths: []string{"/home"}, Error: "fanotify_mark /home: no such file or directory"},
			Update:   &store.UpdateState{To: "2026120300", At: t0.Add(2 * time.Minute), Bytes: 22 << 20, FullBytes: 22 << 20}},
	}
	if _, err := s.CheckIns(ctx, next); err != nil {
		t.Fatalf("CheckIns: %v", err)
	}
	apply(next[0])
	apply(next[1])
	check("a second check-in")
	if _, err := s.Agent(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Agent(ghost) after its check-in: %v, want ErrNotFound", err)
	}
	if as, err := s.Agents(ctx); err != nil || len(as) != 3 {
		t.Errorf("Agents() = %d agents, %v; want 3", len(as), err)
	}

	// A batch of only unknown agents is not an error either.
	if _, err := s.CheckIns(ctx, []store.CheckIn{{AgentID: "nobody", At: t0}}); err != nil {
		t.Errorf("CheckIns(unknown only) = %v", err)
	}
}

func testCheckInsEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.CheckIns(ctx, nil); err != nil {
		t.Errorf("CheckIns(nil) = %v", err)
	}
	if _, err := s.CheckIns(ctx, []store.CheckIn{}); err != nil {
		t.Errorf("CheckIns(empty) = %v", err)
	}
}

// testCheckInsRefused: CheckIns says which check-ins it refused, those of
// agents revoked, removed or unknown, and leaves their rows alone; the
// others are applied, changed listed fields included, an agent's two
// check-ins in one batch counting as applied.
func testCheckInsRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	for _, id := range []string{"ok1", "rev", "rem", "ok2"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte{1}, Hostname: id, OS: "linux", EnrolledAt: t0, LastSeen: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeAgent(ctx, "rev", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAgent(ctx, "rem", t0); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var cs []store.CheckIn
	for _, id := range []string{"ok1", "rev", "rem", "nobody", "ok2", "ok1"} {
		cs = append(cs, store.CheckIn{AgentID: id, Hostname: id, OS: "linux", LastSeq: 3, At: now})
	}
	cs[4].Hostname = "ok2-renamed"
	refused, err := s.CheckIns(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true, true, false, false}; !slices.Equal(refused, want) {
		t.Fatalf("refused %v, want %v", refused, want)
	}
	for id, host := range map[string]string{"ok1": "ok1", "ok2": "ok2-renamed"} {
		a, err := s.Agent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Hostname != host || a.LastSeq != 3 || !a.LastSeen.After(t0) {
			t.Fatalf("agent %s after its check-in: %+v", id, a)
		}
	}
	a, err := s.Agent(ctx, "rev")
	if err != nil {
		t.Fatal(err)
	}
	if a.LastSeq != 0 || a.LastSeen.After(t0) {
		t.Fatalf("the revoked agent's row changed: %+v", a)
	}
}

func testAppendDense(t *testing.T, s store.Store) {
	ctx := t.Context()
	for want := uint64(1); want <= 20; want++ {
		var signed uint64
		got, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
			signed = seq
			return command(seq), nil
		})
		if err != nil {
			t.Fatalf("AppendCommand #%d: %v", want, err)
		}
		if signed != want || got.Seq != want {
			t.Fatalf("AppendCommand #%d: sign got seq %d, command has seq %d", want, signed, got.Seq)
		}
		if d := commandDiff(command(want), got); d != "" {
			t.Errorf("AppendCommand #%d returned: %s", want, d)
		}
		// Visible as soon as AppendCommand has returned.
		stored, err := s.Command(ctx, want)
		if err != nil {
			t.Fatalf("Command(%d): %v", want, err)
		}
		if d := commandDiff(command(want), stored); d != "" {
			t.Errorf("Command(%d): %s", want, d)
		}
		if latest, err := s.LatestSeq(ctx); err != nil || latest != want {
			t.Errorf("LatestSeq() = %d, %v; want %d", latest, err, want)
		}
	}
}

func testAppendConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const workers, each = 16, 25
	var (
		mu   sync.Mutex
		seqs []uint64
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range each {
				c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
				if err != nil {
					t.Errorf("AppendCommand: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, c.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("sorted sequences %v...: position %d holds %d, want dense 1..%d without duplicates",
				seqs[:min(len(seqs), i+3)], i, seq, workers*each)
		}
	}
	cs, err := s.CommandsAfter(ctx, 0, 2*workers*each)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != workers*each {
		t.Fatalf("CommandsAfter(0) returned %d commands, want %d", len(cs), workers*each)
	}
	for i, c := range cs {
		// The envelope was signed with the number it is stored under.
		if d := commandDiff(command(uint64(i+1)), c); d != "" {
			t.Errorf("command %d: %s", i+1, d)
		}
	}
}

var errSign = errors.New("signer unavailable")

func testAppendSignError(t *testing.T, s store.Store) {
	ctx := t.Context()
	appendN(t, s, 1)
	var tried uint64
	_, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		tried = seq
		return store.Command{}, errSign
	})
	if !errors.Is(err, errSign) {
		t.Fatalf("AppendCommand with failing sign: error %v, want one wrapping %v", err, errSign)
	}
	if tried != 2 {
		t.Errorf("sign called with %d, want 2", tried)
	}
	if latest, err := s.LatestSeq(ctx); err != nil || latest != 1 {
		t.Errorf("LatestSeq() = %d, %v; want 1", latest, err)
	}
	if _, err := s.Command(ctx, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Command(2) = %v, want ErrNotFound", err)
	}
	// The number sign failed with is used by the next command: no gap.
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil || c.Seq != 2 {
		t.Fatalf("AppendCommand after the failure = %d, %v; want 2", c.Seq, err)
	}
	if cs, err := s.CommandsAfter(ctx, 0, 10); err != nil || len(cs) != 2 {
		t.Errorf("CommandsAfter(0) = %d commands, %v; want 2", len(cs), err)
	}
}

func testAppendCanceled(t *testing.T, s store.Store) {
	appendN(t, s, 1)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil }); err == nil {
		t.Error("AppendCommand with a canceled context succeeded")
	}

	// Canceled while the command is being signed: either the command is
	// stored and acknowledged, or neither.
	ctx, cancel = context.WithCancel(t.Context())
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		cancel()
		return command(seq), nil
	})
	cancel()
	want := uint64(1)
	if err == nil {
		want = 2
		if c.Seq != 2 {
			t.Errorf("AppendCommand canceled during sign returned seq %d, want 2", c.Seq)
		}
	}
	if latest, err := s.LatestSeq(t.Context()); err != nil || latest != want {
		t.Errorf("LatestSeq() = %d, %v; want %d", latest, err, want)
	}
	c, err = s.AppendCommand(t.Context(), func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil || c.Seq != want+1 {
		t.Errorf("next AppendCommand = %d, %v; want %d", c.Seq, err, want+1)
	}
}

func testCommandsAfter(t *testing.T, s store.Store) {
	appendN(t, s, 10)
	for _, tc := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 100, seqRange(1, 10)},
		{0, 10, seqRange(1, 10)},
		{0, 1, seqRange(1, 1)},
		{3, 4, seqRange(4, 7)},
		{8, 10, seqRange(9, 10)},
		{9, 1, seqRange(10, 10)},
		{10, 5, nil},
		{11, 5, nil},
		{math.MaxUint64, 5, nil},
		{0, 0, nil},
		{0, -1, nil},
	} {
		t.Run(fmt.Sprintf("after=%d,limit=%d", tc.after, tc.limit), func(t *testing.T) {
			cs, err := s.CommandsAfter(t.Context(), tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			checkSeqs(t, cs, tc.want)
		})
	}
}

func testRecentCommands(t *testing.T, s store.Store) {
	appendN(t, s, 10)
	for _, tc := range []struct {
		limit int
		want  []uint64
	}{
		{1, []uint64{10}},
		{3, []uint64{10, 9, 8}},
		{10, []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{100, []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{0, nil},
		{-1, nil},
	} {
		t.Run(fmt.Sprintf("limit=%d", tc.limit), func(t *testing.T) {
			cs, err := s.RecentCommands(t.Context(), tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			checkSeqs(t, cs, tc.want)
		})
	}
}

func testResults(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"b", "c", "a", "d"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, s, 3)
	r := func(seq uint64, agent, status string) store.Result {
		return store.Result{
			Seq: seq, AgentID: agent, Status: status, Output: fmt.Sprintf("output of %d on %s\n\x00ünï\xff\xfe", seq, agent),
			ExecutedAt: t0.Add(time.Duration(seq) * time.Second), ReceivedAt: t0.Add(time.Duration(seq)*time.Second + 1500*time.Microsecond),
		}
	}
	// Output is kept byte for byte, NUL bytes and invalid UTF-8 included: it
	// is whatever the agent's command printed.
	first := []store.Result{
		r(1, "c", "ok"), r(1, "a", "error"), r(2, "b", "unsupported"), r(1, "d", "expired"),
		// The same (Seq, AgentID) twice in one batch: the first is kept.
		r(2, "a", "ok"), r(2, "a", "interrupted"),
	}
	if err := s.RecordResults(ctx, first); err != nil {
		t.Fatalf("RecordResults: %v", err)
	}
	// Duplicates in a later batch change nothing and are not an error; new
	// results in the same batch are stored.
	second := []store.Result{r(1, "a", "ok"), r(1, "c", "interrupted"), r(3, "b", "ok")}
	second[0].Output = "replaced?"
	if err := s.RecordResults(ctx, second); err != nil {
		t.Fatalf("RecordResults with duplicates: %v", err)
	}
	if err := s.RecordResults(ctx, first); err != nil {
		t.Fatalf("RecordResults replayed: %v", err)
	}
	for _, tc := range []struct {
		seq  uint64
		want []store.Result
	}{
		{1, []store.Result{r(1, "a", "error"), r(1, "c", "ok"), r(1, "d", "expired")}},
		{2, []store.Result{r(2, "a", "ok"), r(2, "b", "unsupported")}},
		{3, []store.Result{r(3, "b", "ok")}},
		{4, nil},
	} {
		t.Run(fmt.Sprint(tc.seq), func(t *testing.T) {
			got, err := s.Results(ctx, tc.seq)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Results(%d) = %d results %v, want %d", tc.seq, len(got), got, len(tc.want))
			}
			for i := range got {
				if d := resultDiff(tc.want[i], got[i]); d != "" {
					t.Errorf("Results(%d)[%d]: %s", tc.seq, i, d)
				}
			}
		})
	}
}

func testResultsUnknown(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.EnrollAgent(ctx, store.Agent{ID: "known", TokenHash: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1)
	batch := []store.Result{
		{Seq: 1, AgentID: "stranger", Status: "ok"},
		{Seq: 2, AgentID: "known", Status: "ok"},
		{Seq: 1, AgentID: "known", Status: "ok", ReceivedAt: t0},
	}
	if err := s.RecordResults(ctx, batch); err != nil {
		t.Fatalf("RecordResults with unknown agent and command: %v", err)
	}
	got, err := s.Results(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || resultDiff(batch[2], got[0]) != "" {
		t.Errorf("Results(1) = %+v, want only %+v", got, batch[2])
	}
	if got, err := s.Results(ctx, 2); err != nil || len(got) != 0 {
		t.Errorf("Results(2) = %v, %v; want none", got, err)
	}
}

func testTimes(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i, tm := range []time.Time{
		{},
		time.Unix(0, 0),
		time.Unix(0, 1000).In(time.FixedZone("Y", -7*3600)),
		time.Unix(-1, 999_999_000),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC), // beyond int64 nanoseconds
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		t0,
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			id := fmt.Sprintf("t%d", i)
			a := store.Agent{ID: id, TokenHash: []byte{1}, EnrolledAt: tm, LastSeen: tm}
			if err := s.EnrollAgent(ctx, a); err != nil {
				t.Fatal(err)
			}
			got, err := s.Agent(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !sameTime(tm, got.EnrolledAt) || !sameTime(tm, got.LastSeen) {
				t.Errorf("stored %v, read back %v and %v", tm, got.EnrolledAt, got.LastSeen)
			}
		})
	}
}

// testConcurrentMixed runs writers and readers of every kind at once; every
// call must succeed (no "database is locked") and readers must never see the
// latest sequence go backwards.
func testConcurrentMixed(t *testing.T, s store.Store) {
	ctx := t.Context()
	const nAgents = 20
	for i := range nAgents {
		if err := s.EnrollAgent(ctx, store.Agent{ID: fmt.Sprintf("m%02d", i), TokenHash: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		writers sync.WaitGroup
		readers sync.WaitGroup
		done    = make(chan struct{})
		seqs    = make(chan uint64, 1000)
	)
	for range 4 {
		writers.Go(func() {
			for range 15 {
				c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
				if err != nil {
					t.Errorf("AppendCommand: %v", err)
					return
				}
				seqs <- c.Seq
			}
		})
	}
	for w := range 2 {
		writers.Go(func() {
			for i := range 15 {
				batch := make([]store.CheckIn, 0, nAgents)
				for j := range nAgents {
					batch = append(batch, store.CheckIn{
						AgentID: fmt.Sprintf("m%02d", j), Hostname: fmt.Sprintf("h%d-%d", w, i),
						LastSeq: uint64(i), At: t0.Add(time.Duration(i) * time.Second),
						Counters: map[string]uint64{"n": uint64(i)},
					})
				}
				if _, err := s.CheckIns(ctx, batch); err != nil {
					t.Errorf("CheckIns: %v", err)
					return
				}
			}
		})
	}
	var recorders sync.WaitGroup
	for range 2 {
		recorders.Go(func() {
			for seq := range seqs {
				batch := make([]store.Result, 0, nAgents)
				for j := range nAgents {
					batch = append(batch, store.Result{Seq: seq, AgentID: fmt.Sprintf("m%02d", j), Status: "ok", ReceivedAt: t0})
				}
				if err := s.RecordResults(ctx, batch); err != nil {
					t.Errorf("RecordResults: %v", err)
					return
				}
			}
		})
	}
	for range 4 {
		readers.Go(func() {
			var last uint64
			for {
				select {
				case <-done:
					return
				default:
				}
				latest, err := s.LatestSeq(ctx)
				if err != nil {
					t.Errorf("LatestSeq: %v", err)
					return
				}
				if latest < last {
					t.Errorf("LatestSeq went back from %d to %d", last, latest)
				}
				last = latest
				if latest > 0 {
					if _, err := s.Command(ctx, latest); err != nil {
						t.Errorf("Command(%d) after LatestSeq returned it: %v", latest, err)
					}
					if _, err := s.Results(ctx, latest); err != nil {
						t.Errorf("Results: %v", err)
					}
				}
				if as, err := s.Agents(ctx); err != nil || len(as) != nAgents {
					t.Errorf("Agents() = %d, %v", len(as), err)
				}
				if _, err := s.RecentCommands(ctx, 5); err != nil {
					t.Errorf("RecentCommands: %v", err)
				}
				if _, err := s.CommandsAfter(ctx, last/2, 10); err != nil {
					t.Errorf("CommandsAfter: %v", err)
				}
			}
		})
	}
	writers.Wait()
	close(seqs)
	recorders.Wait()
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}
	cs, err := s.CommandsAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, cs, seqRange(1, 60))
	for _, c := range cs {
		if rs, err := s.Results(ctx, c.Seq); err != nil || len(rs) != nAgents {
			t.Errorf("Results(%d) = %d results, %v; want %d", c.Seq, len(rs), err, nAgents)
		}
	}
}

// command is the command the suite stores under seq; its envelope depends on
// seq, as a signed envelope does.
func command(seq uint64) store.Command {
	return store.Command{
		Seq:      seq,
		Name:     fmt.Sprintf("cmd-%d", seq),
		Target:   fmt.Sprintf(`{"groups":["g%d"]}`, seq%3),
		Envelope: fmt.Appendf([]byte("VGL1\x00\x01"), "seq=%d\x00\xff", seq),
		IssuedAt: t0.Add(time.Duration(seq) * time.Millisecond),
		Expires:  t0.Add(time.Duration(seq)*time.Millisecond + time.Hour),
	}
}

// appendN appends n commands to an empty store.
func appendN(t *testing.T, s store.Store, n int) {
	t.Helper()
	for i := range n {
		c, err := s.AppendCommand(t.Context(), func(seq uint64) (store.Command, error) { return command(seq), nil })
		if err != nil {
			t.Fatalf("AppendCommand: %v", err)
		}
		if c.Seq != uint64(i+1) {
			t.Fatalf("AppendCommand #%d got seq %d", i+1, c.Seq)
		}
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func checkSeqs(t *testing.T, cs []store.Command, want []uint64) {
	t.Helper()
	got := make([]uint64, len(cs))
	for i, c := range cs {
		got[i] = c.Seq
		if d := commandDiff(command(c.Seq), c); d != "" {
			t.Errorf("command %d: %s", c.Seq, d)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("sequences %v, want %v", got, want)
	}
}

// sameTime reports whether got is want as a store keeps it: to the
// microsecond, in any location, the zero time as the zero time.
func sameTime(want, got time.Time) bool {
	if want.IsZero() || got.IsZero() {
		return want.IsZero() == got.IsZero()
	}
	return want.Truncate(time.Microsecond).Equal(got.Truncate(time.Microsecond))
}

type diff []string

func (d *diff) add(field string, want, got any) {
	*d = append(*d, fmt.Sprintf("%s = %v, want %v", field, got, want))
}

func (d diff) String() string { return strings.Join(d, "; ") }

func agentDiff(want, got store.Agent) string {
	var d diff
	if want.ID != got.ID {
		d.add("ID", want.ID, got.ID)
	}
	if !bytes.Equal(want.TokenHash, got.TokenHash) {
		d.add("TokenHash", want.TokenHash, got.TokenHash)
	}
	for _, f := range [][3]string{
		{"Hostname", want.Hostname, got.Hostname},
		{"OS", want.OS, got.OS},
		{"Arch", want.Arch, got.Arch},
		{"Version", want.Version, got.Version},
		{"DefsVer", want.DefsVer, got.DefsVer},
	} {
		if f[1] != f[2] {
			d.add(f[0], f[1], f[2])
		}
	}
	if !slices.Equal(want.Groups, got.Groups) {
		d.add("Groups", want.Groups, got.Groups)
	}
	if want.LastSeq != got.LastSeq {
		d.add("LastSeq", want.LastSeq, got.LastSeq)
	}
	if !sameTime(want.EnrolledAt, got.EnrolledAt) {
		d.add("EnrolledAt", want.EnrolledAt, got.EnrolledAt)
	}
	if !sameTime(want.LastSeen, got.LastSeen) {
		d.add("LastSeen", want.LastSeen, got.LastSeen)
	}
	if !sameTime(want.LastCheckIn, got.LastCheckIn) {
		d.add("LastCheckIn", want.LastCheckIn, got.LastCheckIn)
	}
	if !maps.Equal(want.Counters, got.Counters) {
		d.add("Counters", want.Counters, got.Counters)
	}
	if !sameTime(want.Revoked, got.Revoked) {
		d.add("Revoked", want.Revoked, got.Revoked)
	}
	if want.Detections != got.Detections {
		d.add("Detections", want.Detections, got.Detections)
	}
	if (want.OnAccess == nil) != (got.OnAccess == nil) {
		d.add("OnAccess", want.OnAccess, got.OnAccess)
	} else if want.OnAccess != nil {
		w, g := *want.OnAccess, *got.OnAccess
		if w.Enabled != g.Enabled || w.Running != g.Running || w.Mode != g.Mode || w.Error != g.Error || !slices.Equal(w.Paths, g.Paths) {
			d.add("OnAccess", w, g)
		}
	}
	if (want.Update == nil) != (got.Update == nil) {
		d.add("Update", want.Update, got.Update)
	} else if want.Update != nil {
		w, g := *want.Update, *got.Update
		if w.From != g.From || w.To != g.To || !sameTime(w.At, g.At) || w.Bytes != g.Bytes || w.FullBytes != g.FullBytes || w.Deltas != g.Deltas {
			d.add("Update", w, g)
		}
	}
	return d.String()
}

func commandDiff(want, got store.Command) string {
	var d diff
	if want.Seq != got.Seq {
		d.add("Seq", want.Seq, got.Seq)
	}
	if want.Name != got.Name {
		d.add("Name", want.Name, got.Name)
	}
	if want.Target != got.Target {
		d.add("Target", want.Target, got.Target)
	}
	if !bytes.Equal(want.Envelope, got.Envelope) {
		d.add("Envelope", want.Envelope, got.Envelope)
	}
	if !sameTime(want.IssuedAt, got.IssuedAt) {
		d.add("IssuedAt", want.IssuedAt, got.IssuedAt)
	}
	if !sameTime(want.Expires, got.Expires) {
		d.add("Expires", want.Expires, got.Expires)
	}
	return d.String()
}

func resultDiff(want, got store.Result) string {
	var d diff
	if want.Seq != got.Seq {
		d.add("Seq", want.Seq, got.Seq)
	}
	if want.AgentID != got.AgentID {
		d.add("AgentID", want.AgentID, got.AgentID)
	}
	if want.Status != got.Status {
		d.add("Status", want.Status, got.Status)
	}
	if want.Output != got.Output {
		d.add("Output", want.Output, got.Output)
	}
	if !sameTime(want.ExecutedAt, got.ExecutedAt) {
		d.add("ExecutedAt", want.ExecutedAt, got.ExecutedAt)
	}
	if !sameTime(want.ReceivedAt, got.ReceivedAt) {
		d.add("ReceivedAt", want.ReceivedAt, got.ReceivedAt)
	}
	return d.String()
}

func testScans(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	det := func(path, sig string) store.Detection {
		return store.Detection{Path: path, Signature: sig, SHA256: "ab12", DefsVer: "7", FoundAt: t0, Quarantine: "q-" + path}
	}
	scan := store.Scan{
		AgentID: "a", ReportID: "r1", Seq: 0, DefsVer: "7", StartedAt: t0, FinishedAt: t0.Add(time.Second),
		Files: 10, Bytes: 1000, Skipped: 1, ReceivedAt: t0.Add(2 * time.Second),
		Detections: []store.Detection{det("/x", "Eicar"), det("/y", "Other")},
	}
	id1, err := s.RecordScan(ctx, scan)
	if err != nil || id1 == 0 {
		t.Fatalf("RecordScan = %d, %v", id1, err)
	}
	// The same report again is stored once.
	again, err := s.RecordScan(ctx, scan)
	if err != nil || again != id1 {
		t.Fatalf("RecordScan again = %d, %v; want %d", again, err, id1)
	}
	id2, err := s.RecordScan(ctx, store.Scan{AgentID: "b", ReportID: "r1", DefsVer: "7", Files: 3, Detections: []store.Detection{det("/z", "Eicar")}})
	if err != nil || id2 == id1 {
		t.Fatalf("second agent's scan = %d, %v", id2, err)
	}
	if _, err := s.RecordScan(ctx, store.Scan{AgentID: "a"}); err == nil {
		t.Fatal("scan without report id stored")
	}
	all, err := s.Detections(ctx, "", 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("Detections = %d, %v", len(all), err)
	}
	if all[0].Path != "/z" || all[0].AgentID != "b" || all[0].ScanID != id2 {
		t.Errorf("newest detection %+v", all[0])
	}
	ofA, _ := s.Detections(ctx, "a", 10)
	if len(ofA) != 2 || ofA[1].Path != "/x" || ofA[1].Signature != "Eicar" || ofA[1].Quarantine != "q-/x" || !ofA[1].FoundAt.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("detections of a: %+v", ofA)
	}
	if one, _ := s.Detections(ctx, "", 1); len(one) != 1 {
		t.Errorf("limit 1 gave %d", len(one))
	}
	scans, err := s.Scans(ctx, "a", 10)
	if err != nil || len(scans) != 1 || scans[0].Files != 10 || scans[0].Skipped != 1 || scans[0].ReportID != "r1" {
		t.Fatalf("Scans(a) = %+v, %v", scans, err)
	}
	if all, _ := s.Scans(ctx, "", 10); len(all) != 2 {
		t.Errorf("Scans() = %d", len(all))
	}
	if scans[0].Kind != "" {
		t.Errorf("a scan's Kind = %q", scans[0].Kind)
	}
	for _, d := range all {
		if d.Access != "" || d.PID != 0 || d.Process != "" || d.Blocked {
			t.Errorf("a scan's detection has on-access facts: %+v", d)
		}
	}

	// On-access detections: the kind and every detection's access,
	// process and verdict come back.
	oa := store.Scan{
		AgentID: "b", ReportID: "oa-1", Kind: store.ScanKindOnAccess, DefsVer: "7", StartedAt: t0, FinishedAt: t0,
		Files: 3, ReceivedAt: t0.Add(time.Second),
		Detections: []store.Detection{
			{Path: "/home/u/eicar.com", Signature: "Eicar", SHA256: "ab12", DefsVer: "7", FoundAt: t0,
				Access: "open", PID: 4242, Process: "/usr/bin/cat", Blocked: true},
			{Path: "/tmp/x.sh", Signature: "Eicar", DefsVer: "7", FoundAt: t0.Add(time.Millisecond),
				Access: "exec", PID: math.MaxInt32, Quarantine: "q-x", Blocked: true},
			{Path: "/tmp/w", Signature: "Other", DefsVer: "7", FoundAt: t0, Access: "close_write", PID: 1, Process: "/usr/bin/wget"},
		},
	}
	id3, err := s.RecordScan(ctx, oa)
	if err != nil {
		t.Fatalf("RecordScan(on-access) = %d, %v", id3, err)
	}
	scans, err = s.Scans(ctx, "b", 1)
	if err != nil || len(scans) != 1 || scans[0].ID != id3 || scans[0].Kind != store.ScanKindOnAccess || scans[0].Files != 3 || scans[0].ReportID != "oa-1" {
		t.Fatalf("Scans(b, 1) = %+v, %v", scans, err)
	}
	got, err := s.Detections(ctx, "b", 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("Detections(b, 3) = %+v, %v", got, err)
	}
	for i, w := range oa.Detections {
		g := got[len(got)-1-i] // newest first
		if g.ScanID != id3 || g.AgentID != "b" || g.Path != w.Path || g.Signature != w.Signature || g.Quarantine != w.Quarantine ||
			g.Access != w.Access || g.PID != w.PID || g.Process != w.Process || g.Blocked != w.Blocked || !sameTime(w.FoundAt, g.FoundAt) {
			t.Errorf("on-access detection %d = %+v, want %+v", i, g, w)
		}
	}
}

// testNewEpoch: a new epoch is random, different, reported by Epoch, and
// keeps the numbering and the commands.
func testNewEpoch(t *testing.T, s store.Store) {
	ctx := t.Context()
	e0 := s.Epoch()
	if s.EpochStart() != 0 {
		t.Errorf("EpochStart() of a new store = %d, want 0", s.EpochStart())
	}
	appendN(t, s, 3)
	e1, err := s.NewEpoch(ctx)
	if err != nil {
		t.Fatalf("NewEpoch: %v", err)
	}
	if e1 == 0 || e1 == e0 || s.Epoch() != e1 {
		t.Fatalf("NewEpoch() = %d, Epoch() = %d; want a non-zero epoch other than %d, reported by Epoch", e1, s.Epoch(), e0)
	}
	if s.EpochStart() != 3 {
		t.Errorf("EpochStart() = %d, want 3", s.EpochStart())
	}
	if latest, err := s.LatestSeq(ctx); err != nil || latest != 3 {
		t.Errorf("LatestSeq() after NewEpoch = %d, %v; want 3", latest, err)
	}
	// Numbering goes on; the commands of the old epoch stay.
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil || c.Seq != 4 {
		t.Fatalf("AppendCommand after NewEpoch = %d, %v; want 4", c.Seq, err)
	}
	cs, err := s.CommandsAfter(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, cs, seqRange(1, 4))
	e2, err := s.NewEpoch(ctx)
	if err != nil || e2 == 0 || e2 == e1 || e2 == e0 || s.Epoch() != e2 || s.EpochStart() != 4 {
		t.Errorf("second NewEpoch() = %d, %v; Epoch() %d, EpochStart() %d; want a third epoch starting at 4",
			e2, err, s.Epoch(), s.EpochStart())
	}
	// A canceled context changes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.NewEpoch(cctx); err == nil {
		t.Error("NewEpoch with a canceled context succeeded")
	}
	if s.Epoch() != e2 || s.EpochStart() != 4 {
		t.Errorf("after a canceled NewEpoch: Epoch() %d, EpochStart() %d; want %d, 4", s.Epoch(), s.EpochStart(), e2)
	}
}

// testNewEpochConcurrent: NewEpoch is ordered with AppendCommand, so the
// epoch's start is exactly the last command appended before it.
func testNewEpochConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil }); err != nil {
					t.Errorf("AppendCommand: %v", err)
					return
				}
			}
		})
	}
	var (
		epochs []uint64
		starts []uint64
	)
	wg.Go(func() {
		for range 5 {
			e, err := s.NewEpoch(ctx)
			if err != nil {
				t.Errorf("NewEpoch: %v", err)
				return
			}
			epochs = append(epochs, e)
			starts = append(starts, s.EpochStart())
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	for i, e := range epochs {
		if e == 0 || seen[e] {
			t.Errorf("epoch %d (%d) is zero or repeated: %v", i, e, epochs)
		}
		seen[e] = true
		if i > 0 && starts[i] < starts[i-1] {
			t.Errorf("epoch starts went back: %v", starts)
		}
	}
	cs, err := s.CommandsAfter(ctx, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, cs, seqRange(1, 80))
}

func testRevokeAndRemove(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"keep", "revoke", "remove"} {
		a := store.Agent{ID: id, TokenHash: []byte("hash-" + id), Hostname: id, EnrolledAt: t0, Groups: []string{"g"}}
		if err := s.EnrollAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, s, 2)
	before := []store.Result{
		{Seq: 1, AgentID: "keep", Status: "ok", ReceivedAt: t0},
		{Seq: 1, AgentID: "revoke", Status: "ok", ReceivedAt: t0},
		{Seq: 1, AgentID: "remove", Status: "ok", ReceivedAt: t0},
	}
	if err := s.RecordResults(ctx, before); err != nil {
		t.Fatal(err)
	}

	revokedAt := t0.Add(time.Hour)
	if err := s.RevokeAgent(ctx, "revoke", revokedAt); err != nil {
		t.Fatalf("RevokeAgent: %v", err)
	}
	// Revoking again keeps the first time.
	if err := s.RevokeAgent(ctx, "revoke", revokedAt.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeAgent again: %v", err)
	}
	got, err := s.Agent(ctx, "revoke")
	if err != nil || !sameTime(revokedAt, got.Revoked) || !bytes.Equal(got.TokenHash, []byte("hash-revoke")) {
		t.Fatalf("revoked agent = %+v, %v; want Revoked %v and its token hash kept", got, err, revokedAt)
	}
	if err := s.RemoveAgent(ctx, "remove", t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("RemoveAgent: %v", err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Agent(removed)", func() error { _, err := s.Agent(ctx, "remove"); return err }},
		{"RemoveAgent(removed)", func() error { return s.RemoveAgent(ctx, "remove", t0) }},
		{"RevokeAgent(removed)", func() error { return s.RevokeAgent(ctx, "remove", t0) }},
		{"RemoveAgent(unknown)", func() error { return s.RemoveAgent(ctx, "nobody", t0) }},
		{"RevokeAgent(unknown)", func() error { return s.RevokeAgent(ctx, "nobody", t0) }},
	} {
		if err := tc.call(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", tc.name, err)
		}
	}
	as, err := s.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range as {
		ids = append(ids, a.ID)
		if a.ID == "revoke" && !sameTime(revokedAt, a.Revoked) {
			t.Errorf("Agents() lists the revoked agent with Revoked %v, want %v", a.Revoked, revokedAt)
		}
		if a.ID == "keep" && !a.Revoked.IsZero() {
			t.Errorf("Agents() lists agent keep as revoked (%v)", a.Revoked)
		}
	}
	if !slices.Equal(ids, []string{"keep", "revoke"}) {
		t.Errorf("Agents() = %v, want [keep revoke]", ids)
	}

	// Check-ins and results of revoked and removed agents are ignored.
	if _, err := s.CheckIns(ctx, []store.CheckIn{
		{AgentID: "keep", Hostname: "k2", LastSeq: 2, At: t0.Add(3 * time.Hour)},
		{AgentID: "revoke", Hostname: "r2", LastSeq: 2, At: t0.Add(3 * time.Hour)},
		{AgentID: "remove", Hostname: "x2", LastSeq: 2, At: t0.Add(3 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Agent(ctx, "keep"); err != nil || a.Hostname != "k2" || !sameTime(t0.Add(3*time.Hour), a.LastCheckIn) {
		t.Errorf("agent keep after check-in = %+v, %v", a, err)
	}
	if a, err := s.Agent(ctx, "revoke"); err != nil || a.Hostname != "revoke" || a.LastSeq != 0 || !a.LastCheckIn.IsZero() {
		t.Errorf("revoked agent's check-in was applied: %+v, %v", a, err)
	}
	if err := s.RecordResults(ctx, []store.Result{
		{Seq: 2, AgentID: "keep", Status: "ok", ReceivedAt: t0},
		{Seq: 2, AgentID: "revoke", Status: "ok", ReceivedAt: t0},
		{Seq: 2, AgentID: "remove", Status: "ok", ReceivedAt: t0},
	}); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.Results(ctx, 2); err != nil || len(rs) != 1 || rs[0].AgentID != "keep" {
		t.Errorf("Results(2) = %+v, %v; want only agent keep's", rs, err)
	}
	// What they reported before stays.
	if rs, err := s.Results(ctx, 1); err != nil || len(rs) != 3 {
		t.Errorf("Results(1) = %+v, %v; want the 3 results reported before", rs, err)
	}
	// A removed agent's id is not enrolled again.
	if err := s.EnrollAgent(ctx, store.Agent{ID: "remove", TokenHash: []byte{1}}); err == nil {
		t.Error("EnrollAgent with a removed agent's id succeeded")
	}
	if _, err := s.Agent(ctx, "remove"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Agent(removed) after the refused enrollment = %v, want ErrNotFound", err)
	}
}
