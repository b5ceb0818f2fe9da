// Package postgres implements store.Store on PostgreSQL (through
// github.com/jackc/pgx/v5 and its pool), for several server instances over
// one database.
//
// # Schema
//
// Open applies the missing entries of an ordered, append-only list of
// migrations, each in its own transaction together with its row in
// schema_migrations (version, name, applied_at). Each of those
// transactions first takes a transaction-level advisory lock, so server
// instances starting at once against a new database wait for one another
// and apply every migration once. Open refuses a database whose schema is
// newer than this build ([ErrSchemaTooNew]) and one whose schema (the
// first of the search path) holds other tables but no schema_migrations
// ([ErrNotStore]).
//
// The tables are those of the SQLite store: meta (the epoch, as decimal
// text since half of all epochs do not fit a bigint, and epoch_start),
// agents, command_seq (one row: the last sequence number issued),
// commands, results, scans, detections, users, api_tokens and audit.
// Times are timestamptz (PostgreSQL keeps microseconds; the zero time is
// NULL) and read back in UTC. Sequence numbers are bigint (values above
// math.MaxInt64 are refused). An agent's groups are a text[] (in the
// order reported, with a GIN index for group filters and command
// targets); counters and its on-access state are JSON text, as in the
// SQLite store. A result's output is bytea: it is whatever the command
// printed, NUL bytes and invalid UTF-8 included, which text cannot hold.
// Every other string is text, which cannot hold a NUL byte: a value with
// one is refused with PostgreSQL's error. Columns that are sorted,
// compared or searched are COLLATE "C", so that they order bytewise (as
// SQLite and Go do) and lower() folds ASCII only, whatever collation the
// database was created with.
//
// The agents carry the sort keys of the fleet queries (version_key,
// defs_key: natural order, see store.NaturalKey; groups_key, see store.GroupsKey),
// computed in Go, and their count of detections, kept by RecordScan.
// fleetIndexes (schema.go) says which orders have an index and why
// last_seen has none.
//
// # Concurrency
//
// A Store is a pgxpool.Pool whose connections run with synchronous_commit
// on (unless the DSN says otherwise), so that a commit has reached the
// disk (or the synchronous standbys) before a method returns, and with
// JIT compilation off (unless the DSN says otherwise); every method is one statement or one
// transaction at PostgreSQL's default isolation (read committed), and
// several Stores, in one process or in several server instances, may use
// the same database at once:
//
//   - AppendCommand takes the next sequence number with UPDATE command_seq
//     SET last = last + 1 ... RETURNING last inside its transaction, reads
//     the epoch (so that Epoch, while sign runs, is the store's, another
//     instance's new epoch included: see store.ErrEpochChanged), calls
//     sign, inserts the command and commits. The row lock serializes
//     appends across every instance until commit, so numbers are dense,
//     unique and committed in order (a reader never sees N+1 without N);
//     a failed sign or insert rolls back and the number is not consumed.
//     The commit runs even if ctx is cancelled once the command is
//     inserted, so that a command is either stored and acknowledged or
//     neither (short of a connection lost during the commit, which no
//     client of any database can tell apart).
//   - NewEpoch locks the same row, so EpochStart is exactly the last
//     command appended before it. Each Store caches the epoch it read at
//     Open or set itself, and reads it again when its events (below)
//     report another instance's NewEpoch or may have missed one.
//   - CheckIns and RecordResults are one transaction per batch (the
//     server's group commit hands whole batches): the check-ins as one
//     UPDATE ... FROM unnest(...), the results as one INSERT ... SELECT
//     FROM unnest(...) ON CONFLICT DO NOTHING. Rows are locked in key
//     order (agents by ID, results by sequence then agent), so concurrent
//     batches, of this instance or another, wait for one another instead
//     of deadlocking. Within a batch the last check-in of an agent and
//     the first result of a (Seq, AgentID) count, as in the SQLite store.
//   - RecordScan inserts with ON CONFLICT (agent_id, report_id) DO
//     NOTHING, so a report sent twice at once to two instances is stored
//     once.
//
// # Events
//
// AppendCommand, RecordResults (when it inserts a row) and NewEpoch send
// a NOTIFY on the channel vigil_events (payloads "commands <seq>",
// "results", "epoch") inside their transaction, so that it is delivered
// only once the change is committed. Events (store.Notifier) LISTENs on
// a connection of its own, outside the pool, and turns them into
// store.Events for the server, which follows the other instances'
// commands, results and epoch with them. A broken connection is opened
// again after a backoff, and an EventResync tells the subscriber to read
// again what it may have missed. PostgreSQL serializes the commits of
// transactions that sent a NOTIFY (a lock on its queue at commit); what
// that costs is measured in docs/store-postgres.md.
//
// The sign callback of AppendCommand runs while the counter row is
// locked, holding every other instance's appends: it must be quick and
// must not use the store.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vigil-fleet/vigil/internal/store"
)

// Store is a store.Store on a PostgreSQL database. It is safe for
// concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	epoch atomic.Pointer[epochState]

	listenErrs atomic.Int64 // failures of the events' connection
	listenLog  atomic.Pointer[func(error, time.Duration)]

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database dsn names (a postgres:// URL or a
// keyword/value string, as pgx takes them; pool_max_conns and the other
// pgxpool settings included), creating or migrating the schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return openWith(ctx, dsn, migrations)
}

// openWith is Open with the schema history ms.
func openWith(ctx context.Context, dsn string, ms []migration) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	// Durable before acknowledged (package store): a server-wide
	// synchronous_commit = off must not apply to the store's commits.
	// "local" or "remote_apply", say, may still be asked for in dsn.
	// JIT compilation costs tens of milliseconds a query and pays only on
	// long analytical ones: the fleet queries over 100,000 agents took
	// longer with it.
	for k, v := range map[string]string{"synchronous_commit": "on", "jit": "off"} {
		if _, ok := cfg.ConnConfig.RuntimeParams[k]; !ok {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	where := fmt.Sprintf("database %s on %s", cfg.ConnConfig.Database, cfg.ConnConfig.Host)
	if err := migrate(ctx, pool, ms); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: open %s: %w", where, err)
	}
	st, err := readEpoch(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: open %s: %w", where, err)
	}
	s := &Store{pool: pool}
	s.epoch.Store(&st)
	return s, nil
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close implements store.Store: it closes the pool, waiting for the
// connections in use to be released.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// epochState is the store's epoch and the latest sequence number when it
// began (meta keys epoch and epoch_start; a store that never changed
// epoch has no epoch_start: 0).
type epochState struct {
	epoch, start uint64
}

// newEpoch returns a random non-zero epoch.
func newEpoch() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("epoch: %w", err)
		}
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e, nil
		}
	}
}

func formatEpoch(e uint64) string { return strconv.FormatUint(e, 10) }

func readEpoch(ctx context.Context, pool *pgxpool.Pool) (epochState, error) {
	rows, err := pool.Query(ctx, "SELECT key, value FROM meta WHERE key IN ('epoch', 'epoch_start')")
	if err != nil {
		return epochState{}, err
	}
	kv := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return epochState{}, err
		}
		kv[k] = v
	}
	if err := rows.Err(); err != nil {
		return epochState{}, err
	}
	var st epochState
	v, ok := kv["epoch"]
	if !ok {
		return epochState{}, errors.New("meta table has no epoch")
	}
	if st.epoch, err = strconv.ParseUint(v, 10, 64); err != nil || st.epoch == 0 {
		return epochState{}, fmt.Errorf("invalid epoch %q in meta table", v)
	}
	if v, ok := kv["epoch_start"]; ok {
		if st.start, err = strconv.ParseUint(v, 10, 64); err != nil || st.start > math.MaxInt64 {
			return epochState{}, fmt.Errorf("invalid epoch_start %q in meta table", v)
		}
	}
	return st, nil
}

// Epoch implements store.Store.
func (s *Store) Epoch() uint64 { return s.epoch.Load().epoch }

// EpochStart implements store.Store.
func (s *Store) EpochStart() uint64 { return s.epoch.Load().start }

// NewEpoch implements store.Store. It locks the sequence counter, so it is
// ordered with every instance's AppendCommand.
func (s *Store) NewEpoch(ctx context.Context) (uint64, error) {
	old := s.epoch.Load()
	var st epochState
	for st.epoch = old.epoch; st.epoch == old.epoch; {
		var err error
		if st.epoch, err = newEpoch(); err != nil {
			return 0, fmt.Errorf("postgres store: new epoch: %w", err)
		}
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, "SELECT last FROM command_seq WHERE id = 1 FOR UPDATE").Scan(&last); err != nil {
			return err
		}
		st.start = uint64(last)
		if _, err := tx.Exec(ctx, "UPDATE meta SET value = $1 WHERE key = 'epoch'", formatEpoch(st.epoch)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('epoch_start', $1)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.FormatUint(st.start, 10)); err != nil {
			return err
		}
		return notify(ctx, tx, "epoch")
	})
	if err != nil {
		return 0, fmt.Errorf("postgres store: new epoch: %w", err)
	}
	s.epoch.Store(&st)
	return st.epoch, nil
}

// write runs fn in one transaction and commits it; it is rolled back when
// fn fails or panics. Once fn has returned nil, the commit runs even if
// ctx is cancelled meanwhile: what fn wrote is either committed and
// acknowledged, or reported failed and rolled back.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op once committed
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(context.WithoutCancel(ctx))
}

// pgCode returns the SQLSTATE of err, "" when it is not PostgreSQL's.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// SQLSTATEs the store tells apart.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// int64Of converts a sequence number to the bigint PostgreSQL stores.
func int64Of(what string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%s %d exceeds the largest storable value %d", what, v, int64(math.MaxInt64))
	}
	return int64(v), nil
}

// ts is how a time is passed: NULL for the zero time. pgx sends
// microseconds, dropping finer digits.
func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// timeOf is the inverse of ts.
func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// normTime returns t as it reads back after being stored.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// ceilMicro returns the smallest time of whole microseconds at or after
// t, so that comparing a stored time with it compares the time as stored
// with t exactly.
func ceilMicro(t time.Time) time.Time {
	u := t.Truncate(time.Microsecond)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return u
}

// bound returns an audit query's Since or Until bound as it is compared
// with stored times: truncated to the microsecond, as the times themselves
// were (an entry stored at Since is at or after it), as the SQLite store
// and the conformance suite have it. Detection queries compare exactly
// (ceilMicro), as the suite has it for them.
func bound(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// args collects the arguments of a query built piece by piece.
type args []any

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}
