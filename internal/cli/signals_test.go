package cli

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store/pgtest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestMain lets the test binary be vigil itself: run with
// VIGIL_CLI_TEST_MAIN=1 it is Main with its arguments, so that the tests
// below send real signals to real vigil processes.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_CLI_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	code := m.Run()
	if err := pgtest.StopShared(); err != nil { // the PostgreSQL store's tests
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// processWait bounds every wait for a vigil process: far longer than any
// step takes, so that only a process that hangs (the bug) reaches it.
const processWait = 60 * time.Second

// vigilProc is a vigil process whose standard error is read line by line.
type vigilProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed when the process has exited and stderr is read
	mu    sync.Mutex
	log   []string
	err   error
}

func startVigil(t *testing.T, args ...string) *vigilProc {
	t.Helper()
	return startVigilEnv(t, nil, args...)
}

// startVigilEnv is startVigil with env added to the process's environment.
func startVigilEnv(t *testing.T, env []string, args ...string) *vigilProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "VIGIL_CLI_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &vigilProc{t: t, cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		p.err = cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("vigil %s stderr:\n%s", strings.Join(args, " "), p.stderr())
		}
	})
	return p
}

func (p *vigilProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// expect waits for the next line of standard error matching re, and
// returns it; lines before it that match none are skipped, lines matching
// forbid fail the test.
func (p *vigilProc) expect(re string, forbid ...string) string {
	p.t.Helper()
	want := regexp.MustCompile(re)
	timeout := time.After(processWait)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("vigil exited (%v) before logging a line matching %q", p.err, re)
			}
			for _, f := range forbid {
				if strings.Contains(l, f) {
					p.t.Fatalf("unexpected line %q", l)
				}
			}
			if want.MatchString(l) {
				return l
			}
		case <-timeout:
			p.t.Fatalf("no line matching %q within %v", re, processWait)
		}
	}
}

func (p *vigilProc) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatalf("signal %v: %v", s, err)
	}
}

// signalAndWait sends s and waits for the process to exit, whatever its
// exit status.
func (p *vigilProc) signalAndWait(s os.Signal) {
	p.t.Helper()
	p.signal(s)
	select {
	case <-p.done:
	case <-time.After(processWait):
		p.t.Fatalf("vigil still running %v after %v", processWait, s)
	}
}

// exitCode waits for the process to exit and returns its exit status (-1
// when a signal killed it).
func (p *vigilProc) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(processWait):
		p.t.Fatalf("vigil still running %v after being told to stop", processWait)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

// writeFileAtomic replaces path, as an editor or configuration tool does.
func writeFileAtomic(t *testing.T, path string, v map[string]any) {
	t.Helper()
	tmp := writePlist(t, filepath.Dir(path), ".new-"+filepath.Base(path), v)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A real vigil server sent SIGHUP stays up and re-reads its preference
// file: a new LogLevel takes effect at once (debug lines follow), a
// changed key that needs a restart is named, an invalid file is refused
// and changes nothing. Sent SIGTERM, it logs it and exits 0.
func TestServerSIGHUPAndSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := writePlist(t, dir, "server.plist", map[string]any{"LogLevel": "info", "BeaconInterval": 3600})
	lo := testenv.Loopback(t)
	p := startVigil(t, "server", "-config", conf, "-data-dir", filepath.Join(dir, "data"),
		"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-interface", lo, "-ttl", "0",
		"-port", strconv.Itoa(20000+rand.IntN(40000)))
	p.expect(`msg="server listening"`)

	p.signal(syscall.SIGHUP)
	p.expect(`level=INFO msg="received SIGHUP; reloading the preference file" file=`)
	p.expect(`msg="preference file reloaded; nothing changed"`, "level=DEBUG")

	writeFileAtomic(t, conf, map[string]any{"LogLevel": "debug", "BeaconInterval": 1800, "TTL": 5})
	p.signal(syscall.SIGHUP)
	p.expect(`level=WARN msg="preference changed; it takes effect at the next restart" key=BeaconInterval$`, "level=DEBUG")
	p.expect(`level=INFO msg="preference applied" key=LogLevel$`)
	// TTL is given on the command line, which wins: not a change.
	p.expect(`msg="preference file reloaded" file=\S+ applied=\[LogLevel\] restart_needed=\[BeaconInterval\]$`)

	p.signal(syscall.SIGHUP)
	p.expect(`level=DEBUG msg="reading the preference file"`)
	p.expect(`restart_needed=\[BeaconInterval\]$`)

	if err := os.WriteFile(conf, []byte("not a plist"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	p.expect(`level=ERROR msg="preference file not reloaded; nothing changed" file=\S+ err=.*not a property list`)

	p.signal(syscall.SIGTERM)
	p.expect(`level=INFO msg="received SIGTERM; stopping"`)
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// A real LiveUpdate server sent SIGHUP with LogLevel changed to debug in
// its preference file logs, at once, the debug lines of its own requests.
func TestLiveUpdateSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := filepath.Join(dir, "public")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "timestamp.json"), []byte(`{}`), 0o644)
	settings := map[string]any{"LogLevel": "info", "Root": root, "HTTP": "127.0.0.1:0", "FTP": "off"}
	conf := writePlist(t, dir, "liveupdate.plist", settings)
	p := startVigil(t, "liveupdate", "-config", conf)
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(p.expect(`msg="serving HTTP"`))[1]
	get := func() {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/no-such-file")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /no-such-file: %s", resp.Status)
		}
	}
	get()
	settings["LogLevel"] = "debug"
	settings["MaxConns"] = 10
	writeFileAtomic(t, conf, settings)
	p.signal(syscall.SIGHUP)
	p.expect(`level=INFO msg="preference applied" key=LogLevel$`, "level=DEBUG")
	p.expect(`level=WARN msg="preference changed; it takes effect at the next restart" key=MaxConns$`)
	get()
	p.expect(`level=DEBUG msg="http: not served" path=/no-such-file`)
	p.signal(syscall.SIGTERM)
	p.expect(`msg="received SIGTERM; stopping"`)
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// A real agent sent SIGHUP applies a new LogLevel and names the keys that
// need a restart; sent SIGTERM it logs it and exits 0.
func TestAgentSIGHUPAndSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ts := startAdminServer(t)
	settings := map[string]any{
		"NodeCommURL":        ts.agentURL,
		"ServerPublicKey":    base64.StdEncoding.EncodeToString(ts.srv.PublicKey()),
		"EnrollmentSecret":   ts.srv.EnrollSecret(),
		"StateDirectory":     filepath.Join(dir, "state"),
		"MulticastAddress":   ts.group,
		"MulticastPort":      ts.port,
		"MulticastInterface": ts.iface,
		"LogLevel":           "info",
	}
	conf := writePlist(t, dir, "agent.plist", settings)
	p := startVigil(t, "agent", "-config", conf)
	p.expect(`msg="agent running"`)
	settings["LogLevel"] = "debug"
	settings["Groups"] = []string{"lab"}
	writeFileAtomic(t, conf, settings)
	p.signal(syscall.SIGHUP)
	p.expect(`level=WARN msg="preference changed; it takes effect at the next restart" key=Groups$`, "level=DEBUG")
	p.expect(`level=INFO msg="preference applied" key=LogLevel$`)
	p.signal(syscall.SIGHUP)
	p.expect(`level=DEBUG msg="reading the preference file"`)
	p.signal(syscall.SIGTERM)
	p.expect(`msg="received SIGTERM; stopping"`)
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// blockOnFIFO returns once p has opened the FIFO path for reading; the
// write end is held open and nothing is written, so that p stays blocked
// in read until the test ends.
func blockOnFIFO(t *testing.T, path string, p *vigilProc) {
	t.Helper()
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0) // returns when a reader opens it
		if err != nil {
			opened <- nil
			return
		}
		opened <- f
	}()
	select {
	case f := <-opened:
		if f == nil {
			t.Fatal("opening the FIFO failed")
		}
		t.Cleanup(func() { f.Close() })
	case <-p.done:
		// Let the writer's open return.
		if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			r.Close()
		}
		t.Fatalf("vigil exited (%v) before reading its preference file", p.err)
	}
}

// Every part blocked at start-up — reading a preference file that is a
// FIFO nobody writes to — stays alive on SIGHUP and ends promptly on
// SIGTERM: after a short grace it logs that it exits, with status 1; a
// second SIGTERM ends it at once with 128+15.
func TestSIGTERMWhileStarting(t *testing.T) {
	t.Parallel()
	for _, part := range []string{"server", "agent", "liveupdate", "mirror"} {
		for _, twice := range []bool{false, true} {
			name := part
			if twice {
				name += "/twice"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fifo := filepath.Join(t.TempDir(), part+".plist")
				if err := syscall.Mkfifo(fifo, 0o600); err != nil {
					t.Fatal(err)
				}
				p := startVigil(t, part, "-config", fifo)
				blockOnFIFO(t, fifo, p)
				p.signal(syscall.SIGHUP)
				p.expect(`msg="received SIGHUP while starting; nothing to reload yet"`)
				p.signal(syscall.SIGTERM)
				p.expect(`level=INFO msg="received SIGTERM while starting; stopping" exit_within=2s`)
				want := 1
				if twice {
					p.signal(syscall.SIGTERM)
					p.expect(`level=ERROR msg="received SIGTERM again; exiting at once"`)
					want = 128 + int(syscall.SIGTERM)
				} else {
					p.expect(`level=ERROR msg="still running 2s after SIGTERM; exiting"`)
				}
				if code := p.exitCode(); code != want {
					t.Fatalf("exit status %d, want %d", code, want)
				}
			})
		}
	}
}
