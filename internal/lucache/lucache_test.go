package lucache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/publish"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// TestAgentsUpdateThroughCache: agents (the real definitions updater) update
// from the cache over HTTP and over FTP. The first update fills the
// target lazily, with one upstream download; a second agent's update is
// a hit, with none; a release published upstream reaches the agents on
// their next update (MetadataMaxAge 0: every timestamp.json request asks
// the upstream).
func TestAgentsUpdateThroughCache(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 256<<10)
			c := startCache(t, v, Config{})
			server := c.httpURL
			if proto == "ftp" {
				server = c.ftpURL
			}
			root := v.rootFile()
			t1, body1 := v.target("1")
			if _, err := os.Stat(filepath.Join(c.Dir(), filepath.FromSlash(t1))); err == nil {
				t.Fatal("the target is in the cache before any request")
			}

			a := newAgent(t, server, root)
			if res := a.mustUpdate(t, "1"); !res.Changed {
				t.Errorf("first update: %+v, want a change", res)
			}
			if n := v.count(t1); n != 1 {
				t.Errorf("the upstream was asked %d times for %s, want once", n, t1)
			}
			got, err := os.ReadFile(filepath.Join(c.Dir(), filepath.FromSlash(t1)))
			if err != nil || !bytes.Equal(got, body1) {
				t.Fatalf("the cache's copy of %s: %v (equal: %v)", t1, err, bytes.Equal(got, body1))
			}
			st := c.Stats()
			if st.Fills != 1 || st.FillBytes != int64(len(body1)) || st.TargetHits != 0 {
				t.Errorf("after the first update: %+v, want one fill of %d bytes and no target hit", st, len(body1))
			}

			b := newAgent(t, server, root)
			b.mustUpdate(t, "1")
			if n := v.count(t1); n != 1 {
				t.Errorf("second agent: the upstream was asked %d times for %s, want still once", n, t1)
			}
			st = c.Stats()
			if st.Fills != 1 || st.TargetHits != 1 {
				t.Errorf("after the second update: %+v, want still one fill and one target hit", st)
			}

			// Release 2 changes one line of release 1: the agents take
			// the delta from 1 to 2, which the cache fills once, and
			// nobody fetches release 2 whole.
			files := defFiles("1", 256<<10)
			files["main.hdb"] = defFiles("2", 0)["main.hdb"]
			if err := v.r.AddDefinitionsData("2", files); err != nil {
				t.Fatal(err)
			}
			if err := v.r.Publish(publish.PublishOptions{}); err != nil {
				t.Fatal(err)
			}
			t2, _ := v.target("2")
			d12 := v.delta("1", "2")
			if res := a.mustUpdate(t, "2"); !res.Changed || res.Deltas != 1 {
				t.Errorf("update after a new release: %+v, want a change through one delta", res)
			}
			b.mustUpdate(t, "2")
			if n := v.count(d12); n != 1 {
				t.Errorf("the upstream was asked %d times for %s, want once", n, d12)
			}
			if n := v.count(t2); n != 0 {
				t.Errorf("the upstream was asked %d times for %s, want never (the agents take the delta)", n, t2)
			}
			st = c.Stats()
			if st.Fills != 2 || st.TargetHits != 2 || st.RefreshesUpdated < 2 || st.TargetVerificationFailures != 0 || st.MetadataVerificationFailures != 0 {
				t.Errorf("after the second release: %+v, want two fills (release 1, the delta) and two target hits", st)
			}
		})
	}
}

// TestFTPUpstream: the cache fills from an FTP upstream as well.
func TestFTPUpstream(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 128<<10)
	c := startCache(t, v, Config{Upstream: v.up.FTPURL})
	a := newAgent(t, c.httpURL, v.rootFile())
	a.mustUpdate(t, "1")
	if st := c.Stats(); st.Fills != 1 || st.RefreshesUpdated != 1 {
		t.Errorf("stats %+v, want one refresh and one fill", st)
	}
	if n := len(v.targetRequests()); n != 0 {
		t.Errorf("the HTTP proxy saw %d target requests, want none (the upstream is FTP)", n)
	}
}

// TestMetadataMaxAge: within MetadataMaxAge the cache does not ask the
// upstream again, so a new release is not seen; once it has passed, the
// next timestamp.json request refreshes and the release reaches agents.
func TestMetadataMaxAge(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 64<<10)
	c := startCache(t, v, Config{MetadataMaxAge: time.Hour})
	var mu sync.Mutex
	now := time.Now()
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := newAgent(t, c.httpURL, v.rootFile())
	a.mustUpdate(t, "1")
	asked := v.count("/metadata/timestamp.json")

	v.publish("2", 64<<10)
	if res := a.mustUpdate(t, "1"); res.Changed {
		t.Errorf("an update within MetadataMaxAge changed: %+v", res)
	}
	if n := v.count("/metadata/timestamp.json"); n != asked {
		t.Errorf("the upstream was asked for timestamp.json %d more times within MetadataMaxAge", n-asked)
	}

	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	if res := a.mustUpdate(t, "2"); !res.Changed {
		t.Errorf("update after MetadataMaxAge: %+v", res)
	}
	if st := c.Stats(); st.RefreshesUpdated != 2 {
		t.Errorf("stats %+v, want two refreshes that updated", st)
	}
}

// TestTamperedTargetRefused: a target changed upstream after it was
// signed is refused: the client gets 503, nothing is kept (no file, no
// partial), the failure is counted, and an agent's update fails.
func TestTamperedTargetRefused(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 64<<10)
	c := startCache(t, v, Config{})
	p, body := v.target("1")
	bad := bytes.Clone(body)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(filepath.Join(v.r.PublicDir(), filepath.FromSlash(p)), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, b := get(t, c.httpURL+"/metadata/timestamp.json"); code != 200 {
		t.Fatalf("timestamp.json: %d %s", code, b)
	}
	code, b := get(t, c.httpURL+p)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("GET of the tampered target: %d %q, want 503", code, b)
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), filepath.FromSlash(p))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the tampered target was kept: %v", err)
	}
	if parts, _ := os.ReadDir(filepath.Join(c.Dir(), ".mirror", "fill")); len(parts) != 0 {
		t.Errorf("partial files kept: %v", parts)
	}
	st := c.Stats()
	if st.FillsRefused != 1 || st.TargetVerificationFailures != 1 || st.Fills != 0 {
		t.Errorf("stats %+v, want one refused fill", st)
	}
	if !strings.Contains(c.log.String(), "does not verify: refused, nothing kept") {
		t.Errorf("the refusal is not logged:\n%s", c.log)
	}
	if _, err := newAgent(t, c.ftpURL, v.rootFile()).update(t); err == nil {
		t.Error("an agent's update over FTP succeeded with a tampered target")
	}
	// Fixed upstream: the next request fills it.
	if err := os.WriteFile(filepath.Join(v.r.PublicDir(), filepath.FromSlash(p)), body, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, b := get(t, c.httpURL+p); code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("GET after the upstream was fixed: %d (%d bytes)", code, len(b))
	}
}

// TestUnknownNamesNotFetched: names no verified state names — a target
// path with a made-up hash, metadata versions that do not exist, files
// outside the repository layout — are not found and never asked of the
// upstream.
func TestUnknownNamesNotFetched(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 16<<10)
	c := startCache(t, v, Config{})
	get(t, c.httpURL+"/metadata/timestamp.json")
	real, _ := v.target("1")
	names := []string{
		"/targets/definitions/" + strings.Repeat("ab", 32) + ".1.tar",
		"/targets/definitions/" + strings.Repeat("cd", 32) + ".9.tar",
		"/targets/definitions/1.tar",
		"/metadata/7.snapshot.json",
		"/metadata/2.root.json",
		"/README.txt",
		strings.Replace(real, ".1.tar", ".2.tar", 1),
	}
	before := map[string]int{}
	for _, n := range names {
		before[n] = v.count(n) // the refresh asked for 2.root.json
	}
	for _, n := range names {
		if code, _ := get(t, c.httpURL+n); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", n, code)
		}
	}
	for _, n := range names {
		if k := v.count(n) - before[n]; k != 0 {
			t.Errorf("the upstream was asked %d times for %s", k, n)
		}
	}
	if rs := v.targetRequests(); len(rs) != 0 {
		t.Errorf("the upstream was asked for targets %v", rs)
	}
	if st := c.Stats(); st.Unknown != int64(len(names)) || st.Fills+st.FillsFailed+st.FillsNotFound+st.FillsRefused != 0 {
		t.Errorf("stats %+v, want %d unknown requests and no fill", st, len(names))
	}
}

// TestUpstreamDown: with the upstream gone, the cache serves its last
// verified state and the targets it holds: a new agent updates from it.
// Before any state, a cache whose upstream is down answers "try later".
func TestUpstreamDown(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 64<<10)
	c := startCache(t, v, Config{})
	root := v.rootFile()
	newAgent(t, c.httpURL, root).mustUpdate(t, "1")
	v.proxy.Close()

	newAgent(t, c.httpURL, root).mustUpdate(t, "1")
	newAgent(t, c.ftpURL, root).mustUpdate(t, "1")
	st := c.Stats()
	if st.RefreshesFailed < 2 || st.Fills != 1 || st.TargetHits != 2 {
		t.Errorf("stats %+v, want failed refreshes, one fill and two target hits", st)
	}
	if !strings.Contains(c.log.String(), "serving the last verified state") {
		t.Errorf("the failed refresh is not logged:\n%s", c.log)
	}

	// A cache that never reached its upstream.
	c2 := startCache(t, v, Config{Upstream: v.url()})
	if code, b := get(t, c2.httpURL+"/metadata/timestamp.json"); code != http.StatusServiceUnavailable {
		t.Errorf("timestamp.json from a cache without a state: %d %q, want 503", code, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc, err := transport.DialFTP(ctx, c2.FTPAddr().String(), "anonymous", "x", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Quit()
	_, _, err = fc.Retr("/metadata/timestamp.json", 0)
	if te, ok := transport.FTPReply(err); !ok || te.Code != 450 {
		t.Errorf("FTP RETR timestamp.json from a cache without a state: %v, want 450", err)
	}
}

// TestConcurrentRequestsOneDownload: many clients asking at once for a
// target the cache lacks share one upstream download.
func TestConcurrentRequestsOneDownload(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 1<<20)
	c := startCache(t, v, Config{})
	p, body := v.target("1")
	get(t, c.httpURL+"/metadata/timestamp.json")

	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release) // before the servers stop, should the test fail
	v.mu.Lock()
	v.hold = hold
	v.mu.Unlock()
	const clients = 16
	type result struct {
		code int
		sum  string
	}
	results := make(chan result, clients)
	for i := range clients {
		go func() {
			u := c.httpURL + p
			if i%2 == 1 {
				u = c.httpURL + p + "?n=1" // the slow path too
			}
			res, err := http.Get(u)
			if err != nil {
				results <- result{code: -1}
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			results <- result{res.StatusCode, sha256hex(b)}
		}()
	}
	served := strings.TrimPrefix(p, "/")
	// Every client waits for the one download, which the upstream holds.
	waitFor(t, "every client to wait for the download, held upstream", func() bool {
		c.mu.Lock()
		f := c.fills[served]
		waiting := f != nil && f.waiters == clients
		c.mu.Unlock()
		v.mu.Lock()
		defer v.mu.Unlock()
		return waiting && v.held >= 1
	})
	v.mu.Lock()
	held := v.held
	v.mu.Unlock()
	release()
	for range clients {
		r := <-results
		if r.code != 200 || r.sum != sha256hex(body) {
			t.Errorf("a client got %d (sha256 %s)", r.code, r.sum)
		}
	}
	if n := v.count(p); n != 1 || held != 1 {
		t.Errorf("the upstream got %d requests for %s (%d held), want one", n, p, held)
	}
	if st := c.Stats(); st.Fills != 1 {
		t.Errorf("stats %+v, want one fill", st)
	}
}

// TestClientMidUpdate: a client that read timestamp.json before a refresh
// brought a new state still gets the old state's snapshot and targets
// metadata and its target (fetched then, since a kept state names it);
// once that state is no longer kept (Keep 1), its files are gone.
func TestClientMidUpdate(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 32<<10)
	c := startCache(t, v, Config{Keep: 1})
	root := v.rootFile()

	// A client starts an update: it reads timestamp.json.
	code, tsRaw := get(t, c.httpURL+"/metadata/timestamp.json")
	if code != 200 {
		t.Fatalf("timestamp.json: %d", code)
	}
	ts, err := metadata.Timestamp().FromBytes(tsRaw)
	if err != nil {
		t.Fatal(err)
	}
	snapV := ts.Signed.Meta["snapshot.json"].Version
	oldTarget, oldBody := v.target("1")

	// A new release, and an agent's update that brings it into the cache.
	v.publish("2", 32<<10)
	newAgent(t, c.httpURL, root).mustUpdate(t, "2")
	if _, ts2 := get(t, c.httpURL+"/metadata/timestamp.json"); bytes.Equal(ts2, tsRaw) {
		t.Fatal("the cache still serves the first timestamp")
	}

	// The client goes on with the state it started with.
	code, snapRaw := get(t, c.httpURL+"/metadata/"+itoa(snapV)+".snapshot.json")
	if code != 200 || ts.Signed.Meta["snapshot.json"].VerifyLengthHashes(snapRaw) != nil {
		t.Fatalf("the previous state's snapshot: %d, or it does not match the old timestamp", code)
	}
	snap, err := metadata.Snapshot().FromBytes(snapRaw)
	if err != nil {
		t.Fatal(err)
	}
	tm := snap.Signed.Meta["targets.json"]
	code, targetsRaw := get(t, c.httpURL+"/metadata/"+itoa(tm.Version)+".targets.json")
	if code != 200 || tm.VerifyLengthHashes(targetsRaw) != nil {
		t.Fatalf("the previous state's targets metadata: %d, or it does not match the old snapshot", code)
	}
	if v.count(oldTarget) != 0 {
		t.Fatal("the old target was fetched before the client asked for it")
	}
	code, b := get(t, c.httpURL+oldTarget)
	if code != 200 || !bytes.Equal(b, oldBody) {
		t.Fatalf("the previous state's target: %d, %d bytes", code, len(b))
	}
	if n := v.count(oldTarget); n != 1 {
		t.Errorf("the upstream was asked %d times for the previous state's target, want once", n)
	}

	// Another release: the first state is no longer kept.
	v.publish("3", 32<<10)
	newAgent(t, c.httpURL, root).mustUpdate(t, "3")
	if code, _ := get(t, c.httpURL+"/metadata/"+itoa(snapV)+".snapshot.json"); code != http.StatusNotFound {
		t.Errorf("the snapshot of a state no longer kept: %d, want 404", code)
	}
	// Release 1's bundle is still a target of the current state (the
	// vendor's targets metadata lists every release): still served,
	// from the cache.
	if code, b := get(t, c.httpURL+oldTarget); code != 200 || !bytes.Equal(b, oldBody) {
		t.Errorf("release 1's bundle, named by the current state: %d", code)
	}
	if n := v.count(oldTarget); n != 1 {
		t.Errorf("the upstream was asked %d times for release 1's bundle, want still once", n)
	}
}

// TestRestartKeepsState: a cache started again on its directory serves
// the state and targets it holds, even with its upstream down.
func TestRestartKeepsState(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 32<<10)
	dir := filepath.Join(t.TempDir(), "cache")
	root := v.rootFile()
	c := startCache(t, v, Config{Dir: dir})
	newAgent(t, c.httpURL, root).mustUpdate(t, "1")
	v.proxy.Close()
	c2 := startCache(t, v, Config{Dir: dir})
	newAgent(t, c2.httpURL, root).mustUpdate(t, "1")
	if st := c2.Stats(); st.Fills != 0 || st.TargetHits != 1 || st.RefreshesFailed != 1 {
		t.Errorf("restarted cache: %+v, want a failed refresh, no fill, one target hit", st)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func lcHTTP() config.LiveUpdate { return config.LiveUpdate{HTTPAddr: "127.0.0.1:0"} }

// TestMetrics: the counters reach the Registerer under their names.
func TestMetrics(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 16<<10)
	reg := prometheus.NewRegistry()
	c := startCache(t, v, Config{Registerer: reg})
	newAgent(t, c.httpURL, v.rootFile()).mustUpdate(t, "1")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"vigil_lucache_fills_total{result=ok}":                   1,
		"vigil_lucache_refreshes_total{result=updated}":          1,
		"vigil_lucache_fill_bytes_total":                         float64(len(mustTarget(v, "1"))),
		"vigil_lucache_verification_failures_total{kind=target}": 0,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			js, _ := json.MarshalIndent(got, "", " ")
			t.Errorf("%s = %v (present %v), want %v; all:\n%s", k, g, ok, w, js)
		}
	}
	if got["vigil_lucache_hits_total{kind=metadata}"] < 1 {
		t.Errorf("no metadata hit counted")
	}
}

// TestRefusesOtherRepository: a cache directory holding another
// repository is refused by New.
func TestRefusesOtherRepository(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 16<<10)
	other := newVendor(t)
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata", "1.root.json"), other.rootJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Dir: dir, Upstream: v.url(), Root: v.rootJSON(), LiveUpdate: lcHTTP()})
	if err == nil || !strings.Contains(err.Error(), "another repository") {
		t.Fatalf("New on another repository's directory: %v", err)
	}
}

func mustTarget(v *vendor, version string) []byte {
	_, b := v.target(version)
	return b
}
