package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
)

// timer is a one-shot timer that is either armed or not.
type timer struct {
	t  *time.Timer
	on bool
}

func (t *timer) c() <-chan time.Time {
	if !t.on {
		return nil
	}
	return t.t.C
}

func (t *timer) arm(d time.Duration) {
	if t.t == nil {
		t.t = time.NewTimer(d)
	} else {
		t.t.Reset(d)
	}
	t.on = true
}

// armIfOff arms the timer unless it is already armed.
func (t *timer) armIfOff(d time.Duration) {
	if !t.on {
		t.arm(d)
	}
}

func (t *timer) fired() { t.on = false }

// stop disarms the timer.
func (t *timer) stop() {
	if t.on {
		t.t.Stop()
		t.on = false
	}
}

// soonEvery bounds how often news of another epoch (a datagram signed in
// it, a fetch answered from it) brings a check-in forward.
const soonEvery = time.Minute

// fetchDelay leaves time for the server's repeated datagram to arrive
// before fetching over HTTP, then spreads fetches over the window.
const fetchDelay = 250 * time.Millisecond

func (a *Agent) loop(ctx context.Context, datagrams <-chan []byte) error {
	var checkin, fetch, report, update, scheduledScan, upgrade timer
	if !a.revoked {
		checkin.arm(spreadDelay(a.timing.SpreadMillis))
	}
	if a.upd != nil && a.p.UpdateInterval > 0 {
		update.arm(jitter(min(a.p.UpdateInterval, 30*time.Second)))
	}
	if a.upd != nil && a.p.UpgradeInterval > 0 {
		upgrade.arm(jitter(min(a.p.UpgradeInterval, 30*time.Second)))
	}
	if a.p.ScanInterval > 0 && len(a.p.ScanPaths) > 0 {
		scheduledScan.arm(a.p.ScanInterval/2 + rand.N(a.p.ScanInterval/2))
	}
	fetchBackoff := time.Second
	// soon arms a check-in within the spread window, for news of an epoch,
	// at most once per soonEvery: a replayed datagram of an old epoch must
	// not make the fleet check in again and again.
	checkinSoon := false
	var lastSoon time.Time
	soon := func() {
		if !checkinSoon && time.Since(lastSoon) >= soonEvery {
			checkinSoon, lastSoon = true, time.Now()
			checkin.arm(spreadDelay(a.timing.SpreadMillis))
		}
	}
	for {
		select {
		case <-ctx.Done():
			if (len(a.results) > 0 || a.scanPending) && !a.revoked {
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				a.report(sctx)
				cancel()
			}
			return nil
		case b, ok := <-datagrams:
			if !ok {
				return fmt.Errorf("multicast receiver stopped")
			}
			if a.revoked {
				continue
			}
			rs, err := a.core.HandleDatagram(b)
			a.queue(rs)
			if err != nil && err != errOld {
				a.log.Debug("datagram dropped", "err", err)
			}
			if errors.Is(err, errWrongEpoch) {
				// Signed by the server, from another epoch: it may have
				// moved to a new one; the next check-in says.
				soon()
			}
		case <-fetch.c():
			fetch.fired()
			if err := a.catchUp(ctx); err != nil {
				if a.checkRevoked(err) {
					continue
				}
				if errors.Is(err, errWrongEpoch) {
					soon()
				}
				a.log.Warn("fetching missed commands", "err", err, "retry_in", fetchBackoff)
				fetch.arm(jitter(fetchBackoff))
				fetchBackoff = min(2*fetchBackoff, time.Minute)
				continue
			}
			fetchBackoff = time.Second
		case <-checkin.c():
			checkin.fired()
			checkinSoon = false
			if err := a.checkIn(ctx); err != nil {
				if a.checkRevoked(err) {
					continue
				}
				if !api.IsStatus(err, http.StatusUnauthorized) {
					a.log.Warn("check-in failed", "err", err)
				}
				checkin.arm(jitter(min(a.checkInInterval(), 30*time.Second)))
				continue
			}
			a.trialCheckedIn()
			checkin.arm(a.checkInInterval() + spreadDelay(a.timing.SpreadMillis))
			if _, behind := a.core.Behind(); behind {
				fetch.arm(0)
			}
			if len(a.results) > 0 || a.scanPending {
				report.arm(0)
			}
		case <-update.c():
			update.fired()
			select {
			case a.updateReq <- updateReq{}:
			default: // updates are queued already
			}
			update.arm(a.p.UpdateInterval + rand.N(a.p.UpdateInterval/10+1))
		case o := <-a.updateDone:
			a.updated(o)
			if o.Err == nil && o.Res.Changed {
				checkin.arm(spreadDelay(a.timing.SpreadMillis)) // report the new version
			}
		case <-upgrade.c():
			upgrade.fired()
			a.scheduledUpgrade()
			upgrade.arm(a.p.UpgradeInterval + rand.N(a.p.UpgradeInterval/10+1))
		case o := <-a.upgradeDone:
			if err := a.upgraded(o); err != nil {
				return err // *UpgradeReady: the executable is on trial
			}
		case <-scheduledScan.c():
			scheduledScan.fired()
			if a.definitionsDir() != "" {
				select {
				case a.scanReq <- scanReq{Paths: a.p.ScanPaths, Quarantine: a.p.QuarantineDirectory != ""}:
				default: // scans are queued already
				}
			}
			scheduledScan.arm(a.p.ScanInterval + rand.N(a.p.ScanInterval/10+1))
		case o := <-a.scanDone:
			a.scanned(o)
			a.scanPending = true
		case <-a.oa.reports:
			a.scanPending = true
		case <-a.oa.changed:
			a.wantCheckIn = true
		case <-report.c():
			report.fired()
			if err := a.report(ctx); err != nil {
				if a.checkRevoked(err) {
					continue
				}
				a.log.Warn("reporting results", "err", err)
				report.arm(jitter(min(10*time.Second, a.checkInInterval())))
			}
		}
		if a.revoked {
			// Nothing more goes to the server; scheduled updates and scans
			// go on (their reports stay on disk).
			checkin.stop()
			fetch.stop()
			report.stop()
			a.wantCheckIn, a.resetCheckIn = false, false
			continue
		}
		if _, behind := a.core.Behind(); behind {
			fetch.armIfOff(fetchDelay + spreadDelay(a.timing.SpreadMillis))
		}
		if len(a.results) > 0 || a.scanPending {
			report.armIfOff(spreadDelay(a.timing.SpreadMillis))
		}
		if a.wantCheckIn {
			a.wantCheckIn = false
			checkin.arm(spreadDelay(a.timing.SpreadMillis))
		}
		if a.resetCheckIn {
			a.resetCheckIn = false
			checkin.arm(a.checkInInterval() + spreadDelay(a.timing.SpreadMillis))
		}
	}
}

func (a *Agent) queue(rs []api.Result) {
	a.results = append(a.results, rs...)
}

// checkIn reports to the server and learns the latest sequence. A 401
// makes the agent enroll again only after reenrollAfter of them in a row,
// each logged as an error; it keeps its journal, so a forged refusal
// cannot make it handle a command again.
func (a *Agent) checkIn(ctx context.Context) error {
	req := api.CheckInRequest{
		Epoch: a.id.Epoch, Hostname: a.hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: buildinfo.String(),
		Groups: a.p.Groups, LastSeq: a.core.LastSeq(), Counters: a.counters.Snapshot(), DefsVer: a.defsVer,
		OnAccess: a.oa.State(), Update: a.lastUpdate,
	}
	maps.Copy(req.Counters, a.oa.metrics.Counters())
	resp, err := a.client.CheckIn(ctx, req)
	if api.IsStatus(err, http.StatusUnauthorized) {
		a.unauthorized++
		if a.unauthorized < reenrollAfter {
			a.log.Error("the server refused the agent's credential", "agent", a.id.AgentID, "err", err,
				"refusals_in_a_row", a.unauthorized, "enrolling_again_after", reenrollAfter)
			return err
		}
		a.log.Error("the server refused the agent's credential again; enrolling again", "agent", a.id.AgentID, "err", err,
			"refusals_in_a_row", a.unauthorized)
		if eerr := a.enroll(ctx); eerr != nil {
			a.log.Error("enrolling again failed; keeping the current credential", "err", eerr)
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	a.unauthorized = 0
	if len(resp.EpochProof) > 0 {
		if _, err := a.followEpoch(resp.EpochProof); err != nil {
			a.log.Error("not following the server's epoch statement", "err", err)
		}
	}
	a.timing = resp.Timing
	if resp.Epoch != a.id.Epoch {
		return fmt.Errorf("%w: the server is in epoch %d, the agent in %d, and the answer carries no statement to follow", errWrongEpoch, resp.Epoch, a.id.Epoch)
	}
	a.core.Learn(resp.LatestSeq)
	a.onEvent(Event{Kind: EventCheckIn, Agent: a.id.AgentID, Seq: resp.LatestSeq})
	return nil
}

// catchUp fetches and runs every command after the last one handled.
func (a *Agent) catchUp(ctx context.Context) error {
	for {
		after, behind := a.core.Behind()
		if !behind {
			return nil
		}
		resp, err := a.client.CommandsAfter(ctx, after, 0)
		if err != nil {
			return err
		}
		if resp.Epoch != a.id.Epoch {
			return fmt.Errorf("%w: the server answers from epoch %d, the agent is in %d", errWrongEpoch, resp.Epoch, a.id.Epoch)
		}
		rs, err := a.core.HandleFetched(resp.Commands)
		a.queue(rs)
		if err != nil {
			return err
		}
		if a.core.LastSeq() == after {
			// Nothing newer came: what we expected was not there (or an
			// answer on the way handed back old commands). Believe the
			// server's latest rather than ask again and again.
			a.core.Settle(resp.LatestSeq)
			return nil
		}
		a.core.Learn(resp.LatestSeq)
	}
}

// report sends pending results, in batches, and forgets those the
// server accepted or refused for good; the others are sent again later.
func (a *Agent) report(ctx context.Context) error {
	var keep []api.Result
	for len(a.results) > 0 {
		n := min(len(a.results), maxResultsBatch)
		batch := a.results[:n]
		judged, err := a.postResults(ctx, batch)
		var forget []uint64
		for _, r := range batch {
			if judged[r.Seq] {
				forget = append(forget, r.Seq)
			} else {
				keep = append(keep, r)
			}
		}
		a.results = a.results[n:]
		if len(forget) > 0 {
			if jerr := a.journal.Acked(forget); jerr != nil && err == nil {
				err = jerr
			}
			a.onEvent(Event{Kind: EventReported, Agent: a.id.AgentID, Count: len(forget), Seq: forget[len(forget)-1]})
		}
		if err != nil {
			a.results = append(keep, a.results...)
			return err
		}
	}
	a.results = keep
	if len(keep) > 0 {
		a.log.Warn("the server judged not every result; sending them again later", "results", len(keep))
	}
	if a.scanPending {
		if err := a.sendScans(ctx); err != nil {
			return err
		}
		a.scanPending = false
	}
	return nil
}

// maxResultsBatch is the most results in one request.
const maxResultsBatch = 500

// postResults sends one batch and returns the sequence numbers the server
// judged (accepted, or refused for good: each refusal is logged as an
// error). A failed request judges nothing; when a batch is sent again one
// result at a time, what was judged before a failure is returned with it.
func (a *Agent) postResults(ctx context.Context, batch []api.Result) (map[uint64]bool, error) {
	results := make([]api.Result, len(batch))
	for i, r := range batch {
		r.Output = api.TruncateOutput(r.Output)
		results[i] = r
	}
	resp, err := a.client.PostResults(ctx, results)
	judged := map[uint64]bool{}
	switch {
	case err == nil:
		for _, seq := range resp.Accepted {
			judged[seq] = true
		}
		for _, r := range resp.Refused {
			a.log.Error("the server refused a result for good; dropping it", "seq", r.Seq, "reason", r.Error)
			judged[r.Seq] = true
		}
	case errors.Is(err, io.EOF) && !errors.As(err, new(*url.Error)):
		// An empty success (204): a server from before per-result
		// verdicts, which answers so once it has stored every result.
		for _, r := range batch {
			judged[r.Seq] = true
		}
	case api.IsStatus(err, http.StatusBadRequest) && len(batch) > 1:
		// A server that refuses a whole batch for one result: find it.
		for _, r := range batch {
			j, err := a.postResults(ctx, []api.Result{r})
			if err != nil {
				return judged, err
			}
			maps.Copy(judged, j)
		}
	case api.IsStatus(err, http.StatusBadRequest):
		a.log.Error("the server refused a result for good; dropping it", "seq", batch[0].Seq, "reason", err)
		judged[batch[0].Seq] = true
	default:
		return nil, err
	}
	return judged, nil
}

// serveMetrics serves the agent's counters on MetricsAddress.
func (a *Agent) serveMetrics() (stop func(), err error) {
	reg := prometheus.NewRegistry()
	for _, n := range append(counterNames, receiverCounterNames...) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "vigil_agent_datagrams_total",
			Help:        "Agent counters: drops by reason, commands executed and fetched over HTTP.",
			ConstLabels: prometheus.Labels{"counter": n},
		}, func() float64 { return float64(a.counters.Get(n)) }))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_agent_definitions_delta_fallbacks_total",
		Help: "Definitions updates whose deltas failed and that downloaded the full release instead.",
	}, func() float64 { return float64(a.counters.Get(CountDeltaFallbacks)) }))
	if err := a.oa.metrics.Register(reg); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a.p.MetricsAddress)
	if err != nil {
		return nil, fmt.Errorf("MetricsAddress: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}
