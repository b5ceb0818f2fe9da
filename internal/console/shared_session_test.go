package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

// These tests run two consoles over one store, as two server instances
// over one database behind a load balancer: a browser's session made on
// one is the other's too.

// sessionRow is a row of the sessions table as read by the database's
// own client: the id hash and every column as text.
type sessionRow struct {
	hash []byte
	text string
}

// sharedStore is one database opened twice (one store per console) and a
// way to read its sessions table directly.
type sharedStore struct {
	a, b store.Store
	rows func(t *testing.T) []sessionRow
	// raw, when set, returns every byte the database keeps on disk.
	raw func(t *testing.T) []byte
}

func sqliteShared(t *testing.T) sharedStore {
	path := filepath.Join(t.TempDir(), "vigil.db")
	open := func() store.Store {
		st, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open(), open()
	return sharedStore{
		a: a, b: b,
		rows: func(t *testing.T) []sessionRow {
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			rs, err := db.Query(`SELECT id_hash, csrf || '|' || user_name || '|' || role || '|' || via || '|' || addr || '|' ||
				created_at || '|' || last_used || '|' || CAST(id_hash AS TEXT) FROM sessions`)
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			var out []sessionRow
			for rs.Next() {
				var r sessionRow
				if err := rs.Scan(&r.hash, &r.text); err != nil {
					t.Fatal(err)
				}
				out = append(out, r)
			}
			if err := rs.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		},
		raw: func(t *testing.T) []byte {
			var all []byte
			for _, p := range []string{path, path + "-wal"} {
				b, err := os.ReadFile(p)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return all
		},
	}
}

func postgresShared(t *testing.T) sharedStore {
	dsn := pgtest.Start(t).NewDatabase(t)
	open := func() store.Store {
		st, err := postgres.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open(), open()
	return sharedStore{
		a: a, b: b,
		rows: func(t *testing.T) []sessionRow {
			conn, err := pgx.Connect(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			rs, err := conn.Query(t.Context(), "SELECT id_hash, s::text || encode(id_hash, 'escape') FROM sessions s")
			if err != nil {
				t.Fatal(err)
			}
			out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (sessionRow, error) {
				var sr sessionRow
				err := r.Scan(&sr.hash, &sr.text)
				return sr, err
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}

// instance is one console served over HTTP.
type instance struct {
	t   *testing.T
	con *Console
	srv *httptest.Server
	st  store.Store
}

// browser is one browser: its cookie jar, sent to every console (cookies
// are a host's, whatever the port, in net/http/cookiejar as in browsers).
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar}}
}

func (b *browser) do(in *instance, method, path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, in.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(data)
}

// loggedIn reports whether GET / on in is served (not sent to the login
// page), failing the test on anything else.
func (b *browser) loggedIn(in *instance) bool {
	b.t.Helper()
	resp, body := b.do(in, "GET", "/", nil)
	switch {
	case resp.StatusCode == 200 && resp.Request.URL.Path == "/":
		return true
	case resp.StatusCode == 200 && resp.Request.URL.Path == "/login":
		return false
	}
	b.t.Fatalf("GET / on %s: %d at %s:\n%s", in.srv.URL, resp.StatusCode, resp.Request.URL, body)
	return false
}

// cookie returns the session cookie's value.
func (b *browser) cookie(in *instance) string {
	b.t.Helper()
	u, _ := url.Parse(in.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "vigil-session" {
			return c.Value
		}
	}
	b.t.Fatal("no session cookie")
	return ""
}

// twoInstances serves two consoles, one over each of ss's stores, with
// one clock and one set of users.
func twoInstances(t *testing.T, ss sharedStore, clk *clock) (a, b *instance) {
	us := &users{m: map[string]struct{ pw, role string }{
		"olga": {"op-secret", "operator"}, "vera": {"view-secret", "viewer"},
	}, throttled: map[string]bool{}}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	serve := func(st store.Store) *instance {
		con, err := New(Config{
			Store: st, Issuer: &issuer{st: st, key: key, now: clk.Now}, Auth: us, Audit: &auditLog{},
			IdleTimeout: 10 * time.Minute, MaxSessionAge: time.Hour, PollInterval: 20 * time.Millisecond, Now: clk.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(con)
		t.Cleanup(srv.Close)
		return &instance{t: t, con: con, srv: srv, st: st}
	}
	return serve(ss.a), serve(ss.b)
}

func TestSessionsSharedSQLite(t *testing.T) {
	t.Parallel()
	testSessionsShared(t, sqliteShared(t))
}

func TestSessionsSharedPostgres(t *testing.T) {
	t.Parallel()
	testSessionsShared(t, postgresShared(t))
}

func testSessionsShared(t *testing.T, ss sharedStore) {
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	a, b := twoInstances(t, ss, clk)
	ctx := t.Context()

	// Logged in on A, the browser is logged in on B.
	br := newBrowser(t)
	resp, body := br.do(a, "POST", "/login", url.Values{"user": {"olga"}, "password": {"op-secret"}})
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" {
		t.Fatalf("login on A: %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	tokA := csrfOf(t, body)
	id := br.cookie(a)
	resp, body = br.do(b, "GET", "/agents", nil)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/agents" {
		t.Fatalf("A's session on B: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if tokB := csrfOf(t, body); tokB != tokA {
		t.Errorf("B's page carries the CSRF token %q, A's %q", tokB, tokA)
	}
	// B knows who logged in, and as what: an operator may issue.
	resp, body = br.do(b, "POST", "/commands", url.Values{"csrf": {tokA}, "name": {"ping"}, "target": {"all"}})
	if resp.StatusCode != 200 {
		t.Fatalf("a command issued on B with A's session: %d:\n%s", resp.StatusCode, body)
	}
	if l, err := b.st.LatestSeq(ctx); err != nil || l != 1 {
		t.Errorf("after issuing on B: latest sequence %d, %v; want 1", l, err)
	}
	// A wrong token is refused on B as on A.
	if resp, _ := br.do(b, "POST", "/commands", url.Values{"csrf": {tokA + "x"}, "name": {"ping"}, "target": {"all"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a wrong CSRF token on B: %d, want 403", resp.StatusCode)
	}

	// The store holds the id's hash, never the id.
	rows := ss.rows(t)
	if len(rows) != 1 {
		t.Fatalf("%d rows in sessions, want 1", len(rows))
	}
	if h := sha256.Sum256([]byte(id)); !bytes.Equal(rows[0].hash, h[:]) {
		t.Errorf("the row's id_hash %x is not the SHA-256 of the cookie", rows[0].hash)
	}
	for _, r := range rows {
		if strings.Contains(r.text, id) || bytes.Contains(r.hash, []byte(id)) {
			t.Errorf("a sessions row holds the session id in clear: %q", r.text)
		}
	}
	if !strings.Contains(rows[0].text, tokA) || !strings.Contains(rows[0].text, "olga") {
		t.Errorf("the row read does not hold the session (the check above read nothing?): %q", rows[0].text)
	}
	if ss.raw != nil {
		if raw := ss.raw(t); !bytes.Contains(raw, []byte(tokA)) || bytes.Contains(raw, []byte(id)) {
			t.Errorf("the database's files: hold the CSRF token %v, hold the session id %v; want true, false",
				bytes.Contains(raw, []byte(tokA)), bytes.Contains(raw, []byte(id)))
		}
	}

	// Uses are recorded at most once a minute (idle 10 minutes / 10).
	hash := hashID(id)
	lastUsed := func() time.Time {
		t.Helper()
		s, err := a.st.Session(ctx, hash)
		if err != nil {
			t.Fatal(err)
		}
		return s.LastUsed
	}
	login := lastUsed()
	clk.Advance(59 * time.Second)
	br.loggedIn(b)
	if got := lastUsed(); !got.Equal(login) {
		t.Errorf("a use 59 s after the last recorded one was written: last used %v, login %v", got, login)
	}
	clk.Advance(time.Second)
	br.loggedIn(b)
	if got := lastUsed(); !got.Equal(clk.Now()) {
		t.Errorf("a use a minute after the last recorded one: last used %v, want %v", got, clk.Now())
	}

	// Used on B, the session lives on A; unused, it ends on both.
	clk.Advance(9 * time.Minute)
	if !br.loggedIn(b) {
		t.Fatal("9 minutes idle: logged out on B")
	}
	clk.Advance(9 * time.Minute)
	if !br.loggedIn(a) {
		t.Fatal("9 minutes after a use on B: logged out on A")
	}
	clk.Advance(10 * time.Minute)
	if br.loggedIn(b) {
		t.Error("10 minutes idle: still logged in on B")
	}
	if br.loggedIn(a) {
		t.Error("10 minutes idle: still logged in on A")
	}

	// The absolute age holds on both: used every 8 minutes, a session
	// made on B ends an hour after its login, on A and on B.
	resp, _ = br.do(b, "POST", "/login", url.Values{"user": {"vera"}, "password": {"view-secret"}})
	if resp.Request.URL.Path != "/" {
		t.Fatalf("login on B: at %s", resp.Request.URL)
	}
	for i := range 7 {
		clk.Advance(8 * time.Minute)
		in := []*instance{a, b}[i%2]
		if !br.loggedIn(in) {
			t.Fatalf("%d minutes after login: logged out", 8*(i+1))
		}
	}
	clk.Advance(8 * time.Minute)
	if br.loggedIn(a) || br.loggedIn(b) {
		t.Error("64 minutes after login: still logged in")
	}

	// Logout on B ends the session on A.
	resp, body = br.do(a, "POST", "/login", url.Values{"user": {"olga"}, "password": {"op-secret"}})
	if resp.Request.URL.Path != "/" {
		t.Fatalf("login on A: at %s", resp.Request.URL)
	}
	tok := csrfOf(t, body)
	old := br.cookie(a)
	if resp, _ := br.do(b, "POST", "/logout", url.Values{"csrf": {tok}}); resp.Request.URL.Path != "/login" {
		t.Errorf("logout on B: at %s", resp.Request.URL)
	}
	if br.loggedIn(a) {
		t.Error("logged out on B: still logged in on A")
	}
	replay := newBrowser(t)
	u, _ := url.Parse(a.srv.URL)
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: "vigil-session", Value: old, Path: "/"}})
	if replay.loggedIn(a) || replay.loggedIn(b) {
		t.Error("the ended session's cookie, replayed, still works")
	}
	if n, err := a.st.CountSessions(ctx); err != nil || n != 0 {
		t.Errorf("%d sessions left, %v; want 0", n, err)
	}

	// A store that fails logs nobody in: B's store closed, B refuses the
	// live session (503), not serves it; A still serves it.
	resp, body = br.do(a, "POST", "/login", url.Values{"user": {"olga"}, "password": {"op-secret"}})
	if resp.Request.URL.Path != "/" {
		t.Fatalf("login on A: at %s", resp.Request.URL)
	}
	tok = csrfOf(t, body)
	if err := b.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/agents", "/commands/1/events"} {
		if resp, body := br.do(b, "GET", path, nil); resp.StatusCode != http.StatusServiceUnavailable || resp.Request.URL.Path != path {
			t.Errorf("GET %s on B over a closed store: %d at %s, want 503:\n%s", path, resp.StatusCode, resp.Request.URL, body)
		}
	}
	if resp, _ := br.do(b, "POST", "/commands", url.Values{"csrf": {tok}, "name": {"ping"}, "target": {"all"}}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /commands on B over a closed store: %d, want 503", resp.StatusCode)
	}
	fresh := newBrowser(t)
	if resp, body := fresh.do(b, "POST", "/login", url.Values{"user": {"olga"}, "password": {"op-secret"}}); resp.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(body, "could not start a session") {
		t.Errorf("a login on B over a closed store: %d at %s, want 503:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if !br.loggedIn(a) {
		t.Error("A, whose store works, no longer serves the session")
	}
}
