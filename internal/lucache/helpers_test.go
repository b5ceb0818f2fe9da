package lucache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// defFiles returns the files of definitions release version: a small
// signature file and a pseudo-random one of size bytes.
func defFiles(version string, size int) map[string][]byte {
	n := 0
	fmt.Sscan(version, &n)
	rng := rand.New(rand.NewPCG(uint64(n), 11))
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	return map[string][]byte{
		"main.hdb": fmt.Appendf(nil, "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature-%s\n", version),
		"bulk.ldb": blob,
	}
}

// vendor is the upstream: a signed repository (internal/publish) served
// by a real LiveUpdate server over HTTP and FTP, and over HTTP through a
// proxy that records every request the cache makes.
type vendor struct {
	t  testing.TB
	r  *publish.Repo
	up *liveupdatetest.Server

	proxy *httptest.Server

	mu   sync.Mutex
	reqs []string      // paths asked through the proxy
	hold chan struct{} // when set, target requests wait for it to close
	held int           // target requests waiting on hold
}

func newVendor(t testing.TB) *vendor {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := &vendor{t: t, r: r}
	v.up = liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: r.PublicDir()}})
	target, _ := url.Parse(v.up.HTTPURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = nil
	v.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v.mu.Lock()
		v.reqs = append(v.reqs, req.URL.Path)
		hold := v.hold
		if hold != nil && strings.HasPrefix(req.URL.Path, "/targets/") {
			v.held++
		}
		v.mu.Unlock()
		if hold != nil && strings.HasPrefix(req.URL.Path, "/targets/") {
			<-hold
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(v.proxy.Close)
	return v
}

// url is the repository's URL through the recording proxy.
func (v *vendor) url() string { return v.proxy.URL }

// publish adds definitions release version (about size bytes) and
// publishes it.
func (v *vendor) publish(version string, size int) {
	v.t.Helper()
	if err := v.r.AddDefinitionsData(version, defFiles(version, size)); err != nil {
		v.t.Fatal(err)
	}
	if err := v.r.Publish(publish.PublishOptions{}); err != nil {
		v.t.Fatal(err)
	}
}

func (v *vendor) rootJSON() []byte {
	v.t.Helper()
	b, err := os.ReadFile(v.r.RootPath())
	if err != nil {
		v.t.Fatal(err)
	}
	return b
}

func (v *vendor) rootFile() string {
	v.t.Helper()
	p := filepath.Join(v.t.TempDir(), "1.root.json")
	if err := os.WriteFile(p, v.rootJSON(), 0o644); err != nil {
		v.t.Fatal(err)
	}
	return p
}

// delta returns the served path ("/targets/definitions/deltas/SHA.B-V.delta")
// of the delta from release base to release version.
func (v *vendor) delta(base, version string) string {
	v.t.Helper()
	dir := filepath.Join(v.r.PublicDir(), "targets", "definitions", "deltas")
	es, err := os.ReadDir(dir)
	if err != nil {
		v.t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasSuffix(e.Name(), "."+base+"-"+version+".delta") {
			return "/targets/definitions/deltas/" + e.Name()
		}
	}
	v.t.Fatalf("no delta from %s to %s in %s", base, version, dir)
	return ""
}

// target returns the served path ("/targets/definitions/SHA.V.tar") of
// release version's bundle, and its bytes.
func (v *vendor) target(version string) (string, []byte) {
	v.t.Helper()
	dir := filepath.Join(v.r.PublicDir(), "targets", "definitions")
	es, err := os.ReadDir(dir)
	if err != nil {
		v.t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasSuffix(e.Name(), "."+version+".tar") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				v.t.Fatal(err)
			}
			return "/targets/definitions/" + e.Name(), b
		}
	}
	v.t.Fatalf("no bundle of release %s in %s", version, dir)
	return "", nil
}

// count returns how many requests for path the upstream got through the
// proxy.
func (v *vendor) count(path string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, p := range v.reqs {
		if p == path {
			n++
		}
	}
	return n
}

// targetRequests returns the requests under /targets/ the upstream got.
func (v *vendor) targetRequests() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, p := range v.reqs {
		if strings.HasPrefix(p, "/targets/") {
			out = append(out, p)
		}
	}
	return out
}

// testCache is a Cache serving on loopback until its test ends.
type testCache struct {
	*Cache
	httpURL, ftpURL string
	log             *testenv.Buffer
}

// startCache starts a cache of v's repository (through the proxy unless
// cfg.Upstream is set), HTTP and FTP on 127.0.0.1.
func startCache(t testing.TB, v *vendor, cfg Config) *testCache {
	t.Helper()
	if cfg.Upstream == "" {
		cfg.Upstream = v.url()
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "cache")
	}
	cfg.Root = v.rootJSON()
	cfg.LiveUpdate.HTTPAddr, cfg.LiveUpdate.FTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	log := &testenv.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cache: %v", err)
		}
		if t.Failed() {
			t.Logf("cache log:\n%s", log)
		}
	})
	return &testCache{Cache: c, httpURL: "http://" + c.HTTPAddr().String(), ftpURL: "ftp://" + c.FTPAddr().String(), log: log}
}

// agent is an agent's definitions updater pointed at one server.
type agent struct {
	u    *definitions.Updater
	defs string
}

func newAgent(t testing.TB, server, rootFile string) *agent {
	t.Helper()
	defs := filepath.Join(t.TempDir(), "definitions")
	u, err := definitions.New(definitions.Config{
		Servers:        []string{server},
		TrustedRoot:    rootFile,
		StateDir:       filepath.Join(t.TempDir(), "state"),
		DefinitionsDir: defs,
		Timeout:        5 * time.Second,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &agent{u: u, defs: defs}
}

func (a *agent) update(t testing.TB) (definitions.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.u.Update(ctx)
}

// mustUpdate updates and checks that version is installed afterwards.
func (a *agent) mustUpdate(t testing.TB, version string) definitions.Result {
	t.Helper()
	res, err := a.update(t)
	if err != nil {
		t.Fatalf("agent update: %v", err)
	}
	if res.Version != version {
		t.Fatalf("agent has definitions %q after the update (%+v), want %q", res.Version, res, version)
	}
	return res
}

// get fetches u with net/http and returns the status and body.
func get(t testing.TB, u string) (int, []byte) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// waitFor waits until cond holds, failing the test after 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
