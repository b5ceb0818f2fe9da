package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testcert"
)

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(c *http.Client) *http.Client {
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// The console is served at / on the admin listener beside the admin API:
// a page sends to the login form, which carries the console's security
// headers; the admin API still answers its routes.
func TestConsoleMounted(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{})
	c := noRedirect(&http.Client{})
	resp, err := c.Get(ts.AdminURL + "/agents")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("GET /agents without a session: %s, Location %q; want a redirect to /login", resp.Status, resp.Header.Get("Location"))
	}
	resp, err = c.Get(ts.AdminURL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<form") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("GET /login: %s, CSP %q", resp.Status, resp.Header.Get("Content-Security-Policy"))
	}
	if _, err := ts.Admin().Agents(t.Context()); err != nil {
		t.Fatalf("the admin API beside the console: %v", err)
	}
}

// The console is not served over plain HTTP on an address other hosts
// reach unless the server is told to; under TLS it is, with a Secure
// cookie.
func TestConsoleListener(t *testing.T) {
	t.Parallel()
	open := func(p string) (store.Store, error) { return sqlite.Open(p) }
	serve := func(cfg server.Config) error {
		cfg.DataDir, cfg.Listen, cfg.AdminListen = t.TempDir(), "127.0.0.1:0", "0.0.0.0:0"
		cfg.Group, cfg.BasePath, cfg.Port = server.DefaultConfig().Group, "/vigil", servertest.RandomPort()
		cfg.TTL, cfg.Logger = 0, slog.New(slog.NewTextHandler(io.Discard, nil))
		s, err := server.New(cfg, open)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		agentLn, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			t.Fatal(err)
		}
		adminLn, err := net.Listen("tcp", cfg.AdminListen) // every address: nothing is sent
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // return at once when serving starts
		return s.Serve(ctx, agentLn, adminLn)
	}
	err := serve(server.Config{})
	if err == nil || !strings.Contains(err.Error(), "-admin-tls-cert") || !strings.Contains(err.Error(), "-admin-insecure-http") {
		t.Fatalf("plain HTTP on 0.0.0.0: %v; want a refusal saying how", err)
	}
	cfg := server.Config{}
	cfg.AdminInsecureHTTP = true
	if err := serve(cfg); err != nil {
		t.Fatalf("with -admin-insecure-http: %v", err)
	}

	ca, cert, key := testcert.Write(t, t.TempDir())
	cfg = server.Config{}
	cfg.AdminTLSCert, cfg.AdminTLSKey = cert, key
	ts := servertest.Start(t, cfg)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	c := noRedirect(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}})
	resp, err := c.Get(ts.AdminURL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("GET /login over TLS: %s, HSTS %q", resp.Status, resp.Header.Get("Strict-Transport-Security"))
	}
}
