package server

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
)

type principalKey struct{}

// principal is who the request acts for and the client's address, as
// the admin middleware found them.
func principal(r *http.Request) (auth.Principal, string) {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p, ClientAddr(r)
}

// ClientAddr is the address a request came from, for the audit log and
// the throttling of failed logins: the peer's IP address, without its
// port (a client picks a new port for each connection).
func ClientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// admin authenticates an admin API request (the bootstrap admin.token or
// a user's API token, as a bearer token) and lets it through when its
// role allows one of actions (none: any authenticated principal); it
// refuses it otherwise with 403, audited as auth.EventDenied.
func (s *Server) admin(h http.HandlerFunc, actions ...auth.Action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr := ClientAddr(r)
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			s.m.authFail.Inc()
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		p, err := s.auth.Token(r.Context(), tok, addr)
		if err != nil {
			if errors.Is(err, auth.ErrBadCredentials) {
				s.m.authFail.Inc()
				writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
				return
			}
			writeAuthError(w, err)
			return
		}
		allowed := len(actions) == 0
		for _, a := range actions {
			allowed = allowed || p.Role.Can(a)
		}
		if !allowed {
			writeAuthError(w, s.auth.Authorize(r.Context(), p, actions[0], addr, r.Method+" "+r.URL.Path))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// writeAuthError answers with the status an auth.Service error calls
// for: 429 (with Retry-After) when throttled, 403 when forbidden or for a
// wrong current password, 400 for bad input, 404 for an unknown user or
// token, 409 for one that exists, 503 for the store.
func writeAuthError(w http.ResponseWriter, err error) {
	var te *auth.ThrottledError
	switch {
	case errors.As(err, &te):
		w.Header().Set("Retry-After", strconv.Itoa(int((te.RetryAfter+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, "%v", err)
	case errors.Is(err, auth.ErrForbidden), errors.Is(err, auth.ErrBadCredentials):
		writeError(w, http.StatusForbidden, "%v", err)
	case errors.Is(err, auth.ErrInvalid):
		writeError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, auth.ErrNotFound):
		writeError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, auth.ErrExists):
		writeError(w, http.StatusConflict, "%v", err)
	default:
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
	}
}

// Auth is the server's accounts: the auth.Authenticator and auth.Auditor
// the console logs users in and audits with, and the management of users
// and API tokens.
func (s *Server) Auth() *auth.Service { return s.auth }

// IssueAs issues a command for p, from addr: p's role must allow it
// (auth.Restore for a restore, auth.Issue for any other; otherwise
// auth.ErrForbidden, audited), and the command issued is audited
// (auth.EventRestore or auth.EventCommand).
func (s *Server) IssueAs(ctx context.Context, p auth.Principal, addr string, c command.Command, ttl time.Duration) (store.Command, error) {
	if err := s.authorizeCommand(ctx, p, addr, c.Name); err != nil {
		return store.Command{}, err
	}
	sc, err := s.Issue(ctx, c, ttl)
	if err != nil {
		return store.Command{}, err
	}
	s.auditCommand(ctx, p, addr, c, sc.Seq)
	return sc, nil
}

func (s *Server) authorizeCommand(ctx context.Context, p auth.Principal, addr, name string) error {
	if name == command.Restore {
		return s.auth.Authorize(ctx, p, auth.Restore, addr, "restore a quarantined file")
	}
	return s.auth.Authorize(ctx, p, auth.Issue, addr, "issue the command "+name)
}

// auditCommand records a command issued: a restore with the quarantine
// id as its target, any other with its sequence number; the detail is
// the command as vigil send would take it.
func (s *Server) auditCommand(ctx context.Context, p auth.Principal, addr string, c command.Command, seq uint64) {
	target, _ := json.Marshal(c.Target)
	detail := fmt.Sprintf("seq %d: %s", seq, c.Name)
	for _, k := range slices.Sorted(maps.Keys(c.Args)) {
		detail += " " + k + "=" + c.Args[k]
	}
	detail += " target " + string(target)
	e := auth.Event{Actor: p.User, Addr: addr, Action: auth.EventCommand, Target: strconv.FormatUint(seq, 10), Detail: detail, OK: true}
	if c.Name == command.Restore {
		e.Action, e.Target = auth.EventRestore, c.Args[command.ArgID]
	}
	s.auth.Audit(ctx, e)
}

// RotateEnrollSecret replaces the enrollment secret (its file in the data
// directory, then the one enrollments are checked against) for p, who
// must be allowed auth.RotateSecret, and returns the new one; audited as
// auth.EventSecretRotate. Agents enrolled already are not affected.
func (s *Server) RotateEnrollSecret(ctx context.Context, p auth.Principal, addr string) (string, error) {
	if err := s.auth.Authorize(ctx, p, auth.RotateSecret, addr, "rotate the enrollment secret"); err != nil {
		return "", err
	}
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	secret := randomToken(32)
	dd := DataDir{Path: s.cfg.DataDir}
	if err := writeSecret(dd.file(FileEnrollSecret), secret); err != nil {
		return "", fmt.Errorf("enrollment secret: %w", err)
	}
	s.secret.Store(&secret)
	s.auth.Audit(ctx, auth.Event{Actor: p.User, Addr: addr, Action: auth.EventSecretRotate, OK: true})
	s.log.Info("enrollment secret rotated", "by", p.User, "addr", addr)
	return secret, nil
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) {
	p, _ := principal(r)
	writeJSON(w, http.StatusOK, api.WhoAmI{User: p.User, Role: string(p.Role), Via: p.Via})
}

func userInfo(u auth.User) api.UserInfo {
	return api.UserInfo{Name: u.Name, Role: string(u.Role), Created: u.Created}
}

func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request) {
	p, addr := principal(r)
	us, err := s.auth.Users(r.Context(), p, addr)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	out := make([]api.UserInfo, len(us))
	for i, u := range us {
		out[i] = userInfo(u)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAddUser(w http.ResponseWriter, r *http.Request) {
	var req api.AddUserRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, addr := principal(r)
	u, err := s.auth.AddUser(r.Context(), p, addr, req.Name, auth.Role(req.Role), req.Password)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, userInfo(u))
}

func (s *Server) handleRemoveUser(w http.ResponseWriter, r *http.Request) {
	p, addr := principal(r)
	if err := s.auth.RemoveUser(r.Context(), p, addr, r.PathValue("user")); err != nil {
		writeAuthError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleUserPassword(w http.ResponseWriter, r *http.Request) {
	var req api.PasswordRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, addr := principal(r)
	if err := s.auth.SetPassword(r.Context(), p, addr, r.PathValue("user"), req.Password, req.Current); err != nil {
		writeAuthError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleUserRole(w http.ResponseWriter, r *http.Request) {
	var req api.RoleRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, addr := principal(r)
	if err := s.auth.SetRole(r.Context(), p, addr, r.PathValue("user"), auth.Role(req.Role)); err != nil {
		writeAuthError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func tokenInfo(t auth.TokenInfo) api.TokenInfo {
	return api.TokenInfo{ID: t.ID, User: t.User, Name: t.Name, Created: t.Created, LastUsed: t.LastUsed}
}

func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) {
	p, addr := principal(r)
	ts, err := s.auth.Tokens(r.Context(), p, addr, r.PathValue("user"))
	if err != nil {
		writeAuthError(w, err)
		return
	}
	out := make([]api.TokenInfo, len(ts))
	for i, t := range ts {
		out[i] = tokenInfo(t)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAddToken(w http.ResponseWriter, r *http.Request) {
	var req api.AddTokenRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, addr := principal(r)
	t, err := s.auth.AddToken(r.Context(), p, addr, r.PathValue("user"), req.Name)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.NewToken{Token: t.Token, TokenInfo: tokenInfo(t.TokenInfo)})
}

func (s *Server) handleRemoveToken(w http.ResponseWriter, r *http.Request) {
	p, addr := principal(r)
	if err := s.auth.RemoveToken(r.Context(), p, addr, r.PathValue("user"), r.PathValue("name")); err != nil {
		writeAuthError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRotateSecret(w http.ResponseWriter, r *http.Request) {
	p, addr := principal(r)
	secret, err := s.RotateEnrollSecret(r.Context(), p, addr)
	if err != nil {
		if errors.Is(err, auth.ErrForbidden) {
			writeAuthError(w, err)
		} else {
			writeError(w, http.StatusInternalServerError, "%v", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, api.SecretResponse{Secret: secret})
}

// auditQuery reads the audit routes' query: actor, action (one of
// auth.EventActions), since and until (RFC 3339), limit (1 to 10000;
// def when absent).
func auditQuery(r *http.Request, def int) (auth.AuditQuery, error) {
	v := r.URL.Query()
	q := auth.AuditQuery{Actor: v.Get("actor"), Action: v.Get("action"), Limit: def}
	if len(q.Actor) > 256 {
		return q, errors.New("actor: too long")
	}
	if q.Action != "" && !auth.IsEventAction(q.Action) {
		return q, fmt.Errorf("action: %q is none of %s", q.Action, strings.Join(auth.EventActions, ", "))
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, fmt.Errorf("%s: want a time such as 2026-12-01T15:04:05Z, got %q", f.name, s)
			}
			*f.dst = t
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, errors.New("since must be before until")
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return q, errors.New("limit: want 1 to 10000")
		}
		q.Limit = n
	}
	return q, nil
}

func auditEntry(e auth.Event) api.AuditEntry {
	return api.AuditEntry{Time: e.Time, Actor: e.Actor, Addr: e.Addr, Action: e.Action, Target: e.Target, Detail: e.Detail, OK: e.OK}
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	q, err := auditQuery(r, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	p, addr := principal(r)
	out := []api.AuditEntry{}
	if err := s.auth.AuditLog(r.Context(), p, addr, q, func(e auth.Event) error {
		out = append(out, auditEntry(e))
		return nil
	}); err != nil {
		writeAuthError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleAuditCSV streams the audit entries the query selects (all when
// it sets no limit) as CSV, newest first, as the store reads them. A
// field that a spreadsheet would take for a formula (beginning with =, +,
// -, @, a tab or a carriage return) is prefixed with a quote: failed
// logins put what anyone typed in the log.
func (s *Server) handleAuditCSV(w http.ResponseWriter, r *http.Request) {
	q, err := auditQuery(r, 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	p, addr := principal(r)
	if err := s.auth.Authorize(r.Context(), p, auth.Read, addr, "read the audit log"); err != nil {
		writeAuthError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="vigil-audit.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	cw.Write(api.AuditCSVHeader)
	n := 0
	err = s.auth.AuditLog(r.Context(), p, addr, q, func(e auth.Event) error {
		if err := cw.Write([]string{e.Time.UTC().Format(time.RFC3339Nano), csvCell(e.Actor), csvCell(e.Addr), e.Action,
			csvCell(e.Target), csvCell(e.Detail), strconv.FormatBool(e.OK)}); err != nil {
			return err
		}
		if n++; n%1000 == 0 {
			cw.Flush()
			rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		}
		return cw.Error()
	})
	cw.Flush()
	if err != nil {
		// The status is sent; cutting the connection short tells the
		// client the file is not whole.
		s.log.Warn("audit CSV cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
}

func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
