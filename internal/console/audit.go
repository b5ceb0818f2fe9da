package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/store"
)

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

// errEnough stops a read that has what it needs.
var errEnough = errors.New("enough")

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

// audited calls fn with the audit events the filters match, newest
// first, at most limit when limit > 0. The store filters by actor,
// action and time; the outcome is filtered here.
func (c *Console) audited(r *http.Request, limit int, fn func(auth.Event) error) (auditFilter, error) {
	f, err := parseAuditFilter(r.URL.Query(), c.now())
	if err != nil {
		return f, err
	}
	q := store.AuditQuery{Actor: f.Actor, Action: f.Action, Since: f.since, Until: f.until}
	if f.Outcome == "" {
		q.Limit = limit
	}
	n := 0
	err = c.cfg.AuditLog.AuditEvents(r.Context(), q, func(e auth.Event) error {
		if (f.Outcome == "ok" && !e.OK) || (f.Outcome == "refused" && e.OK) {
			return nil
		}
		if limit > 0 && n == limit {
			return errEnough
		}
		n++
		return fn(e)
	})
	if err != nil && !errors.Is(err, errEnough) {
		return f, storeError{err}
	}
	return f, nil
}

func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request, s session) {
	var rows []auth.Event
	f, err := c.audited(r, auditShown+1, func(e auth.Event) error {
		rows = append(rows, e)
		return nil
	})
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

// handleAuditCSV streams every audit event the filters match.
func (c *Console) handleAuditCSV(w http.ResponseWriter, r *http.Request, s session) {
	if _, err := parseAuditFilter(r.URL.Query(), c.now()); err != nil {
		c.failQuery(w, r, s, err)
		return
	}
	cw := csvOut(w, "audit.csv")
	writeCSV(cw, "time", "actor", "addr", "action", "target", "detail", "ok")
	_, err := c.audited(r, 0, func(e auth.Event) error {
		return writeCSV(cw, when(e.Time), e.Actor, e.Addr, e.Action, e.Target, e.Detail, strconv.FormatBool(e.OK))
	})
	if err != nil {
		c.log.Error("console: audit CSV", "err", err)
		panic(http.ErrAbortHandler)
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
