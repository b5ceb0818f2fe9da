package pgtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestListenInNamespace: a cluster run in a lab host's namespace and
// listening on its lab address answers another lab host over TCP with the
// password, refuses a wrong password, and still answers this process on
// its Unix socket.
func TestListenInNamespace(t *testing.T) {
	netlab.Require(t)
	bin := testenv.PostgresBin(t)
	lab := netlab.New(t)
	dbHost, client := lab.AddHost("db"), lab.AddHost("client")
	// Started after the lab: stopped by the cleanup before the lab goes.
	c := StartWith(t, Options{Listen: dbHost.IP4, NetNS: dbHost.NS})
	dsn := c.NewDatabase(t)
	tcp := c.TCPDSN(Database(dsn))
	if Database(dsn) != "t_1" || Database(tcp) != "t_1" {
		t.Errorf("Database(%q) = %q, Database(%q) = %q; want t_1", dsn, Database(dsn), tcp, Database(tcp))
	}
	if c.Password == "" || !strings.Contains(tcp, dbHost.IP4.String()+":5432") {
		t.Fatalf("TCPDSN %q, password %q", tcp, c.Password)
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("over the socket: %v", err)
	}
	defer conn.Close(context.Background())
	var listen string
	if err := conn.QueryRow(t.Context(), "SELECT current_setting('listen_addresses')").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != dbHost.IP4.String() {
		t.Errorf("listen_addresses %q, want %s", listen, dbHost.IP4)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE x (v int); INSERT INTO x VALUES (42)"); err != nil {
		t.Fatal(err)
	}

	// psql beside the real initdb (PostgresBin may name a directory of
	// links to the server's programs only).
	initdb, err := filepath.EvalSymlinks(filepath.Join(bin, "initdb"))
	if err != nil {
		t.Fatal(err)
	}
	psql := filepath.Join(filepath.Dir(initdb), "psql")
	if out := client.Run(t, psql, "-X", "-A", "-t", "-d", tcp, "-c", "SELECT v FROM x"); strings.TrimSpace(out) != "42" {
		t.Errorf("psql over TCP from another lab host: %q", out)
	}
	bad := strings.Replace(tcp, c.Password, "wrong", 1)
	cmd := client.Command(psql, "-X", "-w", "-d", bad, "-c", "SELECT 1")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "password authentication failed") {
		t.Errorf("a wrong password: %v\n%s", err, out)
	}
	if c2 := (&Cluster{}); c2.TCPDSN("x") != "" {
		t.Errorf("TCPDSN of a socket-only cluster is not empty")
	}
}
