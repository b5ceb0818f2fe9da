package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// Fill fills s through its API with a bit of everything a server keeps:
// agents (checked in with groups, counters and on-access state; one
// revoked; one removed after it reported), commands across an epoch
// change, results (one output with a NUL byte and invalid UTF-8), scans
// with detections (on-access ones too), users, API tokens (one used) and
// audit entries. It returns the IDs of the agents it enrolled, the
// removed one included. Times are whole microseconds before base.
func Fill(tb testing.TB, s store.Store) []string {
	tb.Helper()
	ctx := context.Background()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	base := time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC)
	at := func(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("agent-%02d", i)
		ids = append(ids, id)
		h := sha256.Sum256([]byte(id))
		must(s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: h[:], Hostname: fmt.Sprintf("host-%d.lab", i), OS: "linux", Arch: "amd64",
			Version: "0.9", EnrolledAt: at(-600 + i), LastSeen: at(-600 + i)}))
	}
	groups := [][]string{{"lab"}, {"lab", "web"}, nil, {"db"}, {"web"}, {"lab", "db"}}
	var cs []store.CheckIn
	for i, id := range ids[:5] { // agent-05 never checks in
		c := store.CheckIn{AgentID: id, Hostname: fmt.Sprintf("host-%d.lab", i), OS: "linux", Arch: "amd64",
			Version: []string{"0.10", "0.9", "1.0.2", "0.10", "1.0.10"}[i], DefsVer: []string{"20261130", "", "20261129", "20261130", "20261130"}[i],
			Groups: groups[i], At: at(-30 * i)}
		if i%2 == 0 {
			c.Counters = map[string]uint64{"bad_signature": uint64(i), "executed": 3}
		}
		if i == 1 {
			c.OnAccess = &store.OnAccess{Enabled: true, Running: true, Mode: "block", Paths: []string{"/home", "/tmp"}}
		}
		if i == 2 {
			c.OnAccess = &store.OnAccess{Enabled: true, Error: "fanotify: operation not permitted"}
		}
		if i == 3 {
			c.Update = &store.UpdateState{From: "20261129", To: "20261130", At: at(-40), Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 1}
		}
		if i == 4 {
			c.Update = &store.UpdateState{To: "20261130", Bytes: 22 << 20, FullBytes: 22 << 20}
		}
		cs = append(cs, c)
	}
	_, err := s.CheckIns(ctx, cs)
	must(err)

	sign := func(name, target string, issued time.Time) func(uint64) (store.Command, error) {
		return func(seq uint64) (store.Command, error) {
			return store.Command{Seq: seq, Name: name, Target: target, Envelope: fmt.Appendf(nil, "envelope %d \x00\xff", seq),
				IssuedAt: issued, Expires: issued.Add(24 * time.Hour)}, nil
		}
	}
	_, err = s.AppendCommand(ctx, sign("ping", `{"all":true}`, at(-20)))
	must(err)
	_, err = s.AppendCommand(ctx, sign("scan", `{"groups":["lab"]}`, at(-15)))
	must(err)
	_, err = s.NewEpoch(ctx)
	must(err)
	_, err = s.AppendCommand(ctx, sign("update", `{"agents":["agent-01","agent-04"]}`, at(-10)))
	must(err)
	_, err = s.AppendCommand(ctx, sign("ping", `{"all":true}`, at(-5)))
	must(err)

	must(s.RecordResults(ctx, []store.Result{
		{Seq: 1, AgentID: "agent-00", Status: "ok", Output: "pong", ExecutedAt: at(-19), ReceivedAt: at(-19)},
		{Seq: 1, AgentID: "agent-01", Status: "ok", Output: "pong\x00\xfe", ExecutedAt: at(-19), ReceivedAt: at(-18)},
		{Seq: 1, AgentID: "agent-03", Status: "error", Output: "no", ExecutedAt: at(-18), ReceivedAt: at(-18)},
		{Seq: 2, AgentID: "agent-00", Status: "ok", ExecutedAt: at(-14), ReceivedAt: at(-14)},
		{Seq: 3, AgentID: "agent-01", Status: "unsupported", Output: "unknown command", ExecutedAt: at(-9)},
		{Seq: 3, AgentID: "agent-04", Status: "expired", ReceivedAt: at(-9)},
	}))
	scan := func(agent, report, kind string, seq uint64, finished time.Time, dets ...store.Detection) {
		_, err := s.RecordScan(ctx, store.Scan{AgentID: agent, ReportID: report, Kind: kind, Seq: seq, DefsVer: "20261130",
			StartedAt: finished.Add(-time.Minute), FinishedAt: finished, Files: 1000, Bytes: 1 << 20, Skipped: 3, Detections: dets, ReceivedAt: finished})
		must(err)
	}
	scan("agent-00", "r1", "", 2, at(-13),
		store.Detection{Path: "/home/a/eicar.com", Signature: "Eicar-Test-Signature", SHA256: "275a021b", DefsVer: "20261130", FoundAt: at(-13), Quarantine: "q1"},
		store.Detection{Path: "/tmp/x", Signature: "Win.Trojan.Agent-1", SHA256: "abcd", DefsVer: "20261130", FoundAt: at(-13)})
	scan("agent-01", "r2", "", 0, at(-12))
	scan("agent-01", "oa-1", store.ScanKindOnAccess, 0, at(-11),
		store.Detection{Path: "/home/b/x.exe", Signature: "Win.Test.EICAR_HDB-1", SHA256: "ef01", DefsVer: "20261130", FoundAt: at(-11),
			Access: "exec", PID: 4242, Process: "/usr/bin/bash", Blocked: true})
	scan("agent-03", "r3", "", 0, at(-8),
		store.Detection{Path: "/srv/y", Signature: "Eicar-Test-Signature", SHA256: "275a021b", DefsVer: "20261130", FoundAt: at(-8)})

	must(s.RevokeAgent(ctx, "agent-02", at(-7)))
	must(s.RemoveAgent(ctx, "agent-03", at(-6)))

	must(s.AddUser(ctx, store.User{Name: "alice", Role: "admin", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA", Created: at(-500)}))
	must(s.AddUser(ctx, store.User{Name: "bob", Role: "viewer", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdDI$aGFzaDI", Created: at(-400)}))
	for i, tk := range []store.APIToken{{ID: "tok-1", User: "alice", Name: "ci"}, {ID: "tok-2", User: "bob", Name: "grafana"}} {
		h := sha256.Sum256([]byte(tk.ID))
		tk.Hash, tk.Created = h[:], at(-300+i)
		must(s.AddToken(ctx, tk))
	}
	must(s.TouchToken(ctx, "tok-1", at(-2)))
	for i, e := range []store.AuditEvent{
		{Actor: "alice", Addr: "127.0.0.1:50000", Action: "login", OK: true},
		{Actor: "alice", Addr: "127.0.0.1:50000", Action: "send", Target: "ping", Detail: "seq 1", OK: true},
		{Actor: "mallory", Addr: "10.0.0.9:1234", Action: "login", Detail: "wrong password"},
		{Actor: "alice", Addr: "127.0.0.1:50000", Action: "remove-agent", Target: "agent-03", OK: true},
	} {
		e.Time = at(-20 + 4*i)
		_, err := s.AppendAudit(ctx, e)
		must(err)
	}
	return ids
}
