package testenv

import (
	"net"
	"testing"
)

// AcceptingAddr returns the address of a TCP listener on 127.0.0.1 that
// accepts every connection and closes it at once, until the test ends: a
// port that is open and answers nothing.
func AcceptingAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tb.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// ClosedAddr returns an address of 127.0.0.1 on which nothing listened a
// moment ago: connecting to it is refused.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
