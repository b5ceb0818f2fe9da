// Package server is Vigil's management server: the agent API (enrollment,
// check-in, missed commands, results) under the base path agents reach at
// their NodeCommURL, the admin API, and the multicast announcer that sends
// each command as one signed datagram plus a periodic signed beacon.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/console"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/store"
)

// Config configures a server. Zero values take the defaults in
// DefaultConfig.
type Config struct {
	// Server is the part's configuration: its flags and preference keys
	// (package config).
	config.Server

	// MaxEnrolling bounds the enrollment requests handled at once (they
	// come before any credential); more get 503 with Retry-After.
	MaxEnrolling int

	// PasswordParams are the argon2id parameters of new password hashes;
	// auth.DefaultParams when zero.
	PasswordParams auth.Params
	// Throttle shapes the throttling of failed logins and wrong tokens;
	// zero fields take auth.DefaultThrottle's.
	Throttle auth.ThrottleConfig

	// GCPercent is the garbage collector's target that New sets for the
	// process (runtime/debug.SetGCPercent): DefaultGCPercent when zero,
	// unless the environment sets GOGC, which wins; negative leaves the
	// runtime's. The server's live heap is small next to the garbage
	// its requests make, so a higher target trades a few more MiB for
	// less collection (GOMEMLIMIT bounds the heap if it must be).
	GCPercent int

	// Logger receives structured logs; slog.Default() when nil.
	Logger *slog.Logger
}

// DefaultSeenFlush is Config.SeenFlush's default when zero (config.Server's
// SeenFlush: a negative value writes every check-in before answering it).
const DefaultSeenFlush = time.Second

// DefaultGCPercent is Config.GCPercent's default (the runtime's is 100).
const DefaultGCPercent = 400

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Server: config.DefaultServer(), MaxEnrolling: 32}
}

func (c *Config) fill() error {
	d := DefaultConfig()
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.BasePath == "" {
		c.BasePath = d.BasePath
	}
	c.BasePath = "/" + strings.Trim(c.BasePath, "/")
	if c.BasePath == "/" {
		c.BasePath = ""
	}
	if c.AdminListen == "" {
		c.AdminListen = d.AdminListen
	}
	if !c.Group.IsValid() {
		c.Group = d.Group
	}
	if !c.Group.IsMulticast() {
		return fmt.Errorf("multicast group %s is not a multicast address", c.Group)
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("multicast port %d out of range", c.Port)
	}
	if c.TTL < 0 || c.TTL > 255 {
		return fmt.Errorf("TTL %d out of range 0-255", c.TTL)
	}
	if c.Repeat <= 0 {
		c.Repeat = d.Repeat
	}
	if c.RepeatGap <= 0 {
		c.RepeatGap = d.RepeatGap
	}
	if c.BeaconInterval <= 0 {
		c.BeaconInterval = d.BeaconInterval
	}
	if c.CheckInInterval <= 0 {
		c.CheckInInterval = d.CheckInInterval
	}
	if c.Spread < 0 {
		return errors.New("spread must not be negative")
	}
	if c.Spread == 0 {
		c.Spread = d.Spread
	}
	if c.CommandTTL <= 0 {
		c.CommandTTL = d.CommandTTL
	}
	if c.MaxEnrolling <= 0 {
		c.MaxEnrolling = d.MaxEnrolling
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("TLS needs both a certificate and a key")
	}
	if c.SeenFlush == 0 {
		c.SeenFlush = DefaultSeenFlush
	}
	if c.GCPercent == 0 {
		c.GCPercent = DefaultGCPercent
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Server is a running management server.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	key        ed25519.PrivateKey
	adminToken string
	secret     atomic.Pointer[string] // the enrollment secret
	secretMu   sync.Mutex             // held while it is rotated
	auth       *auth.Service
	latest     atomic.Uint64
	m          *metrics
	sender     *mcast.Sender

	// ep is the epoch the server is in. epochMu is held for reading while
	// a command is signed with it and stored, and for writing while the
	// server moves to a new epoch, so that no command is signed in an
	// epoch the server has left.
	ep      atomic.Pointer[epochState]
	epochMu sync.RWMutex

	checkins *batcher[store.CheckIn]
	results  *batcher[store.Result]
	deferred deferredCheckIns
	// resultsChanged wakes the console's live pages when results are
	// stored; console serves them.
	resultsChanged console.Broadcast
	console        *console.Console
	// commandsChanged wakes the relay streams when the latest sequence
	// rises: a command this instance issued, or another instance's that
	// it heard of (raiseLatest).
	commandsChanged console.Broadcast
	relays          relayStreams

	agents  sync.Map // agent id -> *agentEntry
	targets targetCache

	enrollSlots chan struct{} // bounds concurrent enrollments
	refusedLog  logLimiter    // wrong-secret enrollments
	resultLog   logLimiter    // refused results
	plainOnce   sync.Once     // the plain-HTTP warning

	annMu   sync.Mutex // serialises datagram sends
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// New opens the data directory (creating keys and secrets on first start),
// the store, with openStore on the data directory's database path (the one
// way a server gets its store; Close closes it), and the multicast sender.
func New(cfg Config, openStore func(path string) (store.Store, error)) (*Server, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if _, set := os.LookupEnv("GOGC"); !set && cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	dd := DataDir{Path: cfg.DataDir}
	if err := dd.Init(); err != nil {
		return nil, err
	}
	if err := dd.CheckPrivate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, m: newMetrics(), stop: make(chan struct{}),
		enrollSlots: make(chan struct{}, cfg.MaxEnrolling),
		refusedLog:  logLimiter{every: logInterval},
		resultLog:   logLimiter{every: logInterval},
	}
	var err error
	if s.key, err = dd.SigningKey(); err != nil {
		return nil, err
	}
	if s.adminToken, err = dd.AdminToken(); err != nil {
		return nil, err
	}
	secret, err := dd.EnrollSecret()
	if err != nil {
		return nil, err
	}
	s.secret.Store(&secret)
	if openStore == nil {
		return nil, errors.New("no store configured")
	}
	if s.store, err = openStore(dd.DatabasePath()); err != nil {
		return nil, err
	}
	s.auth, err = auth.NewService(s.store, auth.Options{
		BootstrapToken: s.adminToken, Params: cfg.PasswordParams, Throttle: cfg.Throttle, Logger: cfg.Logger,
	})
	if err != nil {
		s.closeStore()
		return nil, err
	}
	if s.console, err = s.newConsole(); err != nil {
		s.closeStore()
		return nil, fmt.Errorf("console: %w", err)
	}
	latest, err := s.store.LatestSeq(context.Background())
	if err != nil {
		s.closeStore()
		return nil, err
	}
	s.latest.Store(latest)
	s.ep.Store(&epochState{epoch: s.store.Epoch(), start: s.store.EpochStart(), issuedFrom: latest})
	s.sender, err = mcast.NewSender(mcast.Config{
		Group: cfg.Group, Port: cfg.Port, Interface: cfg.Interface, TTL: cfg.TTL, Loopback: true,
	})
	if err != nil {
		s.closeStore()
		return nil, fmt.Errorf("multicast sender: %w", err)
	}
	s.checkins = newBatcher(512, s.flushCheckIns)
	s.results = newBatcher(512, s.flushResults)
	s.deferred.m, s.deferred.spare = map[string]deferredCheckIn{}, map[string]deferredCheckIn{}
	s.wg.Add(1)
	go s.beaconLoop()
	if s.defers() {
		s.wg.Add(1)
		go s.flushDeferredLoop()
	}
	if n, ok := s.store.(store.Notifier); ok {
		s.wg.Add(1)
		go s.followStore(n)
	}
	return s, nil
}

// PublicKey is the command-signing public key agents pin.
func (s *Server) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// AdminToken is the bootstrap admin token (admin.token): the admin API's
// bearer token of an administrator that is no user.
func (s *Server) AdminToken() string { return s.adminToken }

// EnrollSecret is the enrollment secret agents present.
func (s *Server) EnrollSecret() string { return *s.secret.Load() }

// Epoch is the epoch the server is in (the store's).
func (s *Server) Epoch() uint64 { return s.ep.Load().epoch }

// LatestSeq is the highest command sequence number (of every instance,
// when several share the store: see follow.go).
func (s *Server) LatestSeq() uint64 { return s.latest.Load() }

// Close stops the announcer and batchers and closes the store it opened.
func (s *Server) Close() error {
	var err error
	s.closeMu.Do(func() {
		close(s.stop)
		s.relays.closeAll() // before the store closes: they read it
		s.wg.Wait()
		s.flushDeferred() // the last ones: the batcher still runs
		s.checkins.close()
		s.results.close()
		s.sender.Close()
		err = s.closeStore()
	})
	return err
}

func (s *Server) closeStore() error { return s.store.Close() }

// Serve serves the agent API on agentLn and the admin API on adminLn until
// ctx is done, then shuts both down gracefully.
func (s *Server) Serve(ctx context.Context, agentLn, adminLn net.Listener) error {
	newSrv := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	s.warnPlainHTTP(agentLn.Addr())
	if err := s.checkAdminListener(adminLn.Addr()); err != nil {
		return err
	}
	agentSrv, adminSrv := newSrv(s.AgentHandler()), newSrv(s.AdminHandler())
	// Shutdown waits for requests to end; relay streams end only when
	// told to.
	agentSrv.RegisterOnShutdown(s.relays.closeAll)
	errc := make(chan error, 2)
	go func() {
		var err error
		if s.cfg.TLSCert != "" {
			agentSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			err = agentSrv.ServeTLS(agentLn, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			err = agentSrv.Serve(agentLn)
		}
		errc <- err
	}()
	go func() {
		var err error
		if s.cfg.AdminTLSCert != "" {
			adminSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			err = adminSrv.ServeTLS(adminLn, s.cfg.AdminTLSCert, s.cfg.AdminTLSKey)
		} else {
			err = adminSrv.Serve(adminLn)
		}
		errc <- err
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	agentSrv.Shutdown(sctx)
	adminSrv.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ListenAndServe listens on the configured addresses and serves until ctx
// is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	agentLn, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	adminLn, err := net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		agentLn.Close()
		return fmt.Errorf("admin API: %w", err)
	}
	scheme, adminScheme := "http", "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	if s.cfg.AdminTLSCert != "" {
		adminScheme = "https"
	}
	s.log.Info("server listening",
		"agent_api", fmt.Sprintf("%s://%s%s", scheme, agentLn.Addr(), s.cfg.BasePath),
		"admin_api", adminScheme+"://"+adminLn.Addr().String(),
		"multicast", netip.AddrPortFrom(s.cfg.Group, uint16(s.cfg.Port)).String(),
		"interface", s.cfg.Interface, "ttl", s.cfg.TTL,
		"epoch", s.Epoch(), "latest_seq", s.LatestSeq())
	return s.Serve(ctx, agentLn, adminLn)
}

// warnPlainHTTP logs, once, a warning when the agent API is served over
// plain HTTP on an address other hosts reach: what travels on it (the
// enrollment secret, agents' credentials and reports) can be read and
// changed on the way.
func (s *Server) warnPlainHTTP(addr net.Addr) {
	if s.cfg.TLSCert != "" {
		return
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil || ap.Addr().IsLoopback() {
		return
	}
	s.plainOnce.Do(func() {
		s.log.Warn("the agent API is served over plain HTTP on an address other hosts can reach: "+
			"anyone on the path can read the enrollment secret and agents' credentials and change answers; "+
			"serve it over HTTPS with -tls-cert and -tls-key",
			"address", addr.String())
	})
}

// AgentHandler is the agent API, mounted under the base path: a handler
// for each of api.AgentRoutes.
func (s *Server) AgentHandler() http.Handler {
	return s.mux(s.cfg.BasePath, api.AgentRoutes(), map[api.Route]http.HandlerFunc{
		api.RouteEnroll:      s.handleEnroll,
		api.RouteCheckIn:     s.agentAuth(s.handleCheckIn),
		api.RouteCommands:    s.agentAuth(s.handleCommands),
		api.RouteCommand:     s.agentAuth(s.handleCommand),
		api.RouteResults:     s.agentAuth(s.handleResults),
		api.RouteScans:       s.agentAuth(s.handleScan),
		api.RouteRelayStream: s.agentAuth(s.handleRelayStream),
	})
}

// AdminHandler is the admin API and /metrics (a handler for each of
// api.AdminRoutes), and the web console at / (console.go).
func (s *Server) AdminHandler() http.Handler {
	mux := s.mux("", api.AdminRoutes(), map[api.Route]http.HandlerFunc{
		api.RouteAdminAgents:         s.admin(s.handleAgents, auth.Read),
		api.RouteAdminRemoveAgent:    s.admin(s.handleRemoveAgent, auth.Issue),
		api.RouteAdminRevokeAgent:    s.admin(s.handleRevokeAgent, auth.Issue),
		api.RouteAdminCommands:       s.admin(s.handleListCommands, auth.Read),
		api.RouteAdminSend:           s.admin(s.handleSend, auth.Issue, auth.Restore),
		api.RouteAdminCommandResults: s.admin(s.handleCommandResults, auth.Read),
		api.RouteAdminDetections:     s.admin(s.handleDetections, auth.Read),
		api.RouteAdminScans:          s.admin(s.handleScans, auth.Read),
		api.RouteAdminServer:         s.admin(s.handleServerInfo, auth.Read),
		api.RouteAdminWhoAmI:         s.admin(s.handleWhoAmI, auth.Read),
		api.RouteAdminUsers:          s.admin(s.handleUsers, auth.ManageUsers),
		api.RouteAdminAddUser:        s.admin(s.handleAddUser, auth.ManageUsers),
		api.RouteAdminRemoveUser:     s.admin(s.handleRemoveUser, auth.ManageUsers),
		api.RouteAdminUserRole:       s.admin(s.handleUserRole, auth.ManageUsers),
		// A user sets their own password and manages their own tokens;
		// the Service checks the rest (auth.ManageUsers).
		api.RouteAdminUserPassword: s.admin(s.handleUserPassword, auth.Read),
		api.RouteAdminTokens:       s.admin(s.handleTokens, auth.Read),
		api.RouteAdminAddToken:     s.admin(s.handleAddToken, auth.Read),
		api.RouteAdminRemoveToken:  s.admin(s.handleRemoveToken, auth.Read),
		api.RouteAdminAudit:        s.admin(s.handleAudit, auth.Read),
		api.RouteAdminAuditCSV:     s.admin(s.handleAuditCSV, auth.Read),
		api.RouteAdminRotateSecret: s.admin(s.handleRotateSecret, auth.RotateSecret),
		api.RouteMetrics:           promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{Registry: s.m.reg}).ServeHTTP,
	})
	mux.Handle("/", s.console)
	return mux
}

// mux registers one handler for each route, under base; every handler
// but the metrics' is instrumented under its route's name. A route
// without a handler, or a handler without a route, is a programming
// error and panics.
func (s *Server) mux(base string, routes []api.Route, handlers map[api.Route]http.HandlerFunc) *http.ServeMux {
	mux := http.NewServeMux()
	for _, r := range routes {
		h, ok := handlers[r]
		if !ok {
			panic("server: no handler for route " + r.MuxPattern(base))
		}
		delete(handlers, r)
		if r != api.RouteMetrics {
			h = s.m.instrument(r.Name, h)
		}
		mux.HandleFunc(r.MuxPattern(base), h)
	}
	for r := range handlers {
		panic("server: handler for a route not in the table: " + r.MuxPattern(base))
	}
	return mux
}
