package cli

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
)

// vigil send warns about (or with -strict refuses) a target no agent has;
// vigil results explains pending agents; vigil agents shows when each
// figure was reported, and removes and revokes agents.
func TestFleetAdminCommands(t *testing.T) {
	t.Parallel()
	ts := startAdminServer(t)
	a1, a2 := ts.enroll(t, "mac-1", "lab"), ts.enroll(t, "mac-2")
	id1, id2 := agentID(a1), agentID(a2)
	ctx := context.Background()

	// A group nobody is in: issued, with a warning; refused with -strict.
	code, out, stderr := run(t, ts.env, "send", "-group", "nobody", "ping")
	if code != 0 || strings.TrimSpace(out) != "1" || !strings.Contains(stderr, "warning: command 1: no enrolled agent is in the group nobody") {
		t.Fatalf("send to an empty group: exit %d, %q, %q", code, out, stderr)
	}
	code, out, stderr = run(t, ts.env, "send", "-strict", "-agent", "0123456789abcdef", "ping")
	if code != 1 || out != "" || !strings.Contains(stderr, "0123456789abcdef") || !strings.Contains(stderr, "nothing was issued") {
		t.Fatalf("send -strict to an unknown agent: exit %d, %q, %q", code, out, stderr)
	}
	code, out, stderr = run(t, ts.env, "send", "-strict", "-group", "lab", "ping")
	if code != 0 || strings.TrimSpace(out) != "2" || stderr != "" {
		t.Fatalf("send -strict to a known group: exit %d, %q, %q", code, out, stderr)
	}

	// Pending, explained: mac-1 has not reported; one check-in later it
	// has handled the command (its result is on its way).
	code, out, _ = run(t, ts.env, "results", "2")
	if code != 0 || !strings.Contains(out, "last seen") || !strings.Contains(out, "1 pending: agents reply within 5s (the spread window)") ||
		!strings.Contains(out, "next check-in (every 5m0s)") {
		t.Fatalf("results 2: exit %d:\n%s", code, out)
	}
	if err := a1.Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: ts.srv.Epoch(), Hostname: "mac-1", OS: "linux", Arch: "amd64", Version: "test", Groups: []string{"lab"}, LastSeq: 2, DefsVer: "2026120201",
		Update: &api.UpdateState{From: "2026113001", To: "2026120201", At: time.Now().Add(-time.Minute), Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, out, _ = run(t, ts.env, "results", "2"); !strings.Contains(out, "handled it (its last check-in says so)") {
		t.Fatalf("results 2 after a check-in:\n%s", out)
	}

	// The agents table: the reported figures and when they were reported.
	_, out, _ = run(t, ts.env, "agents")
	row := func(out, id string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, id) {
				return l
			}
		}
		t.Fatalf("no row for %s:\n%s", id, out)
		return ""
	}
	if r := row(out, id1); !strings.Contains(r, "2026120201") || !strings.Contains(r, "active") || !strings.Contains(r, "s ago") ||
		!strings.Contains(r, "2026120201, 41 KB of 22 MB (2 deltas)") {
		t.Fatalf("mac-1's row: %q", r)
	}
	if r := row(out, id2); !strings.Contains(r, "-") || strings.Contains(r, "deltas") {
		t.Fatalf("mac-2's row (no update reported): %q", r)
	}
	if !strings.Contains(out, "as each agent reported them at its last check-in (REPORTED)") {
		t.Fatalf("agents: no note on REPORTED:\n%s", out)
	}

	// Revoke mac-1: listed as revoked, its credential refused; remove
	// mac-2: gone from the list, its credential unknown.
	code, out, stderr = run(t, ts.env, "agents", "revoke", id1)
	if code != 0 || !strings.Contains(out, "revoked "+id1) {
		t.Fatalf("agents revoke: exit %d, %q, %q", code, out, stderr)
	}
	code, out, stderr = run(t, ts.env, "agents", "remove", id2)
	if code != 0 || !strings.Contains(out, "removed "+id2) {
		t.Fatalf("agents remove: exit %d, %q, %q", code, out, stderr)
	}
	_, out, _ = run(t, ts.env, "agents")
	if r := row(out, id1); !strings.Contains(r, "revoked") {
		t.Fatalf("revoked agent's row: %q", r)
	}
	if strings.Contains(out, id2) {
		t.Fatalf("removed agent still listed:\n%s", out)
	}
	err := a1.Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: ts.srv.Epoch(), Hostname: "mac-1", LastSeq: 2}, nil)
	if !api.IsStatus(err, http.StatusForbidden) || !api.HasReason(err, api.ReasonRevoked) {
		t.Fatalf("revoked agent's check-in: %v", err)
	}
	if err := a2.Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: ts.srv.Epoch(), Hostname: "mac-2"}, nil); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("removed agent's check-in: %v", err)
	}
	// Neither is pending any more.
	if _, out, _ = run(t, ts.env, "results", "2"); strings.Contains(out, "pending") {
		t.Fatalf("results 2 after revoking mac-1:\n%s", out)
	}

	// Errors: an unknown id (exit 1, named), a malformed one and no id
	// (usage, exit 2), an unknown action.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"agents", "remove", id2}, 1, "404"},
		{[]string{"agents", "revoke", "not an id"}, 2, "is not an agent id"},
		{[]string{"agents", "remove"}, 2, "give the ids"},
		{[]string{"agents", "retire", id1}, 2, "unknown action"},
	} {
		code, _, stderr := run(t, ts.env, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit %d with %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}
