package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// fleetSchema adds what the fleet queries (ListAgents, CountAgents, Fleet,
// Progress, Targets, AgentResults, QueryDetections, CountDetections) need to
// answer from an index at 100,000 agents and 1,000,000 results:
//
//   - on agents, the number of detections each reported (kept by RecordScan
//     in the transaction that stores them) and sort keys computed in Go by
//     EnrollAgent and CheckIns: version_key and defs_key order versions
//     naturally (store.NaturalKey), groups_key orders group lists as slices.Compare
//     does (store.GroupsKey);
//   - agent_groups, one row per group of each agent not removed: the
//     group filter and command targets;
//   - agent_counts, how many agents not removed there are in all ('total')
//     and of each OS, version, definitions version and group (rows may fall
//     to 0): Fleet reads it rather than the agents.
//
// Triggers fill agent_groups and agent_counts when an agent is enrolled
// and empty them of it when it is removed; CheckIns changes them itself,
// as it knows what changed (a trigger's statement journal made a changed
// check-in several times dearer), so nothing else may update those columns
// of agents.
//
// And:
//
//   - indexes over the agents not removed
//   - indexes over the agents not removed, one for each order of an agent
//     list (read backwards for a descending order, which reverses the
//     tie-break by id too);
//   - agents that a command for all may wait for, by enrollment time, and
//     removed agents (Progress counts the agents that reported but were
//     not waited for, rather than probing each agent for its result);
//   - results by agent and by command and status, detections by time and
//     by agent and time.
const fleetSchema = `
ALTER TABLE agents ADD COLUMN detections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN version_key TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN defs_key TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN groups_key TEXT NOT NULL DEFAULT '';

CREATE TABLE agent_groups (
	agent_id TEXT NOT NULL REFERENCES agents (id),
	grp      TEXT NOT NULL,
	PRIMARY KEY (agent_id, grp)
) WITHOUT ROWID;
CREATE INDEX agent_groups_grp ON agent_groups (grp, agent_id);

CREATE TRIGGER agents_groups_insert AFTER INSERT ON agents WHEN NEW.removed_at IS NULL BEGIN
	INSERT INTO agent_groups (agent_id, grp) SELECT DISTINCT NEW.id, value FROM json_each(NEW.groups_json);
END;
CREATE TABLE agent_counts (
	kind  TEXT NOT NULL,
	value TEXT NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE TRIGGER agents_count_insert AFTER INSERT ON agents WHEN NEW.removed_at IS NULL BEGIN
	INSERT INTO agent_counts (kind, value, n) VALUES ('total', '', 1) ON CONFLICT (kind, value) DO UPDATE SET n = n + 1;
	INSERT INTO agent_counts (kind, value, n) VALUES ('os', NEW.os, 1) ON CONFLICT (kind, value) DO UPDATE SET n = n + 1;
	INSERT INTO agent_counts (kind, value, n) VALUES ('version', NEW.version, 1) ON CONFLICT (kind, value) DO UPDATE SET n = n + 1;
	INSERT INTO agent_counts (kind, value, n) VALUES ('defs', NEW.defs_ver, 1) ON CONFLICT (kind, value) DO UPDATE SET n = n + 1;
	INSERT INTO agent_counts (kind, value, n) SELECT DISTINCT 'group', value, 1 FROM json_each(NEW.groups_json) WHERE true
		ON CONFLICT (kind, value) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER agents_count_remove AFTER UPDATE OF removed_at ON agents
WHEN OLD.removed_at IS NULL AND NEW.removed_at IS NOT NULL BEGIN
	UPDATE agent_counts SET n = n - 1 WHERE kind = 'total' AND value = '';
	UPDATE agent_counts SET n = n - 1 WHERE kind = 'os' AND value = OLD.os;
	UPDATE agent_counts SET n = n - 1 WHERE kind = 'version' AND value = OLD.version;
	UPDATE agent_counts SET n = n - 1 WHERE kind = 'defs' AND value = OLD.defs_ver;
	UPDATE agent_counts SET n = n - 1 WHERE kind = 'group' AND value IN (SELECT grp FROM agent_groups WHERE agent_id = OLD.id);
	DELETE FROM agent_groups WHERE agent_id = OLD.id;
END;
CREATE INDEX agents_hostname ON agents (hostname, id) WHERE removed_at IS NULL;
CREATE INDEX agents_os ON agents (os, id) WHERE removed_at IS NULL;
CREATE INDEX agents_version ON agents (version_key, id) WHERE removed_at IS NULL;
CREATE INDEX agents_defs ON agents (defs_key, id) WHERE removed_at IS NULL;
CREATE INDEX agents_groups ON agents (groups_key, id) WHERE removed_at IS NULL;
CREATE INDEX agents_detections ON agents (detections, id) WHERE removed_at IS NULL;
CREATE INDEX agents_last_seen ON agents (last_seen, id) WHERE removed_at IS NULL;
CREATE INDEX agents_status ON agents ((revoked_at IS NOT NULL), last_seen DESC, id) WHERE removed_at IS NULL;

CREATE INDEX agents_enrolled ON agents (enrolled_at) WHERE removed_at IS NULL AND revoked_at IS NULL;
CREATE INDEX agents_removed ON agents (id) WHERE removed_at IS NOT NULL;

CREATE INDEX results_agent_seq ON results (agent_id, seq);
CREATE INDEX results_status ON results (seq, status);
CREATE INDEX detections_time ON detections (found_at, id);
CREATE INDEX detections_agent_time ON detections (agent_id, found_at, id);
`

// migrateFleet applies fleetSchema and fills what it added for the agents
// and detections already stored.
func migrateFleet(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, fleetSchema); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE agents SET detections =
		(SELECT count(*) FROM detections d WHERE d.agent_id = agents.id)`); err != nil {
		return fmt.Errorf("detection counts: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO agent_groups (agent_id, grp)
		SELECT DISTINCT a.id, g.value FROM agents a, json_each(a.groups_json) g WHERE a.removed_at IS NULL`); err != nil {
		return fmt.Errorf("agent groups: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO agent_counts (kind, value, n)
		SELECT 'total', '', count(*) FROM agents WHERE removed_at IS NULL
		UNION ALL SELECT 'os', os, count(*) FROM agents WHERE removed_at IS NULL GROUP BY os
		UNION ALL SELECT 'version', version, count(*) FROM agents WHERE removed_at IS NULL GROUP BY version
		UNION ALL SELECT 'defs', defs_ver, count(*) FROM agents WHERE removed_at IS NULL GROUP BY defs_ver
		UNION ALL SELECT 'group', grp, count(*) FROM agent_groups GROUP BY grp`); err != nil {
		return fmt.Errorf("agent counts: %w", err)
	}
	type keys struct{ id, version, defs, groups string }
	var ks []keys
	rows, err := tx.QueryContext(ctx, "SELECT id, version, defs_ver, groups_json FROM agents")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k keys
		var groupsJSON string
		if err := rows.Scan(&k.id, &k.version, &k.defs, &groupsJSON); err != nil {
			rows.Close()
			return err
		}
		groups, err := decodeGroups(groupsJSON)
		if err != nil {
			rows.Close()
			return fmt.Errorf("agent %q: %w", k.id, err)
		}
		k.version, k.defs, k.groups = store.NaturalKey(k.version), store.NaturalKey(k.defs), store.GroupsKey(groups)
		ks = append(ks, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, "UPDATE agents SET version_key = ?, defs_key = ?, groups_key = ? WHERE id = ?")
	if err != nil {
		return err
	}
	defer st.Close()
	for _, k := range ks {
		if _, err := st.ExecContext(ctx, k.version, k.defs, k.groups, k.id); err != nil {
			return fmt.Errorf("sort keys of agent %q: %w", k.id, err)
		}
	}
	return nil
}

// agentSortKeys returns the version, definitions and groups sort keys.
func agentSortKeys(version, defs string, groups []string) (string, string, string) {
	return store.NaturalKey(version), store.NaturalKey(defs), store.GroupsKey(groups)
}

// ImportAgents inserts agents in one transaction, as EnrollAgent does each
// (their Detections ignored, sort keys and groups computed), and fails
// without inserting any when one cannot be inserted (an ID enrolled
// already, say). It is the bulk loader for moving a fleet into a new store
// and for seeding benchmarks.
func (s *Store) ImportAgents(ctx context.Context, as []store.Agent) error {
	return s.enrollAgents(ctx, as)
}

// micro returns the smallest stored time (Unix microseconds) at or after t,
// so that comparing a stored time with it compares the time as stored with
// t exactly.
func micro(t time.Time) int64 {
	u := t.UnixMicro()
	if time.UnixMicro(u).Before(t) {
		u++
	}
	return u
}

// agentWhere returns the conditions (joined by AND, after "removed_at IS
// NULL") and arguments selecting the agents f selects.
// allAgents is agentWhere's condition for an empty filter.
const allAgents = "removed_at IS NULL"

func agentWhere(f store.AgentFilter) (string, []any, error) {
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString(allAgents)
	if f.Search != "" {
		// LIKE folds ASCII case, as the contract asks; the agents whose
		// hostname or id holds the text are found by reading the
		// hostname index (hostname, id), not the whole rows.
		b.WriteString(` AND id IN (SELECT id FROM agents INDEXED BY agents_hostname WHERE removed_at IS NULL
			AND (hostname LIKE ? ESCAPE '\' OR id LIKE ? ESCAPE '\'))`)
		pat := "%" + likeEscape.Replace(f.Search) + "%"
		args = append(args, pat, pat)
	}
	if f.Group != "" {
		b.WriteString(" AND id IN (SELECT agent_id FROM agent_groups WHERE grp = ?)")
		args = append(args, f.Group)
	}
	if f.OS != "" {
		b.WriteString(" AND os = ?")
		args = append(args, f.OS)
	}
	if f.Version != "" {
		b.WriteString(" AND version = ?")
		args = append(args, f.Version)
	}
	if f.NoDefs {
		b.WriteString(" AND defs_ver = ''")
	} else if f.DefsVer != "" {
		b.WriteString(" AND defs_ver = ?")
		args = append(args, f.DefsVer)
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
			b.WriteString(" AND (revoked_at IS NOT NULL) = 1")
		case store.StatusOnline:
			b.WriteString(" AND (revoked_at IS NOT NULL) = 0 AND last_seen >= ?")
			args = append(args, online)
		case store.StatusLate:
			b.WriteString(" AND (revoked_at IS NOT NULL) = 0 AND last_seen < ? AND last_seen >= ?")
			args = append(args, online, missing)
		case store.StatusMissing:
			b.WriteString(" AND (revoked_at IS NOT NULL) = 0 AND (last_seen < ? OR last_seen IS NULL)")
			args = append(args, missing)
		default:
			return "", nil, fmt.Errorf("unknown agent status %q", f.Status)
		}
	}
	return b.String(), args, nil
}

// likeEscape escapes LIKE's wildcards (and its escape character).
var likeEscape = strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)

// statusLines returns the stored last_seen at or after which an agent is
// online, and before which it is missing (and not online), at c.
func statusLines(c store.Clock) (online, missing int64) {
	online = micro(c.Now.Add(-c.OnlineWithin))
	return online, min(online, micro(c.Now.Add(-c.MissingAfter)))
}

// agentOrder returns the ORDER BY terms of a sort, reversed by desc, and
// the same reversed entirely (id included).
func agentOrder(sort string, desc bool) (order, reversed string, err error) {
	type term struct {
		expr string
		desc bool
	}
	var terms []term
	switch sort {
	case "", store.SortID:
		terms = []term{{"id", desc}}
	case store.SortHostname:
		terms = []term{{"hostname", desc}}
	case store.SortOS:
		terms = []term{{"os", desc}}
	case store.SortVersion:
		terms = []term{{"version_key", desc}}
	case store.SortDefs:
		terms = []term{{"defs_key", desc}}
	case store.SortGroups:
		terms = []term{{"groups_key", desc}}
	case store.SortLastSeen:
		terms = []term{{"last_seen", desc}}
	case store.SortDetections:
		terms = []term{{"detections", desc}}
	case store.SortStatus:
		terms = []term{{"(revoked_at IS NOT NULL)", desc}, {"last_seen", !desc}}
	default:
		return "", "", fmt.Errorf("unknown agent sort %q", sort)
	}
	if terms[0].expr != "id" {
		terms = append(terms, term{"id", desc})
	}
	var o, r []string
	dir := func(d bool) string {
		if d {
			return " DESC"
		}
		return ""
	}
	for _, t := range terms {
		o = append(o, t.expr+dir(t.desc))
		r = append(r, t.expr+dir(!t.desc))
	}
	return strings.Join(o, ", "), strings.Join(r, ", "), nil
}

// reverseAfter is the offset from which ListAgents counts the agents and
// reads the page from the other end when that is nearer.
const reverseAfter = 1000

// ListAgents implements store.Store. Pages are read through the index of
// their order; a page past the middle of a long list (Offset at least
// 1,000 and beyond half the agents the filter selects, which it then
// counts) is read from the end in the reverse order and turned around in
// memory (it holds Limit agents). A list without Limit is read as one
// query whose rows go to fn as they come.
func (s *Store) ListAgents(ctx context.Context, q store.AgentQuery, fn func(store.Agent) error) error {
	where, args, err := agentWhere(q.AgentFilter)
	if err != nil {
		return fmt.Errorf("sqlite store: list agents: %w", err)
	}
	order, reversed, err := agentOrder(q.Sort, q.Desc)
	if err != nil {
		return fmt.Errorf("sqlite store: list agents: %w", err)
	}
	offset := max(q.Offset, 0)
	base := "SELECT " + agentCols + " FROM agents WHERE " + where + " ORDER BY "
	if q.Limit > 0 && offset >= reverseAfter {
		n, err := s.countWhere(ctx, where, args)
		if err != nil {
			return fmt.Errorf("sqlite store: list agents: %w", err)
		}
		if offset >= n {
			return nil
		}
		if offset > n/2 {
			// The page is rows [offset, offset+limit) of n; in the
			// reverse order they are [n-offset-limit, n-offset).
			end := n - offset
			start := max(end-q.Limit, 0)
			page := make([]store.Agent, 0, end-start)
			err := s.queryAgents(ctx, base+reversed+" LIMIT ? OFFSET ?", append(slices.Clip(args), end-start, start),
				func(a store.Agent) error { page = append(page, a); return nil })
			if err != nil {
				return fmt.Errorf("sqlite store: list agents: %w", err)
			}
			for i := len(page) - 1; i >= 0; i-- {
				if err := fn(page[i]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	query := base + order
	switch {
	case q.Limit > 0:
		query += " LIMIT ? OFFSET ?"
		args = append(args, q.Limit, offset)
	case offset > 0:
		query += " LIMIT -1 OFFSET ?"
		args = append(args, offset)
	}
	if err := s.queryAgents(ctx, query, args, fn); err != nil {
		var cb errCallback
		if errors.As(err, &cb) {
			return cb.err
		}
		return fmt.Errorf("sqlite store: list agents: %w", err)
	}
	return nil
}

// errCallback carries the error of a caller's function out of queryAgents
// unwrapped.
type errCallback struct{ err error }

func (e errCallback) Error() string { return e.err.Error() }

// queryAgents runs a query of agentCols on the read pool and calls fn with
// each agent as its row is read; fn's error comes back as an errCallback.
func (s *Store) queryAgents(ctx context.Context, query string, args []any, fn func(store.Agent) error) error {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return errCallback{err}
		}
	}
	return rows.Err()
}

func (s *Store) countWhere(ctx context.Context, where string, args []any) (int, error) {
	var n int
	if where == allAgents {
		// Every agent not removed: the running total, not a scan.
		err := s.r.QueryRowContext(ctx, "SELECT coalesce((SELECT n FROM agent_counts WHERE kind = 'total' AND value = ''), 0)").Scan(&n)
		return n, err
	}
	err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM agents WHERE "+where, args...).Scan(&n)
	return n, err
}

// CountAgents implements store.Store.
func (s *Store) CountAgents(ctx context.Context, f store.AgentFilter) (int, error) {
	where, args, err := agentWhere(f)
	if err != nil {
		return 0, fmt.Errorf("sqlite store: count agents: %w", err)
	}
	n, err := s.countWhere(ctx, where, args)
	if err != nil {
		return 0, fmt.Errorf("sqlite store: count agents: %w", err)
	}
	return n, nil
}

// Fleet implements store.Store. The figures by OS, version, definitions
// and group and the total come from agent_counts; the statuses are
// counted over the ranges of the status index (missing ones being the
// rest), all in one read transaction.
func (s *Store) Fleet(ctx context.Context, c store.Clock) (store.Fleet, error) {
	online, missing := statusLines(c)
	f := store.Fleet{ByDefs: map[string]int{}, ByVersion: map[string]int{}, ByOS: map[string]int{}, ByGroup: map[string]int{}}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Fleet{}, fmt.Errorf("sqlite store: fleet: %w", err)
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM agents WHERE removed_at IS NULL AND (revoked_at IS NOT NULL) = 1),
		(SELECT count(*) FROM agents WHERE removed_at IS NULL AND (revoked_at IS NOT NULL) = 0 AND last_seen >= ?1),
		(SELECT count(*) FROM agents WHERE removed_at IS NULL AND (revoked_at IS NOT NULL) = 0 AND last_seen < ?1 AND last_seen >= ?2)`,
		online, missing).Scan(&f.Revoked, &f.Online, &f.Late)
	if err != nil {
		return store.Fleet{}, fmt.Errorf("sqlite store: fleet: %w", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT kind, value, n FROM agent_counts WHERE n > 0")
	if err != nil {
		return store.Fleet{}, fmt.Errorf("sqlite store: fleet: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, value string
		var n int
		if err := rows.Scan(&kind, &value, &n); err != nil {
			return store.Fleet{}, fmt.Errorf("sqlite store: fleet: %w", err)
		}
		switch kind {
		case "total":
			f.Total = n
		case "os":
			f.ByOS[value] = n
		case "version":
			f.ByVersion[value] = n
		case "defs":
			f.ByDefs[value] = n
		case "group":
			f.ByGroup[value] = n
		}
	}
	if err := rows.Err(); err != nil {
		return store.Fleet{}, fmt.Errorf("sqlite store: fleet: %w", err)
	}
	f.Missing = f.Total - f.Revoked - f.Online - f.Late
	return f, nil
}

// targetWhere returns the conditions on agents (aliased a) a command issued
// at issued for t waits for, and their arguments; ok is false when it
// waits for none.
func targetWhere(t store.Target, issued time.Time) (where string, args []any, ok bool) {
	if issued.IsZero() || (!t.All && len(t.Groups) == 0 && len(t.Agents) == 0) {
		return "", nil, false
	}
	var b strings.Builder
	b.WriteString("a.removed_at IS NULL AND a.revoked_at IS NULL AND (a.enrolled_at < ? OR a.enrolled_at IS NULL)")
	args = append(args, micro(issued))
	if !t.All {
		var or []string
		if len(t.Groups) > 0 {
			or = append(or, "a.id IN (SELECT agent_id FROM agent_groups WHERE grp IN ("+placeholders(len(t.Groups))+"))")
			for _, g := range t.Groups {
				args = append(args, g)
			}
		}
		if len(t.Agents) > 0 {
			or = append(or, "a.id IN ("+placeholders(len(t.Agents))+")")
			for _, id := range t.Agents {
				args = append(args, id)
			}
		}
		b.WriteString(" AND (" + strings.Join(or, " OR ") + ")")
	}
	return b.String(), args, true
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Progress implements store.Store. For a command for all agents, Pending
// is the agents it waits for less those of them that reported: every
// agent that reported but those it did not wait for (removed, revoked or
// enrolled since), which are few. For groups and agents, each agent
// waited for is looked up among the results.
func (s *Store) Progress(ctx context.Context, seq uint64, t store.Target, issued time.Time) (store.Progress, error) {
	var p store.Progress
	if seq > math.MaxInt64 {
		return p, nil
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Progress{}, fmt.Errorf("sqlite store: progress of %d: %w", seq, err)
	}
	defer tx.Rollback()
	var reported int
	err = tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM results WHERE seq = ?1 AND status = 'ok'),
		(SELECT count(*) FROM results WHERE seq = ?1)`, int64(seq)).Scan(&p.OK, &reported)
	if err != nil {
		return store.Progress{}, fmt.Errorf("sqlite store: progress of %d: %w", seq, err)
	}
	p.Failed = reported - p.OK
	if t.All && !issued.IsZero() {
		var waited, others int
		err = tx.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM agents WHERE removed_at IS NULL AND revoked_at IS NULL) -
			(SELECT count(*) FROM agents WHERE removed_at IS NULL AND revoked_at IS NULL AND enrolled_at >= ?2),
			(SELECT count(*) FROM results WHERE seq = ?1 AND agent_id IN (
				SELECT id FROM agents WHERE removed_at IS NOT NULL
				UNION ALL SELECT id FROM agents WHERE removed_at IS NULL AND (revoked_at IS NOT NULL) = 1
				UNION ALL SELECT id FROM agents WHERE removed_at IS NULL AND revoked_at IS NULL AND enrolled_at >= ?2))`,
			int64(seq), micro(issued)).Scan(&waited, &others)
		if err != nil {
			return store.Progress{}, fmt.Errorf("sqlite store: progress of %d: %w", seq, err)
		}
		p.Pending = waited - (reported - others)
		return p, nil
	}
	where, args, ok := targetWhere(t, issued)
	if !ok {
		return p, nil
	}
	err = tx.QueryRowContext(ctx, "SELECT count(*) FROM agents a WHERE "+where+
		" AND NOT EXISTS (SELECT 1 FROM results r WHERE r.seq = ? AND r.agent_id = a.id)",
		append(args, int64(seq))...).Scan(&p.Pending)
	if err != nil {
		return store.Progress{}, fmt.Errorf("sqlite store: progress of %d: %w", seq, err)
	}
	return p, nil
}

// Targets implements store.Store. The rows are read as fn takes them.
func (s *Store) Targets(ctx context.Context, t store.Target, issued time.Time, fn func(id, hostname string) error) error {
	where, args, ok := targetWhere(t, issued)
	if !ok {
		return nil
	}
	rows, err := s.r.QueryContext(ctx, "SELECT a.id, a.hostname FROM agents a WHERE "+where+" ORDER BY a.id", args...)
	if err != nil {
		return fmt.Errorf("sqlite store: targets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, host string
		if err := rows.Scan(&id, &host); err != nil {
			return fmt.Errorf("sqlite store: targets: %w", err)
		}
		if err := fn(id, host); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite store: targets: %w", err)
	}
	return nil
}

// AgentResults implements store.Store.
func (s *Store) AgentResults(ctx context.Context, agentID string, after uint64, limit int) ([]store.Result, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, "SELECT "+resultCols+" FROM results WHERE agent_id = ? AND seq > ? ORDER BY seq DESC LIMIT ?",
		agentID, int64(after), limit)
	return readResults(rows, err, fmt.Sprintf("results of agent %q", agentID))
}
