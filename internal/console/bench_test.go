package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

// The benchmarks' fleet: 100,000 agents and 1,000,000 results in a real
// SQLite store, made once per test binary (it takes a while) in a
// directory TestMain removes.
const (
	benchAgents  = 100_000
	benchGroups  = 20
	benchResults = 1_000_000
)

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
	benchKey  ed25519.PrivateKey
)

// benchFleet returns the path of the benchmarks' store, making it on
// first use: agents spread over 20 groups, three OSes, four agent
// versions and five definitions releases; 80 % online, 15 % late, 5 %
// missing, 0.1 % revoked; 5,000 detections; nine commands to every agent
// with a result from each, ten to a group of 5,000 with a result from
// each, and one to every agent in flight with half of them reported.
func benchFleet(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "vigil-console-bench-")
		if benchErr == nil {
			benchErr = makeBenchFleet(filepath.Join(benchDir, "vigil.db"))
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return filepath.Join(benchDir, "vigil.db")
}

func benchAgentID(i int) string { return fmt.Sprintf("agent-%06d", i) }

func makeBenchFleet(path string) error {
	ctx := context.Background()
	st, err := sqlite.Open(path)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	oses := []string{"linux", "linux", "linux", "darwin", "windows"}
	versions := []string{"1.4.0", "1.4.1", "1.4.2", "1.10.0"}
	defs := []string{"2026120201", "2026120101", "2026113001", "2026112901", ""}
	as := make([]store.Agent, 0, 10_000)
	for i := range benchAgents {
		seen := now.Add(-time.Duration(i%300) * time.Second) // online
		switch {
		case i%20 == 19:
			seen = now.Add(-8*24*time.Hour - time.Duration(i)*time.Second) // missing
		case i%20 >= 16:
			seen = now.Add(-time.Duration(1+i%100) * time.Hour) // late
		}
		a := store.Agent{
			ID: benchAgentID(i), TokenHash: make([]byte, 32), Hostname: fmt.Sprintf("host-%06d.corp.example", (i*7919)%benchAgents),
			OS: oses[i%len(oses)], Arch: "amd64", Version: versions[i%len(versions)], DefsVer: defs[(i/7)%len(defs)],
			Groups: []string{"all", fmt.Sprintf("g%02d", i%benchGroups)}, LastSeq: 0,
			EnrolledAt: now.Add(-60 * 24 * time.Hour), LastSeen: seen, LastCheckIn: seen,
			Counters: map[string]uint64{"executed": uint64(i % 50), "dropped_truncated": uint64(i % 3)},
		}
		if i%1000 == 999 {
			a.Revoked = now.Add(-time.Hour)
		}
		as = append(as, a)
		if len(as) == cap(as) {
			if err := st.ImportAgents(ctx, as); err != nil {
				return err
			}
			as = as[:0]
		}
	}
	for i := range 1000 {
		agent := benchAgentID(i * 97)
		ds := make([]store.Detection, 5)
		for j := range ds {
			ds[j] = store.Detection{AgentID: agent, Path: fmt.Sprintf("/home/u%d/file-%d.exe", i, j), Signature: fmt.Sprintf("Win.Trojan.Agent-%d", (i+j)%40),
				SHA256: strings.Repeat("ab", 32), DefsVer: "2026120201", FoundAt: now.Add(-time.Duration(i*j) * time.Minute)}
		}
		if _, err := st.RecordScan(ctx, store.Scan{AgentID: agent, ReportID: fmt.Sprintf("r%d", i), DefsVer: "2026120201",
			StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-time.Hour), Files: 100, Detections: ds, ReceivedAt: now}); err != nil {
			return err
		}
	}
	_, benchKey, _ = ed25519.GenerateKey(rand.Reader)
	is := &issuer{st: st, key: benchKey, now: func() time.Time { return now.Add(-2 * time.Hour) }}
	var rs []store.Result
	flush := func() error {
		err := st.RecordResults(ctx, rs)
		rs = rs[:0]
		return err
	}
	record := func(seq uint64, agents func(yield func(int) bool)) error {
		for i := range agents {
			if i%1000 == 999 {
				continue // revoked: its results are ignored
			}
			status := command.StatusOK
			if i%50 == 0 {
				status = "error"
			}
			rs = append(rs, store.Result{Seq: seq, AgentID: benchAgentID(i), Status: status, Output: "pong", ExecutedAt: now.Add(-time.Hour), ReceivedAt: now.Add(-time.Hour)})
			if len(rs) == 10_000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	}
	every := func(step, from, n int) func(yield func(int) bool) {
		return func(yield func(int) bool) {
			for i := from; i < n; i += step {
				if !yield(i) {
					return
				}
			}
		}
	}
	for k := range 20 {
		req := api.SendRequest{Name: "ping", Target: command.Target{All: true}}
		agents := every(1, 0, benchAgents)
		if k%2 == 1 {
			g := k / 2
			req.Target = command.Target{Groups: []string{fmt.Sprintf("g%02d", g)}}
			agents = every(benchGroups, g, benchAgents)
		}
		if k == 19 { // in flight: issued now, half reported
			is.now = time.Now
			req.Target = command.Target{All: true}
			agents = every(2, 0, benchAgents)
		}
		info, err := is.Send(ctx, req)
		if err != nil {
			return err
		}
		if err := record(info.Seq, agents); err != nil {
			return err
		}
	}
	return nil
}

// benchConsole returns a console on the benchmarks' store and the cookie
// of an operator's session.
func benchConsole(b *testing.B) (*Console, *http.Cookie) {
	b.Helper()
	st, err := sqlite.Open(benchFleet(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	con, err := New(Config{
		Store: st, Issuer: &issuer{st: st, key: benchKey, now: time.Now}, Audit: &auditLog{},
		Auth: &users{m: map[string]struct{ pw, role string }{"olga": {"op-secret", "operator"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"user": {"olga"}, "password": {"op-secret"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	con.ServeHTTP(rec, req)
	cs := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cs) == 0 {
		b.Fatalf("login: %d %q", rec.Code, rec.Body)
	}
	return con, cs[0]
}

// reportLatencies reports the 50th and 99th percentiles of ls.
func reportLatencies(b *testing.B, ls []time.Duration) {
	if len(ls) == 0 {
		return
	}
	slices.Sort(ls)
	pct := func(p float64) float64 {
		return float64(ls[min(len(ls)-1, int(float64(len(ls))*p))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkPages measures the server time of the console's pages (the
// handler's, from request to the last byte written) with 100,000 agents
// and 1,000,000 results in the store.
func BenchmarkPages(b *testing.B) {
	con, cookie := benchConsole(b)
	for _, p := range []struct{ name, path, want string }{
		{"agents-first", "/agents", benchAgentID(0)},
		{"agents-filtered", "/agents?group=g07&status=online&os=linux&sort=hostname&page=3", "g07"},
		{"agents-search", "/agents?q=host-0421", "host-0421"},
		{"agents-last", "/agents?page=2000", benchAgentID(benchAgents - 1)},
		{"agents-last-by-lastseen", "/agents?sort=lastseen&dir=desc&page=2000", "agent-"},
		{"agents-by-defs", "/agents?sort=defs&page=1000", "agent-"},
		{"dashboard", "/", "in flight"},
		{"agent", "/agents/" + benchAgentID(97*3), "Win.Trojan"},
		{"commands", "/commands", "ping"},
		{"detections", "/detections?signature=agent-7", "Win.Trojan.Agent-7"},
	} {
		b.Run(p.name, func(b *testing.B) {
			var ls []time.Duration
			for b.Loop() {
				req := httptest.NewRequest("GET", p.path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				t0 := time.Now()
				con.ServeHTTP(rec, req)
				ls = append(ls, time.Since(t0))
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), p.want) {
					b.Fatalf("%s: %d, want %q in:\n%.2000s", p.path, rec.Code, p.want, rec.Body)
				}
			}
			reportLatencies(b, ls)
		})
	}
}

// heapSampler samples the heap's live objects every millisecond and keeps
// the highest.
type heapSampler struct {
	stop chan struct{}
	done chan uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan uint64)}
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-h.stop:
				h.done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) peak() uint64 { close(h.stop); return <-h.done }

// BenchmarkAgentsCSV streams the CSV of all 100,000 agents through a real
// HTTP server and client, and reports the heap's peak above what it held
// before: flat memory is a peak far below the file's size.
func BenchmarkAgentsCSV(b *testing.B) {
	con, cookie := benchConsole(b)
	srv := httptest.NewServer(con)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(srv.URL)
	jar.SetCookies(u, []*http.Cookie{cookie})
	c := &http.Client{Jar: jar}
	var size int64
	var peak uint64
	var ls []time.Duration
	for b.Loop() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		base := s[0].Value.Uint64()
		h := sampleHeap()
		t0 := time.Now()
		resp, err := c.Get(srv.URL + "/agents.csv")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ls = append(ls, time.Since(t0))
		if p := h.peak(); p > base {
			peak = max(peak, p-base)
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("CSV: %d, %v", resp.StatusCode, err)
		}
		size = n
	}
	if size < benchAgents*50 {
		b.Fatalf("CSV of %d bytes for %d agents", size, benchAgents)
	}
	reportLatencies(b, ls)
	b.ReportMetric(float64(size)/(1<<20), "csv-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
