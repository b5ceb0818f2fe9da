package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

type fixture struct {
	srv *server.Server
	// agentBase is the agent API's scheme and address, without the base
	// path; adminURL the admin API's.
	agentBase string
	adminURL  string
	dataDir   string
	port      int
	rcv       *mcast.Receiver
	log       *logBuffer
}

// logBuffer collects a server's log lines, safe for concurrent use.
type logBuffer struct{ testenv.Buffer }

func (b *logBuffer) lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func newFixture(t *testing.T) *fixture { return newFixtureAt(t, t.TempDir(), nil) }

// newFixtureAt starts a server on dataDir with its SQLite store; mod, when
// set, changes its configuration first.
func newFixtureAt(t *testing.T, dataDir string, mod func(*server.Config)) *fixture {
	t.Helper()
	return newFixtureOpen(t, dataDir, mod, func(p string) (store.Store, error) { return sqlite.Open(p) })
}

// newFixtureOpen starts a server on dataDir with the store open returns;
// mod, when set, changes its configuration. Its log (debug and up) is in
// f.log.
func newFixtureOpen(t *testing.T, dataDir string, mod func(*server.Config), open func(string) (store.Store, error)) *fixture {
	t.Helper()
	f := &fixture{dataDir: dataDir, port: servertest.RandomPort(), log: &logBuffer{}}
	group := netip.MustParseAddr("239.255.81.92")
	var err error
	// Listen before the server starts so the first beacon is seen.
	f.rcv, err = mcast.NewReceiver(mcast.Config{Group: group, Port: f.port, Interface: testenv.Loopback(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.rcv.Close() })
	cfg := server.Config{Server: config.Server{
		DataDir:        f.dataDir,
		Group:          group,
		Port:           f.port,
		Repeat:         1,
		BeaconInterval: time.Hour,
	},
		Logger: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	ts := servertest.StartOpen(t, cfg, open)
	f.srv, f.agentBase, f.adminURL = ts.Server, "http://"+ts.AgentAddr, ts.AdminURL
	return f
}

func (f *fixture) agentClient(auth string) *api.AgentClient {
	return &api.AgentClient{Client: api.Client{Base: f.agentBase + "/vigil", Auth: auth}}
}

func (f *fixture) admin() *api.AdminClient {
	return &api.AdminClient{Client: api.Client{Base: f.adminURL, Auth: f.srv.AdminToken()}}
}

// enroll enrolls an agent with a fresh nonce and checks the answer's
// proof as an agent does.
func (f *fixture) enroll(t *testing.T, groups ...string) api.EnrollResponse {
	t.Helper()
	var r api.EnrollResponse
	nonce := newNonce()
	err := f.agentClient("").Call(context.Background(), api.RouteEnroll, nil, api.EnrollRequest{
		Secret: f.srv.EnrollSecret(), Nonce: nonce, Hostname: "h1", OS: "linux", Arch: "amd64", Version: "test", Groups: groups,
	}, &r)
	if err != nil {
		t.Fatal(err)
	}
	e, st := verifyStatement(t, f.srv.PublicKey(), r.Proof)
	if st.Agent != r.AgentID || st.Nonce != nonce || st.Previous != 0 || e.Epoch != r.Epoch || e.Seq != r.LatestSeq {
		t.Fatalf("enrollment proof %+v %+v does not match the answer %+v (nonce %s)", e.Header, st, r, nonce)
	}
	return r
}

func newNonce() string {
	b := make([]byte, 16)
	crand.Read(b)
	return hex.EncodeToString(b)
}

// verifyStatement verifies an epoch statement under pub, as an agent does.
func verifyStatement(t *testing.T, pub ed25519.PublicKey, proof []byte) (*wire.Envelope, wire.EpochStatement) {
	t.Helper()
	e, err := wire.Verify(proof, pub, time.Now())
	if err != nil {
		t.Fatalf("epoch statement does not verify: %v", err)
	}
	if e.Kind != wire.KindEpoch {
		t.Fatalf("epoch statement of kind %v", e.Kind)
	}
	if d := e.Expires.Sub(e.Issued); d != 10*time.Minute {
		t.Errorf("epoch statement valid for %v, want 10m", d)
	}
	st, err := wire.DecodeEpochStatement(e.Body)
	if err != nil {
		t.Fatal(err)
	}
	return e, st
}

// receive returns the next datagram of the given kind.
func (f *fixture) receive(t *testing.T, kind wire.Kind) *wire.Envelope {
	t.Helper()
	buf := make([]byte, 2048)
	for {
		done := make(chan struct{})
		timer := time.AfterFunc(5*time.Second, func() { f.rcv.Close() })
		n, _, err := f.rcv.Receive(buf)
		timer.Stop()
		close(done)
		if err != nil {
			t.Fatalf("no %s datagram: %v", kind, err)
		}
		e, err := wire.Verify(append([]byte(nil), buf[:n]...), f.srv.PublicKey(), time.Now())
		if errors.Is(err, wire.ErrExpired) && e.Kind == wire.KindBeacon {
			// Signed, but it waited in the socket's buffer longer than
			// its few intervals of life (a loaded machine, a short
			// interval): agents drop it, and so does the test.
			continue
		}
		if err != nil {
			t.Fatalf("datagram does not verify: %v", err)
		}
		if e.Kind == kind {
			return e
		}
	}
}

func TestDatagramsOnTheWire(t *testing.T) {
	f := newFixture(t)
	b := f.receive(t, wire.KindBeacon)
	if b.Seq != 0 || b.Epoch != f.srv.Epoch() {
		t.Fatalf("beacon %+v", b.Header)
	}
	info, err := f.admin().Send(context.Background(), api.SendRequest{Name: "ping", Target: command.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	e := f.receive(t, wire.KindCommand)
	c, err := command.Decode(e.Body)
	if err != nil || e.Seq != info.Seq || c.Name != "ping" || !c.Target.All {
		t.Fatalf("command datagram %+v %+v %v", e.Header, c, err)
	}
	if len(e.Raw) > wire.MaxDatagram {
		t.Fatalf("datagram of %d bytes", len(e.Raw))
	}

	// A command too large for one datagram is announced by reference, and
	// the full envelope served over HTTP matches the digest.
	agents := make([]string, 100)
	for i := range agents {
		agents[i] = strings.Repeat("0", 14) + string(rune('a'+i/26)) + string(rune('a'+i%26))
	}
	if err := f.admin().Call(context.Background(), api.RouteAdminSend, nil, api.SendRequest{Name: "ping", Target: command.Target{Agents: agents}}, &info); err != nil {
		t.Fatal(err)
	}
	ref := f.receive(t, wire.KindRef)
	d, err := wire.DecodeRef(ref.Body)
	if err != nil || ref.Seq != info.Seq {
		t.Fatalf("ref %+v %v", ref.Header, err)
	}
	en := f.enroll(t)
	req, _ := http.NewRequest("GET", api.RouteCommand.URL(f.agentBase+"/vigil", nil, itoa(info.Seq)), nil)
	req.Header.Set("Authorization", "Bearer "+en.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if wire.Digest(full) != d {
		t.Fatal("served envelope does not match the announced digest")
	}
	if _, err := wire.Verify(full, f.srv.PublicKey(), time.Now()); err != nil {
		t.Fatal(err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestAgentAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	en := f.enroll(t, "lab")
	if en.AgentID == "" || !strings.HasPrefix(en.Token, en.AgentID+".") || en.Epoch != f.srv.Epoch() {
		t.Fatalf("enroll response %+v", en)
	}
	c := f.agentClient(en.Token)
	ci, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", OS: "linux", Groups: []string{"lab"}, LastSeq: 0})
	if err != nil {
		t.Fatal(err)
	}
	if ci.Changed || ci.LatestSeq != 0 || ci.EpochProof != nil {
		t.Fatalf("check-in %+v", ci)
	}
	cmd, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", Groups: []string{"lab"}, LastSeq: 0}, &ci); err != nil {
		t.Fatal(err)
	}
	if !ci.Changed || ci.LatestSeq != cmd.Seq {
		t.Fatalf("check-in after command %+v", ci)
	}
	var cr api.CommandsResponse
	if err := c.Call(ctx, api.RouteCommands, url.Values{"after": {"0"}}, nil, &cr); err != nil {
		t.Fatal(err)
	}
	if len(cr.Commands) != 1 || !bytes.Equal(cr.Commands[0], cmd.Envelope) {
		t.Fatalf("commands %+v", cr)
	}
	res := api.ResultsRequest{Results: []api.Result{{Seq: cmd.Seq, Status: "ok", Output: "pong", ExecutedAt: time.Now()}}}
	// A repeated post is idempotent.
	for range 2 {
		var rr api.ResultsResponse
		if err := c.Call(ctx, api.RouteResults, nil, res, &rr); err != nil {
			t.Fatal(err)
		}
		if len(rr.Accepted) != 1 || rr.Accepted[0] != cmd.Seq || len(rr.Refused) != 0 {
			t.Fatalf("results answer %+v", rr)
		}
	}
	var cres api.CommandResults
	if err := f.admin().Call(ctx, api.RouteAdminCommandResults, nil, nil, &cres, itoa(cmd.Seq)); err != nil {
		t.Fatal(err)
	}
	if len(cres.Results) != 1 || cres.Results[0].Status != "ok" || cres.Results[0].Output != "pong" {
		t.Fatalf("results %+v", cres.Results)
	}
	agents, err := f.admin().Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].Hostname != "h1" || agents[0].Groups[0] != "lab" {
		t.Fatalf("agents %+v", agents)
	}
}

// TestBadRequests: every malformed or unauthorised request gets a clear
// 4xx and changes nothing.
func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	en := f.enroll(t)
	other := f.enroll(t)
	base := f.agentBase + "/vigil"
	big := strings.Repeat("x", 2<<20)
	auth := "Bearer " + en.Token
	tests := []struct {
		name, method, url, auth, body string
		code                          int
		msg                           string
	}{
		{"enroll wrong secret", "POST", api.RouteEnroll.URL(base, nil), "", `{"secret":"nope","hostname":"x"}`, 403, "wrong enrollment secret"},
		{"enroll no nonce", "POST", api.RouteEnroll.URL(base, nil), "", `{"secret":"` + f.srv.EnrollSecret() + `","hostname":"x"}`, 400, "nonce"},
		{"enroll short nonce", "POST", api.RouteEnroll.URL(base, nil), "", `{"secret":"` + f.srv.EnrollSecret() + `","nonce":"0123456789abcdef","hostname":"x"}`, 400, "nonce"},
		{"enroll upper-case nonce", "POST", api.RouteEnroll.URL(base, nil), "", `{"secret":"` + f.srv.EnrollSecret() + `","nonce":"` + strings.Repeat("AB", 16) + `","hostname":"x"}`, 400, "nonce"},
		{"enroll not json", "POST", api.RouteEnroll.URL(base, nil), "", `{`, 400, "bad request body"},
		{"enroll unknown field", "POST", api.RouteEnroll.URL(base, nil), "", `{"secret":"x","evil":1}`, 400, "unknown field"},
		{"enroll huge", "POST", api.RouteEnroll.URL(base, nil), "", `{"secret":"` + big + `"}`, 400, "too large"},
		{"checkin no auth", "POST", api.RouteCheckIn.URL(base, nil), "", `{}`, 401, "credential"},
		{"checkin wrong token", "POST", api.RouteCheckIn.URL(base, nil), "Bearer " + en.AgentID + ".beef", `{}`, 401, "wrong credential"},
		{"checkin other agent's token", "POST", api.RouteCheckIn.URL(base, nil), "Bearer " + en.AgentID + "." + strings.SplitN(other.Token, ".", 2)[1], `{}`, 401, "wrong credential"},
		{"checkin trailing", "POST", api.RouteCheckIn.URL(base, nil), auth, `{} {}`, 400, "trailing"},
		{"checkin bad group", "POST", api.RouteCheckIn.URL(base, nil), auth, `{"groups":["a b"]}`, 400, "bad group"},
		{"commands no after", "GET", api.RouteCommands.URL(base, nil), auth, ``, 400, "after"},
		{"commands bad limit", "GET", api.RouteCommands.URL(base, url.Values{"after": {"0"}, "limit": {"100000"}}), auth, ``, 400, "limit"},
		{"command missing", "GET", api.RouteCommand.URL(base, nil, "5"), auth, ``, 404, "no command 5"},
		{"results empty", "POST", api.RouteResults.URL(base, nil), auth, `{"results":[]}`, 400, "want 1 to"},
		{"admin no token", "GET", api.RouteAdminAgents.URL(f.adminURL, nil), "", ``, 401, "admin token"},
		{"admin agent token", "GET", api.RouteAdminAgents.URL(f.adminURL, nil), auth, ``, 401, "admin token"},
		{"send unknown command", "POST", api.RouteAdminSend.URL(f.adminURL, nil), "Bearer " + f.srv.AdminToken(), `{"name":"exec","target":{"all":true}}`, 400, "unknown command"},
		{"send no target", "POST", api.RouteAdminSend.URL(f.adminURL, nil), "Bearer " + f.srv.AdminToken(), `{"name":"ping","target":{}}`, 400, "target"},
		{"send bad setting", "POST", api.RouteAdminSend.URL(f.adminURL, nil), "Bearer " + f.srv.AdminToken(), `{"name":"set","args":{"checkin_interval":"1"},"target":{"all":true}}`, 400, "checkin_interval"},
		{"send bad expiry", "POST", api.RouteAdminSend.URL(f.adminURL, nil), "Bearer " + f.srv.AdminToken(), `{"name":"ping","target":{"all":true},"expires_in":"forever"}`, 400, "expires_in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tt.code || !strings.Contains(e.Error, tt.msg) {
				t.Fatalf("%d %q, want %d containing %q", resp.StatusCode, e.Error, tt.code, tt.msg)
			}
		})
	}
	// Nothing changed: two agents, no commands, no results.
	var agents []api.AgentInfo
	f.admin().Call(context.Background(), api.RouteAdminAgents, nil, nil, &agents)
	if len(agents) != 2 || f.srv.LatestSeq() != 0 {
		t.Fatalf("bad requests changed state: %d agents, seq %d", len(agents), f.srv.LatestSeq())
	}
}

func TestDataDirFiles(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{server.FileSigningKey, server.FileAdminToken, server.FileEnrollSecret} {
		fi, err := os.Stat(filepath.Join(f.dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	resp, err := http.Get(api.RouteMetrics.URL(f.adminURL, nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "vigil_server_datagrams_sent_total") {
		t.Fatal("metrics missing datagram counter")
	}
}

func TestScanReports(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	en := f.enroll(t)
	c := f.agentClient(en.Token)
	rep := api.ScanReport{
		ReportID: "r-1", DefsVer: "2026112501", StartedAt: time.Now(), FinishedAt: time.Now(), Files: 12, Bytes: 4096,
		Detections: []api.Detection{{Path: "/tmp/eicar.com", Signature: "Eicar-Test-Signature", SHA256: "275a021b", FoundAt: time.Now(), Quarantine: "q1"}},
	}
	var ack, again api.ScanAck
	if err := c.Call(ctx, api.RouteScans, nil, rep, &ack); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, api.RouteScans, nil, rep, &again); err != nil || again.ID != ack.ID {
		t.Fatalf("resent report: %v, id %d want %d", err, again.ID, ack.ID)
	}
	var ds []api.DetectionInfo
	if err := f.admin().Call(ctx, api.RouteAdminDetections, nil, nil, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Path != "/tmp/eicar.com" || ds[0].AgentID != en.AgentID || ds[0].Hostname != "h1" || ds[0].DefsVer != "2026112501" || ds[0].Quarantine != "q1" {
		t.Fatalf("detections %+v", ds)
	}
	var scans []api.ScanInfo
	if err := f.admin().Call(ctx, api.RouteAdminScans, url.Values{"agent": {en.AgentID}}, nil, &scans); err != nil || len(scans) != 1 || scans[0].Files != 12 {
		t.Fatalf("scans %+v %v", scans, err)
	}
	for _, bad := range []api.ScanReport{
		{ReportID: "has space"},
		{ReportID: "r-2", Seq: 99},
		{ReportID: "r-3", Files: -1},
		{ReportID: "r-4", Detections: []api.Detection{{Path: "", Signature: "x"}}},
		{ReportID: "r-5", Detections: []api.Detection{{Path: "/x"}}},
		{ReportID: "r-6", Detections: []api.Detection{{Path: "/x", PathBytes: []byte("/x"), Signature: "x"}}},
		{ReportID: "r-7", Detections: []api.Detection{{Path: "/x", PathBytes: []byte("/y\xff"), Signature: "x"}}},
	} {
		if err := c.Call(ctx, api.RouteScans, nil, bad, nil); !api.IsStatus(err, 400) {
			t.Errorf("report %+v: %v, want 400", bad, err)
		}
	}
	if err := f.admin().Call(ctx, api.RouteAdminDetections, url.Values{"limit": {"0"}}, nil, &ds); !api.IsStatus(err, 400) {
		t.Errorf("limit=0: %v", err)
	}
	// A file name that is not UTF-8 comes back exactly, byte for byte.
	name := "/tmp/caf\xe9/\xff\xfe.exe"
	odd := api.Detection{Signature: "Eicar-Test-Signature", SHA256: "275a021b", FoundAt: time.Now()}
	odd.SetPath(name)
	if err := c.Call(ctx, api.RouteScans, nil, api.ScanReport{ReportID: "r-8", DefsVer: "1", Detections: []api.Detection{odd}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.admin().Call(ctx, api.RouteAdminDetections, url.Values{"limit": {"1"}}, nil, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].FullPath() != name || ds[0].Path != "/tmp/caf\uFFFD/\uFFFD.exe" {
		t.Fatalf("non-UTF-8 name came back as %q (path %q)", ds[0].FullPath(), ds[0].Path)
	}
}

// TestEveryRouteServed: the server serves every route of api's table, with
// its method (a request without a credential is refused as such, not
// answered 404 or 405), so the clients' paths and the server's are one.
func TestEveryRouteServed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	check := func(base string, r api.Route, want int) {
		t.Helper()
		params := make([]string, strings.Count(r.Pattern, "{"))
		for i := range params {
			params[i] = "1"
		}
		req, _ := http.NewRequest(r.Method, r.URL(base, nil, params...), strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", r.MuxPattern(""), resp.StatusCode, want)
		}
	}
	for _, r := range api.AgentRoutes() {
		want := http.StatusUnauthorized
		if r == api.RouteEnroll {
			want = http.StatusForbidden // no enrollment secret
		}
		check(f.agentBase+"/vigil", r, want)
	}
	for _, r := range api.AdminRoutes() {
		want := http.StatusUnauthorized
		if r == api.RouteMetrics {
			want = http.StatusOK
		}
		check(f.adminURL, r, want)
	}
}
