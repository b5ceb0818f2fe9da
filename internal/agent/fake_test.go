package agent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// fakeServer is a management server written for the agent's tests: it
// speaks the agent API of docs/protocol.md §2 (signed enrollment answers,
// epoch statements, per-result verdicts) and lets a test script its
// answers, so that tests do not depend on the real server's timing.
type fakeServer struct {
	t    *testing.T
	priv ed25519.PrivateKey
	srv  *httptest.Server

	mu       sync.Mutex
	epoch    uint64
	issued   time.Time         // of the statement of the current epoch
	start    uint64            // the latest sequence when the epoch began
	cmds     map[uint64][]byte // seq → envelope, in the current epoch
	latest   uint64
	tokens   map[string]string // agent id → token
	enrolls  []api.EnrollRequest
	checkins []checkin
	results  []agentResult
	requests int // every request after enrollment

	// Hooks, called with mu held; each returns true when it answered.
	onEnroll  func(w http.ResponseWriter, req api.EnrollRequest, resp *api.EnrollResponse) bool
	onCheckIn func(w http.ResponseWriter, agent string, req api.CheckInRequest, resp *api.CheckInResponse) bool
	onResults func(w http.ResponseWriter, agent string, req api.ResultsRequest) bool
}

type checkin struct {
	Agent string
	api.CheckInRequest
}

type agentResult struct {
	Agent string
	api.Result
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, priv: priv, epoch: 1 << 40, issued: time.Now(), cmds: map[uint64][]byte{}, tokens: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc(api.RouteEnroll.MuxPattern("/vigil"), f.enroll)
	mux.HandleFunc(api.RouteCheckIn.MuxPattern("/vigil"), f.auth(f.checkin))
	mux.HandleFunc(api.RouteCommands.MuxPattern("/vigil"), f.auth(f.commands))
	mux.HandleFunc(api.RouteResults.MuxPattern("/vigil"), f.auth(f.postResults))
	mux.HandleFunc(api.RouteScans.MuxPattern("/vigil"), f.auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		writeJSONResp(w, http.StatusCreated, map[string]int{"id": 1})
	}))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) pub() ed25519.PublicKey { return f.priv.Public().(ed25519.PublicKey) }

// prefs are an agent's preferences for this server, with multicast on
// loopback and quick timing.
func (f *fakeServer) prefs(t *testing.T, dir string) *prefs.Agent {
	return &prefs.Agent{
		MulticastAddress: "239.255.81.92", MulticastPort: randomPort(), MulticastInterface: testenv.Loopback(t),
		NodeCommURL: f.srv.URL + "/vigil", ServerPublicKey: base64.StdEncoding.EncodeToString(f.pub()),
		EnrollmentSecret: "s3cret", StateDirectory: dir, Hostname: filepath.Base(dir),
		CheckInInterval: 100 * time.Millisecond,
	}
}

func writeJSONResp(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, reason, format string, args ...any) {
	writeJSONResp(w, code, api.Error{Error: fmt.Sprintf(format, args...), Reason: reason})
}

// statement signs an epoch statement.
func (f *fakeServer) statement(priv ed25519.PrivateKey, epoch, seq uint64, agent, nonce string, issued time.Time) []byte {
	body, err := wire.EncodeEpochStatement(wire.EpochStatement{Agent: agent, Nonce: nonce})
	if err != nil {
		f.t.Error(err)
		return nil
	}
	b, err := wire.Sign(priv, wire.Header{Kind: wire.KindEpoch, Epoch: epoch, Seq: seq, Issued: issued, Expires: issued.Add(10 * time.Minute)}, body)
	if err != nil {
		f.t.Error(err)
	}
	return b
}

func (f *fakeServer) timing() api.Timing { return api.Timing{CheckInSeconds: 3600, SpreadMillis: 20} }

func (f *fakeServer) enroll(w http.ResponseWriter, r *http.Request) {
	var req api.EnrollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "", "%v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enrolls = append(f.enrolls, req)
	if req.Secret != "s3cret" {
		writeErr(w, http.StatusForbidden, "", "wrong enrollment secret")
		return
	}
	if !wire.ValidNonce(req.Nonce) {
		writeErr(w, http.StatusBadRequest, "", "nonce: want 32 to 64 lower-case hex digits")
		return
	}
	id := fmt.Sprintf("agent%04d", len(f.enrolls))
	tok := fmt.Sprintf("tok%d", len(f.enrolls))
	f.tokens[id] = tok
	resp := api.EnrollResponse{
		AgentID: id, Token: id + "." + tok, Epoch: f.epoch, LatestSeq: f.latest, Timing: f.timing(),
		Proof: f.statement(f.priv, f.epoch, f.latest, id, req.Nonce, time.Now()),
	}
	if f.onEnroll != nil && f.onEnroll(w, req, &resp) {
		return
	}
	writeJSONResp(w, http.StatusCreated, resp)
}

func (f *fakeServer) auth(h func(w http.ResponseWriter, r *http.Request, agent string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cred, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		id, tok, _ := strings.Cut(cred, ".")
		f.mu.Lock()
		f.requests++
		ok := tok != "" && f.tokens[id] == tok
		f.mu.Unlock()
		if !ok {
			writeErr(w, http.StatusUnauthorized, "", "unknown agent or wrong credential")
			return
		}
		h(w, r, id)
	}
}

func (f *fakeServer) checkin(w http.ResponseWriter, r *http.Request, agent string) {
	var req api.CheckInRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "", "%v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checkins = append(f.checkins, checkin{agent, req})
	resp := api.CheckInResponse{Changed: req.LastSeq < f.latest, Epoch: f.epoch, LatestSeq: f.latest, Timing: f.timing()}
	if req.Epoch != f.epoch {
		// The statement's sequence is where the epoch began, so that
		// commands issued in it before the agent checks in are not missed.
		resp.EpochProof = f.statement(f.priv, f.epoch, f.start, agent, "", f.issued)
	}
	if f.onCheckIn != nil && f.onCheckIn(w, agent, req, &resp) {
		return
	}
	writeJSONResp(w, http.StatusOK, resp)
}

func (f *fakeServer) commands(w http.ResponseWriter, r *http.Request, _ string) {
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "", "after")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := api.CommandsResponse{Epoch: f.epoch, LatestSeq: f.latest, Commands: [][]byte{}}
	for s := after + 1; s <= f.latest; s++ {
		if c, ok := f.cmds[s]; ok {
			resp.Commands = append(resp.Commands, c)
		}
	}
	writeJSONResp(w, http.StatusOK, resp)
}

func (f *fakeServer) postResults(w http.ResponseWriter, r *http.Request, agent string) {
	var req api.ResultsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "", "%v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.onResults != nil && f.onResults(w, agent, req) {
		return
	}
	resp := api.ResultsResponse{Accepted: []uint64{}}
	for _, res := range req.Results {
		f.results = append(f.results, agentResult{agent, res})
		resp.Accepted = append(resp.Accepted, res.Seq)
	}
	writeJSONResp(w, http.StatusOK, resp)
}

// issue adds a command to the current epoch and returns its sequence.
func (f *fakeServer) issue(c command.Command) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issueLocked(c)
}

// issueN adds n commands at once (agents see all or none of them).
func (f *fakeServer) issueN(n int, c command.Command) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.issueLocked(c)
	}
}

func (f *fakeServer) issueLocked(c command.Command) uint64 {
	body, err := command.Encode(c)
	if err != nil {
		f.t.Fatal(err)
	}
	f.latest++
	now := time.Now()
	b, err := wire.Sign(f.priv, wire.Header{Kind: wire.KindCommand, Epoch: f.epoch, Seq: f.latest, Issued: now, Expires: now.Add(time.Hour)}, body)
	if err != nil {
		f.t.Fatal(err)
	}
	f.cmds[f.latest] = b
	return f.latest
}

// newEpoch moves the server to a new epoch, keeping its latest sequence
// (as a server restored from a backup does) or setting it to latest.
func (f *fakeServer) newEpoch(latest uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch++
	f.issued = time.Now()
	f.latest, f.start = latest, latest
	f.cmds = map[uint64][]byte{}
}

// with runs fn with the server locked.
func (f *fakeServer) with(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// resultsOf returns the results the server stored from agent, by seq.
func (f *fakeServer) resultsOf(agent string) map[uint64][]api.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint64][]api.Result{}
	for _, r := range f.results {
		if r.Agent == agent {
			out[r.Seq] = append(out[r.Seq], r.Result)
		}
	}
	return out
}

func (f *fakeServer) enrollCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.enrolls)
}

// lastCheckIn returns the newest check-in from agent (ok false: none).
func (f *fakeServer) lastCheckIn(agent string) (api.CheckInRequest, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.checkins) - 1; i >= 0; i-- {
		if f.checkins[i].Agent == agent {
			return f.checkins[i].CheckInRequest, true
		}
	}
	return api.CheckInRequest{}, false
}

// logBuffer collects an agent's log for assertions.
type logBuffer struct{ testenv.Buffer }

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var _ io.Writer = (*logBuffer)(nil)

// startAgentLog starts an agent that logs into a logBuffer.
func startAgentLog(t *testing.T, p *prefs.Agent) (*runningAgent, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	r := startAgentWith(t, p, lb.logger())
	return r, lb
}
