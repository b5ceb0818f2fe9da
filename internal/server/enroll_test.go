package server_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// TestEnrollmentProof: the enrollment answer carries the server's signed
// statement of its epoch and latest sequence, for this agent and this
// request's nonce; it proves the key the agent pins.
func TestEnrollmentProof(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for range 2 {
		if _, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{All: true}}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now().Truncate(time.Millisecond)
	en := f.enroll(t, "lab") // checks agent, nonce, epoch and sequence
	e, _ := verifyStatement(t, f.srv.PublicKey(), en.Proof)
	if e.Epoch != f.srv.Epoch() || e.Seq != 2 || e.Issued.Before(before) || e.Issued.After(time.Now()) {
		t.Fatalf("proof header %+v, want epoch %d, sequence 2, issued now", e.Header, f.srv.Epoch())
	}
	// A wrong pin shows: the proof does not verify under another key.
	other, _, _ := ed25519.GenerateKey(nil)
	if _, err := wire.Verify(en.Proof, other, time.Now()); err == nil {
		t.Fatal("the proof verifies under another key")
	}
	// Two enrollments never share a proof.
	if en2 := f.enroll(t); string(en2.Proof) == string(en.Proof) {
		t.Fatal("two enrollments got the same proof")
	}
}

// rawEnroll posts body to /v1/enroll and returns the status code and the
// Retry-After header, or the transport error (a refused body may close the
// connection before the client has written it all).
func rawEnroll(hc *http.Client, url string, body io.Reader) (int, string, error) {
	req, err := http.NewRequest("POST", api.RouteEnroll.URL(url+"/vigil", nil), body)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// heldBody is an enrollment request whose secret is n bytes of x,
// generated as it is read (the client holds none of it in memory); after
// them it waits for release before it ends, so that every request of a
// flood is in flight at once. It tells arrived when it starts waiting.
type heldBody struct {
	r       io.Reader
	arrived func()
	release <-chan struct{}
	waited  bool
	tail    io.Reader
}

func newHeldBody(n int64, arrived func(), release <-chan struct{}) *heldBody {
	return &heldBody{
		r:       io.MultiReader(strings.NewReader(`{"secret":"`), io.LimitReader(repeatReader('x'), n)),
		arrived: arrived, release: release, tail: strings.NewReader(`"}`),
	}
}

func (b *heldBody) Read(p []byte) (int, error) {
	if n, err := b.r.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	if !b.waited {
		b.waited = true
		b.arrived()
		<-b.release
	}
	return b.tail.Read(p)
}

// TestEnrollmentFloodBounded: 300 enrollment requests of almost 1 MiB
// each, without credentials, all in flight at once, are refused without
// the server's heap growing beyond a bound (before the fix, each handler
// held its whole body: hundreds of MiB), and none enrolls anything.
func TestEnrollmentFloodBounded(t *testing.T) {
	// Not parallel: it measures this process's heap.
	f := newFixture(t)
	const requests, size = 300, 1<<20 - 1024
	tr := &http.Transport{MaxConnsPerHost: requests, MaxIdleConnsPerHost: requests, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	// Bodies are released once each request has either sent its bulk or
	// ended (the server refused it without reading it all).
	var (
		mu       sync.Mutex
		pending  = requests
		release  = make(chan struct{})
		codes    = map[int]int{}
		errs     int
		created  int
		wg       sync.WaitGroup
		settleMu sync.Mutex
	)
	settle := func() {
		settleMu.Lock()
		defer settleMu.Unlock()
		if pending--; pending == 0 {
			close(release)
		}
	}
	for range requests {
		wg.Go(func() {
			once := sync.OnceFunc(settle)
			code, _, err := rawEnroll(hc, f.agentBase, newHeldBody(size, once, release))
			once()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			codes[code]++
			if code == http.StatusCreated {
				created++
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base)
	t.Logf("answers %v, %d connections closed early; heap grew by at most %.1f MiB", codes, errs, float64(grew)/(1<<20))
	if created > 0 {
		t.Fatalf("%d requests without a valid secret enrolled", created)
	}
	if limit := int64(64 << 20); grew > limit {
		t.Fatalf("the heap grew by %d MiB during the flood, want at most %d MiB", grew>>20, limit>>20)
	}
	agents, err := f.admin().Agents(context.Background())
	if err != nil || len(agents) != 0 {
		t.Fatalf("agents after the flood: %v, %v", agents, err)
	}
}

// TestEnrollmentConcurrencyBounded: beyond MaxEnrolling enrollments in
// progress, the next is refused at once with 503 and Retry-After; once
// they end, enrollment works again.
func TestEnrollmentConcurrencyBounded(t *testing.T) {
	t.Parallel()
	f := newFixtureAt(t, t.TempDir(), func(c *server.Config) { c.MaxEnrolling = 2 })
	addr := strings.TrimPrefix(f.agentBase, "http://")
	body := fmt.Sprintf(`{"secret":"wrong","nonce":"%s","hostname":"slow"}`, newNonce())
	// Two requests whose handlers have started reading their bodies: the
	// server sends "100 Continue" when a handler first reads, which is
	// after it took its slot.
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", "/vigil"+api.RouteEnroll.Path(), len(body))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, "100 Continue") {
			t.Fatalf("waiting for 100 Continue: %q, %v", line, err)
		}
	}
	code, retry, err := rawEnroll(http.DefaultClient, f.agentBase, strings.NewReader(body))
	if err != nil || code != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("third enrollment at once: %d, Retry-After %q, %v; want 503 with Retry-After", code, retry, err)
	}
	for _, c := range conns {
		io.WriteString(c, body)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, "403") {
			t.Fatalf("slow enrollment's answer %q, %v; want 403", line, err)
		}
		c.Close()
	}
	// The slots are free again once the handlers returned; an answer to a
	// later request proves nothing holds one (a 503 here would be a leak).
	f.enroll(t)
}

// TestWrongSecretLogBounded: a flood of wrong-secret enrollments with
// huge, hostile host names writes a bounded number of short, escaped log
// lines (before the fix: one line per request, holding the whole name).
func TestWrongSecretLogBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	host, _ := json.Marshal(strings.Repeat("\x1b]0;owned\x07\n\tfake=row ", 200)) // 6.6 KiB of JSON
	body := fmt.Sprintf(`{"secret":"nope","hostname":%s}`, host)
	start := time.Now()
	const requests = 200
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range requests {
		wg.Go(func() {
			code, _, err := rawEnroll(http.DefaultClient, f.agentBase, strings.NewReader(body))
			if err == nil && code == http.StatusForbidden {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if refused.Load() != requests {
		t.Fatalf("%d of %d wrong-secret requests answered 403", refused.Load(), requests)
	}
	lines := f.log.lines("wrong secret")
	// One line per 10 s at most (and the first at once).
	if max := 1 + int(elapsed/(10*time.Second)); len(lines) == 0 || len(lines) > max {
		t.Fatalf("%d log lines for %d refusals in %v, want 1 to %d:\n%s", len(lines), requests, elapsed, max, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if len(l) > 512 || strings.ContainsAny(l, "\x1b\x07\t") {
			t.Fatalf("log line of %d bytes, or with control characters: %q", len(l), l)
		}
	}
	t.Logf("%s", lines)
	if all := f.log.String(); len(all) > 4096 || strings.Contains(all, "owned\x07") {
		t.Fatalf("the flood wrote %d bytes of log", len(all))
	}
}

// TestPlainHTTPWarning: serving the agent API over plain HTTP on an
// address other hosts reach (here the wildcard) logs one warning naming
// the address and -tls-cert; on loopback it does not.
func TestPlainHTTPWarning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen string
		warn   bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}} {
		t.Run(tc.listen, func(t *testing.T) {
			f := newFixture(t)
			agentLn, err := net.Listen("tcp4", tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			adminLn, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- f.srv.Serve(ctx, agentLn, adminLn) }()
			defer func() {
				cancel()
				<-served
			}()
			// The admin API answers once Serve is serving, after its check.
			admin := &api.Client{Base: "http://" + adminLn.Addr().String(), Auth: f.srv.AdminToken()}
			if err := admin.Call(ctx, api.RouteAdminServer, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			lines := f.log.lines("level=WARN", "plain HTTP")
			if !tc.warn {
				if len(lines) != 0 {
					t.Fatalf("warning on loopback: %q", lines)
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], agentLn.Addr().String()) || !strings.Contains(lines[0], "-tls-cert") {
				t.Fatalf("warnings %q, want one naming %s and -tls-cert", lines, agentLn.Addr())
			}
		})
	}
}

// TestDataDirMustBePrivate: the server refuses to start when other users
// can read its secrets, and names the chmod that fixes it; after running
// that command it starts.
func TestDataDirMustBePrivate(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// t.TempDir's parent keeps others out; open it, as /var/lib is.
	if err := os.Chmod(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "vigil server")
	open := func() error {
		s, err := server.New(server.Config{Server: config.Server{
			DataDir:        dir,
			Interface:      testenv.Loopback(t),
			TTL:            0,
			BeaconInterval: time.Hour,
			Port:           20000 + int(time.Now().UnixNano()%40000),
		},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, func(p string) (store.Store, error) { return sqlite.Open(p) })
		if err == nil {
			s.Close()
		}
		return err
	}
	if err := open(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	for _, tc := range []struct {
		name  string
		modes map[string]os.FileMode
		want  []string
	}{
		{"directory 0755", map[string]os.FileMode{"": 0o755}, []string{"mode 0755", "chmod 700 '" + dir + "'"}},
		{"key 0644", map[string]os.FileMode{server.FileSigningKey: 0o644}, []string{"signing.key has mode 0644", "chmod 600 '" + filepath.Join(dir, server.FileSigningKey) + "'"}},
		{"all readable", map[string]os.FileMode{"": 0o755, server.FileSigningKey: 0o644, server.FileAdminToken: 0o640, server.FileEnrollSecret: 0o604},
			[]string{"admin.token has mode 0640", "enroll.secret has mode 0604", "chmod 700 '" + dir + "' && chmod 600 '"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, m := range tc.modes {
				if err := os.Chmod(filepath.Join(dir, name), m); err != nil {
					t.Fatal(err)
				}
			}
			err := open()
			if err == nil {
				t.Fatal("the server started with secrets other users can read")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			// The command the error names fixes it.
			_, cmd, ok := strings.Cut(err.Error(), "run ")
			cmd, _, _ = strings.Cut(cmd, " (and,")
			if !ok {
				t.Fatalf("no command in %q", err)
			}
			if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v %s", cmd, err, out)
			}
			if err := open(); err != nil {
				t.Fatalf("after %s: %v", cmd, err)
			}
		})
	}
}
