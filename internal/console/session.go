package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/store"
)

// SessionStore is where the console keeps its sessions: the server's
// store, which every server instance over the same database shares, so
// that a browser logged in on one instance is logged in on all (behind a
// load balancer that spreads its requests over them). A store.Store is
// one.
type SessionStore interface {
	CreateSession(ctx context.Context, s store.Session, max int) error
	Session(ctx context.Context, idHash []byte) (store.Session, error)
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
	RemoveSession(ctx context.Context, idHash []byte) error
	PruneSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error)
	CountSessions(ctx context.Context) (int, error)
}

// Store is what the console needs of the server's store: what it reads
// and its sessions. A store.Store is one.
type Store interface {
	Reader
	SessionStore
}

// session is one logged-in browser.
type session struct {
	id      string
	csrf    string // the token every state-changing request carries
	p       auth.Principal
	addr    string
	created time.Time
	last    time.Time // the last use recorded in the store
}

// maxTouchEvery bounds how often a session's last use is written to the
// store (sessions.touchEvery).
const maxTouchEvery = time.Minute

// sessions is the session table, kept in the store: bounded, with idle
// and absolute expiry. The store holds the SHA-256 of each session's id,
// never the id. A session's last use is written at most once every
// touchEvery (min(1 minute, idle/10)), not at every request: a session
// ends between idle-touchEvery and idle after its last request.
type sessions struct {
	st         SessionStore
	max        int
	idle       time.Duration
	maxAge     time.Duration
	touchEvery time.Duration
}

func newSessions(st SessionStore, max int, idle, maxAge time.Duration) *sessions {
	return &sessions{st: st, max: max, idle: idle, maxAge: maxAge, touchEvery: min(maxTouchEvery, idle/10)}
}

// errNoSession: the request has no live session (none, unknown, ended or
// expired).
var errNoSession = errors.New("no live session")

func (ss *sessions) expired(s store.Session, now time.Time) bool {
	return now.Sub(s.LastUsed) >= ss.idle || now.Sub(s.Created) >= ss.maxAge
}

// hashID is what the store keeps of a session id.
func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

// add starts a session for p. It first ends the expired sessions, and the
// store makes room in a full table by ending the least recently used.
func (ss *sessions) add(ctx context.Context, p auth.Principal, addr string, now time.Time) (session, error) {
	if _, err := ss.st.PruneSessions(ctx, now.Add(-ss.idle), now.Add(-ss.maxAge)); err != nil {
		return session{}, err
	}
	s := session{id: randomToken(), csrf: randomToken(), p: p, addr: addr, created: now, last: now}
	err := ss.st.CreateSession(ctx, store.Session{
		IDHash: hashID(s.id), CSRF: s.csrf, User: p.User, Role: string(p.Role), Via: p.Via, Addr: addr,
		Created: now, LastUsed: now,
	}, ss.max)
	if err != nil {
		return session{}, err
	}
	return s, nil
}

// get returns the live session id names: errNoSession when there is none,
// another error when the store could not say (the caller refuses the
// request: a failing store logs nobody in). touch records the use when
// the last one recorded is touchEvery old (an event stream's checks do not
// keep a session alive); a failure to record it is returned with the
// session, which is live.
func (ss *sessions) get(ctx context.Context, id string, now time.Time, touch bool) (session, error) {
	h := hashID(id)
	st, err := ss.st.Session(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return session{}, errNoSession
	} else if err != nil {
		return session{}, err
	}
	if ss.expired(st, now) {
		// Ended either way: a failure to remove it leaves it to the
		// next login's pruning.
		_ = ss.st.RemoveSession(ctx, h)
		return session{}, errNoSession
	}
	role, err := auth.ParseRole(st.Role)
	if err != nil {
		return session{}, fmt.Errorf("session of %q: stored %w", st.User, err)
	}
	s := session{
		id: id, csrf: st.CSRF, p: auth.Principal{User: st.User, Role: role, Via: st.Via},
		addr: st.Addr, created: st.Created, last: st.LastUsed,
	}
	if touch && now.Sub(st.LastUsed) >= ss.touchEvery {
		if err := ss.st.TouchSession(ctx, h, now); err != nil {
			return s, fmt.Errorf("recording the session's use: %w", err)
		}
		s.last = now
	}
	return s, nil
}

// remove ends the session id names, on every server instance.
func (ss *sessions) remove(ctx context.Context, id string) error {
	return ss.st.RemoveSession(ctx, hashID(id))
}

// len counts the sessions in the store.
func (ss *sessions) len() (int, error) {
	return ss.st.CountSessions(context.Background())
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// cookieName is the session cookie's name: with the __Host- prefix under
// TLS, which browsers accept only Secure, for the whole host, from HTTPS.
func (c *Console) cookieName() string {
	if c.cfg.Secure {
		return "__Host-vigil-session"
	}
	return "vigil-session"
}

func (c *Console) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: c.cookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
}

// lookup returns the request's live session: errNoSession when it has
// none, another error when the store failed (the request is refused,
// never served as logged in).
func (c *Console) lookup(r *http.Request, touch bool) (session, error) {
	ck, err := r.Cookie(c.cookieName())
	if err != nil || ck.Value == "" {
		return session{}, errNoSession
	}
	s, err := c.sessions.get(r.Context(), ck.Value, c.now(), touch)
	if err != nil && s.id != "" {
		// The session is live; only recording its use failed.
		c.log.Warn("console: session", "user", s.p.User, "err", err)
		return s, nil
	}
	if err != nil && !errors.Is(err, errNoSession) {
		c.log.Error("console: session lookup", "addr", clientAddr(r), "err", err)
	}
	return s, err
}

// session returns the request's live session; false when it has none or
// the store could not say.
func (c *Console) session(r *http.Request, touch bool) (session, bool) {
	s, err := c.lookup(r, touch)
	return s, err == nil
}

// sessionUnavailable answers a request whose session the store could not
// look up.
func sessionUnavailable(w http.ResponseWriter) {
	http.Error(w, "the session store is unavailable: try again shortly", http.StatusServiceUnavailable)
}

// handler is a page's handler, given the request's session.
type handler func(w http.ResponseWriter, r *http.Request, s session)

// get serves a read: to a logged-in user, or it sends the browser to the
// login page (an event stream gets 401).
func (c *Console) get(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.lookup(r, true)
		if err != nil && !errors.Is(err, errNoSession) {
			sessionUnavailable(w)
			return
		}
		if err != nil {
			if strings.HasSuffix(r.URL.Path, "/events") {
				http.Error(w, "not logged in", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, s)
	}
}

var crossOrigin = http.NewCrossOriginProtection()

// sameOrigin refuses (403) a request a browser says comes from another
// site (Sec-Fetch-Site) or another origin (Origin).
func (c *Console) sameOrigin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := crossOrigin.Check(r); err != nil {
			c.log.Warn("console: cross-origin request refused", "path", r.URL.Path, "addr", clientAddr(r), "origin", r.Header.Get("Origin"))
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// maxForm bounds a form's body.
const maxForm = 1 << 20

// post serves a state-changing request: same origin, a live session, its
// CSRF token, and a role allowed the action; a role that is not allowed
// is refused 403 and audited (auth.EventDenied).
func (c *Console) post(a auth.Action, h handler) http.HandlerFunc {
	return c.sameOrigin(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		s, err := c.lookup(r, true)
		if err != nil && !errors.Is(err, errNoSession) {
			sessionUnavailable(w)
			return
		}
		if err != nil {
			http.Error(w, "not logged in (or the session ended): log in again", http.StatusUnauthorized)
			return
		}
		tok := r.PostForm.Get("csrf")
		if tok == "" {
			tok = r.Header.Get("X-CSRF-Token")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
			http.Error(w, "missing or wrong CSRF token: reload the page", http.StatusForbidden)
			return
		}
		if !s.p.Role.Can(a) {
			c.audit(r, auth.Event{
				Actor: s.p.User, Action: auth.EventDenied, Target: r.URL.Path,
				Detail: fmt.Sprintf("%s %s: %s needs operator or admin; %s is %s", r.Method, r.URL.Path, a, s.p.User, s.p.Role),
			})
			http.Error(w, fmt.Sprintf("forbidden: a %s may not %s", s.p.Role, a), http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, s)
	})
}

// audit records e with the request's time and address; a failure is
// logged.
func (c *Console) audit(r *http.Request, e auth.Event) {
	e.Time = c.now()
	e.Addr = clientAddr(r)
	if err := c.cfg.Audit.Audit(r.Context(), e); err != nil {
		c.log.Error("console: audit", "action", e.Action, "actor", e.Actor, "err", err)
	}
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type loginPage struct {
	Next, User, Error string
}

func (c *Console) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.session(r, false); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", nil, "Log in", loginPage{Next: r.URL.Query().Get("next")})
}

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	user, password, next := r.PostForm.Get("user"), r.PostForm.Get("password"), r.PostForm.Get("next")
	page := loginPage{Next: next, User: user}
	if user == "" || password == "" {
		page.Error = "give a user name and a password"
		c.render(w, r, http.StatusBadRequest, "login", nil, "Log in", page)
		return
	}
	p, err := c.cfg.Auth.Login(r.Context(), user, password, clientAddr(r))
	if err != nil {
		status := http.StatusServiceUnavailable
		var te *auth.ThrottledError
		switch {
		case errors.As(err, &te):
			status = http.StatusTooManyRequests
			w.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter.Seconds()+0.999)))
		case errors.Is(err, auth.ErrThrottled):
			status = http.StatusTooManyRequests
		case errors.Is(err, auth.ErrBadCredentials):
			status = http.StatusUnauthorized
		default:
			c.log.Error("console: login", "user", user, "err", err)
		}
		page.Error = err.Error()
		c.render(w, r, status, "login", nil, "Log in", page)
		return
	}
	// A new session at every login: a session id known before it (session
	// fixation) is worth nothing.
	if ck, err := r.Cookie(c.cookieName()); err == nil && ck.Value != "" {
		if err := c.sessions.remove(r.Context(), ck.Value); err != nil {
			c.log.Error("console: login: ending the previous session", "user", p.User, "err", err)
		}
	}
	s, err := c.sessions.add(r.Context(), p, clientAddr(r), c.now())
	if err != nil {
		c.log.Error("console: login: starting a session", "user", user, "err", err)
		page.Error = "could not start a session (the server's store failed): try again shortly"
		c.render(w, r, http.StatusServiceUnavailable, "login", nil, "Log in", page)
		return
	}
	c.setCookie(w, s.id, 0)
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request, s session) {
	c.setCookie(w, "", -1)
	if err := c.sessions.remove(r.Context(), s.id); err != nil {
		c.log.Error("console: logout", "user", s.p.User, "err", err)
		http.Error(w, "could not end the session (the server's store failed): log out again shortly", http.StatusServiceUnavailable)
		return
	}
	c.audit(r, auth.Event{Actor: s.p.User, Action: auth.EventLogout, OK: true})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath is next when it is a path of this console, else "/": a login
// does not send the browser elsewhere (an open redirect).
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}
