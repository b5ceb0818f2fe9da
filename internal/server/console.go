package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/console"
	"github.com/vigil-fleet/vigil/internal/store"
)

// The web console (internal/console, docs/console.md) is served at / on
// the admin listener, beside the admin API. It reads the store, issues
// commands through the server's one path, logs users in through the
// server's auth.Service, and is woken when results are recorded.

// newConsole makes the server's console.
func (s *Server) newConsole() (*console.Console, error) {
	return console.New(console.Config{
		Store: s.store, Issuer: consoleIssuer{s}, Auth: s.auth, Audit: s.auth, AuditLog: consoleAuditLog{s.store},
		Notifier: &s.resultsChanged, Logger: s.log.With("part", "console"),
		Secure: s.cfg.AdminTLSCert != "", CheckInInterval: s.cfg.CheckInInterval,
	})
}

// consoleIssuer issues the console's commands as the admin API's send
// does (the one validation, signing, storing, announcing). The console
// has checked the user's role and audits the command with the user.
type consoleIssuer struct{ s *Server }

func (ci consoleIssuer) Send(ctx context.Context, req api.SendRequest) (api.CommandInfo, error) {
	return ci.s.send(ctx, req)
}

// consoleAuditLog reads the audit log for the console's audit page.
type consoleAuditLog struct{ st store.Store }

func (l consoleAuditLog) AuditEvents(ctx context.Context, q store.AuditQuery, fn func(auth.Event) error) error {
	return l.st.AuditLog(ctx, q, func(e store.AuditEvent) error {
		return fn(auth.Event{Time: e.Time, Actor: e.Actor, Addr: e.Addr, Action: e.Action, Target: e.Target, Detail: e.Detail, OK: e.OK})
	})
}

// checkAdminListener refuses to serve the console over plain HTTP on an
// address other hosts reach, unless told to.
func (s *Server) checkAdminListener(addr net.Addr) error {
	if s.cfg.AdminTLSCert != "" || s.cfg.AdminInsecureHTTP {
		return nil
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err == nil && ap.Addr().IsLoopback() {
		return nil
	}
	return fmt.Errorf("admin API: refusing to serve the console over plain HTTP on %s, an address other hosts can reach "+
		"(passwords and sessions would travel in clear): give -admin-tls-cert and -admin-tls-key, "+
		"listen on a loopback address (-admin-listen 127.0.0.1:8081), or accept it with -admin-insecure-http", addr)
}
