//go:build linux

package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// pgInstance is one `vigil server` process of several over one
// PostgreSQL database, on loopback.
type pgInstance struct {
	dataDir, api, admin string
	proc                *fileProc
}

// startInstances starts n `vigil server` processes over the database
// dsn, all announcing on one multicast group and port of lo (TTL 0). The
// first makes the keys and secrets; each other gets copies in its data
// directory before it starts, as docs/operations.md says to place them.
func startInstances(t *testing.T, n int, dsn string, port int) []*pgInstance {
	t.Helper()
	ifname := testenv.Loopback(t)
	var ins []*pgInstance
	for i := range n {
		in := &pgInstance{dataDir: filepath.Join(t.TempDir(), "data")}
		if i > 0 {
			copySecrets(t, ins[0].dataDir, in.dataDir)
		}
		listen := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
		admin := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
		in.api, in.admin = "http://"+listen+"/vigil", "http://"+admin
		in.proc = startLocal(t, "server"+strconv.Itoa(i+1), "server", "-store", dsn,
			"-data-dir", in.dataDir, "-listen", listen, "-admin-listen", admin,
			"-group", testGroup, "-port", strconv.Itoa(port), "-interface", ifname, "-ttl", "0",
			"-beacon-interval", "500ms", "-spread", "200ms", "-checkin-interval", "5s")
		in.proc.WaitLog(t, "server listening", 30*time.Second)
		ins = append(ins, in)
	}
	return ins
}

// copySecrets places the signing key pair, admin token and enrollment
// secret of the data directory from into a new data directory to.
func copySecrets(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{server.FileSigningKey, server.FilePublicKey, server.FileAdminToken, server.FileEnrollSecret} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o600)
		if name == server.FilePublicKey {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(to, name), b, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// client is an admin API client of the instance.
func (in *pgInstance) client(t *testing.T) *api.AdminClient {
	t.Helper()
	tok, err := server.DataDir{Path: in.dataDir}.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	return &api.AdminClient{Client: api.Client{Base: in.admin, Auth: tok, HTTP: &http.Client{Timeout: 30 * time.Second}}}
}
