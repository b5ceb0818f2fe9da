// Package servertest runs a real Vigil management server for the tests of
// the packages that talk to one (the server's own API tests, the agent,
// vigil doctor, the CLI's admin commands), as net/http/httptest does for
// HTTP servers and internal/liveupdate/liveupdatetest for LiveUpdate
// servers: in process, its agent and admin APIs on free ports of
// 127.0.0.1, its SQLite store in a temporary directory, stopped when the
// test ends.
//
// Network safety: the server multicasts only on the loopback interface,
// with TTL 0, whatever the configuration given says (see
// internal/testenv.Loopback); no packet leaves the host. See
// docs/testing.md.
package servertest

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// Server is a management server serving until its test ends.
type Server struct {
	*server.Server
	// Config is the configuration the server was created with, after
	// Start's defaults: Config.Port is its multicast port,
	// Config.Interface the loopback interface.
	Config server.Config
	// URL is the agent API's base URL, an agent's NodeCommURL
	// ("http://127.0.0.1:PORT/vigil"; https with Config.TLSCert).
	URL string
	// AgentAddr and AdminAddr are the addresses the agent and admin APIs
	// listen on (host:port).
	AgentAddr, AdminAddr string
	// AdminURL is the admin API's base URL ("http://127.0.0.1:PORT").
	AdminURL string

	once sync.Once
	stop func()
}

// Start creates a server with cfg and its SQLite store, and serves it.
// Unset fields get defaults for tests: Group and BasePath the server's
// defaults, DataDir a new temporary directory, Listen and AdminListen free
// ports of 127.0.0.1, Port a random multicast port in 20000-59999, Logger
// a discarding one. Interface is always the loopback interface and TTL
// always 0. Any failure to start fails the test.
//
// The store is SQLite in DataDir, or, when cfg.Store is a postgres:// URL
// (a database of a pgtest cluster, say), that PostgreSQL database.
func Start(tb testing.TB, cfg server.Config) *Server {
	tb.Helper()
	if cfg.Store.IsPostgres() {
		if err := cfg.Store.Check(); err != nil {
			tb.Fatalf("servertest: Store: %v", err)
		}
		dsn := string(cfg.Store)
		return StartOpen(tb, cfg, func(string) (store.Store, error) { return postgres.Open(context.Background(), dsn) })
	}
	return StartOpen(tb, cfg, func(p string) (store.Store, error) { return sqlite.Open(p) })
}

// StartOpen is Start with the store that open returns for the database
// path (a store that injects faults, for example), as server.New takes it.
func StartOpen(tb testing.TB, cfg server.Config, open func(path string) (store.Store, error)) *Server {
	tb.Helper()
	cfg.Interface, cfg.TTL = testenv.Loopback(tb), 0
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = "127.0.0.1:0"
	}
	if !cfg.Group.IsValid() {
		cfg.Group = server.DefaultConfig().Group
	}
	if cfg.BasePath == "" {
		cfg.BasePath = server.DefaultConfig().BasePath
	}
	if cfg.Port == 0 {
		cfg.Port = RandomPort()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := server.New(cfg, open)
	if err != nil {
		tb.Fatal(err)
	}
	agentLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.Close()
		tb.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		agentLn.Close()
		s.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, agentLn, adminLn) }()
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	ts := &Server{
		Server: s, Config: cfg,
		AgentAddr: agentLn.Addr().String(), AdminAddr: adminLn.Addr().String(),
	}
	ts.URL = scheme + "://" + ts.AgentAddr + cfg.BasePath
	ts.AdminURL = "http://" + ts.AdminAddr
	if cfg.AdminTLSCert != "" {
		ts.AdminURL = "https://" + ts.AdminAddr
	}
	ts.stop = func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("server: %v", err)
		}
		if err := s.Close(); err != nil {
			tb.Errorf("server: close: %v", err)
		}
	}
	tb.Cleanup(ts.Close)
	return ts
}

// RandomPort returns a random multicast port in 20000-59999, for a test's
// own group: tests running in parallel on the loopback interface do not
// hear each other's commands.
func RandomPort() int { return 20000 + rand.IntN(40000) }

// Close stops serving, waits until the server has stopped and closes it.
// It may be called more than once; the test's cleanup calls it.
func (s *Server) Close() { s.once.Do(s.stop) }

// Admin returns a client of the admin API holding the admin token.
func (s *Server) Admin() *api.AdminClient {
	return &api.AdminClient{Client: api.Client{Base: s.AdminURL, Auth: s.AdminToken()}}
}

// AgentClient returns a client of the agent API presenting auth, an
// agent's credential ("" before enrolling).
func (s *Server) AgentClient(auth string) *api.AgentClient {
	return &api.AgentClient{Client: api.Client{Base: s.URL, Auth: auth}}
}

// PublicKeyBase64 is the server's public key as an agent's preference
// ServerPublicKey holds it.
func (s *Server) PublicKeyBase64() string {
	return base64.StdEncoding.EncodeToString(s.PublicKey())
}

// AgentPrefs returns the preferences of an agent of this server: its
// multicast group, port and interface, NodeCommURL, public key and
// enrollment secret, with stateDir as its StateDirectory and
// groups as its groups. The caller sets the rest (Hostname, ...).
func (s *Server) AgentPrefs(stateDir string, groups ...string) *prefs.Agent {
	return &prefs.Agent{
		MulticastAddress: s.Config.Group.String(), MulticastPort: s.Config.Port, MulticastInterface: s.Config.Interface,
		NodeCommURL: s.URL, ServerPublicKey: s.PublicKeyBase64(), EnrollmentSecret: s.EnrollSecret(),
		StateDirectory: stateDir, Groups: groups,
	}
}
