package agent_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testcert"
	"github.com/vigil-fleet/vigil/internal/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// lab is a server on loopback with multicast on lo, TTL 0.
type lab struct {
	*servertest.Server
	t   *testing.T
	srv *server.Server
}

func startServer(t *testing.T, dataDir string, port int, tlsCert, tlsKey string) *lab {
	return startServerAt(t, "", dataDir, port, tlsCert, tlsKey)
}

// startServerAt starts a server whose agent API listens on addr (a free
// port of 127.0.0.1 when "").
func startServerAt(t *testing.T, addr, dataDir string, port int, tlsCert, tlsKey string) *lab {
	t.Helper()
	ts := servertest.Start(t, server.Config{Server: config.Server{
		DataDir:         dataDir,
		Listen:          addr,
		Port:            port,
		BeaconInterval:  300 * time.Millisecond,
		CheckInInterval: time.Hour,
		Spread:          50 * time.Millisecond,
		TLSCert:         tlsCert,
		TLSKey:          tlsKey,
	},
	})
	return &lab{Server: ts, t: t, srv: ts.Server}
}

func (l *lab) stop() { l.Close() }

func (l *lab) prefs(dir string, groups ...string) *prefs.Agent {
	p := l.AgentPrefs(dir, groups...)
	p.Hostname = filepath.Base(dir)
	return p
}

type runningAgent struct {
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	events []agent.Event
}

func (r *runningAgent) count(kind agent.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// seqs returns the sequence numbers of the events of a kind, in order.
func (r *runningAgent) seqs(kind agent.EventKind) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e.Seq)
		}
	}
	return out
}

func startAgent(t *testing.T, p *prefs.Agent) *runningAgent {
	t.Helper()
	return startAgentWith(t, p, quiet)
}

func startAgentWith(t *testing.T, p *prefs.Agent, log *slog.Logger) *runningAgent {
	t.Helper()
	r := &runningAgent{done: make(chan error, 1)}
	a, err := agent.New(agent.Config{Prefs: p, Logger: log, OnEvent: func(e agent.Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *runningAgent) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// waitJoined waits until each agent has joined its multicast group and
// handles datagrams.
func waitJoined(t *testing.T, agents ...*runningAgent) {
	t.Helper()
	waitFor(t, "joined", func() bool {
		for _, a := range agents {
			if a.count(agent.EventJoined) == 0 {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomPort() int { return 20000 + mrand.IntN(40000) }

func (l *lab) issue(name string, target command.Target, args map[string]string) uint64 {
	l.t.Helper()
	c, err := l.srv.Issue(context.Background(), command.Command{Name: name, Target: target, Args: args}, time.Hour)
	if err != nil {
		l.t.Fatal(err)
	}
	return c.Seq
}

// rows reads a command's per-agent results through the admin API, as an
// administrator would.
func (l *lab) rows(seq uint64) map[string]api.AgentResult {
	c := l.Admin()
	var res api.CommandResults
	if err := c.Call(context.Background(), api.RouteAdminCommandResults, nil, nil, &res, strconv.FormatUint(seq, 10)); err != nil {
		l.t.Fatal(err)
	}
	out := map[string]api.AgentResult{}
	for _, r := range res.Results {
		out[r.AgentID] = r
	}
	return out
}

func (l *lab) results(seq uint64) map[string]string {
	out := map[string]string{}
	for id, r := range l.rows(seq) {
		out[id] = r.Status
	}
	return out
}

func (l *lab) outputs(seq uint64) map[string]string {
	out := map[string]string{}
	for id, r := range l.rows(seq) {
		out[id] = r.Output
	}
	return out
}

func (l *lab) agent(id string) api.AgentInfo {
	c := l.Admin()
	as, err := c.Agents(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	for _, a := range as {
		if a.ID == id {
			return a
		}
	}
	return api.AgentInfo{}
}

func TestAgentEndToEnd(t *testing.T) {
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startAgent(t, l.prefs(dirA, "lab"))
	b := startAgent(t, l.prefs(dirB, "office"))
	waitFor(t, "enrollment", func() bool {
		return a.a.ID() != "" && b.a.ID() != "" && a.count("checkin") > 0 && b.count("checkin") > 0
	})
	waitJoined(t, a, b)

	s1 := l.issue("ping", command.Target{All: true}, nil)
	s2 := l.issue("set", command.Target{Groups: []string{"lab"}}, map[string]string{"checkin_interval": "60"})
	waitFor(t, "results", func() bool {
		r1, r2 := l.results(s1), l.results(s2)
		return r1[a.a.ID()] == "ok" && r1[b.a.ID()] == "ok" && r2[a.a.ID()] == "ok"
	})
	if _, ok := l.results(s2)[b.a.ID()]; ok {
		t.Fatal("agent outside the target reported a result")
	}
	if got := a.a.Counters().Get(agent.CountExecuted); got != 2 {
		t.Fatalf("agent A executed %d, want 2", got)
	}

	// Stop B; commands issued meanwhile are fetched over HTTP after restart.
	idB := b.a.ID()
	b.stop()
	s3 := l.issue("ping", command.Target{All: true}, nil)
	s4 := l.issue("ping", command.Target{Agents: []string{idB}}, nil)
	b2 := startAgent(t, l.prefs(dirB, "office"))
	if b2.a.ID() != idB {
		t.Fatalf("restarted agent has id %s, want %s: it re-enrolled", b2.a.ID(), idB)
	}
	waitFor(t, "catch-up", func() bool {
		return l.results(s3)[idB] == "ok" && l.results(s4)[idB] == "ok"
	})
	// Each ran once, whichever way it came: over HTTP, or (when the
	// restart beat the server's repeats of a datagram) by multicast.
	if got := b2.a.Counters().Get(agent.CountExecuted); got != 2 {
		t.Fatalf("restarted agent executed %d commands, want 2", got)
	}
	t.Logf("restarted agent fetched %d of them over HTTP", b2.a.Counters().Get(agent.CountViaHTTP))
	seqs, err := agent.ExecutedSeqs(dirB)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{s1, s3, s4}; !equal(seqs, want) {
		t.Fatalf("agent B executed %v, want %v", seqs, want)
	}
	// The settings change survived on A's disk.
	if b, _ := os.ReadFile(filepath.Join(dirA, agent.FileSettingsName)); !strings.Contains(string(b), "60") {
		t.Fatalf("settings file: %s", b)
	}
}

func TestAgentServerRestart(t *testing.T) {
	dataDir, port := t.TempDir(), randomPort()
	l := startServer(t, dataDir, port, "", "")
	dir := t.TempDir()
	a := startAgent(t, l.prefs(dir))
	waitFor(t, "enrollment", func() bool { return a.count("checkin") > 0 })
	waitJoined(t, a)
	s1 := l.issue("ping", command.Target{All: true}, nil)
	waitFor(t, "result", func() bool { return l.results(s1)[a.a.ID()] == "ok" })
	epoch, pub := l.srv.Epoch(), l.srv.PublicKey()
	l.stop()

	// A new server process on the same data directory and address: same
	// key and epoch, the sequence continues, the agent does not re-enroll.
	l2 := startServerAt(t, l.AgentAddr, dataDir, port, "", "")
	if l2.srv.Epoch() != epoch || !pub.Equal(l2.srv.PublicKey()) || l2.srv.LatestSeq() != s1 {
		t.Fatal("server identity or sequence not kept across restart")
	}
	s2 := l2.issue("ping", command.Target{All: true}, nil)
	if s2 != s1+1 {
		t.Fatalf("sequence after restart %d, want %d", s2, s1+1)
	}
	waitFor(t, "result after server restart", func() bool { return l2.results(s2)[a.a.ID()] == "ok" })
	if a.count("enrolled") != 1 {
		t.Fatalf("agent enrolled %d times", a.count("enrolled"))
	}
	seqs, _ := agent.ExecutedSeqs(dir)
	if !equal(seqs, []uint64{s1, s2}) {
		t.Fatalf("executed %v", seqs)
	}
}

// TestAgentWrongPinLeavesNoGhost: an agent whose ServerPublicKey is not
// the server's refuses to enroll, saying so, and the real server enrolls
// nothing (no agent pending for ever in its lists).
func TestAgentWrongPinLeavesNoGhost(t *testing.T) {
	t.Parallel()
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	p := l.prefs(t.TempDir())
	other, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.ServerPublicKey = base64.StdEncoding.EncodeToString(other)
	a, err := agent.New(agent.Config{Prefs: p, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	a.Close()
	if err == nil || !strings.Contains(err.Error(), "ServerPublicKey does not match the server's signing key") || !strings.Contains(err.Error(), "nothing was enrolled") {
		t.Fatalf("Run = %v", err)
	}
	c := l.Admin()
	as, err := c.Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 0 {
		t.Fatalf("the server enrolled %d agents: %+v", len(as), as)
	}
}

func TestAgentEnrollmentRefused(t *testing.T) {
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	p := l.prefs(t.TempDir())
	p.EnrollmentSecret = "wrong"
	a, err := agent.New(agent.Config{Prefs: p, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "wrong enrollment secret") {
		t.Fatalf("Run = %v", err)
	}
}

func TestAgentHTTPSPinnedCA(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := testcert.Write(t, dir)
	l := startServer(t, t.TempDir(), randomPort(), certFile, keyFile)

	// Without the pinned CA the system roots do not trust the server.
	p := l.prefs(t.TempDir())
	a, _ := agent.New(agent.Config{Prefs: p, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("untrusted server: Run = %v", err)
	}
	if a.ID() != "" {
		t.Fatal("enrolled with an untrusted server")
	}

	p = l.prefs(t.TempDir())
	p.ServerCACertificate = caPEM
	r := startAgent(t, p)
	waitFor(t, "enrollment over HTTPS", func() bool { return r.count("checkin") > 0 })
	waitJoined(t, r)
	s := l.issue("ping", command.Target{All: true}, nil)
	waitFor(t, "result over HTTPS", func() bool { return l.results(s)[r.a.ID()] == "ok" })
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAgentLargeCommandByReference: a command too large for a datagram is
// announced by digest; the agent fetches, checks and executes it.
func TestAgentLargeCommandByReference(t *testing.T) {
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	a := startAgent(t, l.prefs(t.TempDir()))
	waitFor(t, "enrollment", func() bool { return a.count("checkin") > 0 })
	waitJoined(t, a)
	ids := []string{a.a.ID()}
	for i := range 99 {
		ids = append(ids, "feedfacecafe"+strconv.Itoa(1000+i))
	}
	c, err := l.srv.Issue(context.Background(), command.Command{Name: "ping", Target: command.Target{Agents: ids}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Envelope) <= wire.MaxDatagram {
		t.Fatalf("command is only %d bytes", len(c.Envelope))
	}
	waitFor(t, "result", func() bool { return l.results(c.Seq)[a.a.ID()] == "ok" })
	if a.a.Counters().Get(agent.CountViaHTTP) != 1 || a.a.Counters().Get(agent.CountExecuted) != 1 {
		t.Fatalf("counters %v", a.a.Counters().Snapshot())
	}
}

// startLiveUpdate publishes a repository with one definitions release and
// serves it over HTTP and FTP on 127.0.0.1.
func startLiveUpdate(t *testing.T) (r *publish.Repo, httpURL, ftpURL string) {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("2026112501", map[string][]byte{"daily.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	lu := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: r.PublicDir(),
	},
		Logger: quiet,
	})
	return r, lu.HTTPURL + "/", lu.FTPURL + "/"
}

// TestAgentUpdatesOnCommand: the server's "update" command makes agents
// fetch, verify and install definitions over FTP and over HTTP (falling
// back past a server that is down), report the result, and report the new
// version at check-in.
func TestAgentUpdatesOnCommand(t *testing.T) {
	r, httpURL, ftpURL := startLiveUpdate(t)
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	down := "http://127.0.0.1:1/"
	pFTP := l.prefs(t.TempDir(), "ftp")
	pFTP.LiveUpdateServers, pFTP.RepositoryRoot = []string{ftpURL, httpURL}, r.RootPath()
	pHTTP := l.prefs(t.TempDir(), "http")
	pHTTP.LiveUpdateServers, pHTTP.RepositoryRoot = []string{down, httpURL}, r.RootPath()
	a, b := startAgent(t, pFTP), startAgent(t, pHTTP)
	waitFor(t, "enrollment", func() bool { return a.count("checkin") > 0 && b.count("checkin") > 0 })
	waitJoined(t, a, b)

	seq := l.issue("update", command.Target{All: true}, nil)
	waitFor(t, "update results", func() bool {
		res := l.results(seq)
		return res[a.a.ID()] == "ok" && res[b.a.ID()] == "ok"
	})
	outputs := l.outputs(seq)
	if !strings.Contains(outputs[a.a.ID()], "definitions 2026112501 installed from ftp://") {
		t.Errorf("FTP agent: %q", outputs[a.a.ID()])
	}
	if o := outputs[b.a.ID()]; !strings.Contains(o, "installed from http://") || !strings.Contains(o, "skipped") {
		t.Errorf("HTTP agent: %q", o)
	}
	for _, dir := range []string{pFTP.StateDirectory, pHTTP.StateDirectory} {
		got, err := os.ReadFile(filepath.Join(dir, "definitions", "current", "daily.hdb"))
		if err != nil || !strings.Contains(string(got), "Eicar-Test-Signature") {
			t.Fatalf("installed definitions: %q %v", got, err)
		}
	}
	// The new version reaches the server at the next check-in.
	waitFor(t, "definitions version at check-in", func() bool {
		return l.agent(a.a.ID()).DefsVer == "2026112501" && l.agent(b.a.ID()).DefsVer == "2026112501"
	})
}

// TestAgentKeepsDefinitionsOnBadUpdate: a tampered package is refused, the
// command reports why, and the installed definitions stay.
func TestAgentKeepsDefinitionsOnBadUpdate(t *testing.T) {
	r, httpURL, _ := startLiveUpdate(t)
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	p := l.prefs(t.TempDir())
	p.LiveUpdateServers, p.RepositoryRoot = []string{httpURL}, r.RootPath()
	a := startAgent(t, p)
	waitFor(t, "enrollment", func() bool { return a.count("checkin") > 0 })
	waitJoined(t, a)
	s1 := l.issue("update", command.Target{All: true}, nil)
	waitFor(t, "first update", func() bool { return l.results(s1)[a.a.ID()] == "ok" })

	// Publish a second release (without a delta: the full release is
	// what is downloaded), then tamper with its package on the server.
	if err := r.AddDefinitionsData("2026112502", map[string][]byte{"daily.hdb": []byte("new\n")}); err != nil {
		t.Fatal(err)
	}
	noDeltas := 0
	if err := r.Publish(publish.PublishOptions{DeltaReleases: &noDeltas}); err != nil {
		t.Fatal(err)
	}
	tars, _ := filepath.Glob(filepath.Join(r.PublicDir(), "targets", "definitions", "*.2026112502.tar"))
	if len(tars) != 1 {
		t.Fatalf("published package not found: %v", tars)
	}
	b, _ := os.ReadFile(tars[0])
	b[len(b)/2] ^= 0xff
	os.WriteFile(tars[0], b, 0o644)

	s2 := l.issue("update", command.Target{All: true}, nil)
	waitFor(t, "refused update", func() bool { return l.results(s2)[a.a.ID()] == "error" })
	if o := l.outputs(s2)[a.a.ID()]; !strings.Contains(o, "2026112502") || !strings.Contains(o, "keeping installed version 2026112501") {
		t.Errorf("error output %q", o)
	}
	got, _ := os.ReadFile(filepath.Join(p.StateDirectory, "definitions", "current", "daily.hdb"))
	if !strings.Contains(string(got), "Eicar") {
		t.Fatalf("definitions changed after a refused update: %q", got)
	}
}

// eicar is the EICAR anti-virus test file (68 bytes).
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// TestAgentScanEndToEnd: definitions published, agent updates, server
// sends scan, the detection appears at the server; the file is
// quarantined and restored on command.
func TestAgentScanEndToEnd(t *testing.T) {
	r, httpURL, _ := startLiveUpdate(t)
	l := startServer(t, t.TempDir(), randomPort(), "", "")
	p := l.prefs(t.TempDir())
	p.LiveUpdateServers, p.RepositoryRoot = []string{httpURL}, r.RootPath()
	p.QuarantineDirectory = filepath.Join(t.TempDir(), "quarantine")
	a := startAgent(t, p)
	waitFor(t, "enrollment", func() bool { return a.count("checkin") > 0 })
	waitJoined(t, a)

	corpus := t.TempDir()
	// Its name is not UTF-8: it must reach the server, quarantine and
	// restore byte for byte.
	infected := filepath.Join(corpus, "sub", "eic\xe9r.com")
	os.MkdirAll(filepath.Dir(infected), 0o755)
	os.WriteFile(infected, []byte(eicar), 0o640)
	os.WriteFile(filepath.Join(corpus, "clean.txt"), []byte("nothing to see\n"), 0o644)

	// Scanning before any definitions are installed fails clearly.
	s0 := l.issue("scan", command.Target{All: true}, map[string]string{"paths": corpus})
	waitFor(t, "scan without definitions", func() bool { return l.results(s0)[a.a.ID()] == "error" })
	if o := l.outputs(s0)[a.a.ID()]; !strings.Contains(o, "no definitions installed") {
		t.Fatalf("output %q", o)
	}

	s1 := l.issue("update", command.Target{All: true}, nil)
	waitFor(t, "update", func() bool { return l.results(s1)[a.a.ID()] == "ok" })
	s2 := l.issue("scan", command.Target{All: true}, map[string]string{"paths": corpus})
	waitFor(t, "scan", func() bool { return l.results(s2)[a.a.ID()] == "ok" })
	if o := l.outputs(s2)[a.a.ID()]; !strings.Contains(o, "scanned 2 files") || !strings.Contains(o, "1 infected") || !strings.Contains(o, "1 quarantined") {
		t.Fatalf("scan output %q", o)
	}
	admin := l.Admin()
	var ds []api.DetectionInfo
	waitFor(t, "detection at the server", func() bool {
		admin.Call(context.Background(), api.RouteAdminDetections, nil, nil, &ds)
		return len(ds) == 1
	})
	d := ds[0]
	if d.FullPath() != infected || d.Signature != "Eicar-Test-Signature" || d.DefsVer != "2026112501" || d.AgentID != a.a.ID() ||
		d.SHA256 != "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f" || d.Quarantine == "" {
		t.Fatalf("detection %+v", d)
	}
	if _, err := os.Stat(infected); !os.IsNotExist(err) {
		t.Fatalf("infected file still in place: %v", err)
	}
	fi, err := os.Stat(p.QuarantineDirectory)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("quarantine directory: %v %v", fi, err)
	}

	s3 := l.issue("restore", command.Target{All: true}, map[string]string{"id": d.Quarantine})
	waitFor(t, "restore", func() bool { return l.results(s3)[a.a.ID()] == "ok" })
	got, err := os.ReadFile(infected)
	if err != nil || string(got) != eicar {
		t.Fatalf("restored file: %q %v", got, err)
	}
	if fi, _ := os.Stat(infected); fi.Mode().Perm() != 0o640 {
		t.Fatalf("restored mode %v", fi.Mode().Perm())
	}
	// A second restore of the same id fails clearly.
	s4 := l.issue("restore", command.Target{All: true}, map[string]string{"id": d.Quarantine})
	waitFor(t, "second restore", func() bool { return l.results(s4)[a.a.ID()] == "error" })
}
