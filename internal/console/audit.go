package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/auth"
)

// auditLimit bounds the audit events the console reads at once, newest
// first; the audit page and its CSV filter those.
const auditLimit = 100000

// auditFilter is the audit page's query.
type auditFilter struct {
	Actor, Action, Outcome, Since, Until string
	since, until                         time.Time
}

// auditActions are the actions the filter offers.
var auditActions = []string{
	auth.EventLogin, auth.EventLogout, auth.EventCommand, auth.EventRestore, auth.EventDenied,
	auth.EventUserAdd, auth.EventUserRemove, auth.EventUserPassword, auth.EventUserRole,
	auth.EventTokenAdd, auth.EventTokenRemove, auth.EventSecretRotate,
}

func parseAuditFilter(q url.Values, now time.Time) (auditFilter, error) {
	f := auditFilter{Actor: strings.TrimSpace(q.Get("actor")), Action: q.Get("action"), Outcome: q.Get("outcome"), Since: q.Get("since"), Until: q.Get("until")}
	if f.Action != "" && !contains(auditActions, f.Action) {
		return f, fmt.Errorf("action %q: want one of %s", f.Action, strings.Join(auditActions, ", "))
	}
	if f.Outcome != "" && f.Outcome != "ok" && f.Outcome != "refused" {
		return f, fmt.Errorf("outcome %q: want ok or refused", f.Outcome)
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (f auditFilter) match(e auth.Event) bool {
	switch {
	case f.Actor != "" && e.Actor != f.Actor,
		f.Action != "" && e.Action != f.Action,
		f.Outcome == "ok" && !e.OK,
		f.Outcome == "refused" && e.OK,
		!f.since.IsZero() && e.Time.Before(f.since),
		!f.until.IsZero() && e.Time.After(f.until):
		return false
	}
	return true
}

func (f auditFilter) query() string {
	v := url.Values{}
	for k, s := range map[string]string{"actor": f.Actor, "action": f.Action, "outcome": f.Outcome, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

type auditPage struct {
	F       auditFilter
	Actions []string
	Rows    []auth.Event
	More    bool
	Limit   int
	CSV     string
}

// auditShown bounds the rows of the audit page (the CSV has them all).
const auditShown = 1000

func (c *Console) audited(r *http.Request) (auditFilter, []auth.Event, error) {
	f, err := parseAuditFilter(r.URL.Query(), c.now())
	if err != nil {
		return f, nil, err
	}
	es, err := c.cfg.AuditLog.AuditEvents(r.Context(), auditLimit)
	if err != nil {
		return f, nil, storeError{err}
	}
	var rows []auth.Event
	for _, e := range es {
		if f.match(e) {
			rows = append(rows, e)
		}
	}
	return f, rows, nil
}

func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request, s session) {
	f, rows, err := c.audited(r)
	if err != nil {
		c.failQuery(w, r, s, err)
		return
	}
	p := auditPage{F: f, Actions: auditActions, Rows: rows, Limit: auditShown, CSV: "/audit.csv"}
	if q := f.query(); q != "" {
		p.CSV += "?" + q
	}
	if len(rows) > auditShown {
		p.Rows, p.More = rows[:auditShown], true
	}
	c.render(w, r, http.StatusOK, "audit", &s, "Audit", p)
}

func (c *Console) handleAuditCSV(w http.ResponseWriter, r *http.Request, s session) {
	_, rows, err := c.audited(r)
	if err != nil {
		c.failQuery(w, r, s, err)
		return
	}
	cw := csvOut(w, "audit.csv")
	writeCSV(cw, "time", "actor", "addr", "action", "target", "detail", "ok")
	for _, e := range rows {
		if err := writeCSV(cw, when(e.Time), e.Actor, e.Addr, e.Action, e.Target, e.Detail, strconv.FormatBool(e.OK)); err != nil {
			return
		}
	}
	cw.Flush()
}

// failQuery answers a list's error: 503 for the store, 400 for the query.
func (c *Console) failQuery(w http.ResponseWriter, r *http.Request, s session, err error) {
	if _, ok := err.(storeError); ok {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	c.fail(w, r, s, http.StatusBadRequest, "%v", err)
}
