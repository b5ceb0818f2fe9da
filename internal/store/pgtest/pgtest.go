// Package pgtest starts throwaway PostgreSQL clusters for tests, as
// net/http/httptest starts throwaway HTTP servers.
//
// A Cluster is a real PostgreSQL server: initdb into a new temporary
// directory, then pg_ctl start -w, listening on a Unix socket in that
// directory only (listen_addresses is empty: nothing listens on TCP), with
// trust authentication for its superuser "vigil" (only the socket's
// directory permissions let anyone in), encoding UTF8 and locale C.UTF-8
// (C where the system lacks it). Stop (or the test's cleanup)
// stops it with pg_ctl stop -m immediate and removes the directory.
//
// PostgreSQL refuses to run as root, and CI runs the tests as root: a test
// process running as root runs initdb, pg_ctl and postgres as the user
// "nobody" (their credentials set on the child process), the directory
// chowned to it. Any other user runs them as itself.
//
// Clusters run with fsync off by default: the tests check behaviour, not
// durability across a power cut, and an fsync per commit makes the suites
// several times slower on a virtual disk. Options.Fsync, or
// VIGIL_PGTEST_FSYNC=1 in the environment for every cluster, turns fsync
// (and full_page_writes) on, as benchmarks that compare with a store that
// fsyncs each commit must.
//
// A cluster's directory records the process ID of the test binary that
// started it; Start stops and removes the clusters of binaries that died
// without stopping theirs.
//
// A cluster may also listen on TCP, on one address (Options.Listen), for
// clients in other network namespaces: a lab's database host, say, whose
// server instances run on other lab hosts. Its server then runs inside a
// named network namespace (Options.NetNS, entered with nsenter), every TCP
// connection needs the superuser's password (SCRAM-SHA-256; the Unix
// socket keeps trust), and TCPDSN gives the connection string.
//
// Where PostgreSQL's programs are missing, Start skips the test, or fails
// it under VIGIL_REQUIRE_TOOLS=1 (testenv.PostgresBin).
//
// One cluster per test binary is the usual shape: Shared starts it on first
// use, every test takes a fresh database of it with NewDatabase (so that
// tests run in parallel), and TestMain stops it:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		pgtest.StopShared()
//		os.Exit(code)
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// Superuser is the name of every cluster's superuser.
const Superuser = "vigil"

// EnvFsync, set to 1, turns fsync on in every cluster this package starts.
const EnvFsync = "VIGIL_PGTEST_FSYNC"

// Options change how a cluster runs.
type Options struct {
	// Fsync turns fsync and full_page_writes on (they are off unless
	// EnvFsync is 1).
	Fsync bool
	// Listen, when valid, makes the cluster listen on TCP at this
	// address too (port 5432), with password authentication for every
	// TCP connection; Cluster.Password is the superuser's password.
	// Unless the address is the root namespace's, set NetNS too.
	Listen netip.Addr
	// NetNS, when not "", is the name of the network namespace (an
	// entry of /run/netns, such as a netlab host's NS) PostgreSQL's
	// programs run in, entered with nsenter as root: the server listens
	// on that namespace's Listen address. Start the cluster after the
	// namespace exists and stop it before the namespace goes (a cluster
	// started after a netlab lab is stopped by the test's cleanup
	// first).
	NetNS string
}

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	// Dir is the cluster's temporary directory: the Unix socket's
	// directory, holding the data directory (data) and the server's log
	// (log).
	Dir string
	// Fsync says whether the cluster fsyncs its commits.
	Fsync bool
	// Listen is the TCP address the cluster listens on besides its
	// socket (Options.Listen), and Password the superuser's password
	// for TCP connections; both zero when it listens on its socket only.
	Listen   netip.Addr
	Password string

	netns string // network namespace it runs in; "" = this process's

	bin     string              // PostgreSQL's programs
	cred    *syscall.Credential // whom they run as; nil: this process's user
	dbs     atomic.Int64        // databases made by NewDatabase
	stop    sync.Once
	stopE   error
	stopped atomic.Bool
}

// Start starts a cluster that tb's cleanup stops and removes.
func Start(tb testing.TB) *Cluster { return StartWith(tb, Options{}) }

// StartWith is Start with options.
func StartWith(tb testing.TB, opt Options) *Cluster {
	tb.Helper()
	bin := testenv.PostgresBin(tb)
	c, err := start(bin, opt)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c
}

var shared struct {
	mu  sync.Mutex
	c   *Cluster
	err error
}

// Shared returns the test binary's shared cluster, starting it on the first
// call. StopShared (from TestMain, after m.Run) stops it.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	bin := testenv.PostgresBin(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start(bin, Options{})
	}
	if shared.err != nil {
		tb.Fatalf("pgtest: shared cluster: %v", shared.err)
	}
	return shared.c
}

// StopShared stops and removes the shared cluster, if Shared started one.
func StopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil {
		return nil
	}
	return shared.c.Stop()
}

// start makes and starts a cluster with the programs in bin.
func start(bin string, opt Options) (c *Cluster, err error) {
	reapOrphans(bin)
	dir, err := os.MkdirTemp("", "vigil-pgtest-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, bin: bin, Fsync: opt.Fsync || os.Getenv(EnvFsync) == "1", netns: opt.NetNS}
	if opt.NetNS != "" {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("running in network namespace %s needs root", opt.NetNS)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", opt.NetNS)); err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", opt.NetNS, err)
		}
		if _, err := exec.LookPath("nsenter"); err != nil {
			return nil, errors.New("nsenter not found in PATH (Debian: apt-get install -y util-linux)")
		}
	}
	defer func() {
		if err != nil {
			c.stop.Do(func() {})
			os.RemoveAll(dir)
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL must run as another user: %w", err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("user nobody: %w", err)
		}
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	// C.UTF-8, where the system has it, rather than C: a database's
	// default collation is rarely C, and code that needs C's must ask.
	auth := []string{"--auth=trust"}
	if opt.Listen.IsValid() {
		pw := make([]byte, 16)
		rand.Read(pw)
		c.Listen, c.Password = opt.Listen, hex.EncodeToString(pw)
		pwFile := filepath.Join(dir, "pwfile")
		if err := os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600); err != nil {
			return nil, err
		}
		defer os.Remove(pwFile)
		if c.cred != nil {
			if err := os.Chown(pwFile, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return nil, err
			}
		}
		auth = []string{"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=" + pwFile}
	}
	initdb := func(locale string) error {
		args := append([]string{"-D", data, "-U", Superuser}, auth...)
		args = append(args, "-E", "UTF8", "--locale="+locale, "--no-sync", "--no-instructions")
		return c.run("initdb", args...)
	}
	if err := initdb("C.UTF-8"); err != nil {
		if err := os.RemoveAll(data); err != nil {
			return nil, err
		}
		if err := initdb("C"); err != nil {
			return nil, err
		}
	}
	onOff := map[bool]string{true: "on", false: "off"}[c.Fsync]
	listen := "# pgtest: a Unix socket in the cluster's directory, nothing on TCP.\nlisten_addresses = ''"
	if c.Listen.IsValid() {
		listen = fmt.Sprintf("# pgtest: a Unix socket in the cluster's directory, and TCP on one address.\nlisten_addresses = '%s'", c.Listen)
		// Any client that reaches the address, with the password.
		hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		_, err = hba.WriteString("host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n")
		if err := errors.Join(err, hba.Close()); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`
%s
unix_socket_directories = '%s'
port = 5432
fsync = %s
full_page_writes = %s
max_connections = 300
log_min_messages = warning
`, listen, strings.ReplaceAll(dir, "'", "''"), onOff, onOff)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if err := errors.Join(err, f.Close()); err != nil {
		return nil, err
	}
	if err := c.run("pg_ctl", "start", "-w", "-t", "120", "-D", data, "-l", filepath.Join(dir, "log")); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("%w; server log:\n%s", err, log)
	}
	return c, nil
}

// ownerFile, in a cluster's directory, holds the process ID of the test
// binary that started it.
const ownerFile = "owner.pid"

// reapOrphans stops and removes the clusters of test binaries that ended
// without stopping them (killed by go test's -timeout, say): their
// postgres would otherwise run until the machine restarts.
func reapOrphans(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "vigil-pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // starting, or not ours to judge
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its test binary is running (or cannot be told)
		}
		orphan := &Cluster{Dir: dir, bin: bin}
		if fi, err := os.Stat(dir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uint32(os.Geteuid()) {
				orphan.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		orphan.Stop() // best effort: a cluster that never started has nothing to stop
		os.RemoveAll(dir)
	}
}

// run runs one of PostgreSQL's programs as the cluster's user.
func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	if c.netns != "" {
		// nsenter enters the namespace as root, then becomes the
		// cluster's user (if another) and execs the program.
		ns := []string{"--net=" + filepath.Join("/run/netns", c.netns)}
		if c.cred != nil {
			ns = append(ns, "--setgid", strconv.FormatUint(uint64(c.cred.Gid), 10), "--setuid", strconv.FormatUint(uint64(c.cred.Uid), 10))
		}
		cmd = exec.Command("nsenter", append(append(ns, "--", filepath.Join(c.bin, name)), args...)...)
	} else if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Stop stops the cluster at once (pg_ctl stop -m immediate: no checkpoint,
// nothing to keep) and removes its directory. Calling it again returns
// the first result.
func (c *Cluster) Stop() error {
	c.stop.Do(func() {
		c.stopped.Store(true)
		err := c.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", filepath.Join(c.Dir, "data"))
		c.stopE = errors.Join(err, os.RemoveAll(c.Dir))
	})
	return c.stopE
}

// DSN returns the connection string of database db as the superuser,
// over the cluster's Unix socket.
func (c *Cluster) DSN(db string) string {
	q := url.Values{}
	q.Set("host", c.Dir)
	q.Set("port", "5432")
	q.Set("user", Superuser)
	q.Set("sslmode", "disable")
	u := url.URL{Scheme: "postgres", Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// TCPDSN returns the connection string of database db as the superuser,
// over TCP to the cluster's Listen address with its password. It is ""
// for a cluster that listens on its socket only.
func (c *Cluster) TCPDSN(db string) string {
	if !c.Listen.IsValid() {
		return ""
	}
	q := url.Values{}
	q.Set("sslmode", "disable")
	u := url.URL{Scheme: "postgres", User: url.UserPassword(Superuser, c.Password),
		Host: net.JoinHostPort(c.Listen.String(), "5432"), Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// Database returns the name of the database a DSN of this package (DSN,
// TCPDSN or NewDatabase's) names, "" if it names none: the name to give
// TCPDSN for a database NewDatabase made.
func Database(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// NewDatabase creates a new, empty database (t_1, t_2, ...) that tb's
// cleanup drops (unless the cluster was stopped), and returns its DSN. Close what uses it before the
// cleanup runs (register the Close after calling NewDatabase).
func (c *Cluster) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t_%d", c.dbs.Add(1))
	if err := c.admin("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if c.stopped.Load() {
			return // gone with the cluster
		}
		if err := c.admin("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c.DSN(name)
}

// admin runs one statement on the postgres database.
func (c *Cluster) admin(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the cluster in %s: %w", c.Dir, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}
