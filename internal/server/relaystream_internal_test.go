package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// logEvent is a log destination that closes fired once a line holding
// want is written, and keeps that line.
type logEvent struct {
	want  string
	fired chan struct{}
	once  sync.Once
	mu    sync.Mutex
	line  string
}

func (l *logEvent) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(l.want)) {
		l.once.Do(func() {
			l.mu.Lock()
			l.line = string(p)
			l.mu.Unlock()
			close(l.fired)
		})
	}
	return len(p), nil
}

// smallWriteBuffers accepts connections whose send buffer is small, so
// that a reader that stops reading holds up the writer after a few
// kilobytes rather than megabytes.
type smallWriteBuffers struct{ net.Listener }

func (l smallWriteBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}

// TestRelayStreamSlowReaderDropped: a reader that stops reading holds up
// neither issuing nor the server: once a batch of frames cannot be
// written within the write timeout the stream is dropped, the reader
// finds the stream cut (not ended), and resuming after the last sequence
// it had gets it the rest.
func TestRelayStreamSlowReaderDropped(t *testing.T) {
	ended := &logEvent{want: "relay stream ended", fired: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Interface, cfg.TTL, cfg.Port = t.TempDir(), testenv.Loopback(t), 0, 20000+int(time.Now().UnixNano()%30000)
	// Beacons fill the stalled connection: some 130 bytes every 2 ms.
	cfg.BeaconInterval = 2 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(ended, nil))
	s, err := New(cfg, func(p string) (store.Store, error) { return sqlite.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.relays.writeTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.AgentHandler()}
	go hs.Serve(smallWriteBuffers{ln})
	defer hs.Close()
	base := "http://" + ln.Addr().String() + "/vigil"
	// The client's receive buffer small too.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}}
	defer hc.CloseIdleConnections()
	c := &api.AgentClient{Client: api.Client{Base: base, HTTP: hc}}
	en, err := c.Enroll(t.Context(), api.EnrollRequest{
		Secret: s.EnrollSecret(), Nonce: strings.Repeat("ab", 16), Hostname: "relay1", OS: "linux", Arch: "amd64", Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Auth = en.Token
	issue := func() store.Command {
		t.Helper()
		cmd, err := s.Issue(t.Context(), command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	first := issue()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stalled, err := c.RelayStream(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// Not read: issuing goes on meanwhile.
	var later []store.Command
	for range 5 {
		later = append(later, issue())
	}
	select {
	case <-ended.fired:
	case <-ctx.Done():
		t.Fatal("the stalled stream was not dropped")
	}
	ended.mu.Lock()
	line := ended.line
	ended.mu.Unlock()
	if !strings.Contains(line, "timeout") {
		t.Errorf("the stream ended for another reason than the write timeout: %s", line)
	}
	// What was written before is there to read; then the body is cut.
	var last uint64
	for {
		d, err := stalled.Next()
		if err == io.EOF {
			t.Fatal("the dropped stream ended cleanly: the reader cannot tell it was cut")
		}
		if err != nil {
			break
		}
		if e, err := wire.Decode(d); err == nil && e.Kind == wire.KindCommand {
			last = e.Seq
		}
	}
	if last < first.Seq {
		t.Fatalf("the dropped stream did not deliver the first command (%d) before it stalled", first.Seq)
	}
	later = append(later, issue()) // after the drop: only a new stream has it

	// Resumed after the last command received: the rest, in order.
	resumed, err := c.RelayStream(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	for _, cmd := range later {
		if cmd.Seq <= last {
			continue
		}
		for {
			d, err := resumed.Next()
			if err != nil {
				t.Fatalf("resumed stream: %v", err)
			}
			e, err := wire.Decode(d)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind == wire.KindBeacon {
				continue
			}
			if e.Seq != cmd.Seq || !bytes.Equal(d, cmd.Envelope) {
				t.Fatalf("resumed stream: %v seq %d, want command %d", e.Kind, e.Seq, cmd.Seq)
			}
			break
		}
	}
}

// TestRelayStreamLimit: past the limit of open streams another agent's
// stream is refused with 503 and Retry-After; an agent that holds one
// may still open another, which ends the one before.
func TestRelayStreamLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Interface, cfg.TTL, cfg.Port = t.TempDir(), testenv.Loopback(t), 0, 20000+int(time.Now().UnixNano()%30000)
	cfg.BeaconInterval = time.Hour
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg, func(p string) (store.Store, error) { return sqlite.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.relays.max = 1
	hs := httptest.NewServer(s.AgentHandler())
	defer hs.Close()
	client := func(nonce string) *api.AgentClient {
		c := &api.AgentClient{Client: api.Client{Base: hs.URL + "/vigil"}}
		en, err := c.Enroll(t.Context(), api.EnrollRequest{
			Secret: s.EnrollSecret(), Nonce: strings.Repeat(nonce, 32), Hostname: "relay", OS: "linux", Arch: "amd64", Version: "test",
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Auth = en.Token
		return c
	}
	a, b := client("a"), client("b")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	first, err := a.RelayStream(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.Next(); err != nil { // the beacon: the stream is open
		t.Fatal(err)
	}

	_, err = b.RelayStream(ctx, 0)
	var he *api.HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusServiceUnavailable || !strings.Contains(he.Message, "too many relay streams") {
		t.Fatalf("a stream past the limit: %v, want 503 saying why", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.RouteRelayStream.URL(b.Base, url.Values{"after": {"0"}}), nil)
	req.Header.Set("Authorization", "Bearer "+b.Auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a stream past the limit: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}

	second, err := a.RelayStream(ctx, 0)
	if err != nil {
		t.Fatalf("the same agent's new stream at the limit: %v", err)
	}
	defer second.Close()
	if _, err := second.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Next(); err != io.EOF {
		t.Fatalf("the replaced stream: %v, want its end", err)
	}
}
