package server_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
)

// post sends body to an agent route with the agent's credential and
// returns the status and the error message of the answer.
func (f *fixture) post(t *testing.T, token string, r api.Route, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.Method, r.URL(f.agentBase+"/vigil", nil), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

// TestOnAccessCheckIn: the on-access state of each check-in is stored and
// listed (with the onaccess_* counters), replaced by the next check-in's,
// kept across a restart; a malformed one is refused with 400 and changes
// nothing.
func TestOnAccessCheckIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	f := newFixtureAt(t, dir, nil)
	en, old := f.enroll(t), f.enroll(t)
	c := f.agentClient(en.Token)
	state := &api.OnAccessState{Enabled: true, Running: true, Mode: "block", Paths: []string{"/home", "/srv/www"}}
	counters := map[string]uint64{"executed": 3, "onaccess_events": 1200, "onaccess_cache_hits": 1100, "onaccess_fail_open": 2, "onaccess_detections": 1}
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", LastSeq: 0, Counters: counters, OnAccess: state}); err != nil {
		t.Fatal(err)
	}
	// An agent older than on-access scanning reports none.
	if _, err := f.agentClient(old.Token).CheckIn(ctx, api.CheckInRequest{Epoch: old.Epoch, Hostname: "h0"}); err != nil {
		t.Fatal(err)
	}
	check := func(f *fixture, want *api.OnAccessState) {
		t.Helper()
		as := f.agents(t)
		a := as[en.AgentID]
		if !reflect.DeepEqual(a.OnAccess, want) {
			t.Fatalf("agent's on-access state %+v, want %+v", a.OnAccess, want)
		}
		if !reflect.DeepEqual(a.Counters, counters) {
			t.Fatalf("agent's counters %v, want %v", a.Counters, counters)
		}
		if as[old.AgentID].OnAccess != nil {
			t.Fatalf("an agent that reported no on-access state has %+v", as[old.AgentID].OnAccess)
		}
	}
	check(f, state)

	bad := []struct{ name, body, msg string }{
		{"mode", `{"on_access":{"enabled":true,"mode":"paranoid"}}`, "on_access.mode: want notify or block"},
		{"relative path", `{"on_access":{"enabled":true,"paths":["home"]}}`, "on_access.paths[0]: want an absolute path"},
		{"empty path", `{"on_access":{"enabled":true,"paths":["/",""]}}`, "on_access.paths[1]"},
		{"long path", `{"on_access":{"paths":["/` + strings.Repeat("x", 4096) + `"]}}`, "on_access.paths[0]"},
		{"nul in path", `{"on_access":{"paths":["/a\u0000b"]}}`, "on_access.paths[0]"},
		{"nul in hostname", `{"hostname":"a\u0000b"}`, "hostname: at most 256 bytes of UTF-8, without NUL"},
		{"too many paths", `{"on_access":{"paths":[` + strings.TrimSuffix(strings.Repeat(`"/p",`, 65), ",") + `]}}`, "on_access.paths: at most 64"},
		{"long error", `{"on_access":{"enabled":true,"error":"` + strings.Repeat("e", 1025) + `"}}`, "on_access.error: at most 1024"},
		{"not an object", `{"on_access":["block"]}`, "bad request body"},
		{"unknown field", `{"on_access":{"enabled":true,"evil":1}}`, "unknown field"},
	}
	for _, tc := range bad {
		body := strings.Replace(tc.body, "{", `{"epoch":"`+itoa(en.Epoch)+`","hostname":"changed","last_seq":0,`, 1)
		code, msg := f.post(t, en.Token, api.RouteCheckIn, body)
		if code != http.StatusBadRequest || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %d %q, want 400 containing %q", tc.name, code, msg, tc.msg)
		}
	}
	if h := f.agents(t)[en.AgentID].Hostname; h != "h1" {
		t.Fatalf("a refused check-in changed the host name to %q", h)
	}
	check(f, state)

	// The limits themselves are accepted.
	edge := &api.OnAccessState{Enabled: true, Mode: "notify", Error: strings.Repeat("é", 512)}
	for range 64 {
		edge.Paths = append(edge.Paths, "/"+strings.Repeat("p", 4095))
	}
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", Counters: counters, OnAccess: edge}); err != nil {
		t.Fatal(err)
	}
	check(f, edge)

	// The next check-in's state replaces it, and survives a restart.
	stopped := &api.OnAccessState{Enabled: true, Mode: "block", Error: "fanotify_init: operation not permitted"}
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", Counters: counters, OnAccess: stopped}); err != nil {
		t.Fatal(err)
	}
	check(f, stopped)
	f.srv.Close()
	f = newFixtureAt(t, dir, nil)
	check(f, stopped)
	// A check-in without one leaves none.
	c = f.agentClient(en.Token)
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", Counters: counters}); err != nil {
		t.Fatal(err)
	}
	check(f, nil)
}

// TestOnAccessReports: a report of kind onaccess is stored with each
// detection's access, process and verdict and listed as such; a report of
// another kind, an on-access detection without a valid access, or a scan's
// detection with on-access facts is refused with 400 and stores nothing.
func TestOnAccessReports(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	en := f.enroll(t)
	c := f.agentClient(en.Token)
	now := time.Now().UTC().Truncate(time.Microsecond)
	rep := api.ScanReport{
		ReportID: "oa-1", Kind: api.ScanKindOnAccess, DefsVer: "2026120201", StartedAt: now, FinishedAt: now, Files: 2,
		Detections: []api.Detection{
			{Path: "/home/u/eicar.com", Signature: "Eicar-Test-Signature", SHA256: "275a021b", FoundAt: now,
				Access: "open", PID: 4242, Process: "/usr/bin/cat", Blocked: true},
			{Path: "/tmp/run.sh", Signature: "Eicar-Test-Signature", FoundAt: now.Add(time.Millisecond),
				Access: "exec", PID: math.MaxInt32, Quarantine: "0123456789abcdef0123456789abcdef", Blocked: true},
			{Path: "/tmp/dl", Signature: "Eicar-Test-Signature", FoundAt: now.Add(2 * time.Millisecond),
				Access: "close_write", PID: 1, Process: "/usr/bin/wget (deleted)"},
		},
	}
	var ack, again api.ScanAck
	if err := c.Call(ctx, api.RouteScans, nil, rep, &ack); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, api.RouteScans, nil, rep, &again); err != nil || again.ID != ack.ID {
		t.Fatalf("resent report: %v, id %d want %d", err, again.ID, ack.ID)
	}
	// A scan beside it.
	scan := api.ScanReport{ReportID: "s-1", DefsVer: "2026120201", StartedAt: now, FinishedAt: now, Files: 9, Bytes: 99, Skipped: 1,
		Detections: []api.Detection{{Path: "/srv/x", Signature: "Eicar-Test-Signature", FoundAt: now.Add(time.Second)}}}
	var scanAck api.ScanAck
	if err := c.Call(ctx, api.RouteScans, nil, scan, &scanAck); err != nil {
		t.Fatal(err)
	}

	var ds []api.DetectionInfo
	if err := f.admin().Call(ctx, api.RouteAdminDetections, url.Values{"agent": {en.AgentID}}, nil, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds) != 4 {
		t.Fatalf("%d detections, want 4: %+v", len(ds), ds)
	}
	if d := ds[0]; d.ScanID != scanAck.ID || d.Access != "" || d.PID != 0 || d.Process != "" || d.Blocked {
		t.Errorf("the scan's detection: %+v", d)
	}
	for i, want := range rep.Detections {
		got := ds[len(ds)-1-i] // newest first
		want.FoundAt = got.FoundAt
		if got.ScanID != ack.ID || got.AgentID != en.AgentID || got.DefsVer != rep.DefsVer || !reflect.DeepEqual(got.Detection, want) {
			t.Errorf("on-access detection %d: %+v, want %+v", i, got, want)
		}
		if !got.FoundAt.Equal(rep.Detections[i].FoundAt) {
			t.Errorf("on-access detection %d found at %v, want %v", i, got.FoundAt, rep.Detections[i].FoundAt)
		}
	}
	var scans []api.ScanInfo
	if err := f.admin().Call(ctx, api.RouteAdminScans, nil, nil, &scans); err != nil {
		t.Fatal(err)
	}
	if len(scans) != 2 || scans[0].Kind != "" || scans[0].Files != 9 || scans[1].Kind != api.ScanKindOnAccess || scans[1].ID != ack.ID || scans[1].Files != 2 {
		t.Fatalf("scans %+v", scans)
	}

	oa := func(d api.Detection) api.ScanReport {
		return api.ScanReport{ReportID: "bad", Kind: api.ScanKindOnAccess, DefsVer: "1", Files: 1, Detections: []api.Detection{d}}
	}
	det := api.Detection{Path: "/x", Signature: "Eicar", Access: "open", PID: 7, Process: "/bin/cat"}
	with := func(mod func(*api.Detection)) api.Detection { d := det; mod(&d); return d }
	for _, tc := range []struct {
		name string
		rep  api.ScanReport
		msg  string
	}{
		{"unknown kind", api.ScanReport{ReportID: "bad", Kind: "realtime"}, `kind: want "onaccess"`},
		{"on-access with seq", func() api.ScanReport { r := oa(det); r.Seq = 1; return r }(), "seq: an on-access report answers no command"},
		{"on-access with bytes", func() api.ScanReport { r := oa(det); r.Bytes = 10; return r }(), "bytes and skipped"},
		{"on-access with skipped", func() api.ScanReport { r := oa(det); r.Skipped = 1; return r }(), "bytes and skipped"},
		{"on-access without detections", api.ScanReport{ReportID: "bad", Kind: api.ScanKindOnAccess}, "at least one"},
		{"no access", oa(with(func(d *api.Detection) { d.Access = "" })), "detections[0].access: want open, exec, close_write"},
		{"unknown access", oa(with(func(d *api.Detection) { d.Access = "read" })), "detections[0].access"},
		{"blocked close_write", oa(with(func(d *api.Detection) { d.Access, d.Blocked = "close_write", true })), "cannot be blocked"},
		{"negative pid", oa(with(func(d *api.Detection) { d.PID = -1 })), "detections[0].pid"},
		{"huge pid", oa(with(func(d *api.Detection) { d.PID = math.MaxInt32 + 1 })), "detections[0].pid"},
		{"relative process", oa(with(func(d *api.Detection) { d.Process = "cat" })), "detections[0].process"},
		{"long process", oa(with(func(d *api.Detection) { d.Process = "/" + strings.Repeat("p", 4096) })), "detections[0].process"},
		{"scan with access", api.ScanReport{ReportID: "bad", Detections: []api.Detection{with(func(d *api.Detection) { d.PID, d.Process = 0, "" })}}, "for on-access detections"},
		{"scan with pid", api.ScanReport{ReportID: "bad", Detections: []api.Detection{{Path: "/x", Signature: "s", PID: 3}}}, "for on-access detections"},
		{"scan with process", api.ScanReport{ReportID: "bad", Detections: []api.Detection{{Path: "/x", Signature: "s", Process: "/bin/sh"}}}, "for on-access detections"},
		{"scan with blocked", api.ScanReport{ReportID: "bad", Detections: []api.Detection{{Path: "/x", Signature: "s", Blocked: true}}}, "for on-access detections"},
	} {
		body, _ := json.Marshal(tc.rep)
		code, msg := f.post(t, en.Token, api.RouteScans, string(body))
		if code != http.StatusBadRequest || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %d %q, want 400 containing %q", tc.name, code, msg, tc.msg)
		}
	}
	// Nothing of the refused reports was stored.
	if err := f.admin().Call(ctx, api.RouteAdminScans, nil, nil, &scans); err != nil || len(scans) != 2 {
		t.Fatalf("after the refused reports: %d scans, %v", len(scans), err)
	}
	if err := f.admin().Call(ctx, api.RouteAdminDetections, nil, nil, &ds); err != nil || len(ds) != 4 {
		t.Fatalf("after the refused reports: %d detections, %v", len(ds), err)
	}
}
