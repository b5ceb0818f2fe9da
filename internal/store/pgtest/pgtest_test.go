package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestStart: a cluster answers on its socket only, as the superuser, with
// fsync as asked; NewDatabase makes separate databases; Stop removes it.
func TestStart(t *testing.T) {
	c := Start(t)
	dsn := c.NewDatabase(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var listen, fsync, user, db string
	if err := conn.QueryRow(ctx, "SELECT current_setting('listen_addresses'), current_setting('fsync'), current_user, current_database()").
		Scan(&listen, &fsync, &user, &db); err != nil {
		t.Fatal(err)
	}
	if listen != "" || user != Superuser || db != "t_1" {
		t.Errorf("listen_addresses %q, user %q, database %q; want '', %q, t_1", listen, user, db, Superuser)
	}
	if want := map[bool]string{true: "on", false: "off"}[c.Fsync]; fsync != want {
		t.Errorf("fsync = %s, want %s", fsync, want)
	}
	if second := c.NewDatabase(t); second == dsn {
		t.Errorf("NewDatabase returned %s twice", dsn)
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Stop, %s: %v; want it removed", c.Dir, err)
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Error("connected to a stopped cluster")
	}
}

// TestPostgresBin: the directory testenv.PostgresBin finds holds the
// programs Start runs.
func TestPostgresBin(t *testing.T) {
	bin := testenv.PostgresBin(t)
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(bin, name))
		if err != nil {
			t.Error(err)
		} else if fi.Mode()&0o111 == 0 {
			t.Errorf("%s in %s is not executable (mode %v)", name, bin, fi.Mode())
		}
	}
}

// TestReapOrphans: the cluster of a test binary that died is stopped and
// removed by the next Start.
func TestReapOrphans(t *testing.T) {
	bin := testenv.PostgresBin(t)
	orphan, err := start(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer orphan.Stop()
	// A process that has ended: its ID names no process until reused.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan.Dir, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	mine := Start(t)
	if _, err := os.Stat(orphan.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan's directory %s: %v; want it removed", orphan.Dir, err)
	}
	if _, err := pgx.Connect(t.Context(), orphan.DSN("postgres")); err == nil {
		t.Error("the orphan still answers")
	}
	if _, err := os.Stat(mine.Dir); err != nil {
		t.Errorf("the new cluster: %v", err)
	}
}
