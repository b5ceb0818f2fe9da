package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRoutePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r      Route
		params []string
		q      url.Values
		want   string
	}{
		{RouteEnroll, nil, nil, "http://s/vigil/v1/enroll"},
		{RouteCommands, nil, url.Values{"after": {"41"}, "limit": {"1"}}, "http://s/vigil/v1/commands?after=41&limit=1"},
		{RouteCommand, []string{"42"}, nil, "http://s/vigil/v1/commands/42"},
		{RouteAdminRevokeAgent, []string{"3f2a"}, nil, "http://s/vigil/admin/v1/agents/3f2a/revoke"},
		{RouteAdminRemoveAgent, []string{"a b/c"}, nil, "http://s/vigil/admin/v1/agents/a%20b%2Fc"},
		{RouteAdminDetections, nil, url.Values{"agent": {"a&b"}}, "http://s/vigil/admin/v1/detections?agent=a%26b"},
	} {
		if got := tc.r.URL("http://s/vigil/", tc.q, tc.params...); got != tc.want {
			t.Errorf("%s %v: %s, want %s", tc.r.Pattern, tc.params, got, tc.want)
		}
	}
	for _, tc := range []struct {
		r      Route
		params []string
	}{
		{RouteCommand, nil},
		{RouteEnroll, []string{"x"}},
		{RouteAdminRevokeAgent, []string{"a", "b"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with %d parameters did not panic", tc.r.Pattern, len(tc.params))
				}
			}()
			tc.r.Path(tc.params...)
		}()
	}
}

// TestRoutes: the table is what the server's ServeMux accepts, with one
// name and one pattern per route, so no two routes can be confused.
func TestRoutes(t *testing.T) {
	t.Parallel()
	for _, table := range [][]Route{AgentRoutes(), AdminRoutes()} {
		names, patterns := map[string]bool{}, map[string]bool{}
		mux := http.NewServeMux()
		for _, r := range table {
			if names[r.Name] || patterns[r.MuxPattern("")] {
				t.Errorf("route %s %s listed twice", r.Name, r.MuxPattern(""))
			}
			names[r.Name], patterns[r.MuxPattern("")] = true, true
			if !strings.HasPrefix(r.Pattern, "/") {
				t.Errorf("route %s: pattern %q is not a path", r.Name, r.Pattern)
			}
			mux.HandleFunc(r.MuxPattern("/base"), func(http.ResponseWriter, *http.Request) {})
		}
	}
}
