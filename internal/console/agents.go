package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Agent statuses, from the time since an agent was last seen (the
// store's: it filters and counts them).
const (
	StatusOnline  = store.StatusOnline  // seen within two check-in intervals
	StatusLate    = store.StatusLate    // seen within MissingAfter, not online
	StatusMissing = store.StatusMissing // silent for more than MissingAfter
	StatusRevoked = store.StatusRevoked // its credential was revoked
)

// MissingAfter is how long an agent is silent before it is missing.
const MissingAfter = 7 * 24 * time.Hour

// clock places the lines between statuses now.
func (c *Console) clock() store.Clock {
	return store.Clock{Now: c.now(), OnlineWithin: 2 * c.cfg.CheckInInterval, MissingAfter: MissingAfter}
}

// agentRow is an agent as the lists show it.
type agentRow struct {
	store.Agent
	Status string
}

// compareVersions orders versions naturally (1.9 before 1.10), as the
// store sorts them.
func compareVersions(a, b string) int {
	return strings.Compare(store.NaturalKey(a), store.NaturalKey(b))
}

// noDefs is the definitions filter's value for agents that reported none.
const noDefs = "none"

// agentFilter is the agents list's query: search, filters, sort, page.
type agentFilter struct {
	Q, Group, Status, OS, Version, Defs, Det string
	Sort, Dir                                string
	Page, Per                                int
}

// agentColumns are the sortable columns.
var agentColumns = []struct{ Key, Label string }{
	{"id", "ID"}, {"hostname", "Hostname"}, {"status", "Status"}, {"os", "OS"}, {"version", "Agent"},
	{"defs", "Definitions"}, {"groups", "Groups"}, {"lastseen", "Last seen"}, {"detections", "Detections"},
}

const (
	defaultPer = 50
	maxPer     = 500
)

func parseAgentFilter(q url.Values) (agentFilter, error) {
	f := agentFilter{
		Q: strings.TrimSpace(q.Get("q")), Group: q.Get("group"), Status: q.Get("status"), OS: q.Get("os"),
		Version: q.Get("version"), Defs: q.Get("defs"), Det: q.Get("detections"),
		Sort: q.Get("sort"), Dir: q.Get("dir"), Page: 1, Per: defaultPer,
	}
	switch f.Status {
	case "", StatusOnline, StatusLate, StatusMissing, StatusRevoked:
	default:
		return f, fmt.Errorf("status %q: want online, late, missing or revoked", f.Status)
	}
	switch f.Det {
	case "", "yes", "no":
	default:
		return f, fmt.Errorf("detections %q: want yes or no", f.Det)
	}
	if f.Sort == "" {
		f.Sort = "id"
	}
	if !slices.ContainsFunc(agentColumns, func(c struct{ Key, Label string }) bool { return c.Key == f.Sort }) {
		return f, fmt.Errorf("sort %q: want one of id, hostname, status, os, version, defs, groups, lastseen, detections", f.Sort)
	}
	switch f.Dir {
	case "":
		f.Dir = "asc"
	case "asc", "desc":
	default:
		return f, fmt.Errorf("dir %q: want asc or desc", f.Dir)
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return f, fmt.Errorf("page %q: want a number from 1", p)
		}
		f.Page = n
	}
	if p := q.Get("per"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > maxPer {
			return f, fmt.Errorf("per %q: want a number from 1 to %d", p, maxPer)
		}
		f.Per = n
	}
	return f, nil
}

// values is the filter as a URL query, defaults left out.
func (f agentFilter) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("q", f.Q)
	set("group", f.Group)
	set("status", f.Status)
	set("os", f.OS)
	set("version", f.Version)
	set("defs", f.Defs)
	set("detections", f.Det)
	if f.Sort != "id" {
		set("sort", f.Sort)
	}
	if f.Dir != "asc" {
		set("dir", f.Dir)
	}
	if f.Page > 1 {
		v.Set("page", strconv.Itoa(f.Page))
	}
	if f.Per != defaultPer {
		v.Set("per", strconv.Itoa(f.Per))
	}
	return v
}

func (f agentFilter) url(path string) string {
	if q := f.values().Encode(); q != "" {
		return path + "?" + q
	}
	return path
}

// query is the store's query for the filter's page (all pages when all).
func (f agentFilter) query(clock store.Clock, all bool) store.AgentQuery {
	q := store.AgentQuery{
		AgentFilter: store.AgentFilter{Search: f.Q, Group: f.Group, OS: f.OS, Version: f.Version, Status: f.Status, Clock: clock},
		Sort:        f.Sort,
		Desc:        f.Dir == "desc",
	}
	if f.Defs == noDefs {
		q.NoDefs = true
	} else {
		q.DefsVer = f.Defs
	}
	switch f.Det {
	case "yes", "no":
		yes := f.Det == "yes"
		q.Detected = &yes
	}
	if !all {
		q.Offset, q.Limit = (f.Page-1)*f.Per, f.Per
	}
	return q
}

// facetsAge is how long the agents list reuses the fleet's sums for the
// values its filters offer (the groups, OSes and versions there are),
// which change rarely, rather than summing the fleet at each load.
const facetsAge = 10 * time.Second

// facetFleet returns the fleet's sums for the filters' values: read
// within facetsAge, or now.
func (c *Console) facetFleet(ctx context.Context, clock store.Clock) (store.Fleet, error) {
	c.facetsMu.Lock()
	fl, at := c.facets, c.facetsAt
	c.facetsMu.Unlock()
	if now := c.now(); !at.IsZero() && now.Sub(at) < facetsAge && !now.Before(at) {
		return fl, nil
	}
	fl, err := c.cfg.Store.Fleet(ctx, clock)
	if err != nil {
		return fl, err
	}
	c.facetsMu.Lock()
	c.facets, c.facetsAt = fl, clock.Now
	c.facetsMu.Unlock()
	return fl, nil
}

// facets are the values the filters offer, from the fleet's sums.
func facets(fl store.Fleet) (groups, oses, versions, defs []string) {
	keys := func(m map[string]int) []string {
		var out []string
		for k := range m {
			if k != "" {
				out = append(out, k)
			}
		}
		return out
	}
	groups, oses, versions, defs = keys(fl.ByGroup), keys(fl.ByOS), keys(fl.ByVersion), keys(fl.ByDefs)
	slices.Sort(groups)
	slices.Sort(oses)
	slices.SortFunc(versions, compareVersions)
	slices.SortFunc(defs, func(a, b string) int { return -compareVersions(a, b) })
	return
}

type column struct {
	Label, URL string
	Arrow      string // "▲" or "▼" on the sorted column
}

type agentsPage struct {
	F            agentFilter
	Rows         []agentRow
	Matching     int
	From, To     int
	Page, Pages  int
	Columns      []column
	First, Prev  string
	Next, Last   string
	CSV          string
	Statuses     []string
	Groups, OSes []string
	Versions     []string
	DefsVersions []string
	Commands     []command.Spec
	// Filters is the query of the filters alone, for "all N matching".
	Filters string
}

func (c *Console) handleAgents(w http.ResponseWriter, r *http.Request, s session) {
	f, err := parseAgentFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, clock := r.Context(), c.clock()
	p := agentsPage{F: f, Statuses: []string{StatusOnline, StatusLate, StatusMissing, StatusRevoked}, Commands: command.Specs()}
	// The filters' values, the count and the page are three reads of
	// the store, made at once.
	q := f.query(clock, false)
	var (
		wg                      sync.WaitGroup
		fl                      store.Fleet
		flErr, countErr, rowErr error
	)
	wg.Go(func() { fl, flErr = c.facetFleet(ctx, clock) })
	wg.Go(func() { p.Matching, countErr = c.cfg.Store.CountAgents(ctx, q.AgentFilter) })
	list := func() {
		p.Rows = p.Rows[:0]
		rowErr = c.cfg.Store.ListAgents(ctx, q, func(a store.Agent) error {
			p.Rows = append(p.Rows, agentRow{Agent: a, Status: clock.Status(a)})
			return nil
		})
	}
	wg.Go(list)
	wg.Wait()
	if err := errors.Join(flErr, countErr, rowErr); err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	p.Groups, p.OSes, p.Versions, p.DefsVersions = facets(fl)
	p.Pages = max(1, (p.Matching+f.Per-1)/f.Per)
	p.Page = min(f.Page, p.Pages)
	if off := (p.Page - 1) * f.Per; off != q.Offset {
		// A page past the end (a bookmark of a list that shrank): the
		// last page.
		q.Offset = off
		if list(); rowErr != nil {
			c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", rowErr)
			return
		}
	}
	p.From, p.To = min(q.Offset+1, p.Matching), q.Offset+len(p.Rows)
	at := func(n int) string { g := f; g.Page = n; return g.url("/agents") }
	if p.Page > 1 {
		p.First, p.Prev = at(1), at(p.Page-1)
	}
	if p.Page < p.Pages {
		p.Next, p.Last = at(p.Page+1), at(p.Pages)
	}
	for _, col := range agentColumns {
		g := f
		g.Page = 1
		g.Sort, g.Dir = col.Key, "asc"
		cl := column{Label: col.Label}
		if f.Sort == col.Key {
			cl.Arrow = "▲"
			if f.Dir == "asc" {
				g.Dir = "desc"
			} else {
				cl.Arrow = "▼"
			}
		}
		cl.URL = g.url("/agents")
		p.Columns = append(p.Columns, cl)
	}
	g := f
	g.Page, g.Per = 1, defaultPer
	p.CSV = g.url("/agents.csv")
	g.Sort, g.Dir = "id", "asc"
	p.Filters = g.values().Encode()
	c.render(w, r, http.StatusOK, "agents", &s, "Agents", p)
}

// handleAgentsCSV streams exactly the agents the filters match, in the
// list's order, every page, as the store reads them.
func (c *Console) handleAgentsCSV(w http.ResponseWriter, r *http.Request, s session) {
	f, err := parseAgentFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "%v", err)
		return
	}
	clock := c.clock()
	cw := csvOut(w, "agents.csv")
	rc := http.NewResponseController(w)
	writeCSV(cw, "id", "hostname", "status", "os", "arch", "version", "defs_version", "groups", "last_seen", "detections")
	n := 0
	err = c.cfg.Store.ListAgents(r.Context(), f.query(clock, true), func(a store.Agent) error {
		if err := writeCSV(cw, a.ID, a.Hostname, clock.Status(a), a.OS, a.Arch, a.Version, a.DefsVer,
			strings.Join(a.Groups, " "), when(a.LastSeen), strconv.Itoa(a.Detections)); err != nil {
			return err
		}
		if n++; n%500 == 0 {
			cw.Flush()
			rc.Flush()
		}
		return nil
	})
	if err != nil {
		// The header is sent: all that can be done is to cut the file
		// short, which a client sees as an incomplete body.
		c.log.Error("console: agents CSV", "err", err)
		panic(http.ErrAbortHandler)
	}
	cw.Flush()
}

type historyRow struct {
	Seq      uint64
	Name     string
	Args     map[string]string
	IssuedAt time.Time
	Status   string
	Output   string
	Executed time.Time
}

// updateString is an agent's last definitions update in a few words, as
// vigil agents writes it: "2026120203, 41 KB of 22 MB (2 deltas)", with
// the version it replaced when it reported one.
func updateString(u *store.UpdateState) string {
	s := api.UpdateState{To: u.To, Bytes: u.Bytes, FullBytes: u.FullBytes, Deltas: u.Deltas}.Summary()
	if u.From != "" {
		s += ", from " + u.From
	}
	return s
}

type agentPage struct {
	A          agentRow
	History    []historyRow
	Detections []store.Detection
	Quarantine []store.Detection
}

// historyLimit is how many of the newest commands an agent's page looks
// through for its history; agentDetections how many of its newest
// detections it shows (the detections page has them all).
const (
	historyLimit    = 50
	agentDetections = 500
)

func (c *Console) handleAgent(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("id")
	if !wire.ValidName(id) {
		c.fail(w, r, s, http.StatusBadRequest, "%q is not an agent id", id)
		return
	}
	ctx := r.Context()
	a, err := c.cfg.Store.Agent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, s, http.StatusNotFound, "no agent %s", id)
		return
	} else if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	p := agentPage{A: agentRow{Agent: a, Status: c.clock().Status(a)}}
	err = c.cfg.Store.QueryDetections(ctx, store.DetectionQuery{AgentID: id, Limit: agentDetections}, func(d store.Detection) error {
		p.Detections = append(p.Detections, d)
		return nil
	})
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	seenQ := map[string]bool{}
	for _, d := range p.Detections {
		if d.Quarantine != "" && !seenQ[d.Quarantine] {
			seenQ[d.Quarantine] = true
			p.Quarantine = append(p.Quarantine, d)
		}
	}
	cs, err := c.cfg.Store.RecentCommands(ctx, historyLimit)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	results := map[uint64]store.Result{}
	if len(cs) > 0 {
		rs, err := c.cfg.Store.AgentResults(ctx, a.ID, cs[len(cs)-1].Seq-1, historyLimit)
		if err != nil {
			c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		for _, x := range rs {
			results[x.Seq] = x
		}
	}
	for _, sc := range cs {
		cmd, err := decodeCommand(sc)
		if err != nil {
			continue
		}
		if !cmd.Target.Matches(a.ID, a.Groups) {
			continue
		}
		h := historyRow{Seq: sc.Seq, Name: cmd.Name, Args: cmd.Args, IssuedAt: sc.IssuedAt, Status: "pending"}
		if x, ok := results[sc.Seq]; ok {
			h.Status, h.Output, h.Executed = x.Status, x.Output, x.ExecutedAt
		} else if !a.EnrolledAt.Before(sc.IssuedAt) {
			continue // enrolled after it: the agent starts past it
		}
		p.History = append(p.History, h)
	}
	c.render(w, r, http.StatusOK, "agent", &s, "Agent "+a.Hostname, p)
}
