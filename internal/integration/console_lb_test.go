//go:build linux

package integration

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/console/consoletest"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
)

// TestConsoleSessionAcrossInstances: two `vigil server` processes over
// one PostgreSQL database, as behind a load balancer that sends one
// browser's requests to either. An operator logs in on instance A's
// console in headless Chromium; the browser sends A's session cookie to
// instance B (a cookie is a host's, whatever the port), and B serves its
// pages without asking for a login, accepts a command issued from its
// form (the CSRF token of the session made on A), and attributes it to
// the operator; logging out on B ends the session on A too.
func TestConsoleSessionAcrossInstances(t *testing.T) {
	t.Parallel()
	bctx := consoletest.Browser(t, 2*time.Minute)
	if err := chromedp.Do(bctx); err != nil { // starts the browser, for the tab
		t.Fatalf("starting chromium: %v", err)
	}
	dsn := pgtest.Start(t).NewDatabase(t)
	ins := startInstances(t, 2, dsn, freeUDPPort(t))
	a, b := ins[0], ins[1]
	addUserAt(t, a.admin, a.dataDir, "olga", "operator", "correct horse battery")

	op := newTab(t, bctx, a.admin)
	op.login("/agents", "olga", "correct horse battery")
	ck := op.session()
	if ck == nil {
		t.Fatal("no session cookie after logging in on A")
	}
	csrfA := jsEval[string](op, `document.querySelector('form.logout input[name="csrf"]').value`)

	// The browser holds A's cookie for B's origin too (same host, another
	// port): it will send it there.
	ctx, cancel := context.WithTimeout(op.ctx, stepTimeout)
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.admin + "/"}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	sent := false
	for _, c := range res.Cookies {
		sent = sent || (c.Name == ck.Name && c.Value == ck.Value)
	}
	if !sent {
		t.Fatalf("the browser does not send A's session cookie to B (%s): %+v", b.admin, res.Cookies)
	}

	// B serves its pages to the session made on A.
	op.base = b.admin
	for _, path := range []string{"/agents", "/commands"} {
		op.do("open "+path+" on B", chromedp.Navigate(b.admin+path), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if loc := op.location(); loc.Host != hostOf(t, b.admin) || loc.Path != path {
			t.Fatalf("opening %s on B: at %s (asked to log in?)", path, loc)
		}
		if who := jsEval[string](op, `document.querySelector("form.logout .who").textContent`); !strings.HasPrefix(who, "olga (") {
			t.Fatalf("B's %s says the user is %q", path, who)
		}
	}
	if csrfB := jsEval[string](op, `document.querySelector('#issue input[name="csrf"]').value`); csrfB != csrfA {
		t.Fatalf("B's issue form carries the CSRF token %q, A's session %q", csrfB, csrfA)
	}

	// A state-changing form on B, with the session's token: accepted.
	before, err := a.client(t).ServerInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	op.do("issue ping to all agents from B's console",
		chromedp.SetValue(chromedp.CSS(`#issue select[name="name"]`), "ping"),
		chromedp.Click(chromedp.CSS(`#issue input[name="target"][value="all"]`)),
		chromedp.Click(chromedp.CSS(`#issue button[type="submit"]`)),
	)
	want := "/commands/" + strconv.FormatUint(before.LatestSeq+1, 10)
	op.waitJS("the command's page on B", `location.pathname === "`+want+`"`)
	after, err := a.client(t).ServerInfo(t.Context())
	if err != nil || after.LatestSeq != before.LatestSeq+1 {
		t.Fatalf("after issuing on B, A's latest sequence is %d, %v; want %d", after.LatestSeq, err, before.LatestSeq+1)
	}
	audit, err := a.client(t).Audit(t.Context(), api.AuditFilter{Action: auth.EventCommand})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 1 || audit[0].Actor != "olga" || audit[0].Target != strconv.FormatUint(after.LatestSeq, 10) || !audit[0].OK {
		t.Errorf("the command issued on B is audited as %+v; want one by olga of %d", audit, after.LatestSeq)
	}

	// The cookie, outside the browser, is served by A: the session is
	// live there.
	if !cookieServed(t, a.admin, ck) {
		t.Fatal("before the logout: A does not serve the session's cookie")
	}
	// Logout on B ends the session on A (not only the browser's cookie:
	// the cookie, replayed to A, is refused).
	op.do("log out on B", chromedp.Click(chromedp.CSS(`form.logout button`)), chromedp.WaitVisible(chromedp.CSS("form.login")))
	if cookieServed(t, a.admin, ck) {
		t.Error("after the logout on B: A still serves the session's cookie")
	}
	if cookieServed(t, b.admin, ck) {
		t.Error("after the logout on B: B still serves the session's cookie")
	}
	op.base = a.admin
	op.do("open /agents on A", chromedp.Navigate(a.admin+"/agents"), chromedp.WaitVisible(chromedp.CSS("form.login")))
}

func hostOf(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// cookieServed reports whether the console at base serves /agents to a
// client holding only the session cookie ck (false: sent to the login
// page).
func cookieServed(t *testing.T, base string, ck *http.Cookie) bool {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(base + "/")
	jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/"}})
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(base + "/agents")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == 200 && resp.Request.URL.Path == "/agents":
		return true
	case resp.StatusCode == 200 && resp.Request.URL.Path == "/login":
		return false
	}
	t.Fatalf("GET %s/agents with the session cookie: %d at %s", base, resp.StatusCode, resp.Request.URL)
	return false
}
