package definitions

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// benchSignatures is the size of BenchmarkDeltaUpdate's database.
const benchSignatures = 2_000_000

// BenchmarkDeltaUpdate measures an agent's daily definitions update: a
// database of 2,000,000 generated ClamAV signatures (sigDB: MD5 and
// SHA-256 hash signatures, body signatures) of which the next release
// changes 0.5 %, published with internal/publish and served over HTTP by
// a real LiveUpdate server on 127.0.0.1. Each update starts from an agent
// with the first release installed (its directories hard-linked from a
// template).
//
// delta-vs-full runs, per iteration, one update through the delta, then
// the same update with deltas off (the full release downloaded), in turn,
// so that both see the same load on the machine. It reports the time of
// each (delta-ms/update, full-ms/update: download, verification, install
// with its fsyncs), what each downloaded, metadata included
// (delta-bytes/update, full-bytes/update), and the delta update's bytes
// against the full release's length (delta-%full; the goal is at most
// 1 %). Its ns/op means nothing: the timer is stopped, read the metrics.
//
// apply times delta.Apply on the installed files in memory, with the
// result's bundle made and compared with the next release's: the CPU part
// of the delta update, without network or disk.
//
// Run it with:
//
//	go test ./internal/definitions -run '^$' -bench BenchmarkDeltaUpdate -benchtime 5x -timeout 60m
func BenchmarkDeltaUpdate(b *testing.B) {
	dir := b.TempDir()
	r, err := publish.Init(filepath.Join(dir, "repo"), publish.Options{})
	if err != nil {
		b.Fatal(err)
	}
	db := newSigDB(benchSignatures, 1)
	const v1, v2 = "2026120201", "2026120202"
	base := db.files()
	if err := r.AddDefinitionsData(v1, base); err != nil {
		b.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	first := filepath.Join(dir, "public-v1")
	if err := copyTree(r.PublicDir(), first, false); err != nil {
		b.Fatal(err)
	}
	db.next(0.005, 1)
	next := db.files()
	if err := r.AddDefinitionsData(v2, next); err != nil {
		b.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		b.Fatal(err)
	}

	// The template agent: v1 installed from a server that has only v1.
	root, err := os.ReadFile(r.RootPath())
	if err != nil {
		b.Fatal(err)
	}
	tmpl := filepath.Join(dir, "agent")
	if err := os.MkdirAll(tmpl, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpl, "1.root.json"), root, 0o644); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfgFor := func(agentDir, server string) Config {
		return Config{Servers: []string{server}, TrustedRoot: filepath.Join(agentDir, "1.root.json"),
			StateDir: filepath.Join(agentDir, "state"), DefinitionsDir: filepath.Join(agentDir, "definitions"),
			Timeout: 30 * time.Second, Logger: quiet}
	}
	srv1 := liveupdatetest.Start(b, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: first}, Logger: quiet})
	u, err := New(cfgFor(tmpl, srv1.HTTPURL))
	if err != nil {
		b.Fatal(err)
	}
	if res, err := u.Update(context.Background()); err != nil || res.Version != v1 {
		b.Fatalf("installing %s: %+v, %v", v1, res, err)
	}
	srv1.Close()
	srv := liveupdatetest.Start(b, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: r.PublicDir()}, Logger: quiet})

	// update runs one update of a fresh copy of the template agent and
	// returns its result and duration.
	update := func(b *testing.B, noDeltas bool) (Result, time.Duration) {
		agentDir := filepath.Join(dir, "run")
		os.RemoveAll(agentDir)
		if err := copyTree(tmpl, agentDir, true); err != nil {
			b.Fatal(err)
		}
		u, err := New(cfgFor(agentDir, srv.HTTPURL))
		if err != nil {
			b.Fatal(err)
		}
		u.noDeltas = noDeltas
		start := time.Now()
		res, err := u.Update(context.Background())
		took := time.Since(start)
		if err != nil || res.Version != v2 || res.Fallback != "" || (res.Deltas == 0) != noDeltas {
			b.Fatalf("update (deltas off: %v): %+v, %v", noDeltas, res, err)
		}
		return res, took
	}
	// Delta and full updates alternate (delta, full, delta, full...), so
	// that both see the same load on the machine.
	b.Run("delta-vs-full", func(b *testing.B) {
		b.StopTimer()
		var deltaTime, fullTime time.Duration
		var deltaRes, fullRes Result
		for i := 0; i < b.N; i++ {
			r, d := update(b, false)
			deltaRes, deltaTime = r, deltaTime+d
			r, d = update(b, true)
			fullRes, fullTime = r, fullTime+d
		}
		n := float64(b.N)
		b.ReportMetric(float64(deltaTime.Milliseconds())/n, "delta-ms/update")
		b.ReportMetric(float64(fullTime.Milliseconds())/n, "full-ms/update")
		b.ReportMetric(float64(deltaRes.Bytes), "delta-bytes/update")
		b.ReportMetric(float64(fullRes.Bytes), "full-bytes/update")
		b.ReportMetric(100*float64(deltaRes.Bytes)/float64(fullRes.FullBytes), "delta-%full")
	})
	b.Run("apply", func(b *testing.B) {
		d, err := os.ReadFile(findDelta(b, r.PublicDir(), v1, v2))
		if err != nil {
			b.Fatal(err)
		}
		want, err := repo.MakeBundle(next)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			files, err := delta.Apply(d, base)
			if err != nil {
				b.Fatal(err)
			}
			got, err := repo.MakeBundle(files)
			if err != nil {
				b.Fatal(err)
			}
			if string(got) != string(want) {
				b.Fatal("the delta's result is not the next release")
			}
		}
		b.ReportMetric(float64(len(d)), "delta-bytes")
	})
}

// findDelta returns the published delta from base to version.
func findDelta(tb testing.TB, public, base, version string) string {
	tb.Helper()
	var found string
	suffix := "." + base + "-" + version + ".delta"
	filepath.WalkDir(filepath.Join(public, "targets"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(p) > len(suffix) && p[len(p)-len(suffix):] == suffix {
			found = p
		}
		return nil
	})
	if found == "" {
		tb.Fatalf("no delta %s-%s under %s", base, version, public)
	}
	return found
}

// copyTree copies the tree src to dst, hard-linking files when link is
// set, and keeping symbolic links.
func copyTree(src, dst string, link bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case link:
			return os.Link(p, to)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}
