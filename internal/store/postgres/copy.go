package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/storecopy"
)

var (
	_ storecopy.Exporter = (*Store)(nil)
	_ storecopy.Importer = (*Store)(nil)
)

// extraCols is a row whose last columns go to more, the others to the
// destinations Scan is given: a row scanner of the store reads its
// columns, an export reads what it leaves out.
type extraCols struct {
	row  pgx.Row
	more []any
}

func (e extraCols) Scan(dest ...any) error { return e.row.Scan(append(dest, e.more...)...) }

// copyTables are the tables Import requires empty and locks.
var copyTables = []string{"meta", "command_seq", "agents", "users", "api_tokens", "commands", "results", "scans", "detections", "audit"}

// Export implements storecopy.Exporter: every row of the store, from one
// repeatable-read, read-only transaction (one state of the database, even
// while server instances write to it).
func (s *Store) Export(ctx context.Context, to storecopy.Sink) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres store: export: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return exportFrom(ctx, tx, to)
}

// txExporter exports what a transaction sees.
type txExporter struct{ tx pgx.Tx }

func (e txExporter) Export(ctx context.Context, to storecopy.Sink) error {
	return exportFrom(ctx, e.tx, to)
}

// exportFrom hands every row tx sees to to.
func exportFrom(ctx context.Context, tx pgx.Tx, to storecopy.Sink) (err error) {
	var m storecopy.Meta
	var epoch string
	var start *string
	var last int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT value FROM meta WHERE key = 'epoch'), (SELECT value FROM meta WHERE key = 'epoch_start'),
		(SELECT last FROM command_seq WHERE id = 1)`).Scan(&epoch, &start, &last); err != nil {
		return fmt.Errorf("postgres store: export: meta: %w", err)
	}
	if m.Epoch, err = strconv.ParseUint(epoch, 10, 64); err != nil {
		return fmt.Errorf("postgres store: export: invalid epoch %q", epoch)
	}
	if start != nil {
		if m.EpochStart, err = strconv.ParseUint(*start, 10, 64); err != nil {
			return fmt.Errorf("postgres store: export: invalid epoch_start %q", *start)
		}
	}
	m.LastSeq = uint64(last)
	if err := to.Meta(m); err != nil {
		return err
	}
	bad := func(table string, err error) error { return fmt.Errorf("postgres store: export %s: %w", table, err) }
	each := func(table, query string, row func(r pgx.Row) error) error {
		rows, err := tx.Query(ctx, query)
		if err != nil {
			return bad(table, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := row(rows); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return bad(table, err)
		}
		return nil
	}
	steps := []func() error{
		func() error {
			return each("agents", "SELECT "+agentCols+", removed_at FROM agents ORDER BY id", func(r pgx.Row) error {
				var removed *time.Time
				a, err := scanAgent(extraCols{r, []any{&removed}})
				if err != nil {
					return bad("agents", err)
				}
				return to.Agent(storecopy.Agent{Agent: a, Removed: timeOf(removed)})
			})
		},
		func() error {
			return each("users", "SELECT "+userCols+" FROM users ORDER BY name", func(r pgx.Row) error {
				u, err := scanUser(r)
				if err != nil {
					return bad("users", err)
				}
				return to.User(u)
			})
		},
		func() error {
			return each("api_tokens", "SELECT "+tokenCols+" FROM api_tokens ORDER BY id", func(r pgx.Row) error {
				t, err := scanToken(r)
				if err != nil {
					return bad("api_tokens", err)
				}
				return to.Token(t)
			})
		},
		func() error {
			return each("commands", "SELECT "+commandCols+" FROM commands ORDER BY seq", func(r pgx.Row) error {
				c, err := scanCommand(r)
				if err != nil {
					return bad("commands", err)
				}
				return to.Command(c)
			})
		},
		func() error {
			return each("results", "SELECT "+resultCols+" FROM results ORDER BY seq, agent_id", func(r pgx.Row) error {
				x, err := scanResult(r)
				if err != nil {
					return bad("results", err)
				}
				return to.Result(x)
			})
		},
		func() error {
			return each("scans", "SELECT "+scanCols+", detections FROM scans ORDER BY id", func(r pgx.Row) error {
				var (
					x                  storecopy.Scan
					seq                int64
					start, fin, recvAt *time.Time
				)
				if err := r.Scan(&x.ID, &x.AgentID, &x.ReportID, &x.Kind, &seq, &x.DefsVer, &start, &fin,
					&x.Files, &x.Bytes, &x.Skipped, &recvAt, &x.DetectionCount); err != nil {
					return bad("scans", err)
				}
				x.Seq, x.StartedAt, x.FinishedAt, x.ReceivedAt = uint64(seq), timeOf(start), timeOf(fin), timeOf(recvAt)
				return to.Scan(x)
			})
		},
		func() error {
			return each("detections", "SELECT "+detectionCols+" FROM detections ORDER BY id", func(r pgx.Row) error {
				d, err := scanDetection(r)
				if err != nil {
					return bad("detections", err)
				}
				return to.Detection(d)
			})
		},
		func() error {
			return each("audit", "SELECT "+auditCols+" FROM audit ORDER BY id", func(r pgx.Row) error {
				var e store.AuditEvent
				var at time.Time
				if err := r.Scan(&e.ID, &at, &e.Actor, &e.Addr, &e.Action, &e.Target, &e.Detail, &e.OK); err != nil {
					return bad("audit", err)
				}
				e.Time = at.UTC()
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

// Import implements storecopy.Importer. It locks every table of the store
// (ACCESS EXCLUSIVE: a server instance on the same database waits until
// the import is committed or rolled back), and refuses a store with any
// row (or a used sequence number) with storecopy.ErrNotEmpty, naming what
// it holds. Rows are inserted in batches; identities (scans, detections,
// audit) keep their IDs and their sequences continue after the highest.
// check, when not nil, reads the copy before it is committed (through the
// import's transaction): its error rolls the import back.
func (s *Store) Import(ctx context.Context, fill func(storecopy.Sink) error, check func(storecopy.Exporter) error) error {
	var meta *storecopy.Meta
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(copyTables, ", ")+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			return fmt.Errorf("locking the tables: %w", err)
		}
		if err := checkEmpty(ctx, tx); err != nil {
			return err
		}
		in := &importer{ctx: ctx, tx: tx}
		if err := fill(in); err != nil {
			return err
		}
		if err := in.flush(); err != nil {
			return err
		}
		if in.meta == nil {
			return fmt.Errorf("the source gave no epoch")
		}
		m := *in.meta
		if m.Epoch == 0 {
			return fmt.Errorf("the source's epoch is 0")
		}
		last, err := int64Of("sequence counter", m.LastSeq)
		if err != nil {
			return err
		}
		if _, err := int64Of("epoch start", m.EpochStart); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue("UPDATE meta SET value = $1 WHERE key = 'epoch'", formatEpoch(m.Epoch))
		if m.EpochStart > 0 {
			b.Queue("INSERT INTO meta (key, value) VALUES ('epoch_start', $1)", strconv.FormatUint(m.EpochStart, 10))
		}
		b.Queue("UPDATE command_seq SET last = $1 WHERE id = 1", last)
		for _, t := range []string{"scans", "detections", "audit"} {
			b.Queue(fmt.Sprintf("SELECT setval(pg_get_serial_sequence('%s', 'id'), max(id)) FROM %[1]s HAVING max(id) IS NOT NULL", t))
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("setting the epoch and counters: %w", err)
		}
		if check != nil {
			if err := check(txExporter{tx}); err != nil {
				return err
			}
		}
		meta = &m
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres store: import: %w", err)
	}
	s.epoch.Store(&epochState{epoch: meta.Epoch, start: meta.EpochStart})
	return nil
}

// checkEmpty fails with storecopy.ErrNotEmpty when the store holds
// anything.
func checkEmpty(ctx context.Context, tx pgx.Tx) error {
	var held []string
	for _, t := range copyTables[2:] {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			held = append(held, fmt.Sprintf("%s: %d rows", t, n))
		}
	}
	var last int64
	if err := tx.QueryRow(ctx, "SELECT last FROM command_seq WHERE id = 1").Scan(&last); err != nil {
		return err
	}
	if last > 0 {
		held = append(held, fmt.Sprintf("sequence counter at %d", last))
	}
	var other int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM meta WHERE key <> 'epoch'").Scan(&other); err != nil {
		return err
	}
	if other > 0 {
		held = append(held, "an epoch change")
	}
	if len(held) > 0 {
		return fmt.Errorf("%w (%s): migrate only into a new database", storecopy.ErrNotEmpty, strings.Join(held, ", "))
	}
	return nil
}

// importBatch is how many rows Import sends at once.
const importBatch = 500

// importer is the Sink of Import: it queues each row's insert and sends
// them in batches, naming the row whose insert failed.
type importer struct {
	ctx  context.Context
	tx   pgx.Tx
	b    pgx.Batch
	what []string // the rows queued in b, for errors
	meta *storecopy.Meta
}

func (in *importer) queue(what, sql string, a ...any) error {
	in.b.Queue(sql, a...)
	in.what = append(in.what, what)
	if len(in.what) >= importBatch {
		return in.flush()
	}
	return nil
}

func (in *importer) flush() error {
	if len(in.what) == 0 {
		return nil
	}
	br := in.tx.SendBatch(in.ctx, &in.b)
	for _, w := range in.what {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("%s: %w", w, err)
		}
	}
	in.b, in.what = pgx.Batch{}, in.what[:0]
	return br.Close()
}

func (in *importer) Meta(m storecopy.Meta) error { in.meta = &m; return nil }

func (in *importer) Agent(a storecopy.Agent) error {
	what := fmt.Sprintf("agent %q", a.ID)
	r, err := encodeAgentRow(a.ID, a.Hostname, a.OS, a.Arch, a.Version, a.DefsVer, a.TokenHash, a.Groups, a.LastSeq, a.Counters, a.OnAccess, a.Update)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return in.queue(what, `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups, last_seq,
		enrolled_at, last_seen, last_checkin, counters_json, onaccess_json, revoked_at, version_key, defs_key, groups_key,
		removed_at, detections, update_json)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
		r.id, r.tokenHash, r.hostname, r.os, r.arch, r.version, r.defs, r.groups, r.lastSeq,
		ts(a.EnrolledAt), ts(a.LastSeen), ts(a.LastCheckIn), r.counters, r.onAccess, ts(a.Revoked),
		store.NaturalKey(a.Version), store.NaturalKey(a.DefsVer), store.GroupsKey(a.Groups), ts(a.Removed), a.Detections, r.update)
}

func (in *importer) User(u store.User) error {
	return in.queue(fmt.Sprintf("user %q", u.Name), "INSERT INTO users ("+userCols+") VALUES ($1, $2, $3, $4)",
		u.Name, u.Role, u.PasswordHash, ts(u.Created))
}

func (in *importer) Token(t store.APIToken) error {
	hash := t.Hash
	if hash == nil {
		hash = []byte{}
	}
	return in.queue(fmt.Sprintf("API token %q of %q", t.Name, t.User), "INSERT INTO api_tokens ("+tokenCols+") VALUES ($1, $2, $3, $4, $5, $6)",
		t.ID, t.User, t.Name, hash, ts(t.Created), ts(t.LastUsed))
}

func (in *importer) Command(c store.Command) error {
	what := fmt.Sprintf("command %d", c.Seq)
	seq, err := int64Of("sequence number", c.Seq)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	env := c.Envelope
	if env == nil {
		env = []byte{}
	}
	return in.queue(what, "INSERT INTO commands ("+commandCols+") VALUES ($1, $2, $3, $4, $5, $6)",
		seq, c.Name, c.Target, env, ts(c.IssuedAt), ts(c.Expires))
}

func (in *importer) Result(r store.Result) error {
	what := fmt.Sprintf("result of command %d by agent %q", r.Seq, r.AgentID)
	seq, err := int64Of("sequence number", r.Seq)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return in.queue(what, "INSERT INTO results ("+resultCols+") VALUES ($1, $2, $3, $4, $5, $6)",
		seq, r.AgentID, r.Status, []byte(r.Output), ts(r.ExecutedAt), ts(r.ReceivedAt))
}

func (in *importer) Scan(sc storecopy.Scan) error {
	what := fmt.Sprintf("scan %d", sc.ID)
	seq, err := int64Of("scan command sequence", sc.Seq)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return in.queue(what, `INSERT INTO scans (`+scanCols+`, detections) OVERRIDING SYSTEM VALUE
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		sc.ID, sc.AgentID, sc.ReportID, sc.Kind, seq, sc.DefsVer, ts(sc.StartedAt), ts(sc.FinishedAt),
		sc.Files, sc.Bytes, sc.Skipped, ts(sc.ReceivedAt), sc.DetectionCount)
}

func (in *importer) Detection(d store.Detection) error {
	return in.queue(fmt.Sprintf("detection %d", d.ID), `INSERT INTO detections (`+detectionCols+`) OVERRIDING SYSTEM VALUE
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		d.ID, d.ScanID, d.AgentID, d.Path, d.Signature, d.SHA256, d.DefsVer, ts(d.FoundAt), d.Quarantine,
		d.Access, d.PID, d.Process, d.Blocked)
}

func (in *importer) Audit(e store.AuditEvent) error {
	return in.queue(fmt.Sprintf("audit entry %d", e.ID), `INSERT INTO audit (`+auditCols+`) OVERRIDING SYSTEM VALUE
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		e.ID, e.Time, e.Actor, e.Addr, e.Action, e.Target, e.Detail, e.OK)
}
