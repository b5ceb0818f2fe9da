package api

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"time"
)

// The accounts part of the admin API (docs/protocol.md §3.2): users,
// their API tokens, the audit log and the enrollment secret's rotation.
// Roles are "viewer", "operator" and "admin".

// WhoAmI is who the request's credential is (GET /admin/v1/whoami): a
// user, or "admin.token" for the bootstrap token; Via is "token",
// "password" or "bootstrap".
type WhoAmI struct {
	User string `json:"user"`
	Role string `json:"role"`
	Via  string `json:"via"`
}

// UserInfo is a user as the admin API lists it (never its password).
type UserInfo struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
}

// AddUserRequest adds a user (POST /admin/v1/users). The password must
// be at least 12 characters long.
type AddUserRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

// PasswordRequest sets a user's password (PUT
// /admin/v1/users/{user}/password). Current is required when a user who
// is not an admin sets their own.
type PasswordRequest struct {
	Password string `json:"password"`
	Current  string `json:"current,omitempty"`
}

// RoleRequest sets a user's role (PUT /admin/v1/users/{user}/role).
type RoleRequest struct {
	Role string `json:"role"`
}

// TokenInfo is an API token as listed: never the token itself.
type TokenInfo struct {
	ID       string    `json:"id"`
	User     string    `json:"user"`
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// AddTokenRequest makes an API token (POST /admin/v1/users/{user}/tokens).
type AddTokenRequest struct {
	Name string `json:"name"`
}

// NewToken is the answer to AddTokenRequest: Token is shown this once;
// the server keeps only its hash.
type NewToken struct {
	Token string `json:"token"`
	TokenInfo
}

// AuditEntry is one entry of the audit log.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Addr   string    `json:"addr"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
	OK     bool      `json:"ok"`
}

// AuditCSVHeader is the first line of the audit log's CSV.
var AuditCSVHeader = []string{"time", "actor", "addr", "action", "target", "detail", "ok"}

// AuditFilter selects audit entries: each field when set. Since is
// inclusive, Until exclusive; Limit bounds the entries (the JSON list:
// 1 to 10000, 100 when 0; the CSV: all when 0).
type AuditFilter struct {
	Actor, Action string
	Since, Until  time.Time
	Limit         int
}

// Query is f as the query string of the audit routes.
func (f AuditFilter) Query() url.Values {
	q := url.Values{}
	if f.Actor != "" {
		q.Set("actor", f.Actor)
	}
	if f.Action != "" {
		q.Set("action", f.Action)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// SecretResponse is the new enrollment secret (POST
// /admin/v1/enroll-secret/rotate). Agents enrolled before keep working;
// new ones need this secret.
type SecretResponse struct {
	Secret string `json:"secret"`
}

// WhoAmI says who the client's credential is.
func (c *AdminClient) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var w WhoAmI
	err := c.Call(ctx, RouteAdminWhoAmI, nil, nil, &w)
	return w, err
}

// Users lists the users (admin).
func (c *AdminClient) Users(ctx context.Context) ([]UserInfo, error) {
	var us []UserInfo
	err := c.Call(ctx, RouteAdminUsers, nil, nil, &us)
	return us, err
}

// AddUser adds a user (admin).
func (c *AdminClient) AddUser(ctx context.Context, req AddUserRequest) (UserInfo, error) {
	var u UserInfo
	err := c.Call(ctx, RouteAdminAddUser, nil, req, &u)
	return u, err
}

// RemoveUser removes a user and its tokens (admin).
func (c *AdminClient) RemoveUser(ctx context.Context, name string) error {
	return c.Call(ctx, RouteAdminRemoveUser, nil, nil, nil, name)
}

// SetPassword sets a user's password (admin; or the user, with current).
func (c *AdminClient) SetPassword(ctx context.Context, name string, req PasswordRequest) error {
	return c.Call(ctx, RouteAdminUserPassword, nil, req, nil, name)
}

// SetRole sets a user's role (admin).
func (c *AdminClient) SetRole(ctx context.Context, name, role string) error {
	return c.Call(ctx, RouteAdminUserRole, nil, RoleRequest{Role: role}, nil, name)
}

// Tokens lists a user's API tokens (the user, or an admin).
func (c *AdminClient) Tokens(ctx context.Context, user string) ([]TokenInfo, error) {
	var ts []TokenInfo
	err := c.Call(ctx, RouteAdminTokens, nil, nil, &ts, user)
	return ts, err
}

// AddToken makes an API token for a user (the user, or an admin).
func (c *AdminClient) AddToken(ctx context.Context, user, name string) (NewToken, error) {
	var t NewToken
	err := c.Call(ctx, RouteAdminAddToken, nil, AddTokenRequest{Name: name}, &t, user)
	return t, err
}

// RemoveToken revokes a user's API token by name (the user, or an admin).
func (c *AdminClient) RemoveToken(ctx context.Context, user, name string) error {
	return c.Call(ctx, RouteAdminRemoveToken, nil, nil, nil, user, name)
}

// Audit lists the audit entries f selects, newest first.
func (c *AdminClient) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var es []AuditEntry
	err := c.Call(ctx, RouteAdminAudit, f.Query(), nil, &es)
	return es, err
}

// AuditCSV copies the audit entries f selects, as CSV (a header line,
// then the entries newest first), to w as they arrive.
func (c *AdminClient) AuditCSV(ctx context.Context, f AuditFilter, w io.Writer) error {
	return c.Call(ctx, RouteAdminAuditCSV, f.Query(), nil, w)
}

// RotateSecret replaces the enrollment secret and returns the new one
// (admin).
func (c *AdminClient) RotateSecret(ctx context.Context) (string, error) {
	var r SecretResponse
	err := c.Call(ctx, RouteAdminRotateSecret, nil, nil, &r)
	return r.Secret, err
}
