package cli

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/store/storetest"
)

// pgPassword is put in the tests' DSNs: the clusters trust local
// connections, so it is never checked, and it must appear in no output.
const pgPassword = "s3cret-Pa55"

// waitResult waits until the PostgreSQL store holds agent's result of
// command seq, and returns it.
func waitResult(t *testing.T, dsn string, seq uint64, agent string) store.Result {
	t.Helper()
	p, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deadline := time.Now().Add(processWait)
	for {
		rs, err := p.Results(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.AgentID == agent {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result of command %d from agent %s in PostgreSQL after %v", seq, agent, processWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vigil server -store postgres://… keeps its state in PostgreSQL: a real
// agent enrolls, executes a command and reports its result, which is in
// the database. Restarted on the same database, the server keeps its
// epoch (the agent executes its next command: it drops any of another
// epoch) and its sequence continues. The DSN's password is in no log
// line and not in the published settings.
func TestServerOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).NewDatabase(t) + "&password=" + pgPassword
	rt := filepath.Join(t.TempDir(), "run")
	dataDir := filepath.Join(t.TempDir(), "server")
	agentAPI, admin := freeAddr(t), freeAddr(t)
	port := servertest.RandomPort()
	args := []string{"server", "-store", dsn, "-data-dir", dataDir, "-listen", agentAPI, "-admin-listen", admin,
		"-interface", "lo", "-ttl", "0", "-port", strconv.Itoa(port), "-spread", "10ms"}
	srv := startPart(t, rt, "server listening", args...)
	ready := regexp.MustCompile(`msg="server ready".* store="database t_\d+ on /[^"]+"`)
	if !ready.MatchString(srv.stderr()) {
		t.Errorf("the server's log does not name its database:\n%s", srv.stderr())
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if _, err := os.Stat(filepath.Join(dataDir, server.FileDatabase)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a server on PostgreSQL made a SQLite file: %v", err)
	}
	if pub, err := os.ReadFile(filepath.Join(rt, "server.plist")); err != nil || strings.Contains(string(pub), pgPassword) || !strings.Contains(string(pub), "password=xxxxx") {
		t.Errorf("published settings (%v):\n%s", err, pub)
	}
	dir := t.TempDir()
	conf := writePlist(t, dir, "agent.plist", map[string]any{
		"NodeCommURL":        "http://" + agentAPI + "/vigil",
		"ServerPublicKey":    read(server.FilePublicKey),
		"EnrollmentSecret":   read(server.FileEnrollSecret),
		"StateDirectory":     filepath.Join(dir, "state"),
		"MulticastPort":      port,
		"MulticastInterface": "lo",
	})
	if _, err := base64.StdEncoding.DecodeString(read(server.FilePublicKey)); err != nil {
		t.Fatal(err)
	}
	ag := startVigil(t, "agent", "-config", conf)
	line := ag.expect(`msg=enrolled agent=\S+`)
	id := regexp.MustCompile(`agent=(\S+)`).FindStringSubmatch(line)[1]
	ag.expect(`msg="agent running"`)

	env := map[string]string{"VIGIL_ADMIN_URL": "http://" + admin, "VIGIL_ADMIN_TOKEN": read(server.FileAdminToken)}
	send := func(want uint64) {
		t.Helper()
		code, out, errOut := run(t, env, "send", "-all", "ping")
		if code != 0 || strings.TrimSpace(out) != strconv.FormatUint(want, 10) {
			t.Fatalf("vigil send: exit %d, %q %s; want sequence %d", code, out, errOut, want)
		}
		ag.expect(`msg="command executed" seq=` + strconv.FormatUint(want, 10) + ` name=ping .*status=ok`)
		if r := waitResult(t, dsn, want, id); r.Status != "ok" {
			t.Fatalf("result of %d in PostgreSQL: %+v", want, r)
		}
	}
	send(1)
	p, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	epoch := p.Epoch()
	if a, err := p.Agent(t.Context(), id); err != nil || a.LastSeq != 0 && a.LastSeq != 1 {
		t.Fatalf("agent in PostgreSQL: %+v, %v", a, err)
	}
	p.Close()

	srv.signalAndWait(syscall.SIGTERM)
	srv = startPart(t, rt, "server listening", args...)
	send(2)
	send(3)
	p, err = postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Epoch() != epoch {
		t.Errorf("epoch %d after the restart, was %d", p.Epoch(), epoch)
	}
	if seq, err := p.LatestSeq(t.Context()); err != nil || seq != 3 {
		t.Errorf("latest sequence %d, %v; want 3", seq, err)
	}
	for _, p := range []*vigilProc{srv, ag} {
		if strings.Contains(p.stderr(), pgPassword) {
			t.Errorf("the password is in a log:\n%s", p.stderr())
		}
	}
}

// -store and the Store key take "" or a postgres:// URL; anything else is
// refused, naming the flag and the key and not repeating the URL.
func TestServerStoreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, bad := range []string{"mysql://vigil:" + pgPassword + "@db/vigil", "host=db password=" + pgPassword, "postgres:" + pgPassword, "postgres://vigil:" + pgPassword + "@db:99999999999/x"} {
		code, _, errOut := run(t, noRuntime, "server", "-data-dir", dir, "-store", bad)
		if code == 0 || !strings.Contains(errOut, "-store (preference key Store)") || strings.Contains(errOut, pgPassword) {
			t.Errorf("-store %s: exit %d, %s", bad, code, errOut)
		}
		conf := writePlist(t, dir, "server.plist", map[string]any{"Store": bad, "DataDir": dir})
		code, _, errOut = run(t, noRuntime, "server", "-config", conf)
		if code == 0 || !strings.Contains(errOut, "key Store") || strings.Contains(errOut, pgPassword) {
			t.Errorf("Store %s in %s: exit %d, %s", bad, conf, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, server.FileDatabase)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused server made its SQLite store: %v", err)
	}
}

// vigil store migrate copies a filled SQLite store into an empty
// PostgreSQL database and says so; the copy is a store a server opens. A
// second run is refused and changes nothing; a bad URL is refused
// without being repeated.
func TestStoreMigrate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vigil.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Fill(t, s)
	epoch := s.Epoch()
	s.Close()
	cl := pgtest.Shared(t)
	dsn := cl.NewDatabase(t) + "&password=" + pgPassword

	code, out, errOut := run(t, nil, "store", "migrate", "-from", path, "-to", dsn)
	if code != 0 || !strings.Contains(out, "the copy reads back identical") || !regexp.MustCompile(`agents +6 rows`).MatchString(out) ||
		!strings.Contains(out, "epoch "+strconv.FormatUint(epoch, 10)+", epoch start 2, command sequence at 4") {
		t.Fatalf("vigil store migrate: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, pgPassword) {
		t.Errorf("the password is in the output:\n%s", out)
	}
	p, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch() != epoch {
		t.Errorf("epoch %d in PostgreSQL, %d in SQLite", p.Epoch(), epoch)
	}
	p.Close()

	code, out, errOut = run(t, nil, "store", "migrate", "-from", path, "-to", dsn)
	if code != 1 || !strings.Contains(errOut, "target store is not empty (agents: 6 rows") || !strings.Contains(errOut, "nothing was changed") {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-from", path}, 2, "-to: give the postgres:// URL"},
		{[]string{"-to", dsn}, 2, "-from: name the SQLite store file"},
		{[]string{"-from", path, "-to", "mysql://u:" + pgPassword + "@h/db"}, 2, `-to: unsupported scheme "mysql"`},
		{[]string{"-from", path, "-to", "postgres:///nosuchdb?host=" + cl.Dir + "&user=vigil&password=" + pgPassword}, 1, "database nosuchdb on " + cl.Dir},
		{[]string{"-from", filepath.Join(t.TempDir(), "none.db"), "-to", dsn}, 1, "no such file"},
	} {
		code, out, errOut := run(t, nil, append([]string{"store", "migrate"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(out+errOut, pgPassword) {
			t.Errorf("migrate %q: exit %d, %s%s; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if code, _, errOut := run(t, nil, "store", "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown store command "frobnicate"`) {
		t.Errorf("vigil store frobnicate: exit %d, %s", code, errOut)
	}
}
