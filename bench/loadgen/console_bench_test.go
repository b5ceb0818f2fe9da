package loadgen_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
)

// watchAgents is how many simulated agents the console benchmark's
// command goes to.
const watchAgents = 1000

// watchOpTimeout bounds one op of the console benchmark: the command
// issued, every result stored and every watcher given all of them.
const watchOpTimeout = time.Minute

// BenchmarkConsoleWatch measures the web console's live command page
// under many watchers. A `vigil server` process (spread window 1 s)
// multicasts on lo with TTL 0 to 1,000 simulated agents, each enrolled
// with its own identity; each executes the command and posts its result
// over HTTP after a random delay within the spread window. A viewer user,
// added through the admin API, logs in to the console (served by the
// server at / on its admin listener) once per watcher: each watcher has
// its own session and its own HTTP client and connection.
//
// One op is one "ping" to all agents issued through the admin API. The
// agents execute it at once but hold their results (Fleet.HoldReports)
// while every watcher opens the command's event stream (GET
// /commands/SEQ/events, Server-Sent Events) and has its first "progress"
// (all pending); then the agents report, each after a random delay within
// the spread window as the agent daemon does. The op ends when every
// agent's result is acknowledged to it and every watcher has had a
// "result" event for each of the 1,000 agents and the final "progress"
// (1,000 ok). watchers=0 is the same op without the console: the
// difference in the server's CPU time is what the watchers cost;
// watchers=10 shows how it grows with them.
//
// The latency of a result event (p50-ms, p99-ms, max-ms) is its arrival at
// the watcher less the event's "received", the time the server received
// the result (the same host's clock): an upper bound of commit→event,
// since the server commits after receiving. backlog-events/op counts
// events of results received before their stream was open (0 when the
// hold works). all-delivered is from the agents' release to the last
// event (or, with no watcher, the last result acknowledged): the spread
// window and then the tail. stream-ready is from a watcher's request to
// its first "progress". The watchers parse their streams in this process,
// beside the simulated agents: gen-run-ms/op is both.
func BenchmarkConsoleWatch(b *testing.B) {
	lo := requireBench(b)
	if err := loadgen.RaiseNoFile(4*watchAgents + 1024); err != nil {
		b.Skip(err)
	}
	setupStart := time.Now()
	srv := startServer(b, lo, loadgen.ServerOptions{Spread: time.Second})
	if err := loadgen.CheckLoopbackURL(srv.AdminURL); err != nil {
		b.Fatal(err)
	}
	hc := loadgen.NewHTTPClient(64)
	ids, took := enroll(b, srv, hc, watchAgents)
	b.Logf("enrolled %d agents in %v", watchAgents, took.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // the set-up's bound
	defer cancel()
	fleet, col := joinFleet(ctx, b, srv, hc, ids, true)
	defer fleet.Close()
	// Warm up: one command executed and reported by every agent (this
	// also shows the fleet receives the multicast).
	ci, err := srv.Issue(ctx, api.SendRequest{Name: command.Ping, Target: command.Target{All: true}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := col.wait(ci.Seq, watchAgents, true, watchOpTimeout); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	agents := make(map[string]int, len(ids))
	for i, id := range ids {
		agents[id.AgentID] = i
	}
	user, password := "watcher", "pw-"+rand.Text()
	if _, err := srv.Admin.AddUser(ctx, api.AddUserRequest{Name: user, Role: "viewer", Password: password}); err != nil {
		b.Fatalf("adding the console user: %v", err)
	}
	b.Logf("set-up (server, enrollment, warm-up command, user) took %v", time.Since(setupStart).Round(time.Millisecond))

	for _, nw := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("agents=%d/watchers=%d", watchAgents, nw), func(b *testing.B) {
			benchConsoleWatch(b, srv, fleet, col, agents, nw, user, password)
		})
	}
}

func benchConsoleWatch(b *testing.B, srv *loadgen.ServerProcess, fleet *loadgen.Fleet, col *collector, agents map[string]int, nw int, user, password string) {
	ctx := context.Background()
	n := len(agents)
	loginStart := time.Now()
	ws, err := consoleLogins(ctx, srv.AdminURL, user, password, nw)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, w := range ws {
			w.hc.CloseIdleConnections()
		}
	}()
	if nw > 0 {
		b.Logf("%d console logins in %v", nw, time.Since(loginStart).Round(time.Millisecond))
	}

	var (
		lat, allDelivered, readies   []time.Duration
		backlog, results, progresses int
		dups                         int
	)
	ops := 0
	u0 := readUsage(ctx, b, srv)
	for b.Loop() {
		settle(b)
		ops++
		col.reset()
		fleet.HoldReports()
		ci, err := srv.Issue(ctx, api.SendRequest{Name: command.Ping, Target: command.Target{All: true}})
		if err != nil {
			b.Fatal(err)
		}
		opCtx, cancel := context.WithTimeout(ctx, watchOpTimeout)
		res := make([]watchResult, nw)
		errs := make([]error, nw)
		var wg, ready sync.WaitGroup
		ready.Add(nw)
		for i, w := range ws {
			wg.Go(func() {
				var once sync.Once
				done := func() { once.Do(ready.Done) }
				defer done()
				res[i], errs[i] = w.watch(opCtx, srv.AdminURL, ci.Seq, agents, done)
			})
		}
		// Every stream open (or failed) and every agent holding its
		// result: then the results go to the server.
		ready.Wait()
		if _, err := col.wait(ci.Seq, n, false, watchOpTimeout); err != nil {
			cancel()
			b.Fatal(err)
		}
		t0 := time.Now()
		fleet.ReleaseReports()
		o, ferr := col.wait(ci.Seq, n, true, watchOpTimeout)
		wg.Wait()
		cancel()
		if ferr != nil {
			b.Fatal(ferr)
		}
		if err := errors.Join(errs...); err != nil {
			b.Fatalf("command %d: %v", ci.Seq, err)
		}
		last := slices.MaxFunc(o.reported, func(x, y time.Time) int { return x.Compare(y) })
		for _, r := range res {
			lat = append(lat, r.lat...)
			readies = append(readies, r.ready)
			backlog += r.backlog
			results += len(r.lat)
			progresses += r.progress
			dups += r.dups
			if r.done.After(last) {
				last = r.done
			}
		}
		allDelivered = append(allDelivered, last.Sub(t0))
	}
	u1 := readUsage(ctx, b, srv)
	cpu, gen, host, soft := u1.srv.Sub(u0.srv), u1.gen.Sub(u0.gen), u1.host.Sub(u0.host), u1.soft.Sub(u0.soft)
	mem, err := srv.Mem()
	if err != nil {
		b.Fatal(err)
	}

	for _, s := range [][]time.Duration{lat, allDelivered, readies} {
		slices.Sort(s)
	}
	per := func(d time.Duration) float64 { return ms(d) / float64(ops) }
	if nw > 0 {
		b.ReportMetric(ms(loadgen.Percentile(lat, 50)), "p50-ms")
		b.ReportMetric(ms(loadgen.Percentile(lat, 99)), "p99-ms")
		b.ReportMetric(ms(loadgen.Percentile(lat, 100)), "max-ms")
		b.ReportMetric(float64(results)/float64(ops), "events/op")
		b.ReportMetric(float64(backlog)/float64(ops), "backlog-events/op")
		b.ReportMetric(float64(progresses)/float64(ops), "progress-events/op")
		b.ReportMetric(float64(dups), "dup-events")
		b.ReportMetric(ms(loadgen.Percentile(readies, 50)), "stream-ready-p50-ms")
		b.ReportMetric(ms(loadgen.Percentile(readies, 100)), "stream-ready-max-ms")
	}
	b.ReportMetric(ms(loadgen.Percentile(allDelivered, 50)), "all-delivered-p50-ms")
	b.ReportMetric(ms(loadgen.Percentile(allDelivered, 100)), "all-delivered-max-ms")
	b.ReportMetric(per(cpu.Total()), "srv-cpu-ms/op")
	b.ReportMetric(per(cpu.User), "srv-user-ms/op")
	b.ReportMetric(per(cpu.System), "srv-sys-ms/op")
	b.ReportMetric(per(cpu.Run), "srv-run-ms/op")
	b.ReportMetric(per(gen.Run), "gen-run-ms/op")
	b.ReportMetric(per(host.Busy), "host-busy-ms/op")
	b.ReportMetric(per(soft.Run), "ksoftirqd-ms/op")
	reportOther(b, host.Busy, ops, cpu.Total()+gen.Total()+soft.Total())
	b.ReportMetric(loadgen.MiB(mem.HWM), "srv-hwm-MiB")
	b.Logf("%d agents, %d watchers, %d ops: %d result events (%d backlog), server utime+stime %d ticks (user %v, sys %v), schedstat %v; generator %v",
		n, nw, ops, results, backlog, cpu.Ticks(), cpu.User, cpu.System, cpu.Run.Round(time.Millisecond), gen.Run.Round(time.Millisecond))
}

// consoleWatcher is one logged-in console: its own session and its own
// HTTP client with one connection.
type consoleWatcher struct {
	hc     *http.Client
	cookie *http.Cookie
}

// consoleLogins logs user in to the console at base n times, 8 at a
// time, each with its own HTTP client.
func consoleLogins(ctx context.Context, base, user, password string, n int) ([]*consoleWatcher, error) {
	ws := make([]*consoleWatcher, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ws[i], errs[i] = consoleLogin(ctx, base, user, password)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ws, nil
}

// consoleLogin logs in as a browser does (POST /login from a page of the
// same origin) and keeps the session cookie.
func consoleLogin(ctx context.Context, base, user, password string) (*consoleWatcher, error) {
	if err := loadgen.CheckLoopbackURL(base); err != nil {
		return nil, err
	}
	hc := &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true},
		// The login answers 303 with the cookie: keep that answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	form := url.Values{"user": {user}, "password": {password}, "next": {"/"}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("console login as %s: %w", user, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("console login as %s: %s (want 303): %.300s", user, resp.Status, body)
	}
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "vigil-session") && c.Value != "" {
			return &consoleWatcher{hc: hc, cookie: c}, nil
		}
	}
	return nil, fmt.Errorf("console login as %s: no session cookie in the answer", user)
}

// watchResult is what one watcher saw of one command.
type watchResult struct {
	lat      []time.Duration // per result event: arrival less the server's receipt
	backlog  int             // result events the server received before the stream was open
	progress int             // progress events
	dups     int             // result events for an agent already reported
	ready    time.Duration   // from the request to the stream's first progress event
	done     time.Time       // when the last needed event arrived
}

// resultData is the part of a "result" event the benchmark reads.
type resultData struct {
	Agent, Status, Received string
}

// progressData is a "progress" event.
type progressData struct {
	Targeted, OK, Failed, Pending int
}

// watch opens the event stream of command seq and reads it until it has
// had a result of every agent and the final progress (all ok), or ctx
// ends. It calls ready at the first progress event: the stream is open
// and has sent the command's state.
func (w *consoleWatcher) watch(ctx context.Context, base string, seq uint64, agents map[string]int, ready func()) (watchResult, error) {
	var res watchResult
	u := fmt.Sprintf("%s/commands/%d/events", base, seq)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return res, err
	}
	req.AddCookie(&http.Cookie{Name: w.cookie.Name, Value: w.cookie.Value})
	req.Header.Set("Accept", "text/event-stream")
	t := time.Now()
	resp, err := w.hc.Do(req)
	if err != nil {
		return res, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	opened := time.Now()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return res, fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return res, fmt.Errorf("GET %s: Content-Type %q, not an event stream", u, ct)
	}
	n := len(agents)
	seen := make([]bool, n)
	nSeen, final := 0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var name, data string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
			continue
		}
		at := time.Now()
		switch name {
		case "": // the stream's "retry:" preamble
		case "result":
			var ev resultData
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				return res, fmt.Errorf("%s: result event %q: %w", u, data, err)
			}
			i, ok := agents[ev.Agent]
			switch {
			case !ok:
				return res, fmt.Errorf("%s: a result of agent %q, not one of the fleet's", u, ev.Agent)
			case ev.Status != command.StatusOK:
				return res, fmt.Errorf("%s: agent %s: status %q, want ok", u, ev.Agent, ev.Status)
			case ev.Received == "":
				return res, fmt.Errorf("%s: result event without \"received\" (a console older than the field?): %s", u, data)
			}
			rcv, err := time.Parse(time.RFC3339Nano, ev.Received)
			if err != nil {
				return res, fmt.Errorf("%s: agent %s: received %q: %w", u, ev.Agent, ev.Received, err)
			}
			res.lat = append(res.lat, at.Sub(rcv))
			if rcv.Before(opened) {
				res.backlog++
			}
			if seen[i] {
				res.dups++
			} else {
				seen[i] = true
				nSeen++
			}
		case "progress":
			var p progressData
			if err := json.Unmarshal([]byte(data), &p); err != nil {
				return res, fmt.Errorf("%s: progress event %q: %w", u, data, err)
			}
			if res.progress == 0 {
				res.ready = at.Sub(t)
				ready()
			}
			res.progress++
			if p.Failed > 0 || p.Targeted != n {
				return res, fmt.Errorf("%s: progress %+v: want %d targeted, none failed", u, p, n)
			}
			final = p.OK == n && p.Pending == 0
		case "end":
			return res, fmt.Errorf("%s: the stream ended: %s", u, data)
		default:
			return res, fmt.Errorf("%s: unknown event %q", u, name)
		}
		name, data = "", ""
		if final && nSeen == n {
			res.done = at
			return res, nil
		}
	}
	err = sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return res, fmt.Errorf("%s: after %d of %d results (final progress %v): %w", u, nSeen, n, final, err)
}
