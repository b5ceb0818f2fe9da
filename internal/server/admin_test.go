package server_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
)

func (f *fixture) agents(t *testing.T) map[string]api.AgentInfo {
	t.Helper()
	as, err := f.admin().Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]api.AgentInfo{}
	for _, a := range as {
		m[a.ID] = a
	}
	return m
}

func (f *fixture) results(t *testing.T, seq uint64) api.CommandResults {
	t.Helper()
	var cr api.CommandResults
	if err := f.admin().Call(context.Background(), api.RouteAdminCommandResults, nil, nil, &cr, itoa(seq)); err != nil {
		t.Fatal(err)
	}
	return cr
}

// TestRemoveAndRevoke: a revoked agent's credential is refused with 403
// and the reason "revoked", it is listed as revoked and no longer pending;
// a removed agent's credential is unknown (401) and it leaves the lists.
// Both hold after a restart.
func TestRemoveAndRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	f := newFixtureAt(t, dir, nil)
	keep, revoke, remove := f.enroll(t), f.enroll(t), f.enroll(t)
	cmd, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The agents have been authenticated once (their entries are cached).
	for _, en := range []api.EnrollResponse{keep, revoke, remove} {
		if err := f.agentClient(en.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1"}, nil); err != nil {
			t.Fatal(err)
		}
	}

	before := time.Now()
	var info api.AgentInfo
	if err := f.admin().Call(ctx, api.RouteAdminRevokeAgent, nil, nil, &info, revoke.AgentID); err != nil {
		t.Fatal(err)
	}
	if info.ID != revoke.AgentID || info.Revoked.Before(before.Truncate(time.Microsecond)) {
		t.Fatalf("revoke answered %+v", info)
	}
	if err := f.admin().Call(ctx, api.RouteAdminRemoveAgent, nil, nil, nil, remove.AgentID); err != nil {
		t.Fatal(err)
	}

	check := func(f *fixture) {
		t.Helper()
		err := f.agentClient(revoke.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: revoke.Epoch, Hostname: "h1"}, nil)
		if !api.IsStatus(err, http.StatusForbidden) || !api.HasReason(err, api.ReasonRevoked) {
			t.Fatalf("revoked agent's check-in: %v, want 403 with reason revoked", err)
		}
		err = f.agentClient(revoke.Token).Call(ctx, api.RouteResults, nil, api.ResultsRequest{Results: []api.Result{{Seq: cmd.Seq, Status: "ok"}}}, nil)
		if !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("revoked agent's results: %v, want 403", err)
		}
		err = f.agentClient(remove.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: remove.Epoch, Hostname: "h1"}, nil)
		if !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("removed agent's check-in: %v, want 401", err)
		}
		if err := f.agentClient(keep.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: keep.Epoch, Hostname: "h1"}, nil); err != nil {
			t.Fatalf("other agent's check-in: %v", err)
		}
		as := f.agents(t)
		if _, ok := as[remove.AgentID]; ok || len(as) != 2 || !as[keep.AgentID].Revoked.IsZero() || !as[revoke.AgentID].Revoked.Equal(info.Revoked) {
			t.Fatalf("agents %+v: want keep and revoke (revoked at %v)", as, info.Revoked)
		}
		var pending []string
		for _, r := range f.results(t, cmd.Seq).Results {
			pending = append(pending, r.AgentID)
		}
		if !slices.Equal(pending, []string{keep.AgentID}) {
			t.Fatalf("pending agents %v, want only %s", pending, keep.AgentID)
		}
	}
	check(f)
	f.srv.Close()
	check(newFixtureAt(t, dir, nil))
}

// TestRemoveAndRevokeErrors: unknown or malformed agent ids, and the admin
// token is required.
func TestRemoveAndRevokeErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	gone := f.enroll(t)
	if err := f.admin().Call(ctx, api.RouteAdminRemoveAgent, nil, nil, nil, gone.AgentID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		route api.Route
		id    string
		code  int
	}{
		{api.RouteAdminRemoveAgent, "0123456789abcdef", 404},
		{api.RouteAdminRevokeAgent, "0123456789abcdef", 404},
		{api.RouteAdminRemoveAgent, gone.AgentID, 404},
		{api.RouteAdminRevokeAgent, gone.AgentID, 404},
		{api.RouteAdminRemoveAgent, "bad id", 400},
	} {
		if err := f.admin().Call(ctx, tc.route, nil, nil, nil, tc.id); !api.IsStatus(err, tc.code) {
			t.Errorf("%s %q: %v, want %d", tc.route.MuxPattern(""), tc.id, err, tc.code)
		}
	}
	keep := f.enroll(t)
	noAuth := &api.Client{Base: f.adminURL}
	if err := noAuth.Call(ctx, api.RouteAdminRemoveAgent, nil, nil, nil, keep.AgentID); !api.IsStatus(err, 401) {
		t.Fatalf("remove without the admin token: %v", err)
	}
	if _, ok := f.agents(t)[keep.AgentID]; !ok {
		t.Fatal("an unauthenticated request removed an agent")
	}
}

// TestSendWarnings: a command whose target names an agent id or a group
// no enrolled (non-revoked) agent has is issued with warnings, or refused
// with strict, issuing nothing.
func TestSendWarnings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	none := api.SendRequest{Name: "ping", Target: command.Target{All: true}}
	info, err := f.admin().Send(ctx, none)
	if err != nil || len(info.Warnings) != 1 || !strings.Contains(info.Warnings[0], "no agent") {
		t.Fatalf("send to all with no agent: %+v, %v", info, err)
	}
	lab := f.enroll(t, "lab")
	rev := f.enroll(t, "revoked-only")
	if err := f.admin().Call(ctx, api.RouteAdminRevokeAgent, nil, nil, nil, rev.AgentID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target command.Target
		want   []string
	}{
		{command.Target{Agents: []string{lab.AgentID, "feedfacefeedface"}}, []string{"no enrolled agent has the id feedfacefeedface"}},
		{command.Target{Agents: []string{rev.AgentID}}, []string{"agent " + rev.AgentID + " is revoked"}},
		{command.Target{Groups: []string{"lab", "labs", "revoked-only"}}, []string{"group labs", "group revoked-only"}},
		{command.Target{Groups: []string{"lab"}}, nil},
		{command.Target{Agents: []string{lab.AgentID}}, nil},
		{command.Target{All: true}, nil},
	} {
		latest := f.srv.LatestSeq()
		err := f.admin().Call(ctx, api.RouteAdminSend, nil, api.SendRequest{Name: "ping", Target: tc.target, Strict: true}, nil)
		if tc.want == nil {
			if err != nil || f.srv.LatestSeq() != latest+1 {
				t.Errorf("strict send to %+v: %v", tc.target, err)
			}
			continue
		}
		if !api.IsStatus(err, 400) || f.srv.LatestSeq() != latest {
			t.Errorf("strict send to %+v: %v, latest %d -> %d; want 400 issuing nothing", tc.target, err, latest, f.srv.LatestSeq())
		}
		info = api.CommandInfo{}
		if err := f.admin().Call(ctx, api.RouteAdminSend, nil, api.SendRequest{Name: "ping", Target: tc.target}, &info); err != nil || info.Seq != latest+1 {
			t.Fatalf("send to %+v: %+v, %v", tc.target, info, err)
		}
		if len(info.Warnings) != len(tc.want) {
			t.Errorf("send to %+v: warnings %q, want %q", tc.target, info.Warnings, tc.want)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(info.Warnings[i], w) {
				t.Errorf("send to %+v: warning %q, want %q", tc.target, info.Warnings[i], w)
			}
		}
	}
	if err := f.admin().Call(ctx, api.RouteAdminSend, nil, api.SendRequest{Name: "ping", Target: command.Target{Agents: []string{"a b"}}, Strict: true}, nil); !api.IsStatus(err, 400) {
		t.Fatalf("bad agent id: %v", err)
	}
}

// TestPendingExplained: the results of a command carry the timing, and a
// pending agent's row says when it was last seen and whether its last
// check-in said it had handled the command; agents list the time of their
// last check-in.
func TestPendingExplained(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	en := f.enroll(t)
	if a := f.agents(t)[en.AgentID]; !a.LastCheckIn.IsZero() || a.LastSeen.IsZero() {
		t.Fatalf("agent before its first check-in: %+v", a)
	}
	cmd, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cr := f.results(t, cmd.Seq)
	if cr.CheckInSeconds != 300 || cr.SpreadMillis != 5000 || len(cr.Results) != 1 {
		t.Fatalf("results %+v", cr)
	}
	if r := cr.Results[0]; r.Status != "pending" || r.Reached || !r.LastSeen.Equal(f.agents(t)[en.AgentID].LastSeen) {
		t.Fatalf("pending row before the check-in: %+v", r)
	}
	checked := time.Now().Truncate(time.Microsecond)
	if err := f.agentClient(en.Token).Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", LastSeq: cmd.Seq}, nil); err != nil {
		t.Fatal(err)
	}
	r := f.results(t, cmd.Seq).Results[0]
	if r.Status != "pending" || !r.Reached || r.LastSeen.Before(checked) {
		t.Fatalf("pending row after a check-in that handled it: %+v", r)
	}
	if a := f.agents(t)[en.AgentID]; a.LastCheckIn.Before(checked) || !a.LastCheckIn.Equal(a.LastSeen) || a.LastSeq != cmd.Seq {
		t.Fatalf("agent after its check-in: %+v", a)
	}
}
