package cli

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
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
	ts := servertest.Start(t, server.Config{Server: config.Server{
		DataDir:         filepath.Join(t.TempDir(), "server"),
		Repeat:          1,
		BeaconInterval:  time.Hour,
		CheckInInterval: 5 * time.Minute,
		Spread:          5 * time.Second,
	},
	})
	return &adminServer{
		srv:      ts.Server,
		agentURL: ts.URL,
		env:      map[string]string{"VIGIL_ADMIN_URL": ts.AdminURL, "VIGIL_ADMIN_TOKEN": ts.AdminToken()},
		group:    ts.Config.Group.String(), port: ts.Config.Port, iface: ts.Config.Interface,
	}
}

// enroll enrolls an agent by the agent API, as an agent would, and
// returns a client holding its credential.
func (s *adminServer) enroll(t *testing.T, hostname string, groups ...string) *api.AgentClient {
	t.Helper()
	c := &api.AgentClient{Client: api.Client{Base: s.agentURL, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	enr, err := c.Enroll(context.Background(), api.EnrollRequest{
		Secret: s.srv.EnrollSecret(), Nonce: strings.Repeat("5a", 16), Hostname: hostname, OS: "linux", Arch: "amd64",
		Version: "test", Groups: groups,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Auth = enr.Token
	return c
}

// agentID is the id in an agent client's credential.
func agentID(c *api.AgentClient) string { id, _, _ := strings.Cut(c.Auth, "."); return id }
