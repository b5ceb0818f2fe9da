package liveupdate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
)

// readAllTimeout reads c until EOF or d passes, and reports whether the
// server closed the connection first (EOF, or a reset when the client
// was still writing as it closed).
func readAllTimeout(c net.Conn, d time.Duration) (string, bool) {
	c.SetReadDeadline(time.Now().Add(d))
	data, err := io.ReadAll(c)
	if errors.Is(err, syscall.ECONNRESET) {
		return string(data), true
	}
	if err != nil {
		return string(data) + " [" + err.Error() + "]", false
	}
	return string(data), true
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFTPConnectionLimits(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) { c.MaxConns = 3; c.MaxConnsPerIP = -1 })
	var open []*rawFTP
	for range 3 {
		open = append(open, dialFTP(t, ts.ftp))
	}
	extra := dialFrom(t, "", ts.ftp)
	if got, closed := readAllTimeout(extra, 5*time.Second); !strings.HasPrefix(got, "421 ") || !closed {
		t.Errorf("4th connection: %q (closed %v), want 421 and close", got, closed)
	}
	open[0].expect(221, "QUIT")
	waitFor(t, "a free slot", func() bool { _, n := ts.connCounts(); return n == 2 })
	f := loginFTP(t, ts.ftp)
	f.expect(257, "PWD")
	if !ts.logHas(`"CONNECT" 421 0 ftp`) {
		t.Errorf("refusal not in the access log:\n%s", ts.accessLogText())
	}

	ts2 := startServer(t, r, func(c *Config) { c.MaxConns = 100; c.MaxConnsPerIP = 2 })
	dialFTP(t, ts2.ftp)
	dialFTP(t, ts2.ftp)
	extra = dialFrom(t, "", ts2.ftp)
	if got, closed := readAllTimeout(extra, 5*time.Second); !strings.HasPrefix(got, "421 ") || !closed {
		t.Errorf("3rd connection from one address: %q, want 421", got)
	}
	other := dialFrom(t, "127.0.0.2", ts2.ftp)
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := bufio.NewReader(other).ReadString('\n'); !strings.HasPrefix(line, "220 ") {
		t.Errorf("connection from another address: %q, want 220", line)
	}
}

func TestHTTPConnectionLimits(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) { c.MaxConns = 2; c.MaxConnsPerIP = -1 })
	// Two connections that have not sent a request are not idle: a third
	// is refused.
	dialFrom(t, "", ts.http)
	dialFrom(t, "", ts.http)
	waitFor(t, "two connections", func() bool { n, _ := ts.connCounts(); return n == 2 })
	extra := dialFrom(t, "", ts.http)
	got, closed := readAllTimeout(extra, 5*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") || !closed {
		t.Errorf("3rd connection: %q, want 503 and close", got)
	}

	// Keep-alive connections idle between requests make room instead.
	ts2 := startServer(t, r, func(c *Config) { c.MaxConns = 2; c.MaxConnsPerIP = -1 })
	for range 4 {
		c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + ts2.http + "/timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// c's connection stays open and idle.
	}
	if n, _ := ts2.connCounts(); n > 2 {
		t.Errorf("%d connections open, limit 2", n)
	}

	ts3 := startServer(t, r, func(c *Config) { c.MaxConns = 100; c.MaxConnsPerIP = 1 })
	dialFrom(t, "", ts3.http)
	waitFor(t, "one connection", func() bool { n, _ := ts3.connCounts(); return n == 1 })
	if got, _ := readAllTimeout(dialFrom(t, "", ts3.http), 5*time.Second); !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Errorf("2nd connection from one address: %q, want 503", got)
	}
	other := dialFrom(t, "127.0.0.2", ts3.http)
	io.WriteString(other, "GET /timestamp.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if got, _ := readAllTimeout(other, 5*time.Second); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("connection from another address: %q", got)
	}
}

func TestFTPTimeouts(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) {
		c.IdleTimeout = 300 * time.Millisecond
		c.ReadTimeout = 300 * time.Millisecond
	})
	// Idle before and after login.
	for _, login := range []bool{false, true} {
		var f *rawFTP
		if login {
			f = loginFTP(t, ts.ftp)
		} else {
			f = dialFTP(t, ts.ftp)
		}
		start := time.Now()
		got, closed := readAllTimeout(f.conn, 5*time.Second)
		if !strings.HasPrefix(got, "421 Idle timeout") || !closed || time.Since(start) > 3*time.Second {
			t.Errorf("idle control connection (login %v): %q, closed %v after %v", login, got, closed, time.Since(start))
		}
	}
	// Activity keeps a session open past the idle timeout.
	f := loginFTP(t, ts.ftp)
	for range 5 {
		time.Sleep(150 * time.Millisecond)
		f.expect(200, "NOOP")
	}
	// A command line that never ends.
	f = dialFTP(t, ts.ftp)
	start := time.Now()
	io.WriteString(f.conn, "USER anon")
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(f.conn, "y")
	}
	got, closed := readAllTimeout(f.conn, 5*time.Second)
	if !strings.HasPrefix(got, "421 Timeout reading command") || !closed || time.Since(start) > 3*time.Second {
		t.Errorf("slow command line: %q, closed %v after %v", got, closed, time.Since(start))
	}
	// A passive port nobody connects to.
	f = loginFTP(t, ts.ftp)
	f.expect(229, "EPSV")
	f.expect(150, "RETR timestamp.json")
	if code, _ := f.read(); code != 425 {
		t.Errorf("RETR without a data connection: %d, want 425", code)
	}
	waitFor(t, "sessions to end", func() bool { _, n := ts.connCounts(); return n == 0 })
}

func TestHTTPTimeouts(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) {
		c.IdleTimeout = 300 * time.Millisecond
		c.ReadTimeout = 300 * time.Millisecond
	})
	// Idle keep-alive connection.
	c := dialFrom(t, "", ts.http)
	io.WriteString(c, "GET /timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF || time.Since(start) > 3*time.Second {
		t.Errorf("idle keep-alive connection: %v after %v, want EOF", err, time.Since(start))
	}
	// A header that never ends.
	c = dialFrom(t, "", ts.http)
	start = time.Now()
	io.WriteString(c, "GET /timestamp.json HTTP/1.1\r\nHost: x\r\n")
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "X: y\r\n")
	}
	got, closed := readAllTimeout(c, 5*time.Second)
	if !closed || strings.Contains(got, "200 OK") || time.Since(start) > 3*time.Second {
		t.Errorf("slow header: %q, closed %v after %v", got, closed, time.Since(start))
	}
	// A connection that never sends anything.
	c = dialFrom(t, "", ts.http)
	if _, closed := readAllTimeout(c, 5*time.Second); !closed {
		t.Error("silent connection not closed")
	}
	waitFor(t, "connections to close", func() bool { n, _ := ts.connCounts(); return n == 0 })
}

// makeLarge adds a sparse 64 MiB file: more than loopback's socket buffers
// hold, so a client that stops reading stalls the server's writes.
func makeLarge(t *testing.T, r *testRepo) {
	t.Helper()
	f, err := os.Create(filepath.Join(r.root, "large.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.Close()
}

// smallReceiveBuffer is a dialer whose sockets have a small receive buffer.
var smallReceiveBuffer = net.Dialer{
	Timeout: 5 * time.Second,
	Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	},
}

// TestStalledReadersAreDisconnected: a client that stops reading is
// dropped WriteTimeout after the server's writes stop progressing.
func TestStalledReadersAreDisconnected(t *testing.T) {
	r := newTestRepo(t)
	makeLarge(t, r)
	ts := startServer(t, r, func(c *Config) { c.WriteTimeout = 500 * time.Millisecond })

	c, err := smallReceiveBuffer.Dial("tcp", ts.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the stalled HTTP connection to be closed", func() bool { n, _ := ts.connCounts(); return n == 0 })

	f := loginFTP(t, ts.ftp)
	msg := f.expect(229, "EPSV")
	port := msg[strings.Index(msg, "(|||")+4 : strings.LastIndex(msg, "|)")]
	dc, err := smallReceiveBuffer.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	f.expect(150, "RETR large.bin")
	start := time.Now()
	if code, _ := f.read(); code != 426 || time.Since(start) > 8*time.Second {
		t.Errorf("stalled FTP data connection: reply %d after %v, want 426", code, time.Since(start))
	}
	f.expect(200, "NOOP") // the session survives
}

// TestGracefulShutdown: stopping the server lets a transfer in progress
// finish, tells an idle FTP session, and closes idle HTTP connections.
func TestGracefulShutdown(t *testing.T) {
	r := newTestRepo(t)
	makeLarge(t, r)
	ts := startServer(t, r, func(c *Config) { c.ShutdownTimeout = 20 * time.Second })
	idle := loginFTP(t, ts.ftp)

	busy := loginFTP(t, ts.ftp)
	dc := busy.epsv()
	busy.expect(150, "RETR large.bin")

	// 64 MiB do not fit in loopback's socket buffers: the transfer is in
	// progress, stalled, until the client reads.
	hc := dialFrom(t, "", ts.http)
	io.WriteString(hc, "GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)

	stopped := make(chan struct{})
	go func() { ts.stop(); close(stopped) }()
	if got, closed := readAllTimeout(idle.conn, 5*time.Second); !strings.HasPrefix(got, "421 ") || !closed {
		t.Errorf("idle FTP session at shutdown: %q, closed %v", got, closed)
	}
	if _, err := net.DialTimeout("tcp", ts.ftp, time.Second); err == nil {
		t.Error("FTP still accepts connections after shutdown began")
	}
	// Both transfers were stalled; read them to the end.
	want := sha256.Sum256(make([]byte, 64<<20))
	check := func(what string, rd io.Reader) {
		h := sha256.New()
		buf := make([]byte, 1<<20)
		for {
			n, err := rd.Read(buf)
			h.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if got := h.Sum(nil); string(got) != string(want[:]) {
			t.Errorf("%s: transfer cut short by shutdown", what)
		}
	}
	dc.SetReadDeadline(time.Now().Add(20 * time.Second))
	check("FTP", dc)
	if code, _ := busy.read(); code != 226 {
		t.Errorf("FTP transfer during shutdown ended with %d", code)
	}
	hc.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(hc), nil)
	if err != nil {
		t.Fatal(err)
	}
	check("HTTP", resp.Body)
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Error("Serve did not return after the transfers finished")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for name, cfg := range map[string]config.LiveUpdate{
		"no root":         {HTTPAddr: ":0"},
		"nothing":         {Root: dir},
		"root missing":    {Root: filepath.Join(dir, "none"), HTTPAddr: ":0"},
		"root is a file":  {Root: file, HTTPAddr: ":0"},
		"bad address":     {Root: dir, HTTPAddr: "nope"},
		"bad range":       {Root: dir, FTPAddr: ":0", PassivePorts: config.PortRange{Lo: 3000, Hi: 2000}},
		"range from 0":    {Root: dir, FTPAddr: ":0", PassivePorts: config.PortRange{Lo: 0, Hi: 2000}},
		"bad public host": {Root: dir, FTPAddr: ":0", PublicHost: "::1"},
	} {
		if s, err := New(Config{LiveUpdate: cfg}); err == nil {
			s.Close()
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	// Serve returns when its context is done, also before any client.
	s, err := New(Config{LiveUpdate: config.LiveUpdate{
		Root:     dir,
		HTTPAddr: "127.0.0.1:0",
	},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.ListenAndServe(ctx); err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
}
