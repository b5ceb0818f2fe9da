package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// The fleet queries' tests: ListAgents and CountAgents against a model of
// the contract (every filter, every order both ways), Offset and Limit,
// Detections, Fleet, Progress and Targets, AgentResults, QueryDetections and
// CountDetections.

// fleetNow is the clock of the fleet fixture, to the microsecond so that
// the status lines fall exactly on stored times.
var fleetNow = time.Date(2026, time.March, 24, 12, 0, 0, 0, time.UTC)

var fleetClock = store.Clock{Now: fleetNow, OnlineWithin: 5 * time.Minute, MissingAfter: time.Hour}

// fleetAgent is one agent of the fixture and what the model knows of it.
type fleetAgent struct {
	store.Agent
	removed bool
}

// fleetFixture enrolls agents with ties in every order, a removed one, a
// revoked one, and detections, and returns them as the model sees them
// (the removed one included, marked).
func fleetFixture(t *testing.T, s store.Store) []fleetAgent {
	t.Helper()
	ctx := t.Context()
	ago := func(d time.Duration) time.Time { return fleetNow.Add(-d) }
	as := []fleetAgent{
		{Agent: store.Agent{ID: "a01", Hostname: "Web-1.example", OS: "linux", Version: "0.9", DefsVer: "2026.1.10", Groups: []string{"web"}, LastSeen: ago(time.Minute)}},
		{Agent: store.Agent{ID: "a02", Hostname: "web-2", OS: "linux", Version: "0.10", DefsVer: "2026.1.9", Groups: []string{"web", "eu"}, LastSeen: ago(10 * time.Minute)}},
		{Agent: store.Agent{ID: "a03", Hostname: "db-1", OS: "windows", Version: "1.0", Groups: []string{"db"}, LastSeen: ago(2 * time.Hour)}},
		{Agent: store.Agent{ID: "a04", Hostname: "DB-2", OS: "windows", Version: "0.10", DefsVer: "2026.1.10"}},
		{Agent: store.Agent{ID: "a05", Hostname: "mail", OS: "darwin", Version: "0.9", DefsVer: "2026.1.9", Groups: []string{"web"}, LastSeen: ago(time.Minute), Revoked: ago(time.Hour)}},
		{Agent: store.Agent{ID: "a06", Hostname: `x_web%\1`, OS: "linux", Version: "1.0", DefsVer: "2026.1.10", Groups: []string{"eu"}, LastSeen: ago(30 * time.Minute)}},
		{Agent: store.Agent{ID: "a07", Hostname: "web-removed", OS: "linux", Version: "1.100", DefsVer: "2026.1.10", Groups: []string{"web"}, LastSeen: ago(time.Minute)}, removed: true},
		{Agent: store.Agent{ID: "a08", Hostname: "db-1", OS: "darwin", Version: "1.99", DefsVer: "2026.1.100", Groups: []string{"db", "web"}, LastSeen: ago(5 * time.Minute)}},
		{Agent: store.Agent{ID: "a09", Hostname: "app", OS: "linux", Version: "1.100", DefsVer: "2026.1.9", Groups: []string{"eu", "web"}, LastSeen: ago(time.Minute)}},
		{Agent: store.Agent{ID: "a10", Hostname: "late-edge", OS: "", Version: "", Groups: []string{"eu"}, LastSeen: ago(time.Hour)}},
		{Agent: store.Agent{ID: "A11", Hostname: "upper", OS: "linux", Version: "0.9", DefsVer: "2026.1.9", Groups: []string{"web"}, LastSeen: ago(time.Hour + time.Microsecond)}},
	}
	for i := range as {
		a := &as[i].Agent
		a.TokenHash = []byte(a.ID)
		a.EnrolledAt = fleetNow.Add(-24 * time.Hour)
		if err := s.EnrollAgent(ctx, *a); err != nil {
			t.Fatalf("EnrollAgent(%q): %v", a.ID, err)
		}
	}
	det := func(n int) []store.Detection {
		ds := make([]store.Detection, n)
		for i := range ds {
			ds[i] = store.Detection{Path: fmt.Sprintf("/f%d", i), Signature: "Eicar", FoundAt: fleetNow}
		}
		return ds
	}
	for _, sc := range []struct {
		id, report string
		n          int
	}{{"a01", "r1", 2}, {"a02", "r1", 1}, {"a02", "r1", 1}, {"a05", "r1", 3}, {"a07", "r1", 1}, {"a08", "r0", 0}} {
		if _, err := s.RecordScan(ctx, store.Scan{AgentID: sc.id, ReportID: sc.report, Detections: det(sc.n)}); err != nil {
			t.Fatalf("RecordScan(%s): %v", sc.id, err)
		}
	}
	for i, n := range map[string]int{"a01": 2, "a02": 1, "a05": 3, "a07": 1} {
		for j := range as {
			if as[j].ID == i {
				as[j].Detections = n
			}
		}
	}
	if err := s.RemoveAgent(ctx, "a07", fleetNow); err != nil {
		t.Fatal(err)
	}
	return as
}

// compareVersions is the contract's natural order of the fixture's versions
// (dotted numbers, or none), written apart from any store's key.
func compareVersions(a, b string) int {
	var pa, pb []int
	for _, p := range strings.Split(a, ".") {
		if p != "" {
			n, _ := strconv.Atoi(p)
			pa = append(pa, n)
		}
	}
	for _, p := range strings.Split(b, ".") {
		if p != "" {
			n, _ := strconv.Atoi(p)
			pb = append(pb, n)
		}
	}
	return slices.Compare(pa, pb)
}

// modelCompare compares two agents by a sort of the contract, without
// the ID tie-break.
func modelCompare(sort string, a, b store.Agent) int {
	switch sort {
	case store.SortHostname:
		return strings.Compare(a.Hostname, b.Hostname)
	case store.SortOS:
		return strings.Compare(a.OS, b.OS)
	case store.SortVersion:
		return compareVersions(a.Version, b.Version)
	case store.SortDefs:
		return compareVersions(a.DefsVer, b.DefsVer)
	case store.SortGroups:
		return slices.Compare(a.Groups, b.Groups)
	case store.SortLastSeen:
		return a.LastSeen.Compare(b.LastSeen)
	case store.SortDetections:
		return cmp.Compare(a.Detections, b.Detections)
	case store.SortStatus:
		ra, rb := !a.Revoked.IsZero(), !b.Revoked.IsZero()
		if ra != rb {
			if ra {
				return 1
			}
			return -1
		}
		return b.LastSeen.Compare(a.LastSeen) // freshest first
	}
	return 0
}

// modelList is the IDs ListAgents must return for q.
func modelList(as []fleetAgent, q store.AgentQuery) []string {
	var sel []store.Agent
	for _, a := range as {
		if !a.removed && modelSelects(q.AgentFilter, a.Agent) {
			sel = append(sel, a.Agent)
		}
	}
	slices.SortFunc(sel, func(a, b store.Agent) int {
		c := modelCompare(q.Sort, a, b)
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		if q.Desc {
			c = -c // the whole order, the tie-break included
		}
		return c
	})
	ids := []string{}
	for _, a := range sel {
		ids = append(ids, a.ID)
	}
	from := min(max(q.Offset, 0), len(ids))
	ids = ids[from:]
	if q.Limit > 0 && q.Limit < len(ids) {
		ids = ids[:q.Limit]
	}
	return ids
}

func modelSelects(f store.AgentFilter, a store.Agent) bool {
	lower := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'A' && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, s)
	}
	switch {
	case f.Search != "" && !strings.Contains(lower(a.Hostname), lower(f.Search)) && !strings.Contains(lower(a.ID), lower(f.Search)):
		return false
	case f.Group != "" && !slices.Contains(a.Groups, f.Group):
		return false
	case f.OS != "" && a.OS != f.OS:
		return false
	case f.Version != "" && a.Version != f.Version:
		return false
	case f.NoDefs && a.DefsVer != "":
		return false
	case !f.NoDefs && f.DefsVer != "" && a.DefsVer != f.DefsVer:
		return false
	case f.Status != "" && f.Clock.Status(a) != f.Status:
		return false
	case f.Detected != nil && *f.Detected != (a.Detections > 0):
		return false
	}
	return true
}

func listIDs(t *testing.T, s store.Store, q store.AgentQuery) []string {
	t.Helper()
	ids := []string{}
	err := s.ListAgents(t.Context(), q, func(a store.Agent) error {
		ids = append(ids, a.ID)
		return nil
	})
	if err != nil {
		t.Fatalf("ListAgents(%+v): %v", q, err)
	}
	return ids
}

var fleetFilters = func() map[string]store.AgentFilter {
	yes, no := true, false
	c := fleetClock
	return map[string]store.AgentFilter{
		"all":               {},
		"search-WEB":        {Search: "WEB"},
		"search-id":         {Search: "a0"},
		"search-ID-upper":   {Search: "a1"},
		"search-none":       {Search: "zzz"},
		"search-underscore": {Search: "_"}, // LIKE's wildcards and escape
		"search-percent":    {Search: "%"}, // are text to a search
		"search-backslash":  {Search: `\1`},
		"group-web":         {Group: "web"},
		"group-eu":          {Group: "eu"},
		"group-none":        {Group: "nope"},
		"os-linux":          {OS: "linux"},
		"version-0.10":      {Version: "0.10"},
		"defs":              {DefsVer: "2026.1.10"},
		"nodefs":            {NoDefs: true},
		"nodefs-over-defs":  {NoDefs: true, DefsVer: "2026.1.10"},
		"online":            {Status: store.StatusOnline, Clock: c},
		"late":              {Status: store.StatusLate, Clock: c},
		"missing":           {Status: store.StatusMissing, Clock: c},
		"revoked":           {Status: store.StatusRevoked, Clock: c},
		"detected":          {Detected: &yes},
		"clean":             {Detected: &no},
		"web-online":        {Group: "web", Status: store.StatusOnline, Clock: c},
		"linux-clean":       {OS: "linux", Detected: &no},
		"search-group-defs": {Search: "-", Group: "web", DefsVer: "2026.1.9"},
	}
}()

func testListAgents(t *testing.T, s store.Store) {
	as := fleetFixture(t, s)
	// The model's orders, checked by hand where the contract is subtle.
	for _, tc := range []struct {
		q    store.AgentQuery
		want string
	}{
		{store.AgentQuery{}, "A11 a01 a02 a03 a04 a05 a06 a08 a09 a10"},
		{store.AgentQuery{Sort: store.SortVersion}, "a10 A11 a01 a05 a02 a04 a03 a06 a08 a09"},
		{store.AgentQuery{Sort: store.SortVersion, Desc: true}, "a09 a08 a06 a03 a04 a02 a05 a01 A11 a10"},
		{store.AgentQuery{Sort: store.SortDefs}, "a03 a10 A11 a02 a05 a09 a01 a04 a06 a08"},
		{store.AgentQuery{Sort: store.SortGroups}, "a04 a03 a08 a06 a10 a09 A11 a01 a05 a02"},
		{store.AgentQuery{Sort: store.SortStatus}, "a01 a09 a08 a02 a06 a10 A11 a03 a04 a05"},
		{store.AgentQuery{Sort: store.SortStatus, Desc: true}, "a05 a04 a03 A11 a10 a06 a02 a08 a09 a01"},
		{store.AgentQuery{Sort: store.SortHostname, Desc: true}, "a06 a02 A11 a05 a10 a08 a03 a09 a01 a04"},
		{store.AgentQuery{Sort: store.SortDetections, Desc: true}, "a05 a01 a02 a10 a09 a08 a06 a04 a03 A11"},
		{store.AgentQuery{Sort: store.SortLastSeen}, "a04 a03 A11 a10 a06 a02 a08 a01 a05 a09"},
	} {
		want := strings.Fields(tc.want)
		if got := modelList(as, tc.q); !slices.Equal(got, want) {
			t.Fatalf("the test's model lists %v for %+v, want %v", got, tc.q, want)
		}
		if got := listIDs(t, s, tc.q); !slices.Equal(got, want) {
			t.Errorf("ListAgents(sort %q, desc %v) = %v, want %v", tc.q.Sort, tc.q.Desc, got, want)
		}
	}
	for name, f := range fleetFilters {
		for _, sort := range append([]string{""}, store.AgentSorts...) {
			for _, desc := range []bool{false, true} {
				q := store.AgentQuery{AgentFilter: f, Sort: sort, Desc: desc}
				want := modelList(as, q)
				if got := listIDs(t, s, q); !slices.Equal(got, want) {
					t.Errorf("ListAgents(%s, sort %q, desc %v) = %v, want %v", name, sort, desc, got, want)
				}
			}
		}
		n, err := s.CountAgents(t.Context(), f)
		if want := len(modelList(as, store.AgentQuery{AgentFilter: f})); err != nil || n != want {
			t.Errorf("CountAgents(%s) = %d, %v; want %d", name, n, err, want)
		}
	}
	// Every agent comes back whole, its detections counted.
	byID := map[string]store.Agent{}
	for _, a := range as {
		byID[a.ID] = a.Agent
	}
	err := s.ListAgents(t.Context(), store.AgentQuery{}, func(got store.Agent) error {
		if d := agentDiff(byID[got.ID], got); d != "" {
			t.Errorf("ListAgents: agent %q: %s", got.ID, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		got, err := s.Agent(t.Context(), a.ID)
		if a.removed {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Agent(removed %q) = %v", a.ID, err)
			}
			continue
		}
		if err != nil || got.Detections != a.Detections {
			t.Errorf("Agent(%q).Detections = %d, %v; want %d", a.ID, got.Detections, err, a.Detections)
		}
	}
	all, err := s.Agents(t.Context())
	if err != nil || len(all) != len(as)-1 {
		t.Fatalf("Agents() = %d agents, %v", len(all), err)
	}
	for _, got := range all {
		if d := agentDiff(byID[got.ID], got); d != "" {
			t.Errorf("Agents(): agent %q: %s", got.ID, d)
		}
	}
}

func testListAgentsPages(t *testing.T, s store.Store) {
	as := fleetFixture(t, s)
	for _, sort := range []string{store.SortID, store.SortHostname, store.SortStatus, store.SortGroups} {
		for _, desc := range []bool{false, true} {
			for _, f := range []store.AgentFilter{{}, fleetFilters["group-web"]} {
				full := modelList(as, store.AgentQuery{AgentFilter: f, Sort: sort, Desc: desc})
				for limit := 0; limit <= 4; limit++ {
					for offset := -1; offset <= len(full)+2; offset++ {
						q := store.AgentQuery{AgentFilter: f, Sort: sort, Desc: desc, Offset: offset, Limit: limit}
						want := modelList(as, q)
						if got := listIDs(t, s, q); !slices.Equal(got, want) {
							t.Errorf("ListAgents(%+v) = %v, want %v", q, got, want)
						}
					}
				}
			}
		}
	}
	// The last page, pages concatenated, and fn's error.
	var pages []string
	for off := 0; ; off += 3 {
		p := listIDs(t, s, store.AgentQuery{Sort: store.SortVersion, Desc: true, Offset: off, Limit: 3})
		if len(p) == 0 {
			break
		}
		pages = append(pages, p...)
	}
	if want := modelList(as, store.AgentQuery{Sort: store.SortVersion, Desc: true}); !slices.Equal(pages, want) {
		t.Errorf("pages of 3 = %v, want %v", pages, want)
	}
	stop := errors.New("enough")
	n := 0
	err := s.ListAgents(t.Context(), store.AgentQuery{}, func(store.Agent) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("ListAgents whose fn fails at the 2nd agent = %v after %d calls; want its error after 2", err, n)
	}
	for _, q := range []store.AgentQuery{{Sort: "size"}, {AgentFilter: store.AgentFilter{Status: "asleep"}}} {
		if err := s.ListAgents(t.Context(), q, func(store.Agent) error { return nil }); err == nil {
			t.Errorf("ListAgents(%+v) succeeded", q)
		}
	}
	if _, err := s.CountAgents(t.Context(), store.AgentFilter{Status: "asleep"}); err == nil {
		t.Error("CountAgents with an unknown status succeeded")
	}
}

// testDetectionsCount: Agent.Detections counts what RecordScan stored, a
// report sent twice once, and follows check-ins unchanged.
func testDetectionsCount(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.EnrollAgent(ctx, store.Agent{ID: "d", TokenHash: []byte{1}, Detections: 99}); err != nil {
		t.Fatal(err)
	}
	check := func(want int) {
		t.Helper()
		a, err := s.Agent(ctx, "d")
		if err != nil || a.Detections != want {
			t.Errorf("Agent(d).Detections = %d, %v; want %d", a.Detections, err, want)
		}
	}
	check(0) // EnrollAgent ignores it
	sc := store.Scan{AgentID: "d", ReportID: "r1", Detections: []store.Detection{{Path: "/a", Signature: "X"}, {Path: "/b", Signature: "Y"}}}
	for range 2 {
		if _, err := s.RecordScan(ctx, sc); err != nil {
			t.Fatal(err)
		}
		check(2)
	}
	if _, err := s.RecordScan(ctx, store.Scan{AgentID: "d", ReportID: "oa", Kind: store.ScanKindOnAccess,
		Detections: []store.Detection{{Path: "/c", Signature: "Z", Access: "open"}}}); err != nil {
		t.Fatal(err)
	}
	check(3)
	if _, err := s.CheckIns(ctx, []store.CheckIn{{AgentID: "d", Hostname: "h", At: fleetNow}}); err != nil {
		t.Fatal(err)
	}
	check(3)
}

func testFleet(t *testing.T, s store.Store) {
	as := fleetFixture(t, s)
	want := store.Fleet{ByDefs: map[string]int{}, ByVersion: map[string]int{}, ByOS: map[string]int{}, ByGroup: map[string]int{}}
	for _, a := range as {
		if a.removed {
			continue
		}
		want.Total++
		switch fleetClock.Status(a.Agent) {
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
		for _, g := range a.Groups {
			want.ByGroup[g]++
		}
	}
	if want.Online != 3 || want.Late != 3 || want.Missing != 3 || want.Revoked != 1 {
		t.Fatalf("the fixture's statuses changed: %+v", want)
	}
	got, err := s.Fleet(t.Context(), fleetClock)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) { // maps print sorted
		t.Errorf("Fleet() = %+v\nwant %+v", got, want)
	}
	// The figures follow check-ins (a second one changing nothing).
	for range 2 {
		if _, err := s.CheckIns(t.Context(), []store.CheckIn{{AgentID: "a01", Hostname: "Web-1.example", OS: "plan9", Version: "2.0",
			DefsVer: "2026.2.1", Groups: []string{"eu", "new", "new"}, At: fleetNow}}); err != nil {
			t.Fatal(err)
		}
	}
	want.ByGroup["web"]--
	want.ByGroup["eu"]++
	want.ByGroup["new"]++
	want.ByOS["linux"]--
	want.ByOS["plan9"]++
	want.ByVersion["0.9"]--
	want.ByVersion["2.0"]++
	want.ByDefs["2026.1.10"]--
	want.ByDefs["2026.2.1"]++
	if got, err := s.Fleet(t.Context(), fleetClock); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Fleet() after a check-in = %+v, %v\nwant %+v", got, err, want)
	}
	if ids := listIDs(t, s, store.AgentQuery{AgentFilter: store.AgentFilter{Group: "new"}}); !slices.Equal(ids, []string{"a01"}) {
		t.Errorf("agents of group new = %v, want [a01]", ids)
	}
	if ids := listIDs(t, s, store.AgentQuery{AgentFilter: store.AgentFilter{Group: "web"}}); slices.Contains(ids, "a01") {
		t.Errorf("agents of group web = %v, still with a01", ids)
	}
}

func testProgressTargets(t *testing.T, s store.Store) {
	ctx := t.Context()
	issued := fleetNow
	before := issued.Add(-time.Hour)
	for _, a := range []store.Agent{
		{ID: "t1", Hostname: "h1", Groups: []string{"web"}, EnrolledAt: before},
		{ID: "t2", Hostname: "h2", Groups: []string{"db"}, EnrolledAt: before},
		{ID: "t3", Hostname: "h3", Groups: []string{"web"}, EnrolledAt: issued.Add(time.Minute)},
		{ID: "t4", Hostname: "h4", Groups: []string{"web"}, EnrolledAt: before},
		{ID: "t5", Hostname: "h5", Groups: []string{"web"}, EnrolledAt: before},
		{ID: "t6", Hostname: "h6", EnrolledAt: before},
		{ID: "t7", Hostname: "h7", Groups: []string{"web", "db"}, EnrolledAt: before},
		{ID: "t8", Hostname: "h8", Groups: []string{"web"}, EnrolledAt: issued},
	} {
		a.TokenHash = []byte(a.ID)
		if err := s.EnrollAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		c := command(seq)
		c.IssuedAt = issued
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.AppendCommand(ctx, func(seq uint64) (store.Command, error) { return command(seq), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordResults(ctx, []store.Result{
		{Seq: c.Seq, AgentID: "t1", Status: "ok"},
		{Seq: c.Seq, AgentID: "t4", Status: "ok"},
		{Seq: c.Seq, AgentID: "t5", Status: "error"},
		{Seq: c.Seq, AgentID: "t6", Status: "unsupported"}, // reported, not targeted
		{Seq: other.Seq, AgentID: "t2", Status: "ok"},
		{Seq: other.Seq, AgentID: "t7", Status: "ok"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAgent(ctx, "t4", issued); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAgent(ctx, "t5", issued); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		target  store.Target
		targets string
		pending int
	}{
		{"all", store.Target{All: true}, "t1 t2 t6 t7", 2},
		{"group-web", store.Target{Groups: []string{"web"}}, "t1 t7", 1},
		{"groups", store.Target{Groups: []string{"db", "nope"}}, "t2 t7", 2},
		{"agents", store.Target{Agents: []string{"t2", "t3", "t4", "t5", "nobody"}}, "t2", 1},
		{"groups-and-agents", store.Target{Groups: []string{"db"}, Agents: []string{"t1", "t7"}}, "t1 t2 t7", 2},
		{"none", store.Target{}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Progress(ctx, c.Seq, tc.target, issued)
			if want := (store.Progress{OK: 2, Failed: 2, Pending: tc.pending}); err != nil || p != want {
				t.Errorf("Progress = %+v, %v; want %+v", p, err, want)
			}
			var got []string
			err = s.Targets(ctx, tc.target, issued, func(id, host string) error {
				if host != "h"+id[1:] {
					t.Errorf("Targets: agent %s with hostname %q", id, host)
				}
				got = append(got, id)
				return nil
			})
			if want := strings.Fields(tc.targets); err != nil || !slices.Equal(got, want) {
				t.Errorf("Targets = %v, %v; want %v", got, err, want)
			}
		})
	}
	if p, err := s.Progress(ctx, other.Seq, store.Target{Groups: []string{"db"}}, issued.Add(time.Hour)); err != nil || p != (store.Progress{OK: 2}) {
		t.Errorf("Progress(other) = %+v, %v; want 2 ok, none pending", p, err)
	}
	if p, err := s.Progress(ctx, 99, store.Target{All: true}, issued); err != nil || p != (store.Progress{Pending: 4}) {
		t.Errorf("Progress(unknown command) = %+v, %v; want 4 pending", p, err)
	}
	stop := errors.New("enough")
	n := 0
	if err := s.Targets(ctx, store.Target{All: true}, issued, func(string, string) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Targets whose fn fails = %v after %d calls", err, n)
	}
}

func testAgentResults(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"r", "other"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, s, 5)
	var rs []store.Result
	for _, seq := range []uint64{1, 2, 4, 5} {
		rs = append(rs, store.Result{Seq: seq, AgentID: "r", Status: "ok", Output: fmt.Sprint(seq), ExecutedAt: t0, ReceivedAt: t0.Add(time.Duration(seq))})
	}
	rs = append(rs, store.Result{Seq: 3, AgentID: "other", Status: "ok"})
	if err := s.RecordResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		agent string
		after uint64
		limit int
		want  []uint64
	}{
		{"r", 0, 10, []uint64{5, 4, 2, 1}},
		{"r", 0, 2, []uint64{5, 4}},
		{"r", 2, 10, []uint64{5, 4}},
		{"r", 1, 3, []uint64{5, 4, 2}},
		{"r", 4, 1, []uint64{5}},
		{"r", 5, 10, nil},
		{"r", 0, 0, nil},
		{"r", 0, -1, nil},
		{"r", math.MaxUint64, 10, nil},
		{"other", 0, 10, []uint64{3}},
		{"nobody", 0, 10, nil},
	} {
		got, err := s.AgentResults(ctx, tc.agent, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("AgentResults(%s, %d, %d): %v", tc.agent, tc.after, tc.limit, err)
		}
		var seqs []uint64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
			if r.AgentID != tc.agent {
				t.Errorf("AgentResults(%s) returned agent %s's result", tc.agent, r.AgentID)
			}
			if tc.agent == "r" {
				if d := resultDiff(rs[slices.IndexFunc(rs, func(x store.Result) bool { return x.Seq == r.Seq && x.AgentID == "r" })], r); d != "" {
					t.Errorf("AgentResults result %d: %s", r.Seq, d)
				}
			}
		}
		if !slices.Equal(seqs, tc.want) {
			t.Errorf("AgentResults(%s, %d, %d) = %v, want %v", tc.agent, tc.after, tc.limit, seqs, tc.want)
		}
	}
}

func testQueryDetections(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	at := func(h int) time.Time { return fleetNow.Add(time.Duration(h) * time.Hour) }
	var all []store.Detection
	for i, sc := range []struct {
		agent string
		ds    []store.Detection
	}{
		{"a", []store.Detection{{Path: "/1", Signature: "Win.Trojan.Agent", FoundAt: at(-48)}, {Path: "/2", Signature: "Eicar-Test", FoundAt: at(-2)}}},
		{"b", []store.Detection{{Path: "/3", Signature: "EICAR-Test", FoundAt: at(-2)}, {Path: "/4", Signature: "Linux.Miner", FoundAt: at(-30)}}},
		{"a", []store.Detection{{Path: "/5", Signature: "eicar", FoundAt: at(-1)}, {Path: "/6", Signature: "Other", FoundAt: at(-24)}, {Path: "/7", Signature: "Old"}}},
	} {
		id, err := s.RecordScan(ctx, store.Scan{AgentID: sc.agent, ReportID: fmt.Sprint(i), Detections: sc.ds})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range sc.ds {
			d.AgentID, d.ScanID = sc.agent, id
			all = append(all, d)
		}
	}
	stored, err := s.Detections(ctx, "", 100)
	if err != nil || len(stored) != len(all) {
		t.Fatalf("Detections = %d, %v", len(stored), err)
	}
	idOf := map[string]int64{}
	for _, d := range stored {
		idOf[d.Path] = d.ID
	}
	// Newest first, by FoundAt then ID: /3 and /2 tie in time, /3 has
	// the greater ID; /7 found at the zero time is the oldest.
	for _, tc := range []struct {
		q    store.DetectionQuery
		want string
	}{
		{store.DetectionQuery{}, "/5 /3 /2 /6 /4 /1 /7"},
		{store.DetectionQuery{Limit: 2}, "/5 /3"},
		{store.DetectionQuery{AgentID: "a"}, "/5 /2 /6 /1 /7"},
		{store.DetectionQuery{AgentID: "nobody"}, ""},
		{store.DetectionQuery{Signature: "eIcAr"}, "/5 /3 /2"},
		{store.DetectionQuery{Signature: "eicar", AgentID: "b"}, "/3"},
		{store.DetectionQuery{Since: at(-24)}, "/5 /3 /2 /6"},
		{store.DetectionQuery{Since: at(-24).Add(time.Nanosecond)}, "/5 /3 /2"},
		{store.DetectionQuery{Until: at(-2)}, "/6 /4 /1 /7"},
		{store.DetectionQuery{Since: at(-30), Until: at(-1), Limit: 2}, "/3 /2"},
		{store.DetectionQuery{Since: at(-30), Until: at(-1), AgentID: "a", Signature: "T"}, "/2 /6"},
	} {
		var got []string
		err := s.QueryDetections(ctx, tc.q, func(d store.Detection) error {
			got = append(got, d.Path)
			if d.ID != idOf[d.Path] {
				t.Errorf("QueryDetections: %s has ID %d, want %d", d.Path, d.ID, idOf[d.Path])
			}
			return nil
		})
		if want := strings.Fields(tc.want); err != nil || !slices.Equal(got, want) {
			t.Errorf("QueryDetections(%+v) = %v, %v; want %v", tc.q, got, err, want)
		}
	}
	// Whole detections come back.
	err = s.QueryDetections(ctx, store.DetectionQuery{AgentID: "b", Limit: 1}, func(d store.Detection) error {
		if d.Path != "/3" || d.Signature != "EICAR-Test" || d.AgentID != "b" || d.ScanID == 0 || !sameTime(at(-2), d.FoundAt) {
			t.Errorf("QueryDetections returned %+v", d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	if err := s.QueryDetections(ctx, store.DetectionQuery{}, func(store.Detection) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("QueryDetections whose fn fails = %v", err)
	}
	for _, tc := range []struct {
		since time.Time
		want  int
	}{
		{time.Time{}, 7},
		{at(-24), 4},
		{at(-24).Add(time.Nanosecond), 3},
		{at(-1), 1},
		{at(0), 0},
		{at(-100), 6},
	} {
		if n, err := s.CountDetections(ctx, tc.since); err != nil || n != tc.want {
			t.Errorf("CountDetections(%v) = %d, %v; want %d", tc.since, n, err, tc.want)
		}
	}
}

func testFleetEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	f, err := s.Fleet(ctx, fleetClock)
	if err != nil || f.Total != 0 || f.Online+f.Late+f.Missing+f.Revoked != 0 || len(f.ByDefs)+len(f.ByVersion)+len(f.ByOS)+len(f.ByGroup) != 0 {
		t.Errorf("Fleet() of an empty store = %+v, %v", f, err)
	}
	if n, err := s.CountAgents(ctx, store.AgentFilter{}); err != nil || n != 0 {
		t.Errorf("CountAgents() of an empty store = %d, %v", n, err)
	}
	if ids := listIDs(t, s, store.AgentQuery{Offset: 5000, Limit: 10}); len(ids) != 0 {
		t.Errorf("ListAgents() of an empty store = %v", ids)
	}
	if n, err := s.CountDetections(ctx, time.Time{}); err != nil || n != 0 {
		t.Errorf("CountDetections() of an empty store = %d, %v", n, err)
	}
}
