package auth_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

const bootstrap = "b00757a9b00757a9b00757a9b00757a9b00757a9b00757a9b00757a9b00757a9"

var boot = auth.Principal{User: auth.BootstrapUser, Role: auth.Admin, Via: auth.ViaBootstrap}

// newService is a Service over a new SQLite store in a temporary file,
// with cheap argon2id parameters.
func newService(t *testing.T, th auth.ThrottleConfig) (*auth.Service, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := auth.NewService(st, auth.Options{BootstrapToken: bootstrap, Params: auth.Params{Time: 1, Memory: 64, Threads: 1}, Throttle: th})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// events reads the whole audit log, oldest first.
func events(t *testing.T, st store.Store) []store.AuditEvent {
	t.Helper()
	var es []store.AuditEvent
	if err := st.AuditLog(t.Context(), store.AuditQuery{}, func(e store.AuditEvent) error {
		es = append([]store.AuditEvent{e}, es...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

func last(t *testing.T, st store.Store) store.AuditEvent {
	t.Helper()
	es := events(t, st)
	if len(es) == 0 {
		t.Fatal("the audit log is empty")
	}
	return es[len(es)-1]
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s, st := newService(t, auth.ThrottleConfig{Free: 2})
	ctx := t.Context()
	if _, err := s.AddUser(ctx, boot, "127.0.0.1", "ann", auth.Operator, "ann's long password"); err != nil {
		t.Fatal(err)
	}
	if e := last(t, st); e.Action != auth.EventUserAdd || e.Actor != auth.BootstrapUser || e.Target != "ann" || e.Detail != "role operator" || !e.OK {
		t.Errorf("audit of user-add: %+v", e)
	}
	p, err := s.Login(ctx, "ann", "ann's long password", "10.1.1.1:5000")
	if err != nil || p != (auth.Principal{User: "ann", Role: auth.Operator, Via: auth.ViaPassword}) {
		t.Fatalf("Login = %+v, %v", p, err)
	}
	if e := last(t, st); e.Action != auth.EventLogin || e.Actor != "ann" || e.Addr != "10.1.1.1:5000" || !e.OK {
		t.Errorf("audit of a login: %+v", e)
	}
	// Wrong password and unknown user: the same error, both audited.
	for _, u := range []string{"ann", "nobody"} {
		if _, err := s.Login(ctx, u, "wrong password!", "10.1.1.2"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Errorf("Login(%s, wrong) = %v", u, err)
		}
		if e := last(t, st); e.Action != auth.EventLogin || e.Actor != u || e.OK {
			t.Errorf("audit of a failed login of %s: %+v", u, e)
		}
	}
	// The address made two failures (Free): the third is slowed down.
	if _, err := s.Login(ctx, "ann", "wrong again!!", "10.1.1.2"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatal(err)
	}
	_, err = s.Login(ctx, "ann", "ann's long password", "10.1.1.2")
	var te *auth.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter <= 0 || !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("Login after failures = %v, want throttled", err)
	}
	if e := last(t, st); e.Action != auth.EventLogin || e.OK || !strings.Contains(e.Detail, "throttled") {
		t.Errorf("audit of a throttled login: %+v", e)
	}
	// ann herself failed twice (from 10.1.1.2); a third failure, from
	// another address, throttles her name wherever she comes from.
	if _, err := s.Login(ctx, "ann", "wrong again!!", "10.9.9.9"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "ann", "ann's long password", "10.9.9.8"); !errors.Is(err, auth.ErrThrottled) {
		t.Errorf("Login of a throttled name from elsewhere = %v", err)
	}
}

func TestStaleHashIsUpgraded(t *testing.T) {
	t.Parallel()
	s, st := newService(t, auth.ThrottleConfig{})
	ctx := t.Context()
	old, err := auth.HashPassword("an old password", auth.Params{Time: 1, Memory: 32, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(ctx, store.User{Name: "old", Role: "viewer", PasswordHash: old}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "old", "an old password", "a"); err != nil {
		t.Fatal(err)
	}
	u, _ := st.User(ctx, "old")
	if !strings.Contains(u.PasswordHash, "$m=64,t=1,p=1$") {
		t.Errorf("hash after a login: %s, want the current parameters", u.PasswordHash)
	}
	if _, err := s.Login(ctx, "old", "an old password", "a"); err != nil {
		t.Errorf("login with the re-hashed password: %v", err)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	s, st := newService(t, auth.ThrottleConfig{Free: 3})
	ctx := t.Context()
	for _, u := range []string{"ann", "bob"} {
		if _, err := s.AddUser(ctx, boot, "", u, auth.Viewer, "a long password"); err != nil {
			t.Fatal(err)
		}
	}
	// The bootstrap token is the bootstrap admin, and has no tokens.
	if p, err := s.Token(ctx, bootstrap, "127.0.0.1"); err != nil || p != boot {
		t.Fatalf("Token(bootstrap) = %+v, %v", p, err)
	}
	if e := last(t, st); e.Action != auth.EventLogin || e.Actor != auth.BootstrapUser || !e.OK {
		t.Errorf("audit of the bootstrap token's use: %+v", e)
	}
	if _, err := s.AddToken(ctx, boot, "", auth.BootstrapUser, "x"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("a token for the bootstrap user: %v", err)
	}
	annP := auth.Principal{User: "ann", Role: auth.Viewer, Via: auth.ViaPassword}
	nt, err := s.AddToken(ctx, annP, "10.0.0.1", "ann", "laptop")
	if err != nil || !auth.IsUserToken(nt.Token) || nt.User != "ann" || nt.Name != "laptop" {
		t.Fatalf("AddToken = %+v, %v", nt, err)
	}
	if e := last(t, st); e.Action != auth.EventTokenAdd || e.Actor != "ann" || e.Target != "ann" || e.Detail != "laptop" {
		t.Errorf("audit of token-add: %+v", e)
	}
	// Shown once: what is listed, and stored, is not the token.
	ts, err := s.Tokens(ctx, annP, "", "ann")
	if err != nil || len(ts) != 1 || ts[0].Name != "laptop" {
		t.Fatalf("Tokens = %+v, %v", ts, err)
	}
	all, _ := st.Tokens(ctx, "")
	if len(all) != 1 || strings.Contains(string(all[0].Hash), nt.Token) || string(all[0].Hash) != string(auth.HashToken(nt.Token)) {
		t.Error("the store holds something other than the token's hash")
	}
	p, err := s.Token(ctx, nt.Token, "10.0.0.1")
	if err != nil || p != (auth.Principal{User: "ann", Role: auth.Viewer, Via: auth.ViaToken}) {
		t.Fatalf("Token(ann's) = %+v, %v", p, err)
	}
	if ts, _ := s.Tokens(ctx, annP, "", "ann"); ts[0].LastUsed.IsZero() {
		t.Error("the token's last use was not recorded")
	}
	// A role change applies to the token at once.
	if err := s.SetRole(ctx, boot, "", "ann", auth.Operator); err != nil {
		t.Fatal(err)
	}
	if e := last(t, st); e.Action != auth.EventUserRole || e.Detail != "viewer → operator" {
		t.Errorf("audit of user-role: %+v", e)
	}
	if p, _ := s.Token(ctx, nt.Token, "10.0.0.1"); p.Role != auth.Operator {
		t.Errorf("role after the change: %s", p.Role)
	}
	// bob may not touch ann's tokens; the refusal is audited.
	bobP := auth.Principal{User: "bob", Role: auth.Viewer, Via: auth.ViaToken}
	if err := s.RemoveToken(ctx, bobP, "10.0.0.2", "ann", "laptop"); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("bob removing ann's token: %v", err)
	}
	if e := last(t, st); e.Action != auth.EventDenied || e.Actor != "bob" || e.Addr != "10.0.0.2" || e.OK {
		t.Errorf("audit of a refusal: %+v", e)
	}
	if _, err := s.AddToken(ctx, annP, "", "ann", "laptop"); !errors.Is(err, auth.ErrExists) {
		t.Errorf("a second token named laptop: %v", err)
	}
	if _, err := s.AddToken(ctx, annP, "", "ann", "Bad Name"); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a token named \"Bad Name\": %v", err)
	}
	// Revoked: refused at once, audited.
	if err := s.RemoveToken(ctx, annP, "", "ann", "laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(ctx, nt.Token, "10.0.0.3"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("a revoked token: %v", err)
	}
	if e := last(t, st); e.Action != auth.EventLogin || e.OK || e.Addr != "10.0.0.3" {
		t.Errorf("audit of a revoked token's use: %+v", e)
	}
	// Removing a user revokes its tokens.
	nt2, _ := s.AddToken(ctx, boot, "", "bob", "ci")
	if err := s.RemoveUser(ctx, boot, "", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(ctx, nt2.Token, "10.0.0.4"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("a removed user's token: %v", err)
	}
	// Guessing tokens from one address is throttled (the address made
	// no failure before; three are free), and slows its password logins;
	// a valid token from there still works.
	for range 4 {
		s.Token(ctx, "vgl_guess", "10.0.0.5")
	}
	if _, err := s.Token(ctx, "vgl_guess", "10.0.0.5"); !errors.Is(err, auth.ErrThrottled) {
		t.Errorf("after four wrong tokens: %v, want throttled", err)
	}
	if e := last(t, st); e.Action != auth.EventLogin || e.OK || !strings.Contains(e.Detail, "throttled") {
		t.Errorf("audit of a throttled token: %+v", e)
	}
	if _, err := s.Login(ctx, "ann", "a long password", "10.0.0.5"); !errors.Is(err, auth.ErrThrottled) {
		t.Errorf("a login from the guessing address: %v, want throttled", err)
	}
	if p, err := s.Token(ctx, bootstrap, "10.0.0.5"); err != nil || p != boot {
		t.Errorf("the bootstrap token from the guessing address: %+v, %v", p, err)
	}
}

// TestBadInput: each bad request gets an error that says what is wrong,
// and changes nothing (neither the users nor the audit log).
func TestBadInput(t *testing.T) {
	t.Parallel()
	s, st := newService(t, auth.ThrottleConfig{})
	ctx := t.Context()
	if _, err := s.AddUser(ctx, boot, "", "ann", auth.Viewer, "a long password"); err != nil {
		t.Fatal(err)
	}
	viewer := auth.Principal{User: "ann", Role: auth.Viewer, Via: auth.ViaPassword}
	before := len(events(t, st))
	for _, tc := range []struct {
		name string
		err  error
		want string
		fn   func() error
	}{
		{"bad role", auth.ErrInvalid, "unknown role", func() error {
			_, err := s.AddUser(ctx, boot, "", "bob", auth.Role("root"), "a long password")
			return err
		}},
		{"short password", auth.ErrInvalid, "at least 12", func() error {
			_, err := s.AddUser(ctx, boot, "", "bob", auth.Viewer, "short")
			return err
		}},
		{"bad name", auth.ErrInvalid, "user name", func() error {
			_, err := s.AddUser(ctx, boot, "", "Bob Smith", auth.Viewer, "a long password")
			return err
		}},
		{"bootstrap name", auth.ErrInvalid, "bootstrap", func() error {
			_, err := s.AddUser(ctx, boot, "", auth.BootstrapUser, auth.Viewer, "a long password")
			return err
		}},
		{"duplicate", auth.ErrExists, "ann", func() error {
			_, err := s.AddUser(ctx, boot, "", "ann", auth.Admin, "another long password")
			return err
		}},
		{"unknown user's role", auth.ErrNotFound, "nobody", func() error { return s.SetRole(ctx, boot, "", "nobody", auth.Admin) }},
		{"bad role change", auth.ErrInvalid, "unknown role", func() error { return s.SetRole(ctx, boot, "", "ann", "superuser") }},
		{"unknown user removed", auth.ErrNotFound, "nobody", func() error { return s.RemoveUser(ctx, boot, "", "nobody") }},
		{"unknown user's password", auth.ErrNotFound, "nobody", func() error {
			return s.SetPassword(ctx, boot, "", "nobody", "a long password", "")
		}},
		{"short new password", auth.ErrInvalid, "at least 12", func() error { return s.SetPassword(ctx, boot, "", "ann", "short", "") }},
		{"unknown user's token", auth.ErrNotFound, "nobody", func() error { _, err := s.AddToken(ctx, boot, "", "nobody", "x"); return err }},
		{"unknown token", auth.ErrNotFound, "nope", func() error { return s.RemoveToken(ctx, boot, "", "ann", "nope") }},
	} {
		err := tc.fn()
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.err, tc.want)
		}
	}
	if n := len(events(t, st)); n != before {
		t.Errorf("bad input added %d audit entries", n-before)
	}
	us, _ := s.Users(ctx, boot, "")
	if len(us) != 1 || us[0].Role != auth.Viewer {
		t.Errorf("users after bad input: %+v", us)
	}
	// A viewer may change its own password, with the current one.
	if err := s.SetPassword(ctx, viewer, "", "ann", "a new long password", "wrong one"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("own password with a wrong current one: %v", err)
	}
	if err := s.SetPassword(ctx, viewer, "", "ann", "a new long password", "a long password"); err != nil {
		t.Errorf("own password: %v", err)
	}
	if _, err := s.Login(ctx, "ann", "a new long password", ""); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	if e := last(t, st); e.Action != auth.EventLogin || !e.OK {
		t.Errorf("last entry: %+v", e)
	}
	// and nothing an admin may.
	if _, err := s.Users(ctx, viewer, ""); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("a viewer listing users: %v", err)
	}
	if err := s.SetPassword(ctx, viewer, "", "root", "a long password", ""); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("a viewer setting another's password: %v", err)
	}
	// Refresh follows the role, and a removed user's session ends.
	if err := s.SetRole(ctx, boot, "", "ann", auth.Admin); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Refresh(ctx, viewer); err != nil || p.Role != auth.Admin {
		t.Errorf("Refresh = %+v, %v", p, err)
	}
	if err := s.RemoveUser(ctx, boot, "", "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(ctx, viewer); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("Refresh of a removed user: %v", err)
	}
}
