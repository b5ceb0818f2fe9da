package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Route is one endpoint of Vigil's HTTP APIs: the one table both the
// server (which registers its handlers from it) and the clients (which
// build their URLs from it) read, so the two cannot drift apart.
type Route struct {
	// Name is a short name for the endpoint, the server's metric label.
	Name string
	// Method is the HTTP method.
	Method string
	// Pattern is the path relative to the API's base, with {name}
	// wildcards as net/http's ServeMux reads them.
	Pattern string
}

// The agent API, relative to the base path an agent's NodeCommURL ends in
// (docs/protocol.md §2).
var (
	RouteEnroll   = Route{"enroll", http.MethodPost, "/v1/enroll"}
	RouteCheckIn  = Route{"checkin", http.MethodPost, "/v1/checkin"}
	RouteCommands = Route{"commands", http.MethodGet, "/v1/commands"} // ?after=N&limit=M
	RouteCommand  = Route{"command", http.MethodGet, "/v1/commands/{seq}"}
	RouteResults  = Route{"results", http.MethodPost, "/v1/results"}
	RouteScans    = Route{"scans", http.MethodPost, "/v1/scans"}
)

// The admin API, on the admin listener (docs/protocol.md §3).
var (
	RouteAdminAgents         = Route{"admin_agents", http.MethodGet, "/admin/v1/agents"}
	RouteAdminRemoveAgent    = Route{"admin_remove", http.MethodDelete, "/admin/v1/agents/{id}"}
	RouteAdminRevokeAgent    = Route{"admin_revoke", http.MethodPost, "/admin/v1/agents/{id}/revoke"}
	RouteAdminCommands       = Route{"admin_commands", http.MethodGet, "/admin/v1/commands"} // ?limit=N
	RouteAdminSend           = Route{"admin_send", http.MethodPost, "/admin/v1/commands"}
	RouteAdminCommandResults = Route{"admin_results", http.MethodGet, "/admin/v1/commands/{seq}"}
	RouteAdminDetections     = Route{"admin_detections", http.MethodGet, "/admin/v1/detections"} // ?agent=ID&limit=N
	RouteAdminScans          = Route{"admin_scans", http.MethodGet, "/admin/v1/scans"}           // ?agent=ID&limit=N
	RouteAdminServer         = Route{"admin_server", http.MethodGet, "/admin/v1/server"}
	// Accounts (accounts.go).
	RouteAdminWhoAmI       = Route{"admin_whoami", http.MethodGet, "/admin/v1/whoami"}
	RouteAdminUsers        = Route{"admin_users", http.MethodGet, "/admin/v1/users"}
	RouteAdminAddUser      = Route{"admin_user_add", http.MethodPost, "/admin/v1/users"}
	RouteAdminRemoveUser   = Route{"admin_user_remove", http.MethodDelete, "/admin/v1/users/{user}"}
	RouteAdminUserPassword = Route{"admin_user_password", http.MethodPut, "/admin/v1/users/{user}/password"}
	RouteAdminUserRole     = Route{"admin_user_role", http.MethodPut, "/admin/v1/users/{user}/role"}
	RouteAdminTokens       = Route{"admin_tokens", http.MethodGet, "/admin/v1/users/{user}/tokens"}
	RouteAdminAddToken     = Route{"admin_token_add", http.MethodPost, "/admin/v1/users/{user}/tokens"}
	RouteAdminRemoveToken  = Route{"admin_token_remove", http.MethodDelete, "/admin/v1/users/{user}/tokens/{name}"}
	RouteAdminAudit        = Route{"admin_audit", http.MethodGet, "/admin/v1/audit"}         // ?actor=&action=&since=&until=&limit=
	RouteAdminAuditCSV     = Route{"admin_audit_csv", http.MethodGet, "/admin/v1/audit.csv"} // the same query
	RouteAdminRotateSecret = Route{"admin_secret_rotate", http.MethodPost, "/admin/v1/enroll-secret/rotate"}
	// RouteMetrics is the Prometheus metrics, on the admin listener
	// without a token.
	RouteMetrics = Route{"metrics", http.MethodGet, "/metrics"}
)

// AgentRoutes returns every route of the agent API.
func AgentRoutes() []Route {
	return []Route{RouteEnroll, RouteCheckIn, RouteCommands, RouteCommand, RouteResults, RouteScans, RouteRelayStream}
}

// AdminRoutes returns every route of the admin listener.
func AdminRoutes() []Route {
	return []Route{
		RouteAdminAgents, RouteAdminRemoveAgent, RouteAdminRevokeAgent, RouteAdminCommands, RouteAdminSend,
		RouteAdminCommandResults, RouteAdminDetections, RouteAdminScans, RouteAdminServer,
		RouteAdminWhoAmI, RouteAdminUsers, RouteAdminAddUser, RouteAdminRemoveUser, RouteAdminUserPassword,
		RouteAdminUserRole, RouteAdminTokens, RouteAdminAddToken, RouteAdminRemoveToken, RouteAdminAudit,
		RouteAdminAuditCSV, RouteAdminRotateSecret, RouteMetrics,
	}
}

// MuxPattern is the pattern to register r under, with the API mounted at
// base ("" or a path such as "/vigil"), for net/http's ServeMux.
func (r Route) MuxPattern(base string) string { return r.Method + " " + base + r.Pattern }

// Path is r's path with its wildcards replaced, in order, by params (each
// escaped as one path segment). It panics when the number of params does
// not match the pattern's wildcards: that is a programming error.
func (r Route) Path(params ...string) string {
	var b strings.Builder
	rest, used := r.Pattern, 0
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if used == len(params) || j < 0 {
			panic(fmt.Sprintf("api: route %s %s: %d parameters for its wildcards", r.Method, r.Pattern, len(params)))
		}
		b.WriteString(rest[:i])
		b.WriteString(url.PathEscape(params[used]))
		used++
		rest = rest[i+j+1:]
	}
	if used != len(params) {
		panic(fmt.Sprintf("api: route %s %s: %d parameters for %d wildcards", r.Method, r.Pattern, len(params), used))
	}
	return b.String()
}

// URL is the full URL of r under base (an API's base URL, without a
// trailing slash), with its wildcards replaced by params and query, when
// not empty, as its query string.
func (r Route) URL(base string, query url.Values, params ...string) string {
	u := strings.TrimSuffix(base, "/") + r.Path(params...)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}
