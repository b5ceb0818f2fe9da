package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testcert"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// streamWait bounds every wait of these tests on a relay stream: a
// stream that does not deliver fails the test then, rather than hanging it.
const streamWait = 20 * time.Second

// openStream opens the relay stream after seq with credential token at
// the agent API base; it is closed when the test ends, and reading it
// fails once streamWait has passed.
func openStream(t testing.TB, base, token string, after uint64) *api.DatagramStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	c := &api.AgentClient{Client: api.Client{Base: base, Auth: token}}
	s, err := c.RelayStream(ctx, after)
	if err != nil {
		cancel()
		t.Fatalf("opening the relay stream after %d: %v", after, err)
	}
	t.Cleanup(func() {
		s.Close()
		cancel()
	})
	return s
}

// nextDatagram returns the stream's next datagram (a copy) and its
// envelope, verified under pub at the time it was issued (a beacon of a
// short interval may have expired since on a loaded machine; its
// signature is what is checked).
func nextDatagram(t testing.TB, s *api.DatagramStream, pub ed25519.PublicKey) ([]byte, *wire.Envelope) {
	t.Helper()
	d, err := s.Next()
	if err != nil {
		t.Fatalf("reading the relay stream: %v", err)
	}
	d = bytes.Clone(d)
	e, err := wire.Decode(d)
	if err != nil {
		t.Fatalf("a datagram of the stream does not decode: %v", err)
	}
	if e, err = wire.Verify(d, pub, e.Issued); err != nil {
		t.Fatalf("a datagram of the stream does not verify under the server's key: %v", err)
	}
	return d, e
}

// expectEnd waits until the stream ends cleanly, between frames.
func expectEnd(t *testing.T, s *api.DatagramStream, pub ed25519.PublicKey) {
	t.Helper()
	for {
		d, err := s.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("the stream failed instead of ending: %v", err)
		}
		if e, err := wire.Decode(d); err != nil || e.Kind != wire.KindBeacon {
			t.Fatalf("a datagram (%v, %v) where the stream should end", e, err)
		}
	}
}

// receiveAnnouncement returns the next command or reference datagram the
// fixture's multicast receiver hears, as it came.
func (f *fixture) receiveAnnouncement(t *testing.T) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	for {
		timer := time.AfterFunc(streamWait, func() { f.rcv.Close() })
		n, _, err := f.rcv.Receive(buf)
		timer.Stop()
		if err != nil {
			t.Fatalf("no datagram on the multicast group: %v", err)
		}
		e, err := wire.Decode(buf[:n])
		if err != nil {
			t.Fatalf("a multicast datagram does not decode: %v", err)
		}
		if e.Kind == wire.KindCommand || e.Kind == wire.KindRef {
			return bytes.Clone(buf[:n])
		}
	}
}

func (f *fixture) issue(t *testing.T, ttl time.Duration, agents ...string) store.Command {
	t.Helper()
	target := command.Target{All: len(agents) == 0, Agents: agents}
	c, err := f.srv.Issue(context.Background(), command.Command{Name: "ping", Target: target}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// metric returns the value of one line of the server's /metrics ("" if
// there is none).
func (f *fixture) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get(f.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestRelayStream: the stream carries the announcement of every stored,
// unexpired command after its position, in order, byte for byte what the
// server multicasts (a reference for a command too large for a
// datagram), then a beacon, then each new command as it is issued; a
// stream resumed after a sequence carries only the later ones; a new
// stream of the same agent ends the one before.
func TestRelayStream(t *testing.T) {
	f := newFixture(t)
	en := f.enroll(t)
	pub := f.srv.PublicKey()
	base := f.agentBase + "/vigil"

	many := make([]string, 100) // a target too large for a datagram
	for i := range many {
		many[i] = strings.Repeat("0", 14) + string(rune('a'+i/26)) + string(rune('a'+i%26))
	}
	cmds := []store.Command{f.issue(t, time.Hour), f.issue(t, time.Hour, many...), f.issue(t, time.Hour)}
	var mc [][]byte // what the multicast group heard
	for range cmds {
		mc = append(mc, f.receiveAnnouncement(t))
	}
	expired := f.issue(t, time.Microsecond) // every agent would drop it
	f.receiveAnnouncement(t)

	s := openStream(t, base, en.Token, 0)
	kinds := []wire.Kind{wire.KindCommand, wire.KindRef, wire.KindCommand}
	for i, c := range cmds {
		d, e := nextDatagram(t, s, pub)
		if e.Kind != kinds[i] || e.Seq != c.Seq || e.Epoch != f.srv.Epoch() {
			t.Fatalf("datagram %d: %v seq %d epoch %d, want %v seq %d epoch %d", i, e.Kind, e.Seq, e.Epoch, kinds[i], c.Seq, f.srv.Epoch())
		}
		if !bytes.Equal(d, mc[i]) {
			t.Fatalf("datagram %d (seq %d) differs from the one multicast", i, c.Seq)
		}
	}
	if _, e := nextDatagram(t, s, pub); e.Kind != wire.KindBeacon || e.Seq != expired.Seq {
		t.Fatalf("after the stored commands: %v seq %d, want a beacon of seq %d (the expired command passed over)", e.Kind, e.Seq, expired.Seq)
	}

	// Issued while the stream is open: it arrives as multicast.
	later := f.issue(t, time.Hour)
	d, e := nextDatagram(t, s, pub)
	if e.Kind != wire.KindCommand || e.Seq != later.Seq || !bytes.Equal(d, f.receiveAnnouncement(t)) {
		t.Fatalf("command issued on an open stream: %v seq %d, want seq %d as multicast", e.Kind, e.Seq, later.Seq)
	}

	// Resumed after the second command, by the same agent: the first
	// stream ends, the new one carries the third and the later command.
	s2 := openStream(t, base, en.Token, cmds[1].Seq)
	expectEnd(t, s, pub)
	for _, want := range []uint64{cmds[2].Seq, later.Seq} {
		if _, e := nextDatagram(t, s2, pub); e.Kind != wire.KindCommand || e.Seq != want {
			t.Fatalf("resumed stream: %v seq %d, want command %d", e.Kind, e.Seq, want)
		}
	}
	if _, e := nextDatagram(t, s2, pub); e.Kind != wire.KindBeacon || e.Seq != later.Seq {
		t.Fatalf("resumed stream: %v seq %d, want a beacon of seq %d", e.Kind, e.Seq, later.Seq)
	}

	for name, want := range map[string]string{
		"vigil_server_relay_streams":                              "1",
		`vigil_server_relay_datagrams_sent_total{kind="command"}`: "5",
		`vigil_server_relay_datagrams_sent_total{kind="ref"}`:     "1",
		`vigil_server_relay_datagrams_sent_total{kind="beacon"}`:  "2",
	} {
		if got := f.metric(t, name); got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
}

// TestRelayStreamAfterBeyondLatest: a position beyond the server's latest
// sequence (the server lost commands the relay had passed on: a restored
// data directory) starts the stream at the latest, so that the commands
// issued next, which reuse those numbers, are passed on.
func TestRelayStreamAfterBeyondLatest(t *testing.T) {
	f := newFixture(t)
	en := f.enroll(t)
	first := f.issue(t, time.Hour)
	s := openStream(t, f.agentBase+"/vigil", en.Token, first.Seq+1000)
	if _, e := nextDatagram(t, s, f.srv.PublicKey()); e.Kind != wire.KindBeacon || e.Seq != first.Seq {
		t.Fatalf("%v seq %d, want a beacon of seq %d", e.Kind, e.Seq, first.Seq)
	}
	next := f.issue(t, time.Hour)
	if _, e := nextDatagram(t, s, f.srv.PublicKey()); e.Kind != wire.KindCommand || e.Seq != next.Seq {
		t.Fatalf("%v seq %d, want command %d", e.Kind, e.Seq, next.Seq)
	}
}

// TestRelayStreamBeacons: a stream carries a freshly signed beacon every
// beacon interval, with the latest sequence.
func TestRelayStreamBeacons(t *testing.T) {
	f := newFixtureAt(t, t.TempDir(), func(c *server.Config) { c.BeaconInterval = 20 * time.Millisecond })
	en := f.enroll(t)
	c := f.issue(t, time.Hour)
	s := openStream(t, f.agentBase+"/vigil", en.Token, c.Seq)
	var last time.Time
	for i := range 5 {
		_, e := nextDatagram(t, s, f.srv.PublicKey())
		if e.Kind != wire.KindBeacon || e.Seq != c.Seq || e.Epoch != f.srv.Epoch() {
			t.Fatalf("datagram %d: %v seq %d epoch %d, want a beacon of seq %d", i, e.Kind, e.Seq, e.Epoch, c.Seq)
		}
		if !e.Issued.After(last) {
			t.Fatalf("beacon %d issued %v, not after the one before (%v): not signed afresh", i, e.Issued, last)
		}
		if d := e.Expires.Sub(e.Issued); d != 60*time.Millisecond {
			t.Errorf("beacon %d valid for %v, want three intervals", i, d)
		}
		last = e.Issued
	}
}

// TestRelayStreamRefused: a bad position is 400; a missing or wrong
// credential 401; a revoked agent's 403 (reason revoked), and revoking or
// removing an agent ends its open stream.
func TestRelayStreamRefused(t *testing.T) {
	f := newFixture(t)
	en, other, gone := f.enroll(t), f.enroll(t), f.enroll(t)
	base := f.agentBase + "/vigil"
	get := func(token, after string) (int, string) {
		t.Helper()
		u := api.RouteRelayStream.URL(base, url.Values{"after": {after}})
		if after == "none" {
			u = api.RouteRelayStream.URL(base, nil)
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, after := range []string{"none", "", "x", "-1", "1.5", "18446744073709551616"} {
		if code, body := get(en.Token, after); code != http.StatusBadRequest || !strings.Contains(body, "after") {
			t.Errorf("after=%q: %d %s, want 400 naming after", after, code, body)
		}
	}
	if code, _ := get("", "0"); code != http.StatusUnauthorized {
		t.Errorf("no credential: %d, want 401", code)
	}
	if code, _ := get(en.AgentID+".wrong", "0"); code != http.StatusUnauthorized {
		t.Errorf("wrong credential: %d, want 401", code)
	}

	s := openStream(t, base, other.Token, 0)
	s2 := openStream(t, base, gone.Token, 0)
	for _, st := range []*api.DatagramStream{s, s2} {
		if _, e := nextDatagram(t, st, f.srv.PublicKey()); e.Kind != wire.KindBeacon {
			t.Fatalf("first datagram of an empty log: %v, want a beacon", e.Kind)
		}
	}
	if _, err := f.admin().RevokeAgent(context.Background(), other.AgentID); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, s, f.srv.PublicKey())
	if err := f.admin().RemoveAgent(context.Background(), gone.AgentID); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, s2, f.srv.PublicKey())
	c := &api.AgentClient{Client: api.Client{Base: base, Auth: other.Token}}
	_, err := c.RelayStream(context.Background(), 0)
	var he *api.HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusForbidden || he.Reason != api.ReasonRevoked {
		t.Errorf("revoked agent: %v, want 403 with reason %q", err, api.ReasonRevoked)
	}
	if code, _ := get(gone.Token, "0"); code != http.StatusUnauthorized {
		t.Errorf("removed agent: %d, want 401", code)
	}
}

// enrollAt enrolls an agent with the agent API at base and returns its
// credential.
func enrollAt(t testing.TB, base, secret string) string {
	t.Helper()
	c := &api.AgentClient{Client: api.Client{Base: base}}
	r, err := c.Enroll(context.Background(), api.EnrollRequest{
		Secret: secret, Nonce: newNonce(), Hostname: "relay1", OS: "linux", Arch: "amd64", Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Token
}

// waitDone waits for done, failing the test after streamWait.
func waitDone(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(streamWait):
		t.Fatalf("%s did not return within %v", what, streamWait)
	}
}

// TestRelayStreamEndsOnShutdown: stopping Serve (http.Server.Shutdown,
// which waits for requests to end) ends open streams cleanly rather than
// waiting for them, before the server is closed.
func TestRelayStreamEndsOnShutdown(t *testing.T) {
	srv := newBareServer(t, time.Hour)
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, agentLn, adminLn) }()
	base := "http://" + agentLn.Addr().String() + "/vigil"
	s := openStream(t, base, enrollAt(t, base, srv.EnrollSecret()), 0)
	if _, e := nextDatagram(t, s, srv.PublicKey()); e.Kind != wire.KindBeacon {
		t.Fatalf("first datagram: %v, want a beacon", e.Kind)
	}
	cancel()
	// Not closed yet: only Serve's shutdown can end the stream.
	expectEnd(t, s, srv.PublicKey())
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(streamWait):
		t.Fatal("Serve did not return")
	}
}

// newBareServer creates a server with its SQLite store, multicasting on
// the loopback interface with TTL 0, that the caller serves.
func newBareServer(t *testing.T, beacon time.Duration) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Interface, cfg.TTL, cfg.Port = t.TempDir(), testenv.Loopback(t), 0, servertest.RandomPort()
	cfg.BeaconInterval = beacon
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := server.New(cfg, func(p string) (store.Store, error) { return sqlite.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRelayStreamEndsOnClose: Server.Close with a stream open on a
// handler served by another http.Server returns promptly, and the stream
// ends cleanly.
func TestRelayStreamEndsOnClose(t *testing.T) {
	srv := newBareServer(t, time.Hour)
	hs := httptest.NewServer(srv.AgentHandler())
	defer hs.Close()
	base := hs.URL + "/vigil"
	s := openStream(t, base, enrollAt(t, base, srv.EnrollSecret()), 0)
	if _, e := nextDatagram(t, s, srv.PublicKey()); e.Kind != wire.KindBeacon {
		t.Fatalf("first datagram: %v, want a beacon", e.Kind)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Close()
	}()
	expectEnd(t, s, srv.PublicKey())
	waitDone(t, "Close", done)
	// A stream asked for after Close is refused.
	c := &api.AgentClient{Client: api.Client{Base: base, Auth: "x.y"}}
	if _, err := c.RelayStream(context.Background(), 0); err == nil {
		t.Fatal("a stream opened after Close")
	}
}

// TestRelayStreamOutlivesServerTimeouts: a stream lasts longer than the
// agent listener's ReadTimeout and WriteTimeout (Serve sets both), which
// bound ordinary requests.
func TestRelayStreamOutlivesServerTimeouts(t *testing.T) {
	const timeout = 100 * time.Millisecond
	srv := newBareServer(t, 20*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.AgentHandler(), ReadTimeout: timeout, WriteTimeout: timeout}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String() + "/vigil"
	s := openStream(t, base, enrollAt(t, base, srv.EnrollSecret()), 0)
	// 25 beacons 20ms apart span at least 480ms, several timeouts.
	_, first := nextDatagram(t, s, srv.PublicKey())
	var e *wire.Envelope
	for range 24 {
		if _, e = nextDatagram(t, s, srv.PublicKey()); e.Kind != wire.KindBeacon {
			t.Fatalf("%v, want a beacon", e.Kind)
		}
	}
	if d := e.Issued.Sub(first.Issued); d < 3*timeout {
		t.Fatalf("the beacons spanned %v only", d)
	}
}

// TestRelayStreamSharedStore: a command issued by another instance
// sharing the PostgreSQL store reaches a stream held on this one as soon
// as this one hears of it.
func TestRelayStreamSharedStore(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	cfg := server.Config{Server: config.Server{Store: config.StoreDSN(dsn), BeaconInterval: time.Hour}}
	a, b := servertest.Start(t, cfg), servertest.Start(t, cfg)
	s := openStream(t, a.URL, enrollAt(t, a.URL, a.EnrollSecret()), 0)
	if _, e := nextDatagram(t, s, a.PublicKey()); e.Kind != wire.KindBeacon {
		t.Fatalf("first datagram: %v, want a beacon", e.Kind)
	}
	for range 3 {
		c, err := b.Issue(context.Background(), command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Signed by b (each instance has its data directory's key here);
		// a small envelope is its own announcement.
		d, e := nextDatagram(t, s, b.PublicKey())
		if e.Kind != wire.KindCommand || e.Seq != c.Seq || !bytes.Equal(d, c.Envelope) {
			t.Fatalf("%v seq %d, want b's command %d verbatim", e.Kind, e.Seq, c.Seq)
		}
	}
}

// TestRelayStreamHTTP2: over HTTPS the stream is served over HTTP/2: it
// carries beacons and commands as over HTTP/1.1 (flushes and write
// deadlines reach the HTTP/2 stream) and ends cleanly when the server
// stops.
func TestRelayStreamHTTP2(t *testing.T) {
	ca, cert, key := testcert.Write(t, t.TempDir())
	cfg := server.Config{Server: config.Server{BeaconInterval: 20 * time.Millisecond}}
	cfg.TLSCert, cfg.TLSKey = cert, key
	ts := servertest.Start(t, cfg)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	c := &api.AgentClient{Client: api.Client{Base: ts.URL, HTTP: hc}}
	en, err := c.Enroll(context.Background(), api.EnrollRequest{
		Secret: ts.EnrollSecret(), Nonce: newNonce(), Hostname: "relay1", OS: "linux", Arch: "amd64", Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The stream's request goes the way the enrollment's went.
	resp, err := hc.Get(api.RouteCommand.URL(ts.URL, nil, "1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", resp.Proto)
	}
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	c.Auth = en.Token
	s, err := c.RelayStream(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 5 {
		if _, e := nextDatagram(t, s, ts.PublicKey()); e.Kind != wire.KindBeacon {
			t.Fatalf("%v, want a beacon", e.Kind)
		}
	}
	cmd, err := ts.Issue(context.Background(), command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, e := nextDatagram(t, s, ts.PublicKey())
		if e.Kind == wire.KindBeacon {
			continue
		}
		if e.Kind != wire.KindCommand || !bytes.Equal(d, cmd.Envelope) {
			t.Fatalf("%v seq %d, want command %d verbatim", e.Kind, e.Seq, cmd.Seq)
		}
		break
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.Close()
	}()
	expectEnd(t, s, ts.PublicKey())
	waitDone(t, "stopping the server", done)
}

// BenchmarkRelayStreamFanout: issuing a command until every one of n
// open relay streams has delivered it (streams=0: issuing alone).
func BenchmarkRelayStreamFanout(b *testing.B) {
	for _, n := range []int{0, 1, 16, 64} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			ts := servertest.Start(b, server.Config{Server: config.Server{BeaconInterval: time.Hour, Repeat: 1}})
			streams := make([]*api.DatagramStream, n)
			for i := range streams {
				streams[i] = openStream(b, ts.URL, enrollAt(b, ts.URL, ts.EnrollSecret()), 0)
				nextDatagram(b, streams[i], ts.PublicKey()) // the first beacon
			}
			cmd := command.Command{Name: "ping", Target: command.Target{All: true}}
			b.ResetTimer()
			for range b.N {
				c, err := ts.Issue(context.Background(), cmd, time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range streams {
					// Decoded, not verified: the readers' work is not
					// the server's.
					d, err := s.Next()
					if err != nil {
						b.Fatal(err)
					}
					if e, err := wire.Decode(d); err != nil || e.Seq != c.Seq {
						b.Fatalf("%v, %v; want command %d", e, err, c.Seq)
					}
				}
			}
		})
	}
}

// TestRelayStreamAcrossEpochMove: when the server moves to a new epoch
// (an agent ahead of it proved it lost commands), an open stream goes on
// with the commands and beacons of the new epoch, signed in it.
func TestRelayStreamAcrossEpochMove(t *testing.T) {
	f := newFixtureAt(t, t.TempDir(), func(c *server.Config) { c.BeaconInterval = 20 * time.Millisecond })
	relay, ahead := f.enroll(t), f.enroll(t)
	first := f.issue(t, time.Hour)
	s := openStream(t, f.agentBase+"/vigil", relay.Token, 0)
	if _, e := nextDatagram(t, s, f.srv.PublicKey()); e.Seq != first.Seq {
		t.Fatalf("%v seq %d, want command %d", e.Kind, e.Seq, first.Seq)
	}
	old := f.srv.Epoch()
	ci, err := f.agentClient(ahead.Token).CheckIn(context.Background(), api.CheckInRequest{
		Epoch: old, Hostname: "h1", OS: "linux", LastSeq: first.Seq + 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ci.Epoch == old || f.srv.Epoch() != ci.Epoch {
		t.Fatalf("check-in ahead of the server: epoch %d, server %d; want a new one", ci.Epoch, f.srv.Epoch())
	}
	next := f.issue(t, time.Hour)
	for {
		_, e := nextDatagram(t, s, f.srv.PublicKey())
		if e.Kind == wire.KindBeacon && e.Epoch == old {
			continue // signed before the move
		}
		if e.Epoch != ci.Epoch {
			t.Fatalf("%v seq %d in epoch %d after the move to %d", e.Kind, e.Seq, e.Epoch, ci.Epoch)
		}
		if e.Kind == wire.KindCommand {
			if e.Seq != next.Seq {
				t.Fatalf("command %d, want %d", e.Seq, next.Seq)
			}
			break
		}
	}
	// And its beacons after it are of the new epoch.
	if _, e := nextDatagram(t, s, f.srv.PublicKey()); e.Kind != wire.KindBeacon || e.Epoch != ci.Epoch || e.Seq != next.Seq {
		t.Fatalf("%v seq %d epoch %d, want a beacon of seq %d in epoch %d", e.Kind, e.Seq, e.Epoch, next.Seq, ci.Epoch)
	}
}
