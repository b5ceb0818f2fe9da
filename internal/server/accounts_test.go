package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
)

// accounts is a real server with a user of each role, each holding an
// API token.
type accounts struct {
	ts    *servertest.Server
	boot  *api.AdminClient // the bootstrap admin.token
	users map[auth.Role]*api.AdminClient
	names map[auth.Role]string
}

func startAccounts(t *testing.T) *accounts {
	t.Helper()
	ts := servertest.Start(t, server.Config{
		PasswordParams: auth.Params{Time: 1, Memory: 64, Threads: 1},
		Throttle:       auth.ThrottleConfig{Free: 3, Base: time.Hour},
	})
	a := &accounts{ts: ts, boot: ts.Admin(), users: map[auth.Role]*api.AdminClient{}, names: map[auth.Role]string{}}
	ctx := context.Background()
	for _, r := range auth.Roles {
		name := "the-" + string(r)
		if _, err := a.boot.AddUser(ctx, api.AddUserRequest{Name: name, Role: string(r), Password: "a password of " + name}); err != nil {
			t.Fatal(err)
		}
		nt, err := a.boot.AddToken(ctx, name, "cli")
		if err != nil {
			t.Fatal(err)
		}
		a.users[r] = a.client(nt.Token)
		a.names[r] = name
	}
	return a
}

func (a *accounts) client(token string) *api.AdminClient {
	return &api.AdminClient{Client: api.Client{Base: a.ts.AdminURL, Auth: token}}
}

// audit is the audit log, newest first, read with the bootstrap token.
func (a *accounts) audit(t *testing.T, f api.AuditFilter) []api.AuditEntry {
	t.Helper()
	f.Limit = 10000
	es, err := a.boot.Audit(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func status(err error) int {
	var he *api.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	if err != nil {
		return -1
	}
	return http.StatusOK
}

// TestRolesPerRoute: every admin route, called by each role, is refused
// with 403 exactly when the role does not allow it, and each refusal is
// audited; a missing or wrong token is 401 everywhere.
func TestRolesPerRoute(t *testing.T) {
	t.Parallel()
	a := startAccounts(t)
	ctx := context.Background()
	const other = "someone-else"
	if _, err := a.boot.AddUser(ctx, api.AddUserRequest{Name: other, Role: "viewer", Password: "someone's password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.boot.AddToken(ctx, other, "theirs"); err != nil {
		t.Fatal(err)
	}
	// need is the least role a route needs; self routes are called on
	// the caller's own user (allowed to all) and on another's (admin).
	type call struct {
		r      api.Route
		in     any
		params func(self string) []string
		need   auth.Role
	}
	none := func(string) []string { return nil }
	self := func(s string) []string { return []string{s} }
	selfTok := func(s string) []string { return []string{s, "nope"} }
	theirs := func(string) []string { return []string{other} }
	theirTok := func(string) []string { return []string{other, "theirs-not"} }
	calls := []call{
		{api.RouteAdminAgents, nil, none, auth.Viewer},
		{api.RouteAdminRemoveAgent, nil, func(string) []string { return []string{"0123456789abcdef"} }, auth.Operator},
		{api.RouteAdminRevokeAgent, nil, func(string) []string { return []string{"0123456789abcdef"} }, auth.Operator},
		{api.RouteAdminCommands, nil, none, auth.Viewer},
		{api.RouteAdminSend, api.SendRequest{Name: "ping", Target: command.Target{All: true}}, none, auth.Operator},
		{api.RouteAdminCommandResults, nil, func(string) []string { return []string{"999"} }, auth.Viewer},
		{api.RouteAdminDetections, nil, none, auth.Viewer},
		{api.RouteAdminScans, nil, none, auth.Viewer},
		{api.RouteAdminServer, nil, none, auth.Viewer},
		{api.RouteAdminWhoAmI, nil, none, auth.Viewer},
		{api.RouteAdminUsers, nil, none, auth.Admin},
		{api.RouteAdminAddUser, api.AddUserRequest{Name: "x", Role: "viewer", Password: "short"}, none, auth.Admin},
		{api.RouteAdminRemoveUser, nil, func(string) []string { return []string{"nobody"} }, auth.Admin},
		{api.RouteAdminUserRole, api.RoleRequest{Role: "admin"}, func(string) []string { return []string{"nobody"} }, auth.Admin},
		{api.RouteAdminUserPassword, api.PasswordRequest{Password: "short"}, self, auth.Viewer},
		{api.RouteAdminUserPassword, api.PasswordRequest{Password: "short"}, theirs, auth.Admin},
		{api.RouteAdminTokens, nil, self, auth.Viewer},
		{api.RouteAdminTokens, nil, theirs, auth.Admin},
		{api.RouteAdminAddToken, api.AddTokenRequest{Name: "Bad Name"}, self, auth.Viewer},
		{api.RouteAdminAddToken, api.AddTokenRequest{Name: "Bad Name"}, theirs, auth.Admin},
		{api.RouteAdminRemoveToken, nil, selfTok, auth.Viewer},
		{api.RouteAdminRemoveToken, nil, theirTok, auth.Admin},
		{api.RouteAdminAudit, nil, none, auth.Viewer},
		{api.RouteAdminAuditCSV, nil, none, auth.Viewer},
		{api.RouteAdminRotateSecret, nil, none, auth.Admin},
	}
	covered := map[api.Route]bool{api.RouteMetrics: true}
	rank := map[auth.Role]int{auth.Viewer: 0, auth.Operator: 1, auth.Admin: 2}
	denied := 0
	for _, c := range calls {
		covered[c.r] = true
		for _, role := range auth.Roles {
			var out []byte
			err := a.users[role].Call(ctx, c.r, nil, c.in, &out, c.params(a.names[role])...)
			got := status(err)
			what := fmt.Sprintf("%s %s as %s", c.r.Method, c.r.Path(c.params(a.names[role])...), role)
			if rank[role] < rank[c.need] {
				denied++
				if got != http.StatusForbidden {
					t.Errorf("%s: %d (%v), want 403", what, got, err)
				}
			} else if got == http.StatusForbidden || got == http.StatusUnauthorized || got < 0 {
				t.Errorf("%s: %d (%v), want it allowed", what, got, err)
			}
		}
		// No token: 401 (a wrong one is 401 too, but the throttle
		// answers 429 after three: TestTokensOverHTTP).
		if err := a.client("").Call(ctx, c.r, nil, c.in, nil, c.params("x")...); status(err) != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %v, want 401", c.r.Method, c.r.Pattern, err)
		}
	}
	for _, r := range api.AdminRoutes() {
		if !covered[r] {
			t.Errorf("route %s %s is not in the table", r.Method, r.Pattern)
		}
	}
	// The bootstrap token is an admin everywhere.
	if w, err := a.boot.WhoAmI(ctx); err != nil || w != (api.WhoAmI{User: auth.BootstrapUser, Role: "admin", Via: "bootstrap"}) {
		t.Errorf("WhoAmI(bootstrap) = %+v, %v", w, err)
	}
	if _, err := a.boot.Users(ctx); err != nil {
		t.Errorf("bootstrap listing users: %v", err)
	}
	if es := a.audit(t, api.AuditFilter{Action: auth.EventDenied}); len(es) != denied {
		t.Errorf("%d refusals audited, want %d", len(es), denied)
	}
}

// TestViewerPostRefused: a viewer's POST of a command is refused with
// 403, audited with who and from where, and issues nothing.
func TestViewerPostRefused(t *testing.T) {
	t.Parallel()
	a := startAccounts(t)
	ctx := context.Background()
	for _, name := range []string{"ping", command.Restore} {
		args := map[string]string(nil)
		if name == command.Restore {
			args = map[string]string{command.ArgID: strings.Repeat("ab", 16)}
		}
		_, err := a.users[auth.Viewer].Send(ctx, api.SendRequest{Name: name, Args: args, Target: command.Target{All: true}})
		if !api.IsStatus(err, http.StatusForbidden) || !strings.Contains(err.Error(), "the-viewer (viewer) may not") {
			t.Errorf("a viewer's %s: %v, want 403 saying why", name, err)
		}
	}
	if cs, err := a.boot.ListCommands(ctx, 10); err != nil || len(cs) != 0 {
		t.Errorf("commands after refusals: %+v, %v", cs, err)
	}
	es := a.audit(t, api.AuditFilter{Actor: "the-viewer", Action: auth.EventDenied})
	if len(es) != 2 || es[0].Addr != "127.0.0.1" || es[0].OK || es[0].Detail != "POST /admin/v1/commands" {
		t.Errorf("refusals in the audit log: %+v", es)
	}
}

// TestAuditedActions: each audited action leaves its entry, with who,
// from where, on what; the CSV holds what the list holds.
func TestAuditedActions(t *testing.T) {
	t.Parallel()
	a := startAccounts(t)
	ctx := context.Background()
	op, adm := a.users[auth.Operator], a.users[auth.Admin]

	info, err := op.Send(ctx, api.SendRequest{Name: "ping", Target: command.Target{Groups: []string{"lab"}}})
	if err != nil {
		t.Fatal(err)
	}
	qid := strings.Repeat("0f", 16)
	rinfo, err := op.Send(ctx, api.SendRequest{Name: command.Restore, Args: map[string]string{command.ArgID: qid}, Target: command.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := a.ts.AgentClient("").Enroll(ctx, api.EnrollRequest{Secret: a.ts.EnrollSecret(), Nonce: strings.Repeat("5a", 16), Hostname: "h", OS: "linux", Arch: "amd64", Version: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.RevokeAgent(ctx, enr.AgentID); err != nil {
		t.Fatal(err)
	}
	if err := op.RemoveAgent(ctx, enr.AgentID); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.AddUser(ctx, api.AddUserRequest{Name: "dora", Role: "viewer", Password: "dora's password"}); err != nil {
		t.Fatal(err)
	}
	if err := adm.SetRole(ctx, "dora", "operator"); err != nil {
		t.Fatal(err)
	}
	if err := adm.SetPassword(ctx, "dora", api.PasswordRequest{Password: "dora's new password"}); err != nil {
		t.Fatal(err)
	}
	nt, err := adm.AddToken(ctx, "dora", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.RemoveToken(ctx, "dora", "ci"); err != nil {
		t.Fatal(err)
	}
	if err := adm.RemoveUser(ctx, "dora"); err != nil {
		t.Fatal(err)
	}
	old := a.ts.EnrollSecret()
	secret, err := adm.RotateSecret(ctx)
	if err != nil || secret == old || a.ts.EnrollSecret() != secret {
		t.Fatalf("RotateSecret = %q, %v (old %q, server's %q)", secret, err, old, a.ts.EnrollSecret())
	}
	// The old secret no longer enrolls; the new one does.
	if _, err := a.ts.AgentClient("").Enroll(ctx, api.EnrollRequest{Secret: old, Nonce: strings.Repeat("5b", 16), Hostname: "h", OS: "linux", Arch: "amd64", Version: "t"}); !api.IsStatus(err, http.StatusForbidden) {
		t.Errorf("enrolling with the old secret: %v, want 403", err)
	}
	if _, err := a.ts.AgentClient("").Enroll(ctx, api.EnrollRequest{Secret: secret, Nonce: strings.Repeat("5c", 16), Hostname: "h", OS: "linux", Arch: "amd64", Version: "t"}); err != nil {
		t.Errorf("enrolling with the new secret: %v", err)
	}

	want := []api.AuditEntry{
		{Actor: "the-operator", Action: auth.EventCommand, Target: strconv.FormatUint(info.Seq, 10), Detail: fmt.Sprintf(`seq %d: ping target {"groups":["lab"]}`, info.Seq)},
		{Actor: "the-operator", Action: auth.EventRestore, Target: qid, Detail: fmt.Sprintf(`seq %d: restore id=%s target {"all":true}`, rinfo.Seq, qid)},
		{Actor: "the-operator", Action: auth.EventAgentRevoke, Target: enr.AgentID},
		{Actor: "the-operator", Action: auth.EventAgentRemove, Target: enr.AgentID},
		{Actor: "the-admin", Action: auth.EventUserAdd, Target: "dora", Detail: "role viewer"},
		{Actor: "the-admin", Action: auth.EventUserRole, Target: "dora", Detail: "viewer → operator"},
		{Actor: "the-admin", Action: auth.EventUserPassword, Target: "dora"},
		{Actor: "the-admin", Action: auth.EventTokenAdd, Target: "dora", Detail: "ci"},
		{Actor: "the-admin", Action: auth.EventTokenRemove, Target: "dora", Detail: "ci"},
		{Actor: "the-admin", Action: auth.EventUserRemove, Target: "dora"},
		{Actor: "the-admin", Action: auth.EventSecretRotate},
	}
	var got []api.AuditEntry
	for _, e := range a.audit(t, api.AuditFilter{}) {
		if e.Action != auth.EventLogin {
			got = append([]api.AuditEntry{e}, got...)
		}
	}
	// Setting up the accounts added users and tokens first.
	if len(got) < len(want) {
		t.Fatalf("audit log: %+v", got)
	}
	got = got[len(got)-len(want):]
	for i, w := range want {
		g := got[i]
		if g.Actor != w.Actor || g.Action != w.Action || g.Target != w.Target || g.Detail != w.Detail || !g.OK || g.Addr != "127.0.0.1" || g.Time.IsZero() {
			t.Errorf("audit entry %d = %+v, want %+v", i, g, w)
		}
	}
	// The token made for dora was shown once: no listing holds it.
	ts, _ := adm.Tokens(ctx, "the-admin")
	for _, tk := range ts {
		if strings.Contains(fmt.Sprint(tk), nt.Token) {
			t.Error("a token listing holds a token")
		}
	}

	// The CSV: the list's entries, filtered the same way.
	f := api.AuditFilter{Actor: "the-admin", Since: got[4].Time}
	var buf bytes.Buffer
	if err := a.users[auth.Viewer].AuditCSV(ctx, f, &buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	list, err := a.users[auth.Viewer].Audit(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(list)+1 || strings.Join(recs[0], ",") != strings.Join(api.AuditCSVHeader, ",") || len(list) < 7 {
		t.Fatalf("CSV of %d lines for %d entries: %q", len(recs), len(list), recs)
	}
	for i, e := range list {
		r := recs[i+1]
		if r[0] != e.Time.UTC().Format(time.RFC3339Nano) || r[1] != e.Actor || r[2] != e.Addr || r[3] != e.Action || r[4] != e.Target || r[5] != e.Detail || r[6] != strconv.FormatBool(e.OK) {
			t.Errorf("CSV line %d = %q, want %+v", i+1, r, e)
		}
	}
	// The CSV's type, and a field a spreadsheet would run defused.
	a.client("wrong").WhoAmI(ctx)
	if _, err := a.ts.Auth().Login(ctx, "=HYPERLINK(\"http://x\")", "guess", "10.0.0.9"); err == nil {
		t.Fatal("a login with no user succeeded")
	}
	req, _ := http.NewRequest(http.MethodGet, api.RouteAdminAuditCSV.URL(a.ts.AdminURL, api.AuditFilter{Action: auth.EventLogin}.Query()), nil)
	req.Header.Set("Authorization", "Bearer "+a.ts.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	recs, err = csv.NewReader(resp.Body).ReadAll()
	if err != nil || len(recs) < 2 || recs[1][1] != `'=HYPERLINK("http://x")` {
		t.Errorf("the CSV's newest login: %q, %v", recs, err)
	}
	// Bad filters are refused with what is wrong.
	for f, want := range map[string]string{"action=nope": "action", "since=yesterday": "since", "limit=0": "limit",
		"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z": "before"} {
		var out []byte
		q, _ := parseQuery(f)
		err := a.boot.Call(ctx, api.RouteAdminAudit, q, nil, &out)
		if !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("audit?%s: %v", f, err)
		}
	}
}

// TestTokensOverHTTP: a user's token is shown once, works at once with
// the user's role, stops at once when revoked; the bootstrap token keeps
// working; repeated wrong tokens are slowed down (429).
func TestTokensOverHTTP(t *testing.T) {
	t.Parallel()
	a := startAccounts(t)
	ctx := context.Background()
	viewer := a.users[auth.Viewer]
	nt, err := viewer.AddToken(ctx, "the-viewer", "laptop")
	if err != nil || !strings.HasPrefix(nt.Token, auth.TokenPrefix) {
		t.Fatalf("AddToken = %+v, %v", nt, err)
	}
	c := a.client(nt.Token)
	if w, err := c.WhoAmI(ctx); err != nil || w != (api.WhoAmI{User: "the-viewer", Role: "viewer", Via: "token"}) {
		t.Fatalf("WhoAmI = %+v, %v", w, err)
	}
	ts, err := c.Tokens(ctx, "the-viewer")
	if err != nil || len(ts) != 2 || ts[1].Name != "laptop" || ts[1].LastUsed.IsZero() {
		t.Fatalf("Tokens = %+v, %v", ts, err)
	}
	if err := viewer.RemoveToken(ctx, "the-viewer", "laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(ctx); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("a revoked token: %v, want 401", err)
	}
	if es := a.audit(t, api.AuditFilter{Action: auth.EventLogin}); len(es) == 0 || es[0].OK || !strings.Contains(es[0].Detail, "revoked") {
		t.Errorf("the revoked token's use in the audit log: %+v", es)
	}
	if _, err := a.boot.Agents(ctx); err != nil {
		t.Errorf("the bootstrap token: %v", err)
	}
	// The address made one failure; three are free, the fourth starts
	// the delay, and the next is answered 429; a valid token from there
	// still works.
	for i := range 3 {
		if err := a.client("vgl_guess").Call(ctx, api.RouteAdminAgents, nil, nil, nil); status(err) != 401 {
			t.Errorf("wrong token %d: %v, want 401", i+2, err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, api.RouteAdminAgents.URL(a.ts.AdminURL, nil), nil)
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("throttled: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	if _, err := a.boot.Agents(ctx); err != nil {
		t.Errorf("the bootstrap token from a throttled address: %v", err)
	}
	if _, err := a.users[auth.Viewer].Agents(ctx); err != nil {
		t.Errorf("a user's token from a throttled address: %v", err)
	}
}

// TestAccountsBadInput: each bad request is refused with what is wrong,
// and changes neither the users nor the audit log.
func TestAccountsBadInput(t *testing.T) {
	t.Parallel()
	a := startAccounts(t)
	ctx := context.Background()
	adm := a.users[auth.Admin]
	before, _ := adm.Users(ctx)
	n := len(a.audit(t, api.AuditFilter{}))
	for _, tc := range []struct {
		name string
		code int
		want string
		err  error
	}{
		{"bad role", 400, "unknown role", func() error {
			_, err := adm.AddUser(ctx, api.AddUserRequest{Name: "eve", Role: "root", Password: "a long password"})
			return err
		}()},
		{"short password", 400, "at least 12 characters", func() error {
			_, err := adm.AddUser(ctx, api.AddUserRequest{Name: "eve", Role: "viewer", Password: "short"})
			return err
		}()},
		{"duplicate user", 409, "already exists", func() error {
			_, err := adm.AddUser(ctx, api.AddUserRequest{Name: "the-viewer", Role: "admin", Password: "a long password"})
			return err
		}()},
		{"unknown user", 404, "nobody", adm.SetRole(ctx, "nobody", "admin")},
		{"bad role change", 400, "unknown role", adm.SetRole(ctx, "the-viewer", "Admin")},
		{"unknown user removed", 404, "nobody", adm.RemoveUser(ctx, "nobody")},
		{"short new password", 400, "at least 12", adm.SetPassword(ctx, "the-viewer", api.PasswordRequest{Password: "short"})},
		{"unknown field", 400, "unknown field", adm.Call(ctx, api.RouteAdminAddUser, nil, map[string]string{"name": "eve", "rolle": "viewer"}, nil)},
	} {
		if !api.IsStatus(tc.err, tc.code) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want %d mentioning %q", tc.name, tc.err, tc.code, tc.want)
		}
	}
	after, _ := adm.Users(ctx)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("users changed: %+v → %+v", before, after)
	}
	// The admin's own token use is audited at most once a minute.
	if m := len(a.audit(t, api.AuditFilter{})); m != n {
		t.Errorf("bad input added %d audit entries", m-n)
	}
}

func parseQuery(s string) (map[string][]string, error) {
	q := map[string][]string{}
	for _, kv := range strings.Split(s, "&") {
		k, v, _ := strings.Cut(kv, "=")
		q[k] = append(q[k], v)
	}
	return q, nil
}
