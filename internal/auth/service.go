package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// Errors of a Service besides ErrBadCredentials and ErrThrottled. Each is
// wrapped with what was wrong; errors.Is tells them apart.
var (
	// ErrInvalid: bad input (a user name, role, password or token name
	// that is not acceptable). Nothing was changed.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no such user, or no such token.
	ErrNotFound = errors.New("not found")
	// ErrExists: a user of that name, or a token of that name for the
	// user, exists already.
	ErrExists = errors.New("already exists")
	// ErrForbidden: the principal's role does not allow it (the refusal
	// is audited as EventDenied).
	ErrForbidden = errors.New("not allowed")
)

// Actions recorded in the audit log besides those of auth.go.
const (
	EventAgentRemove = "agent-remove" // Target: the agent's id
	EventAgentRevoke = "agent-revoke" // Target: the agent's id
)

// EventActions are the actions the audit log records.
var EventActions = []string{
	EventLogin, EventLogout, EventCommand, EventRestore, EventUserAdd, EventUserRemove, EventUserPassword,
	EventUserRole, EventTokenAdd, EventTokenRemove, EventSecretRotate, EventDenied, EventAgentRemove, EventAgentRevoke,
}

// IsEventAction reports whether a is one of EventActions.
func IsEventAction(a string) bool {
	for _, e := range EventActions {
		if e == a {
			return true
		}
	}
	return false
}

// User is a user as a Service shows it (never its password hash).
type User struct {
	Name    string
	Role    Role
	Created time.Time
}

// TokenInfo describes an API token (never the token itself).
type TokenInfo struct {
	ID       string
	User     string
	Name     string
	Created  time.Time
	LastUsed time.Time // zero: never used; recorded at most once a minute
}

// NewAPIToken is a token just made: Token is shown this once and is
// nowhere else.
type NewAPIToken struct {
	Token string
	TokenInfo
}

// AuditQuery selects audit entries (see store.AuditQuery): Actor and
// Action when not "", Since ≤ Time < Until for those not zero, at most
// Limit (all when zero or less), newest first.
type AuditQuery struct {
	Actor, Action string
	Since, Until  time.Time
	Limit         int
}

// Options configure a Service.
type Options struct {
	// BootstrapToken is the server's admin.token: it authenticates as
	// Principal{User: BootstrapUser, Role: Admin, Via: ViaBootstrap}.
	// Empty: there is none.
	BootstrapToken string
	// Params are the argon2id parameters of new password hashes;
	// DefaultParams when zero.
	Params Params
	// Throttle shapes the throttling of failed logins; zero fields take
	// DefaultThrottle's.
	Throttle ThrottleConfig
	// Logger receives a line for each audit entry it could not store;
	// slog.Default() when nil.
	Logger *slog.Logger
}

// Service is the accounts of a server over its store: it implements
// Authenticator and Auditor, and manages users and API tokens, each
// change checked against the acting Principal's role and audited. It is
// safe for concurrent use.
type Service struct {
	st        store.Store
	bootstrap string
	params    Params
	throttle  *Throttle
	log       *slog.Logger
	dummyOnce sync.Once
	dummy     string // a hash to verify against for unknown users
	dummyErr  error

	mu            sync.Mutex
	bootstrapSeen map[string]time.Time // addr -> last audited bootstrap use
}

var (
	_ Authenticator = (*Service)(nil)
	_ Auditor       = (*Service)(nil)
)

// tokenTouch is how often a token's last use is recorded (and its use
// audited): at most once a minute per token.
const tokenTouch = time.Minute

// NewService returns a Service over st. (It returns no error today; the
// error is for options it may have to refuse.)
func NewService(st store.Store, o Options) (*Service, error) {
	if o.Params == (Params{}) {
		o.Params = DefaultParams
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Service{
		st: st, bootstrap: o.BootstrapToken, params: o.Params, throttle: NewThrottle(o.Throttle),
		log: o.Logger, bootstrapSeen: map[string]time.Time{},
	}, nil
}

// Throttle is the Service's throttle of failed logins.
func (s *Service) Throttle() *Throttle { return s.throttle }

// Audit implements Auditor: it stores e, with the current time when
// e.Time is zero.
func (s *Service) Audit(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	_, err := s.st.AppendAudit(context.WithoutCancel(ctx), store.AuditEvent{
		Time: e.Time, Actor: e.Actor, Addr: e.Addr, Action: e.Action, Target: e.Target, Detail: e.Detail, OK: e.OK,
	})
	if err != nil {
		s.log.Error("audit entry not stored", "action", e.Action, "actor", e.Actor, "addr", e.Addr, "err", err)
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditLog calls fn with the entries q selects, newest first, for a
// principal allowed to Read.
func (s *Service) AuditLog(ctx context.Context, by Principal, addr string, q AuditQuery, fn func(Event) error) error {
	if err := s.Authorize(ctx, by, Read, addr, "read the audit log"); err != nil {
		return err
	}
	return s.st.AuditLog(ctx, store.AuditQuery{Actor: q.Actor, Action: q.Action, Since: q.Since, Until: q.Until, Limit: q.Limit},
		func(e store.AuditEvent) error {
			return fn(Event{Time: e.Time, Actor: e.Actor, Addr: e.Addr, Action: e.Action, Target: e.Target, Detail: e.Detail, OK: e.OK})
		})
}

// Authorize returns nil when by may do a, and otherwise audits the
// refusal (EventDenied, Detail what) and returns ErrForbidden.
func (s *Service) Authorize(ctx context.Context, by Principal, a Action, addr, what string) error {
	if by.Role.Can(a) {
		return nil
	}
	return s.deny(ctx, by, addr, what, a)
}

func (s *Service) deny(ctx context.Context, by Principal, addr, what string, a Action) error {
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventDenied, Detail: what, OK: false})
	role := string(by.Role)
	if role == "" {
		role = "no role"
	}
	return fmt.Errorf("%w: %s (%s) may not %s (needs %s)", ErrForbidden, by.User, role, what, a)
}

// Login implements Authenticator: a user's password, throttled per user
// name and per address, audited whatever the outcome.
func (s *Service) Login(ctx context.Context, user, password, addr string) (Principal, error) {
	if w := s.throttle.Wait(user, addr); w > 0 {
		s.Audit(ctx, Event{Actor: user, Addr: addr, Action: EventLogin, Detail: "password; throttled", OK: false})
		return Principal{}, &ThrottledError{RetryAfter: w}
	}
	p, err := s.checkPassword(ctx, user, password)
	if errors.Is(err, ErrBadCredentials) {
		s.throttle.Fail(user, addr)
		s.Audit(ctx, Event{Actor: user, Addr: addr, Action: EventLogin, Detail: "password", OK: false})
		return Principal{}, err
	}
	if err != nil {
		return Principal{}, err
	}
	s.throttle.Succeed(user)
	s.Audit(ctx, Event{Actor: user, Addr: addr, Action: EventLogin, Detail: "password", OK: true})
	return p, nil
}

// checkPassword verifies a user's password (ErrBadCredentials when there
// is no such user or it is wrong), re-hashing it when its hash was made
// with other parameters.
func (s *Service) checkPassword(ctx context.Context, user, password string) (Principal, error) {
	if len(password) > MaxPasswordLength {
		return Principal{}, ErrBadCredentials
	}
	u, err := s.st.User(ctx, user)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Principal{}, err
	}
	// An unknown user costs the same hashing as a known one, so that
	// the time taken does not tell which names exist.
	hash := u.PasswordHash
	if !known {
		s.dummyOnce.Do(func() { s.dummy, s.dummyErr = HashPassword("not a password of anyone", s.params) })
		if s.dummyErr != nil {
			return Principal{}, s.dummyErr
		}
		hash = s.dummy
	}
	ok, stale, err := s.verify(ctx, hash, password)
	if err != nil {
		return Principal{}, err
	}
	if !known || !ok {
		return Principal{}, ErrBadCredentials
	}
	role, err := ParseRole(u.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("user %q: stored %w", user, err)
	}
	if stale {
		if h, err := s.hash(ctx, password); err == nil {
			s.st.SetUserPassword(ctx, user, h)
		}
	}
	return Principal{User: u.Name, Role: role, Via: ViaPassword}, nil
}

// verify and hash run argon2 in one of hashSlots.
func (s *Service) verify(ctx context.Context, hash, password string) (ok, stale bool, err error) {
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return false, false, ctx.Err()
	}
	defer func() { <-hashSlots }()
	return VerifyPassword(hash, password, s.params)
}

func (s *Service) hash(ctx context.Context, password string) (string, error) {
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-hashSlots }()
	return HashPassword(password, s.params)
}

// Token implements Authenticator: the bootstrap admin.token or a user's
// API token. A valid token is always accepted, throttled address or not:
// tokens hold 256 random bits, which no one guesses, and an address
// shared with an attacker must not lock their holders out. A wrong token
// is refused with ErrBadCredentials, or with a ThrottledError when its
// address failed too often lately; it counts against the address (for
// password logins too). Every refusal is audited; a success is audited
// when the token's last use is recorded, at most once a minute for each
// token (for the bootstrap token, for each address), so that the CLI's
// requests do not flood the log.
func (s *Service) Token(ctx context.Context, token, addr string) (Principal, error) {
	if s.bootstrap != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.bootstrap)) == 1 {
		now := time.Now()
		s.mu.Lock()
		audit := now.Sub(s.bootstrapSeen[addr]) >= tokenTouch
		if audit {
			if len(s.bootstrapSeen) >= 1000 {
				clear(s.bootstrapSeen)
			}
			s.bootstrapSeen[addr] = now
		}
		s.mu.Unlock()
		if audit {
			s.Audit(ctx, Event{Actor: BootstrapUser, Addr: addr, Action: EventLogin, Detail: "bootstrap token", OK: true})
		}
		return Principal{User: BootstrapUser, Role: Admin, Via: ViaBootstrap}, nil
	}
	fail := func(detail string) (Principal, error) {
		wait := s.throttle.Wait("", addr)
		s.throttle.Fail("", addr)
		if wait > 0 {
			detail += "; throttled"
		}
		s.Audit(ctx, Event{Addr: addr, Action: EventLogin, Detail: detail, OK: false})
		if wait > 0 {
			return Principal{}, &ThrottledError{RetryAfter: wait}
		}
		return Principal{}, ErrBadCredentials
	}
	if !IsUserToken(token) {
		return fail("token: not a token")
	}
	t, err := s.st.TokenByHash(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return fail("token: unknown or revoked")
	} else if err != nil {
		return Principal{}, err
	}
	u, err := s.st.User(ctx, t.User)
	if errors.Is(err, store.ErrNotFound) {
		return fail("token: its user was removed")
	} else if err != nil {
		return Principal{}, err
	}
	role, err := ParseRole(u.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("user %q: stored %w", u.Name, err)
	}
	if now := time.Now(); now.Sub(t.LastUsed) >= tokenTouch {
		if err := s.st.TouchToken(ctx, t.ID, now); err != nil {
			return Principal{}, err
		}
		s.Audit(ctx, Event{Actor: u.Name, Addr: addr, Action: EventLogin, Detail: "token " + t.Name, OK: true})
	}
	return Principal{User: u.Name, Role: role, Via: ViaToken}, nil
}

// Refresh returns p with its user's current role, for a session that
// outlives changes: ErrBadCredentials when the user was removed. The
// bootstrap principal is returned as it is.
func (s *Service) Refresh(ctx context.Context, p Principal) (Principal, error) {
	if p.Via == ViaBootstrap {
		return p, nil
	}
	u, err := s.st.User(ctx, p.User)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrBadCredentials
	} else if err != nil {
		return Principal{}, err
	}
	role, err := ParseRole(u.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("user %q: stored %w", u.Name, err)
	}
	p.Role = role
	return p, nil
}

// CheckUserName says whether name may be a user's: 1 to 64 of a-z, 0-9,
// '.', '_', '-' and '@', beginning with a letter or digit, and not the
// bootstrap token's name.
func CheckUserName(name string) error {
	if name == BootstrapUser {
		return fmt.Errorf("%w: %q is the bootstrap admin.token's name", ErrInvalid, name)
	}
	if !validName(name, "._-@") {
		return fmt.Errorf("%w: user name %q: want 1 to 64 of a-z, 0-9, '.', '_', '-', '@', beginning with a letter or digit", ErrInvalid, name)
	}
	return nil
}

// CheckTokenName says whether name may be a token's: 1 to 64 of a-z,
// 0-9, '.', '_' and '-', beginning with a letter or digit.
func CheckTokenName(name string) error {
	if !validName(name, "._-") {
		return fmt.Errorf("%w: token name %q: want 1 to 64 of a-z, 0-9, '.', '_', '-', beginning with a letter or digit", ErrInvalid, name)
	}
	return nil
}

func validName(s, punct string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && c < 128 && containsByte(punct, byte(c)):
		default:
			return false
		}
	}
	return true
}

func containsByte(s string, b byte) bool {
	for i := range len(s) {
		if s[i] == b {
			return true
		}
	}
	return false
}

func checkRole(r Role) error {
	if _, err := ParseRole(string(r)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// storeErr maps the store's errors to the Service's.
func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%w: %s", ErrExists, what)
	}
	return err
}

// Users lists the users, for an admin.
func (s *Service) Users(ctx context.Context, by Principal, addr string) ([]User, error) {
	if err := s.Authorize(ctx, by, ManageUsers, addr, "list users"); err != nil {
		return nil, err
	}
	us, err := s.st.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, len(us))
	for i, u := range us {
		out[i] = User{Name: u.Name, Role: Role(u.Role), Created: u.Created}
	}
	return out, nil
}

// AddUser adds a user with a role and a password (CheckPassword), for an
// admin; audited as EventUserAdd.
func (s *Service) AddUser(ctx context.Context, by Principal, addr, name string, role Role, password string) (User, error) {
	if err := s.Authorize(ctx, by, ManageUsers, addr, "add user "+name); err != nil {
		return User{}, err
	}
	if err := CheckUserName(name); err != nil {
		return User{}, err
	}
	if err := checkRole(role); err != nil {
		return User{}, err
	}
	if err := CheckPassword(password); err != nil {
		return User{}, err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	u := User{Name: name, Role: role, Created: time.Now().UTC().Truncate(time.Microsecond)}
	if err := s.st.AddUser(ctx, store.User{Name: name, Role: string(role), PasswordHash: h, Created: u.Created}); err != nil {
		return User{}, storeErr(err, "user "+name)
	}
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventUserAdd, Target: name, Detail: "role " + string(role), OK: true})
	return u, nil
}

// RemoveUser removes a user and its API tokens, for an admin; audited as
// EventUserRemove.
func (s *Service) RemoveUser(ctx context.Context, by Principal, addr, name string) error {
	if err := s.Authorize(ctx, by, ManageUsers, addr, "remove user "+name); err != nil {
		return err
	}
	if err := s.st.RemoveUser(ctx, name); err != nil {
		return storeErr(err, "user "+name)
	}
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventUserRemove, Target: name, OK: true})
	return nil
}

// SetRole changes a user's role, for an admin; audited as EventUserRole
// with "old → new".
func (s *Service) SetRole(ctx context.Context, by Principal, addr, name string, role Role) error {
	if err := s.Authorize(ctx, by, ManageUsers, addr, "change the role of "+name); err != nil {
		return err
	}
	if err := checkRole(role); err != nil {
		return err
	}
	old, err := s.st.SetUserRole(ctx, name, string(role))
	if err != nil {
		return storeErr(err, "user "+name)
	}
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventUserRole, Target: name, Detail: old + " → " + string(role), OK: true})
	return nil
}

// SetPassword sets a user's password (CheckPassword): an admin sets
// anyone's; a user sets their own by giving the current one too (a wrong
// one is ErrBadCredentials and counts as a failed login). Audited as
// EventUserPassword.
func (s *Service) SetPassword(ctx context.Context, by Principal, addr, name, password, current string) error {
	self := by.User == name && by.Via != ViaBootstrap
	if !self {
		if err := s.Authorize(ctx, by, ManageUsers, addr, "set the password of "+name); err != nil {
			return err
		}
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	if self && !by.Role.Can(ManageUsers) {
		if w := s.throttle.Wait(name, addr); w > 0 {
			return &ThrottledError{RetryAfter: w}
		}
		if _, err := s.checkPassword(ctx, name, current); errors.Is(err, ErrBadCredentials) {
			s.throttle.Fail(name, addr)
			s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventUserPassword, Target: name, Detail: "wrong current password", OK: false})
			return fmt.Errorf("%w: the current password is wrong", ErrBadCredentials)
		} else if err != nil {
			return err
		}
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	if err := s.st.SetUserPassword(ctx, name, h); err != nil {
		return storeErr(err, "user "+name)
	}
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventUserPassword, Target: name, OK: true})
	return nil
}

// ownTokens checks that by may manage user's tokens: their own (not the
// bootstrap token's, which has none), or anyone's for an admin.
func (s *Service) ownTokens(ctx context.Context, by Principal, addr, user, what string) error {
	if by.User == user && by.Via != ViaBootstrap {
		return nil
	}
	return s.Authorize(ctx, by, ManageUsers, addr, what)
}

// AddToken makes an API token named name for user (a user their own, an
// admin anyone's); audited as EventTokenAdd. The token is in the result
// and nowhere else.
func (s *Service) AddToken(ctx context.Context, by Principal, addr, user, name string) (NewAPIToken, error) {
	if err := s.ownTokens(ctx, by, addr, user, "add a token for "+user); err != nil {
		return NewAPIToken{}, err
	}
	if err := CheckTokenName(name); err != nil {
		return NewAPIToken{}, err
	}
	tok, hash := NewToken()
	t := store.APIToken{ID: newID(), User: user, Name: name, Hash: hash, Created: time.Now().UTC().Truncate(time.Microsecond)}
	if err := s.st.AddToken(ctx, t); err != nil {
		if errors.Is(err, store.ErrExists) {
			return NewAPIToken{}, fmt.Errorf("%w: %s has a token named %s", ErrExists, user, name)
		}
		return NewAPIToken{}, storeErr(err, "user "+user)
	}
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventTokenAdd, Target: user, Detail: name, OK: true})
	return NewAPIToken{Token: tok, TokenInfo: tokenInfo(t)}, nil
}

func tokenInfo(t store.APIToken) TokenInfo {
	return TokenInfo{ID: t.ID, User: t.User, Name: t.Name, Created: t.Created, LastUsed: t.LastUsed}
}

// Tokens lists user's tokens (a user their own, an admin anyone's; every
// user's when user is "", for an admin).
func (s *Service) Tokens(ctx context.Context, by Principal, addr, user string) ([]TokenInfo, error) {
	if user == "" {
		if err := s.Authorize(ctx, by, ManageUsers, addr, "list every user's tokens"); err != nil {
			return nil, err
		}
	} else if err := s.ownTokens(ctx, by, addr, user, "list the tokens of "+user); err != nil {
		return nil, err
	}
	if user != "" {
		if _, err := s.st.User(ctx, user); err != nil {
			return nil, storeErr(err, "user "+user)
		}
	}
	ts, err := s.st.Tokens(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]TokenInfo, len(ts))
	for i, t := range ts {
		out[i] = tokenInfo(t)
	}
	return out, nil
}

// RemoveToken revokes user's token named name (a user their own, an
// admin anyone's); audited as EventTokenRemove. It stops working at once.
func (s *Service) RemoveToken(ctx context.Context, by Principal, addr, user, name string) error {
	if err := s.ownTokens(ctx, by, addr, user, "remove a token of "+user); err != nil {
		return err
	}
	if err := s.st.RemoveToken(ctx, user, name); err != nil {
		return storeErr(err, "token "+name+" of "+user)
	}
	s.Audit(ctx, Event{Actor: by.User, Addr: addr, Action: EventTokenRemove, Target: user, Detail: name, OK: true})
	return nil
}
