package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
)

// vigil agents shows each agent's on-access scanning in a word (and the
// errors under the table, escaped), not its onaccess_* counters as drops;
// vigil detections shows how each detection was found: by a scan, or by
// an access, blocked or reported, with the process; vigil send sets the
// on-access settings, checked before anything is sent.
func TestOnAccessAdminCommands(t *testing.T) {
	t.Parallel()
	ts := startAdminServer(t)
	ctx := context.Background()
	const failure = "fanotify_init: operation not permitted\x1b[2J"
	agents := map[string]struct {
		state *api.OnAccessState
		want  string // the ON-ACCESS column
	}{
		"blocking":  {&api.OnAccessState{Enabled: true, Running: true, Mode: command.Block, Paths: []string{"/home"}}, "block"},
		"notifying": {&api.OnAccessState{Enabled: true, Running: true, Mode: command.Notify, Paths: []string{"/"}}, "notify"},
		"failing":   {&api.OnAccessState{Enabled: true, Mode: command.Block, Error: failure}, "error"},
		"disabled":  {&api.OnAccessState{}, "off"},
		"older":     {nil, "-"},
	}
	ids := map[string]string{}
	var blocker *api.AgentClient
	for host, a := range agents {
		c := ts.enroll(t, host)
		ids[host] = agentID(c)
		if host == "blocking" {
			blocker = c
		}
		err := c.Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: ts.srv.Epoch(), Hostname: host, OS: "linux", Arch: "amd64",
			Version: "test", DefsVer: "2026120201", OnAccess: a.state,
			Counters: map[string]uint64{"bad_signature": 2, "onaccess_events": 900, "onaccess_fail_open": 1}}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}

	code, out, stderr := run(t, ts.env, "agents")
	if code != 0 {
		t.Fatalf("agents: exit %d: %s", code, stderr)
	}
	lines := strings.Split(out, "\n")
	col := strings.Index(lines[0], "ON-ACCESS")
	if col < 0 {
		t.Fatalf("agents: no ON-ACCESS column:\n%s", out)
	}
	for host, a := range agents {
		var row string
		for _, l := range lines {
			if strings.HasPrefix(l, ids[host]) {
				row = l
			}
		}
		if len(row) <= col || !strings.HasPrefix(row[col:], a.want+" ") {
			t.Errorf("%s: ON-ACCESS is not %q in %q", host, a.want, row)
		}
		if !strings.Contains(row, "bad_signature=2") || strings.Contains(row, "onaccess_") {
			t.Errorf("%s: DROPPED is not bad_signature=2 alone: %q", host, row)
		}
	}
	// The error, escaped, under the table, once.
	_, errs, _ := strings.Cut(out, "\nOn-access scanning errors, as reported:\n")
	if errs != "  "+ids["failing"]+"  failing  "+safe(failure)+"\n" || strings.Count(out, "fanotify_init") != 1 {
		t.Errorf("agents: the on-access error of %s is not listed (once, escaped) under the table:\n%s", ids["failing"], out)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("agents: an escape reached the output:\n%q", out)
	}
	// -json gives the state and the counters as reported.
	if code, out, _ := run(t, ts.env, "agents", "-json"); code != 0 || !strings.Contains(out, `"on_access": {`) || !strings.Contains(out, `"onaccess_events": 900`) {
		t.Errorf("agents -json: exit %d:\n%s", code, out)
	}

	// Detections: an on-access report and a scan.
	now := time.Now()
	if err := blocker.Call(ctx, api.RouteScans, nil, api.ScanReport{
		ReportID: "oa-1", Kind: api.ScanKindOnAccess, DefsVer: "2026120201", StartedAt: now, FinishedAt: now, Files: 2,
		Detections: []api.Detection{
			{Path: "/home/u/eicar.com", Signature: "Eicar-Test-Signature", FoundAt: now, Access: "open", PID: 4242, Process: "/usr/bin/cat", Blocked: true},
			{Path: "/home/u/dl.bin", Signature: "Eicar-Test-Signature", FoundAt: now.Add(time.Second), Access: "close_write", PID: 77, Process: "/usr/bin/\x1b[8mwget"},
		},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := blocker.Call(ctx, api.RouteScans, nil, api.ScanReport{
		ReportID: "s-1", DefsVer: "2026120201", StartedAt: now, FinishedAt: now, Files: 5,
		Detections: []api.Detection{{Path: "/srv/eicar.txt", Signature: "Eicar-Test-Signature", FoundAt: now.Add(2 * time.Second)}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = run(t, ts.env, "detections")
	if code != 0 {
		t.Fatalf("detections: exit %d: %s", code, stderr)
	}
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(strings.Join(strings.Fields(lines[0]), " "), "SIGNATURE DEFINITIONS ACCESS PROCESS QUARANTINE") {
		t.Fatalf("detections: want a header and 3 rows:\n%s", out)
	}
	// Each row, its columns' padding made one space: path, signature,
	// definitions, access, process, quarantine.
	for i, want := range []string{
		"/srv/eicar.txt Eicar-Test-Signature 2026120201 scan - -",
		"/home/u/dl.bin Eicar-Test-Signature 2026120201 close_write, reported 77 " + safe("/usr/bin/\x1b[8mwget") + " -",
		"/home/u/eicar.com Eicar-Test-Signature 2026120201 open, blocked 4242 /usr/bin/cat -",
	} {
		if row := strings.Join(strings.Fields(lines[i+1]), " "); !strings.Contains(row, " "+want) {
			t.Errorf("detections row %d %q lacks %q", i+1, row, want)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("detections: an escape reached the output:\n%q", out)
	}

	// vigil send: the settings are listed and checked before sending.
	_, _, help := run(t, nil, "send", "-h")
	for _, w := range []string{"onaccess=on|off|default: ", "onaccess_mode=notify|block"} {
		if !strings.Contains(help, w) {
			t.Errorf("send -h lacks %q:\n%s", w, help)
		}
	}
	code, out, stderr = run(t, ts.env, "send", "-group", "lab", "set", "onaccess=on", "onaccess_mode=block")
	if code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("send set onaccess: exit %d, %q, %q", code, out, stderr)
	}
	for _, bad := range [][]string{{"onaccess=yes"}, {"onaccess_mode=deny"}} {
		code, _, stderr := run(t, ts.env, append([]string{"send", "-all", "set"}, bad...)...)
		if code != 2 || !strings.Contains(stderr, strings.Split(bad[0], "=")[0]) {
			t.Errorf("send set %v: exit %d, %q; want a usage error", bad, code, stderr)
		}
	}
	if ts.srv.LatestSeq() != 1 {
		t.Errorf("a refused set was issued: latest sequence %d", ts.srv.LatestSeq())
	}
}
