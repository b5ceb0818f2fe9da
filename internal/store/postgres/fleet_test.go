package postgres

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// naturalCompare is the natural order of versions computed another way
// than store.NaturalKey: runs of digits compared as numbers, the rest bytewise.
func naturalCompare(a, b string) int {
	re := regexp.MustCompile(`[0-9]+|[^0-9]+`)
	pa, pb := re.FindAllString(a, -1), re.FindAllString(b, -1)
	for i := range min(len(pa), len(pb)) {
		x, y := pa[i], pb[i]
		if x[0] >= '0' && x[0] <= '9' && y[0] >= '0' && y[0] <= '9' {
			nx, _ := new(big.Int).SetString(x, 10)
			ny, _ := new(big.Int).SetString(y, 10)
			if c := nx.Cmp(ny); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(pa), len(pb))
}

var (
	now   = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	clock = store.Clock{Now: now, OnlineWithin: 2 * time.Minute, MissingAfter: time.Hour}
)

// fleetAgents enrolls a small fleet with ties in every key, revoked,
// removed and never-seen agents and detections, and returns the agents as
// the store lists them (the removed one left out).
func fleetAgents(t *testing.T, s *Store) []store.Agent {
	t.Helper()
	ctx := t.Context()
	type spec struct {
		id, host, os, version, defs string
		groups                      []string
		seen                        time.Duration // before now; -1: never
		detections                  int
		revoked, removed            bool
	}
	specs := []spec{
		{"a01", "web-01.example", "linux", "1.10.0", "2026.03.14-10", []string{"web", "eu"}, 0, 2, false, false},
		{"a02", "WEB-02.example", "linux", "1.9.9", "2026.03.14-2", []string{"web"}, time.Minute, 0, false, false},
		{"a03", "ÉCOLE-1", "windows", "1.10.0", "", []string{"school", "eu"}, 3 * time.Minute, 1, false, false},
		{"a04", "db-01", "linux", "0.10", "2026.03.14-2", nil, 2 * time.Hour, 0, false, false},
		{"a05", "db-02", "darwin", "0.9", "2026.03.14-10", []string{"db", "db"}, -1, 0, false, false},
		{"a06", "web-03.example", "linux", "", "2026.03.14-2", []string{"web", "eu", "canary"}, 2 * time.Minute, 3, true, false},
		{"a07", "gone", "linux", "1.9.9", "x", []string{"web"}, 0, 0, false, true},
		{"a08", "build", "linux", "1.10.0", "2026.03.14-2", []string{"a-b"}, 59 * time.Minute, 0, false, false},
		{"a09", "build", "", "1.9.9", "", []string{"a", "b"}, 2*time.Minute + time.Microsecond, 0, false, false},
		{"b10", "mail", "windows", "2.0", "2026.3.15-1", []string{"a"}, time.Hour, 1, true, false},
	}
	for _, sp := range specs {
		a := store.Agent{ID: sp.id, TokenHash: []byte(sp.id), Hostname: sp.host, OS: sp.os, Arch: "amd64", Version: sp.version,
			DefsVer: sp.defs, Groups: sp.groups, EnrolledAt: now.Add(-48 * time.Hour)}
		if sp.seen >= 0 {
			a.LastSeen = now.Add(-sp.seen)
		}
		if err := s.EnrollAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		if sp.detections > 0 {
			sc := store.Scan{AgentID: sp.id, ReportID: "r-" + sp.id, DefsVer: sp.defs}
			for i := range sp.detections {
				sc.Detections = append(sc.Detections, store.Detection{Path: fmt.Sprintf("/f%d", i), Signature: "Eicar-Test",
					FoundAt: now.Add(-time.Duration(i) * time.Minute)})
			}
			if _, err := s.RecordScan(ctx, sc); err != nil {
				t.Fatal(err)
			}
		}
		if sp.revoked {
			if err := s.RevokeAgent(ctx, sp.id, now); err != nil {
				t.Fatal(err)
			}
		}
		if sp.removed {
			if err := s.RemoveAgent(ctx, sp.id, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	as, err := s.Agents(ctx)
	if err != nil || len(as) != len(specs)-1 {
		t.Fatalf("Agents() = %d agents, %v; want %d", len(as), err, len(specs)-1)
	}
	for _, a := range as {
		for _, sp := range specs {
			if sp.id == a.ID && a.Detections != sp.detections {
				t.Errorf("agent %s: Detections = %d, want %d", a.ID, a.Detections, sp.detections)
			}
		}
	}
	return as
}

// statusRank orders statuses from the freshest to revoked.
var statusRank = map[string]int{store.StatusOnline: 0, store.StatusLate: 1, store.StatusMissing: 2, store.StatusRevoked: 3}

// compareBy is each sort's order as the contract states it, without the
// tie-break by ID, ascending.
var compareBy = map[string]func(a, b store.Agent) int{
	store.SortID:         func(a, b store.Agent) int { return strings.Compare(a.ID, b.ID) },
	store.SortHostname:   func(a, b store.Agent) int { return strings.Compare(a.Hostname, b.Hostname) },
	store.SortOS:         func(a, b store.Agent) int { return strings.Compare(a.OS, b.OS) },
	store.SortVersion:    func(a, b store.Agent) int { return naturalCompare(a.Version, b.Version) },
	store.SortDefs:       func(a, b store.Agent) int { return naturalCompare(a.DefsVer, b.DefsVer) },
	store.SortGroups:     func(a, b store.Agent) int { return slices.Compare(a.Groups, b.Groups) },
	store.SortLastSeen:   func(a, b store.Agent) int { return a.LastSeen.Compare(b.LastSeen) },
	store.SortDetections: func(a, b store.Agent) int { return cmp.Compare(a.Detections, b.Detections) },
	store.SortStatus: func(a, b store.Agent) int {
		ra, rb := a.Revoked.IsZero(), b.Revoked.IsZero()
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return b.LastSeen.Compare(a.LastSeen) // freshest first
	},
}

func ids(as []store.Agent) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func list(t *testing.T, s *Store, q store.AgentQuery) []store.Agent {
	t.Helper()
	var got []store.Agent
	if err := s.ListAgents(t.Context(), q, func(a store.Agent) error { got = append(got, a); return nil }); err != nil {
		t.Fatalf("ListAgents(%+v): %v", q, err)
	}
	return got
}

func TestListAgents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := mustOpen(t, newDSN(t))
	all := fleetAgents(t, s)
	yes, no := true, false
	filters := map[string]struct {
		f    store.AgentFilter
		keep func(store.Agent) bool
	}{
		"all":            {store.AgentFilter{}, func(store.Agent) bool { return true }},
		"search web":     {store.AgentFilter{Search: "wEb"}, func(a store.Agent) bool { return strings.Contains(strings.ToLower(a.Hostname), "web") }},
		"search id":      {store.AgentFilter{Search: "B1"}, func(a store.Agent) bool { return a.ID == "b10" }},
		"search ascii":   {store.AgentFilter{Search: "école"}, func(store.Agent) bool { return false }},
		"search cole":    {store.AgentFilter{Search: "cole"}, func(a store.Agent) bool { return a.ID == "a03" }},
		"group eu":       {store.AgentFilter{Group: "eu"}, func(a store.Agent) bool { return slices.Contains(a.Groups, "eu") }},
		"group db":       {store.AgentFilter{Group: "db"}, func(a store.Agent) bool { return a.ID == "a05" }},
		"os linux":       {store.AgentFilter{OS: "linux"}, func(a store.Agent) bool { return a.OS == "linux" }},
		"version":        {store.AgentFilter{Version: "1.10.0"}, func(a store.Agent) bool { return a.Version == "1.10.0" }},
		"version exact":  {store.AgentFilter{Version: "1.10"}, func(store.Agent) bool { return false }},
		"defs":           {store.AgentFilter{DefsVer: "2026.03.14-2"}, func(a store.Agent) bool { return a.DefsVer == "2026.03.14-2" }},
		"no defs":        {store.AgentFilter{NoDefs: true, DefsVer: "x"}, func(a store.Agent) bool { return a.DefsVer == "" }},
		"detected":       {store.AgentFilter{Detected: &yes}, func(a store.Agent) bool { return a.Detections > 0 }},
		"clean":          {store.AgentFilter{Detected: &no}, func(a store.Agent) bool { return a.Detections == 0 }},
		"linux detected": {store.AgentFilter{OS: "linux", Detected: &yes}, func(a store.Agent) bool { return a.OS == "linux" && a.Detections > 0 }},
	}
	for _, st := range []string{store.StatusOnline, store.StatusLate, store.StatusMissing, store.StatusRevoked} {
		filters["status "+st] = struct {
			f    store.AgentFilter
			keep func(store.Agent) bool
		}{store.AgentFilter{Status: st, Clock: clock}, func(a store.Agent) bool { return clock.Status(a) == st }}
	}
	for name, tc := range filters {
		want := slices.DeleteFunc(slices.Clone(all), func(a store.Agent) bool { return !tc.keep(a) })
		if n, err := s.CountAgents(ctx, tc.f); err != nil || n != len(want) {
			t.Errorf("CountAgents(%s) = %d, %v; want %d", name, n, err, len(want))
		}
		for _, sort := range store.AgentSorts {
			for _, desc := range []bool{false, true} {
				by := compareBy[sort]
				w := slices.Clone(want)
				slices.SortStableFunc(w, func(a, b store.Agent) int {
					c := cmp.Or(by(a, b), strings.Compare(a.ID, b.ID))
					if desc {
						c = -c // the tie-break too
					}
					return c
				})
				q := store.AgentQuery{AgentFilter: tc.f, Sort: sort, Desc: desc}
				if got := list(t, s, q); !slices.Equal(ids(got), ids(w)) {
					t.Errorf("ListAgents(%s, sort %s, desc %v) = %v, want %v", name, sort, desc, ids(got), ids(w))
				}
				// Pages of 3 make up the whole list.
				var paged []store.Agent
				for q.Offset = 0; q.Offset < len(w)+3; q.Offset += 3 {
					q.Limit = 3
					paged = append(paged, list(t, s, q)...)
				}
				if !slices.Equal(ids(paged), ids(w)) {
					t.Errorf("ListAgents(%s, sort %s, desc %v) by pages of 3 = %v, want %v", name, sort, desc, ids(paged), ids(w))
				}
			}
		}
	}
	for _, bad := range []store.AgentQuery{{Sort: "color"}, {AgentFilter: store.AgentFilter{Status: "asleep"}}} {
		if err := s.ListAgents(ctx, bad, func(store.Agent) error { return nil }); err == nil {
			t.Errorf("ListAgents(%+v) succeeded", bad)
		}
	}
	// fn's error stops the list and comes back as it is.
	stop := errors.New("enough")
	n := 0
	err := s.ListAgents(ctx, store.AgentQuery{}, func(store.Agent) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("ListAgents with a failing fn: %v after %d agents, want %v after 1", err, n, stop)
	}
	// The agents come back whole.
	got := list(t, s, store.AgentQuery{Limit: 1, Offset: 2})
	if len(got) != 1 || !slices.Equal(got[0].Groups, all[2].Groups) || got[0].Hostname != all[2].Hostname || got[0].Detections != all[2].Detections {
		t.Errorf("ListAgents offset 2 = %+v, want %+v", got, all[2])
	}
}

func TestFleet(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, newDSN(t))
	all := fleetAgents(t, s)
	want := store.Fleet{ByDefs: map[string]int{}, ByVersion: map[string]int{}, ByOS: map[string]int{}, ByGroup: map[string]int{}}
	for _, a := range all {
		want.Total++
		switch clock.Status(a) {
		case store.StatusOnline:
			want.Online++
		case store.StatusLate:
			want.Late++
		case store.StatusMissing:
			want.Missing++
		case store.StatusRevoked:
			want.Revoked++
		}
		want.ByDefs[a.DefsVer]++
		want.ByVersion[a.Version]++
		want.ByOS[a.OS]++
		seen := map[string]bool{}
		for _, g := range a.Groups {
			if !seen[g] {
				want.ByGroup[g]++
				seen[g] = true
			}
		}
	}
	got, err := s.Fleet(t.Context(), clock)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != want.Total || got.Online != want.Online || got.Late != want.Late || got.Missing != want.Missing || got.Revoked != want.Revoked {
		t.Errorf("Fleet statuses = %d total, %d online, %d late, %d missing, %d revoked; want %d, %d, %d, %d, %d",
			got.Total, got.Online, got.Late, got.Missing, got.Revoked, want.Total, want.Online, want.Late, want.Missing, want.Revoked)
	}
	for name, m := range map[string][2]map[string]int{
		"ByDefs": {got.ByDefs, want.ByDefs}, "ByVersion": {got.ByVersion, want.ByVersion},
		"ByOS": {got.ByOS, want.ByOS}, "ByGroup": {got.ByGroup, want.ByGroup},
	} {
		if !maps.Equal(m[0], m[1]) {
			t.Errorf("Fleet.%s = %v, want %v", name, m[0], m[1])
		}
	}
	if want.Online == 0 || want.Late == 0 || want.Missing == 0 || want.Revoked == 0 {
		t.Fatalf("the fleet lacks a status: %+v", want)
	}
}

func TestProgressAndTargets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := mustOpen(t, newDSN(t))
	fleetAgents(t, s)
	// Enrolled after the command: never waited for.
	if err := s.EnrollAgent(ctx, store.Agent{ID: "late", TokenHash: []byte{1}, Groups: []string{"web"}, EnrolledAt: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordResults(ctx, []store.Result{
		{Seq: c.Seq, AgentID: "a01", Status: "ok"}, {Seq: c.Seq, AgentID: "a02", Status: "error"},
		{Seq: c.Seq, AgentID: "a04", Status: "ok"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		target  store.Target
		issued  time.Time
		targets []string
		p       store.Progress
	}{
		// Not the revoked a06 and b10, nor the removed a07, nor "late";
		// Targets has no sequence number: those that reported are listed.
		{"all", store.Target{All: true}, now, []string{"a01", "a02", "a03", "a04", "a05", "a08", "a09"}, store.Progress{OK: 2, Failed: 1, Pending: 4}},
		{"web", store.Target{Groups: []string{"web"}}, now, []string{"a01", "a02"}, store.Progress{OK: 2, Failed: 1}},
		{"groups and agents", store.Target{Groups: []string{"eu", "a"}, Agents: []string{"a05", "a07", "a02", "nobody"}}, now,
			[]string{"a01", "a02", "a03", "a05", "a09"}, store.Progress{OK: 2, Failed: 1, Pending: 3}},
		{"none", store.Target{}, now, nil, store.Progress{OK: 2, Failed: 1}},
		{"not issued", store.Target{All: true}, time.Time{}, nil, store.Progress{OK: 2, Failed: 1}},
		{"before every enrollment", store.Target{All: true}, now.Add(-49 * time.Hour), nil, store.Progress{OK: 2, Failed: 1}},
		// Enrolled at the very microsecond: not before it.
		{"the microsecond of enrollment", store.Target{All: true}, now.Add(-48 * time.Hour).Truncate(time.Microsecond), nil, store.Progress{OK: 2, Failed: 1}},
		{"the next microsecond", store.Target{All: true}, now.Add(-48 * time.Hour).Truncate(time.Microsecond).Add(time.Nanosecond),
			[]string{"a01", "a02", "a03", "a04", "a05", "a08", "a09"}, store.Progress{OK: 2, Failed: 1, Pending: 4}},
	} {
		var got []string
		if err := s.Targets(ctx, tc.target, tc.issued, func(id, host string) error { got = append(got, id); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.targets) {
			t.Errorf("Targets(%s) = %v, want %v", tc.name, got, tc.targets)
		}
		if p, err := s.Progress(ctx, c.Seq, tc.target, tc.issued); err != nil || p != tc.p {
			t.Errorf("Progress(%s) = %+v, %v; want %+v", tc.name, p, err, tc.p)
		}
	}
	stop := errors.New("enough")
	if err := s.Targets(ctx, store.Target{All: true}, now, func(string, string) error { return stop }); err != stop {
		t.Errorf("Targets with a failing fn = %v, want %v", err, stop)
	}
}

func TestAgentResults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := mustOpen(t, newDSN(t))
	for _, id := range []string{"a", "b"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	var rs []store.Result
	for range 6 {
		c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, store.Result{Seq: c.Seq, AgentID: "a", Status: "ok", Output: fmt.Sprint(c.Seq)})
		if c.Seq%2 == 0 {
			rs = append(rs, store.Result{Seq: c.Seq, AgentID: "b", Status: "ok"})
		}
	}
	if err := s.RecordResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		agent        string
		after, limit int
		want         []uint64
	}{
		{"a", 0, 10, []uint64{6, 5, 4, 3, 2, 1}},
		{"a", 2, 3, []uint64{6, 5, 4}},
		{"a", 4, 10, []uint64{6, 5}},
		{"b", 0, 10, []uint64{6, 4, 2}},
		{"a", 6, 10, nil},
		{"a", 0, 0, nil},
		{"nobody", 0, 10, nil},
	} {
		got, err := s.AgentResults(ctx, tc.agent, uint64(tc.after), tc.limit)
		var seqs []uint64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
			if r.AgentID != tc.agent || (tc.agent == "a" && r.Output != fmt.Sprint(r.Seq)) {
				t.Errorf("AgentResults(%s): result %+v", tc.agent, r)
			}
		}
		if err != nil || !slices.Equal(seqs, tc.want) {
			t.Errorf("AgentResults(%s, %d, %d) = %v, %v; want %v", tc.agent, tc.after, tc.limit, seqs, err, tc.want)
		}
	}
}

func TestQueryDetections(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := mustOpen(t, newDSN(t))
	for _, id := range []string{"a", "b"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	// Whole microseconds, as stored; bounds are compared exactly.
	found := func(m int) time.Time { return now.Add(time.Duration(m) * time.Minute).Truncate(time.Microsecond) }
	for i, sc := range []store.Scan{
		{AgentID: "a", ReportID: "1", Detections: []store.Detection{
			{Path: "/1", Signature: "Eicar-Test", FoundAt: found(0)}, {Path: "/2", Signature: "Win.Trojan.X", FoundAt: found(2)}}},
		{AgentID: "b", ReportID: "1", Kind: store.ScanKindOnAccess, Detections: []store.Detection{
			{Path: "/3", Signature: "EICAR-test", FoundAt: found(1), Access: "open", PID: 7, Blocked: true},
			{Path: "/4", Signature: "Other", FoundAt: found(2)}, {Path: "/5", Signature: "Other"}}},
	} {
		if _, err := s.RecordScan(ctx, sc); err != nil {
			t.Fatalf("scan %d: %v", i, err)
		}
	}
	paths := func(q store.DetectionQuery) []string {
		var out []string
		if err := s.QueryDetections(ctx, q, func(d store.Detection) error { out = append(out, d.Path); return nil }); err != nil {
			t.Fatalf("QueryDetections(%+v): %v", q, err)
		}
		return out
	}
	for _, tc := range []struct {
		q    store.DetectionQuery
		want []string
	}{
		// Newest first, ties (/2 and /4) by ID, no time last.
		{store.DetectionQuery{}, []string{"/4", "/2", "/3", "/1", "/5"}},
		{store.DetectionQuery{Limit: 2}, []string{"/4", "/2"}},
		{store.DetectionQuery{AgentID: "b"}, []string{"/4", "/3", "/5"}},
		{store.DetectionQuery{Signature: "eicar"}, []string{"/3", "/1"}},
		{store.DetectionQuery{Signature: "ICAR-T", AgentID: "a"}, []string{"/1"}},
		{store.DetectionQuery{Since: found(1)}, []string{"/4", "/2", "/3"}},
		{store.DetectionQuery{Since: found(1).Add(time.Nanosecond)}, []string{"/4", "/2"}},
		{store.DetectionQuery{Since: found(0), Until: found(2)}, []string{"/3", "/1"}},
		{store.DetectionQuery{Since: found(0), Until: found(2).Add(time.Nanosecond)}, []string{"/4", "/2", "/3", "/1"}},
		// Without a time (/5) is before any Until, never at or after a Since.
		{store.DetectionQuery{Until: found(1)}, []string{"/1", "/5"}},
	} {
		if got := paths(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("QueryDetections(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	var d store.Detection
	if err := s.QueryDetections(ctx, store.DetectionQuery{AgentID: "b", Signature: "eicar"}, func(x store.Detection) error { d = x; return nil }); err != nil ||
		d.Access != "open" || d.PID != 7 || !d.Blocked || !d.FoundAt.Equal(found(1).Truncate(time.Microsecond)) {
		t.Errorf("on-access detection = %+v, %v", d, err)
	}
	stop := errors.New("enough")
	if err := s.QueryDetections(ctx, store.DetectionQuery{}, func(store.Detection) error { return stop }); err != stop {
		t.Errorf("QueryDetections with a failing fn = %v, want %v", err, stop)
	}
	for _, tc := range []struct {
		since time.Time
		want  int
	}{{time.Time{}, 5}, {found(0), 4}, {found(1), 3}, {found(1).Add(time.Nanosecond), 2}, {found(3), 0}} {
		if n, err := s.CountDetections(ctx, tc.since); err != nil || n != tc.want {
			t.Errorf("CountDetections(%v) = %d, %v; want %d", tc.since, n, err, tc.want)
		}
	}
	for id, want := range map[string]int{"a": 2, "b": 3} {
		if a, err := s.Agent(ctx, id); err != nil || a.Detections != want {
			t.Errorf("Agent(%s).Detections = %d, %v; want %d", id, a.Detections, err, want)
		}
	}
}
