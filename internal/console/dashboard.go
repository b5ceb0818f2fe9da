package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// versionCount is one definitions version and the agents on it.
type versionCount struct {
	Version string
	Count   int
	URL     string
}

type dashboardPage struct {
	Total, Online, Late, Missing, Revoked int
	Newest                                string
	OnNewest                              int
	Share                                 string // of all agents, on Newest
	Versions                              []versionCount
	Det24h, Det7d                         int
	InFlight                              []cmdSummary
}

func (c *Console) handleDashboard(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	fl, err := c.cfg.Store.Fleet(ctx, c.clock())
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	p := dashboardPage{Total: fl.Total, Online: fl.Online, Late: fl.Late, Missing: fl.Missing, Revoked: fl.Revoked}
	for v, n := range fl.ByDefs {
		if v != "" && (p.Newest == "" || compareVersions(v, p.Newest) > 0) {
			p.Newest = v
		}
		q := v
		if q == "" {
			q = noDefs
		}
		p.Versions = append(p.Versions, versionCount{Version: q, Count: n, URL: "/agents?" + url.Values{"defs": {q}}.Encode()})
	}
	if p.Newest != "" {
		p.OnNewest = fl.ByDefs[p.Newest]
	}
	if p.Total > 0 {
		p.Share = fmt.Sprintf("%d%%", p.OnNewest*100/p.Total)
	}
	slices.SortFunc(p.Versions, func(a, b versionCount) int { return -compareVersions(a.Version, b.Version) })

	now := c.now()
	if p.Det24h, err = c.cfg.Store.CountDetections(ctx, now.Add(-24*time.Hour)); err == nil {
		p.Det7d, err = c.cfg.Store.CountDetections(ctx, now.Add(-7*24*time.Hour))
	}
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if p.InFlight, err = c.summaries(ctx, listLimit, true); err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	c.render(w, r, http.StatusOK, "dashboard", &s, "Dashboard", p)
}
