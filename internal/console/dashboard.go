package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
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
	rows, err := c.fleet(ctx)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	var p dashboardPage
	p.Total = len(rows)
	byDefs := map[string]int{}
	for _, a := range rows {
		byDefs[a.DefsVer]++
		if a.DefsVer != "" && (p.Newest == "" || compareVersions(a.DefsVer, p.Newest) > 0) {
			p.Newest = a.DefsVer
		}
		switch a.Status {
		case StatusOnline:
			p.Online++
		case StatusLate:
			p.Late++
		case StatusMissing:
			p.Missing++
		case StatusRevoked:
			p.Revoked++
		}
	}
	p.OnNewest = byDefs[p.Newest]
	if p.Newest == "" {
		p.OnNewest = 0
	}
	if p.Total > 0 {
		p.Share = fmt.Sprintf("%d%%", p.OnNewest*100/p.Total)
	}
	for v, n := range byDefs {
		q := v
		if q == "" {
			q = noDefs
		}
		p.Versions = append(p.Versions, versionCount{Version: q, Count: n, URL: "/agents?" + url.Values{"defs": {q}}.Encode()})
	}
	slices.SortFunc(p.Versions, func(a, b versionCount) int { return -compareVersions(a.Version, b.Version) })

	ds, err := c.cfg.Store.Detections(ctx, "", detectionLimit)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	now := c.now()
	for _, d := range ds {
		age := now.Sub(d.FoundAt)
		if age < 0 {
			age = 0
		}
		if age <= 24*time.Hour {
			p.Det24h++
		}
		if age <= 7*24*time.Hour {
			p.Det7d++
		}
	}
	agents := make([]store.Agent, len(rows))
	for i := range rows {
		agents[i] = rows[i].Agent
	}
	sums, err := c.summaries(ctx, listLimit, agents)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	for _, x := range sums {
		if x.InFlight() {
			p.InFlight = append(p.InFlight, x)
		}
	}
	c.render(w, r, http.StatusOK, "dashboard", &s, "Dashboard", p)
}
