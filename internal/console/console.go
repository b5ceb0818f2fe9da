// Package console is Vigil's web console: the fleet at a glance and under
// control, in a browser. It is an http.Handler the server mounts at "/" on
// its admin listener. Its pages (dashboard, agents, an agent, commands, a
// command, detections, the audit log) are rendered on the server with
// html/template and work without JavaScript; a small script of its own
// (static/console.js) only enhances them: shift-click selection of rows,
// and the live progress of a command through Server-Sent Events. Every
// asset is embedded.
//
// The console reads the server's store through Reader, issues commands
// through Issuer (the server's one validation and signing path), checks
// passwords with an auth.Authenticator and records what its users do with
// an auth.Auditor. Sessions live in the store (a bounded table, idle and
// absolute expiry), which every server instance over one database shares;
// every state-changing request needs the session's CSRF token and a
// same-origin browser context. docs/console.md describes it.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/store"
)

// Reader is what the console reads from the server's store; a
// store.Store is one. The console asks the store for each page's rows,
// counts and sums (filtered, sorted and paged there), so that a page
// costs what it shows, not the size of the fleet.
type Reader interface {
	Agent(ctx context.Context, id string) (store.Agent, error)
	ListAgents(ctx context.Context, q store.AgentQuery, fn func(store.Agent) error) error
	CountAgents(ctx context.Context, f store.AgentFilter) (int, error)
	Fleet(ctx context.Context, c store.Clock) (store.Fleet, error)
	RecentCommands(ctx context.Context, limit int) ([]store.Command, error)
	Command(ctx context.Context, seq uint64) (store.Command, error)
	Results(ctx context.Context, seq uint64) ([]store.Result, error)
	AgentResults(ctx context.Context, agentID string, after uint64, limit int) ([]store.Result, error)
	Progress(ctx context.Context, seq uint64, t store.Target, issued time.Time) (store.Progress, error)
	Targets(ctx context.Context, t store.Target, issued time.Time, fn func(id, hostname string) error) error
	QueryDetections(ctx context.Context, q store.DetectionQuery, fn func(store.Detection) error) error
	CountDetections(ctx context.Context, since time.Time) (int, error)
}

// Issuer issues a command exactly as the admin API's send does: the one
// validation (command.Command.Validate), the target's check, signing,
// storing and announcing. An error's message is shown to the user. The
// console audits what it issues (auth.EventCommand, auth.EventRestore)
// itself, with the user of the session: an Issuer does not.
type Issuer interface {
	Send(ctx context.Context, req api.SendRequest) (api.CommandInfo, error)
}

// AuditReader reads the audit log (the console's audit page): it calls
// fn with the events q selects, newest first, as store.Store's AuditLog
// does, stopping at fn's first error, which it returns.
type AuditReader interface {
	AuditEvents(ctx context.Context, q store.AuditQuery, fn func(auth.Event) error) error
}

// Notifier wakes the command pages' event streams when results are
// recorded, so that they read the store then rather than on a timer.
// Changed returns a channel that is closed the next time results are
// recorded; Broadcast is one.
type Notifier interface {
	Changed() <-chan struct{}
}

// Broadcast is a Notifier: Notify, called after results are recorded,
// wakes every stream waiting on Changed. The zero Broadcast is ready.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// Changed returns a channel closed by the next Notify.
func (b *Broadcast) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify wakes the streams waiting on Changed.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// Config configures a Console. Store, Issuer, Auth and Audit are required;
// the console keeps its sessions in Store.
type Config struct {
	Store  Store
	Issuer Issuer
	Auth   auth.Authenticator
	Audit  auth.Auditor
	// Logger logs what fails (nil: nothing is logged).
	Logger *slog.Logger
	// Secure says the console is served under TLS: its session cookie
	// is Secure (and named with the __Host- prefix).
	Secure bool
	// CheckInInterval is the agents' check-in interval: an agent seen
	// within two intervals is online (default 5 minutes, the server's).
	CheckInInterval time.Duration
	// IdleTimeout ends a session unused for this long (default 30
	// minutes; a session's use is recorded in the store at most once
	// every min(1 minute, IdleTimeout/10), so it ends up to that much
	// sooner); MaxSessionAge ends any session this long after its login
	// (default 12 hours).
	IdleTimeout   time.Duration
	MaxSessionAge time.Duration
	// MaxSessions bounds the session table (default 10,000): a login
	// into a full table ends the least recently used session.
	MaxSessions int
	// AuditLog, when set, gives the console its audit page (/audit);
	// without it the console has none.
	AuditLog AuditReader
	// Notifier, when set, wakes event streams when results are recorded.
	Notifier Notifier
	// PollInterval is how often a command's event stream reads its
	// results from the store when nothing wakes it, and checks that its
	// session lives (default 200 ms; 5 s with a Notifier).
	PollInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultCheckInInterval = 5 * time.Minute
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultMaxSessionAge   = 12 * time.Hour
	DefaultMaxSessions     = 10000
	DefaultPollInterval    = 200 * time.Millisecond
	// DefaultNotifiedPoll is the PollInterval's default with a Notifier.
	DefaultNotifiedPoll = 5 * time.Second
)

// Console is the web console's handler.
type Console struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	static   http.Handler
	watches  watches

	progressMu    sync.Mutex
	progressCache map[uint64]cachedProgress // expired commands' progress

	facetsMu sync.Mutex
	facets   store.Fleet // the filters' values (facetFleet)
	facetsAt time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New checks cfg and returns the console.
func New(cfg Config) (*Console, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("console: no store")
	case cfg.Issuer == nil:
		return nil, errors.New("console: no issuer")
	case cfg.Auth == nil:
		return nil, errors.New("console: no authenticator")
	case cfg.Audit == nil:
		return nil, errors.New("console: no auditor")
	case cfg.CheckInInterval < 0 || cfg.IdleTimeout < 0 || cfg.MaxSessionAge < 0 || cfg.MaxSessions < 0 || cfg.PollInterval < 0:
		return nil, errors.New("console: durations and sizes must not be negative")
	}
	if cfg.CheckInInterval == 0 {
		cfg.CheckInInterval = DefaultCheckInInterval
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSessionAge == 0 {
		cfg.MaxSessionAge = DefaultMaxSessionAge
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
		if cfg.Notifier != nil {
			cfg.PollInterval = DefaultNotifiedPoll
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Console{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.watches.c = c
	c.sessions = newSessions(cfg.Store, cfg.MaxSessions, cfg.IdleTimeout, cfg.MaxSessionAge)
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	c.routes()
	return c, nil
}

// ServeHTTP serves the console, with its security headers on every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if c.cfg.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows the console's own files and nothing
// inline: no inline script, no style attribute.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (c *Console) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", c.staticHandler())
	m.HandleFunc("GET /login", c.handleLoginForm)
	m.HandleFunc("POST /login", c.sameOrigin(c.handleLogin))
	m.HandleFunc("POST /logout", c.post(auth.Read, c.handleLogout))
	m.HandleFunc("GET /{$}", c.get(c.handleDashboard))
	m.HandleFunc("GET /agents", c.get(c.handleAgents))
	m.HandleFunc("GET /agents.csv", c.get(c.handleAgentsCSV))
	m.HandleFunc("GET /agents/{id}", c.get(c.handleAgent))
	m.HandleFunc("POST /agents/{id}/restore", c.post(auth.Restore, c.handleRestore))
	m.HandleFunc("GET /commands", c.get(c.handleCommands))
	m.HandleFunc("POST /commands", c.post(auth.Issue, c.handleIssue))
	m.HandleFunc("GET /commands/{seq}", c.get(c.handleCommand))
	m.HandleFunc("GET /commands/{seq}/events", c.get(c.handleCommandEvents))
	m.HandleFunc("GET /detections", c.get(c.handleDetections))
	m.HandleFunc("GET /detections.csv", c.get(c.handleDetectionsCSV))
	if c.cfg.AuditLog != nil {
		m.HandleFunc("GET /audit", c.get(c.handleAudit))
		m.HandleFunc("GET /audit.csv", c.get(c.handleAuditCSV))
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	c.mux = m
}

func (c *Console) staticHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.Error(w, "not found", http.StatusNotFound) // no listing
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		c.static.ServeHTTP(w, r)
	})
}
