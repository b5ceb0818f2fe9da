package relay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/relay"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunChecked(m, "vigil/internal/relay."))
}

// wait bounds every wait on an event.
const wait = 15 * time.Second

// streamConn is one request of the relay stream to the test's server.
type streamConn struct {
	after  uint64
	auth   string
	frames chan []byte
	cut    chan struct{} // closed: the server drops the connection
}

// fixture is a real server (servertest) behind a front that serves the
// relay stream itself (the server's handler is not part of this tree
// yet) and passes every other route of the agent API to the real server.
type fixture struct {
	t     *testing.T
	ts    *servertest.Server
	priv  ed25519.PrivateKey
	url   string // the front's base URL: the relay's -server
	conns chan *streamConn
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, server.Config{})
}

func newFixtureWith(t *testing.T, cfg server.Config) *fixture {
	t.Helper()
	ts := servertest.Start(t, cfg)
	priv, err := server.DataDir{Path: ts.Config.DataDir}.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ts: ts, priv: priv, conns: make(chan *streamConn, 16)}
	target, _ := url.Parse("http://" + ts.AgentAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	streamPath := api.RouteRelayStream.URL(ts.Config.BasePath, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != streamPath {
			proxy.ServeHTTP(w, r)
			return
		}
		after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
		if err != nil {
			http.Error(w, "bad after", http.StatusBadRequest)
			return
		}
		c := &streamConn{after: after, auth: r.Header.Get("Authorization"), frames: make(chan []byte, 64), cut: make(chan struct{})}
		w.Header().Set("Content-Type", api.DatagramStreamType)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case f.conns <- c:
		case <-stop:
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-c.cut:
				return
			case d := <-c.frames:
				if err := api.WriteFrame(w, d); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { close(stop); srv.Close() })
	f.url = "http://" + ln.Addr().String() + ts.Config.BasePath
	return f
}

// conn waits for the relay's next stream request.
func (f *fixture) conn() *streamConn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(wait):
		f.t.Fatal("the relay did not open the stream")
		return nil
	}
}

// issue issues a real command at the server and returns its envelope.
func (f *fixture) issue(c command.Command) store {
	f.t.Helper()
	return f.issueTTL(c, time.Hour)
}

func (f *fixture) issueTTL(c command.Command, ttl time.Duration) store {
	f.t.Helper()
	cmd, err := f.ts.Issue(context.Background(), c, ttl)
	if err != nil {
		f.t.Fatal(err)
	}
	return store{seq: cmd.Seq, env: cmd.Envelope}
}

type store struct {
	seq uint64
	env []byte
}

func ping(target command.Target) command.Command {
	return command.Command{Name: command.Ping, Target: target}
}

// sign signs a datagram with the server's key in its epoch.
func (f *fixture) sign(kind wire.Kind, seq uint64, body []byte, expires time.Duration) []byte {
	f.t.Helper()
	now := time.Now()
	d, err := wire.Sign(f.priv, wire.Header{Kind: kind, Epoch: f.ts.Epoch(), Seq: seq, Issued: now, Expires: now.Add(expires)}, body)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) beacon(seq uint64) []byte {
	return f.sign(wire.KindBeacon, seq, wire.EncodeBeacon(wire.Beacon{IntervalMillis: 30_000, SpreadMillis: 1000}), time.Minute)
}

// running is a relay running until stopped.
type running struct {
	*relay.Relay
	cfg    relay.Config
	events chan relay.Event
	cancel context.CancelFunc
	done   chan error
}

func (f *fixture) relayConfig(stateDir string, port int) relay.Config {
	f.t.Helper()
	secret := filepath.Join(f.t.TempDir(), "enroll.secret")
	if err := os.WriteFile(secret, []byte(f.ts.EnrollSecret()+"\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	rc := config.DefaultRelay()
	rc.Server, rc.ServerKey, rc.EnrollSecretFile = f.url, f.ts.PublicKeyBase64(), secret
	rc.StateDir, rc.Hostname = stateDir, "relay-b"
	rc.Interface, rc.TTL, rc.Port = testenv.Loopback(f.t), 0, port
	rc.Repeat, rc.RepeatGap = 2, 5*time.Millisecond
	return relay.Config{Relay: rc, Logger: slog.New(slog.NewTextHandler(testWriter{f.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func start(t *testing.T, cfg relay.Config) *running {
	t.Helper()
	events := make(chan relay.Event, 1024)
	cfg.OnEvent = func(e relay.Event) {
		select {
		case events <- e:
		default:
			t.Errorf("event channel full; %v lost", e)
		}
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{Relay: r, cfg: cfg, events: events, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- r.Run(ctx) }()
	t.Cleanup(func() { rn.stop(t) })
	return rn
}

// stop stops the relay and waits for it.
func (rn *running) stop(t *testing.T) {
	t.Helper()
	if rn.cancel == nil {
		return
	}
	rn.cancel()
	rn.cancel = nil
	select {
	case err := <-rn.done:
		if err != nil {
			t.Errorf("relay: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("the relay did not stop")
	}
	rn.Close()
}

// await waits for an event matching ok, skipping others.
func (rn *running) await(t *testing.T, what string, ok func(relay.Event) bool) relay.Event {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case e := <-rn.events:
			if ok(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s", what)
		}
	}
}

func kindIs(k relay.EventKind) func(relay.Event) bool {
	return func(e relay.Event) bool { return e.Kind == k }
}

// listener receives the relay's multicast on the loopback interface.
type listener struct {
	t    *testing.T
	r    *mcast.Receiver
	got  chan []byte
	done chan struct{}
}

func listen(t *testing.T, cfg relay.Config) *listener {
	t.Helper()
	r, err := mcast.NewReceiver(mcast.Config{Group: cfg.Group, Port: cfg.Port, Interface: cfg.Interface})
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{t: t, r: r, got: make(chan []byte, 256), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := r.Receive(buf)
			if err != nil {
				return
			}
			l.got <- bytes.Clone(buf[:n])
		}
	}()
	t.Cleanup(func() { r.Close(); <-l.done })
	return l
}

// next returns the next datagram received.
func (l *listener) next() []byte {
	l.t.Helper()
	select {
	case d := <-l.got:
		return d
	case <-time.After(wait):
		l.t.Fatal("no datagram received")
		return nil
	}
}

// expect checks that the next datagrams are exactly want, in order.
func (l *listener) expect(want ...[]byte) {
	l.t.Helper()
	for i, w := range want {
		if got := l.next(); !bytes.Equal(got, w) {
			l.t.Fatalf("datagram %d: got %d bytes (%+v), want the %d bytes sent, byte for byte", i, len(got), header(got), len(w))
		}
	}
}

// expectAll checks that the next len(want) datagrams are want, in any
// order (a datagram's repeat may come after the next datagram).
func (l *listener) expectAll(want ...[]byte) {
	l.t.Helper()
	left := map[string]int{}
	for _, w := range want {
		left[string(w)]++
	}
	for range want {
		got := l.next()
		if left[string(got)] == 0 {
			l.t.Fatalf("got a datagram not sent, or too often: %d bytes (%+v)", len(got), header(got))
		}
		left[string(got)]--
	}
}

func header(b []byte) wire.Header {
	e, err := wire.Decode(b)
	if err != nil {
		return wire.Header{}
	}
	return e.Header
}

func (f *fixture) agent(t *testing.T, id string) api.AgentInfo {
	t.Helper()
	as, err := f.ts.Admin().Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("agent %s not listed by the server (%d agents)", id, len(as))
	return api.AgentInfo{}
}

func readState(t *testing.T, dir string) relay.State {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, relay.FileState))
	if err != nil {
		t.Fatal(err)
	}
	var st relay.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestEnrollsAndReusesItsCredential(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	cfg := f.relayConfig(dir, servertest.RandomPort())
	rn := start(t, cfg)
	rn.await(t, "enrollment", kindIs(relay.EventEnrolled))
	c := f.conn()
	st := rn.State()
	if st.AgentID == "" || c.auth != "Bearer "+st.Token {
		t.Fatalf("stream opened with Authorization %q; the relay enrolled as %q", c.auth, st.AgentID)
	}
	if c.after != f.ts.LatestSeq() {
		t.Errorf("a new relay opened the stream after %d, want the server's latest %d (no history)", c.after, f.ts.LatestSeq())
	}
	fi, err := os.Stat(filepath.Join(dir, relay.FileState))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600: it holds the credential", relay.FileState, fi.Mode().Perm())
	}
	if got := readState(t, dir); got.AgentID != st.AgentID || got.Token != st.Token || got.Epoch != f.ts.Epoch() {
		t.Errorf("state file %+v, want the relay's identity %s in epoch %d", got, st.AgentID, f.ts.Epoch())
	}
	// It checks in: the server lists it with its groups and host name.
	rn.await(t, "check-in", kindIs(relay.EventCheckIn))
	a := f.agent(t, st.AgentID)
	if a.Hostname != "relay-b" || len(a.Groups) != 1 || a.Groups[0] != config.DefaultRelayGroupName || a.LastCheckIn.IsZero() {
		t.Errorf("server lists the relay as %+v", a)
	}
	rn.stop(t)

	// A restart reuses the credential: no enrollment, the same identity.
	rn2 := start(t, cfg)
	c2 := f.conn()
	if c2.auth != "Bearer "+st.Token {
		t.Errorf("restarted relay presented %q, want its stored credential", c2.auth)
	}
	rn2.await(t, "check-in", kindIs(relay.EventCheckIn))
	as, err := f.ts.Admin().Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 {
		t.Errorf("the server has %d agents after a restart, want the relay alone", len(as))
	}
	for len(rn2.events) > 0 {
		if e := <-rn2.events; e.Kind == relay.EventEnrolled {
			t.Error("the restarted relay enrolled again")
		}
	}
}

func TestEnrollRefusesWrongKey(t *testing.T) {
	f := newFixture(t)
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	cfg.ServerKey = servertestKey(pub)
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "-server-key does not match") {
		t.Fatalf("Run with another key: %v, want a refusal naming -server-key", err)
	}
	if _, serr := os.Stat(filepath.Join(cfg.StateDir, relay.FileState)); serr == nil {
		t.Error("a refused enrollment left a state file")
	}
}

func TestRelaysVerbatim(t *testing.T) {
	f := newFixture(t)
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	l := listen(t, cfg)
	rn := start(t, cfg)
	c := f.conn()

	cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	big := f.issue(ping(command.Target{Agents: manyAgents(40)}))
	ref, err := wire.Announcement(f.priv, big.env)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := wire.Decode(ref); h.Kind != wire.KindRef {
		t.Fatalf("a %d-byte command is announced as %s, want a reference", len(big.env), h.Kind)
	}
	b := f.beacon(big.seq)
	c.frames <- cmd.env
	l.expect(cmd.env, cmd.env) // Repeat 2
	c.frames <- ref
	l.expect(ref, ref)
	c.frames <- b
	l.expect(b) // beacons once
	rn.await(t, "the beacon relayed", func(e relay.Event) bool { return e.Kind == relay.EventRelayed && e.Datum == wire.KindBeacon })

	reg := rn.Registry()
	for kind, want := range map[string]float64{"command": 2, "ref": 2, "beacon": 1} {
		if got := metric(t, reg, "vigil_relay_datagrams_relayed_total", "kind", kind); got != want {
			t.Errorf("relayed{kind=%s} = %v, want %v", kind, got, want)
		}
	}
	if got := rn.State().LastSeq; got != big.seq {
		t.Errorf("last relayed sequence %d, want %d (the beacon's does not count)", got, big.seq)
	}
	if got := metric(t, reg, "vigil_relay_last_seq", "", ""); got != float64(big.seq) {
		t.Errorf("vigil_relay_last_seq = %v, want %d", got, big.seq)
	}
	if got := metric(t, reg, "vigil_relay_stream_connected", "", ""); got != 1 {
		t.Errorf("vigil_relay_stream_connected = %v while the stream is open", got)
	}
	if lag := metric(t, reg, "vigil_relay_stream_lag_seconds", "", ""); lag < 0 || lag > 10 {
		t.Errorf("vigil_relay_stream_lag_seconds = %v", lag)
	}
}

func manyAgents(n int) []string {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("agent-%02d-%s", i, strings.Repeat("x", 50)))
	}
	return ids
}

func TestDropsWhatDoesNotVerify(t *testing.T) {
	f := newFixture(t)
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	l := listen(t, cfg)
	rn := start(t, cfg)
	c := f.conn()

	// Expired: a real command for the relay that expired before it came.
	expired := f.issueTTL(ping(command.Target{Groups: []string{config.DefaultRelayGroupName}}), -time.Minute)
	good := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	// Forged: signed by another key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	forged, err := wire.Sign(other, wire.Header{Kind: wire.KindCommand, Epoch: f.ts.Epoch(), Seq: good.seq + 1, Issued: now, Expires: now.Add(time.Hour)}, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	// Forged under the server's key id.
	impostor := bytes.Clone(forged)
	kid := wire.KeyID(f.ts.PublicKey())
	copy(impostor[6:14], kid[:])
	// Altered: one bit of a real command's body flipped.
	altered := bytes.Clone(good.env)
	altered[wire.HeaderSize+3] ^= 0x01
	garbage := []byte("not a Vigil envelope at all")

	for _, d := range [][]byte{forged, impostor, altered, expired.env, garbage} {
		c.frames <- d
	}
	c.frames <- good.env
	// Only the good datagram reaches the subnet, first and twice.
	l.expect(good.env, good.env)

	reg := rn.Registry()
	for reason, want := range map[string]float64{relay.DropWrongKey: 1, relay.DropBadSig: 2, relay.DropExpired: 1, relay.DropMalformed: 1} {
		if got := metric(t, reg, "vigil_relay_datagrams_dropped_total", "reason", reason); got != want {
			t.Errorf("dropped{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// The expired command is not multicast, but it is answered: a relay
	// runs nothing, expired or not, and the command's progress completes.
	if e := rn.await(t, "an answer", kindIs(relay.EventAnswered)); e.Seq != expired.seq {
		t.Errorf("answered %d, want the expired command %d", e.Seq, expired.seq)
	}
	// A beacon after them: once it is relayed, so is all before it.
	b := f.beacon(good.seq)
	c.frames <- b
	l.expect(b)
	rn.await(t, "the beacon relayed", func(e relay.Event) bool { return e.Kind == relay.EventRelayed && e.Datum == wire.KindBeacon })
	if got := rn.State().LastSeq; got != good.seq {
		t.Errorf("last relayed %d, want %d", got, good.seq)
	}
	select {
	case d := <-l.got:
		t.Errorf("an extra datagram was multicast: %+v", header(d))
	default:
	}
}

func TestReconnectResumesAndStateSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	cfg := f.relayConfig(dir, servertest.RandomPort())
	l := listen(t, cfg)
	rn := start(t, cfg)
	c := f.conn()
	start0 := c.after

	var last uint64
	for range 3 {
		cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
		c.frames <- cmd.env
		l.expect(cmd.env, cmd.env)
		last = cmd.seq
	}
	if last != start0+3 {
		t.Fatalf("issued up to %d after %d", last, start0)
	}
	// A beacon with a later sequence does not move where it resumes.
	c.frames <- f.beacon(last + 5)
	l.next()
	close(c.cut) // the server drops the connection
	c2 := f.conn()
	if c2.after != last {
		t.Fatalf("the relay reconnected after %d, want %d (the last command relayed)", c2.after, last)
	}
	if got := metric(t, rn.Registry(), "vigil_relay_stream_reconnects_total", "", ""); got != 1 {
		t.Errorf("reconnects = %v, want 1", got)
	}
	cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	c2.frames <- cmd.env
	l.expect(cmd.env, cmd.env)
	rn.stop(t)
	if st := readState(t, dir); st.LastSeq != cmd.seq {
		t.Fatalf("state file holds last %d after a stop, want %d", st.LastSeq, cmd.seq)
	}

	// The restarted relay resumes where it stopped.
	start(t, cfg)
	if c3 := f.conn(); c3.after != cmd.seq {
		t.Fatalf("the restarted relay opened the stream after %d, want %d", c3.after, cmd.seq)
	}
}

func TestAnswersCommandsThatTargetIt(t *testing.T) {
	f := newFixture(t)
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	l := listen(t, cfg)
	rn := start(t, cfg)
	c := f.conn()
	id := rn.State().AgentID

	byGroup := f.issue(ping(command.Target{Groups: []string{config.DefaultRelayGroupName}}))
	notMine := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	byID := f.issue(ping(command.Target{Agents: append(manyAgents(40), id)})) // large: announced by reference
	ref, err := wire.Announcement(f.priv, byID.env)
	if err != nil {
		t.Fatal(err)
	}
	c.frames <- byGroup.env
	c.frames <- notMine.env
	c.frames <- ref
	l.expectAll(byGroup.env, byGroup.env, notMine.env, notMine.env, ref, ref)

	answered := map[uint64]bool{}
	for len(answered) < 2 {
		e := rn.await(t, "an answer", kindIs(relay.EventAnswered))
		answered[e.Seq] = true
	}
	if !answered[byGroup.seq] || !answered[byID.seq] {
		t.Fatalf("answered %v, want %d (by group) and %d (by id, by reference)", answered, byGroup.seq, byID.seq)
	}
	for _, seq := range []uint64{byGroup.seq, byID.seq} {
		res, err := f.ts.Admin().CommandResults(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range res.Results {
			if r.AgentID == id {
				found = true
				if r.Status != command.StatusUnsupported || r.Output != relay.Output {
					t.Errorf("command %d: the relay's result is %s %q, want %s %q", seq, r.Status, r.Output, command.StatusUnsupported, relay.Output)
				}
			}
		}
		if !found {
			t.Errorf("command %d: the server has no result from the relay: %+v", seq, res.Results)
		}
	}
	res, err := f.ts.Admin().CommandResults(context.Background(), notMine.seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.AgentID == id && r.Status != "" && !r.ExecutedAt.IsZero() {
			t.Errorf("the relay answered a command not for it: %+v", r)
		}
	}
}

// TestFollowsANewEpoch: the server moves to a new epoch (an agent proves
// it lost commands, as after a restore); the first datagram signed in it
// makes the relay check in, follow the signed statement and reopen the
// stream where the new epoch starts.
func TestFollowsANewEpoch(t *testing.T) {
	f := newFixture(t)
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	l := listen(t, cfg)
	rn := start(t, cfg)
	c := f.conn()
	for range 3 {
		cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
		c.frames <- cmd.env
		l.expect(cmd.env, cmd.env)
	}
	relayed := rn.State().LastSeq
	old := f.ts.Epoch()

	// An agent ahead of the server moves it to a new epoch.
	ac := f.ts.AgentClient("")
	er, err := ac.Enroll(context.Background(), api.EnrollRequest{Secret: f.ts.EnrollSecret(), Nonce: strings.Repeat("ab", 16), Hostname: "ahead", OS: "linux", Arch: "amd64", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ac.Auth = er.Token
	if _, err := ac.CheckIn(context.Background(), api.CheckInRequest{Epoch: er.Epoch, Hostname: "ahead", OS: "linux", Arch: "amd64", Version: "test", LastSeq: relayed + 100}); err != nil {
		t.Fatal(err)
	}
	if f.ts.Epoch() == old {
		t.Fatal("the server did not move to a new epoch")
	}
	b := f.beacon(f.ts.LatestSeq()) // signed in the new epoch
	c.frames <- b
	l.expect(b) // passed on: agents judge it by their own epoch
	e := rn.await(t, "the relay following the new epoch", kindIs(relay.EventEpoch))
	c2 := f.conn()
	if c2.after != e.Seq {
		t.Fatalf("after the epoch change the stream reopened after %d, want %d (the statement's)", c2.after, e.Seq)
	}
	if st := rn.State(); st.Epoch != f.ts.Epoch() || st.LastSeq != e.Seq {
		t.Fatalf("relay state %+v, want epoch %d after %d", st, f.ts.Epoch(), e.Seq)
	}
	// A datagram of the epoch it left is dropped.
	stale, err := wire.Sign(f.priv, wire.Header{Kind: wire.KindBeacon, Epoch: old, Seq: 1, Issued: time.Now().Add(-time.Hour), Expires: time.Now().Add(time.Minute)},
		wire.EncodeBeacon(wire.Beacon{IntervalMillis: 30_000}))
	if err != nil {
		t.Fatal(err)
	}
	c2.frames <- stale
	rn.await(t, "the stale datagram dropped", func(e relay.Event) bool { return e.Kind == relay.EventDropped && e.Reason == relay.DropOldEpoch })
	// And a command of the new epoch goes through.
	cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	c2.frames <- cmd.env
	l.expect(cmd.env, cmd.env)
}

func servertestKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// metric returns the value of the metric name (with label=value, when
// label is set) in reg.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// fastCheckIns is a server that tells agents to check in every second.
func fastCheckIns() server.Config {
	cfg := server.Config{Server: config.DefaultServer()}
	cfg.CheckInInterval, cfg.Spread = time.Second, 100*time.Millisecond
	cfg.Listen, cfg.AdminListen, cfg.DataDir, cfg.Port = "", "", "", 0
	return cfg
}

// A server that no longer knows the relay's credential refuses its
// check-ins; after five refusals in a row the relay enrolls again, and
// resumes the stream with its new credential where it was.
func TestEnrollsAgainAfterRepeatedRefusals(t *testing.T) {
	f := newFixtureWith(t, fastCheckIns())
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	l := listen(t, cfg)
	rn := start(t, cfg)
	rn.await(t, "enrollment", kindIs(relay.EventEnrolled))
	c := f.conn()
	cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	c.frames <- cmd.env
	l.expect(cmd.env, cmd.env)
	old := rn.State()
	if err := f.ts.Admin().RemoveAgent(context.Background(), old.AgentID); err != nil {
		t.Fatal(err)
	}
	e := rn.await(t, "a second enrollment", kindIs(relay.EventEnrolled))
	st := rn.State()
	if st.AgentID == old.AgentID || st.Token == old.Token {
		t.Fatalf("enrolled again as %s, the identity the server forgot", st.AgentID)
	}
	if e.Seq != cmd.seq {
		t.Errorf("after enrolling again in the same epoch it starts after %d, want %d (where it was)", e.Seq, cmd.seq)
	}
	c2 := f.conn()
	if c2.auth != "Bearer "+st.Token || c2.after != cmd.seq {
		t.Errorf("stream reopened with %q after %d; want the new credential, after %d", c2.auth, c2.after, cmd.seq)
	}
}

// A revoked relay stops, saying so.
func TestStopsWhenRevoked(t *testing.T) {
	f := newFixtureWith(t, fastCheckIns())
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	f.conn()
	if _, err := f.ts.Admin().RevokeAgent(context.Background(), r.State().AgentID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("Run after revocation: %v, want an error saying it was revoked", err)
		}
	case <-time.After(wait):
		t.Fatal("a revoked relay kept running")
	}
}

// A stream that goes silent for three beacon intervals is taken for dead
// and reopened; the metrics say so, on MetricsListen.
func TestReopensASilentStream(t *testing.T) {
	f := newFixture(t)
	cfg := f.relayConfig(t.TempDir(), servertest.RandomPort())
	cfg.MetricsListen = testenv.ClosedAddr(t)
	l := listen(t, cfg)
	start(t, cfg)
	c := f.conn()
	cmd := f.issue(ping(command.Target{Groups: []string{"lab-b"}}))
	c.frames <- cmd.env
	l.expect(cmd.env, cmd.env)
	b := f.sign(wire.KindBeacon, cmd.seq, wire.EncodeBeacon(wire.Beacon{IntervalMillis: 100}), time.Minute)
	c.frames <- b
	l.expect(b)
	// Nothing more: the connection stays open, the relay gives up on it.
	c2 := f.conn()
	if c2.after != cmd.seq {
		t.Fatalf("reopened after %d, want %d", c2.after, cmd.seq)
	}
	resp, err := http.Get("http://" + cfg.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"vigil_relay_stream_reconnects_total 1",
		fmt.Sprintf("vigil_relay_last_seq %d", cmd.seq),
		`vigil_relay_datagrams_relayed_total{kind="command"} 2`,
		`vigil_relay_datagrams_relayed_total{kind="beacon"} 1`,
		`vigil_relay_datagrams_dropped_total{reason="bad_signature"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// Two relays cannot share a state directory.
func TestStateDirIsLocked(t *testing.T) {
	rc := config.DefaultRelay()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	rc.Server, rc.ServerKey, rc.StateDir = "http://127.0.0.1:1/vigil", servertestKey(pub), t.TempDir()
	rc.Interface, rc.TTL, rc.Port = testenv.Loopback(t), 0, servertest.RandomPort()
	r1, err := relay.New(relay.Config{Relay: rc})
	if err != nil {
		t.Fatal(err)
	}
	if r2, err := relay.New(relay.Config{Relay: rc}); err == nil {
		r2.Close()
		t.Fatal("a second relay opened a state directory in use")
	} else if !strings.Contains(err.Error(), "only one relay may run on a state directory") || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("second relay: %v, want an error naming the holder's PID", err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	r3, err := relay.New(relay.Config{Relay: rc})
	if err != nil {
		t.Fatalf("after the first relay closed: %v", err)
	}
	r3.Close()
}
