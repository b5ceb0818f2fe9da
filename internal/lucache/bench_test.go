package lucache

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
)

// benchSize is the size of the target the benchmarks serve.
const benchSize = 10 << 20

// benchVendor publishes one definitions release of about benchSize bytes.
func benchVendor(b *testing.B) (*vendor, string) {
	b.Helper()
	v := newVendor(b)
	v.publish("1", benchSize)
	p, _ := v.target("1")
	return v, p
}

// fetchAll GETs u with client and reads the whole body.
func fetchAll(b *testing.B, client *http.Client, u string) int64 {
	res, err := client.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		b.Fatalf("GET %s: %d, %v", u, res.StatusCode, err)
	}
	return n
}

// BenchmarkServeCached serves a cached 10 MiB target over HTTP (a hit,
// on the fast path), against BenchmarkServePlain, a plain LiveUpdate
// server serving the same file.
func BenchmarkServeCached(b *testing.B) {
	v, p := benchVendor(b)
	c := startCache(b, v, Config{Upstream: v.up.HTTPURL})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	fetchAll(b, client, c.httpURL+"/metadata/timestamp.json")
	n := fetchAll(b, client, c.httpURL+p) // the fill
	b.SetBytes(n)
	b.ResetTimer()
	for b.Loop() {
		fetchAll(b, client, c.httpURL+p)
	}
	b.StopTimer()
	if st := c.Stats(); st.Fills != 1 {
		b.Fatalf("stats %+v: want one fill", st)
	}
}

// BenchmarkServePlain is BenchmarkServeCached's reference: package
// liveupdate serving the same file from the same kind of directory.
func BenchmarkServePlain(b *testing.B) {
	v, p := benchVendor(b)
	s := liveupdatetest.Start(b, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: v.r.PublicDir(), HTTPAddr: "127.0.0.1:0"}})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	b.SetBytes(fetchAll(b, client, s.HTTPURL+p))
	b.ResetTimer()
	for b.Loop() {
		fetchAll(b, client, s.HTTPURL+p)
	}
}

// BenchmarkFirstFill times the first request for a 10 MiB target through
// a fresh cache that has the metadata but not the target: download from
// the upstream (HTTP, loopback), verification, sync, rename, then
// serving. BenchmarkDirectUpstream is the same GET straight from the
// upstream.
func BenchmarkFirstFill(b *testing.B) {
	v, p := benchVendor(b)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		ctx, cancel := context.WithCancel(context.Background())
		cfg := Config{Upstream: v.up.HTTPURL, Dir: filepath.Join(b.TempDir(), "cache"), Root: v.rootJSON(), Timeout: 5 * time.Second}
		cfg.LiveUpdate.HTTPAddr = "127.0.0.1:0"
		c, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Serve(ctx) }()
		u := "http://" + c.HTTPAddr().String()
		fetchAll(b, client, u+"/metadata/timestamp.json")
		b.StartTimer()
		n := fetchAll(b, client, u+p)
		b.StopTimer()
		b.SetBytes(n)
		client.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if st := c.Stats(); st.Fills != 1 {
			b.Fatalf("stats %+v: want one fill", st)
		}
		b.StartTimer()
	}
}

// BenchmarkDirectUpstream is BenchmarkFirstFill's reference: the same
// file fetched straight from the upstream, on a new connection each time
// (the cache's first fill from an address opens one too).
func BenchmarkDirectUpstream(b *testing.B) {
	v, p := benchVendor(b)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	for b.Loop() {
		b.SetBytes(fetchAll(b, client, v.up.HTTPURL+p))
		b.StopTimer()
		client.CloseIdleConnections()
		b.StartTimer()
	}
}
