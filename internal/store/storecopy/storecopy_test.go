package storecopy_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/store/storecopy"
	"github.com/vigil-fleet/vigil/internal/store/storetest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.RunChecked(m, "vigil/internal/store/storecopy")
	if err := pgtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// filledSQLite returns the path of a SQLite store filled by
// storetest.Fill, closed, and the IDs of its agents.
func filledSQLite(t *testing.T) (string, []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vigil.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := storetest.Fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ids
}

func openPG(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	p, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func digest(t *testing.T, e storecopy.Exporter) *storecopy.Digest {
	t.Helper()
	d := storecopy.NewDigest()
	if err := e.Export(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	return d
}

// A SQLite store filled through its API, copied into PostgreSQL, answers
// every read method of store.Store as the SQLite store does; the copy
// keeps IDs and sequence numbers, and both stores go on from where the
// source was. The source file is not changed.
func TestCopySQLiteToPostgres(t *testing.T) {
	t.Parallel()
	path, ids := filledSQLite(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := sqlite.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	p := openPG(t, pgtest.Shared(t).NewDatabase(t))
	d, err := storecopy.Copy(t.Context(), ro, p)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("copying changed the source file")
	}
	// A reader of a WAL database may create the side files; nothing is
	// written to the log.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("copying wrote %d bytes to the write-ahead log", fi.Size())
	}
	want := map[string]int{"agents": 6, "users": 2, "api_tokens": 2, "commands": 4, "results": 6, "scans": 4, "detections": 4, "audit": 4}
	if !reflect.DeepEqual(d.Counts, want) {
		t.Errorf("rows copied %v, want %v", d.Counts, want)
	}

	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	compareStores(t, s, p, ids)

	// Both go on alike: the next command, scan and audit entry get the
	// same numbers.
	ctx := t.Context()
	for _, st := range []store.Store{s, p} {
		c, err := st.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
			return store.Command{Seq: seq, Name: "ping", Target: `{"all":true}`, Envelope: []byte("e"), IssuedAt: time.Now()}, nil
		})
		if err != nil || c.Seq != 5 {
			t.Errorf("%T: next command %d, %v; want 5", st, c.Seq, err)
		}
		id, err := st.RecordScan(ctx, store.Scan{AgentID: "agent-00", ReportID: "next", Detections: []store.Detection{{Path: "/z", Signature: "S"}}})
		if err != nil || id != 5 {
			t.Errorf("%T: next scan %d, %v; want 5", st, id, err)
		}
		dets, err := st.Detections(ctx, "agent-00", 1)
		if err != nil || len(dets) != 1 || dets[0].ID != 5 {
			t.Errorf("%T: next detection %+v, %v; want ID 5", st, dets, err)
		}
		aid, err := st.AppendAudit(ctx, store.AuditEvent{Time: time.Now(), Action: "x"})
		if err != nil || aid != 5 {
			t.Errorf("%T: next audit entry %d, %v; want 5", st, aid, err)
		}
	}
}

// compareStores fails t where b answers a read method otherwise than a.
func compareStores(t *testing.T, a, b store.Store, ids []string) {
	t.Helper()
	ctx := t.Context()
	same := func(what string, x, y any, errx, erry error) {
		t.Helper()
		if errx != nil || erry != nil {
			if !errors.Is(errx, store.ErrNotFound) || !errors.Is(erry, store.ErrNotFound) {
				t.Errorf("%s: errors %v / %v", what, errx, erry)
			}
			return
		}
		if !reflect.DeepEqual(x, y) {
			t.Errorf("%s differs:\nsqlite   %+v\npostgres %+v", what, x, y)
		}
	}
	if a.Epoch() != b.Epoch() || a.EpochStart() != b.EpochStart() || a.EpochStart() != 2 {
		t.Errorf("epoch %d/%d, start %d/%d (want 2)", a.Epoch(), b.Epoch(), a.EpochStart(), b.EpochStart())
	}
	la, ea := a.LatestSeq(ctx)
	lb, eb := b.LatestSeq(ctx)
	same("LatestSeq", la, lb, ea, eb)
	aa, ea := a.Agents(ctx)
	ab, eb := b.Agents(ctx)
	same("Agents", aa, ab, ea, eb)
	if len(aa) != 5 {
		t.Errorf("%d agents listed, want 5 (one removed)", len(aa))
	}
	for _, id := range append(ids, "nobody") {
		x, ex := a.Agent(ctx, id)
		y, ey := b.Agent(ctx, id)
		same("Agent "+id, x, y, ex, ey)
		rx, ex := a.AgentResults(ctx, id, 0, 100)
		ry, ey := b.AgentResults(ctx, id, 0, 100)
		same("AgentResults "+id, rx, ry, ex, ey)
		sx, ex := a.Scans(ctx, id, 100)
		sy, ey := b.Scans(ctx, id, 100)
		same("Scans "+id, sx, sy, ex, ey)
		dx, ex := a.Detections(ctx, id, 100)
		dy, ey := b.Detections(ctx, id, 100)
		same("Detections "+id, dx, dy, ex, ey)
	}
	clock := store.Clock{Now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), OnlineWithin: 45 * time.Minute, MissingAfter: 100 * time.Minute}
	detected := true
	filters := []store.AgentFilter{{}, {Group: "lab"}, {Search: "HOST-1"}, {NoDefs: true}, {DefsVer: "20261130"}, {Version: "0.10"},
		{Status: store.StatusOnline, Clock: clock}, {Status: store.StatusMissing, Clock: clock}, {Status: store.StatusRevoked, Clock: clock}, {Detected: &detected}}
	for _, f := range filters {
		cx, ex := a.CountAgents(ctx, f)
		cy, ey := b.CountAgents(ctx, f)
		same(fmt.Sprintf("CountAgents %+v", f), cx, cy, ex, ey)
	}
	list := func(s store.Store, q store.AgentQuery) ([]store.Agent, error) {
		var out []store.Agent
		err := s.ListAgents(ctx, q, func(a store.Agent) error { out = append(out, a); return nil })
		return out, err
	}
	for _, sort := range store.AgentSorts {
		for _, desc := range []bool{false, true} {
			q := store.AgentQuery{AgentFilter: store.AgentFilter{Clock: clock}, Sort: sort, Desc: desc}
			x, ex := list(a, q)
			y, ey := list(b, q)
			same(fmt.Sprintf("ListAgents %s desc=%v", sort, desc), x, y, ex, ey)
		}
	}
	fx, ex := a.Fleet(ctx, clock)
	fy, ey := b.Fleet(ctx, clock)
	same("Fleet", fx, fy, ex, ey)

	cx, ex := a.CommandsAfter(ctx, 0, 100)
	cy, ey := b.CommandsAfter(ctx, 0, 100)
	same("CommandsAfter", cx, cy, ex, ey)
	rcx, ex := a.RecentCommands(ctx, 100)
	rcy, ey := b.RecentCommands(ctx, 100)
	same("RecentCommands", rcx, rcy, ex, ey)
	targets := []store.Target{{All: true}, {Groups: []string{"lab"}}, {Agents: []string{"agent-01", "agent-04"}}, {All: true}}
	for i, c := range cx {
		x, ex := a.Command(ctx, c.Seq)
		y, ey := b.Command(ctx, c.Seq)
		same(fmt.Sprintf("Command %d", c.Seq), x, y, ex, ey)
		rx, ex := a.Results(ctx, c.Seq)
		ry, ey := b.Results(ctx, c.Seq)
		same(fmt.Sprintf("Results %d", c.Seq), rx, ry, ex, ey)
		px, ex := a.Progress(ctx, c.Seq, targets[i], c.IssuedAt)
		py, ey := b.Progress(ctx, c.Seq, targets[i], c.IssuedAt)
		same(fmt.Sprintf("Progress %d", c.Seq), px, py, ex, ey)
		tg := func(s store.Store) ([]string, error) {
			var out []string
			err := s.Targets(ctx, targets[i], c.IssuedAt, func(id, host string) error { out = append(out, id+" "+host); return nil })
			return out, err
		}
		tx, ex := tg(a)
		ty, ey := tg(b)
		same(fmt.Sprintf("Targets %d", c.Seq), tx, ty, ex, ey)
	}
	if len(cx) != 4 {
		t.Errorf("%d commands, want 4", len(cx))
	}
	qd := func(s store.Store, q store.DetectionQuery) ([]store.Detection, error) {
		var out []store.Detection
		err := s.QueryDetections(ctx, q, func(d store.Detection) error { out = append(out, d); return nil })
		return out, err
	}
	for _, q := range []store.DetectionQuery{{}, {Signature: "eicar"}, {AgentID: "agent-01"}} {
		x, ex := qd(a, q)
		y, ey := qd(b, q)
		same(fmt.Sprintf("QueryDetections %+v", q), x, y, ex, ey)
	}
	nx, ex := a.CountDetections(ctx, time.Time{})
	ny, ey := b.CountDetections(ctx, time.Time{})
	same("CountDetections", nx, ny, ex, ey)
	if nx != 4 {
		t.Errorf("%d detections, want 4", nx)
	}
	ux, ex := a.Users(ctx)
	uy, ey := b.Users(ctx)
	same("Users", ux, uy, ex, ey)
	for _, name := range []string{"alice", "bob", "carol"} {
		x, ex := a.User(ctx, name)
		y, ey := b.User(ctx, name)
		same("User "+name, x, y, ex, ey)
	}
	tx, ex := a.Tokens(ctx, "")
	ty, ey := b.Tokens(ctx, "")
	same("Tokens", tx, ty, ex, ey)
	for _, tk := range tx {
		x, ex := a.TokenByHash(ctx, tk.Hash)
		y, ey := b.TokenByHash(ctx, tk.Hash)
		same("TokenByHash "+tk.ID, x, y, ex, ey)
	}
	audit := func(s store.Store) ([]store.AuditEvent, error) {
		var out []store.AuditEvent
		err := s.AuditLog(ctx, store.AuditQuery{}, func(e store.AuditEvent) error { out = append(out, e); return nil })
		return out, err
	}
	lx, ex := audit(a)
	ly, ey := audit(b)
	same("AuditLog", lx, ly, ex, ey)
	if len(ux) != 2 || len(tx) != 2 || len(lx) != 4 {
		t.Errorf("%d users, %d tokens, %d audit entries; want 2, 2, 4", len(ux), len(tx), len(lx))
	}
}

// A target that holds anything is refused, and left as it was.
func TestCopyRefusesNonEmptyTarget(t *testing.T) {
	t.Parallel()
	path, _ := filledSQLite(t)
	ro, err := sqlite.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ctx := t.Context()
	cl := pgtest.Shared(t)

	// One agent; a used sequence number; an epoch change.
	withAgent := openPG(t, cl.NewDatabase(t))
	if err := withAgent.EnrollAgent(ctx, store.Agent{ID: "x", Hostname: "x"}); err != nil {
		t.Fatal(err)
	}
	withSeq := openPG(t, cl.NewDatabase(t))
	if _, err := withSeq.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		return store.Command{Seq: seq, Name: "ping", Envelope: []byte("e")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	withEpoch := openPG(t, cl.NewDatabase(t))
	if _, err := withEpoch.NewEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    *postgres.Store
		want string
	}{{withAgent, "agents: 1 rows"}, {withSeq, "commands: 1 rows, sequence counter at 1"}, {withEpoch, "an epoch change"}} {
		before := digest(t, tc.p)
		_, err := storecopy.Copy(ctx, ro, tc.p)
		if !errors.Is(err, storecopy.ErrNotEmpty) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("copy into a store with %s: %v", tc.want, err)
		}
		if diffs := storecopy.Compare(before, digest(t, tc.p)); len(diffs) > 0 {
			t.Errorf("the refused target changed: %v", diffs)
		}
	}
	// A full copy makes the target non-empty too.
	p := openPG(t, cl.NewDatabase(t))
	if _, err := storecopy.Copy(ctx, ro, p); err != nil {
		t.Fatal(err)
	}
	if _, err := storecopy.Copy(ctx, ro, p); !errors.Is(err, storecopy.ErrNotEmpty) {
		t.Fatalf("second copy: %v", err)
	}
}

// The check finds a copy that differs, and a failing check commits
// nothing.
func TestVerifyFindsDifferences(t *testing.T) {
	t.Parallel()
	path, _ := filledSQLite(t)
	ro, err := sqlite.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	p := openPG(t, pgtest.Shared(t).NewDatabase(t))

	// A check that fails rolls the import back: the target stays empty.
	boom := errors.New("boom")
	err = p.Import(ctx, func(to storecopy.Sink) error { return ro.Export(ctx, to) }, func(storecopy.Exporter) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("import with a failing check: %v", err)
	}
	if d := digest(t, p); d.Counts["agents"] != 0 || d.Info.LastSeq != 0 {
		t.Fatalf("a rolled back import left %v, sequence %d", d.Counts, d.Info.LastSeq)
	}
	if _, err := storecopy.Copy(ctx, ro, p); err != nil {
		t.Fatal(err)
	}
	ro.Close()

	// The source changes after the copy: one more audit entry, one agent's
	// check-in. The copy no longer verifies, and the report says where.
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AppendAudit(ctx, store.AuditEvent{Time: time.Now(), Action: "late"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckIns(ctx, []store.CheckIn{{AgentID: "agent-00", Hostname: "renamed", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	var mm *storecopy.MismatchError
	if err := storecopy.Verify(ctx, digest(t, s), p); !errors.As(err, &mm) || len(mm.Diffs) != 2 ||
		!strings.HasPrefix(mm.Diffs[0], "agents: same 6 rows, different contents") ||
		mm.Diffs[1] != "audit: 5 rows, copy 4" {
		t.Fatalf("verify after the source changed: %v", err)
	}
}

// A value PostgreSQL cannot hold in text stops the copy, naming the row,
// and commits nothing.
func TestCopyRefusesUnstorableValue(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vigil.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, a := range []store.Agent{{ID: "good", Hostname: "good"}, {ID: "nul", Hostname: "bad\x00host"}} {
		if err := s.EnrollAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	ro, err := sqlite.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	p := openPG(t, pgtest.Shared(t).NewDatabase(t))
	if _, err := storecopy.Copy(ctx, ro, p); err == nil || !strings.Contains(err.Error(), `agent "nul"`) || !strings.Contains(err.Error(), "0x00") {
		t.Fatalf("copy of a hostname with a NUL byte: %v", err)
	}
	if d := digest(t, p); d.Counts["agents"] != 0 {
		t.Fatalf("a failed copy left %d agents", d.Counts["agents"])
	}
}
