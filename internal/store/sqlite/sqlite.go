// Package sqlite implements store.Store on a single SQLite database file,
// using the pure-Go modernc.org/sqlite driver.
//
// # Connections
//
// A Store holds two database/sql pools on the same file:
//
//   - one writer connection (SetMaxOpenConns(1)), on which every write runs
//     as one BEGIN IMMEDIATE transaction. Writers inside the process queue
//     for that connection in database/sql rather than contending for
//     SQLite's write lock, so they never see SQLITE_BUSY; busy_timeout
//     covers another process (an administrative tool, say) holding the lock.
//   - a pool of read-only connections (mode=ro). The database is in WAL
//     mode, so readers see the last committed state and never wait for the
//     writer, nor the writer for them.
//
// Every connection runs with synchronous=FULL (each commit is fsynced to the
// WAL before it returns), foreign_keys=ON, busy_timeout and SQLite's
// defensive mode. Statements are prepared once per connection.
//
// # Schema
//
// The schema version is PRAGMA user_version and the file is marked with
// PRAGMA application_id ("VGIL"). Open applies the missing entries of an
// ordered list of migrations, each in its own transaction together with the
// user_version it brings the file to, so a crash leaves the file at one
// version or the next. Open refuses a file whose version is newer than this
// build knows ([ErrSchemaTooNew]), a file that is not a SQLite database or is
// corrupt ([ErrCorrupt]) and a SQLite database that belongs to something
// else ([ErrNotStore]).
//
// # Values
//
// The epoch is kept as decimal text in the meta table, as SQLite integers are
// signed 64-bit; NewEpoch replaces it and records the latest sequence number
// then (epoch_start), in one transaction. Sequence numbers and Agent.LastSeq are stored as INTEGER;
// values above math.MaxInt64 are rejected with an error. Times are stored as
// Unix microseconds (NULL for the zero time) and read back in UTC. Groups,
// counters and an agent's on-access state are JSON text (the on-access
// state NULL when the agent reported none).
//
// # Fleet queries
//
// The console's queries over the whole fleet (ListAgents, CountAgents,
// Fleet, Progress, Targets, AgentResults, QueryDetections, CountDetections)
// read indexes, not sorted copies of the agents: migration 6 adds sort keys
// computed in Go (natural order of versions, order of group lists), each
// agent's detection count (kept by RecordScan), its groups one per row
// (agent_groups) and counts by OS, version, definitions and group
// (agent_counts), both kept by triggers on enrollment and removal and by
// CheckIns, and an index for each order. A check-in rewrites the listed
// columns, and so their indexes, only when they changed. ImportAgents loads many agents in one transaction.
//
// Sequence numbers are allocated from a counter row updated in the same
// transaction as the command insert, so they are dense, and never reused even
// if commands were ever deleted. The sign callback of AppendCommand runs
// inside the write transaction: it must be quick and must not write to the
// store itself (it would wait for the writer connection it holds).
//
// Nothing else in the process should open the database file (os.Open and
// Close to copy it, say): SQLite's locks are POSIX record locks by default,
// which the kernel drops at any close of any descriptor of the file. Use
// SQLite's backup API instead, or enable modernc.org/sqlite.OFDLocking before
// the first Open.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vigil-fleet/vigil/internal/store"
)

// BusyTimeout is how long a connection waits for a lock held by another
// process before failing with SQLITE_BUSY.
const BusyTimeout = 10 * time.Second

// applicationID marks a database file as a Vigil store ("VGIL").
const applicationID = 0x5647494c

var (
	// ErrSchemaTooNew is returned by Open for a database whose schema
	// version is newer than this build knows how to use.
	ErrSchemaTooNew = errors.New("database schema is newer than this build supports")
	// ErrCorrupt is returned by Open for a file that is not a SQLite
	// database or whose contents are damaged.
	ErrCorrupt = errors.New("file is not a SQLite database or is corrupt")
	// ErrNotStore is returned by Open for a SQLite database that is not a
	// Vigil store.
	ErrNotStore = errors.New("database is not a Vigil store")
)

// Store is a store.Store on a SQLite file. It is safe for concurrent use.
type Store struct {
	path  string
	epoch atomic.Pointer[epochState]
	w     *sql.DB // single writer connection
	r     *sql.DB // read-only pool

	// Writer statements, used inside transactions through Tx.StmtContext.
	insAgent, updCheckInSame, updCheckInBase, incCount, decCount, insGroup, delGroup, selLastSeq, updLastSeq, insCommand, insResult, updRevoke, updRemove *sql.Stmt
	// updCheckIn[changed] is a check-in's update of what changed
	// (checkInUpdate); updCheckIn[0] is nil.
	updCheckIn [checkInVariants]*sql.Stmt
	// Reader statements.
	selAgent, selAgents, selLatest, selCommand, selAfter, selRecent, selResults *sql.Stmt

	// stopOptimize ends the goroutine that keeps the query planner's
	// statistics current (optimizeEvery).
	stopOptimize chan struct{}
	optimized    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// optimizeEvery is how often the store runs PRAGMA optimize, which
// analyzes again the tables that changed much since they were last
// analyzed (as SQLite advises for long-lived connections), so that the
// planner knows, say, that a group holds 5 % of 100,000 agents and reads
// it through its index rather than through the status index.
const optimizeEvery = time.Hour

var _ store.Store = (*Store)(nil)

// Open opens the store at path, creating the file and its schema when it
// does not exist and migrating an older schema to the current one.
func Open(path string) (*Store, error) {
	return openWith(path, migrations)
}

// openWith is Open with the schema history ms.
func openWith(path string, ms []migration) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	ctx := context.Background()
	s := &Store{path: abs}
	if err := s.open(ctx, ms); err != nil {
		s.closeDBs()
		return nil, err
	}
	return s, nil
}

// open opens the pools and brings the schema to the last version of ms.
func (s *Store) open(ctx context.Context, ms []migration) error {
	var err error
	s.w, err = sql.Open("sqlite", dsn(s.path, false))
	if err != nil {
		return s.openErr(err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.w.PingContext(ctx); err != nil {
		return s.openErr(err)
	}
	// Check what the file is before anything converts it to WAL, so that a
	// foreign or too new database is left as it was found.
	if err := checkIdentity(ctx, s.w, len(ms)); err != nil {
		return s.openErr(err)
	}
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return s.openErr(err)
	}
	if mode != "wal" {
		return s.openErr(fmt.Errorf("cannot switch to WAL mode (journal_mode is %q)", mode))
	}
	if err := migrate(ctx, s.w, ms); err != nil {
		return s.openErr(err)
	}
	st, err := readEpoch(ctx, s.w)
	if err != nil {
		return s.openErr(err)
	}
	s.epoch.Store(&st)

	s.r, err = sql.Open("sqlite", dsn(s.path, true))
	if err != nil {
		return s.openErr(err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)
	if err := s.r.PingContext(ctx); err != nil {
		return s.openErr(err)
	}
	if err := s.prepare(ctx); err != nil {
		return s.openErr(err)
	}
	// Statistics for the tables never analyzed (a new or migrated file),
	// and a bounded analysis (a few milliseconds at 100,000 agents).
	if err := s.optimize(ctx, "PRAGMA optimize = 0x10002"); err != nil {
		return s.openErr(err)
	}
	s.stopOptimize = make(chan struct{})
	s.optimized.Add(1)
	go s.optimizeLoop()
	return nil
}

func (s *Store) optimize(ctx context.Context, pragma string) error {
	_, err := s.w.ExecContext(ctx, "PRAGMA analysis_limit = 1000; "+pragma)
	return err
}

func (s *Store) optimizeLoop() {
	defer s.optimized.Done()
	t := time.NewTicker(optimizeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopOptimize:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			s.optimize(ctx, "PRAGMA optimize") // best effort: the statistics stay as they were
			cancel()
		}
	}
}

// dsn returns the data source name for the file at the absolute path abs: a
// SQLite URI, so that the path may hold any character and mode applies.
func dsn(abs string, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", "FULL")
	q.Set("_defensive", "1")
	q.Set("_dqs", "0")
	q.Add("_pragma", "temp_store(MEMORY)")
	if readOnly {
		q.Set("mode", "ro")
		q.Add("_pragma", "cache_size(-16000)")
	} else {
		q.Set("mode", "rwc")
		q.Set("_txlock", "immediate")
		q.Add("_pragma", "cache_size(-32000)")
		// Truncate the WAL back to 64 MiB after a checkpoint that emptied it.
		q.Add("_pragma", "journal_size_limit(67108864)")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// openErr wraps an error met while opening, classifying the SQLite errors
// that mean the file is not a usable database.
func (s *Store) openErr(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("sqlite store: open %s: %w: %w", s.path, ErrCorrupt, err)
		}
	}
	return fmt.Errorf("sqlite store: open %s: %w", s.path, err)
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Epoch implements store.Store.
func (s *Store) Epoch() uint64 { return s.epoch.Load().epoch }

// EpochStart implements store.Store.
func (s *Store) EpochStart() uint64 { return s.epoch.Load().start }

// NewEpoch implements store.Store. It runs on the writer connection, so it
// is ordered with AppendCommand: EpochStart is exactly the sequence number
// of the last command appended before it.
func (s *Store) NewEpoch(ctx context.Context) (uint64, error) {
	old := s.epoch.Load()
	var st epochState
	for st.epoch = old.epoch; st.epoch == old.epoch; {
		var err error
		if st.epoch, err = newEpoch(); err != nil {
			return 0, fmt.Errorf("sqlite store: new epoch: %w", err)
		}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var last int64
		if err := tx.StmtContext(ctx, s.selLastSeq).QueryRowContext(ctx).Scan(&last); err != nil {
			return err
		}
		st.start = uint64(last)
		if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE key = 'epoch'", formatEpoch(st.epoch)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('epoch_start', ?1)
			ON CONFLICT (key) DO UPDATE SET value = ?1`, strconv.FormatUint(st.start, 10))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite store: new epoch: %w", err)
	}
	s.epoch.Store(&st)
	return st.epoch, nil
}

// Close implements store.Store. It closes the read pool, then the writer,
// whose close checkpoints the WAL into the database file. Calling it more
// than once returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.closeDBs() })
	return s.closeErr
}

func (s *Store) closeDBs() error {
	if s.stopOptimize != nil {
		close(s.stopOptimize)
		s.optimized.Wait()
	}
	var errs []error
	for _, st := range append(s.updCheckIn[:], []*sql.Stmt{
		s.insAgent, s.updCheckInSame, s.updCheckInBase, s.incCount, s.decCount, s.insGroup, s.delGroup, s.selLastSeq, s.updLastSeq, s.insCommand, s.insResult, s.updRevoke, s.updRemove,
		s.selAgent, s.selAgents, s.selLatest, s.selCommand, s.selAfter, s.selRecent, s.selResults,
	}...) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite store: close %s: %w", s.path, err)
	}
	return nil
}

// write runs fn in one write transaction on the writer connection and
// commits it. The transaction is rolled back when fn fails or panics.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op once committed
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
