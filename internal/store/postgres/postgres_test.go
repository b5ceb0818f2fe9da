package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/storetest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.RunChecked(m, "vigil/internal/store/postgres")
	if err := pgtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// newDSN returns the DSN of a new, empty database of the shared cluster.
func newDSN(t testing.TB) string {
	t.Helper()
	return pgtest.Shared(t).NewDatabase(t)
}

// mustOpen opens a store on dsn that t's cleanup closes.
func mustOpen(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, newDSN(t))
	})
}

func command(seq uint64) store.Command {
	return store.Command{Seq: seq, Name: "noop", Target: `{"all":true}`, Envelope: fmt.Appendf(nil, "envelope %d", seq),
		IssuedAt: time.Now()}
}

// TestAppendTwoInstances: two Stores over one database, as two server
// instances with their own pools, append 500 commands at once; the
// sequence numbers are dense and unique, and each envelope is stored
// under the number it was signed with.
func TestAppendTwoInstances(t *testing.T) {
	dsn := newDSN(t)
	a, b := mustOpen(t, dsn), mustOpen(t, dsn)
	if a.Epoch() != b.Epoch() {
		t.Fatalf("two instances see epochs %d and %d", a.Epoch(), b.Epoch())
	}
	const workers, each = 10, 25 // per instance: 2 × 10 × 25 = 500
	var (
		mu   sync.Mutex
		seqs []uint64
		wg   sync.WaitGroup
	)
	for _, s := range []*Store{a, b} {
		for range workers {
			wg.Go(func() {
				for range each {
					c, err := s.AppendCommand(t.Context(), func(seq uint64) (store.Command, error) { return command(seq), nil })
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
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("sorted sequences: position %d holds %d, want dense 1..%d without duplicates", i, seq, 2*workers*each)
		}
	}
	cs, err := b.CommandsAfter(t.Context(), 0, 1000)
	if err != nil || len(cs) != 2*workers*each {
		t.Fatalf("CommandsAfter = %d commands, %v; want %d", len(cs), err, 2*workers*each)
	}
	for i, c := range cs {
		if want := fmt.Sprintf("envelope %d", i+1); c.Seq != uint64(i+1) || string(c.Envelope) != want {
			t.Errorf("command %d: seq %d, envelope %q; want %q", i+1, c.Seq, c.Envelope, want)
		}
	}
}

// TestOpenConcurrent: instances opening a new database at once migrate it
// once, and all see the one epoch it was given.
func TestOpenConcurrent(t *testing.T) {
	dsn := newDSN(t)
	const n = 6
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), dsn) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("Open #%d: %v", i, errs[i])
		}
		defer s.Close()
		if s.Epoch() != stores[0].Epoch() {
			t.Errorf("instance %d has epoch %d, instance 0 %d", i, s.Epoch(), stores[0].Epoch())
		}
	}
	var versions []int
	rows, err := stores[0].pool.Query(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err == nil {
		versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	var want []int
	for v := 1; v <= SchemaVersion(); v++ {
		want = append(want, v)
	}
	if err != nil || !slices.Equal(versions, want) {
		t.Errorf("schema_migrations = %v, %v; want %v", versions, err, want)
	}
}

// TestMigrate: a database at an older version is brought to the current
// one keeping its data; one newer than this build, or holding other
// tables, is refused.
func TestMigrate(t *testing.T) {
	ctx := t.Context()
	dsn := newDSN(t)
	old, err := openWith(ctx, dsn, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	// The agent is written as that version's code wrote it: today's
	// writes name columns later migrations added.
	if _, err := old.pool.Exec(ctx, `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups,
		last_seq, counters_json, version_key, defs_key, groups_key) VALUES ('a1', '\x01', '', '', '', '1.10', '', '{}', 0, '{}', $1, '', '')`,
		store.NaturalKey("1.10")); err != nil {
		t.Fatal(err)
	}
	epoch := old.Epoch()
	old.Close()

	s := mustOpen(t, dsn)
	if s.Epoch() != epoch {
		t.Errorf("epoch after migrating = %d, want %d", s.Epoch(), epoch)
	}
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'agents_version'").Scan(&n); err != nil || n != 1 {
		t.Errorf("index agents_version after migrating: %d, %v", n, err)
	}
	if a, err := s.Agent(ctx, "a1"); err != nil || a.Version != "1.10" {
		t.Errorf("Agent(a1) after migrating = %+v, %v", a, err)
	}
	s.Close()

	future := append(slices.Clip(migrations), migration{name: "from the future", sql: "CREATE TABLE future (x int)"})
	f, err := openWith(ctx, dsn, future)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(ctx, dsn); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}

	foreign := newDSN(t)
	conn, err := pgx.Connect(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE invoices (id int)")
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, foreign); !errors.Is(err, ErrNotStore) {
		t.Errorf("Open of a database with other tables: %v, want ErrNotStore", err)
	}
}

// TestNewEpochSharedCounter: NewEpoch on one instance starts at the last
// command either instance appended, and a store opened afterwards sees it.
func TestNewEpochSharedCounter(t *testing.T) {
	ctx := t.Context()
	dsn := newDSN(t)
	a, b := mustOpen(t, dsn), mustOpen(t, dsn)
	for _, s := range []*Store{a, b, a} {
		if _, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil }); err != nil {
			t.Fatal(err)
		}
	}
	e, err := b.NewEpoch(ctx)
	if err != nil || b.EpochStart() != 3 {
		t.Fatalf("NewEpoch = %d, %v; EpochStart %d, want 3", e, err, b.EpochStart())
	}
	c := mustOpen(t, dsn)
	if c.Epoch() != e || c.EpochStart() != 3 {
		t.Errorf("a store opened after NewEpoch: epoch %d start %d, want %d and 3", c.Epoch(), c.EpochStart(), e)
	}
}

// TestBytes: what text cannot hold. A result's output is kept byte for
// byte; a NUL byte in a hostname is refused with an error naming the
// agent, and fails its batch only.
func TestBytes(t *testing.T) {
	ctx := t.Context()
	s := mustOpen(t, newDSN(t))
	if err := s.EnrollAgent(ctx, store.Agent{ID: "a", TokenHash: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnrollAgent(ctx, store.Agent{ID: "nul", Hostname: "x\x00y"}); err == nil {
		t.Error("enrolled an agent whose hostname holds a NUL byte")
	}
	if _, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil }); err != nil {
		t.Fatal(err)
	}
	out := "\x00\xff\xfe ünï \x00"
	if err := s.RecordResults(ctx, []store.Result{{Seq: 1, AgentID: "a", Status: "ok", Output: out}}); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.Results(ctx, 1); err != nil || len(rs) != 1 || rs[0].Output != out {
		t.Errorf("Results(1) = %+v, %v; want output %q", rs, err, out)
	}
}

// TestSynchronousCommit: the store's commits are durable even where the
// server's default says otherwise; the DSN may still choose.
func TestSynchronousCommit(t *testing.T) {
	dsn := newDSN(t)
	for _, tc := range []struct{ dsn, want string }{
		{dsn + "&options=-c%20synchronous_commit%3Doff", "on"},
		{dsn + "&synchronous_commit=local", "local"},
	} {
		s := mustOpen(t, tc.dsn)
		var got string
		if err := s.pool.QueryRow(t.Context(), "SHOW synchronous_commit").Scan(&got); err != nil || got != tc.want {
			t.Errorf("synchronous_commit with %s = %q, %v; want %q", tc.dsn, got, err, tc.want)
		}
	}
}

// TestBatchesTwoInstances: two instances apply check-in and result
// batches over the same agents at once, each batch in its own random
// order: the batches queue on the rows rather than deadlock (PostgreSQL
// would abort one of two deadlocked transactions with an error), and
// every result is stored once.
func TestBatchesTwoInstances(t *testing.T) {
	ctx := t.Context()
	dsn := newDSN(t)
	a, b := mustOpen(t, dsn), mustOpen(t, dsn)
	const nAgents, rounds = 40, 15
	var agentIDs []string
	for i := range nAgents {
		id := fmt.Sprintf("agent-%02d", i)
		agentIDs = append(agentIDs, id)
		if err := a.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	for range rounds {
		if _, err := b.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil }); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for r := range rounds {
				order := rng.Perm(nAgents)
				cs := make([]store.CheckIn, nAgents)
				rs := make([]store.Result, 0, nAgents)
				for k, i := range order {
					cs[k] = store.CheckIn{AgentID: agentIDs[i], Hostname: fmt.Sprintf("w%d", w), LastSeq: uint64(r), At: time.Now()}
					// Every worker reports every result: one of each is kept.
					rs = append(rs, store.Result{Seq: uint64(rng.IntN(rounds) + 1), AgentID: agentIDs[i], Status: "ok"})
				}
				if _, err := s.CheckIns(ctx, cs); err != nil {
					t.Errorf("worker %d: CheckIns: %v", w, err)
					return
				}
				if err := s.RecordResults(ctx, rs); err != nil {
					t.Errorf("worker %d: RecordResults: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	var n, distinct int
	if err := a.pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT (seq, agent_id)) FROM results").Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != distinct || n == 0 {
		t.Errorf("%d results stored, %d distinct (seq, agent) pairs", n, distinct)
	}
}
