package cli

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/server"
)

// adminServer is a real server, in process, for the admin commands'
// tests: env points them at its admin API.
type adminServer struct {
	srv      *server.Server
	agentURL string
	env      map[string]string
	// The multicast group, port and interface its commands go to.
	group string
	port  int
	iface string
}

// startAdminServer starts a server on loopback (multicast on lo, TTL 0),
// stopped when the test ends.
func startAdminServer(t *testing.T) *adminServer {
	t.Helper()
	lo, err := loopbackName()
	if err != nil {
		t.Fatal(err)
	}
	group, port := "239.255.81.92", 20000+rand.IntN(40000)
	srv, err := server.New(server.Config{
		DataDir: filepath.Join(t.TempDir(), "server"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Group: netip.MustParseAddr(group), Port: port, Interface: lo, TTL: 0,
		Repeat: 1, BeaconInterval: time.Hour, CheckInInterval: 5 * time.Minute, Spread: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, openSQLite)
	if err != nil {
		t.Fatal(err)
	}
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, agentLn, adminLn) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
	})
	return &adminServer{
		srv:      srv,
		agentURL: "http://" + agentLn.Addr().String() + server.DefaultConfig().BasePath,
		env:      map[string]string{"VIGIL_ADMIN_URL": "http://" + adminLn.Addr().String(), "VIGIL_ADMIN_TOKEN": srv.AdminToken()},
		group:    group, port: port, iface: lo,
	}
}

// enroll enrolls an agent by the agent API, as an agent would, and
// returns a client holding its credential.
func (s *adminServer) enroll(t *testing.T, hostname string, groups ...string) *api.Client {
	t.Helper()
	c := &api.Client{Base: s.agentURL, HTTP: &http.Client{Timeout: 10 * time.Second}}
	var enr api.EnrollResponse
	if err := c.Do(context.Background(), http.MethodPost, api.PathEnroll, api.EnrollRequest{
		Secret: s.srv.EnrollSecret(), Nonce: strings.Repeat("5a", 16), Hostname: hostname, OS: "linux", Arch: "amd64",
		Version: "test", Groups: groups,
	}, &enr); err != nil {
		t.Fatal(err)
	}
	c.Auth = enr.Token
	return c
}

// agentID is the id in an agent client's credential.
func agentID(c *api.Client) string { id, _, _ := strings.Cut(c.Auth, "."); return id }
