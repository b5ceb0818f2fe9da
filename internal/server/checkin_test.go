package server_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestUpdateCheckIn: the update state a check-in reports is checked,
// stored as the agent's (replaced by the next check-in's, none when it
// reports none), listed by the admin API and kept across a restart, over
// SQLite and PostgreSQL; a malformed one is refused with 400 and changes
// nothing.
func TestUpdateCheckIn(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		testUpdateCheckIn(t, func() *fixture { return newFixtureAt(t, dir, nil) })
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := pgtest.Start(t).NewDatabase(t)
		dir := t.TempDir()
		testUpdateCheckIn(t, func() *fixture {
			return newFixtureOpen(t, dir, nil, func(string) (store.Store, error) { return postgres.Open(context.Background(), dsn) })
		})
	})
}

func testUpdateCheckIn(t *testing.T, start func() *fixture) {
	ctx := context.Background()
	f := start()
	en, other := f.enroll(t), f.enroll(t)
	c := f.agentClient(en.Token)
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	u := &api.UpdateState{From: "2026120201", To: "2026120203", At: at, Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2}
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", DefsVer: "2026120203", Update: u}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.agentClient(other.Token).CheckIn(ctx, api.CheckInRequest{Epoch: other.Epoch, Hostname: "h0"}); err != nil {
		t.Fatal(err)
	}
	check := func(f *fixture, want *api.UpdateState) {
		t.Helper()
		as := f.agents(t)
		if got := as[en.AgentID].Update; !reflect.DeepEqual(got, want) {
			t.Fatalf("agent's update %+v, want %+v", got, want)
		}
		if got := as[other.AgentID].Update; got != nil {
			t.Fatalf("an agent that reported no update has %+v", got)
		}
	}
	check(f, u)

	future := time.Now().Add(25 * time.Hour).UTC().Format(time.RFC3339)
	bad := []struct{ name, body, msg string }{
		{"to missing", `{"update":{"bytes":1}}`, "update.to: want a definitions version"},
		{"to not digits", `{"update":{"to":"2026.12.02"}}`, "update.to: want a definitions version (digits only)"},
		{"to too long", `{"update":{"to":"123456789012345678901"}}`, "update.to: want a definitions version (1 to 20 digits)"},
		{"from not digits", `{"update":{"from":"v1","to":"2"}}`, "update.from"},
		{"negative bytes", `{"update":{"to":"2","bytes":-1}}`, "update.bytes: want 0 or more"},
		{"negative full", `{"update":{"to":"2","full_bytes":-5}}`, "update.full_bytes: want 0 or more"},
		{"negative deltas", `{"update":{"to":"2","deltas":-1}}`, "update.deltas: want 0 or more"},
		{"in the future", `{"update":{"to":"2","at":"` + future + `"}}`, "update.at: "},
		{"not a time", `{"update":{"to":"2","at":"yesterday"}}`, "bad request body"},
		{"unknown field", `{"update":{"to":"2","size":3}}`, "unknown field"},
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
	check(f, u)

	// The next check-in's update replaces it (the bounds themselves
	// accepted), and survives a restart.
	full := &api.UpdateState{To: "99999999999999999999", At: time.Now().Add(23 * time.Hour).UTC().Truncate(time.Microsecond),
		Bytes: 1<<63 - 1, FullBytes: 1<<63 - 1}
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", Update: full}); err != nil {
		t.Fatal(err)
	}
	check(f, full)
	f.srv.Close()
	f = start()
	check(f, full)
	// A check-in without one leaves none.
	c = f.agentClient(en.Token)
	if _, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1"}); err != nil {
		t.Fatal(err)
	}
	check(f, nil)
}

// TestCheckInDeferred: a check-in that reports the state the agent's last
// stored one did is acknowledged before it is written; its last-seen time
// and counters are written in the next group commit (at the latest
// SeenFlush later, and when the server closes), never over a later
// state. A check-in that changes state is written before its answer.
func TestCheckInDeferred(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	f := newFixtureAt(t, dir, func(c *server.Config) { c.SeenFlush = time.Hour })
	en := f.enroll(t)
	c := f.agentClient(en.Token)
	req := api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", OS: "linux", DefsVer: "2026120201", Counters: map[string]uint64{"executed": 1}}
	if _, err := c.CheckIn(ctx, req); err != nil {
		t.Fatal(err)
	}
	first := f.agents(t)[en.AgentID]
	if first.LastCheckIn.IsZero() || first.Counters["executed"] != 1 {
		t.Fatalf("the first check-in is not stored: %+v", first)
	}
	// The same state, later, with other counters: acknowledged, not yet
	// written (the flush is an hour away).
	req.Counters = map[string]uint64{"executed": 2}
	if _, err := c.CheckIn(ctx, req); err != nil {
		t.Fatal(err)
	}
	if a := f.agents(t)[en.AgentID]; !a.LastSeen.Equal(first.LastSeen) || a.Counters["executed"] != 1 {
		t.Fatalf("a check-in that changed no state was written before the next flush: %+v", a)
	}
	// Closing the server writes it.
	f.srv.Close()
	f = newFixtureAt(t, dir, func(c *server.Config) { c.SeenFlush = time.Hour })
	closed := f.agents(t)[en.AgentID]
	if !closed.LastSeen.After(first.LastSeen) || closed.Counters["executed"] != 2 || closed.DefsVer != "2026120201" {
		t.Fatalf("after a clean close: %+v, want the deferred check-in's time (after %s) and counters", closed, first.LastSeen)
	}

	// After a restart, the first check-in is written before its answer
	// (the server has no stored state of the agent to compare with).
	c = f.agentClient(en.Token)
	req.Counters = map[string]uint64{"executed": 3}
	if _, err := c.CheckIn(ctx, req); err != nil {
		t.Fatal(err)
	}
	restarted := f.agents(t)[en.AgentID]
	if !restarted.LastSeen.After(closed.LastSeen) || restarted.Counters["executed"] != 3 {
		t.Fatalf("the first check-in after a restart is not written at once: %+v", restarted)
	}
	// A deferred check-in, then a state change: the change is written
	// before its answer, and the deferred one, older, never over it.
	req.Counters = map[string]uint64{"executed": 4}
	if _, err := c.CheckIn(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.DefsVer, req.Counters = "2026120202", map[string]uint64{"executed": 5}
	if _, err := c.CheckIn(ctx, req); err != nil {
		t.Fatal(err)
	}
	changed := f.agents(t)[en.AgentID]
	if changed.DefsVer != "2026120202" || changed.Counters["executed"] != 5 || !changed.LastSeen.After(restarted.LastSeen) {
		t.Fatalf("a state change is not written before its answer: %+v", changed)
	}
	f.srv.Close()
	f = newFixtureAt(t, dir, func(c *server.Config) { c.SeenFlush = 20 * time.Millisecond })
	if a := f.agents(t)[en.AgentID]; a.DefsVer != "2026120202" || a.Counters["executed"] != 5 || !a.LastSeen.Equal(changed.LastSeen) {
		t.Fatalf("an older deferred check-in was written over a state change: %+v, want %+v", a, changed)
	}

	// With a short flush interval, a deferred check-in is written within
	// it, without another request.
	c = f.agentClient(en.Token)
	if _, err := c.CheckIn(ctx, req); err != nil { // first after the restart: written at once
		t.Fatal(err)
	}
	before := f.agents(t)[en.AgentID]
	req.Counters = map[string]uint64{"executed": 6}
	if _, err := c.CheckIn(ctx, req); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the deferred check-in's flush", func() bool {
		a := f.agents(t)[en.AgentID]
		return a.Counters["executed"] == 6 && a.LastSeen.After(before.LastSeen)
	})

	// A revoked agent's deferred check-in is dropped, and its next
	// refused.
	if _, err := f.admin().RevokeAgent(ctx, en.AgentID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckIn(ctx, req); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("a revoked agent's check-in: %v, want 403", err)
	}
}

// pollUntil polls ok (what the server wrote is read through the admin
// API: no event says so) until it holds, failing after 10 s.
func pollUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// crashChildEnv, when set to a data directory, makes the test binary run
// a server on it (crashChild) instead of the tests.
const crashChildEnv = "VIGIL_SERVER_CRASH_CHILD"

// crashChild runs a server on dir with an hour between flushes of the
// deferred check-ins, prints "LISTENING agentAddr adminAddr" and serves
// until it is killed.
func crashChild(dir string) int {
	lo, err := testenv.LoopbackName()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	cfg := server.Config{
		Server: config.Server{DataDir: dir, Group: netip.MustParseAddr("239.255.81.93"), Port: 20000 + os.Getpid()%30000,
			Interface: lo, TTL: 0, Repeat: 1, BeaconInterval: time.Hour, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
			SeenFlush: time.Hour},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	s, err := server.New(cfg, func(p string) (store.Store, error) { return sqlite.Open(p) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	fmt.Printf("LISTENING %s %s\n", agentLn.Addr(), adminLn.Addr())
	if err := s.Serve(context.Background(), agentLn, adminLn); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// TestCheckInCrash: a server process killed with SIGKILL loses the
// last-seen times and counters of the check-ins it acknowledged before
// writing them (those that changed no state), and nothing else: every
// state change it acknowledged (definitions version, groups, update
// state) is in the SQLite file.
func TestCheckInCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	var agentAddr, adminAddr string
	if _, serr := fmt.Sscanf(line, "LISTENING %s %s", &agentAddr, &adminAddr); err != nil || serr != nil {
		t.Fatalf("the server child said %q (%v, %v)", line, err, serr)
	}
	dd := server.DataDir{Path: dir}
	secret, err := dd.EnrollSecret()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := &fixture{agentBase: "http://" + agentAddr}
	enroll := func() api.EnrollResponse {
		var r api.EnrollResponse
		if err := f.agentClient("").Call(ctx, api.RouteEnroll, nil, api.EnrollRequest{
			Secret: secret, Nonce: newNonce(), Hostname: "h", OS: "linux", Arch: "amd64", Version: "test",
		}, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	quiet, busy := enroll(), enroll()

	// quiet: one check-in written; busy: state changes, each
	// acknowledged. Then a check-in of each that changes no state:
	// deferred (no group commit follows them: they would be in it).
	qc := f.agentClient(quiet.Token)
	qreq := api.CheckInRequest{Epoch: quiet.Epoch, Hostname: "quiet", OS: "linux", DefsVer: "2026120201", Counters: map[string]uint64{"executed": 1}}
	if _, err := qc.CheckIn(ctx, qreq); err != nil {
		t.Fatal(err)
	}
	bc := f.agentClient(busy.Token)
	u := &api.UpdateState{From: "2026120201", To: "2026120203", At: time.Now().UTC().Truncate(time.Microsecond), Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2}
	breq := api.CheckInRequest{Epoch: busy.Epoch, Hostname: "busy", OS: "linux", DefsVer: "2026120201"}
	for _, step := range []func(){
		func() {},
		func() { breq.DefsVer, breq.Update = "2026120203", u },
		func() { breq.Groups = []string{"lab"} },
	} {
		step()
		if _, err := bc.CheckIn(ctx, breq); err != nil {
			t.Fatal(err)
		}
	}
	beforeDeferred := time.Now()
	qreq.Counters = map[string]uint64{"executed": 2}
	if _, err := qc.CheckIn(ctx, qreq); err != nil {
		t.Fatal(err)
	}
	breq.Counters = map[string]uint64{"executed": 9}
	if _, err := bc.CheckIn(ctx, breq); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	if err := cmd.Wait(); err == nil {
		t.Fatal("the server child exited cleanly; want it killed")
	}

	st, err := sqlite.Open(dd.DatabasePath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := st.Agent(ctx, quiet.AgentID)
	if err != nil {
		t.Fatal(err)
	}
	if q.Hostname != "quiet" || q.DefsVer != "2026120201" || q.Counters["executed"] != 1 || q.LastSeen.After(beforeDeferred) {
		t.Errorf("quiet agent after the crash: %+v; want its first check-in's state, counters and time (before %s)", q, beforeDeferred)
	}
	b, err := st.Agent(ctx, busy.AgentID)
	if err != nil {
		t.Fatal(err)
	}
	wantU := store.UpdateState{From: u.From, To: u.To, At: u.At, Bytes: u.Bytes, FullBytes: u.FullBytes, Deltas: u.Deltas}
	if b.Hostname != "busy" || b.DefsVer != "2026120203" || !reflect.DeepEqual(b.Groups, []string{"lab"}) ||
		b.Update == nil || !b.Update.At.Equal(wantU.At) || b.Update.To != wantU.To || b.Update.From != wantU.From ||
		b.Update.Bytes != wantU.Bytes || b.Update.FullBytes != wantU.FullBytes || b.Update.Deltas != wantU.Deltas {
		t.Errorf("busy agent after the crash: %+v (update %+v); want every acknowledged state change", b, b.Update)
	}
	if len(b.Counters) != 0 {
		t.Errorf("busy agent's counters %v: the deferred check-in's were written before the crash, want none", b.Counters)
	}
}
