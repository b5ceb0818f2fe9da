package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	})
}

// mustOpen opens the store at path and closes it when the test ends.
func mustOpen(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawDB opens path with the driver directly, bypassing the store.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func sign(seq uint64) (store.Command, error) {
	return store.Command{
		Seq:      seq,
		Name:     "run",
		Target:   `{"all":true}`,
		Envelope: fmt.Appendf(nil, "envelope-%d", seq),
		IssuedAt: time.Unix(1_700_000_000, 0).Add(time.Duration(seq) * time.Millisecond),
		Expires:  time.Unix(1_700_003_600, 0),
	}, nil
}

func TestOpenCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub dir?#%", "vigil.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if s.Epoch() == 0 {
		t.Error("Epoch() = 0")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path string
	}{
		{"empty", ""},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "vigil.db")},
		{"directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tc.path)
			}
			t.Logf("Open(%q): %v", tc.path, err)
		})
	}
}

func TestPragmas(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	for _, db := range []struct {
		name string
		db   *sql.DB
	}{{"writer", s.w}, {"reader", s.r}} {
		for _, p := range []struct{ pragma, want string }{
			{"journal_mode", "wal"},
			{"synchronous", "2"}, // FULL
			{"foreign_keys", "1"},
			{"busy_timeout", strconv.FormatInt(BusyTimeout.Milliseconds(), 10)},
			{"user_version", strconv.Itoa(SchemaVersion())},
			{"application_id", strconv.Itoa(applicationID)},
		} {
			var got string
			if err := db.db.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatalf("%s: PRAGMA %s: %v", db.name, p.pragma, err)
			}
			if got != p.want {
				t.Errorf("%s: PRAGMA %s = %s, want %s", db.name, p.pragma, got, p.want)
			}
		}
	}
	var check string
	if err := s.r.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
	if _, err := s.r.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('x', 'y')"); err == nil {
		t.Error("write through the read pool succeeded")
	}
}

func TestEpochPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	s := mustOpen(t, path)
	epoch := s.Epoch()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s := mustOpen(t, path)
		if s.Epoch() != epoch {
			t.Fatalf("epoch after reopening = %d, want %d", s.Epoch(), epoch)
		}
		s.Close()
	}
	other := mustOpen(t, filepath.Join(t.TempDir(), "other.db"))
	if other.Epoch() == epoch {
		t.Errorf("two new stores share epoch %d", epoch)
	}
}

func TestEpochRoundTrip(t *testing.T) {
	for _, e := range []uint64{1, math.MaxInt64, 1 << 63, 1<<63 + 1, 0xdeadbeefcafef00d, math.MaxUint64} {
		t.Run(strconv.FormatUint(e, 10), func(t *testing.T) {
			got, err := parseEpoch(formatEpoch(e))
			if err != nil || got != e {
				t.Fatalf("parseEpoch(formatEpoch(%d)) = %d, %v", e, got, err)
			}
			path := filepath.Join(t.TempDir(), "vigil.db")
			s := mustOpen(t, path)
			mustExec(t, s.w, "UPDATE meta SET value = ? WHERE key = 'epoch'", formatEpoch(e))
			s.Close()
			s = mustOpen(t, path)
			if s.Epoch() != e {
				t.Errorf("Epoch() = %d, want %d", s.Epoch(), e)
			}
		})
	}
}

func TestEpochInvalid(t *testing.T) {
	for _, tc := range []struct{ name, query string }{
		{"zero", "UPDATE meta SET value = '0' WHERE key = 'epoch'"},
		{"negative", "UPDATE meta SET value = '-5' WHERE key = 'epoch'"},
		{"too large", "UPDATE meta SET value = '18446744073709551616' WHERE key = 'epoch'"},
		{"not a number", "UPDATE meta SET value = 'abc' WHERE key = 'epoch'"},
		{"missing", "DELETE FROM meta WHERE key = 'epoch'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vigil.db")
			s := mustOpen(t, path)
			mustExec(t, s.w, tc.query)
			s.Close()
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), "epoch") {
				t.Errorf("error %q does not mention the epoch", err)
			}
		})
	}
}

func TestNewEpoch(t *testing.T) {
	seen := map[uint64]bool{}
	high := false
	for range 64 {
		e, err := newEpoch()
		if err != nil || e == 0 || seen[e] {
			t.Fatalf("newEpoch() = %d, %v", e, err)
		}
		seen[e] = true
		high = high || e >= 1<<63
	}
	if !high {
		t.Error("64 random epochs, none at or above 2^63")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	ctx := t.Context()
	enrolled := time.Date(2026, 1, 2, 3, 4, 5, 6_000, time.UTC)
	agent := store.Agent{
		ID: "a1", TokenHash: []byte{9, 9}, Hostname: "h", OS: "linux", Arch: "amd64", Version: "1",
		DefsVer: "d", Groups: []string{"g"}, LastSeq: 3, EnrolledAt: enrolled,
		Counters: map[string]uint64{"x": math.MaxUint64},
	}
	s := mustOpen(t, path)
	epoch := s.Epoch()
	if err := s.EnrollAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	var cmds []store.Command
	for range 3 {
		c, err := s.AppendCommand(ctx, sign)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	seen := enrolled.Add(time.Hour)
	if _, err := s.CheckIns(ctx, []store.CheckIn{{AgentID: "a1", Hostname: "h2", LastSeq: 2, At: seen, Counters: agent.Counters}}); err != nil {
		t.Fatal(err)
	}
	res := store.Result{Seq: 2, AgentID: "a1", Status: "ok", Output: "done", ExecutedAt: seen, ReceivedAt: seen}
	if err := s.RecordResults(ctx, []store.Result{res}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, path)
	if s.Epoch() != epoch {
		t.Errorf("epoch %d, want %d", s.Epoch(), epoch)
	}
	got, err := s.Agent(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != "h2" || got.LastSeq != 2 || !got.LastSeen.Equal(seen) || !got.EnrolledAt.Equal(enrolled) ||
		got.Counters["x"] != math.MaxUint64 || !bytes.Equal(got.TokenHash, agent.TokenHash) {
		t.Errorf("agent after reopening: %+v", got)
	}
	for _, want := range cmds {
		c, err := s.Command(ctx, want.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.Envelope, want.Envelope) || !c.IssuedAt.Equal(want.IssuedAt) || !c.Expires.Equal(want.Expires) {
			t.Errorf("command %d after reopening: %+v, want %+v", want.Seq, c, want)
		}
	}
	rs, err := s.Results(ctx, 2)
	if err != nil || len(rs) != 1 || rs[0] != res {
		t.Errorf("Results(2) after reopening = %+v, %v; want %+v", rs, err, res)
	}
	// Numbering goes on where it stopped.
	c, err := s.AppendCommand(ctx, sign)
	if err != nil || c.Seq != 4 {
		t.Errorf("AppendCommand after reopening = %d, %v; want 4", c.Seq, err)
	}
}

func TestSeqNotReusedAfterDelete(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	for range 3 {
		if _, err := s.AppendCommand(ctx, sign); err != nil {
			t.Fatal(err)
		}
	}
	// Should commands ever be pruned, their numbers stay used.
	mustExec(t, s.w, "DELETE FROM commands WHERE seq = 3")
	c, err := s.AppendCommand(ctx, sign)
	if err != nil || c.Seq != 4 {
		t.Errorf("AppendCommand after deleting the newest = %d, %v; want 4", c.Seq, err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	s := mustOpen(t, path)
	newer := SchemaVersion() + 3
	mustExec(t, s.w, fmt.Sprintf("PRAGMA user_version = %d", newer))
	s.Close()

	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("error %v is not ErrSchemaTooNew", err)
	}
	for _, want := range []string{path, strconv.Itoa(newer), strconv.Itoa(SchemaVersion())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Left as it was.
	var v int
	if err := rawDB(t, path).QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != newer {
		t.Errorf("user_version after the refused Open = %d, %v; want %d", v, err, newer)
	}
}

func TestMigrationIsAtomic(t *testing.T) {
	// A failing migration leaves the version and the tables as they were.
	path := filepath.Join(t.TempDir(), "vigil.db")
	mustOpen(t, path).Close()
	ms := append(append([]migration(nil), migrations...), migration{
		name: "broken",
		up: func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "CREATE TABLE extra (x INTEGER)"); err != nil {
				return err
			}
			return errors.New("boom")
		},
	})
	if s, err := openWith(path, ms); err == nil {
		s.Close()
		t.Fatal("Open with a failing migration succeeded")
	} else if !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error %q does not name the migration and its failure", err)
	}
	db := rawDB(t, path)
	var v, n int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations))
	}
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'extra'").Scan(&n); err != nil || n != 0 {
		t.Errorf("table of the failed migration exists (%d, %v)", n, err)
	}
	db.Close()
	mustOpen(t, path)
}

func TestMigrationsStepByStep(t *testing.T) {
	// A store made by an older build (here: one without the last migration
	// that a newer build adds) is brought up to date, data kept.
	path := filepath.Join(t.TempDir(), "vigil.db")
	s := mustOpen(t, path)
	if _, err := s.AppendCommand(t.Context(), sign); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ms := append(append([]migration(nil), migrations...), migration{
		name: "add index",
		up: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "CREATE INDEX results_agent ON results (agent_id)")
			return err
		},
	})
	s, err := openWith(path, ms)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.w.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(ms) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(ms))
	}
	if c, err := s.Command(t.Context(), 1); err != nil || string(c.Envelope) != "envelope-1" {
		t.Errorf("Command(1) after migrating = %+v, %v", c, err)
	}
	s.Close()
	// This build does not know the newer version.
	if s, err := Open(path); !errors.Is(err, ErrSchemaTooNew) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open by the older build = %v, want ErrSchemaTooNew", err)
	}
}

func TestCorruptFile(t *testing.T) {
	random := make([]byte, 8192)
	rand.Read(random)

	// A real store whose header survives but whose schema page is garbage.
	good := filepath.Join(t.TempDir(), "good.db")
	s := mustOpen(t, good)
	s.Close()
	real, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	damaged := append(real[:100:100], bytes.Repeat([]byte{0xa5}, len(real)-100)...)

	for _, tc := range []struct {
		name    string
		content []byte
		want    error
	}{
		{"random", random, ErrCorrupt},
		{"text", []byte("this is not a database, it is a shopping list\n"), ErrCorrupt},
		{"damaged schema page", damaged, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vigil.db")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, tc.content) {
				t.Error("the file was modified")
			}
		})
	}
}

func TestForeignDatabase(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup []string
	}{
		{"other tables", []string{"CREATE TABLE photos (id INTEGER PRIMARY KEY, data BLOB)"}},
		{"other application", []string{"PRAGMA application_id = 1234"}},
		{"versioned, no application id", []string{"CREATE TABLE t (x)", "PRAGMA user_version = 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "other.db")
			db := rawDB(t, path)
			for _, q := range tc.setup {
				mustExec(t, db, q)
			}
			db.Close()
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open of a foreign database succeeded")
			}
			if !errors.Is(err, ErrNotStore) {
				t.Errorf("error %v is not ErrNotStore", err)
			}
			var mode string
			if err := rawDB(t, path).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "delete" {
				t.Errorf("foreign database journal_mode = %q, %v; want it left at delete", mode, err)
			}
		})
	}
}

func TestOutOfRange(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	if err := s.EnrollAgent(ctx, store.Agent{ID: "a", TokenHash: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendCommand(ctx, sign); err != nil {
		t.Fatal(err)
	}
	if err := s.EnrollAgent(ctx, store.Agent{ID: "b", LastSeq: 1 << 63}); err == nil {
		t.Error("EnrollAgent with LastSeq 2^63 succeeded")
	}
	if err := s.EnrollAgent(ctx, store.Agent{}); err == nil {
		t.Error("EnrollAgent with an empty ID succeeded")
	}
	_, err := s.CheckIns(ctx, []store.CheckIn{
		{AgentID: "a", Hostname: "changed", LastSeq: 1},
		{AgentID: "a", LastSeq: math.MaxUint64},
	})
	if err == nil || !strings.Contains(err.Error(), "18446744073709551615") {
		t.Errorf("CheckIns with LastSeq 2^64-1: %v", err)
	}
	if a, err := s.Agent(ctx, "a"); err != nil || a.Hostname != "" {
		t.Errorf("a refused batch changed the agent: %+v, %v", a, err)
	}
	if err := s.RecordResults(ctx, []store.Result{{Seq: 1, AgentID: "a"}, {Seq: 1 << 63, AgentID: "a"}}); err == nil {
		t.Error("RecordResults with Seq 2^63 succeeded")
	}
	if rs, err := s.Results(ctx, 1); err != nil || len(rs) != 0 {
		t.Errorf("a refused batch stored results: %v, %v", rs, err)
	}
	if rs, err := s.Results(ctx, math.MaxUint64); err != nil || len(rs) != 0 {
		t.Errorf("Results(2^64-1) = %v, %v", rs, err)
	}
	_, err = s.RecordScan(ctx, store.Scan{AgentID: "a", ReportID: "r", Kind: store.ScanKindOnAccess, Detections: []store.Detection{
		{Path: "/x", Signature: "s", Access: "open", PID: 1}, {Path: "/y", Signature: "s", Access: "open", PID: -1}}})
	if err == nil || !strings.Contains(err.Error(), "negative pid") {
		t.Errorf("RecordScan with a negative pid: %v", err)
	}
	if ds, err := s.Detections(ctx, "", 10); err != nil || len(ds) != 0 {
		t.Errorf("a refused scan stored detections: %v, %v", ds, err)
	}
}

func TestAppendCommandBadSign(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		sign func(uint64) (store.Command, error)
	}{
		{"wrong seq", func(seq uint64) (store.Command, error) { c, _ := sign(seq); c.Seq++; return c, nil }},
		{"empty envelope", func(seq uint64) (store.Command, error) { c, _ := sign(seq); c.Envelope = nil; return c, nil }},
		{"panic", func(seq uint64) (store.Command, error) { panic("signer crashed") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			func() {
				defer func() { recover() }()
				if _, err := s.AppendCommand(ctx, tc.sign); err == nil {
					t.Error("AppendCommand succeeded")
				}
			}()
			if latest, err := s.LatestSeq(ctx); err != nil || latest != 0 {
				t.Errorf("LatestSeq() = %d, %v; want 0", latest, err)
			}
		})
	}
	// Unset Seq is filled in; times come back as stored.
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		c, _ := sign(seq)
		c.Seq = 0
		c.IssuedAt = time.Date(2026, 5, 6, 7, 8, 9, 123_456_789, time.Local)
		return c, nil
	})
	if err != nil || c.Seq != 1 {
		t.Fatalf("AppendCommand = %d, %v; want 1", c.Seq, err)
	}
	stored, err := s.Command(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if stored.IssuedAt != c.IssuedAt || stored.Expires != c.Expires {
		t.Errorf("returned times %v %v, stored %v %v", c.IssuedAt, c.Expires, stored.IssuedAt, stored.Expires)
	}
}

func TestReadsDoNotWaitForWriter(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	if _, err := s.AppendCommand(ctx, sign); err != nil {
		t.Fatal(err)
	}
	// Hold the write lock with an uncommitted command 2.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("INSERT INTO commands (seq, name, target, envelope) VALUES (2, 'x', '', x'00')"); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	latest, err := s.LatestSeq(rctx)
	if err != nil || latest != 1 {
		t.Fatalf("LatestSeq during a write = %d, %v; want 1", latest, err)
	}
	if _, err := s.Command(rctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Agents(rctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reads took %v while a write was open", d)
	}
}

// TestTwoStoresSameFile stands for two processes sharing the file (the
// server and an administrative tool): their writers serialize on SQLite's
// lock within busy_timeout, and numbering stays dense.
func TestTwoStoresSameFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	a, b := mustOpen(t, path), mustOpen(t, path)
	if a.Epoch() != b.Epoch() {
		t.Fatalf("epochs %d and %d", a.Epoch(), b.Epoch())
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			for range 20 {
				if _, err := s.AppendCommand(ctx, sign); err != nil {
					t.Errorf("AppendCommand: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	cs, err := b.CommandsAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 80 {
		t.Fatalf("%d commands, want 80", len(cs))
	}
	for i, c := range cs {
		if c.Seq != uint64(i+1) || string(c.Envelope) != fmt.Sprintf("envelope-%d", c.Seq) {
			t.Fatalf("command at %d: seq %d envelope %q", i, c.Seq, c.Envelope)
		}
	}
}

// helperEnv names the database file TestHelperProcess works on; the test
// binary runs as that helper only when it is set.
const helperEnv = "VIGIL_STORE_KILL_HELPER_DB"

var killAgents = []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"}

func killEnvelope(seq uint64) []byte { return fmt.Appendf(nil, "kill-envelope-%d", seq) }

// TestHelperProcess is the child of TestKillDurability. It writes to the
// store from several goroutines, as the server does, and prints a line for
// each write after the store has acknowledged it, until it is killed:
//
//	cmd SEQ          AppendCommand returned SEQ
//	res SEQ AGENT    RecordResults stored the result of AGENT for SEQ
//	chk N            CheckIns set LastSeq N on every agent
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process of TestKillDurability")
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(2)
	}
	s, err := Open(path)
	if err != nil {
		fail("open: %v", err)
	}
	base, err := strconv.ParseUint(os.Getenv(helperEnv+"_BASE"), 10, 64)
	if err != nil {
		fail("base: %v", err)
	}
	var mu sync.Mutex
	ack := func(format string, args ...any) {
		// One write(2) per line, made only after the store returned.
		line := fmt.Appendf(nil, format+"\n", args...)
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stdout.Write(line); err != nil {
			os.Exit(3) // the parent has gone
		}
	}
	ctx := context.Background()
	seqs := make(chan uint64, 1024)
	for range 2 {
		go func() {
			for {
				c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
					return store.Command{Seq: seq, Name: "kill", Target: "{}", Envelope: killEnvelope(seq),
						IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)}, nil
				})
				if err != nil {
					fail("append: %v", err)
				}
				ack("cmd %d", c.Seq)
				seqs <- c.Seq
			}
		}()
	}
	go func() {
		for seq := range seqs {
			batch := []uint64{seq}
		drain:
			for len(batch) < 32 {
				select {
				case seq := <-seqs:
					batch = append(batch, seq)
				default:
					break drain
				}
			}
			var rs []store.Result
			for _, seq := range batch {
				for _, a := range killAgents[:1+seq%uint64(len(killAgents))] {
					rs = append(rs, store.Result{Seq: seq, AgentID: a, Status: "ok", Output: "out",
						ExecutedAt: time.Now(), ReceivedAt: time.Now()})
				}
			}
			if err := s.RecordResults(ctx, rs); err != nil {
				fail("results: %v", err)
			}
			for _, r := range rs {
				ack("res %d %s", r.Seq, r.AgentID)
			}
		}
	}()
	go func() {
		for n := base + 1; ; n++ {
			cs := make([]store.CheckIn, len(killAgents))
			for i, a := range killAgents {
				cs[i] = store.CheckIn{AgentID: a, Hostname: a, LastSeq: n, At: time.Now(),
					Counters: map[string]uint64{"n": n}}
			}
			if _, err := s.CheckIns(ctx, cs); err != nil {
				fail("check-ins: %v", err)
			}
			ack("chk %d", n)
		}
	}()
	// Never return: the parent kills the process. Exit on our own only if
	// it has not after a long while.
	time.Sleep(2 * time.Minute)
	fail("not killed")
}

// TestKillDurability runs TestHelperProcess in a child process, kills it
// with SIGKILL while it writes, and checks that everything the child was told
// is stored is in the file, and that sequence numbers are dense. It does so
// several times on the same file, so that numbering must also go on
// correctly after each crash.
func TestKillDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "vigil.db")
	s := mustOpen(t, path)
	for _, a := range killAgents {
		if err := s.EnrollAgent(t.Context(), store.Agent{ID: a, TokenHash: []byte(a)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	var (
		ackedCmds = map[uint64]bool{}
		ackedRes  = map[string]bool{} // "seq agent"
		ackedChk  uint64
	)
	for round := range 3 {
		base := uint64(round) * 1_000_000
		cmds, res, chk := killChild(t, path, base, 300)
		t.Logf("round %d: %d commands, %d results, %d check-ins acknowledged before SIGKILL",
			round, len(cmds), len(res), chk-base)
		for seq := range cmds {
			if ackedCmds[seq] {
				t.Fatalf("round %d: sequence %d acknowledged again after a restart", round, seq)
			}
			ackedCmds[seq] = true
		}
		for r := range res {
			ackedRes[r] = true
		}
		if chk > 0 {
			ackedChk = chk
		}
		verifyAfterKill(t, path, ackedCmds, ackedRes, ackedChk)
	}
}

// killChild runs the helper on path until it has acknowledged at least
// wantCmds commands, kills it and returns every acknowledgement it printed.
func killChild(t *testing.T, path string, base uint64, wantCmds int) (cmds map[uint64]bool, res map[string]bool, chk uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), helperEnv+"="+path, helperEnv+"_BASE="+strconv.FormatUint(base, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill: %v", err)
			}
		}
	}
	timer := time.AfterFunc(time.Minute, kill)
	defer timer.Stop()

	cmds, res = map[uint64]bool{}, map[string]bool{}
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// EOF: the child is dead. A line without its newline was not
			// completely written, and does not count.
			break
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "cmd":
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			cmds[seq] = true
			if len(cmds) >= wantCmds {
				kill() // keep reading: what was printed before is acknowledged
			}
		case len(f) == 3 && f[0] == "res":
			res[f[1]+" "+f[2]] = true
		case len(f) == 2 && f[0] == "chk":
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			chk = max(chk, n)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, want death by SIGKILL; stderr:\n%s", err, stderr.Bytes())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want death by SIGKILL; stderr:\n%s", err, stderr.Bytes())
	}
	if len(cmds) < wantCmds {
		t.Fatalf("child acknowledged only %d commands before it died; stderr:\n%s", len(cmds), stderr.Bytes())
	}
	return cmds, res, chk
}

// verifyAfterKill opens the store the killed child left and checks that it
// is intact and holds everything acknowledged.
func verifyAfterKill(t *testing.T, path string, cmds map[uint64]bool, res map[string]bool, chk uint64) {
	t.Helper()
	ctx := t.Context()
	s := mustOpen(t, path)
	defer s.Close()
	var check string
	if err := s.r.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	latest, err := s.LatestSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.CommandsAfter(ctx, 0, math.MaxInt32)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(all)) != latest {
		t.Fatalf("%d commands stored, latest sequence %d: not dense", len(all), latest)
	}
	for i, c := range all {
		if c.Seq != uint64(i+1) {
			t.Fatalf("stored command %d has sequence %d: not dense", i+1, c.Seq)
		}
		if !bytes.Equal(c.Envelope, killEnvelope(c.Seq)) {
			t.Fatalf("command %d has envelope %q", c.Seq, c.Envelope)
		}
	}
	for seq := range cmds {
		if seq > latest {
			t.Errorf("acknowledged command %d lost (latest is %d)", seq, latest)
		}
	}
	stored := map[string]bool{}
	for _, c := range all {
		rs, err := s.Results(ctx, c.Seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			stored[fmt.Sprintf("%d %s", r.Seq, r.AgentID)] = true
		}
	}
	for r := range res {
		if !stored[r] {
			t.Errorf("acknowledged result %q lost", r)
		}
	}
	for _, id := range killAgents {
		a, err := s.Agent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.LastSeq < chk {
			t.Errorf("agent %s has LastSeq %d, check-in %d was acknowledged", id, a.LastSeq, chk)
		}
	}
}

func TestNewEpochPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	s := mustOpen(t, path)
	ctx := t.Context()
	for range 5 {
		if _, err := s.AppendCommand(ctx, sign); err != nil {
			t.Fatal(err)
		}
	}
	e, err := s.NewEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if s.Epoch() != e || s.EpochStart() != 5 {
		t.Fatalf("after reopening: epoch %d starting at %d, want %d starting at 5", s.Epoch(), s.EpochStart(), e)
	}
	if c, err := s.AppendCommand(ctx, sign); err != nil || c.Seq != 6 {
		t.Fatalf("AppendCommand after reopening = %d, %v; want 6", c.Seq, err)
	}
	s.Close()
	// A damaged epoch_start is refused, like a damaged epoch.
	mustExec(t, rawDB(t, path), "UPDATE meta SET value = 'x' WHERE key = 'epoch_start'")
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open with a damaged epoch_start succeeded")
	} else if !strings.Contains(err.Error(), "epoch_start") {
		t.Errorf("error %q does not name epoch_start", err)
	}
}

// oldStore makes the database file path as a build that knew only the
// first n migrations made it, and returns it open (one connection).
func oldStore(t *testing.T, path string, n int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if err := migrate(t.Context(), db, migrations[:n]); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestMigrateAgentStates: a store made before agents had a last check-in,
// revocation and removal opens, keeps its agents, takes the last check-in
// from last_seen where a check-in set it, and then revokes and removes.
func TestMigrateAgentStates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	ctx := t.Context()
	db := oldStore(t, path, 2)
	enrolled := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	checked := enrolled.Add(time.Hour)
	mustExec(t, db, `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups_json, last_seq,
		enrolled_at, last_seen, counters_json) VALUES
		('checked', x'01', 'h1', 'linux', 'amd64', 'v1', '', '["g"]', 3, ?1, ?2, '{}'),
		('silent', x'02', 'h2', 'linux', 'amd64', 'v1', '', '[]', 0, ?1, ?1, '{}')`,
		enrolled.UnixMicro(), checked.UnixMicro())
	db.Close()

	s := mustOpen(t, path)
	var v int
	if err := s.w.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("user_version = %d, %v; want %d", v, err, SchemaVersion())
	}
	as, err := s.Agents(ctx)
	if err != nil || len(as) != 2 {
		t.Fatalf("Agents() = %+v, %v", as, err)
	}
	if as[0].ID != "checked" || !as[0].LastCheckIn.Equal(checked) || as[0].LastSeq != 3 || !as[0].Revoked.IsZero() {
		t.Errorf("agent checked after migrating: %+v", as[0])
	}
	if as[1].ID != "silent" || !as[1].LastCheckIn.IsZero() || !as[1].LastSeen.Equal(enrolled) {
		t.Errorf("agent silent after migrating: %+v", as[1])
	}
	if err := s.RevokeAgent(ctx, "checked", checked); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAgent(ctx, "silent", checked); err != nil {
		t.Fatal(err)
	}
	if as, err := s.Agents(ctx); err != nil || len(as) != 1 || !as[0].Revoked.Equal(checked) {
		t.Errorf("Agents() after revoking and removing = %+v, %v", as, err)
	}
}

// TestMigrateOnAccess: a store made before on-access scanning (the schema
// of the first three migrations, filled as that build filled it: an
// agent that checked in, a scan with a detection) opens, is upgraded, and
// keeps everything: its agents report no on-access state, its scans are of
// kind "" and its detections carry no on-access facts. Then on-access
// states and detections are stored and survive reopening.
func TestMigrateOnAccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	ctx := t.Context()
	db := oldStore(t, path, 3)
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	mustExec(t, db, `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups_json, last_seq,
		enrolled_at, last_seen, counters_json, last_checkin, revoked_at) VALUES
		('old', x'01', 'h1', 'linux', 'amd64', 'v1', 'd1', '["g"]', 3, ?1, ?2, '{"executed":3}', ?2, NULL)`,
		at.UnixMicro(), at.Add(time.Hour).UnixMicro())
	mustExec(t, db, `INSERT INTO scans (agent_id, report_id, seq, defs_ver, started_at, finished_at,
		files, bytes, skipped, detections, received_at) VALUES ('old', 'r1', 2, 'd1', ?1, ?1, 10, 1000, 1, 1, ?1)`, at.UnixMicro())
	mustExec(t, db, `INSERT INTO detections (scan_id, agent_id, path, signature, sha256, defs_ver,
		found_at, quarantine) VALUES (1, 'old', '/tmp/eicar.com', 'Eicar', 'ab', 'd1', ?1, 'q1')`, at.UnixMicro())
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 3 {
		t.Fatalf("the old store's user_version = %d, %v; want 3", v, err)
	}
	db.Close()

	s := mustOpen(t, path)
	if err := s.w.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("user_version after opening = %d, %v; want %d", v, err, SchemaVersion())
	}
	a, err := s.Agent(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if a.OnAccess != nil || a.Hostname != "h1" || a.LastSeq != 3 || a.Counters["executed"] != 3 || !a.LastCheckIn.Equal(at.Add(time.Hour)) {
		t.Errorf("agent after migrating: %+v (on-access %+v)", a, a.OnAccess)
	}
	scans, err := s.Scans(ctx, "", 10)
	if err != nil || len(scans) != 1 || scans[0].Kind != "" || scans[0].Seq != 2 || scans[0].Files != 10 || scans[0].ReportID != "r1" {
		t.Fatalf("scans after migrating = %+v, %v", scans, err)
	}
	ds, err := s.Detections(ctx, "", 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("detections after migrating = %+v, %v", ds, err)
	}
	if d := ds[0]; d.Path != "/tmp/eicar.com" || d.Quarantine != "q1" || d.Access != "" || d.PID != 0 || d.Process != "" || d.Blocked {
		t.Errorf("detection after migrating: %+v", d)
	}

	oa := &store.OnAccess{Enabled: true, Running: true, Mode: "block", Paths: []string{"/home"}}
	if _, err := s.CheckIns(ctx, []store.CheckIn{{AgentID: "old", Hostname: "h1", LastSeq: 4, At: at.Add(2 * time.Hour), OnAccess: oa}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordScan(ctx, store.Scan{AgentID: "old", ReportID: "oa1", Kind: store.ScanKindOnAccess, DefsVer: "d1", Files: 1,
		Detections: []store.Detection{{Path: "/home/x", Signature: "Eicar", Access: "exec", PID: 77, Process: "/bin/sh", Blocked: true}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if a, err := s.Agent(ctx, "old"); err != nil || a.OnAccess == nil || a.OnAccess.Mode != "block" || !a.OnAccess.Running || len(a.OnAccess.Paths) != 1 {
		t.Errorf("agent after reopening: %+v, %v", a.OnAccess, err)
	}
	if ds, err := s.Detections(ctx, "", 1); err != nil || len(ds) != 1 || ds[0].Access != "exec" || ds[0].PID != 77 || ds[0].Process != "/bin/sh" || !ds[0].Blocked {
		t.Errorf("on-access detection after reopening: %+v, %v", ds, err)
	}
	if scans, err := s.Scans(ctx, "", 1); err != nil || len(scans) != 1 || scans[0].Kind != store.ScanKindOnAccess {
		t.Errorf("on-access report after reopening: %+v, %v", scans, err)
	}
	// The columns' constraints hold: a negative pid or a blocked flag
	// other than 0 or 1 is refused by the schema itself.
	for _, q := range []string{
		"UPDATE detections SET pid = -1 WHERE id = 1",
		"UPDATE detections SET blocked = 2 WHERE id = 1",
	} {
		if _, err := s.w.ExecContext(ctx, q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
}

// TestMigrateAccounts: a store made before users, API tokens and the
// audit log (the schema of the first four migrations, filled as that
// build filled it) opens, is upgraded, keeps its agents and commands, and
// then holds users, tokens and audit entries that survive reopening.
func TestMigrateAccounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	ctx := t.Context()
	db := oldStore(t, path, 4)
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	mustExec(t, db, `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups_json, last_seq,
		enrolled_at, last_seen, counters_json, last_checkin, revoked_at, onaccess_json) VALUES
		('old', x'01', 'h1', 'linux', 'amd64', 'v1', 'd1', '["g"]', 1, ?1, ?1, '{}', ?1, NULL, NULL)`, at.UnixMicro())
	mustExec(t, db, `UPDATE command_seq SET last = 1`)
	mustExec(t, db, `INSERT INTO commands (seq, name, target, envelope, issued_at, expires) VALUES (1, 'ping', '{"all":true}', x'00', ?1, ?1)`, at.UnixMicro())
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 4 {
		t.Fatalf("the old store's user_version = %d, %v; want 4", v, err)
	}
	db.Close()

	s := mustOpen(t, path)
	if err := s.w.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("user_version after opening = %d, %v; want %d", v, err, SchemaVersion())
	}
	if a, err := s.Agent(ctx, "old"); err != nil || a.Hostname != "h1" || a.LastSeq != 1 {
		t.Errorf("agent after migrating: %+v, %v", a, err)
	}
	if c, err := s.Command(ctx, 1); err != nil || c.Name != "ping" {
		t.Errorf("command after migrating: %+v, %v", c, err)
	}
	if us, err := s.Users(ctx); err != nil || len(us) != 0 {
		t.Errorf("users after migrating: %+v, %v", us, err)
	}
	if err := s.AddUser(ctx, store.User{Name: "ann", Role: "admin", PasswordHash: "$argon2id$x", Created: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddToken(ctx, store.APIToken{ID: "t", User: "ann", Name: "cli", Hash: []byte{7}, Created: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, store.AuditEvent{Time: at, Actor: "ann", Action: "login", OK: true}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	if u, err := s.User(ctx, "ann"); err != nil || u.Role != "admin" {
		t.Errorf("user after reopening: %+v, %v", u, err)
	}
	if tok, err := s.TokenByHash(ctx, []byte{7}); err != nil || tok.User != "ann" {
		t.Errorf("token after reopening: %+v, %v", tok, err)
	}
	n := 0
	if err := s.AuditLog(ctx, store.AuditQuery{Actor: "ann"}, func(store.AuditEvent) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("audit after reopening: %d entries, %v", n, err)
	}
	// The audit log is read by time through its index.
	var plan string
	rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN SELECT id FROM audit WHERE at >= 1 ORDER BY at DESC, id DESC LIMIT 10")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan += detail + "\n"
	}
	rows.Close()
	if !strings.Contains(plan, "audit_time") || strings.Contains(plan, "TEMP B-TREE") {
		t.Errorf("the audit log by time does not use its index:\n%s", plan)
	}
}
