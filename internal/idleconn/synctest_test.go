package idleconn

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestReadTimeoutExact is TestReadTimeout on a fake clock (testing/synctest)
// and an in-memory connection: a peer writing every 100ms keeps a 200ms
// timeout from expiring, and once it goes silent Read fails exactly 200ms
// after it started, not merely "some time after".
func TestReadTimeoutExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		c := New(context.Background(), client, 200*time.Millisecond)
		go func() {
			for range 3 {
				time.Sleep(100 * time.Millisecond)
				server.Write([]byte("x"))
			}
		}()
		buf := make([]byte, 1)
		for i := range 3 {
			start := time.Now()
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("read %d: %v (data came every 100ms, within the 200ms timeout)", i, err)
			}
			if d := time.Since(start); d != 100*time.Millisecond {
				t.Errorf("read %d took %v, want the 100ms until the peer wrote", i, d)
			}
		}
		start := time.Now()
		_, err := c.Read(buf)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent peer: err = %v, want a deadline error", err)
		}
		if d := time.Since(start); d != 200*time.Millisecond {
			t.Fatalf("gave up after %v, want exactly the 200ms timeout", d)
		}
	})
}

// TestContextClosesExact is TestContextCloses without its pause: synctest.Wait
// returns once the Read is durably blocked, and the context's end unblocks
// it at once, on the fake clock.
func TestContextClosesExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		ctx, cancel := context.WithCancel(context.Background())
		c := New(ctx, client, 0)
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Read returned %v before the context ended", err)
		default:
		}
		start := time.Now()
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("err = %v, want the connection closed", err)
			}
		default:
			t.Fatal("Read still blocked after the context ended")
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Read ended %v after the context, want at once", d)
		}
		// The connection itself is closed: its peer cannot write to it.
		if _, err := server.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("peer's write after cancel: %v, want the pipe closed", err)
		}
	})
}
