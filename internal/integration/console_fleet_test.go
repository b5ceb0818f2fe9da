//go:build linux

package integration

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/console/consoletest"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
)

// What a compromised agent reports: HTML and script in its hostname (a
// real agent, through its Hostname preference), its detections' paths
// and signatures (a scan report posted with its credential) and, from
// another compromised agent, its definitions version.
const (
	evilHost  = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`
	evilPath  = `/srv/<img src=x onerror="window.__pwned=3">/<script>window.__pwned=4</script>.exe`
	evilPath2 = `/tmp/"><svg onload="window.__pwned=5">.bin`
	evilSig   = `Sig.<b onmouseover="window.__pwned=6">X</b><script>window.__pwned=7</script>`
	evilDefs  = `<img src=x onerror="window.__pwned=8">`
	evilQID   = "q-evil-1"
)

// consoleFleet is a real `vigil server` on loopback with real agents
// (web-1 in group web, web-2 in web and db, web-3 in web, and evil in db,
// whose hostname is evilHost), two agents enrolled through the agent API
// that never run (ghost-late, silent since its one check-in, and
// ghost-revoked, revoked), and console users made with `vigil users
// add`: olga and lena (operators) and vera (viewer).
type consoleFleet struct {
	s                   *loopbackServer
	f                   *fleet
	admin               *api.AdminClient
	web1, web2, web3    *member
	evil                *member
	ghostLate, ghostRev string // agent ids
	interval            time.Duration
}

func newConsoleFleet(t *testing.T) *consoleFleet {
	t.Helper()
	ctx := t.Context()
	s := newLoopbackServer(t)
	c := &consoleFleet{s: s, f: s.fleet(t), admin: s.adminClient(t)}
	info, err := c.admin.ServerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.interval = time.Duration(info.CheckInSeconds) * time.Second

	// The ghosts first: the late one's silence starts now.
	late, lateClient := c.enrollGhost(t, "ghost-late")
	c.ghostLate = late.AgentID
	if _, err := lateClient.CheckIn(ctx, api.CheckInRequest{
		Epoch: late.Epoch, Hostname: "ghost-late", OS: "linux", Arch: "amd64", Version: "test",
		DefsVer: evilDefs, Groups: []string{"ghosts"}, LastSeq: late.LatestSeq,
	}); err != nil {
		t.Fatalf("ghost-late checks in: %v", err)
	}
	rev, _ := c.enrollGhost(t, "ghost-revoked")
	c.ghostRev = rev.AgentID
	if _, err := c.admin.RevokeAgent(ctx, c.ghostRev); err != nil {
		t.Fatalf("revoking ghost-revoked: %v", err)
	}

	c.web1 = s.addAgent(c.f, "web-1", "web")
	c.web2 = s.addAgent(c.f, "web-2", "web", "db")
	c.web3 = s.addAgent(c.f, "web-3", "web")
	c.evil = s.addAgent(c.f, "evil", "db")
	p, err := prefs.Load(c.evil.plist)
	if err != nil {
		t.Fatal(err)
	}
	p.Hostname = evilHost
	if err := prefs.Write(c.evil.plist, p, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.f.members {
		c.f.startAgent(m)
	}
	byHost := map[string]string{}
	for _, a := range c.agents(t) {
		byHost[a.Hostname] = a.ID
	}
	for _, m := range c.f.members {
		host := m.name
		if m == c.evil {
			host = evilHost
		}
		if m.id = byHost[host]; m.id == "" {
			t.Fatalf("agent %s (hostname %q) is not enrolled; enrolled: %v", m.name, host, byHost)
		}
	}

	// The evil agent, compromised, reports a scan with its own credential.
	var id agent.Identity
	b, err := os.ReadFile(filepath.Join(c.evil.state, agent.FileIdentityName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &id); err != nil || id.AgentID != c.evil.id {
		t.Fatalf("evil's identity %s: %v (id %q, want %q)", b, err, id.AgentID, c.evil.id)
	}
	evilClient := &api.AgentClient{Client: api.Client{Base: s.api, Auth: id.Token, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	now := time.Now()
	if _, err := evilClient.PostScan(ctx, api.ScanReport{
		ReportID: "evil-1", DefsVer: "1", StartedAt: now, FinishedAt: now, Files: 2,
		Detections: []api.Detection{
			{Path: evilPath, Signature: evilSig, SHA256: strings.Repeat("ab", 32), FoundAt: now, Quarantine: evilQID},
			{Path: evilPath2, Signature: evilSig, SHA256: strings.Repeat("cd", 32), FoundAt: now},
		},
	}); err != nil {
		t.Fatalf("evil's scan report: %v", err)
	}

	addUser(t, s, "olga", "operator", "olga-password-1")
	addUser(t, s, "lena", "operator", "lena-password-1")
	addUser(t, s, "vera", "viewer", "vera-password-1")
	return c
}

// enrollGhost enrolls an agent through the agent API, as an agent does,
// and returns its identity and a client holding its credential.
func (c *consoleFleet) enrollGhost(t *testing.T, host string) (api.EnrollResponse, *api.AgentClient) {
	t.Helper()
	secret, err := server.DataDir{Path: c.s.dataDir}.EnrollSecret()
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	cl := &api.AgentClient{Client: api.Client{Base: c.s.api, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	en, err := cl.Enroll(t.Context(), api.EnrollRequest{
		Secret: secret, Nonce: hex.EncodeToString(nonce), Hostname: host, OS: "linux", Arch: "amd64", Version: "test", Groups: []string{"ghosts"},
	})
	if err != nil {
		t.Fatalf("enrolling %s: %v", host, err)
	}
	cl.Auth = en.Token
	return en, cl
}

func (c *consoleFleet) agents(t *testing.T) []api.AgentInfo {
	t.Helper()
	as, err := c.admin.Agents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func (c *consoleFleet) latestSeq(t *testing.T) uint64 {
	t.Helper()
	info, err := c.admin.ServerInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.LatestSeq
}

// statuses classifies the agents as docs/console.md says, from the admin
// API's list: id → online, late, missing or revoked. settled is false
// when an agent was last seen within 2 s of the online/late boundary (its
// status may differ a moment later).
func (c *consoleFleet) statuses(t *testing.T) (st map[string]string, settled bool) {
	t.Helper()
	as := c.agents(t)
	now := time.Now()
	st, settled = map[string]string{}, true
	for _, a := range as {
		age := now.Sub(a.LastSeen)
		switch {
		case !a.Revoked.IsZero():
			st[a.ID] = "revoked"
		case age > 7*24*time.Hour:
			st[a.ID] = "missing"
		case age <= 2*c.interval:
			st[a.ID] = "online"
		default:
			st[a.ID] = "late"
		}
		if a.Revoked.IsZero() && age > 2*c.interval-2*time.Second && age < 2*c.interval+2*time.Second {
			settled = false
		}
	}
	return st, settled
}

func withStatus(st map[string]string, status string) []string {
	ids := []string{}
	for id, s := range st {
		if status == "" || s == status {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// tab is a browser tab on the console, with its own cookies.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// newTab opens a tab of the browser of parent in a browser context of
// its own: its own cookies, so its own session.
func newTab(t *testing.T, parent context.Context, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab, which lives as long as the context it
	// gets: this one, not a step's shorter one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return &tab{t: t, ctx: ctx, base: base}
}

// stepTimeout bounds each browser step.
const stepTimeout = 45 * time.Second

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open loads a page of the console and waits for its heading.
func (b *tab) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("main h1")))
}

func jsEval[T any](b *tab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is true in the page, across navigations (a
// navigation ends a poll with a protocol error -32000: it polls again,
// in the new page).
func (b *tab) waitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second)))
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "(-32000)") || ctx.Err() != nil {
			b.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
	}
}

func (b *tab) location() *url.URL {
	b.t.Helper()
	loc := jsEval[string](b, `location.href`)
	u, err := url.Parse(loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// login opens path, is sent to the login form, and logs in.
func (b *tab) login(path, user, password string) {
	b.t.Helper()
	b.do("log in as "+user,
		chromedp.Navigate(b.base+path),
		chromedp.WaitVisible(chromedp.CSS("form.login")),
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`form.login button`)),
		chromedp.WaitVisible(chromedp.CSS(`form.logout`)),
	)
	if who := jsEval[string](b, `document.querySelector("form.logout .who").textContent`); !strings.HasPrefix(who, user+" (") {
		b.t.Fatalf("logged in as %s, the page says %q", user, who)
	}
}

// session returns the tab's session cookie of the console, as the
// browser holds it, or nil.
func (b *tab) session() *http.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "vigil-session" && c.Value != "" {
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	return nil
}

// rows lists the data-agent ids of the agents table's rows, in order.
func (b *tab) rows() []string {
	b.t.Helper()
	return jsEval[[]string](b, `Array.from(document.querySelectorAll("table.agents tbody tr[data-agent]")).map(r => r.dataset.agent)`)
}

// safe checks the page ran no script of an agent's and holds no element
// an agent's text would have made: no img, no event-handler attribute, no
// script but the console's one.
func (b *tab) safe(page string) {
	b.t.Helper()
	got := jsEval[string](b, `JSON.stringify({pwned: typeof window.__pwned,
		injected: document.querySelectorAll("img, svg[onload], b, [onerror], [onload], [onmouseover]").length,
		scripts: Array.from(document.scripts).map(s => s.getAttribute("src"))})`)
	if want := `{"pwned":"undefined","injected":0,"scripts":["/static/console.js"]}`; got != want {
		b.t.Errorf("%s: %s, want %s", page, got, want)
	}
}

// httpClient is a client that does not follow redirects.
func httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// consoleDo sends a request to the console with cookie ck, as a hand-made
// client would (no Origin, no Sec-Fetch-Site), and returns the status,
// the Location header and the body.
func consoleDo(t *testing.T, method, u string, ck *http.Cookie, form url.Values) (int, string, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if ck != nil {
		req.AddCookie(ck)
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func (c *consoleFleet) signal(t *testing.T, m *member, sig syscall.Signal) {
	t.Helper()
	p, ok := m.proc.(*fileProc)
	if !ok {
		t.Fatalf("agent %s is not a local process", m.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to agent %s: %v", sig, m.name, err)
	}
}

// TestConsoleFleet drives the console of a real `vigil server` with real
// agents in headless Chromium: the dashboard's counts and their links,
// filters and sort in the URL, a bulk ping whose results arrive with no
// reload, the agents CSV against the table, a viewer refused (and
// audited), a form from another origin refused, logout, and a hostile
// agent's HTML shown as text everywhere.
func TestConsoleFleet(t *testing.T) {
	t.Parallel()
	browser := consoletest.Browser(t, 5*time.Minute)
	if err := chromedp.Do(browser); err != nil { // starts the browser, for the tabs
		t.Fatalf("starting chromium: %v", err)
	}
	c := newConsoleFleet(t)
	op := newTab(t, browser, c.s.admin)
	op.login("/", "olga", "olga-password-1")

	// These run first, one after the other, in the operator's one tab (its
	// failures reported to the running subtest): the ping stops two agents
	// a moment and issues commands, which the parallel ones must not see.
	t.Run("DashboardCounts", func(t *testing.T) { op.t = t; c.testDashboard(t, op) })
	t.Run("BulkPingLive", func(t *testing.T) { op.t = t; c.testBulkPing(t, op) })
	t.Run("HostileAgent", func(t *testing.T) { op.t = t; c.testHostile(t, op) })

	latest := c.latestSeq(t)
	t.Run("Parallel", func(t *testing.T) {
		t.Run("URLFilters", func(t *testing.T) { t.Parallel(); c.testURLFilters(t, newTab(t, browser, c.s.admin)) })
		t.Run("AgentsCSV", func(t *testing.T) { t.Parallel(); c.testCSV(t, newTab(t, browser, c.s.admin)) })
		t.Run("ViewerRefused", func(t *testing.T) { t.Parallel(); c.testViewer(t, newTab(t, browser, c.s.admin), latest) })
		t.Run("CrossOriginForm", func(t *testing.T) { t.Parallel(); c.testCrossOrigin(t, newTab(t, browser, c.s.admin), latest) })
		t.Run("Logout", func(t *testing.T) { t.Parallel(); c.testLogout(t, newTab(t, browser, c.s.admin), latest) })
	})
}

// testDashboard: the dashboard's counts are the admin API's, and each
// tile opens the agents list filtered to exactly the agents it counts.
func (c *consoleFleet) testDashboard(t *testing.T, op *tab) {
	// Wait until ghost-late has been silent past the online window, and
	// no agent is near the boundary.
	deadline := time.Now().Add(60 * time.Second)
	var st map[string]string
	for {
		var settled bool
		st, settled = c.statuses(t)
		if settled && st[c.ghostLate] == "late" {
			op.open("/")
			after, settled2 := c.statuses(t)
			if settled2 && fmt.Sprint(after) == fmt.Sprint(st) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet's statuses did not settle in 60 s: %v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The fleet is what the test made, so the counts below cannot all be
	// trivially equal.
	online := []string{c.web1.id, c.web2.id, c.web3.id, c.evil.id}
	sort.Strings(online)
	if got := withStatus(st, "online"); !slices.Equal(got, online) {
		t.Fatalf("admin API: online %v, want the four running agents %v", got, online)
	}
	if got := withStatus(st, "late"); !slices.Equal(got, []string{c.ghostLate}) {
		t.Fatalf("admin API: late %v, want ghost-late %s", got, c.ghostLate)
	}
	if got := withStatus(st, "revoked"); !slices.Equal(got, []string{c.ghostRev}) {
		t.Fatalf("admin API: revoked %v, want ghost-revoked %s", got, c.ghostRev)
	}

	tiles := []struct {
		id, status string
		query      url.Values
	}{
		{"tile-total", "", url.Values{}},
		{"tile-online", "online", url.Values{"status": {"online"}}},
		{"tile-late", "late", url.Values{"status": {"late"}}},
		{"tile-missing", "missing", url.Values{"status": {"missing"}}},
		{"tile-revoked", "revoked", url.Values{"status": {"revoked"}}},
	}
	for _, tl := range tiles {
		n := jsEval[string](op, `document.querySelector("#`+tl.id+` .n").textContent`)
		if want := strconv.Itoa(len(withStatus(st, tl.status))); n != want {
			t.Errorf("dashboard %s shows %s, the admin API counts %s", tl.id, n, want)
		}
	}
	// Definitions: only ghost-late reported any.
	if got, want := jsEval[string](op, `document.querySelector("#tile-newest .n").textContent`), fmt.Sprintf("%d%%", 100/len(st)); got != want {
		t.Errorf("dashboard: share on the newest definitions %q, want %q (1 of %d agents)", got, want, len(st))
	}

	for _, tl := range append(tiles, struct {
		id, status string
		query      url.Values
	}{"tile-newest", "defs", url.Values{"defs": {evilDefs}}}) {
		want := withStatus(st, tl.status)
		if tl.status == "defs" {
			want = []string{c.ghostLate}
		}
		op.open("/")
		op.do("follow "+tl.id, chromedp.Click(chromedp.CSS("#"+tl.id)), chromedp.WaitVisible(chromedp.CSS("table.agents")))
		u := op.location()
		if u.Path != "/agents" || u.Query().Encode() != tl.query.Encode() {
			t.Errorf("%s leads to %s, want /agents?%s", tl.id, u, tl.query.Encode())
		}
		if got := op.rows(); !slices.Equal(got, want) {
			t.Errorf("%s's list shows %v, want %v", tl.id, got, want)
		}
		if got := jsEval[string](op, `document.getElementById("matching").textContent`); got != strconv.Itoa(len(want)) {
			t.Errorf("%s's list says %s matching, want %d", tl.id, got, len(want))
		}
		if len(want) == 0 && jsEval[string](op, `document.querySelector("table.agents tbody").textContent.trim()`) != "No agent matches." {
			t.Errorf("%s's empty list does not say so", tl.id)
		}
	}
}

// testBulkPing: tick a range with shift-click, untick one, issue ping from
// the bulk action, and see both results arrive on the command's page with
// no reload.
func (c *consoleFleet) testBulkPing(t *testing.T, op *tab) {
	op.open("/agents?group=web&sort=hostname")
	if got, want := op.rows(), []string{c.web1.id, c.web2.id, c.web3.id}; !slices.Equal(got, want) {
		t.Fatalf("group web by hostname: %v, want %v", got, want)
	}
	box := func(m *member) chromedp.CSS {
		return chromedp.CSS(`tr[data-agent="` + m.id + `"] input[type="checkbox"]`)
	}
	op.do("tick web-1, shift-click web-3",
		chromedp.Click(box(c.web1)),
		chromedp.QueryAfter(box(c.web3), func(ctx context.Context, tg *chromedp.Target, ns []*chromedp.Node) (chromedp.Void, error) {
			return chromedp.Run(ctx, chromedp.MouseClickNode(ns[0], chromedp.ButtonModifiers(chromedp.ModifierShift)))
		}),
	)
	selected := func() string {
		return jsEval[string](op, `Array.from(document.querySelectorAll("input[name=agent]:checked")).map(b => b.value).join(",") + " " + document.querySelector(".selected-count").textContent`)
	}
	if got, want := selected(), c.web1.id+","+c.web2.id+","+c.web3.id+" (3 selected)"; got != want {
		t.Fatalf("after the shift-click: %q, want %q", got, want)
	}
	op.do("untick web-2", chromedp.Click(box(c.web2)))
	if got, want := selected(), c.web1.id+","+c.web3.id+" (2 selected)"; got != want {
		t.Fatalf("after unticking web-2: %q, want %q", got, want)
	}

	// Hold both agents, so that their results come after the page is up.
	for _, m := range []*member{c.web1, c.web3} {
		c.signal(t, m, syscall.SIGSTOP)
		t.Cleanup(func() { _ = m.proc.(*fileProc).cmd.Process.Signal(syscall.SIGCONT) })
	}
	before := c.latestSeq(t)
	op.do("issue ping to the selection",
		chromedp.SetValue(chromedp.CSS(`#bulk-action select[name="name"]`), "ping"),
		chromedp.Click(chromedp.CSS(`#bulk-action button`)),
		chromedp.WaitVisible(chromedp.CSS("#results")),
	)
	u := op.location()
	seq, err := strconv.ParseUint(strings.TrimPrefix(u.Path, "/commands/"), 10, 64)
	if err != nil || seq != before+1 {
		t.Fatalf("after issuing: at %s, want /commands/%d", u, before+1)
	}
	res, err := c.admin.CommandResults(t.Context(), seq)
	if err != nil {
		t.Fatal(err)
	}
	targets := slices.Clone(res.Target.Agents)
	sort.Strings(targets)
	want := []string{c.web1.id, c.web3.id}
	sort.Strings(want)
	if res.Name != "ping" || res.Target.All || len(res.Target.Groups) > 0 || !slices.Equal(targets, want) {
		t.Fatalf("the console issued %s to %+v, want ping to %v", res.Name, res.Target, want)
	}
	jsEval[int](op, `window.__marker = 1`)
	op.waitJS("the live stream, both pending", `document.body.classList.contains("js-live") &&
		document.getElementById("n-pending").textContent === "2" && document.getElementById("n-targeted").textContent === "2"`)
	for _, m := range []*member{c.web1, c.web3} {
		c.signal(t, m, syscall.SIGCONT)
	}
	row := func(m *member, cls string) string {
		return `document.querySelector('#results tr[data-agent="` + m.id + `"] ` + cls + `').textContent`
	}
	op.waitJS("both results", `document.getElementById("n-ok").textContent === "2" && document.getElementById("n-pending").textContent === "0" && `+
		row(c.web1, "span.status")+` === "ok" && `+row(c.web3, "span.status")+` === "ok" && `+
		row(c.web1, "td.output")+` === "pong from web-1" && `+row(c.web3, "td.output")+` === "pong from web-3"`)
	if got := jsEval[string](op, `String(window.__marker) + " " + document.querySelector("#progress .okbar").getAttribute("width")`); got != "1 1000" {
		t.Errorf("marker and bar: %q, want \"1 1000\" (the page reloaded, or the bar did not move)", got)
	}
	// The store agrees.
	if res, err = c.admin.CommandResults(t.Context(), seq); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.Status != "ok" {
			t.Errorf("admin API: command %d, agent %s: %s", seq, r.AgentID, r.Status)
		}
	}
}

// testHostile: an agent's HTML is text on every page that shows it, and
// runs nowhere.
func (c *consoleFleet) testHostile(t *testing.T, op *tab) {
	text := func(expr string) string { return jsEval[string](op, expr) }
	texts := func(css string) []string {
		return jsEval[[]string](op, `Array.from(document.querySelectorAll(`+strconv.Quote(css)+`)).map(e => e.textContent)`)
	}
	op.open("/")
	op.safe("dashboard")
	if got := text(`document.querySelector("#tile-newest").textContent`); !strings.Contains(got, "on definitions "+evilDefs+" (1)") {
		t.Errorf("dashboard's definitions tile: %q, want it to name %q", got, evilDefs)
	}
	if got := texts("table.versions a"); !slices.Contains(got, evilDefs) {
		t.Errorf("dashboard's versions: %q, want %q among them", got, evilDefs)
	}

	op.open("/agents")
	op.safe("agents")
	if got := text(`document.querySelector('tr[data-agent="` + c.evil.id + `"] td.hostname').textContent`); got != evilHost {
		t.Errorf("agents list: evil's hostname shows as %q", got)
	}
	if got := text(`document.querySelector('input[value="` + c.evil.id + `"]').getAttribute("aria-label")`); got != "select "+evilHost {
		t.Errorf("agents list: evil's checkbox label %q", got)
	}
	if got := texts(`select[name="defs"] option`); !slices.Contains(got, evilDefs) {
		t.Errorf("agents list: definitions choices %q, want %q among them", got, evilDefs)
	}

	op.open("/agents/" + c.evil.id)
	op.safe("agent page")
	if got := text(`document.querySelector("dd.hostname").textContent`); got != evilHost {
		t.Errorf("agent page: hostname %q", got)
	}
	if got := text(`document.querySelector("main h1").textContent + "|" + document.title`); got != "Agent "+evilHost+"|Agent "+evilHost+" · Vigil" {
		t.Errorf("agent page: heading and title %q", got)
	}
	if got := texts("table.detections td.path"); !sameSet(got, []string{evilPath, evilPath2}) {
		t.Errorf("agent page: detection paths %q", got)
	}
	if got := texts("table.detections td.signature"); !slices.Equal(got, []string{evilSig, evilSig}) {
		t.Errorf("agent page: signatures %q", got)
	}
	if got := text(`document.querySelector("table.quarantine td.path").textContent + "|" + document.querySelector("table.quarantine code").textContent + "|" + document.querySelectorAll("button.restore").length`); got != evilPath+"|"+evilQID+"|1" {
		t.Errorf("agent page: quarantine %q, want the path, the id and an operator's Restore", got)
	}

	op.open("/detections?agent=" + c.evil.id)
	op.safe("detections")
	if got := texts("table.detections td.hostname"); !slices.Equal(got, []string{evilHost, evilHost}) {
		t.Errorf("detections: hostnames %q", got)
	}
	if got := texts("table.detections td.path"); !sameSet(got, []string{evilPath, evilPath2}) {
		t.Errorf("detections: paths %q", got)
	}
	if got := texts("table.detections td.signature"); !slices.Equal(got, []string{evilSig, evilSig}) {
		t.Errorf("detections: signatures %q", got)
	}

	// Its ping's answer names it too, on the live command page: issued
	// from the commands page's form.
	op.open("/commands")
	op.do("issue ping to evil",
		chromedp.SetValue(chromedp.CSS(`#issue select[name="name"]`), "ping"),
		chromedp.Click(chromedp.CSS(`#issue input[name="target"][value="agents"]`)),
		chromedp.SendKeys(chromedp.CSS(`#issue input[name="agents"]`), c.evil.id),
		chromedp.Click(chromedp.CSS(`#issue button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#results")),
	)
	r := `document.querySelector('#results tr[data-agent="` + c.evil.id + `"] `
	op.waitJS("evil's pong", r+`span.status').textContent === "ok"`)
	op.safe("command page")
	if got := text(r + `td.output').textContent + "|" + ` + r + `td.hostname').textContent`); got != "pong from "+evilHost+"|"+evilHost {
		t.Errorf("command page: evil's row %q", got)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// testURLFilters: filters, sort and page given in the URL apply, and the
// filter form keeps the sort.
func (c *consoleFleet) testURLFilters(t *testing.T, b *tab) {
	b.login("/agents?group=web&sort=hostname&dir=desc", "olga", "olga-password-1")
	if u := b.location(); u.Path != "/agents" || u.Query().Encode() != "dir=desc&group=web&sort=hostname" {
		t.Errorf("after login: at %s, want the bookmarked list", u)
	}
	if got, want := b.rows(), []string{c.web3.id, c.web2.id, c.web1.id}; !slices.Equal(got, want) {
		t.Errorf("group=web&sort=hostname&dir=desc: %v, want web-3, web-2, web-1 %v", got, want)
	}
	if got := jsEval[string](b, `document.querySelector('select[name="group"]').value + "|" +
		Array.from(document.querySelectorAll("table.agents thead th")).filter(th => th.textContent.includes("▼")).map(th => th.textContent.trim()).join(",")`); got != "web|Hostname ▼" {
		t.Errorf("the form's group and the sorted column: %q, want \"web|Hostname ▼\"", got)
	}
	// The filter form keeps the sort: choose group db and submit.
	b.do("filter on group db",
		chromedp.SetValue(chromedp.CSS(`select[name="group"]`), "db"),
		chromedp.Click(chromedp.CSS(`form.filters button`)),
	)
	b.waitJS("the db list", `new URLSearchParams(location.search).get("group") === "db" && document.readyState === "complete"`)
	if q := b.location().Query(); q.Get("sort") != "hostname" || q.Get("dir") != "desc" {
		t.Errorf("the filter form dropped the sort: %v", q)
	}
	if got, want := b.rows(), []string{c.web2.id, c.evil.id}; !slices.Equal(got, want) {
		t.Errorf("group=db by hostname, descending: %v, want web-2, evil %v", got, want)
	}

	// All agents by hostname, two a page, page 2.
	as := c.agents(t)
	sort.Slice(as, func(i, j int) bool { return as[i].Hostname < as[j].Hostname })
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/agents?sort=hostname&per=2&page=2", []string{as[2].ID, as[3].ID}},
		{"/agents?q=WEB-2", []string{c.web2.id}},
		{"/agents?status=revoked", []string{c.ghostRev}},
		{"/agents?group=ghosts&sort=hostname&dir=desc", []string{c.ghostRev, c.ghostLate}},
	} {
		b.open(tc.path)
		if got := b.rows(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.path, got, tc.want)
		}
	}
	if got := jsEval[string](b, `document.querySelector("nav.pages span").textContent`); got != "page 1 of 1" {
		t.Errorf("ghosts list: %q", got)
	}
	b.open("/agents?sort=hostname&per=2&page=2")
	if got, want := jsEval[string](b, `document.querySelector("nav.pages span").textContent`), fmt.Sprintf("page 2 of %d", (len(as)+1)/2); got != want {
		t.Errorf("per=2&page=2: %q, want %q", got, want)
	}
}

// testCSV: "CSV of all N" of a filtered, sorted, paged list is exactly
// its rows, every page, in its order.
func (c *consoleFleet) testCSV(t *testing.T, b *tab) {
	b.login("/agents?group=web&sort=hostname&dir=desc&per=2", "olga", "olga-password-1")
	const cellsJS = `Array.from(document.querySelectorAll("table.agents tbody tr[data-agent]")).map(r =>
		Array.from(r.querySelectorAll("td")).filter(td => !td.querySelector("input")).map(td => td.textContent))`
	table := jsEval[[][]string](b, cellsJS)
	link := jsEval[[]string](b, `[document.getElementById("csv").getAttribute("href"), document.getElementById("csv").textContent]`)
	if !b.follow("next page", `a[rel="next"]`) {
		t.Fatalf("the list of 3 web agents, 2 a page, has no next page")
	}
	table = append(table, jsEval[[][]string](b, cellsJS)...)
	if len(table) != 3 {
		t.Fatalf("the two pages hold %d rows, want 3: %q", len(table), table)
	}
	if link[1] != "CSV of all 3" {
		t.Errorf("the CSV link says %q, want \"CSV of all 3\"", link[1])
	}
	u, err := url.Parse(link[0])
	if err != nil || u.Path != "/agents.csv" || u.Query().Encode() != "dir=desc&group=web&sort=hostname" {
		t.Errorf("the CSV link %q does not carry the list's filters and sort (and no page)", link[0])
	}
	ck := b.session()
	if ck == nil {
		t.Fatal("no session cookie in the browser")
	}
	status, _, body := consoleDo(t, http.MethodGet, c.s.admin+link[0], ck, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s with the session: %d: %s", link[0], status, body)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV: %v\n%s", err, body)
	}
	if want := "id,hostname,status,os,arch,version,defs_version,groups,last_seen,detections"; len(recs) == 0 || strings.Join(recs[0], ",") != want {
		t.Fatalf("the CSV's header: %q, want %s", recs[:min(1, len(recs))], want)
	}
	recs = recs[1:]
	if len(recs) != len(table) {
		t.Fatalf("the CSV has %d rows, the list %d:\n%s", len(recs), len(table), body)
	}
	for i, r := range recs {
		row := table[i]
		// The table: id, hostname, status, os/arch, version, definitions,
		// groups, last seen, detections. Last seen moves at each check-in;
		// the rest must be the CSV's.
		got := []string{r[0], r[1], r[2], r[3] + "/" + r[4], r[5], r[6], strings.Join(strings.Fields(r[7]), ", "), r[9]}
		want := []string{row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[8]}
		if !slices.Equal(got, want) {
			t.Errorf("CSV row %d %q, the list's %q", i+1, got, want)
		}
	}
	if ids := []string{recs[0][0], recs[1][0], recs[2][0]}; !slices.Equal(ids, []string{c.web3.id, c.web2.id, c.web1.id}) {
		t.Errorf("the CSV lists %v, want web-3, web-2, web-1", ids)
	}
}

// follow clicks the link css, if there is one, and waits for the next page.
func (b *tab) follow(what, css string) bool {
	b.t.Helper()
	if jsEval[int](b, `document.querySelectorAll(`+strconv.Quote(css)+`).length`) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(css)))
	if err != nil || resp.Status != http.StatusOK {
		b.t.Fatalf("%s: %v (%v)", what, err, resp)
	}
	return true
}

// testViewer: a viewer sees no issue or restore control, and a POST made
// by hand with the viewer's session and token is refused 403, issues
// nothing, and is in the audit log under the viewer's name.
func (c *consoleFleet) testViewer(t *testing.T, b *tab, latest uint64) {
	b.login("/agents", "vera", "vera-password-1")
	if n := jsEval[int](b, `document.querySelectorAll("table.agents tbody tr[data-agent]").length`); n != 6 {
		t.Errorf("the viewer's agents list has %d rows, want 6", n)
	}
	controls := `document.querySelectorAll('input[type="checkbox"], #bulk-action, #issue, button.restore, ' +
		'form[method="post"]:not(.logout) button, form[method="post"]:not(.logout) input[type="submit"], form[method="post"]:not(.logout) input[name="csrf"]').length`
	if n := jsEval[int](b, controls); n != 0 {
		t.Errorf("the viewer's agents list has %d selection or issue controls", n)
	}
	b.open("/agents/" + c.evil.id)
	if got := jsEval[string](b, `document.querySelector("table.quarantine code").textContent`); got != evilQID {
		t.Errorf("the viewer's agent page: quarantine %q, want %s", got, evilQID)
	}
	if n := jsEval[int](b, controls); n != 0 {
		t.Errorf("the viewer's agent page has %d restore controls", n)
	}
	b.open("/commands")
	if n := jsEval[int](b, controls); n != 0 {
		t.Errorf("the viewer's commands page has %d issue controls", n)
	}
	csrf := jsEval[string](b, `document.querySelector('form.logout input[name="csrf"]').value`)
	ck := b.session()
	if ck == nil || csrf == "" {
		t.Fatalf("viewer's session %v, token %q", ck, csrf)
	}
	restorePath := "/agents/" + c.evil.id + "/restore"
	for _, p := range []struct {
		path string
		form url.Values
	}{
		{"/commands", url.Values{"csrf": {csrf}, "name": {"ping"}, "target": {"all"}}},
		{restorePath, url.Values{"csrf": {csrf}, "id": {evilQID}}},
	} {
		status, _, body := consoleDo(t, http.MethodPost, c.s.admin+p.path, ck, p.form)
		if status != http.StatusForbidden || !strings.Contains(body, "a viewer may not") {
			t.Errorf("the viewer's POST %s: %d %q, want 403 for the role", p.path, status, strings.TrimSpace(body))
		}
	}
	if l := c.latestSeq(t); l != latest {
		t.Errorf("after the viewer's refused POSTs the latest command is %d, was %d", l, latest)
	}
	out, err := c.f.vigil("audit", "-json", "-actor", "vera", "-action", "denied")
	if err != nil {
		t.Fatal(err)
	}
	var es []api.AuditEntry
	if err := json.Unmarshal(out, &es); err != nil {
		t.Fatalf("vigil audit -json: %v\n%s", err, out)
	}
	var targets []string
	for _, e := range es {
		if e.Actor != "vera" || e.OK || e.Action != "denied" || e.Addr != "127.0.0.1" {
			t.Errorf("audit entry %+v, want vera denied from 127.0.0.1", e)
		}
		targets = append(targets, e.Target)
	}
	if !sameSet(targets, []string{"/commands", restorePath}) {
		t.Errorf("vigil audit -actor vera -action denied: %q, want the two refused POSTs\n%s", targets, out)
	}
}

// testCrossOrigin: a page of another origin whose form posts itself to
// the console (with the session's token, and the SameSite cookie, which
// goes along: 127.0.0.1 on another port is the same site) is refused 403,
// and nothing is issued.
func (c *consoleFleet) testCrossOrigin(t *testing.T, b *tab, latest uint64) {
	b.login("/commands", "olga", "olga-password-1")
	csrf := jsEval[string](b, `document.querySelector('#issue input[name="csrf"]').value`)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>prize</title><form id="f" method="post" action="%s/commands">`+
			`<input type="hidden" name="csrf" value="%s"><input type="hidden" name="name" value="ping">`+
			`<input type="hidden" name="target" value="all"></form>`+
			`<script>window.addEventListener("load", function () { document.getElementById("f").submit(); });</script>`,
			c.s.admin, html.EscapeString(csrf))
	}))
	t.Cleanup(evil.Close)
	if !strings.HasPrefix(evil.URL, "http://127.0.0.1:") || evil.URL == c.s.admin {
		t.Fatalf("the other origin %s", evil.URL)
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	ev, err := chromedp.Run(ctx, chromedp.WaitEvent(network.ResponseReceived, func(e network.EventResponseReceived) bool {
		return e.Type == network.ResourceTypeDocument && e.Response.URL == c.s.admin+"/commands"
	}, chromedp.Navigate(evil.URL)))
	if err != nil {
		t.Fatalf("waiting for the other origin's form to reach the console: %v", err)
	}
	if ev.Response.Status != http.StatusForbidden {
		t.Errorf("the form from %s: %d, want 403", evil.URL, ev.Response.Status)
	}
	b.waitJS("the refusal", `location.href === `+strconv.Quote(c.s.admin+"/commands")+` && document.body.textContent.includes("cross-origin request refused")`)
	if l := c.latestSeq(t); l != latest {
		t.Errorf("a form from another origin issued a command (latest %d → %d)", latest, l)
	}
	// The session itself still works: the refusal was for the origin.
	b.open("/commands")
	if n := jsEval[int](b, `document.querySelectorAll("#issue").length`); n != 1 {
		t.Errorf("back on the console, the operator has %d issue forms", n)
	}
}

// testLogout: after Log out the browser is sent to the login page, and
// the old cookie, replayed, is worth nothing.
func (c *consoleFleet) testLogout(t *testing.T, b *tab, latest uint64) {
	b.login("/agents", "lena", "lena-password-1")
	ck := b.session()
	csrf := jsEval[string](b, `document.querySelector('form.logout input[name="csrf"]').value`)
	if ck == nil {
		t.Fatal("no session cookie after login")
	}
	if status, _, body := consoleDo(t, http.MethodGet, c.s.admin+"/agents", ck, nil); status != http.StatusOK || !strings.Contains(body, `class="who">lena (operator)`) {
		t.Fatalf("the session's cookie, replayed before logout: %d, want lena's agents list", status)
	}
	b.do("log out", chromedp.Click(chromedp.CSS(`form.logout button`)), chromedp.WaitVisible(chromedp.CSS("form.login")))
	if b.session() != nil {
		t.Error("the browser still holds a session cookie after logout")
	}
	b.do("open /agents", chromedp.Navigate(c.s.admin+"/agents"), chromedp.WaitVisible(chromedp.CSS("form.login")))
	if u := b.location(); u.Path != "/login" || u.Query().Get("next") != "/agents" {
		t.Errorf("/agents after logout: at %s, want /login?next=/agents", u)
	}
	status, loc, _ := consoleDo(t, http.MethodGet, c.s.admin+"/agents", ck, nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?") {
		t.Errorf("the old cookie, replayed on GET /agents: %d to %q, want 303 to /login", status, loc)
	}
	status, _, body := consoleDo(t, http.MethodPost, c.s.admin+"/commands", ck, url.Values{"csrf": {csrf}, "name": {"ping"}, "target": {"all"}})
	if status != http.StatusUnauthorized {
		t.Errorf("the old cookie and token, replayed on POST /commands: %d %q, want 401", status, strings.TrimSpace(body))
	}
	if l := c.latestSeq(t); l != latest {
		t.Errorf("the old session issued a command (latest %d → %d)", latest, l)
	}
	out, err := c.f.vigil("audit", "-json", "-actor", "lena", "-action", "logout")
	if err != nil {
		t.Fatal(err)
	}
	var es []api.AuditEntry
	if err := json.Unmarshal(out, &es); err != nil || len(es) != 1 || !es[0].OK {
		t.Errorf("vigil audit -actor lena -action logout: %v\n%s\nwant one logout", err, out)
	}
}
