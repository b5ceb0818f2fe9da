package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
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

// fetchDelay leaves time for the server's repeated datagram to arrive
// before fetching over HTTP, then spreads fetches over the window.
const fetchDelay = 250 * time.Millisecond

func (a *Agent) loop(ctx context.Context, datagrams <-chan []byte) error {
	var checkin, fetch, report, update, scheduledScan timer
	checkin.arm(spreadDelay(a.timing.SpreadMillis))
	if a.upd != nil && a.p.UpdateInterval > 0 {
		update.arm(jitter(min(a.p.UpdateInterval, 30*time.Second)))
	}
	if a.p.ScanInterval > 0 && len(a.p.ScanPaths) > 0 {
		scheduledScan.arm(a.p.ScanInterval/2 + rand.N(a.p.ScanInterval/2))
	}
	fetchBackoff := time.Second
	for {
		select {
		case <-ctx.Done():
			if len(a.results) > 0 || a.scanPending {
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				a.report(sctx)
				cancel()
			}
			return nil
		case b, ok := <-datagrams:
			if !ok {
				return fmt.Errorf("multicast receiver stopped")
			}
			rs, err := a.core.HandleDatagram(b)
			a.queue(rs)
			if err != nil && err != errOld {
				a.log.Debug("datagram dropped", "err", err)
			}
		case <-fetch.c():
			fetch.fired()
			if err := a.catchUp(ctx); err != nil {
				a.log.Warn("fetching missed commands", "err", err, "retry_in", fetchBackoff)
				fetch.arm(jitter(fetchBackoff))
				fetchBackoff = min(2*fetchBackoff, time.Minute)
				continue
			}
			fetchBackoff = time.Second
		case <-checkin.c():
			checkin.fired()
			if err := a.checkIn(ctx); err != nil {
				a.log.Warn("check-in failed", "err", err)
				checkin.arm(jitter(min(a.checkInInterval(), 30*time.Second)))
				continue
			}
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
		case <-report.c():
			report.fired()
			if err := a.report(ctx); err != nil {
				a.log.Warn("reporting results", "err", err)
				report.arm(jitter(10 * time.Second))
			}
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

// checkIn reports to the server and learns the latest sequence.
func (a *Agent) checkIn(ctx context.Context) error {
	req := api.CheckInRequest{
		Hostname: a.hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: buildinfo.String(),
		Groups: a.p.Groups, LastSeq: a.core.LastSeq(), Counters: a.counters.Snapshot(), DefsVer: a.defsVer,
	}
	var resp api.CheckInResponse
	err := a.client.Do(ctx, http.MethodPost, api.PathCheckIn, req, &resp)
	if api.IsStatus(err, http.StatusUnauthorized) {
		// The server no longer knows this agent (its store was replaced).
		a.log.Error("server refused the agent's credential; enrolling again", "agent", a.id.AgentID)
		return a.enroll(ctx)
	}
	if err != nil {
		return err
	}
	if resp.Epoch != a.id.Epoch {
		return fmt.Errorf("server epoch %d differs from the enrolled epoch %d", resp.Epoch, a.id.Epoch)
	}
	a.timing = resp.Timing
	a.core.Learn(resp.LatestSeq)
	a.onEvent(Event{Kind: "checkin", Agent: a.id.AgentID, Seq: resp.LatestSeq})
	return nil
}

// catchUp fetches and runs every command after the last one handled.
func (a *Agent) catchUp(ctx context.Context) error {
	for {
		after, behind := a.core.Behind()
		if !behind {
			return nil
		}
		var resp api.CommandsResponse
		path := api.PathCommands + "?after=" + strconv.FormatUint(after, 10)
		if err := a.client.Do(ctx, http.MethodGet, path, nil, &resp); err != nil {
			return err
		}
		if resp.Epoch != a.id.Epoch {
			return fmt.Errorf("server epoch %d differs from the enrolled epoch %d", resp.Epoch, a.id.Epoch)
		}
		rs, err := a.core.HandleFetched(resp.Commands)
		a.queue(rs)
		if err != nil {
			return err
		}
		if len(resp.Commands) == 0 {
			// The server has nothing newer: what we expected was not there.
			a.core.Settle(resp.LatestSeq)
			return nil
		}
		a.core.Learn(resp.LatestSeq)
	}
}

// report sends pending results and marks them acknowledged.
func (a *Agent) report(ctx context.Context) error {
	for len(a.results) > 0 {
		n := min(len(a.results), 500)
		batch := a.results[:n]
		if err := a.client.Do(ctx, http.MethodPost, api.PathResults, api.ResultsRequest{Results: batch}, nil); err != nil {
			return err
		}
		seqs := make([]uint64, n)
		for i, r := range batch {
			seqs[i] = r.Seq
		}
		if err := a.journal.Acked(seqs); err != nil {
			return err
		}
		a.results = a.results[n:]
		a.onEvent(Event{Kind: "reported", Agent: a.id.AgentID, Count: n, Seq: seqs[n-1]})
	}
	if a.scanPending {
		if err := a.sendScans(ctx); err != nil {
			return err
		}
		a.scanPending = false
	}
	return nil
}

// serveMetrics serves the agent's counters on MetricsAddress.
func (a *Agent) serveMetrics() (stop func(), err error) {
	reg := prometheus.NewRegistry()
	for _, n := range counterNames {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "vigil_agent_datagrams_total",
			Help:        "Agent counters: drops by reason, commands executed and fetched over HTTP.",
			ConstLabels: prometheus.Labels{"counter": n},
		}, func() float64 { return float64(a.counters.Get(n)) }))
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
