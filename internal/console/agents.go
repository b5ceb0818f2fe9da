package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Agent statuses, from the time since an agent was last seen.
const (
	StatusOnline  = "online"  // seen within two check-in intervals
	StatusLate    = "late"    // seen within MissingAfter, not online
	StatusMissing = "missing" // silent for more than MissingAfter
	StatusRevoked = "revoked" // its credential was revoked
)

// MissingAfter is how long an agent is silent before it is missing.
const MissingAfter = 7 * 24 * time.Hour

// detectionLimit bounds the detections the console reads at once (the
// newest first): the per-agent counts, the "has detections" filter, the
// dashboard's figures and the detections list cover these.
const detectionLimit = 100000

func (c *Console) status(a store.Agent, now time.Time) string {
	silent := now.Sub(a.LastSeen)
	switch {
	case !a.Revoked.IsZero():
		return StatusRevoked
	case silent <= 2*c.cfg.CheckInInterval:
		return StatusOnline
	case silent > MissingAfter:
		return StatusMissing
	}
	return StatusLate
}

// agentRow is an agent as the lists show it.
type agentRow struct {
	store.Agent
	Status     string
	Detections int
}

// fleet reads every agent with its status and detection count.
func (c *Console) fleet(ctx context.Context) ([]agentRow, error) {
	as, err := c.cfg.Store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := c.cfg.Store.Detections(ctx, "", detectionLimit)
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	for _, d := range ds {
		count[d.AgentID]++
	}
	now := c.now()
	rows := make([]agentRow, len(as))
	for i, a := range as {
		rows[i] = agentRow{Agent: a, Status: c.status(a, now), Detections: count[a.ID]}
	}
	return rows, nil
}

// compareVersions orders versions: numerically when both are digits
// (definitions versions), else as strings.
func compareVersions(a, b string) int {
	if allDigits(a) && allDigits(b) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return cmp.Compare(len(a), len(b))
		}
	}
	return strings.Compare(a, b)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
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

func (f agentFilter) match(a agentRow) bool {
	if f.Q != "" {
		q := strings.ToLower(f.Q)
		if !strings.Contains(strings.ToLower(a.Hostname), q) && !strings.Contains(strings.ToLower(a.ID), q) {
			return false
		}
	}
	switch {
	case f.Group != "" && !slices.Contains(a.Groups, f.Group),
		f.Status != "" && a.Status != f.Status,
		f.OS != "" && a.OS != f.OS,
		f.Version != "" && a.Version != f.Version,
		f.Defs == noDefs && a.DefsVer != "",
		f.Defs != "" && f.Defs != noDefs && a.DefsVer != f.Defs,
		f.Det == "yes" && a.Detections == 0,
		f.Det == "no" && a.Detections > 0:
		return false
	}
	return true
}

// apply filters and sorts rows (in place) and returns the matches.
func (f agentFilter) apply(rows []agentRow) []agentRow {
	out := rows[:0]
	for _, a := range rows {
		if f.match(a) {
			out = append(out, a)
		}
	}
	by := func(a, b agentRow) int {
		switch f.Sort {
		case "hostname":
			return strings.Compare(a.Hostname, b.Hostname)
		case "status":
			return strings.Compare(a.Status, b.Status)
		case "os":
			return strings.Compare(a.OS, b.OS)
		case "version":
			return compareVersions(a.Version, b.Version)
		case "defs":
			return compareVersions(a.DefsVer, b.DefsVer)
		case "groups":
			return slices.Compare(a.Groups, b.Groups)
		case "lastseen":
			return a.LastSeen.Compare(b.LastSeen)
		case "detections":
			return cmp.Compare(a.Detections, b.Detections)
		}
		return 0
	}
	slices.SortStableFunc(out, func(a, b agentRow) int {
		r := by(a, b)
		if f.Dir == "desc" {
			r = -r
		}
		if r == 0 {
			r = strings.Compare(a.ID, b.ID)
		}
		return r
	})
	return out
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
	rows, err := c.fleet(r.Context())
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	p := agentsPage{F: f, Statuses: []string{StatusOnline, StatusLate, StatusMissing, StatusRevoked}, Commands: command.Specs()}
	seen := map[string]map[string]bool{"g": {}, "o": {}, "v": {}, "d": {}}
	add := func(k, v string, to *[]string) {
		if v != "" && !seen[k][v] {
			seen[k][v] = true
			*to = append(*to, v)
		}
	}
	for _, a := range rows {
		for _, g := range a.Groups {
			add("g", g, &p.Groups)
		}
		add("o", a.OS, &p.OSes)
		add("v", a.Version, &p.Versions)
		add("d", a.DefsVer, &p.DefsVersions)
	}
	slices.Sort(p.Groups)
	slices.Sort(p.OSes)
	slices.SortFunc(p.Versions, compareVersions)
	slices.SortFunc(p.DefsVersions, func(a, b string) int { return -compareVersions(a, b) })

	match := f.apply(rows)
	p.Matching = len(match)
	p.Pages = max(1, (len(match)+f.Per-1)/f.Per)
	p.Page = min(f.Page, p.Pages)
	lo := min((p.Page-1)*f.Per, len(match))
	hi := min(lo+f.Per, len(match))
	p.Rows = match[lo:hi]
	p.From, p.To = lo+1, hi
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
// list's order, every page.
func (c *Console) handleAgentsCSV(w http.ResponseWriter, r *http.Request, s session) {
	f, err := parseAgentFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "%v", err)
		return
	}
	rows, err := c.fleet(r.Context())
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	match := f.apply(rows)
	cw := csvOut(w, "agents.csv")
	rc := http.NewResponseController(w)
	writeCSV(cw, "id", "hostname", "status", "os", "arch", "version", "defs_version", "groups", "last_seen", "detections")
	for i, a := range match {
		if err := writeCSV(cw, a.ID, a.Hostname, a.Status, a.OS, a.Arch, a.Version, a.DefsVer,
			strings.Join(a.Groups, " "), when(a.LastSeen), strconv.Itoa(a.Detections)); err != nil {
			return
		}
		if i%500 == 499 {
			cw.Flush()
			rc.Flush()
		}
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

type agentPage struct {
	A          agentRow
	History    []historyRow
	Detections []store.Detection
	Quarantine []store.Detection
}

// historyLimit is how many of the newest commands an agent's page looks
// through for its history.
const historyLimit = 50

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
	ds, err := c.cfg.Store.Detections(ctx, id, 500)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	p := agentPage{A: agentRow{Agent: a, Status: c.status(a, c.now()), Detections: len(ds)}, Detections: ds}
	seenQ := map[string]bool{}
	for _, d := range ds {
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
	for _, sc := range cs {
		cmd, err := decodeCommand(sc)
		if err != nil {
			continue
		}
		if !cmd.Target.Matches(a.ID, a.Groups) {
			continue
		}
		rs, err := c.cfg.Store.Results(ctx, sc.Seq)
		if err != nil {
			c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		h := historyRow{Seq: sc.Seq, Name: cmd.Name, Args: cmd.Args, IssuedAt: sc.IssuedAt, Status: "pending"}
		if i := slices.IndexFunc(rs, func(x store.Result) bool { return x.AgentID == a.ID }); i >= 0 {
			h.Status, h.Output, h.Executed = rs[i].Status, rs[i].Output, rs[i].ExecutedAt
		} else if !a.EnrolledAt.Before(sc.IssuedAt) {
			continue // enrolled after it: the agent starts past it
		}
		p.History = append(p.History, h)
	}
	c.render(w, r, http.StatusOK, "agent", &s, "Agent "+a.Hostname, p)
}
