// Package liveupdatetest runs a real LiveUpdate server for the tests of
// the packages that talk to one (the updater, the mirror, the agent,
// vigil doctor), as net/http/httptest does for HTTP servers: started on
// loopback ports, stopped when the test ends.
package liveupdatetest

import (
	"context"
	"sync"
	"testing"

	"github.com/vigil-fleet/vigil/internal/liveupdate"
)

// Server is a LiveUpdate server serving until its test ends.
type Server struct {
	*liveupdate.Server
	// HTTPURL and FTPURL are the base URLs of the protocols served
	// ("http://127.0.0.1:PORT", "ftp://127.0.0.1:PORT"), "" for one that
	// is off.
	HTTPURL, FTPURL string

	once sync.Once
	stop func()
}

// Start creates a server with cfg, listens and serves. With neither
// cfg.HTTPAddr nor cfg.FTPAddr set, both protocols listen on free ports
// of 127.0.0.1. Any failure to start fails the test.
func Start(tb testing.TB, cfg liveupdate.Config) *Server {
	tb.Helper()
	if cfg.HTTPAddr == "" && cfg.FTPAddr == "" {
		cfg.HTTPAddr, cfg.FTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	s, err := liveupdate.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		tb.Fatal(err)
	}
	return Serve(tb, s)
}

// Serve serves s, which is already listening (for tests that choose its
// addresses themselves), until the test ends or Close is called. An error
// from the server fails the test.
func Serve(tb testing.TB, s *liveupdate.Server) *Server {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	ts := &Server{Server: s}
	if a := s.HTTPAddr(); a != nil {
		ts.HTTPURL = "http://" + a.String()
	}
	if a := s.FTPAddr(); a != nil {
		ts.FTPURL = "ftp://" + a.String()
	}
	ts.stop = func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("liveupdate: %v", err)
		}
	}
	tb.Cleanup(ts.Close)
	return ts
}

// Close stops the server and waits until it has stopped. It may be called
// more than once.
func (s *Server) Close() { s.once.Do(s.stop) }
