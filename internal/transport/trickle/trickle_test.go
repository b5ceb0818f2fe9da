package trickle

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer sends payload to every connection, then closes it.
func echoServer(t *testing.T, payload []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write(payload)
			}()
		}
	}()
	return ln.Addr().String()
}

// The proxy passes the server's bytes intact: the burst at once, the rest
// no faster than the rate.
func TestBurstThenRate(t *testing.T) {
	t.Parallel()
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	p := New(Settings{Rate: 4000, Burst: 1000})
	t.Cleanup(p.Close)
	a, err := p.Forward("127.0.0.1:0", echoServer(t, payload))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	got, err := io.ReadAll(c)
	took := time.Since(start)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes (%v), want the %d bytes sent", len(got), err, len(payload))
	}
	// 2000 bytes after the burst at 4000 bytes/s take at least 0.5s.
	if took < 450*time.Millisecond {
		t.Errorf("3000 bytes with a 1000-byte burst at 4000 B/s took %v, want at least 0.5s", took)
	}
	if p.Sent() != int64(len(payload)) {
		t.Errorf("Sent() = %d", p.Sent())
	}
}

// Close ends connections in the middle of a trickle at once.
func TestCloseEndsTrickle(t *testing.T) {
	t.Parallel()
	p := New(Settings{Rate: 10})
	a, err := p.Forward("127.0.0.1:0", echoServer(t, make([]byte, 10000)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("after Close: %v, want the connection closed", err)
	}
}
