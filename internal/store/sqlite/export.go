package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/storecopy"
)

var _ storecopy.Exporter = (*Store)(nil)

// Export implements storecopy.Exporter: every row of the store, from one
// read transaction.
func (s *Store) Export(ctx context.Context, to storecopy.Sink) error {
	return export(ctx, s.r, to)
}

// ReadOnly is a store file opened for reading only (mode=ro), to copy it
// (storecopy.Exporter): nothing is written to the file, its schema is not
// migrated, and it is not switched to WAL mode. As any reader of a
// database in WAL mode, SQLite may create the empty side files
// (FILE-wal, FILE-shm) when they are missing.
type ReadOnly struct {
	path string
	db   *sql.DB
}

var _ storecopy.Exporter = (*ReadOnly)(nil)

// OpenReadOnly opens the store at path for reading only. The file must
// exist and be a store of this build's schema version: an older one is
// refused (vigil server of this build migrates it when it opens it).
func OpenReadOnly(path string) (*ReadOnly, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite store: open %s: %w", abs, err)
	}
	db.SetMaxOpenConns(1)
	ro := &ReadOnly{path: abs, db: db}
	fail := func(err error) (*ReadOnly, error) {
		db.Close()
		return nil, (&Store{path: abs}).openErr(err)
	}
	h, err := readHeader(context.Background(), db)
	if err != nil {
		return fail(err)
	}
	if err := h.check(len(migrations)); err != nil {
		return fail(err)
	}
	switch {
	case h.version == 0:
		return fail(fmt.Errorf("%w: the file holds no store", ErrNotStore))
	case h.version < len(migrations):
		return fail(fmt.Errorf("schema version %d is older than this build's %d: start this build's vigil server on it once (it migrates the file), then copy it", h.version, len(migrations)))
	}
	return ro, nil
}

// Path returns the absolute path of the database file.
func (r *ReadOnly) Path() string { return r.path }

// Export implements storecopy.Exporter.
func (r *ReadOnly) Export(ctx context.Context, to storecopy.Sink) error {
	return export(ctx, r.db, to)
}

// Close closes the file.
func (r *ReadOnly) Close() error { return r.db.Close() }

// extraCols is a row whose last columns go to more, the others to the
// destinations Scan is given: a row scanner of the store reads its
// columns, an export reads what it leaves out.
type extraCols struct {
	sc   scanner
	more []any
}

func (e extraCols) Scan(dest ...any) error { return e.sc.Scan(append(dest, e.more...)...) }

func export(ctx context.Context, db *sql.DB, to storecopy.Sink) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store: export: %w", err)
	}
	defer tx.Rollback() // read only: nothing to keep
	var m storecopy.Meta
	var epoch string
	var start sql.NullString
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'epoch'").Scan(&epoch); err != nil {
		return fmt.Errorf("sqlite store: export: epoch: %w", err)
	}
	if m.Epoch, err = parseEpoch(epoch); err != nil {
		return fmt.Errorf("sqlite store: export: %w", err)
	}
	err = tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'epoch_start'").Scan(&start)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite store: export: epoch start: %w", err)
	}
	if start.Valid {
		if _, err := fmt.Sscan(start.String, &m.EpochStart); err != nil {
			return fmt.Errorf("sqlite store: export: invalid epoch_start %q", start.String)
		}
	}
	if err := tx.QueryRowContext(ctx, "SELECT last FROM command_seq WHERE id = 1").Scan(&last); err != nil {
		return fmt.Errorf("sqlite store: export: sequence counter: %w", err)
	}
	m.LastSeq = uint64(last)
	if err := to.Meta(m); err != nil {
		return err
	}
	each := func(table, query string, row func(sc scanner) error) error {
		rows, err := tx.QueryContext(ctx, query)
		if err != nil {
			return fmt.Errorf("sqlite store: export %s: %w", table, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := row(rows); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite store: export %s: %w", table, err)
		}
		return nil
	}
	bad := func(table string, err error) error { return fmt.Errorf("sqlite store: export %s: %w", table, err) }
	steps := []func() error{
		func() error {
			return each("agents", "SELECT "+agentCols+", removed_at FROM agents ORDER BY id", func(sc scanner) error {
				var removed sql.NullInt64
				a, err := scanAgent(extraCols{sc, []any{&removed}})
				if err != nil {
					return bad("agents", err)
				}
				return to.Agent(storecopy.Agent{Agent: a, Removed: timeVal(removed)})
			})
		},
		func() error {
			return each("users", "SELECT "+userCols+" FROM users ORDER BY name", func(sc scanner) error {
				u, err := scanUser(sc)
				if err != nil {
					return bad("users", err)
				}
				return to.User(u)
			})
		},
		func() error {
			return each("api_tokens", "SELECT "+tokenCols+" FROM api_tokens ORDER BY id", func(sc scanner) error {
				t, err := scanToken(sc)
				if err != nil {
					return bad("api_tokens", err)
				}
				return to.Token(t)
			})
		},
		func() error {
			return each("commands", "SELECT "+commandCols+" FROM commands ORDER BY seq", func(sc scanner) error {
				c, err := scanCommand(sc)
				if err != nil {
					return bad("commands", err)
				}
				return to.Command(c)
			})
		},
		func() error {
			return each("results", "SELECT "+resultCols+" FROM results ORDER BY seq, agent_id", func(sc scanner) error {
				r, err := scanResult(sc)
				if err != nil {
					return bad("results", err)
				}
				return to.Result(r)
			})
		},
		func() error {
			return each("scans", "SELECT "+scanCols+", detections FROM scans ORDER BY id", func(sc scanner) error {
				var (
					x                  storecopy.Scan
					seq                int64
					start, fin, recvAt sql.NullInt64
				)
				if err := sc.Scan(&x.ID, &x.AgentID, &x.ReportID, &x.Kind, &seq, &x.DefsVer, &start, &fin, &x.Files, &x.Bytes, &x.Skipped, &recvAt, &x.DetectionCount); err != nil {
					return bad("scans", err)
				}
				x.Seq, x.StartedAt, x.FinishedAt, x.ReceivedAt = uint64(seq), timeVal(start), timeVal(fin), timeVal(recvAt)
				return to.Scan(x)
			})
		},
		func() error {
			return each("detections", "SELECT "+detectionCols+" FROM detections ORDER BY id", func(sc scanner) error {
				d, err := scanDetection(sc)
				if err != nil {
					return bad("detections", err)
				}
				return to.Detection(d)
			})
		},
		func() error {
			return each("audit", "SELECT "+auditCols+" FROM audit ORDER BY id", func(sc scanner) error {
				var e store.AuditEvent
				var at int64
				if err := sc.Scan(&e.ID, &at, &e.Actor, &e.Addr, &e.Action, &e.Target, &e.Detail, &e.OK); err != nil {
					return bad("audit", err)
				}
				e.Time = time.UnixMicro(at).UTC()
				return to.Audit(e)
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
