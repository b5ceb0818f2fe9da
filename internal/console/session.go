package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/auth"
)

// session is one logged-in browser.
type session struct {
	id      string
	csrf    string // the token every state-changing request carries
	p       auth.Principal
	addr    string
	created time.Time
	last    time.Time // the last request
}

// sessions is the in-memory session table: bounded, with idle and
// absolute expiry. A server restart logs everyone out.
type sessions struct {
	mu     sync.Mutex
	m      map[string]*session
	max    int
	idle   time.Duration
	maxAge time.Duration
}

func newSessions(max int, idle, maxAge time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, max: max, idle: idle, maxAge: maxAge}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.last) >= ss.idle || now.Sub(s.created) >= ss.maxAge
}

// add starts a session for p, making room in a full table by dropping
// expired sessions and then the least recently used one.
func (ss *sessions) add(p auth.Principal, addr string, now time.Time) session {
	s := &session{id: randomToken(), csrf: randomToken(), p: p, addr: addr, created: now, last: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.max {
		var lru *session
		for id, o := range ss.m {
			if ss.expired(o, now) {
				delete(ss.m, id)
				continue
			}
			if lru == nil || o.last.Before(lru.last) {
				lru = o
			}
		}
		if len(ss.m) >= ss.max && lru != nil {
			delete(ss.m, lru.id)
		}
	}
	ss.m[s.id] = s
	return *s
}

// get returns the live session id names; touch marks it used now (an
// event stream's checks do not keep a session alive).
func (ss *sessions) get(id string, now time.Time, touch bool) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return session{}, false
	}
	if ss.expired(s, now) {
		delete(ss.m, id)
		return session{}, false
	}
	if touch {
		s.last = now
	}
	return *s, true
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
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

// session returns the request's live session.
func (c *Console) session(r *http.Request, touch bool) (session, bool) {
	ck, err := r.Cookie(c.cookieName())
	if err != nil || ck.Value == "" {
		return session{}, false
	}
	return c.sessions.get(ck.Value, c.now(), touch)
}

// handler is a page's handler, given the request's session.
type handler func(w http.ResponseWriter, r *http.Request, s session)

// get serves a read: to a logged-in user, or it sends the browser to the
// login page (an event stream gets 401).
func (c *Console) get(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(r, true)
		if !ok {
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
		s, ok := c.session(r, true)
		if !ok {
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
	if ck, err := r.Cookie(c.cookieName()); err == nil {
		c.sessions.remove(ck.Value)
	}
	s := c.sessions.add(p, clientAddr(r), c.now())
	c.setCookie(w, s.id, 0)
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request, s session) {
	c.sessions.remove(s.id)
	c.setCookie(w, "", -1)
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
