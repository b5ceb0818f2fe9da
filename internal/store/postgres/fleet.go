package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
)

// txOptionsSnapshot is a read-only transaction whose statements all see
// one snapshot.
var txOptionsSnapshot = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// agentWhere returns the conditions selecting the agents f selects (after
// removed_at IS NULL), their arguments added to a.
func agentWhere(f store.AgentFilter, a *args) (string, error) {
	var b strings.Builder
	b.WriteString("removed_at IS NULL")
	if f.Search != "" {
		p := a.add(f.Search)
		fmt.Fprintf(&b, ` AND (strpos(lower(hostname), lower(%[1]s::text COLLATE "C")) > 0
			OR strpos(lower(id), lower(%[1]s::text COLLATE "C")) > 0)`, p)
	}
	if f.Group != "" {
		b.WriteString(" AND groups @> ARRAY[" + a.add(f.Group) + "::text]")
	}
	if f.OS != "" {
		b.WriteString(" AND os = " + a.add(f.OS))
	}
	if f.Version != "" {
		// The key finds them through the index; the version tells apart
		// those whose key is the same (1.01 and 1.1).
		b.WriteString(" AND version_key = " + a.add(store.NaturalKey(f.Version)) + " AND version = " + a.add(f.Version))
	}
	if f.NoDefs {
		b.WriteString(" AND defs_ver = ''")
	} else if f.DefsVer != "" {
		b.WriteString(" AND defs_key = " + a.add(store.NaturalKey(f.DefsVer)) + " AND defs_ver = " + a.add(f.DefsVer))
	}
	if f.Detected != nil {
		if *f.Detected {
			b.WriteString(" AND detections > 0")
		} else {
			b.WriteString(" AND detections = 0")
		}
	}
	if f.Status != "" {
		online, missing := statusLines(f.Clock)
		switch f.Status {
		case store.StatusRevoked:
			b.WriteString(" AND revoked_at IS NOT NULL")
		case store.StatusOnline:
			b.WriteString(" AND revoked_at IS NULL AND last_seen >= " + a.add(online))
		case store.StatusLate:
			b.WriteString(" AND revoked_at IS NULL AND last_seen < " + a.add(online) + " AND last_seen >= " + a.add(missing))
		case store.StatusMissing:
			b.WriteString(" AND revoked_at IS NULL AND (last_seen < " + a.add(missing) + " OR last_seen IS NULL)")
		default:
			return "", fmt.Errorf("unknown agent status %q", f.Status)
		}
	}
	return b.String(), nil
}

// statusLines returns the last_seen at or after which an agent is online,
// and before which it is missing, at c (store.Clock.Status).
func statusLines(c store.Clock) (online, missing time.Time) {
	return ceilMicro(c.Now.Add(-c.OnlineWithin)), ceilMicro(c.Now.Add(-c.MissingAfter))
}

// agentOrder returns the ORDER BY of a sort, ties by id, the whole order
// reversed by desc. A time never seen (NULL) is the oldest.
func agentOrder(sort string, desc bool) (string, error) {
	dir := func(d bool) string {
		if d {
			return " DESC"
		}
		return ""
	}
	seen := func(d bool) string {
		if d {
			return "last_seen DESC NULLS LAST"
		}
		return "last_seen ASC NULLS FIRST"
	}
	var first string
	switch sort {
	case "", store.SortID:
		return "id" + dir(desc), nil
	case store.SortHostname:
		first = "hostname" + dir(desc)
	case store.SortOS:
		first = "os" + dir(desc)
	case store.SortVersion:
		first = "version_key" + dir(desc)
	case store.SortDefs:
		first = "defs_key" + dir(desc)
	case store.SortGroups:
		first = "groups_key" + dir(desc)
	case store.SortLastSeen:
		first = seen(desc)
	case store.SortDetections:
		first = "detections" + dir(desc)
	case store.SortStatus:
		// From the freshest to the stalest, revoked agents last.
		first = "(revoked_at IS NOT NULL)" + dir(desc) + ", " + seen(!desc)
	default:
		return "", fmt.Errorf("unknown agent sort %q", sort)
	}
	return first + ", id" + dir(desc), nil
}

// ListAgents implements store.Store. The rows are read as fn takes them
// (pgx reads them off the connection as they are scanned), on one
// connection of the pool held until the list ends.
func (s *Store) ListAgents(ctx context.Context, q store.AgentQuery, fn func(store.Agent) error) error {
	var a args
	where, err := agentWhere(q.AgentFilter, &a)
	if err != nil {
		return fmt.Errorf("postgres store: list agents: %w", err)
	}
	order, err := agentOrder(q.Sort, q.Desc)
	if err != nil {
		return fmt.Errorf("postgres store: list agents: %w", err)
	}
	query := "SELECT " + agentCols + " FROM agents WHERE " + where + " ORDER BY " + order
	if q.Limit > 0 {
		query += " LIMIT " + a.add(q.Limit)
	}
	if q.Offset > 0 {
		query += " OFFSET " + a.add(q.Offset)
	}
	if err := s.queryAgents(ctx, query, a, fn); err != nil {
		var cb errCallback
		if errors.As(err, &cb) {
			return cb.err
		}
		return fmt.Errorf("postgres store: list agents: %w", err)
	}
	return nil
}

// CountAgents implements store.Store.
func (s *Store) CountAgents(ctx context.Context, f store.AgentFilter) (int, error) {
	var a args
	where, err := agentWhere(f, &a)
	if err != nil {
		return 0, fmt.Errorf("postgres store: count agents: %w", err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM agents WHERE "+where, a...).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres store: count agents: %w", err)
	}
	return n, nil
}

// Fleet implements store.Store: one scan of the agents for the statuses
// and the breakdowns by definitions, version and OS (grouping sets), one
// of their groups, both in one repeatable-read transaction so that the
// figures are of one moment.
func (s *Store) Fleet(ctx context.Context, c store.Clock) (store.Fleet, error) {
	online, missing := statusLines(c)
	f := store.Fleet{ByDefs: map[string]int{}, ByVersion: map[string]int{}, ByOS: map[string]int{}, ByGroup: map[string]int{}}
	err := s.fleet(ctx, online, missing, &f)
	if err != nil {
		return store.Fleet{}, fmt.Errorf("postgres store: fleet: %w", err)
	}
	return f, nil
}

func (s *Store) fleet(ctx context.Context, online, missing time.Time, f *store.Fleet) error {
	tx, err := s.pool.BeginTx(ctx, txOptionsSnapshot)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// grouping(defs_ver, version, os) has a bit set for each column a row
	// is not grouped by, defs_ver's the highest: 7 for the row of all
	// agents, 3 for the rows by definitions, 5 by version, 6 by OS.
	rows, err := tx.Query(ctx, `SELECT grouping(defs_ver, version, os), coalesce(defs_ver, version, os, ''), count(*),
		count(*) FILTER (WHERE revoked_at IS NULL AND last_seen >= $1),
		count(*) FILTER (WHERE revoked_at IS NULL AND last_seen < $1 AND last_seen >= $2),
		count(*) FILTER (WHERE revoked_at IS NULL AND (last_seen < $2 OR last_seen IS NULL)),
		count(*) FILTER (WHERE revoked_at IS NOT NULL)
		FROM agents WHERE removed_at IS NULL
		GROUP BY GROUPING SETS ((), (defs_ver), (version), (os))`, online, missing)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			set                               int
			key                               string
			total, onl, late, missed, revoked int
		)
		if err := rows.Scan(&set, &key, &total, &onl, &late, &missed, &revoked); err != nil {
			rows.Close()
			return err
		}
		switch set {
		case 7:
			f.Total, f.Online, f.Late, f.Missing, f.Revoked = total, onl, late, missed, revoked
		case 3:
			f.ByDefs[key] = total
		case 5:
			f.ByVersion[key] = total
		case 6:
			f.ByOS[key] = total
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// An agent that reports a group twice counts once in it.
	rows, err = tx.Query(ctx, `SELECT g, count(*) FROM agents, LATERAL (SELECT DISTINCT unnest(groups)) AS x(g)
		WHERE removed_at IS NULL GROUP BY g`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var g string
		var n int
		if err := rows.Scan(&g, &n); err != nil {
			rows.Close()
			return err
		}
		f.ByGroup[g] = n
	}
	return rows.Err()
}

// targetWhere returns the conditions on agents (aliased a) a command
// issued at issued for t waits for, their arguments added to a; ok is
// false when it waits for none.
func targetWhere(t store.Target, issued time.Time, a *args) (where string, ok bool) {
	if issued.IsZero() || (!t.All && len(t.Groups) == 0 && len(t.Agents) == 0) {
		return "", false
	}
	var b strings.Builder
	b.WriteString("a.removed_at IS NULL AND a.revoked_at IS NULL AND (a.enrolled_at < " + a.add(ceilMicro(issued)) + " OR a.enrolled_at IS NULL)")
	if !t.All {
		var or []string
		if len(t.Groups) > 0 {
			or = append(or, "a.groups && "+a.add(t.Groups)+"::text[]")
		}
		if len(t.Agents) > 0 {
			or = append(or, "a.id = ANY("+a.add(t.Agents)+"::text[])")
		}
		b.WriteString(" AND (" + strings.Join(or, " OR ") + ")")
	}
	return b.String(), true
}

// Progress implements store.Store.
func (s *Store) Progress(ctx context.Context, seq uint64, t store.Target, issued time.Time) (store.Progress, error) {
	var p store.Progress
	if seq > math.MaxInt64 {
		return p, nil
	}
	a := args{int64(seq)}
	where, ok := targetWhere(t, issued, &a)
	pending := "0"
	if ok {
		pending = "(SELECT count(*) FROM agents a WHERE " + where +
			" AND NOT EXISTS (SELECT 1 FROM results r WHERE r.seq = $1 AND r.agent_id = a.id))"
	}
	err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status <> 'ok'), `+
		pending+` FROM results WHERE seq = $1`, a...).Scan(&p.OK, &p.Failed, &p.Pending)
	if err != nil {
		return store.Progress{}, fmt.Errorf("postgres store: progress of %d: %w", seq, err)
	}
	return p, nil
}

// Targets implements store.Store. The rows are read as fn takes them.
func (s *Store) Targets(ctx context.Context, t store.Target, issued time.Time, fn func(id, hostname string) error) error {
	var a args
	where, ok := targetWhere(t, issued, &a)
	if !ok {
		return nil
	}
	rows, err := s.pool.Query(ctx, "SELECT a.id, a.hostname FROM agents a WHERE "+where+" ORDER BY a.id", a...)
	if err != nil {
		return fmt.Errorf("postgres store: targets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, host string
		if err := rows.Scan(&id, &host); err != nil {
			return fmt.Errorf("postgres store: targets: %w", err)
		}
		if err := fn(id, host); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres store: targets: %w", err)
	}
	return nil
}
