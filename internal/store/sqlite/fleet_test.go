package sqlite

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// TestListAgentsFarPages: pages past the middle of a list of more than
// 1,000 agents (read in the reverse order and turned around) are the
// pages of the whole list, for every order both ways and with a filter.
func TestListAgentsFarPages(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const n = 2400
	as := make([]store.Agent, n)
	for i := range as {
		h := uint32(i) * 2654435761
		as[i] = store.Agent{
			ID: fmt.Sprintf("ag-%05d", h%100000), TokenHash: []byte{1}, Hostname: fmt.Sprintf("h%03d", h%700),
			OS: []string{"linux", "windows", "darwin"}[h%3], Version: fmt.Sprintf("1.%d", h%12), DefsVer: fmt.Sprintf("d%d", h%5),
			Groups: []string{fmt.Sprintf("g%d", h%4)}, EnrolledAt: now, LastSeen: now.Add(-time.Duration(h%500) * time.Second),
		}
		if h%50 == 0 {
			as[i].Revoked = now
		}
		as[i].ID += fmt.Sprintf("-%d", i) // unique
	}
	if err := s.ImportAgents(ctx, as); err != nil {
		t.Fatal(err)
	}
	list := func(q store.AgentQuery) []string {
		var ids []string
		if err := s.ListAgents(ctx, q, func(a store.Agent) error { ids = append(ids, a.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	clock := store.Clock{Now: now, OnlineWithin: 100 * time.Second, MissingAfter: 400 * time.Second}
	for _, f := range []store.AgentFilter{{}, {Group: "g1"}, {Status: store.StatusLate, Clock: clock}} {
		for _, sort := range store.AgentSorts {
			for _, desc := range []bool{false, true} {
				q := store.AgentQuery{AgentFilter: f, Sort: sort, Desc: desc}
				full := list(q)
				if c, err := s.CountAgents(ctx, f); err != nil || c != len(full) {
					t.Fatalf("CountAgents(%+v) = %d, %v; the list has %d", f, c, err, len(full))
				}
				for _, off := range []int{999, 1000, len(full) / 2, len(full)/2 + 1, len(full) - 70, len(full) - 50, len(full) - 1, len(full), len(full) + 5} {
					if off < 0 {
						continue
					}
					q.Offset, q.Limit = off, 50
					want := full[min(off, len(full)):min(off+50, len(full))]
					if got := list(q); !slices.Equal(got, want) {
						t.Errorf("ListAgents(%+v sort %s desc %v offset %d) = %v,\nwant %v", f, sort, desc, off, got, want)
					}
				}
			}
		}
	}
}

// queryPlan returns SQLite's plan for a query on the read pool.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "\n")
	}
	return plan.String()
}

// TestFleetQueryPlans: each order of the agent list, both ways, and the
// other fleet queries read an index rather than sorting the agents.
func TestFleetQueryPlans(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	for _, sort := range store.AgentSorts {
		for _, desc := range []bool{false, true} {
			order, reversed, err := agentOrder(sort, desc)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []string{order, reversed} {
				q := "SELECT " + agentCols + " FROM agents WHERE removed_at IS NULL ORDER BY " + o + " LIMIT 50"
				plan := queryPlan(t, s, q)
				// One index serves each order, read forwards or
				// backwards: never a sort of the list.
				if strings.Contains(plan, "SCAN agents\n") || strings.Contains(plan, "TEMP B-TREE") {
					t.Errorf("ORDER BY %s:\n%s", o, plan)
				}
			}
		}
	}
	for _, q := range []string{
		"SELECT " + resultCols + " FROM results WHERE agent_id = 'a' AND seq > 0 ORDER BY seq DESC LIMIT 10",
		"SELECT " + detectionCols + " FROM detections WHERE found_at >= 1 ORDER BY found_at DESC, id DESC LIMIT 10",
		"SELECT " + detectionCols + " FROM detections WHERE agent_id = 'a' ORDER BY found_at DESC, id DESC LIMIT 10",
		"SELECT count(*) FROM detections WHERE found_at >= 1",
		"SELECT grp, count(*) FROM agent_groups GROUP BY grp",
	} {
		if plan := queryPlan(t, s, q); strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN detections\n") || strings.Contains(plan, "SCAN results\n") {
			t.Errorf("%s:\n%s", q, plan)
		}
	}
}

// TestMigrateFleet: a store of schema version 5 (agents with groups, a
// removed one, detections) opens at version 6 with each agent's sort keys,
// groups and detection count filled in, and the fleet queries answer from
// them; check-ins then keep them.
func TestMigrateFleet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	ctx := t.Context()
	db := oldStore(t, path, 5)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).UnixMicro()
	mustExec(t, db, `INSERT INTO agents (id, token_hash, hostname, os, arch, version, defs_ver, groups_json, last_seq,
		enrolled_at, last_seen, counters_json, last_checkin, revoked_at, removed_at, onaccess_json) VALUES
		('a', x'01', 'ha', 'linux', 'amd64', '0.10', '2026.1.10', '["web","eu"]', 1, ?1, ?1, '{}', ?1, NULL, NULL, NULL),
		('b', x'02', 'hb', 'linux', 'amd64', '0.9', '2026.1.9', '["web"]', 1, ?1, ?1, '{}', ?1, NULL, NULL, NULL),
		('c', x'03', 'hc', 'darwin', 'amd64', '1.0', '', '[]', 1, ?1, ?1, '{}', ?1, ?1, NULL, NULL),
		('gone', x'', 'hg', 'linux', 'amd64', '9', '', '["web"]', 1, ?1, ?1, '{}', ?1, NULL, ?1, NULL)`, at)
	mustExec(t, db, `INSERT INTO scans (agent_id, report_id, kind, seq, defs_ver, files, bytes, skipped, detections) VALUES
		('a', 'r1', '', 0, 'd', 1, 1, 0, 2), ('c', 'r1', 'onaccess', 0, 'd', 1, 1, 0, 1), ('gone', 'r1', '', 0, 'd', 1, 1, 0, 1)`)
	mustExec(t, db, `INSERT INTO detections (scan_id, agent_id, path, signature, sha256, defs_ver, found_at, quarantine) VALUES
		(1, 'a', '/1', 'X', '', 'd', ?1, ''), (1, 'a', '/2', 'X', '', 'd', ?1, ''), (2, 'c', '/3', 'Y', '', 'd', ?1, ''),
		(3, 'gone', '/4', 'Y', '', 'd', ?1, '')`, at)
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 5 {
		t.Fatalf("the old store's user_version = %d, %v; want 5", v, err)
	}
	db.Close()

	s := mustOpen(t, path)
	if err := s.w.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion() || SchemaVersion() < 6 {
		t.Fatalf("user_version after opening = %d, %v; want %d", v, err, SchemaVersion())
	}
	type row struct {
		id, vk, dk, gk string
		det            int
	}
	rows, err := s.r.QueryContext(ctx, "SELECT id, version_key, defs_key, groups_key, detections FROM agents ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.vk, &r.dk, &r.gk, &r.det); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	rows.Close()
	want := []row{
		{"a", store.NaturalKey("0.10"), store.NaturalKey("2026.1.10"), "web\x01eu", 2},
		{"b", store.NaturalKey("0.9"), store.NaturalKey("2026.1.9"), "web", 0},
		{"c", store.NaturalKey("1.0"), "", "", 1},
		{"gone", store.NaturalKey("9"), "", "web", 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("agents after migrating = %+v, want %+v", got, want)
	}
	var groups []string
	rows, err = s.r.QueryContext(ctx, "SELECT agent_id || ':' || grp FROM agent_groups ORDER BY grp, agent_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	rows.Close()
	if want := []string{"a:eu", "a:web", "b:web"}; !slices.Equal(groups, want) {
		t.Errorf("agent_groups after migrating = %v, want %v (no removed agent)", groups, want)
	}
	if a, err := s.Agent(ctx, "a"); err != nil || a.Detections != 2 {
		t.Errorf("Agent(a) after migrating = %+v, %v; want 2 detections", a, err)
	}
	var ids []string
	if err := s.ListAgents(ctx, store.AgentQuery{AgentFilter: store.AgentFilter{Group: "web"}, Sort: store.SortVersion},
		func(a store.Agent) error { ids = append(ids, a.ID); return nil }); err != nil || !slices.Equal(ids, []string{"b", "a"}) {
		t.Errorf("agents of group web by version after migrating = %v, %v; want [b a]", ids, err)
	}
	f, err := s.Fleet(ctx, store.Clock{Now: time.UnixMicro(at), OnlineWithin: time.Minute, MissingAfter: time.Hour})
	if err != nil || f.Total != 3 || f.Online != 2 || f.Revoked != 1 || f.ByGroup["web"] != 2 || f.ByGroup["eu"] != 1 || len(f.ByGroup) != 2 {
		t.Errorf("Fleet after migrating = %+v, %v", f, err)
	}
	if n, err := s.CountDetections(ctx, time.Time{}); err != nil || n != 4 {
		t.Errorf("CountDetections after migrating = %d, %v; want 4", n, err)
	}
	// Check-ins keep the keys and groups.
	if _, err := s.CheckIns(ctx, []store.CheckIn{{AgentID: "a", Hostname: "ha", OS: "linux", Version: "0.11", DefsVer: "2026.1.10",
		Groups: []string{"eu", "db", "eu"}, At: time.UnixMicro(at + 1)}}); err != nil {
		t.Fatal(err)
	}
	var vk, gk string
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT version_key, groups_key, (SELECT count(*) FROM agent_groups WHERE agent_id = 'a') FROM agents WHERE id = 'a'").
		Scan(&vk, &gk, &n); err != nil || vk != store.NaturalKey("0.11") || gk != "eu\x01db\x01eu" || n != 2 {
		t.Errorf("agent a after a check-in: version_key %q, groups_key %q, %d agent_groups rows, %v", vk, gk, n, err)
	}
}
