package console

import (
	"errors"
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

// detections calls fn with the detections the filters match (at most
// limit when limit > 0), newest first, each with its agent's hostname.
func (c *Console) detections(r *http.Request, limit int, fn func(detRow) error) (detFilter, error) {
	f, err := parseDetFilter(r.URL.Query(), c.now())
	if err != nil {
		return f, err
	}
	ctx := r.Context()
	host := map[string]string{}
	q := store.DetectionQuery{AgentID: f.Agent, Signature: f.Sig, Since: f.since, Until: f.until, Limit: limit}
	err = c.cfg.Store.QueryDetections(ctx, q, func(d store.Detection) error {
		h, ok := host[d.AgentID]
		if !ok {
			// An agent removed since is not found: its detections stay.
			if a, err := c.cfg.Store.Agent(ctx, d.AgentID); err == nil {
				h = a.Hostname
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			host[d.AgentID] = h
		}
		return fn(detRow{Detection: d, Hostname: h})
	})
	if err != nil {
		return f, storeError{err}
	}
	return f, nil
}

type storeError struct{ error }

func (c *Console) handleDetections(w http.ResponseWriter, r *http.Request, s session) {
	var rows []detRow
	f, err := c.detections(r, detectionsShown+1, func(d detRow) error {
		rows = append(rows, d)
		return nil
	})
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

// handleDetectionsCSV streams every detection the filters match.
func (c *Console) handleDetectionsCSV(w http.ResponseWriter, r *http.Request, s session) {
	if _, err := parseDetFilter(r.URL.Query(), c.now()); err != nil {
		c.failQuery(w, r, s, err)
		return
	}
	cw := csvOut(w, "detections.csv")
	writeCSV(cw, "found_at", "agent_id", "hostname", "path", "signature", "sha256", "defs_version", "quarantine", "access", "pid", "process", "blocked")
	_, err := c.detections(r, 0, func(d detRow) error {
		return writeCSV(cw, when(d.FoundAt), d.AgentID, d.Hostname, d.Path, d.Signature, d.SHA256, d.DefsVer, d.Quarantine,
			d.Access, strconv.Itoa(d.PID), d.Process, strconv.FormatBool(d.Blocked))
	})
	if err != nil {
		c.log.Error("console: detections CSV", "err", err)
		panic(http.ErrAbortHandler)
	}
	cw.Flush()
}
