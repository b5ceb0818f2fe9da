package console

import (
	"context"
	"flag"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-fleet/vigil/internal/console/consoletest"
)

var screenshots = flag.String("screenshots", "", "TestBrowser writes a screenshot of each page it visits into this directory (docs/console)")

// shot saves the page as name.png in the -screenshots directory, if given.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name+".png"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func poll(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("waiting for %s: %v", expr, err)
	}
}

// TestBrowser drives the console in real headless Chromium: log in to a
// bookmarked filtered list, see an agent's HTML shown as text, select a
// range with shift-click, issue ping to it from the bulk action, and
// watch the results arrive with no reload; then log out.
func TestBrowser(t *testing.T) {
	t.Parallel()
	ctx := consoletest.Browser(t, 60*time.Second)
	f := newFixture(t, nil)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open a bookmark", chromedp.Navigate(f.srv.URL+"/agents?group=web"), chromedp.WaitVisible(chromedp.CSS("form.login")))
	shot(t, ctx, "login")
	do("log in",
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), "olga"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "op-secret"),
		chromedp.Click(chromedp.CSS(`form.login button`)),
		chromedp.WaitVisible(chromedp.CSS("table.agents")),
	)
	if got := eval[string](t, ctx, `Array.from(document.querySelectorAll("tr[data-agent]")).map(r => r.dataset.agent).join(",")`); got != "a1,a2,a5" {
		t.Errorf("the bookmarked filter lists %s, want a1,a2,a5", got)
	}
	// The agent's HTML is text: no element injected, no script run.
	if got := eval[string](t, ctx, `document.querySelector('tr[data-agent="a5"] td.hostname').textContent`); got != evilHost {
		t.Errorf("a5's hostname shows as %q", got)
	}
	if n := eval[int](t, ctx, `document.scripts.length + document.querySelectorAll("tbody script, tbody img").length`); n != 1 {
		t.Errorf("%d scripts and injected elements, want the console's one script", n)
	}

	// Tick a1, shift-click a5: a1, a2 and a5 are selected.
	do("select a range",
		chromedp.Click(chromedp.CSS(`tr[data-agent="a1"] input[type="checkbox"]`)),
		chromedp.QueryAfter(chromedp.CSS(`tr[data-agent="a5"] input[type="checkbox"]`), func(ctx context.Context, tg *chromedp.Target, ns []*chromedp.Node) (chromedp.Void, error) {
			return chromedp.Run(ctx, chromedp.MouseClickNode(ns[0], chromedp.ButtonModifiers(chromedp.ModifierShift)))
		}),
	)
	if got := eval[string](t, ctx, `Array.from(document.querySelectorAll("input[name=agent]:checked")).map(b => b.value).join(",") + " " + document.querySelector(".selected-count").textContent`); got != "a1,a2,a5 (3 selected)" {
		t.Fatalf("after shift-click: %q", got)
	}
	shot(t, ctx, "agents")
	do("issue ping to the selection",
		chromedp.SetValue(chromedp.CSS(`#bulk-action select[name="name"]`), "ping"),
		chromedp.Click(chromedp.CSS(`#bulk-action button`)),
		chromedp.WaitVisible(chromedp.CSS("#results")),
	)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := strconv.ParseUint(loc[strings.LastIndex(loc, "/")+1:], 10, 64)
	if err != nil {
		t.Fatalf("after issuing: at %s", loc)
	}
	cmd, err := f.st.Command(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := decodeCommand(cmd); c.Name != "ping" || strings.Join(c.Target.Agents, ",") != "a1,a2,a5" {
		t.Fatalf("issued %+v", c)
	}
	// Results recorded in the store arrive on the open page.
	eval[int](t, ctx, `window.vigilMarker = 42`)
	poll(t, ctx, `document.body.classList.contains("js-live") && document.getElementById("n-pending").textContent === "3"`)
	f.result(seq, "a1", "ok")
	f.result(seq, "a2", "ok")
	poll(t, ctx, `document.getElementById("n-ok").textContent === "2" && document.getElementById("n-pending").textContent === "1"`)
	poll(t, ctx, `document.querySelector('tr[data-agent="a2"] span.status').textContent === "ok" &&
		document.querySelector('tr[data-agent="a2"] td.output').textContent === "pong from a2"`)
	if got := eval[string](t, ctx, `window.vigilMarker + " " + document.querySelector("#progress .okbar").getAttribute("width")`); got != "42 666" {
		t.Errorf("marker and bar: %q (the page reloaded, or the bar did not move)", got)
	}
	shot(t, ctx, "command")
	for _, p := range []struct{ name, path string }{
		{"dashboard", "/"}, {"agent", "/agents/a1"}, {"commands", "/commands"}, {"detections", "/detections"}, {"audit", "/audit"},
	} {
		do(p.name, chromedp.Navigate(f.srv.URL+p.path), chromedp.WaitVisible(chromedp.CSS("main h1")))
		shot(t, ctx, p.name)
	}

	// A form on another origin (another port of 127.0.0.1: the same site,
	// so the SameSite cookie goes with it), even one holding the session's
	// token, is refused, and nothing is issued.
	tok := eval[string](t, ctx, `document.querySelector('input[name="csrf"]').value`)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!DOCTYPE html><form method="post" action="%s/commands"><input type="hidden" name="csrf" value="%s">`+
			`<input type="hidden" name="name" value="ping"><input type="hidden" name="target" value="all"><button id="go">go</button></form>`,
			f.srv.URL, html.EscapeString(tok))
	}))
	defer evil.Close()
	latest, _ := f.st.LatestSeq(context.Background())
	do("open another origin's page", chromedp.Navigate(evil.URL))
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#go")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusForbidden || resp.URL != f.srv.URL+"/commands" {
		t.Errorf("a form from another origin: %d at %s, want 403", resp.Status, resp.URL)
	}
	if l, _ := f.st.LatestSeq(context.Background()); l != latest {
		t.Errorf("a form from another origin issued a command (%d → %d)", latest, l)
	}

	do("log out",
		chromedp.Navigate(f.srv.URL+"/"),
		chromedp.Click(chromedp.CSS(`form.logout button`)),
		chromedp.WaitVisible(chromedp.CSS("form.login")),
		chromedp.Navigate(f.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("form.login")),
	)
}
