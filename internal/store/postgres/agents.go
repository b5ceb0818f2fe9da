package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
)

const agentCols = `id, token_hash, hostname, os, arch, version, defs_ver, groups, last_seq, enrolled_at, last_seen,
	last_checkin, counters_json, onaccess_json, revoked_at, detections, update_json`

// agentRow is an agent's values as stored.
type agentRow struct {
	id, hostname, os, arch, version, defs string
	tokenHash                             []byte
	groups                                []string
	lastSeq                               int64
	counters                              string
	onAccess                              *string
	update                                *string
}

func encodeAgentRow(id, hostname, os, arch, version, defs string, tokenHash []byte, groups []string,
	lastSeq uint64, counters map[string]uint64, onAccess *store.OnAccess, update *store.UpdateState) (agentRow, error) {
	r := agentRow{id: id, hostname: hostname, os: os, arch: arch, version: version, defs: defs, tokenHash: tokenHash, groups: groups}
	if r.tokenHash == nil {
		r.tokenHash = []byte{}
	}
	if r.groups == nil {
		r.groups = []string{}
	}
	var err error
	if r.lastSeq, err = int64Of("last sequence", lastSeq); err != nil {
		return agentRow{}, err
	}
	r.counters = "{}"
	if len(counters) > 0 {
		b, err := json.Marshal(counters)
		if err != nil {
			return agentRow{}, fmt.Errorf("counters: %w", err)
		}
		r.counters = string(b)
	}
	if r.onAccess, err = store.EncodeOnAccess(onAccess); err != nil {
		return agentRow{}, err
	}
	if r.update, err = store.EncodeUpdate(update); err != nil {
		return agentRow{}, err
	}
	return r, nil
}

func scanAgent(row pgx.Row) (store.Agent, error) {
	var (
		a                                    store.Agent
		lastSeq                              int64
		enrolled, lastSeen, checkIn, revoked *time.Time
		counters                             string
		onAccess, update                     *string
		detections                           int64
		err                                  error
	)
	if err = row.Scan(&a.ID, &a.TokenHash, &a.Hostname, &a.OS, &a.Arch, &a.Version, &a.DefsVer, &a.Groups, &lastSeq,
		&enrolled, &lastSeen, &checkIn, &counters, &onAccess, &revoked, &detections, &update); err != nil {
		return store.Agent{}, err
	}
	if update != nil {
		if a.Update, err = store.DecodeUpdate(*update); err != nil {
			return store.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
		}
	}
	a.LastSeq = uint64(lastSeq)
	a.EnrolledAt, a.LastSeen, a.LastCheckIn, a.Revoked = timeOf(enrolled), timeOf(lastSeen), timeOf(checkIn), timeOf(revoked)
	a.Detections = int(detections)
	if len(a.TokenHash) == 0 {
		a.TokenHash = nil
	}
	if len(a.Groups) == 0 {
		a.Groups = nil
	}
	if err := json.Unmarshal([]byte(counters), &a.Counters); err != nil {
		return store.Agent{}, fmt.Errorf("agent %q: counters: %w", a.ID, err)
	}
	if len(a.Counters) == 0 {
		a.Counters = nil
	}
	if onAccess != nil {
		if a.OnAccess, err = store.DecodeOnAccess(*onAccess); err != nil {
			return store.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
		}
	}
	return a, nil
}

const insertAgent = `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups, last_seq,
	enrolled_at, last_seen, last_checkin, counters_json, onaccess_json, revoked_at, version_key, defs_key, groups_key, update_json)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`

// EnrollAgent implements store.Store. Agent.Detections is ignored.
func (s *Store) EnrollAgent(ctx context.Context, a store.Agent) error {
	return s.ImportAgents(ctx, []store.Agent{a})
}

// ImportAgents inserts agents in one transaction, as EnrollAgent does each,
// and fails without inserting any when one cannot be inserted (an ID
// enrolled already, say): the bulk loader for moving a fleet into a new
// store and for seeding benchmarks.
func (s *Store) ImportAgents(ctx context.Context, as []store.Agent) error {
	b := &pgx.Batch{}
	for _, a := range as {
		if a.ID == "" {
			return errors.New("postgres store: enroll agent: empty ID")
		}
		r, err := encodeAgentRow(a.ID, a.Hostname, a.OS, a.Arch, a.Version, a.DefsVer, a.TokenHash, a.Groups, a.LastSeq, a.Counters, a.OnAccess, a.Update)
		if err != nil {
			return fmt.Errorf("postgres store: enroll agent %q: %w", a.ID, err)
		}
		b.Queue(insertAgent, r.id, r.tokenHash, r.hostname, r.os, r.arch, r.version, r.defs, r.groups, r.lastSeq,
			ts(a.EnrolledAt), ts(a.LastSeen), ts(a.LastCheckIn), r.counters, r.onAccess, ts(a.Revoked),
			store.NaturalKey(a.Version), store.NaturalKey(a.DefsVer), store.GroupsKey(a.Groups), r.update)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		br := tx.SendBatch(ctx, b)
		for _, a := range as {
			if _, err := br.Exec(); err != nil {
				br.Close()
				if pgCode(err) == uniqueViolation {
					return fmt.Errorf("agent %q is already enrolled: %w", a.ID, err)
				}
				return fmt.Errorf("agent %q: %w", a.ID, err)
			}
		}
		return br.Close()
	})
	if err != nil {
		return fmt.Errorf("postgres store: enroll: %w", err)
	}
	return nil
}

// Agent implements store.Store.
func (s *Store) Agent(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(s.pool.QueryRow(ctx, "SELECT "+agentCols+" FROM agents WHERE id = $1 AND removed_at IS NULL", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Agent{}, fmt.Errorf("postgres store: agent %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Agent{}, fmt.Errorf("postgres store: agent %q: %w", id, err)
	}
	return a, nil
}

// Agents implements store.Store.
func (s *Store) Agents(ctx context.Context) ([]store.Agent, error) {
	var as []store.Agent
	err := s.queryAgents(ctx, "SELECT "+agentCols+" FROM agents WHERE removed_at IS NULL ORDER BY id", nil,
		func(a store.Agent) error { as = append(as, a); return nil })
	if err != nil {
		return nil, fmt.Errorf("postgres store: agents: %w", err)
	}
	return as, nil
}

// errCallback carries the error of a caller's function out of a query
// loop, to be returned unwrapped.
type errCallback struct{ err error }

func (e errCallback) Error() string { return e.err.Error() }

// queryAgents runs a query of agentCols and calls fn with each agent as
// its row is read; fn's error comes back as an errCallback.
func (s *Store) queryAgents(ctx context.Context, query string, a args, fn func(store.Agent) error) error {
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		ag, err := scanAgent(rows)
		if err != nil {
			return err
		}
		if err := fn(ag); err != nil {
			return errCallback{err}
		}
	}
	return rows.Err()
}

// checkInUpdate applies a batch of check-ins (one row of each array per
// agent) to the agents neither removed nor revoked. Groups come as JSON
// arrays (text[] cannot hold lists of different lengths).
const checkInUpdate = `UPDATE agents a SET hostname = c.hostname, os = c.os, arch = c.arch,
	version = c.version, version_key = c.version_key, defs_ver = c.defs_ver, defs_key = c.defs_key,
	groups = ARRAY(SELECT jsonb_array_elements_text(c.groups)), groups_key = c.groups_key,
	last_seq = c.last_seq, counters_json = c.counters, onaccess_json = c.onaccess, update_json = c.upd,
	last_seen = c.at, last_checkin = c.at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		$9::jsonb[], $10::text[], $11::bigint[], $12::text[], $13::text[], $14::timestamptz[], $15::text[])
		AS c(id, hostname, os, arch, version, version_key, defs_ver, defs_key, groups, groups_key, last_seq, counters, onaccess, at, upd)
	WHERE a.id = ANY($1) AND a.id = c.id AND a.removed_at IS NULL AND a.revoked_at IS NULL
	RETURNING a.id`

// CheckIns implements store.Store: refused[i] says it did not apply
// cs[i], a check-in of an agent unknown, removed or revoked, perhaps
// by another server instance, whose credential this instance still
// trusts. A check-in that a later one of its agent in the batch replaced
// counts as applied when that one was.
func (s *Store) CheckIns(ctx context.Context, cs []store.CheckIn) (refused []bool, err error) {
	if len(cs) == 0 {
		return nil, nil
	}
	last := make(map[string]int, len(cs))
	for i, c := range cs {
		last[c.AgentID] = i
	}
	order := make([]int, 0, len(last))
	for _, i := range last {
		order = append(order, i)
	}
	slices.SortFunc(order, func(i, j int) int { return strings.Compare(cs[i].AgentID, cs[j].AgentID) })
	n := len(order)
	var (
		ids, hosts, oses, arches, versions, vkeys = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		defs, dkeys, groups, gkeys, counters      = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		lastSeqs                                  = make([]int64, n)
		onAccess, update                          = make([]*string, n), make([]*string, n)
		at                                        = make([]*time.Time, n)
	)
	for k, i := range order {
		c := cs[i]
		r, err := encodeAgentRow(c.AgentID, c.Hostname, c.OS, c.Arch, c.Version, c.DefsVer, nil, c.Groups, c.LastSeq, c.Counters, c.OnAccess, c.Update)
		if err != nil {
			return nil, fmt.Errorf("postgres store: check-in of agent %q: %w", c.AgentID, err)
		}
		g, err := json.Marshal(r.groups)
		if err != nil {
			return nil, fmt.Errorf("postgres store: check-in of agent %q: groups: %w", c.AgentID, err)
		}
		ids[k], hosts[k], oses[k], arches[k], versions[k], vkeys[k] = r.id, r.hostname, r.os, r.arch, r.version, store.NaturalKey(r.version)
		defs[k], dkeys[k], groups[k], gkeys[k], counters[k] = r.defs, store.NaturalKey(r.defs), string(g), store.GroupsKey(r.groups), r.counters
		lastSeqs[k], onAccess[k], update[k], at[k] = r.lastSeq, r.onAccess, r.update, ts(c.At)
	}
	applied := make(map[string]bool, n)
	err = s.write(ctx, func(tx pgx.Tx) error {
		clear(applied)
		b := &pgx.Batch{}
		b.Queue(`SELECT 1 FROM agents WHERE id = ANY($1) AND removed_at IS NULL AND revoked_at IS NULL
			ORDER BY id FOR NO KEY UPDATE`, ids)
		b.Queue(checkInUpdate, ids, hosts, oses, arches, versions, vkeys, defs, dkeys, groups, gkeys, lastSeqs, counters, onAccess, at, update).
			Query(func(rows pgx.Rows) error {
				var id string
				_, err := pgx.ForEachRow(rows, []any{&id}, func() error { applied[id] = true; return nil })
				return err
			})
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres store: check-ins: %w", err)
	}
	refused = make([]bool, len(cs))
	for i, c := range cs {
		refused[i] = !applied[c.AgentID]
	}
	return refused, nil
}

// RevokeAgent implements store.Store. The time must not be zero.
func (s *Store) RevokeAgent(ctx context.Context, id string, at time.Time) error {
	return s.markAgent(ctx, "revoke", "UPDATE agents SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 AND removed_at IS NULL", id, at)
}

// RemoveAgent implements store.Store. The time must not be zero.
func (s *Store) RemoveAgent(ctx context.Context, id string, at time.Time) error {
	return s.markAgent(ctx, "remove", "UPDATE agents SET removed_at = $2, token_hash = '' WHERE id = $1 AND removed_at IS NULL", id, at)
}

// markAgent runs query (revoke or remove) on agent id, ErrNotFound when it
// changed no row.
func (s *Store) markAgent(ctx context.Context, what, query, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("postgres store: %s agent %q: zero time", what, id)
	}
	// The change and its notification commit together: every instance
	// forgets the agent's credential (store.EventAgent).
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, query, id, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return notify(ctx, tx, "agent "+id)
	})
	if err != nil {
		return fmt.Errorf("postgres store: %s agent %q: %w", what, id, err)
	}
	return nil
}
