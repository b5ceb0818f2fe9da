package console

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// clock is the console's clock in tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// users is the test's Authenticator: passwords and roles in a map.
type users struct {
	mu        sync.Mutex
	m         map[string]struct{ pw, role string }
	throttled map[string]bool
}

func (u *users) Login(ctx context.Context, user, password, addr string) (auth.Principal, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.throttled[user] {
		return auth.Principal{}, &auth.ThrottledError{RetryAfter: 30 * time.Second}
	}
	e, ok := u.m[user]
	if !ok || e.pw != password {
		return auth.Principal{}, auth.ErrBadCredentials
	}
	return auth.Principal{User: user, Role: auth.Role(e.role), Via: auth.ViaPassword}, nil
}

func (u *users) Token(ctx context.Context, token, addr string) (auth.Principal, error) {
	return auth.Principal{}, auth.ErrBadCredentials
}

// auditLog records the console's audit events.
type auditLog struct {
	mu sync.Mutex
	es []auth.Event
}

func (a *auditLog) Audit(ctx context.Context, e auth.Event) error {
	a.mu.Lock()
	a.es = append(a.es, e)
	a.mu.Unlock()
	return nil
}

// AuditEvents reads the log newest first, as the store does (the store's
// AuditLog, whose filters storetest checks, is what the server gives).
func (a *auditLog) AuditEvents(ctx context.Context, q store.AuditQuery, fn func(auth.Event) error) error {
	a.mu.Lock()
	es := slices.Clone(a.es)
	a.mu.Unlock()
	n := 0
	for i := len(es) - 1; i >= 0 && (q.Limit <= 0 || n < q.Limit); i-- {
		e := es[i]
		if (q.Actor != "" && e.Actor != q.Actor) || (q.Action != "" && e.Action != q.Action) ||
			(!q.Since.IsZero() && e.Time.Before(q.Since)) || (!q.Until.IsZero() && !e.Time.Before(q.Until)) {
			continue
		}
		n++
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (a *auditLog) find(action, actor string) []auth.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auth.Event
	for _, e := range a.es {
		if e.Action == action && e.Actor == actor {
			out = append(out, e)
		}
	}
	return out
}

// issuer issues as the server does: the one validation, a signed
// envelope, the store's sequence.
type issuer struct {
	st  store.Store
	key ed25519.PrivateKey
	now func() time.Time
}

func (i *issuer) Send(ctx context.Context, req api.SendRequest) (api.CommandInfo, error) {
	c := command.Command{Name: req.Name, Args: req.Args, Target: req.Target}
	body, err := command.Encode(c)
	if err != nil {
		return api.CommandInfo{}, err
	}
	if req.Strict {
		for _, id := range req.Target.Agents {
			if _, err := i.st.Agent(ctx, id); err != nil {
				return api.CommandInfo{}, fmt.Errorf("no enrolled agent has the id %s; nothing was issued (strict)", id)
			}
		}
	}
	now := i.now()
	target, _ := json.Marshal(req.Target)
	sc, err := i.st.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		env, err := wire.Sign(i.key, wire.Header{Kind: wire.KindCommand, Epoch: i.st.Epoch(), Seq: seq, Issued: now, Expires: now.Add(time.Hour)}, body)
		if err != nil {
			return store.Command{}, err
		}
		return store.Command{Seq: seq, Name: c.Name, Target: string(target), Envelope: env, IssuedAt: now, Expires: now.Add(time.Hour)}, nil
	})
	if err != nil {
		return api.CommandInfo{}, err
	}
	return api.CommandInfo{Seq: sc.Seq, Name: c.Name, Args: c.Args, Target: c.Target, IssuedAt: now, Expires: sc.Expires}, nil
}

// The fleet of the tests.
const (
	evilHost = `<script>alert("host")</script>`
	evilPath = `/tmp/<img src=x onerror=alert(1)>.exe`
	evilSig  = `<script>alert("sig")</script>`
	csvHost  = `=HYPERLINK("http://evil.example","x")`
	quarID   = "0123456789abcdef0123456789abcdef"
)

type fixture struct {
	t     *testing.T
	st    *sqlite.Store
	clock *clock
	audit *auditLog
	users *users
	con   *Console
	srv   *httptest.Server
	cmds  *issuer
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{
		t: t, st: st, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, audit: &auditLog{},
		users: &users{m: map[string]struct{ pw, role string }{
			"olga": {"op-secret", "operator"}, "vera": {"view-secret", "viewer"}, "ada": {"admin-secret", "admin"},
		}, throttled: map[string]bool{}},
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	f.cmds = &issuer{st: st, key: key, now: f.clock.Now}
	f.fill()
	cfg := Config{
		Store: st, Issuer: f.cmds, Auth: f.users, Audit: f.audit, AuditLog: f.audit, CheckInInterval: time.Minute,
		IdleTimeout: 10 * time.Minute, MaxSessionAge: time.Hour, PollInterval: 20 * time.Millisecond, Now: f.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	f.con, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secure {
		f.srv = httptest.NewTLSServer(f.con)
	} else {
		f.srv = httptest.NewServer(f.con)
	}
	t.Cleanup(f.srv.Close)
	return f
}

// fill enrolls the fleet: two online agents in "web", one late in "db",
// one missing, one revoked, one whose hostname is HTML, one whose
// hostname is a spreadsheet formula; and their detections.
func (f *fixture) fill() {
	ctx := context.Background()
	now := f.clock.Now()
	type ag struct {
		id, host, os, defs string
		groups             []string
		seen               time.Duration
		revoked            bool
	}
	for _, a := range []ag{
		{"a1", "web-1", "linux", "2026120101", []string{"web"}, time.Minute, false},
		{"a2", "web-2", "darwin", "2026120101", []string{"web"}, 30 * time.Second, false},
		{"a3", "db-1", "linux", "2026120101", []string{"db"}, time.Hour, false},
		{"a4", "old-1", "linux", "2026110101", nil, 8 * 24 * time.Hour, false},
		{"a5", evilHost, "linux", "2026110101", []string{"web"}, 10 * time.Second, false},
		{"a6", csvHost, "darwin", "2026120101", []string{"db"}, 90 * time.Second, false},
		{"a7", "gone-1", "linux", "2026120101", nil, time.Minute, true},
	} {
		enrolled := now.Add(-30 * 24 * time.Hour)
		if err := f.st.EnrollAgent(ctx, store.Agent{
			ID: a.id, TokenHash: []byte(a.id), Hostname: a.host, OS: a.os, Arch: "amd64", Version: "1.4.0",
			Groups: a.groups, EnrolledAt: enrolled, LastSeen: enrolled,
		}); err != nil {
			f.t.Fatal(err)
		}
		var update *store.UpdateState
		if a.id == "a1" {
			update = &store.UpdateState{From: "2026113001", To: a.defs, At: now.Add(-2 * time.Hour), Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2}
		}
		if _, err := f.st.CheckIns(ctx, []store.CheckIn{{
			AgentID: a.id, Hostname: a.host, OS: a.os, Arch: "amd64", Version: "1.4.0", DefsVer: a.defs, Groups: a.groups,
			Counters: map[string]uint64{"dropped_truncated": 3, "dropped_foreign_group": 1},
			OnAccess: &store.OnAccess{Enabled: true, Running: true, Mode: "notify", Paths: []string{"/home"}},
			Update:   update,
			At:       now.Add(-a.seen),
		}}); err != nil {
			f.t.Fatal(err)
		}
		if a.revoked {
			if err := f.st.RevokeAgent(ctx, a.id, now.Add(-time.Minute)); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	scan := func(agent, report string, ds ...store.Detection) {
		for i := range ds {
			ds[i].AgentID, ds[i].SHA256, ds[i].DefsVer = agent, strings.Repeat("ab", 32), "2026120101"
		}
		if _, err := f.st.RecordScan(ctx, store.Scan{AgentID: agent, ReportID: report, DefsVer: "2026120101",
			StartedAt: now.Add(-2 * time.Hour), FinishedAt: now.Add(-2 * time.Hour), Files: 10, Detections: ds, ReceivedAt: now}); err != nil {
			f.t.Fatal(err)
		}
	}
	scan("a1", "r1",
		store.Detection{Path: "/home/u/eicar.com", Signature: "Eicar-Signature", FoundAt: now.Add(-time.Hour), Quarantine: quarID},
		store.Detection{Path: "/home/u/old.doc", Signature: "Doc.Macro-1", FoundAt: now.Add(-3 * 24 * time.Hour)})
	scan("a5", "r2", store.Detection{Path: evilPath, Signature: evilSig, FoundAt: now.Add(-10 * 24 * time.Hour)})
}

// client is one browser: a cookie jar.
type client struct {
	f *fixture
	c *http.Client
}

func (f *fixture) client() *client {
	jar, _ := cookiejar.New(nil)
	c := *f.srv.Client()
	c.Jar = jar
	return &client{f: f, c: &c}
}

func (c *client) get(path string) (*http.Response, string) {
	c.f.t.Helper()
	resp, err := c.c.Get(c.f.srv.URL + path)
	if err != nil {
		c.f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (c *client) post(path string, form url.Values, header http.Header) (*http.Response, string) {
	c.f.t.Helper()
	req, err := http.NewRequest("POST", c.f.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// login logs in and returns the session's CSRF token.
func (c *client) login(user, pw string) string {
	c.f.t.Helper()
	resp, body := c.post("/login", url.Values{"user": {user}, "password": {pw}}, nil)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" {
		c.f.t.Fatalf("login %s: %d at %s:\n%s", user, resp.StatusCode, resp.Request.URL, body)
	}
	return csrfOf(c.f.t, body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

var rowRE = regexp.MustCompile(`<tr data-agent="([^"]+)">`)

func rowIDs(body string) []string {
	var ids []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

var tileRE = regexp.MustCompile(`<a class="tile[^"]*" id="(tile-[a-z0-9]+)" href="([^"]+)"><span class="n">([^<]+)</span>`)

type tile struct{ href, n string }

func tiles(t *testing.T, body string) map[string]tile {
	t.Helper()
	out := map[string]tile{}
	for _, m := range tileRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = tile{href: strings.ReplaceAll(m[2], "&amp;", "&"), n: m[3]}
	}
	if len(out) == 0 {
		t.Fatalf("no tiles in:\n%s", body)
	}
	return out
}

func TestDashboardCountsAndTiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// Two commands: one everyone answered, one in flight.
	c := f.client()
	c.login("olga", "op-secret")
	seqDone := f.issue(api.SendRequest{Name: "ping", Target: command.Target{Agents: []string{"a1"}}})
	f.result(seqDone, "a1", "ok")
	seqFlight := f.issue(api.SendRequest{Name: "ping", Target: command.Target{Groups: []string{"web"}}})
	f.result(seqFlight, "a2", "ok")

	_, body := c.get("/")
	got := tiles(t, body)

	// What the store holds, counted here.
	agents, err := f.st.Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	want := map[string]int{}
	onNewest, active := 0, 0
	for _, a := range agents {
		want["tile-total"]++
		silent := now.Sub(a.LastSeen)
		switch {
		case !a.Revoked.IsZero():
			want["tile-revoked"]++
			continue
		case silent <= 2*time.Minute:
			want["tile-online"]++
		case silent > 7*24*time.Hour:
			want["tile-missing"]++
		default:
			want["tile-late"]++
		}
		active++
	}
	for _, a := range agents {
		if a.DefsVer == "2026120101" {
			onNewest++
		}
	}
	ds, _ := f.st.Detections(context.Background(), "", 1000)
	for _, d := range ds {
		if now.Sub(d.FoundAt) <= 24*time.Hour {
			want["tile-det24h"]++
		}
		if now.Sub(d.FoundAt) <= 7*24*time.Hour {
			want["tile-det7d"]++
		}
	}
	want["tile-inflight"] = 1
	for id, n := range want {
		if got[id].n != strconv.Itoa(n) {
			t.Errorf("%s = %q, the store holds %d", id, got[id].n, n)
		}
	}
	if share := fmt.Sprintf("%d%%", onNewest*100/len(agents)); got["tile-newest"].n != share {
		t.Errorf("share on the newest definitions = %q, want %q", got["tile-newest"].n, share)
	}
	if !strings.Contains(body, `<a href="/commands/`+strconv.FormatUint(seqFlight, 10)+`">`) || strings.Contains(body, `<a href="/commands/`+strconv.FormatUint(seqDone, 10)+`">`) {
		t.Errorf("the commands in flight should list %d and not %d:\n%s", seqFlight, seqDone, body)
	}

	// Each agents tile leads to the list it counts.
	for id, status := range map[string]string{"tile-online": StatusOnline, "tile-late": StatusLate, "tile-missing": StatusMissing, "tile-revoked": StatusRevoked} {
		_, list := c.get(got[id].href)
		ids := rowIDs(list)
		var wantIDs []string
		for _, a := range agents {
			if f.con.clock().Status(a) == status {
				wantIDs = append(wantIDs, a.ID)
			}
		}
		if !slices.Equal(ids, wantIDs) {
			t.Errorf("%s (%s) lists %v, want %v", id, got[id].href, ids, wantIDs)
		}
		if strconv.Itoa(len(ids)) != got[id].n {
			t.Errorf("%s says %s, its list has %d", id, got[id].n, len(ids))
		}
	}
	_, list := c.get(got["tile-newest"].href)
	if n := len(rowIDs(list)); n != onNewest {
		t.Errorf("the newest definitions tile's list has %d agents, want %d", n, onNewest)
	}
	_, dl := c.get(got["tile-det24h"].href)
	if n := strings.Count(dl, `<td class="path">`); strconv.Itoa(n) != got["tile-det24h"].n {
		t.Errorf("the 24 h detections list has %d rows, the tile says %s", n, got["tile-det24h"].n)
	}
	_, cl := c.get(got["tile-inflight"].href)
	if !strings.Contains(cl, fmt.Sprintf(`<a href="/commands/%d">`, seqFlight)) || strings.Contains(cl, fmt.Sprintf(`<a href="/commands/%d">`, seqDone)) {
		t.Errorf("the in-flight list is wrong:\n%s", cl)
	}
}

func (f *fixture) issue(req api.SendRequest) uint64 {
	f.t.Helper()
	info, err := f.cmds.Send(context.Background(), req)
	if err != nil {
		f.t.Fatal(err)
	}
	return info.Seq
}

func (f *fixture) result(seq uint64, agent, status string) {
	f.t.Helper()
	now := f.clock.Now()
	if err := f.st.RecordResults(context.Background(), []store.Result{{
		Seq: seq, AgentID: agent, Status: status, Output: "pong from " + agent, ExecutedAt: now, ReceivedAt: now,
	}}); err != nil {
		f.t.Fatal(err)
	}
}

func TestAgentsURLFilterSortAndPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	c.login("vera", "view-secret")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7"}},
		{"group=web&sort=hostname&dir=desc", []string{"a2", "a1", "a5"}}, // "<script>" sorts before letters
		{"os=darwin", []string{"a2", "a6"}},
		{"q=WEB-", []string{"a1", "a2"}},
		{"q=a3", []string{"a3"}},
		{"defs=2026110101", []string{"a4", "a5"}},
		{"detections=yes", []string{"a1", "a5"}},
		{"detections=no&status=online", []string{"a2", "a6"}},
		{"sort=lastseen", []string{"a4", "a3", "a6", "a1", "a7", "a2", "a5"}},
		{"sort=detections&dir=desc", []string{"a1", "a5", "a7", "a6", "a4", "a3", "a2"}}, // descending: ties by id descending too
		{"per=3&page=2", []string{"a4", "a5", "a6"}},
		{"per=3&page=3", []string{"a7"}},
	} {
		resp, body := c.get("/agents?" + tc.query)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", tc.query, resp.StatusCode)
		}
		if got := rowIDs(body); !slices.Equal(got, tc.want) {
			t.Errorf("/agents?%s lists %v, want %v", tc.query, got, tc.want)
		}
	}
	// The page keeps the filters in its links: the next page of a
	// filtered, sorted list is filtered and sorted.
	_, body := c.get("/agents?group=web&sort=hostname&per=1")
	next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(body)
	if next == nil {
		t.Fatalf("no next link:\n%s", body)
	}
	u, _ := url.Parse(strings.ReplaceAll(next[1], "&amp;", "&"))
	if q := u.Query(); q.Get("group") != "web" || q.Get("sort") != "hostname" || q.Get("page") != "2" || q.Get("per") != "1" {
		t.Errorf("next link %s lost the filters", next[1])
	}
	for _, bad := range []string{"status=asleep", "sort=color", "page=0", "per=100000", "detections=maybe", "dir=up"} {
		if resp, _ := c.get("/agents?" + bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("/agents?%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestCSVEqualsFilteredTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	c.login("vera", "view-secret")
	query := "status=online&sort=hostname&dir=desc&per=2"
	var table []string
	_, body := c.get("/agents?" + query)
	for {
		table = append(table, rowIDs(body)...)
		next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(body)
		if next == nil {
			break
		}
		_, body = c.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	}
	csvLink := regexp.MustCompile(`id="csv" href="([^"]+)"`).FindStringSubmatch(body)
	resp, data := c.get(strings.ReplaceAll(csvLink[1], "&amp;", "&"))
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("CSV Content-Type %q", ct)
	}
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	hosts := map[string]string{}
	for _, r := range recs[1:] {
		ids = append(ids, r[0])
		hosts[r[0]] = r[1]
	}
	if len(table) != 4 || !slices.Equal(ids, table) {
		t.Errorf("CSV has %v, the table %v", ids, table)
	}
	if hosts["a6"] != "'"+csvHost || hosts["a5"] != evilHost {
		t.Errorf("CSV cells: a6 %q (want the formula neutralised), a5 %q", hosts["a6"], hosts["a5"])
	}

	// Detections: the CSV has the rows of the filtered list.
	_, dl := c.get("/detections?since=168h")
	resp, data = c.get("/detections.csv?since=168h")
	recs, err = csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, err)
	}
	if n := strings.Count(dl, `<td class="path">`); len(recs)-1 != n || n != 2 {
		t.Errorf("detections CSV has %d rows, the list %d (want 2)", len(recs)-1, n)
	}
	_, dl = c.get("/detections?signature=eicar&agent=a1")
	if n := strings.Count(dl, `<td class="path">`); n != 1 || !strings.Contains(dl, "eicar.com") {
		t.Errorf("signature filter: %d rows", n)
	}
	if resp, _ := c.get("/detections?since=yesterday"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad time: %d, want 400", resp.StatusCode)
	}
}

// An agent's page shows its last definitions update as it reported it;
// the fleet list has it on the definitions cell.
func TestAgentUpdateShown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	c.login("vera", "view-secret")
	want := "2026120101, 41 KB of 22 MB (2 deltas), from 2026113001, " + f.clock.Now().Add(-2*time.Hour).UTC().Format("2006-01-02 15:04:05Z")
	if _, body := c.get("/agents/a1"); !strings.Contains(body, `<dd class="update">`+want+`</dd>`) {
		t.Errorf("a1's page does not show its update %q:\n%s", want, body)
	}
	if _, body := c.get("/agents/a3"); !strings.Contains(body, `<dd class="update">Not reported.</dd>`) {
		t.Errorf("a3's page shows an update it never reported:\n%s", body)
	}
	_, body := c.get("/agents")
	if !strings.Contains(body, `title="last update: 2026120101, 41 KB of 22 MB (2 deltas), from 2026113001"`) || strings.Count(body, `class="updated"`) != 1 {
		t.Errorf("the agents list does not show a1's update (and only it):\n%s", body)
	}
}

func TestViewerSeesNoControlsAndIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	tok := c.login("vera", "view-secret")
	seq := f.issue(api.SendRequest{Name: "ping", Target: command.Target{All: true}})
	for _, path := range []string{"/", "/agents", "/agents/a1", "/commands", fmt.Sprintf("/commands/%d", seq), "/detections"} {
		resp, body := c.get(path)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		for _, control := range []string{`type="checkbox" name="agent"`, `id="bulk-action"`, `id="issue"`, `class="restore"`, `/restore"`} {
			if strings.Contains(body, control) {
				t.Errorf("a viewer's %s shows %s", path, control)
			}
		}
	}
	// The same pages show them to an operator.
	op := f.client()
	op.login("olga", "op-secret")
	if _, body := op.get("/agents/a1"); !strings.Contains(body, `class="restore"`) {
		t.Errorf("an operator's agent page has no Restore button")
	}
	if _, body := op.get("/agents"); !strings.Contains(body, `id="bulk-action"`) || !strings.Contains(body, `name="agent" value="a1"`) {
		t.Errorf("an operator's agents list has no bulk action")
	}

	latest, _ := f.st.LatestSeq(context.Background())
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/commands", url.Values{"csrf": {tok}, "name": {"ping"}, "target": {"all"}}},
		{"/agents/a1/restore", url.Values{"csrf": {tok}, "id": {quarID}}},
	} {
		resp, _ := c.post(tc.path, tc.form, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a viewer's POST %s: %d, want 403", tc.path, resp.StatusCode)
		}
	}
	if l, _ := f.st.LatestSeq(context.Background()); l != latest {
		t.Errorf("a viewer's POST issued a command (%d → %d)", latest, l)
	}
	denied := f.audit.find(auth.EventDenied, "vera")
	if len(denied) != 2 || denied[0].Target != "/commands" || denied[1].Target != "/agents/a1/restore" || denied[0].OK || denied[0].Addr != "127.0.0.1" {
		t.Errorf("denials audited: %+v", denied)
	}
}

func TestCSRFAndCrossOrigin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	tok := c.login("olga", "op-secret")
	form := func(csrf string) url.Values {
		v := url.Values{"name": {"ping"}, "target": {"all"}}
		if csrf != "" {
			v.Set("csrf", csrf)
		}
		return v
	}
	latest, _ := f.st.LatestSeq(context.Background())
	for _, tc := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"no token", form(""), nil},
		{"a wrong token", form("x" + tok), nil},
		{"another origin", form(tok), http.Header{"Origin": {"http://evil.example"}}},
		{"a cross-site fetch", form(tok), http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"a same-site fetch", form(tok), http.Header{"Sec-Fetch-Site": {"same-site"}}},
	} {
		resp, body := c.post("/commands", tc.form, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403: %s", tc.name, resp.StatusCode, body)
		}
	}
	if l, _ := f.st.LatestSeq(context.Background()); l != latest {
		t.Fatalf("a refused POST issued a command")
	}
	// Logging in from another site is refused too.
	resp, _ := f.client().post("/login", url.Values{"user": {"olga"}, "password": {"op-secret"}}, http.Header{"Origin": {"http://evil.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-origin login: %d, want 403", resp.StatusCode)
	}
	// The same form from the console itself is issued.
	resp, body := c.post("/commands", form(tok), http.Header{"Origin": {f.srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
	l, _ := f.st.LatestSeq(context.Background())
	if resp.StatusCode != 200 || resp.Request.URL.Path != fmt.Sprintf("/commands/%d", l) || l != latest+1 {
		t.Fatalf("issue: %d at %s (latest %d):\n%s", resp.StatusCode, resp.Request.URL, l, body)
	}
	ev := f.audit.find(auth.EventCommand, "olga")
	if len(ev) != 1 || !ev[0].OK || ev[0].Target != strconv.FormatUint(l, 10) || ev[0].Detail != "ping → all agents" {
		t.Errorf("command audited: %+v", ev)
	}
}

func TestIssueForms(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	tok := c.login("olga", "op-secret")
	latest, _ := f.st.LatestSeq(context.Background())
	for _, tc := range []struct {
		form url.Values
		msg  string
	}{
		{url.Values{"name": {"restore"}, "args": {"id=42"}, "target": {"all"}}, "restore takes one argument, id=QUARANTINE-ID (32 hex digits)"},
		{url.Values{"name": {"set"}, "args": {"checkin_interval"}, "target": {"all"}}, `argument &#34;checkin_interval&#34;: want NAME=VALUE`},
		{url.Values{"name": {"set"}, "args": {"checkin_interval=1"}, "target": {"all"}}, `setting checkin_interval: want whole seconds from 5 to 86400, got &#34;1&#34;`},
		{url.Values{"name": {"format-disk"}, "target": {"all"}}, `unknown command &#34;format-disk&#34;`},
		{url.Values{"name": {"ping"}, "target": {"groups"}, "groups": {"bad group!"}}, `bad group name`},
		{url.Values{"name": {"ping"}, "target": {"agents"}}, "no agent given"},
		{url.Values{"name": {"ping"}, "target": {"everyone"}}, "choose a target"},
		{url.Values{"name": {"ping"}, "target": {"all"}, "expires": {"forever"}}, `expires &#34;forever&#34;: want a duration from 1s to 720h`},
	} {
		tc.form.Set("csrf", tok)
		resp, body := c.post("/commands", tc.form, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.msg) {
			t.Errorf("%v: %d, want 400 saying %q:\n%s", tc.form, resp.StatusCode, tc.msg, body)
		}
	}
	if l, _ := f.st.LatestSeq(context.Background()); l != latest {
		t.Fatalf("a refused form issued a command")
	}
	// The agents list's selection: two agents.
	resp, _ := c.post("/commands", url.Values{"csrf": {tok}, "name": {"scan"}, "args": {"paths=/home,/tmp quarantine=no"}, "target": {"agents"}, "agent": {"a1", "a3"}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("bulk issue: %d", resp.StatusCode)
	}
	sc, err := f.st.Command(context.Background(), latest+1)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := decodeCommand(sc)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Name != "scan" || !slices.Equal(cmd.Target.Agents, []string{"a1", "a3"}) || cmd.Args["paths"] != "/home,/tmp" || cmd.Args["quarantine"] != "no" {
		t.Errorf("issued %+v", cmd)
	}
	// "All N matching": the agents the list's filters match, on every
	// page, whatever rows were ticked.
	_, list := c.get("/agents?group=web&per=1&sort=hostname")
	m := regexp.MustCompile(`name="matching" value="([^"]+)"> all 3 matching`).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("no \"all 3 matching\" on the agents list:\n%s", list)
	}
	resp, _ = c.post("/commands", url.Values{"csrf": {tok}, "name": {"checkin"}, "matching": {strings.ReplaceAll(m[1], "&amp;", "&")}, "agent": {"a3"}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("all matching: %d", resp.StatusCode)
	}
	sc, _ = f.st.Command(context.Background(), latest+2)
	if cmd, _ = decodeCommand(sc); cmd.Name != "checkin" || !slices.Equal(cmd.Target.Groups, []string{"web"}) || len(cmd.Target.Agents) != 0 {
		t.Errorf("all matching a group issued %+v, want the group web", cmd)
	}
	// A group and more: each agent named.
	resp, _ = c.post("/commands", url.Values{"csrf": {tok}, "name": {"checkin"}, "matching": {"group=web&os=linux"}}, nil)
	sc, _ = f.st.Command(context.Background(), latest+3)
	if cmd, _ = decodeCommand(sc); resp.StatusCode != 200 || cmd.Name != "checkin" || !slices.Equal(cmd.Target.Agents, []string{"a1", "a5"}) {
		t.Errorf("all matching a group's linux agents: %d, issued %+v", resp.StatusCode, cmd)
	}
	// No filter: every agent.
	resp, _ = c.post("/commands", url.Values{"csrf": {tok}, "name": {"checkin"}, "matching": {""}}, nil)
	sc, _ = f.st.Command(context.Background(), latest+4)
	if cmd, _ = decodeCommand(sc); resp.StatusCode != 200 || !cmd.Target.All {
		t.Errorf("all matching with no filter: %d, issued %+v", resp.StatusCode, cmd)
	}
	latest += 2
	if resp, body := c.post("/commands", url.Values{"csrf": {tok}, "name": {"checkin"}, "matching": {"q=nobody"}}, nil); resp.StatusCode != 400 || !strings.Contains(body, "no agent matches the filters") {
		t.Errorf("all of none matching: %d", resp.StatusCode)
	}
	latest++
	// Restore from the agent page.
	resp, _ = c.post("/agents/a1/restore", url.Values{"csrf": {tok}, "id": {quarID}}, nil)
	if resp.StatusCode != 200 || resp.Request.URL.Path != fmt.Sprintf("/commands/%d", latest+2) {
		t.Fatalf("restore: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	sc, _ = f.st.Command(context.Background(), latest+2)
	cmd, _ = decodeCommand(sc)
	if cmd.Name != "restore" || cmd.Args["id"] != quarID || !slices.Equal(cmd.Target.Agents, []string{"a1"}) {
		t.Errorf("restore issued %+v", cmd)
	}
	if ev := f.audit.find(auth.EventRestore, "olga"); len(ev) != 1 || ev[0].Target != quarID || !ev[0].OK {
		t.Errorf("restore audited: %+v", ev)
	}
	if resp, _ := c.post("/agents/nobody/restore", url.Values{"csrf": {tok}, "id": {quarID}}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("restore on an unknown agent: %d, want 400", resp.StatusCode)
	}
}

func TestLoginLogout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	// Before login, pages send the browser to the login page.
	resp, _ := c.get("/agents?status=online")
	if resp.Request.URL.Path != "/login" || resp.Request.URL.Query().Get("next") != "/agents?status=online" {
		t.Fatalf("not logged in: at %s", resp.Request.URL)
	}
	resp, body := c.post("/login", url.Values{"user": {"olga"}, "password": {"wrong"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, auth.ErrBadCredentials.Error()) {
		t.Errorf("a wrong password: %d", resp.StatusCode)
	}
	f.users.throttled["olga"] = true
	resp, _ = c.post("/login", url.Values{"user": {"olga"}, "password": {"op-secret"}}, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" {
		t.Errorf("throttled: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	delete(f.users.throttled, "olga")
	// After login, the page asked for; a next elsewhere is refused.
	resp, _ = c.post("/login", url.Values{"user": {"olga"}, "password": {"op-secret"}, "next": {"/agents?status=online"}}, nil)
	if resp.Request.URL.String() != f.srv.URL+"/agents?status=online" {
		t.Errorf("after login: at %s", resp.Request.URL)
	}
	resp, body = c.post("/login", url.Values{"user": {"olga"}, "password": {"op-secret"}, "next": {"//evil.example/x"}}, nil)
	if resp.Request.URL.String() != f.srv.URL+"/" {
		t.Errorf("an open redirect: at %s", resp.Request.URL)
	}
	tok := csrfOf(t, body)
	cookies := c.c.Jar.Cookies(resp.Request.URL)
	resp, _ = c.post("/logout", url.Values{"csrf": {tok}}, nil)
	if resp.Request.URL.Path != "/login" {
		t.Errorf("after logout: at %s", resp.Request.URL)
	}
	if resp, _ := c.get("/"); resp.Request.URL.Path != "/login" {
		t.Errorf("after logout, / is at %s", resp.Request.URL)
	}
	// The old cookie is worth nothing.
	old := f.client()
	old.c.Jar.SetCookies(resp.Request.URL, cookies)
	if resp, _ := old.get("/"); resp.Request.URL.Path != "/login" {
		t.Errorf("the ended session's cookie still works")
	}
	if ev := f.audit.find(auth.EventLogout, "olga"); len(ev) != 1 {
		t.Errorf("logout audited: %+v", ev)
	}
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil) // idle 10 minutes, absolute 1 hour
	c := f.client()
	c.login("vera", "view-secret")
	f.clock.Advance(9 * time.Minute)
	if resp, _ := c.get("/"); resp.Request.URL.Path != "/" {
		t.Fatalf("9 minutes idle: at %s", resp.Request.URL)
	}
	f.clock.Advance(10 * time.Minute)
	if resp, _ := c.get("/"); resp.Request.URL.Path != "/login" {
		t.Errorf("10 minutes idle: at %s", resp.Request.URL)
	}
	// Used every 8 minutes, a session still ends an hour after login.
	c.login("vera", "view-secret")
	for i := 0; i < 7; i++ {
		f.clock.Advance(8 * time.Minute)
		if resp, _ := c.get("/"); resp.Request.URL.Path != "/" {
			t.Fatalf("after %d minutes: at %s", 8*(i+1), resp.Request.URL)
		}
	}
	f.clock.Advance(8 * time.Minute)
	if resp, _ := c.get("/"); resp.Request.URL.Path != "/login" {
		t.Errorf("64 minutes after login: at %s", resp.Request.URL)
	}
}

func TestSessionTableBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.MaxSessions = 2 })
	a, b, c := f.client(), f.client(), f.client()
	a.login("vera", "view-secret")
	f.clock.Advance(time.Second)
	b.login("vera", "view-secret")
	f.clock.Advance(time.Second)
	c.login("olga", "op-secret")
	if n, err := f.con.sessions.len(); err != nil || n != 2 {
		t.Errorf("%d sessions, %v; want 2", n, err)
	}
	if resp, _ := a.get("/"); resp.Request.URL.Path != "/login" {
		t.Errorf("the least recently used session survived")
	}
	for _, x := range []*client{b, c} {
		if resp, _ := x.get("/"); resp.Request.URL.Path != "/" {
			t.Errorf("a newer session ended")
		}
	}
}

func TestUntrustedTextIsEscaped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	c.login("olga", "op-secret")
	seq := f.issue(api.SendRequest{Name: "ping", Target: command.Target{Agents: []string{"a5"}}})
	now := f.clock.Now()
	if err := f.st.RecordResults(context.Background(), []store.Result{{Seq: seq, AgentID: "a5", Status: "ok", Output: `<img src=x onerror=alert("out")>`, ExecutedAt: now, ReceivedAt: now}}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/agents", "/agents/a5", "/detections", fmt.Sprintf("/commands/%d", seq), "/agents?q=" + url.QueryEscape(evilHost)} {
		_, body := c.get(path)
		if n := strings.Count(strings.ToLower(body), "<script"); n != 1 {
			t.Errorf("%s has %d script elements, want only the console's own", path, n)
		}
		if strings.Contains(body, "<img") {
			t.Errorf("%s has an injected element:\n%s", path, body)
		}
	}
	_, body := c.get("/agents/a5")
	for _, want := range []string{"&lt;script&gt;alert(&#34;host&#34;)&lt;/script&gt;", "/tmp/&lt;img src=x onerror=alert(1)&gt;.exe", "&lt;script&gt;alert(&#34;sig&#34;)&lt;/script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("the agent page does not show %s as text", want)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.Secure = true })
	c := f.client()
	check := func(path string, h http.Header) {
		t.Helper()
		csp := h.Get("Content-Security-Policy")
		if csp == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s %q, want %q", path, k, h.Get(k), v)
			}
		}
	}
	for _, path := range []string{"/login", "/static/console.css", "/static/console.js", "/nothing", "/static/"} {
		resp, _ := c.get(path)
		check(path, resp.Header)
		if want := strings.HasPrefix(path, "/static/c") || path == "/login"; want != (resp.StatusCode == 200) {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := c.get("/static/console.js"); resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("console.js is served as %q", resp.Header.Get("Content-Type"))
	}
	// The session cookie.
	req, _ := http.NewRequest("POST", f.srv.URL+"/login", strings.NewReader(url.Values{"user": {"vera"}, "password": {"view-secret"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.srv.Client().Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	check("POST /login", resp.Header)
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"__Host-vigil-session=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	// Without TLS the cookie is not Secure (a browser would drop it).
	g := newFixture(t, nil)
	resp, _ = g.client().post("/login", url.Values{"user": {"vera"}, "password": {"view-secret"}}, nil)
	if cs := resp.Request.Response.Header.Get("Set-Cookie"); strings.Contains(cs, "Secure") || !strings.Contains(cs, "HttpOnly") || !strings.Contains(cs, "SameSite=Strict") {
		t.Errorf("plain HTTP Set-Cookie %q", cs)
	}
}

// events reads a Server-Sent Events stream.
type events struct {
	r    *bufio.Reader
	body io.Closer
}

func (e *events) next(t *testing.T) (string, string) {
	t.Helper()
	var name, data string
	for {
		line, err := e.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

// until reads events until one satisfies ok.
func (e *events) until(t *testing.T, ok func(name, data string) bool) {
	t.Helper()
	for {
		if n, d := e.next(t); ok(n, d) {
			return
		}
	}
}

func TestEventStreamSendsResults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	tok := c.login("olga", "op-secret")
	resp, body := c.post("/commands", url.Values{"csrf": {tok}, "name": {"ping"}, "target": {"agents"}, "agent": {"a1", "a2"}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("issue: %d", resp.StatusCode)
	}
	evURL := regexp.MustCompile(`data-events="([^"]+)"`).FindStringSubmatch(body)
	if evURL == nil {
		t.Fatalf("no event stream on the command page:\n%s", body)
	}
	seq, _ := strconv.ParseUint(strings.Split(evURL[1], "/")[2], 10, 64)
	// A stream that does not deliver fails the test in 20 s.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+evURL[1], nil)
	sresp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	if ct := sresp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	es := &events{r: bufio.NewReader(sresp.Body)}
	es.until(t, func(n, d string) bool { return n == "progress" && d == `{"Targeted":2,"OK":0,"Failed":0,"Pending":2}` })

	f.result(seq, "a2", "ok")
	es.until(t, func(n, d string) bool {
		if n != "result" {
			return false
		}
		var r resultEvent
		json.Unmarshal([]byte(d), &r)
		return r.Agent == "a2" && r.Status == "ok" && r.Output == "pong from a2" && r.Hostname == "web-2"
	})
	if n, d := es.next(t); n != "progress" || d != `{"Targeted":2,"OK":1,"Failed":0,"Pending":1}` {
		t.Errorf("after a2's result: %s %s", n, d)
	}
	f.result(seq, "a1", "error")
	es.until(t, func(n, d string) bool { return n == "progress" && d == `{"Targeted":2,"OK":1,"Failed":1,"Pending":0}` })

	// The stream ends with its session.
	f.clock.Advance(time.Hour)
	es.until(t, func(n, d string) bool { return n == "end" })
	if _, err := es.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Errorf("after end: %v, want EOF", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
	f := newFixture(t, nil)
	if _, err := New(Config{Store: f.st, Issuer: f.cmds, Auth: f.users, Audit: f.audit, IdleTimeout: -1}); err == nil {
		t.Error("New with a negative idle timeout succeeded")
	}
}

func TestEventStreamWokenByNotifier(t *testing.T) {
	t.Parallel()
	var b Broadcast
	// Without a notification, the stream would read the store again
	// only after an hour.
	f := newFixture(t, func(c *Config) { c.Notifier, c.PollInterval = &b, time.Hour })
	c := f.client()
	c.login("vera", "view-secret")
	seq := f.issue(api.SendRequest{Name: "ping", Target: command.Target{Groups: []string{"web"}}})
	// A stream that does not deliver fails the test in 20 s.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/commands/%d/events", f.srv.URL, seq), nil)
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	es := &events{r: bufio.NewReader(resp.Body)}
	es.until(t, func(n, d string) bool { return n == "progress" && d == `{"Targeted":3,"OK":0,"Failed":0,"Pending":3}` })
	for i, agent := range []string{"a1", "a5"} {
		f.result(seq, agent, "ok")
		b.Notify()
		want := fmt.Sprintf(`{"Targeted":3,"OK":%d,"Failed":0,"Pending":%d}`, i+1, 2-i)
		es.until(t, func(n, d string) bool { return n == "progress" && d == want })
	}
}

func TestAuditPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// A failed login's actor is the name tried: anyone's text.
	f.audit.Audit(context.Background(), auth.Event{Time: f.clock.Now().Add(-2 * time.Hour), Actor: evilHost, Addr: "192.0.2.7", Action: auth.EventLogin})
	f.audit.Audit(context.Background(), auth.Event{Time: f.clock.Now().Add(-time.Hour), Actor: csvHost, Addr: "192.0.2.7", Action: auth.EventLogin})
	op := f.client()
	tok := op.login("olga", "op-secret")
	op.post("/commands", url.Values{"csrf": {tok}, "name": {"ping"}, "target": {"all"}}, nil)
	v := f.client()
	vtok := v.login("vera", "view-secret")
	v.post("/commands", url.Values{"csrf": {vtok}, "name": {"ping"}, "target": {"all"}}, nil)

	_, body := v.get("/audit?action=denied")
	if n := strings.Count(body, `<tr class="event">`); n != 1 || !strings.Contains(body, `<td class="actor">vera</td>`) {
		t.Errorf("the viewer's denial: %d rows:\n%s", n, body)
	}
	_, body = v.get("/audit?outcome=refused&since=3h")
	if strings.Count(body, `<tr class="event">`) != 3 || strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert(&#34;host&#34;)&lt;/script&gt;") {
		t.Errorf("refused events, the tried name as text:\n%s", body)
	}
	resp, data := v.get("/audit.csv?action=login")
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, err)
	}
	if len(recs) != 3 || recs[1][1] != "'"+csvHost || recs[2][1] != evilHost || recs[1][2] != "192.0.2.7" {
		t.Errorf("login events in CSV: %q", recs)
	}
	_, data = v.get("/audit.csv?actor=olga&action=command&outcome=ok")
	if recs, _ := csv.NewReader(strings.NewReader(data)).ReadAll(); len(recs) != 2 || recs[1][4] != "1" || recs[1][5] != "ping → all agents" {
		t.Errorf("olga's command in CSV: %q", recs)
	}
	for _, bad := range []string{"action=dance", "outcome=maybe", "since=then"} {
		if resp, _ := v.get("/audit?" + bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("/audit?%s: %d, want 400", bad, resp.StatusCode)
		}
	}
	// Without an audit log, the console has no audit page.
	g := newFixture(t, func(c *Config) { c.AuditLog = nil })
	c := g.client()
	c.login("ada", "admin-secret")
	if resp, body := c.get("/audit"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, `href="/audit"`) {
		t.Errorf("no audit log: /audit %d", resp.StatusCode)
	}
	if _, body := c.get("/"); strings.Contains(body, `href="/audit"`) {
		t.Errorf("no audit log, yet a link to the audit page")
	}
}

// TestExpiredProgressCached: the commands page counts the progress of a
// command in flight at every load, and that of an expired command at most
// expiredProgressAge ago.
func TestExpiredProgressCached(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c := f.client()
	c.login("vera", "view-secret")
	seq := f.issue(api.SendRequest{Name: "ping", Target: command.Target{Groups: []string{"web"}}})
	bar := func() string {
		_, body := c.get("/commands")
		m := regexp.MustCompile(`<a href="/commands/` + strconv.FormatUint(seq, 10) + `">.*?aria-label="([^"]+)"`).FindStringSubmatch(strings.ReplaceAll(body, "\n", " "))
		if m == nil {
			t.Fatalf("command %d not on the page:\n%s", seq, body)
		}
		return m[1]
	}
	if got := bar(); got != "0 ok, 0 failed, 3 pending of 3" {
		t.Fatalf("in flight: %q", got)
	}
	f.result(seq, "a1", command.StatusOK)
	if got := bar(); got != "1 ok, 0 failed, 2 pending of 3" {
		t.Fatalf("in flight, counted at each load: %q", got)
	}
	f.clock.Advance(2 * time.Hour) // expired
	c.login("vera", "view-secret") // the session too
	if got := bar(); got != "1 ok, 0 failed, 2 pending of 3" {
		t.Fatalf("expired: %q", got)
	}
	f.result(seq, "a5", "expired")
	if got := bar(); got != "1 ok, 0 failed, 2 pending of 3" {
		t.Fatalf("expired, within %v of the last count: %q", expiredProgressAge, got)
	}
	f.clock.Advance(expiredProgressAge)
	if got := bar(); got != "1 ok, 1 failed, 1 pending of 3" {
		t.Fatalf("expired, %v after the last count: %q", expiredProgressAge, got)
	}
}
