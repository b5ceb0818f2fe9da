//go:build linux

package integration

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/console/consoletest"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestConsoleFollowsOtherInstance: two `vigil server` processes over one
// PostgreSQL database; the agent talks to instance B only; an operator's
// browser is on instance A's console. A command issued through A's
// console reaches the agent (held with SIGSTOP until the command's page
// is live), the agent posts its result to B, and A's page shows it with
// no reload: B's commit reaches A through the database's notifications.
// A's metrics prove the result never went through A.
func TestConsoleFollowsOtherInstance(t *testing.T) {
	t.Parallel()
	bctx := consoletest.Browser(t, 2*time.Minute)
	if err := chromedp.Do(bctx); err != nil { // starts the browser, for the tab
		t.Fatalf("starting chromium: %v", err)
	}
	dsn := pgtest.Start(t).NewDatabase(t)
	port := freeUDPPort(t)
	ins := startInstances(t, 2, dsn, port)
	a, b := ins[0], ins[1]

	f := &fleet{t: t, admin: localPlace(), adminURL: a.admin, dataDir: a.dataDir, startedAt: time.Now()}
	m := f.addMember("behind-b", localPlace(), b.api, testGroup, port, testenv.Loopback(t))
	f.startAgent(m)
	f.learnIDs()
	addUserAt(t, a.admin, a.dataDir, "olga", "operator", "correct horse battery")

	op := newTab(t, bctx, a.admin)
	op.login("/agents", "olga", "correct horse battery")
	before, err := a.client(t).ServerInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// Hold the agent, so that its result comes after the page is live.
	if err := m.proc.(*fileProc).cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.proc.(*fileProc).cmd.Process.Signal(syscall.SIGCONT) })
	op.open("/commands")
	op.do("issue ping to the agent from A's console",
		chromedp.SetValue(chromedp.CSS(`#issue select[name="name"]`), "ping"),
		chromedp.Click(chromedp.CSS(`#issue input[name="target"][value="agents"]`)),
		chromedp.SendKeys(chromedp.CSS(`#issue input[name="agents"]`), m.id),
		chromedp.Click(chromedp.CSS(`#issue button[type="submit"]`)),
	)
	op.waitJS("the command's page", `location.pathname.startsWith("/commands/") && document.getElementById("results") !== null`)
	seq, err := strconv.ParseUint(strings.TrimPrefix(op.location().Path, "/commands/"), 10, 64)
	if err != nil || seq != before.LatestSeq+1 {
		t.Fatalf("after issuing: at %s, want /commands/%d", op.location(), before.LatestSeq+1)
	}
	jsEval[int](op, `window.__marker = 1`)
	op.waitJS("the live stream, one pending", `document.body.classList.contains("js-live") && document.getElementById("n-pending").textContent === "1"`)
	if err := m.proc.(*fileProc).cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	op.waitJS("the result received by instance B", `document.getElementById("n-ok").textContent === "1" && document.getElementById("n-pending").textContent === "0" && `+
		`document.querySelector('#results tr[data-agent="`+m.id+`"] td.output').textContent === "pong from behind-b"`)
	if got := jsEval[int](op, `window.__marker`); got != 1 {
		t.Errorf("the page reloaded (marker %d): the result did not come live", got)
	}

	// The result went through B, never through A.
	// A heard of it from the database.
	if n := metricSum(t, b.admin, "vigil_server_http_requests_total", `route="results"`); n == 0 {
		t.Errorf("instance B served no results request: the agent posted elsewhere")
	}
	if n := metricSum(t, a.admin, "vigil_server_http_requests_total", `route="results"`); n != 0 {
		t.Errorf("instance A served %d results requests, want 0 (the test would not prove the notification path)", n)
	}
	if n := metricSum(t, a.admin, "vigil_server_store_events_total", `kind="results"`); n == 0 {
		t.Errorf("instance A followed no results event from the database")
	}
	res, err := a.client(t).CommandResults(t.Context(), seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Status != command.StatusOK {
		t.Fatalf("instance A's admin API: results %+v, want one ok", res.Results)
	}
}

// metricSum sums the samples of metric name holding label (`k="v"`) on
// the /metrics of the admin listener at admin.
func metricSum(t *testing.T, admin, name, label string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.RouteMetrics.URL(admin, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		total += int(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}
