package liveupdate

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// secretMarker is the content of every file outside the repository that
// the escape tests try to reach; no response may ever contain it.
const secretMarker = "VIGIL-SECRET-6f1c0e9a-never-served"

// testRepo is a repository with the files and traps the tests use.
type testRepo struct {
	dir     string // parent of root: holds the secret
	root    string
	files   map[string][]byte // served path (relative to root) → content
	hashPkg string            // a consistent-snapshot target name
}

// newTestRepo lays out:
//
//	DIR/secret.txt                   outside the root
//	DIR/root/timestamp.json, root.json, 3.root.json
//	DIR/root/targets/<sha256>.defs.tar   (300 KiB)
//	DIR/root/big.bin                     (3 MiB + 7 bytes)
//	DIR/root/sub dir/file with space.txt
//	DIR/root/.hidden, .git/config        dotfiles (secret)
//	DIR/root/link-inside -> targets/<sha256>.defs.tar
//	DIR/root/escape-rel -> ../secret.txt
//	DIR/root/escape-abs -> /etc/passwd
//	DIR/root/escape-dir -> ..
//	DIR/root/targets/up -> ../../
//	DIR/root/fifo                        a named pipe
func newTestRepo(t testing.TB) *testRepo {
	t.Helper()
	dir := t.TempDir()
	r := &testRepo{dir: dir, root: filepath.Join(dir, "root"), files: map[string][]byte{}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(r.root, "targets"), 0o755))
	must(os.MkdirAll(filepath.Join(r.root, "sub dir"), 0o755))
	must(os.MkdirAll(filepath.Join(r.root, ".git"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(secretMarker+"\n"), 0o644))
	pkg := randomBytes(300 << 10)
	sum := sha256.Sum256(pkg)
	r.hashPkg = "targets/" + hex.EncodeToString(sum[:]) + ".defs.tar"
	add := func(name string, data []byte) {
		must(os.WriteFile(filepath.Join(r.root, filepath.FromSlash(name)), data, 0o644))
		r.files[name] = data
	}
	add("timestamp.json", []byte(`{"signed":{"_type":"timestamp","version":42}}`+"\n"))
	add("root.json", []byte(`{"signed":{"_type":"root","version":3}}`+"\n"))
	add("3.root.json", []byte(`{"signed":{"_type":"root","version":3}}`+"\n"))
	add(r.hashPkg, pkg)
	add("big.bin", randomBytes(3<<20+7))
	add("sub dir/file with space.txt", []byte("spaces are fine\n"))
	must(os.WriteFile(filepath.Join(r.root, ".hidden"), []byte(secretMarker+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(r.root, ".git", "config"), []byte(secretMarker+"\n"), 0o644))
	must(os.Symlink(filepath.Base(r.hashPkg), filepath.Join(r.root, "targets", "link-inside-dir")))
	must(os.Symlink(r.hashPkg, filepath.Join(r.root, "link-inside")))
	r.files["link-inside"] = pkg
	must(os.Symlink("../secret.txt", filepath.Join(r.root, "escape-rel")))
	must(os.Symlink("/etc/passwd", filepath.Join(r.root, "escape-abs")))
	must(os.Symlink("..", filepath.Join(r.root, "escape-dir")))
	must(os.Symlink("../../", filepath.Join(r.root, "targets", "up")))
	must(syscall.Mkfifo(filepath.Join(r.root, "fifo"), 0o644))
	return r
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// snapshot describes every entry under dir (without following symlinks),
// to show that nothing changed.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %v %d %d", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// testServer is a running Server on 127.0.0.1 with ports of its own.
type testServer struct {
	*Server
	repo      *testRepo
	http      string // "127.0.0.1:port"
	ftp       string
	accessLog *testenv.Buffer
	logs      *testenv.Buffer
	stop      func() // stops the server and waits for Serve to return
}

// accessLogText flushes the access log and returns it.
func (ts *testServer) accessLogText() string {
	ts.alog.flush()
	return ts.accessLog.String()
}

// logHas waits up to 5 s for the access log to contain s: a line is
// written just after its response, so a client can be done before it.
func (ts *testServer) logHas(s string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(ts.accessLogText(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// startServer serves r on 127.0.0.1 with the test defaults, changed by
// edit if not nil.
func startServer(t testing.TB, r *testRepo, edit func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{repo: r, accessLog: &testenv.Buffer{}, logs: &testenv.Buffer{}}
	cfg := Config{LiveUpdate: config.LiveUpdate{
		Root:         r.root,
		HTTPAddr:     "127.0.0.1:0",
		FTPAddr:      "127.0.0.1:0",
		PassivePorts: passiveRange(t),
		IdleTimeout:  20 * time.Second,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	},
		Logger:    slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AccessLog: ts.accessLog,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	if a := s.HTTPAddr(); a != nil {
		ts.http = a.String()
	}
	if a := s.FTPAddr(); a != nil {
		ts.ftp = a.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Serve did not return 30 s after its context was cancelled")
			}
		})
	}
	t.Cleanup(func() {
		ts.stop()
		if t.Failed() {
			t.Logf("server log:\n%s\naccess log:\n%s", ts.logs.String(), ts.accessLogText())
		}
	})
	return ts
}

// passiveRange returns a range of 40 ports for one test server; the
// server scans all of it, so a port taken by someone else costs nothing.
func passiveRange(t testing.TB) config.PortRange {
	passiveMu.Lock()
	defer passiveMu.Unlock()
	lo := passiveNext
	passiveNext += 40
	if passiveNext > 63000 {
		passiveNext = 42000
	}
	return config.PortRange{Lo: uint16(lo), Hi: uint16(lo + 39)}
}

var (
	passiveMu   sync.Mutex
	passiveNext = 42000 + (os.Getpid()%400)*40
)

// runTool runs a client program with a time limit and returns its
// combined output and its error.
func runTool(t testing.TB, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "LC_ALL=C", "http_proxy=", "https_proxy=", "ftp_proxy=", "all_proxy=", "no_proxy=*")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rawFTP is a minimal FTP client that sends exactly the bytes it is given.
type rawFTP struct {
	t    testing.TB
	conn net.Conn
	r    *textproto.Reader
}

func dialFTP(t testing.TB, addr string) *rawFTP {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &rawFTP{t: t, conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	if code, msg := f.read(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return f
}

// login dials and logs in anonymously.
func loginFTP(t testing.TB, addr string) *rawFTP {
	t.Helper()
	f := dialFTP(t, addr)
	f.expect(331, "USER anonymous")
	f.expect(230, "PASS guest@")
	return f
}

// read reads one (possibly multi-line) reply.
func (f *rawFTP) read() (int, string) {
	f.t.Helper()
	f.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	code, msg, err := f.r.ReadResponse(0)
	if err != nil && code == 0 {
		f.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

// cmd sends one line (CRLF appended) and returns the reply.
func (f *rawFTP) cmd(line string) (int, string) {
	f.t.Helper()
	f.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(f.conn, line+"\r\n"); err != nil {
		f.t.Fatalf("sending %q: %v", line, err)
	}
	return f.read()
}

func (f *rawFTP) expect(code int, line string) string {
	f.t.Helper()
	c, msg := f.cmd(line)
	if c != code {
		f.t.Fatalf("%q: got %d %s, want %d", line, c, msg, code)
	}
	return msg
}

// epsv opens a passive data connection with EPSV.
func (f *rawFTP) epsv() net.Conn {
	f.t.Helper()
	msg := f.expect(229, "EPSV")
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	port, err := strconv.Atoi(msg[i+4 : j])
	if err != nil {
		f.t.Fatalf("EPSV reply %q", msg)
	}
	host, _, _ := net.SplitHostPort(f.conn.RemoteAddr().String())
	dc, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { dc.Close() })
	return dc
}

// transfer sends a command that uses a data connection (RETR, LIST...)
// and returns the preliminary reply code, the data and the final reply
// code (0 when there is no final reply because the first one failed).
func (f *rawFTP) transfer(line string) (first int, data []byte, final int) {
	f.t.Helper()
	dc := f.epsv()
	first, _ = f.cmd(line)
	if first != 150 {
		return first, nil, 0
	}
	dc.SetReadDeadline(time.Now().Add(15 * time.Second))
	data, _ = io.ReadAll(dc)
	final, _ = f.read()
	return first, data, final
}
