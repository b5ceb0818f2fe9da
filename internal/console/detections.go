package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// detFilter is the detections list's query.
type detFilter struct {
	Agent, Sig, Since, Until string
	since, until             time.Time
}

// parseTime reads a filter's time: a duration back from now ("24h"), a
// date ("2026-12-01", midnight UTC) or an RFC 3339 time.
func parseTime(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want a duration back from now (24h), a date (2006-01-02) or an RFC 3339 time", name, s)
}

func parseDetFilter(q url.Values, now time.Time) (detFilter, error) {
	f := detFilter{Agent: q.Get("agent"), Sig: strings.TrimSpace(q.Get("signature")), Since: q.Get("since"), Until: q.Get("until")}
	if f.Agent != "" && !wire.ValidName(f.Agent) {
		return f, fmt.Errorf("agent %q is not an agent id", f.Agent)
	}
	var err error
	if f.since, err = parseTime("since", f.Since, now); err != nil {
		return f, err
	}
	if f.until, err = parseTime("until", f.Until, now); err != nil {
		return f, err
	}
	return f, nil
}

func (f detFilter) match(d store.Detection) bool {
	switch {
	case f.Sig != "" && !strings.Contains(strings.ToLower(d.Signature), strings.ToLower(f.Sig)),
		!f.since.IsZero() && d.FoundAt.Before(f.since),
		!f.until.IsZero() && d.FoundAt.After(f.until):
		return false
	}
	return true
}

func (f detFilter) query() string {
	v := url.Values{}
	for k, s := range map[string]string{"agent": f.Agent, "signature": f.Sig, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

type detRow struct {
	store.Detection
	Hostname string
}

type detectionsPage struct {
	F     detFilter
	Rows  []detRow
	More  bool
	CSV   string
	Limit int
}

// detectionsShown bounds the rows of the detections page (the CSV has
// them all).
const detectionsShown = 1000

func (c *Console) detections(r *http.Request) (detFilter, []detRow, error) {
	f, err := parseDetFilter(r.URL.Query(), c.now())
	if err != nil {
		return f, nil, err
	}
	ds, err := c.cfg.Store.Detections(r.Context(), f.Agent, detectionLimit)
	if err != nil {
		return f, nil, storeError{err}
	}
	as, err := c.cfg.Store.Agents(r.Context())
	if err != nil {
		return f, nil, storeError{err}
	}
	host := make(map[string]string, len(as))
	for _, a := range as {
		host[a.ID] = a.Hostname
	}
	var rows []detRow
	for _, d := range ds {
		if f.match(d) {
			rows = append(rows, detRow{Detection: d, Hostname: host[d.AgentID]})
		}
	}
	return f, rows, nil
}

type storeError struct{ error }

func (c *Console) handleDetections(w http.ResponseWriter, r *http.Request, s session) {
	f, rows, err := c.detections(r)
	if err != nil {
		c.failQuery(w, r, s, err)
		return
	}
	p := detectionsPage{F: f, Rows: rows, CSV: "/detections.csv", Limit: detectionsShown}
	if q := f.query(); q != "" {
		p.CSV += "?" + q
	}
	if len(rows) > detectionsShown {
		p.Rows, p.More = rows[:detectionsShown], true
	}
	c.render(w, r, http.StatusOK, "detections", &s, "Detections", p)
}

func (c *Console) handleDetectionsCSV(w http.ResponseWriter, r *http.Request, s session) {
	_, rows, err := c.detections(r)
	if err != nil {
		c.failQuery(w, r, s, err)
		return
	}
	cw := csvOut(w, "detections.csv")
	writeCSV(cw, "found_at", "agent_id", "hostname", "path", "signature", "sha256", "defs_version", "quarantine", "access", "pid", "process", "blocked")
	for _, d := range rows {
		if err := writeCSV(cw, when(d.FoundAt), d.AgentID, d.Hostname, d.Path, d.Signature, d.SHA256, d.DefsVer, d.Quarantine,
			d.Access, strconv.Itoa(d.PID), d.Process, strconv.FormatBool(d.Blocked)); err != nil {
			return
		}
	}
	cw.Flush()
}
