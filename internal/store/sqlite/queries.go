package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vigil-fleet/vigil/internal/store"
)

const (
	agentInsCols = "id, token_hash, hostname, os, arch, version, defs_ver, groups_json, last_seq, enrolled_at, last_seen, counters_json, last_checkin, revoked_at, onaccess_json, version_key, defs_key, groups_key, update_json"
	agentCols    = "id, token_hash, hostname, os, arch, version, defs_ver, groups_json, last_seq, enrolled_at, last_seen, counters_json, last_checkin, revoked_at, onaccess_json, update_json, detections"
	commandCols  = "seq, name, target, envelope, issued_at, expires"
	resultCols   = "seq, agent_id, status, output, executed_at, received_at"
)

// prepare prepares the statements every method uses: the write statements on
// the writer connection, the others on the read pool.
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		db    *sql.DB
		dst   **sql.Stmt
		query string
	}{
		{s.w, &s.insAgent, "INSERT INTO agents (" + agentInsCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
		// A check-in that reports the hostname, OS, versions and groups
		// the agent has is one UPDATE of the columns every check-in
		// changes (the common case, a single statement, no row
		// returned).
		{s.w, &s.updCheckInSame, `UPDATE agents SET arch = ?, last_seq = ?, counters_json = ?, last_seen = ?, last_checkin = ?,
			onaccess_json = ?, update_json = ? WHERE id = ? AND removed_at IS NULL AND revoked_at IS NULL
			AND hostname = ? AND os = ? AND version = ? AND defs_ver = ? AND groups_json = ?`},
		// Another first updates the columns every check-in changes and
		// returns the listed ones it leaves (see checkInUpdate).
		{s.w, &s.updCheckInBase, `UPDATE agents SET arch = ?, last_seq = ?, counters_json = ?, last_seen = ?, last_checkin = ?,
			onaccess_json = ?, update_json = ? WHERE id = ? AND removed_at IS NULL AND revoked_at IS NULL
			RETURNING hostname, os, version, defs_ver, groups_json`},
		{s.w, &s.incCount, "INSERT INTO agent_counts (kind, value, n) VALUES (?, ?, 1) ON CONFLICT (kind, value) DO UPDATE SET n = n + 1"},
		{s.w, &s.decCount, "UPDATE agent_counts SET n = n - 1 WHERE kind = ? AND value = ?"},
		{s.w, &s.insGroup, "INSERT INTO agent_groups (agent_id, grp) VALUES (?, ?)"},
		{s.w, &s.delGroup, "DELETE FROM agent_groups WHERE agent_id = ? AND grp = ?"},
		{s.w, &s.updRevoke, "UPDATE agents SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1 AND removed_at IS NULL"},
		{s.w, &s.updRemove, "UPDATE agents SET removed_at = ?2, token_hash = x'' WHERE id = ?1 AND removed_at IS NULL"},
		{s.w, &s.selLastSeq, "SELECT last FROM command_seq WHERE id = 1"},
		{s.w, &s.updLastSeq, "UPDATE command_seq SET last = ?1 WHERE id = 1"},
		{s.w, &s.insCommand, "INSERT INTO commands (" + commandCols + ") VALUES (?, ?, ?, ?, ?, ?)"},
		// A result for a command or agent that does not exist (or an agent
		// removed or revoked) is dropped like a duplicate, rather than
		// failing the whole batch on the foreign key.
		{s.w, &s.insResult, `INSERT OR IGNORE INTO results (` + resultCols + `)
			SELECT ?1, ?2, ?3, ?4, ?5, ?6
			WHERE EXISTS (SELECT 1 FROM commands WHERE seq = ?1)
			AND EXISTS (SELECT 1 FROM agents WHERE id = ?2 AND removed_at IS NULL AND revoked_at IS NULL)`},

		{s.r, &s.selAgent, "SELECT " + agentCols + " FROM agents WHERE id = ? AND removed_at IS NULL"},
		{s.r, &s.selAgents, "SELECT " + agentCols + " FROM agents WHERE removed_at IS NULL ORDER BY id"},
		{s.r, &s.selLatest, "SELECT coalesce(max(seq), 0) FROM commands"},
		{s.r, &s.selCommand, "SELECT " + commandCols + " FROM commands WHERE seq = ?"},
		{s.r, &s.selAfter, "SELECT " + commandCols + " FROM commands WHERE seq > ? ORDER BY seq LIMIT ?"},
		{s.r, &s.selRecent, "SELECT " + commandCols + " FROM commands ORDER BY seq DESC LIMIT ?"},
		{s.r, &s.selResults, "SELECT " + resultCols + " FROM results WHERE seq = ? ORDER BY agent_id"},
	} {
		st, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.dst = st
	}
	for changed := 1; changed < checkInVariants; changed++ {
		q := checkInUpdate(changed)
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.updCheckIn[changed] = st
	}
	return nil
}

// A check-in updates the columns every check-in changes (updCheckInBase),
// which returns the listed ones as they were; then, when some of them (and
// so their sort keys and groups) changed, those only, so that the indexes
// (and triggers) of the others do not run for nothing. These bits say
// which changed; updCheckIn holds a statement for each combination.
const (
	changedHostname = 1 << iota
	changedOS
	changedVersion
	changedDefs
	changedGroups
	checkInVariants
)

// checkInUpdate returns the UPDATE of the listed columns a check-in
// changed. Its arguments are those checkIn.args returns.
func checkInUpdate(changed int) string {
	var set []string
	for _, c := range []struct {
		bit int
		set string
	}{
		{changedHostname, "hostname = ?"},
		{changedOS, "os = ?"},
		{changedVersion, "version = ?, version_key = ?"},
		{changedDefs, "defs_ver = ?, defs_key = ?"},
		{changedGroups, "groups_json = ?, groups_key = ?"},
	} {
		if changed&c.bit != 0 {
			set = append(set, c.set)
		}
	}
	return "UPDATE agents SET " + strings.Join(set, ", ") + " WHERE id = ?"
}

// checkIn is one check-in's values as stored.
type checkIn struct {
	id, hostname, os, arch, version, defs, groups, counters string
	groupsKey                                               string
	lastSeq                                                 int64
	at, onAccess, update                                    any
}

// changes returns the listed columns c changes in the stored row.
func (c *checkIn) changes(hostname, os, version, defs, groups string) int {
	changed := 0
	for _, f := range []struct {
		bit       int
		old, next string
	}{
		{changedHostname, hostname, c.hostname},
		{changedOS, os, c.os},
		{changedVersion, version, c.version},
		{changedDefs, defs, c.defs},
		{changedGroups, groups, c.groups},
	} {
		if f.old != f.next {
			changed |= f.bit
		}
	}
	return changed
}

// baseArgs returns the arguments of updCheckInBase.
func (c *checkIn) baseArgs() []any {
	return []any{c.arch, c.lastSeq, c.counters, c.at, c.at, c.onAccess, c.update, c.id}
}

// args returns the arguments of checkInUpdate(changed).
func (c *checkIn) args(changed int) []any {
	var args []any
	if changed&changedHostname != 0 {
		args = append(args, c.hostname)
	}
	if changed&changedOS != 0 {
		args = append(args, c.os)
	}
	if changed&changedVersion != 0 {
		args = append(args, c.version, store.NaturalKey(c.version))
	}
	if changed&changedDefs != 0 {
		args = append(args, c.defs, store.NaturalKey(c.defs))
	}
	if changed&changedGroups != 0 {
		args = append(args, c.groups, c.groupsKey)
	}
	return append(args, c.id)
}

// EnrollAgent implements store.Store.
func (s *Store) EnrollAgent(ctx context.Context, a store.Agent) error {
	return s.enrollAgents(ctx, []store.Agent{a})
}

// enrollAgents inserts agents in one transaction.
func (s *Store) enrollAgents(ctx context.Context, as []store.Agent) error {
	args := make([][]any, len(as))
	for i, a := range as {
		if a.ID == "" {
			return errors.New("sqlite store: enroll agent: empty ID")
		}
		lastSeq, err := int64Of("agent last sequence", a.LastSeq)
		if err != nil {
			return fmt.Errorf("sqlite store: enroll agent %q: %w", a.ID, err)
		}
		groups, counters, err := encodeGroupsCounters(a.Groups, a.Counters)
		if err != nil {
			return fmt.Errorf("sqlite store: enroll agent %q: %w", a.ID, err)
		}
		onAccess, err := encodeOnAccess(a.OnAccess)
		if err != nil {
			return fmt.Errorf("sqlite store: enroll agent %q: %w", a.ID, err)
		}
		update, err := encodeUpdate(a.Update)
		if err != nil {
			return fmt.Errorf("sqlite store: enroll agent %q: %w", a.ID, err)
		}
		tokenHash := a.TokenHash
		if tokenHash == nil {
			tokenHash = []byte{}
		}
		vk, dk, gk := agentSortKeys(a.Version, a.DefsVer, a.Groups)
		args[i] = []any{a.ID, tokenHash, a.Hostname, a.OS, a.Arch, a.Version, a.DefsVer,
			groups, lastSeq, timeArg(a.EnrolledAt), timeArg(a.LastSeen), counters,
			timeArg(a.LastCheckIn), timeArg(a.Revoked), onAccess, vk, dk, gk, update}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, s.insAgent)
		for i, a := range args {
			if _, err := st.ExecContext(ctx, a...); err != nil {
				if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
					return fmt.Errorf("agent %q is already enrolled: %w", as[i].ID, err)
				}
				return fmt.Errorf("agent %q: %w", as[i].ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite store: enroll: %w", err)
	}
	return nil
}

// Agent implements store.Store.
func (s *Store) Agent(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(s.selAgent.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Agent{}, fmt.Errorf("sqlite store: agent %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Agent{}, fmt.Errorf("sqlite store: agent %q: %w", id, err)
	}
	return a, nil
}

// Agents implements store.Store.
func (s *Store) Agents(ctx context.Context) ([]store.Agent, error) {
	rows, err := s.selAgents.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: agents: %w", err)
	}
	defer rows.Close()
	var as []store.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: agents: %w", err)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: agents: %w", err)
	}
	return as, nil
}

// CheckIns implements store.Store: refused[i] says it did not apply
// cs[i], a check-in of an agent unknown, removed or revoked.
func (s *Store) CheckIns(ctx context.Context, cs []store.CheckIn) ([]bool, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	ins := make([]checkIn, len(cs))
	for i, c := range cs {
		lastSeq, err := int64Of("check-in last sequence", c.LastSeq)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: check-in of agent %q: %w", c.AgentID, err)
		}
		groups, counters, err := encodeGroupsCounters(c.Groups, c.Counters)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: check-in of agent %q: %w", c.AgentID, err)
		}
		onAccess, err := encodeOnAccess(c.OnAccess)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: check-in of agent %q: %w", c.AgentID, err)
		}
		update, err := encodeUpdate(c.Update)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: check-in of agent %q: %w", c.AgentID, err)
		}
		ins[i] = checkIn{id: c.AgentID, hostname: c.Hostname, os: c.OS, arch: c.Arch, version: c.Version,
			defs: c.DefsVer, groups: groups, groupsKey: store.GroupsKey(c.Groups), counters: counters, lastSeq: lastSeq, at: timeArg(c.At),
			onAccess: onAccess, update: update}
	}
	refused := make([]bool, len(cs))
	err := s.write(ctx, func(tx *sql.Tx) error {
		same, base := tx.StmtContext(ctx, s.updCheckInSame), tx.StmtContext(ctx, s.updCheckInBase)
		var upd [checkInVariants]*sql.Stmt
		for i := range ins {
			c := &ins[i]
			res, err := same.ExecContext(ctx, append(c.baseArgs(), c.hostname, c.os, c.version, c.defs, c.groups)...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				continue // nothing listed changed
			}
			var hostname, os, version, defs, groups string
			err = base.QueryRowContext(ctx, c.baseArgs()...).Scan(&hostname, &os, &version, &defs, &groups)
			if errors.Is(err, sql.ErrNoRows) {
				refused[i] = true // unknown, removed or revoked
				continue
			} else if err != nil {
				return err
			}
			changed := c.changes(hostname, os, version, defs, groups)
			if changed == 0 {
				continue
			}
			if upd[changed] == nil {
				upd[changed] = tx.StmtContext(ctx, s.updCheckIn[changed])
			}
			if _, err := upd[changed].ExecContext(ctx, c.args(changed)...); err != nil {
				return err
			}
			if err := s.recount(ctx, tx, c, changed, os, version, defs, groups); err != nil {
				return fmt.Errorf("agent %q: %w", c.id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite store: check-ins: %w", err)
	}
	return refused, nil
}

// RevokeAgent implements store.Store. The time must not be zero.
func (s *Store) RevokeAgent(ctx context.Context, id string, at time.Time) error {
	return s.markAgent(ctx, "revoke", s.updRevoke, id, at)
}

// RemoveAgent implements store.Store. The time must not be zero.
func (s *Store) RemoveAgent(ctx context.Context, id string, at time.Time) error {
	return s.markAgent(ctx, "remove", s.updRemove, id, at)
}

// markAgent runs st (revoke or remove) on agent id, ErrNotFound when it
// changed no row.
func (s *Store) markAgent(ctx context.Context, what string, st *sql.Stmt, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("sqlite store: %s agent %q: zero time", what, id)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx, id, timeArg(at))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite store: %s agent %q: %w", what, id, err)
	}
	return nil
}

// AppendCommand implements store.Store. The Command sign returns must carry
// the sequence number it was given (or leave Seq zero) and a non-empty
// envelope. The returned Command is what was stored: times are truncated to
// the microsecond and in UTC.
func (s *Store) AppendCommand(ctx context.Context, sign func(seq uint64) (store.Command, error)) (store.Command, error) {
	var cmd store.Command
	err := s.write(ctx, func(tx *sql.Tx) error {
		var last int64
		if err := tx.StmtContext(ctx, s.selLastSeq).QueryRowContext(ctx).Scan(&last); err != nil {
			return err
		}
		if last == math.MaxInt64 {
			return errors.New("sequence numbers exhausted")
		}
		seq := uint64(last) + 1
		c, err := sign(seq)
		if err != nil {
			return fmt.Errorf("sign command %d: %w", seq, err)
		}
		if c.Seq != 0 && c.Seq != seq {
			return fmt.Errorf("sign returned a command with sequence %d for sequence %d", c.Seq, seq)
		}
		if len(c.Envelope) == 0 {
			return fmt.Errorf("sign returned an empty envelope for sequence %d", seq)
		}
		c.Seq = seq
		c.IssuedAt = normTime(c.IssuedAt)
		c.Expires = normTime(c.Expires)
		if _, err := tx.StmtContext(ctx, s.insCommand).ExecContext(ctx,
			int64(seq), c.Name, c.Target, c.Envelope, timeArg(c.IssuedAt), timeArg(c.Expires)); err != nil {
			return fmt.Errorf("command %d: %w", seq, err)
		}
		if _, err := tx.StmtContext(ctx, s.updLastSeq).ExecContext(ctx, int64(seq)); err != nil {
			return err
		}
		cmd = c
		return nil
	})
	if err != nil {
		return store.Command{}, fmt.Errorf("sqlite store: append command: %w", err)
	}
	return cmd, nil
}

// LatestSeq implements store.Store.
func (s *Store) LatestSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := s.selLatest.QueryRowContext(ctx).Scan(&seq); err != nil {
		return 0, fmt.Errorf("sqlite store: latest sequence: %w", err)
	}
	return uint64(seq), nil
}

// Command implements store.Store.
func (s *Store) Command(ctx context.Context, seq uint64) (store.Command, error) {
	if seq > math.MaxInt64 {
		return store.Command{}, fmt.Errorf("sqlite store: command %d: %w", seq, store.ErrNotFound)
	}
	c, err := scanCommand(s.selCommand.QueryRowContext(ctx, int64(seq)))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Command{}, fmt.Errorf("sqlite store: command %d: %w", seq, store.ErrNotFound)
	}
	if err != nil {
		return store.Command{}, fmt.Errorf("sqlite store: command %d: %w", seq, err)
	}
	return c, nil
}

// CommandsAfter implements store.Store. A limit of zero or less returns no
// commands.
func (s *Store) CommandsAfter(ctx context.Context, after uint64, limit int) ([]store.Command, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	cs, err := s.queryCommands(ctx, limit, s.selAfter, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: commands after %d: %w", after, err)
	}
	return cs, nil
}

// RecentCommands implements store.Store. A limit of zero or less returns no
// commands.
func (s *Store) RecentCommands(ctx context.Context, limit int) ([]store.Command, error) {
	if limit <= 0 {
		return nil, nil
	}
	cs, err := s.queryCommands(ctx, limit, s.selRecent, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: recent commands: %w", err)
	}
	return cs, nil
}

func (s *Store) queryCommands(ctx context.Context, limit int, st *sql.Stmt, args ...any) ([]store.Command, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []store.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, err
		}
		if cs == nil {
			cs = make([]store.Command, 0, min(limit, 256))
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// RecordResults implements store.Store. A result whose (Seq, AgentID) is
// already stored, or whose command or agent does not exist, is ignored. A
// Seq above math.MaxInt64 fails the batch.
func (s *Store) RecordResults(ctx context.Context, rs []store.Result) error {
	if len(rs) == 0 {
		return nil
	}
	args := make([][]any, len(rs))
	for i, r := range rs {
		seq, err := int64Of("result sequence", r.Seq)
		if err != nil {
			return fmt.Errorf("sqlite store: result of agent %q: %w", r.AgentID, err)
		}
		args[i] = []any{seq, r.AgentID, r.Status, r.Output, timeArg(r.ExecutedAt), timeArg(r.ReceivedAt)}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, s.insResult)
		for _, a := range args {
			if _, err := st.ExecContext(ctx, a...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite store: record results: %w", err)
	}
	return nil
}

// Results implements store.Store.
func (s *Store) Results(ctx context.Context, seq uint64) ([]store.Result, error) {
	if seq > math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.selResults.QueryContext(ctx, int64(seq))
	return readResults(rows, err, fmt.Sprintf("results of %d", seq))
}

// readResults reads the results of a query made with resultCols (err is
// the query's), each error naming what was read.
func readResults(rows *sql.Rows, err error, what string) ([]store.Result, error) {
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %s: %w", what, err)
	}
	defer rows.Close()
	var rs []store.Result
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: %s: %w", what, err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: %s: %w", what, err)
	}
	return rs, nil
}

type scanner interface {
	Scan(dest ...any) error
}

func scanAgent(sc scanner) (store.Agent, error) {
	var (
		a                                    store.Agent
		lastSeq                              int64
		groups, counters                     string
		enrolled, lastSeen, checkIn, revoked sql.NullInt64
		onAccess, update                     sql.NullString
	)
	if err := sc.Scan(&a.ID, &a.TokenHash, &a.Hostname, &a.OS, &a.Arch, &a.Version, &a.DefsVer,
		&groups, &lastSeq, &enrolled, &lastSeen, &counters, &checkIn, &revoked, &onAccess, &update, &a.Detections); err != nil {
		return store.Agent{}, err
	}
	var err error
	if update.Valid {
		if a.Update, err = store.DecodeUpdate(update.String); err != nil {
			return store.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
		}
	}
	if onAccess.Valid {
		if a.OnAccess, err = store.DecodeOnAccess(onAccess.String); err != nil {
			return store.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
		}
	}
	a.LastCheckIn = timeVal(checkIn)
	a.Revoked = timeVal(revoked)
	if len(a.TokenHash) == 0 {
		a.TokenHash = nil
	}
	a.LastSeq = uint64(lastSeq)
	a.EnrolledAt = timeVal(enrolled)
	a.LastSeen = timeVal(lastSeen)
	if a.Groups, err = decodeGroups(groups); err != nil {
		return store.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(counters), &a.Counters); err != nil {
		return store.Agent{}, fmt.Errorf("agent %q: counters: %w", a.ID, err)
	}
	if len(a.Counters) == 0 {
		a.Counters = nil
	}
	return a, nil
}

// decodeGroups is the inverse of encodeGroupsCounters for groups: nil
// for none.
func decodeGroups(groupsJSON string) ([]string, error) {
	var gs []string
	if err := json.Unmarshal([]byte(groupsJSON), &gs); err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	if len(gs) == 0 {
		return nil, nil
	}
	return gs, nil
}

func scanResult(sc scanner) (store.Result, error) {
	var (
		r        store.Result
		seq      int64
		exe, rcv sql.NullInt64
	)
	if err := sc.Scan(&seq, &r.AgentID, &r.Status, &r.Output, &exe, &rcv); err != nil {
		return store.Result{}, err
	}
	r.Seq = uint64(seq)
	r.ExecutedAt = timeVal(exe)
	r.ReceivedAt = timeVal(rcv)
	return r, nil
}

func scanCommand(sc scanner) (store.Command, error) {
	var (
		c               store.Command
		seq             int64
		issued, expires sql.NullInt64
	)
	if err := sc.Scan(&seq, &c.Name, &c.Target, &c.Envelope, &issued, &expires); err != nil {
		return store.Command{}, err
	}
	c.Seq = uint64(seq)
	c.IssuedAt = timeVal(issued)
	c.Expires = timeVal(expires)
	return c, nil
}

// encodeGroupsCounters returns groups and counters as JSON text; empty ones
// are stored as [] and {}.
func encodeGroupsCounters(groups []string, counters map[string]uint64) (string, string, error) {
	g := []byte("[]")
	if len(groups) > 0 {
		var err error
		if g, err = json.Marshal(groups); err != nil {
			return "", "", fmt.Errorf("groups: %w", err)
		}
	}
	c := []byte("{}")
	if len(counters) > 0 {
		var err error
		if c, err = json.Marshal(counters); err != nil {
			return "", "", fmt.Errorf("counters: %w", err)
		}
	}
	return string(g), string(c), nil
}

// encodeOnAccess returns the on-access state's stored text, or NULL for nil.
func encodeOnAccess(o *store.OnAccess) (any, error) { return nullable(store.EncodeOnAccess(o)) }

// encodeUpdate returns the update state's stored text, or NULL for nil.
func encodeUpdate(u *store.UpdateState) (any, error) { return nullable(store.EncodeUpdate(u)) }

// nullable turns stored text into a query argument: NULL for none.
func nullable(text *string, err error) (any, error) {
	if err != nil || text == nil {
		return nil, err
	}
	return *text, nil
}

// int64Of converts a sequence number to the signed integer SQLite stores.
func int64Of(what string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%s %d exceeds the largest storable value %d", what, v, int64(math.MaxInt64))
	}
	return int64(v), nil
}

// timeArg is how a time is stored: Unix microseconds, NULL for the zero time.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// timeVal is the inverse of timeArg.
func timeVal(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// normTime returns t as it reads back after being stored.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// isConstraint reports whether err is the SQLite extended error code.
func isConstraint(err error, code int) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code() == code
}

// recount brings agent_counts and agent_groups in step with a check-in c
// that changed the listed columns of changed, whose previous values were
// os, version, defs and groups (JSON).
func (s *Store) recount(ctx context.Context, tx *sql.Tx, c *checkIn, changed int, os, version, defs, groups string) error {
	if changed&^changedHostname == 0 {
		return nil
	}
	inc, dec := tx.StmtContext(ctx, s.incCount), tx.StmtContext(ctx, s.decCount)
	move := func(kind, from, to string) error {
		if _, err := dec.ExecContext(ctx, kind, from); err != nil {
			return err
		}
		_, err := inc.ExecContext(ctx, kind, to)
		return err
	}
	for _, m := range []struct {
		bit            int
		kind, from, to string
	}{
		{changedOS, "os", os, c.os},
		{changedVersion, "version", version, c.version},
		{changedDefs, "defs", defs, c.defs},
	} {
		if changed&m.bit != 0 {
			if err := move(m.kind, m.from, m.to); err != nil {
				return err
			}
		}
	}
	if changed&changedGroups == 0 {
		return nil
	}
	was, err := decodeGroups(groups)
	if err != nil {
		return err
	}
	is, err := decodeGroups(c.groups)
	if err != nil {
		return err
	}
	ins, del := tx.StmtContext(ctx, s.insGroup), tx.StmtContext(ctx, s.delGroup)
	for i, g := range was {
		if slices.Contains(is, g) || slices.Contains(was[:i], g) {
			continue
		}
		if _, err := del.ExecContext(ctx, c.id, g); err != nil {
			return err
		}
		if _, err := dec.ExecContext(ctx, "group", g); err != nil {
			return err
		}
	}
	for i, g := range is {
		if slices.Contains(was, g) || slices.Contains(is[:i], g) {
			continue
		}
		if _, err := ins.ExecContext(ctx, c.id, g); err != nil {
			return err
		}
		if _, err := inc.ExecContext(ctx, "group", g); err != nil {
			return err
		}
	}
	return nil
}
