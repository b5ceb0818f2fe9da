package idleconn

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A peer that goes silent makes Read fail with a deadline error after the
// timeout, though data arriving in time resets it.
func TestReadTimeout(t *testing.T) {
	client, server := pair(t)
	c := New(context.Background(), client, 200*time.Millisecond)
	go func() {
		for range 3 {
			time.Sleep(100 * time.Millisecond)
			server.Write([]byte("x"))
		}
	}()
	buf := make([]byte, 1)
	for i := range 3 {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("read %d: %v (data came every 100ms, within the 200ms timeout)", i, err)
		}
	}
	start := time.Now()
	_, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent peer: err = %v, want a deadline error", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", d)
	}
}

// Cancelling the context closes the connection and ends a blocked Read.
func TestContextCloses(t *testing.T) {
	client, _ := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	c := New(ctx, client, 0)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("err = %v, want the connection closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after the context ended")
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Close after cancel: %v", err)
	}
}
