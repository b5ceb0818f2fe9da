//go:build linux

package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// BenchmarkOnAccess (docs/benchmarks.md, "On-access scanning") measures
// what on-access scanning costs the programs it watches, side by side in
// one run: with on-access off, with a `vigil agent` in block mode
// (OnAccess, OnAccessMode block, OnAccessPaths the workload's tree), and
// with ClamAV's clamonacc and clamd (OnAccessIncludePath the same tree,
// OnAccessPrevention yes, clamonacc --fdpass), both loading the same
// generated database of ClamAV's real size (benchGenDatabase: 3,500,000
// hash, 150,000 body and 20,000 logical signatures, plus the test
// signatures of an EICAR-like probe file).
//
// The workloads, each timed as a whole:
//
//   - files: 10,000 small files (1–8 KiB: Go, C, text, HTML, JSON and
//     binary) in 100 directories, opened and read one after the other
//     by the benchmark. Every set is written anew (new inodes, and
//     contents no scanner has seen: clamd caches clean verdicts by the
//     file's hash). files-unseen: the first pass over a set written
//     before the scanner started, so that every open is scanned;
//     files-warm: further passes over that set (until two seconds have
//     passed, at most ten; one for a scanner whose pass takes longer);
//     files-written: the first pass over a set written while the
//     scanner watched, read right after it was written (Vigil scans a
//     file when it is closed after a write; clamonacc does not);
//   - build: a tar.gz of this module's source unpacked with tar and
//     ./internal/scan built with `go build` from a fresh GOCACHE
//     (GOTMPDIR too) inside the watched tree, offline (GOPROXY=off,
//     GOFLAGS=-mod=mod, the local module cache), the standard library
//     included.
//
// Before timing anything each scanner must deny the open of the probe
// file in every one of the 100 directories with EPERM (a benchmark of a
// scanner that is off is worthless), and after each build the probe
// planted in a directory the build created; with on-access off the same
// opens must succeed. Configurations alternate within each round (the
// order rotates), and each scanner is started anew every round: the
// database's load is not timed. Vigil's verdict latency comes from the
// agent's vigil_onaccess_verdict_seconds histogram, scraped from its
// MetricsAddress before and after each workload.
//
// Run it as root, with clamd and clamonacc installed (Debian:
// clamav-daemon, clamav) and the clamav user they create:
//
//	go test ./internal/integration -run '^$' -bench OnAccess -benchtime 1x -timeout 60m -v
//
// VIGIL_BENCH_ROUNDS sets the rounds (default 3; min and median are over
// them), VIGIL_BENCH_CLAMONACC_ROUNDS how many of them measure clamonacc
// (default all: with the real database's size one round of clamonacc
// takes about 20 minutes on two cores); VIGIL_BENCH_CONFIGS a comma-separated subset of off, vigil,
// clamonacc (default all three); VIGIL_BENCH_SCALE (0 < s ≤ 1, default 1)
// generates that fraction of the database, for checking the benchmark
// quickly; VIGIL_BENCH_OUT writes the results table to that file.
func BenchmarkOnAccess(b *testing.B) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(b, testenv.RequireNetns, "on-access scanning (fanotify permission events) needs root")
	}
	if fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY); err != nil {
		testenv.SkipOrFail(b, testenv.RequireNetns, fmt.Sprintf("this kernel lacks fanotify or its permission events: %v", err))
	} else {
		unix.Close(fd)
	}
	configs := benchConfigs(b)
	var clamd, clamonacc string
	if slices.Contains(configs, "clamonacc") {
		clamd = testenv.NeedTool(b, "clamd", "clamav-daemon")
		clamonacc = testenv.NeedTool(b, "clamonacc", "clamav-daemon")
		// clamonacc insists on an excluded user, the one clamd runs as
		// in Debian's service.
		if _, err := user.Lookup("clamav"); err != nil {
			testenv.SkipOrFail(b, testenv.RequireTools, fmt.Sprintf("no clamav user (Debian: apt-get install -y clamav-daemon): %v", err))
		}
	}
	rounds := 3
	if v := os.Getenv("VIGIL_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("VIGIL_BENCH_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	// clamonacc's rounds: with the real database's size a round of it
	// takes many minutes.
	clamRounds := rounds
	if v := os.Getenv("VIGIL_BENCH_CLAMONACC_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > rounds {
			b.Fatalf("VIGIL_BENCH_CLAMONACC_ROUNDS=%q: want a number from 1 to the rounds (%d)", v, rounds)
		}
		clamRounds = n
	}
	scale := 1.0
	if v := os.Getenv("VIGIL_BENCH_SCALE"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 || s > 1 {
			b.Fatalf("VIGIL_BENCH_SCALE=%q: want a number in (0, 1]", v)
		}
		scale = s
	}

	// Removed last: every process is stopped by cleanups registered
	// later.
	base, err := os.MkdirTemp("", "vigil-onaccess-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	if base, err = filepath.EvalSymlinks(base); err != nil {
		b.Fatal(err)
	}
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	sigDir := filepath.Join(base, "sigs")
	work := filepath.Join(base, "work") // the watched tree
	filesDir := filepath.Join(work, "files")
	must(os.MkdirAll(sigDir, 0o755))
	must(os.MkdirAll(filesDir, 0o755))

	start := time.Now()
	nsigs := benchGenDatabase(b, sigDir, scale)
	b.Logf("generated %d signatures in %s (%v)", nsigs, sigDir, time.Since(start).Round(time.Millisecond))

	// The probe: an EICAR-like file both scanners must deny, in every
	// directory of the files workload.
	var probes []string
	for d := range benchFileDirs {
		dir := filepath.Join(filesDir, fmt.Sprintf("d%03d", d))
		must(os.MkdirAll(dir, 0o755))
		p := filepath.Join(dir, "zz-probe.com")
		must(os.WriteFile(p, []byte(benchProbe), 0o644))
		probes = append(probes, p)
	}
	must(benchCheckProbes(probes, false))

	// The source tree to unpack and build, and one build with nothing
	// watching: it checks the build works offline and brings GOROOT and
	// the module cache into the page cache for every configuration.
	tarball := filepath.Join(base, "src.tar.gz")
	srcFiles, srcBytes := benchTarModule(b, tarball)
	warm := filepath.Join(base, "warmup")
	if _, _, err := benchBuild(tarball, warm); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(warm)

	var srv *benchServer
	if slices.Contains(configs, "vigil") {
		srv = newBenchServer(b, filepath.Join(base, "server"))
	}

	type key struct{ config, workload string }
	times := map[key][]time.Duration{}
	vigilHist := map[string]benchHist{} // by workload, summed over rounds
	vigilCounters := map[string]map[string]float64{}
	var clamLoaded, vigilLoaded string
	load0 := benchLoadAvg()
	workloads := []string{"files-unseen", "files-written", "files-warm", "build"}
	b.ResetTimer()
	for range b.N {
		for round := range rounds {
			for i := range configs {
				config := configs[(i+round)%len(configs)]
				if config == "clamonacc" && round >= clamRounds {
					continue
				}
				var stop func()
				var scrape func() map[string]float64
				blocked := config != "off"
				nonce := fmt.Sprintf("%s-r%d-%d", config, round, time.Now().UnixNano())
				// Files the scanner has never seen: written before it
				// starts.
				unseen, err := benchWriteFiles(filesDir, "u", nonce)
				must(err)
				switch config {
				case "vigil":
					a := startBenchAgent(b, srv, filepath.Join(base, "agent"), sigDir, work, round, probes)
					stop = a.stop
					scrape = func() map[string]float64 {
						m, err := benchScrape(a.metricsURL)
						must(err)
						return m
					}
					vigilLoaded = a.loaded
				case "clamonacc":
					c := startBenchClam(b, clamd, clamonacc, filepath.Join(base, fmt.Sprintf("clam-r%d", round)), sigDir, work, probes)
					stop = c.stop
					clamLoaded = c.loaded
				}
				must(benchCheckProbes(probes, blocked))

				measure := func(workload string, f func() time.Duration) {
					var before map[string]float64
					if scrape != nil {
						before = scrape()
					}
					d := f()
					if scrape != nil {
						after := scrape()
						h := vigilHist[workload]
						h.add(benchHistDelta(before, after, "vigil_onaccess_verdict_seconds"))
						vigilHist[workload] = h
						c := vigilCounters[workload]
						if c == nil {
							c = map[string]float64{}
							vigilCounters[workload] = c
						}
						for k, v := range after {
							if strings.HasPrefix(k, "vigil_onaccess_") && !strings.Contains(k, "_bucket") {
								c[k] += v - before[k]
							}
						}
					}
					times[key{config, workload}] = append(times[key{config, workload}], d)
					b.Logf("round %d: %s: %s: %v (load average %s)", round, config, workload, d.Round(time.Millisecond), benchLoadAvg())
				}

				measure("files-unseen", func() time.Duration { return benchReadAll(b, unseen) })
				// Warm passes over the same files, until two seconds
				// have passed (one for a slow scanner), at most ten.
				for t0, n := time.Now(), 0; n == 0 || (n < 10 && time.Since(t0) < 2*time.Second); n++ {
					measure("files-warm", func() time.Duration { return benchReadAll(b, unseen) })
				}
				// Files written while the scanner watches, opened at once.
				written, err := benchWriteFiles(filesDir, "w", nonce)
				must(err)
				measure("files-written", func() time.Duration { return benchReadAll(b, written) })
				must(benchCheckProbes(probes, blocked))

				dir := filepath.Join(work, "build-"+nonce)
				measure("build", func() time.Duration {
					unpack, build, err := benchBuild(tarball, dir)
					must(err)
					b.Logf("round %d: %s: unpack %v, go build %v", round, config, unpack.Round(time.Millisecond), build.Round(time.Millisecond))
					return unpack + build
				})
				// The scanner watched the directories the unpack and the
				// build created, to the end.
				var planted []string
				for _, d := range []string{filepath.Join(dir, "src", "internal", "scan"), filepath.Join(dir, "gocache")} {
					p := filepath.Join(d, "zz-probe.com")
					must(os.WriteFile(p, []byte(benchProbe), 0o644))
					planted = append(planted, p)
				}
				must(benchCheckProbes(planted, blocked))
				if stop != nil {
					stop()
				}
				must(benchCheckProbes(probes, false))
				must(os.RemoveAll(dir))
			}
		}
	}
	b.StopTimer()

	// The results.
	var sb strings.Builder
	fmt.Fprintf(&sb, "Signatures: %d in .hdb, .hsb, .ndb and .ldb files (scale %g), loaded by both scanners", nsigs, scale)
	if clamLoaded != "" {
		fmt.Fprintf(&sb, " (clamd: %q", clamLoaded)
		if vigilLoaded != "" {
			fmt.Fprintf(&sb, "; agent: %q", vigilLoaded)
		}
		sb.WriteString(")")
	}
	sb.WriteString(".\n")
	fmt.Fprintf(&sb, "Workloads: files: %d files of 1–8 KiB in %d directories, read in one goroutine; build: %d files (%.1f MiB) unpacked with tar -xzf, then go build %s with a fresh GOCACHE.\n",
		benchFileCount, benchFileDirs, srcFiles, float64(srcBytes)/(1<<20), strings.Join(benchBuildPkgs, " "))
	fmt.Fprintf(&sb, "Machine: %d CPUs (%s/%s), %s, %s; load average %s before, %s after; %d rounds (clamonacc in %d).\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), benchVersion(clamd), load0, benchLoadAvg(), rounds, clamRounds)
	fmt.Fprintf(&sb, "| workload | configuration | min | median | overhead vs off (median) | overhead vs off (min) |\n|---|---|---:|---:|---:|---:|\n")
	for _, w := range workloads {
		off := times[key{"off", w}]
		for _, c := range configs {
			ds := times[key{c, w}]
			if len(ds) == 0 {
				continue
			}
			mn, med := benchMinMedian(ds)
			over, overMin := "–", "–"
			if c != "off" && len(off) > 0 {
				omn, omed := benchMinMedian(off)
				over = fmt.Sprintf("%+.1f %%", 100*(med.Seconds()/omed.Seconds()-1))
				overMin = fmt.Sprintf("%+.1f %%", 100*(mn.Seconds()/omn.Seconds()-1))
			}
			fmt.Fprintf(&sb, "| %s | %s | %.3f s | %.3f s | %s | %s |\n", w, benchConfigName(c), mn.Seconds(), med.Seconds(), over, overMin)
		}
	}
	if len(vigilHist) > 0 {
		fmt.Fprintf(&sb, "\nVigil's verdicts during each workload (all rounds; vigil_onaccess_verdict_seconds, cache and scan, quantiles interpolated in the buckets as histogram_quantile does):\n\n")
		fmt.Fprintf(&sb, "| workload | verdicts | p50 | p99 | events open/exec/close_write | cache hits | scans (misses) | outside the tree | fail-opens | lost |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, w := range workloads {
			h := vigilHist[w]
			c := vigilCounters[w]
			fmt.Fprintf(&sb, "| %s | %.0f | %s | %s | %.0f/%.0f/%.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", w, h.total(), benchSeconds(h.quantile(0.5)), benchSeconds(h.quantile(0.99)),
				c[`vigil_onaccess_events_total{kind="open"}`], c[`vigil_onaccess_events_total{kind="exec"}`], c[`vigil_onaccess_events_total{kind="close_write"}`],
				c["vigil_onaccess_cache_hits_total"], c["vigil_onaccess_cache_misses_total"], c["vigil_onaccess_outside_total"],
				c["vigil_onaccess_fail_opens_total"], c["vigil_onaccess_lost_total"])
		}
		if h := vigilHist["files-unseen"]; h.total() > 0 {
			b.ReportMetric(h.quantile(0.99)*1e6, "vigil-unseen-p99-µs")
		}
	}
	for _, w := range workloads {
		for _, c := range configs {
			if ds := times[key{c, w}]; len(ds) > 0 {
				_, med := benchMinMedian(ds)
				b.ReportMetric(med.Seconds(), c+"-"+w+"-s")
			}
		}
	}
	fmt.Println(sb.String())
	if out := os.Getenv("VIGIL_BENCH_OUT"); out != "" {
		must(os.WriteFile(out, []byte(sb.String()), 0o644))
	}
}

const (
	benchFileCount = 10000
	benchFileDirs  = 100
	// benchDefsVersion is the release the agent's definitions are
	// installed as.
	benchDefsVersion = "2026120201"
	// benchProbe is the EICAR-like test file: the test signatures find it
	// by its MD5 and by a body signature of its marker.
	benchProbe       = "VIGIL-ONACCESS-BENCH-TEST-FILE: not a virus, the on-access benchmark's probe\n"
	benchProbeMarker = "VIGIL-ONACCESS-BENCH-TEST-FILE"
)

// benchBuildPkgs is what the build workload builds (with the standard
// library they need, from a fresh GOCACHE): about half a minute on two
// idle cores.
var benchBuildPkgs = []string{"./internal/scan"}

// benchConfigs returns the configurations to measure: VIGIL_BENCH_CONFIGS
// or all three, off first.
func benchConfigs(b *testing.B) []string {
	all := []string{"off", "vigil", "clamonacc"}
	v := os.Getenv("VIGIL_BENCH_CONFIGS")
	if v == "" {
		return all
	}
	var cs []string
	for _, c := range strings.Split(v, ",") {
		if !slices.Contains(all, c) {
			b.Fatalf("VIGIL_BENCH_CONFIGS=%q: %q is not one of %v", v, c, all)
		}
		if !slices.Contains(cs, c) {
			cs = append(cs, c)
		}
	}
	if !slices.Contains(cs, "off") {
		b.Fatalf("VIGIL_BENCH_CONFIGS=%q: off is needed, overheads are against it", v)
	}
	return cs
}

func benchConfigName(c string) string {
	switch c {
	case "vigil":
		return "Vigil agent, block"
	case "clamonacc":
		return "clamonacc + clamd, prevention"
	}
	return "on-access off"
}

// benchCheckProbes opens each path: with blocked every open must fail
// with EPERM, otherwise every open must succeed.
func benchCheckProbes(paths []string, blocked bool) error {
	for _, p := range paths {
		f, err := os.Open(p)
		switch {
		case blocked && err == nil:
			f.Close()
			return fmt.Errorf("the scanner is on, but the probe %s opened", p)
		case blocked && !errors.Is(err, syscall.EPERM):
			return fmt.Errorf("the scanner is on; opening the probe %s: %v, want EPERM", p, err)
		case !blocked && err != nil:
			return fmt.Errorf("no scanner is on, but opening the probe %s: %v", p, err)
		case err == nil:
			f.Close()
		}
	}
	return nil
}

// benchWaitBlocked waits until opening path fails with EPERM: the scanner
// has loaded its signatures and watches the tree.
func benchWaitBlocked(path string, timeout time.Duration, exited func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		f, err := os.Open(path)
		if err == nil {
			f.Close()
		} else if errors.Is(err, syscall.EPERM) {
			return nil
		} else {
			return fmt.Errorf("opening the probe %s: %v", path, err)
		}
		if exited() {
			return errors.New("the scanner exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the probe %s still opens after %v", path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchWriteFiles removes the files named prefix* in dir's 100
// directories and writes 10,000 new ones, whose contents hold nonce: no
// scanner has seen them.
func benchWriteFiles(dir, prefix, nonce string) ([]string, error) {
	rng := rand.New(rand.NewPCG(uint64(len(nonce)), uint64(time.Now().UnixNano())))
	var files []string
	for d := range benchFileDirs {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", d))
		ents, err := os.ReadDir(sub)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				if err := os.Remove(filepath.Join(sub, e.Name())); err != nil {
					return nil, err
				}
			}
		}
	}
	for i := range benchFileCount {
		ext, data := benchFileData(rng, i, nonce)
		p := filepath.Join(dir, fmt.Sprintf("d%03d", i%benchFileDirs), fmt.Sprintf("%s%05d%s", prefix, i, ext))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	// Read in directory order, as a program walking the tree would.
	sort.Strings(files)
	return files, nil
}

var benchWords = strings.Fields(`the of and to in is that for it as with on be by this are from at or an
not which have has but all can will one more when there been would who so no file system agent server
scan signature update network packet command result error warning value string number object array
return import export const public private static void buffer stream index table cache queue worker`)

// benchFileData is file i of the files workload: its extension and
// contents, 1–8 KiB: Go and C source, text, HTML, JSON and binary.
func benchFileData(rng *rand.Rand, i int, nonce string) (string, []byte) {
	size := 1024 + rng.IntN(7<<10)
	word := func() string { return benchWords[rng.IntN(len(benchWords))] }
	var sb bytes.Buffer
	fill := func(line func(n int) string) {
		for n := 0; sb.Len() < size; n++ {
			sb.WriteString(line(n))
		}
	}
	var ext string
	switch k := i % 20; {
	case k < 6:
		ext = ".go"
		fmt.Fprintf(&sb, "// Code for %s, file %d.\n\npackage %s\n\n", nonce, i, word())
		fill(func(n int) string {
			return fmt.Sprintf("// %s %s %s.\nfunc %s%d(x int) int {\n\tif x > %d {\n\t\treturn x - %d\n\t}\n\treturn x * %d\n}\n\n",
				word(), word(), word(), word(), n, rng.IntN(1000), rng.IntN(100), rng.IntN(10))
		})
	case k < 10:
		ext = ".txt"
		fmt.Fprintf(&sb, "%s %d\n", nonce, i)
		fill(func(int) string {
			if rng.IntN(12) == 0 {
				return word() + ".\n"
			}
			return word() + " "
		})
	case k < 13:
		ext = ".html"
		fmt.Fprintf(&sb, "<!DOCTYPE html>\n<html><head><title>%s %d</title></head><body>\n", nonce, i)
		fill(func(n int) string {
			return fmt.Sprintf("<p class=\"%s\">%s %s <a href=\"/%s/%d.html\">%s</a> %s.</p>\n", word(), word(), word(), word(), n, word(), word())
		})
	case k < 16:
		ext = ".json"
		fmt.Fprintf(&sb, "{\"run\": %q, \"file\": %d, \"items\": [\n", nonce, i)
		fill(func(n int) string {
			return fmt.Sprintf("  {\"id\": %d, \"name\": %q, \"tags\": [%q, %q], \"size\": %d},\n", n, word(), word(), word(), rng.IntN(1<<20))
		})
	case k < 18:
		ext = ".c"
		fmt.Fprintf(&sb, "/* %s, file %d */\n#include <stdio.h>\n\n", nonce, i)
		fill(func(n int) string {
			return fmt.Sprintf("static int %s_%d(int x) { /* %s %s */ return x + %d; }\n", word(), n, word(), word(), rng.IntN(1000))
		})
	default:
		ext = ".bin"
		sb.WriteString("\x89PNG\r\n\x1a\n" + nonce)
		for sb.Len() < size {
			v := rng.Uint64()
			for j := range 8 {
				sb.WriteByte(byte(v >> (8 * j)))
			}
		}
	}
	return ext, sb.Bytes()[:size]
}

// benchReadAll opens and reads every file, one after the other, and
// returns the time it took. A file that cannot be read ends the benchmark
// (a scanner denying a clean file would).
func benchReadAll(b *testing.B, files []string) time.Duration {
	b.Helper()
	buf := make([]byte, 64<<10)
	start := time.Now()
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := f.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatalf("reading %s: %v", p, err)
			}
		}
		f.Close()
	}
	return time.Since(start)
}

// benchTarModule writes a tar.gz of this module's files (without .git)
// to out and returns how many files and bytes it holds.
func benchTarModule(b *testing.B, out string) (int, int64) {
	b.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	var n int
	var size int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // a worktree's .git file
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		size += int64(len(data))
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		b.Fatalf("archiving the module at %s: %v", root, err)
	}
	return n, size
}

// benchBuild unpacks tarball into dir/src with tar and builds
// benchBuildPkgs there, offline, with GOCACHE and GOTMPDIR inside dir.
func benchBuild(tarball, dir string) (unpack, build time.Duration, err error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return 0, 0, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", tarball, "-C", src).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("tar -xzf %s: %v\n%s", tarball, err, out)
	}
	unpack = time.Since(start)
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, benchBuildPkgs...)...)
	cmd.Dir = src
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GOCACHE", "GOTMPDIR", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN", "GOWORK":
		default:
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GOCACHE="+filepath.Join(dir, "gocache"), "GOTMPDIR="+filepath.Join(dir, "tmp"),
		"GOFLAGS=-mod=mod -buildvcs=false", "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off")
	start = time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("go build %s in %s: %v\n%s", strings.Join(benchBuildPkgs, " "), src, err, out)
	}
	return unpack, time.Since(start), nil
}

// benchServer is a `vigil server` on 127.0.0.1 and lo (TTL 0) for the
// benchmark's agents to enroll with.
type benchServer struct {
	api, dataDir, ifname string
	port                 int
}

func newBenchServer(b *testing.B, dataDir string) *benchServer {
	b.Helper()
	s := &benchServer{port: freeUDPPort(b), ifname: testenv.Loopback(b), dataDir: dataDir}
	listen := "127.0.0.1:" + strconv.Itoa(freeTCPPort(b))
	admin := "127.0.0.1:" + strconv.Itoa(freeTCPPort(b))
	s.api = "http://" + listen + "/vigil"
	p := startLocal(b, "server", "server",
		"-data-dir", s.dataDir, "-listen", listen, "-admin-listen", admin,
		"-group", testGroup, "-port", strconv.Itoa(s.port), "-interface", s.ifname, "-ttl", "0",
		"-checkin-interval", "5s")
	p.WaitLog(b, "server listening", 30*time.Second)
	return s
}

// benchAgent is a running `vigil agent` with on-access in block mode.
type benchAgent struct {
	metricsURL string
	loaded     string // the agent's "on-access scanning running" line
	stop       func()
}

// startBenchAgent installs the database in sigDir as the agent's current
// definitions release (DefinitionsDirectory layout: releases/VERSION and
// the current link; hard links to the same files clamd loads), starts an
// agent watching work in block mode, and waits until it denies the probe
// in every directory. The agent keeps its state in dir between rounds.
func startBenchAgent(b *testing.B, s *benchServer, dir, sigDir, work string, round int, probes []string) *benchAgent {
	b.Helper()
	defs := filepath.Join(dir, "definitions")
	release := filepath.Join(defs, "releases", benchDefsVersion)
	if _, err := os.Stat(release); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(release, 0o755); err != nil {
			b.Fatal(err)
		}
		ents, err := os.ReadDir(sigDir)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range ents {
			if err := os.Link(filepath.Join(sigDir, e.Name()), filepath.Join(release, e.Name())); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.Symlink("releases/"+benchDefsVersion, filepath.Join(defs, "current")); err != nil {
			b.Fatal(err)
		}
	}
	dd := server.DataDir{Path: s.dataDir}
	pub, err := dd.PublicKey()
	if err != nil {
		b.Fatal(err)
	}
	secret, err := dd.EnrollSecret()
	if err != nil {
		b.Fatal(err)
	}
	metrics := "127.0.0.1:" + strconv.Itoa(freeTCPPort(b))
	path := filepath.Join(dir, "agent.plist")
	err = prefs.Write(path, &prefs.Agent{
		MulticastAddress: testGroup, MulticastPort: s.port, MulticastInterface: s.ifname,
		NodeCommURL: s.api, ServerPublicKey: pub, EnrollmentSecret: secret,
		StateDirectory: filepath.Join(dir, "state"), CheckInInterval: 5 * time.Second,
		Hostname: "onaccess-bench", LogLevel: "info", MetricsAddress: metrics, DefinitionsDirectory: defs,
		// The rest at their defaults: every event (open, exec,
		// close_write), 5 MiB, a verdict timeout of 2 s.
		OnAccess: true, OnAccessPaths: []string{work}, OnAccessMode: "block",
	}, plist.XMLFormat)
	if err != nil {
		b.Fatal(err)
	}
	p := startLocal(b, fmt.Sprintf("agent-r%d", round), "agent", "-config", path)
	p.WaitLog(b, "agent running", 60*time.Second)
	for _, probe := range probes {
		if err := benchWaitBlocked(probe, 2*time.Minute, p.exited); err != nil {
			b.Fatalf("vigil agent: %v; log:\n%s", err, p.Log())
		}
	}
	a := &benchAgent{metricsURL: "http://" + metrics + "/metrics", stop: func() {
		if err := p.Stop(); err != nil {
			b.Errorf("vigil agent: %v", err)
		}
	}}
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, "on-access scanning running") {
			a.loaded = strings.TrimSpace(l)
		}
	}
	return a
}

// benchClam is a running clamd and clamonacc.
type benchClam struct {
	loaded string // clamd's "Loaded N signatures."
	stop   func()
}

// startBenchClam starts clamd (in the foreground, with its own
// configuration in dir, loading sigDir) and clamonacc (--fdpass, watching
// work with prevention on), and waits until they deny the probe.
//
// clamd runs as root here, not as the clamav user of Debian's service: a
// process that changes its user loses its parent-death signal, and clamd
// must die with the benchmark even when the benchmark is killed. With
// --fdpass clamd reads the descriptors clamonacc passes and opens nothing
// in the watched tree, so the exclusion clamonacc insists on (the clamav
// user) excludes nothing the benchmark does.
func startBenchClam(b *testing.B, clamd, clamonacc, dir, sigDir, work string, probes []string) *benchClam {
	b.Helper()
	run := filepath.Join(dir, "run")
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{run, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "clamd.conf")
	// Defaults otherwise: OnAccessMaxFileSize 5M (Vigil's default too),
	// OnAccessMaxThreads 5, MaxThreads 10, dynamic directory
	// determination on.
	err := os.WriteFile(conf, []byte(strings.Join([]string{
		"Foreground yes",
		"LocalSocket " + filepath.Join(run, "clamd.sock"),
		"LogFile " + filepath.Join(run, "clamd.log"),
		"LogTime yes",
		"DatabaseDirectory " + sigDir,
		"TemporaryDirectory " + tmp,
		"SelfCheck 0",
		"OnAccessIncludePath " + work,
		"OnAccessPrevention yes",
		"OnAccessExcludeUname clamav",
	}, "\n")+"\n"), 0o644)
	if err != nil {
		b.Fatal(err)
	}
	cd := benchStartProc(b, "clamd", clamd, "-c", conf)
	// clamd logs "Self checking disabled." once it listens, after
	// loading the database.
	clamdLog := filepath.Join(run, "clamd.log")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		l, _ := os.ReadFile(clamdLog)
		if strings.Contains(string(l), "Self checking") {
			break
		}
		if cd.exited() || time.Now().After(deadline) {
			b.Fatalf("clamd did not start; log:\n%s\n%s", l, cd.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	logged, _ := os.ReadFile(clamdLog)
	c := &benchClam{}
	for _, l := range strings.Split(string(logged), "\n") {
		if i := strings.Index(l, "Loaded "); i >= 0 {
			c.loaded = strings.TrimSpace(l[i:])
		}
	}
	oa := benchStartProc(b, "clamonacc", clamonacc, "-F", "-c", conf, "--fdpass", "-l", filepath.Join(dir, "clamonacc.log"))
	for _, probe := range probes {
		if err := benchWaitBlocked(probe, 2*time.Minute, func() bool { return oa.exited() || cd.exited() }); err != nil {
			b.Fatalf("clamonacc: %v; clamonacc log:\n%s\nclamd log:\n%s", err, oa.Log(), cd.Log())
		}
	}
	c.stop = func() {
		// clamonacc first: its fanotify group closed, every open goes
		// through.
		if err := oa.Stop(); err != nil {
			b.Logf("clamonacc: %v", err)
		}
		if err := cd.Stop(); err != nil {
			b.Logf("clamd: %v", err)
		}
	}
	return c
}

// benchStartProc starts bin with args, its output in a file; it is
// stopped when the benchmark ends and its log shown if it failed.
func benchStartProc(b *testing.B, name, bin string, args ...string) *fileProc {
	b.Helper()
	path := filepath.Join(b.TempDir(), name+".log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		b.Fatalf("starting %s: %v", name, err)
	}
	p := &fileProc{name: name, cmd: cmd, logPath: path, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	b.Cleanup(func() {
		p.Stop()
		if b.Failed() {
			log := p.Log()
			if len(log) > 6<<10 {
				log = "..." + log[len(log)-6<<10:]
			}
			b.Logf("%s (pid %d, %v) log %s:\n%s", name, cmd.Process.Pid, p.err, path, log)
		}
	})
	return p
}

// benchScrape reads a Prometheus text exposition: each sample's value by
// its name and labels as written.
func benchScrape(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %q: %v", url, l, err)
		}
		m[l[:i]] = v
	}
	return m, sc.Err()
}

// benchHist is a histogram's cumulative bucket counts by upper bound.
type benchHist map[float64]float64

// benchHistDelta is histogram name's buckets in after minus before, every
// label but le summed.
func benchHistDelta(before, after map[string]float64, name string) benchHist {
	h := benchHist{}
	for k, v := range after {
		rest, ok := strings.CutPrefix(k, name+"_bucket{")
		if !ok {
			continue
		}
		_, le, ok := strings.Cut(rest, `le="`)
		if !ok {
			continue
		}
		le, _, _ = strings.Cut(le, `"`)
		bound := math.Inf(1)
		if le != "+Inf" {
			var err error
			if bound, err = strconv.ParseFloat(le, 64); err != nil {
				continue
			}
		}
		h[bound] += v - before[k]
	}
	return h
}

func (h *benchHist) add(o benchHist) {
	if *h == nil {
		*h = benchHist{}
	}
	for k, v := range o {
		(*h)[k] += v
	}
}

func (h benchHist) total() float64 { return h[math.Inf(1)] }

// quantile is Prometheus's histogram_quantile: linear within the bucket
// holding rank q·total; the highest finite bound when it falls in +Inf;
// NaN without observations.
func (h benchHist) quantile(q float64) float64 {
	total := h.total()
	if total == 0 {
		return math.NaN()
	}
	var bounds []float64
	for k := range h {
		bounds = append(bounds, k)
	}
	sort.Float64s(bounds)
	rank := q * total
	lower, prev := 0.0, 0.0
	for _, ub := range bounds {
		c := h[ub]
		if c >= rank {
			if math.IsInf(ub, 1) {
				return lower
			}
			if c == prev {
				return ub
			}
			return lower + (ub-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = ub, c
	}
	return lower
}

func benchSeconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return "–"
	case s < 1e-3:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.2f ms", s*1e3)
	}
	return fmt.Sprintf("%.2f s", s)
}

func benchMinMedian(ds []time.Duration) (time.Duration, time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[0], med
}

func benchLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// benchVersion is clamd's version line, when clamd is measured.
func benchVersion(clamd string) string {
	if clamd == "" {
		return "ClamAV not measured"
	}
	out, err := exec.Command(clamd, "--version").Output()
	if err != nil {
		return "clamd --version: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}

// Sizes of ClamAV's real main and daily databases (late 2026), as in
// internal/scan's BenchmarkRealSize.
const (
	benchHashSigs    = 3_500_000
	benchBodySigs    = 150_000
	benchLogicalSigs = 20_000
)

// benchGenDatabase writes a database of ClamAV's real size (times scale)
// to dir, of the shapes internal/scan's BenchmarkRealSize generates (its
// generators copied here, in another package): hash signatures in gen.hdb
// (MD5, 80 %) and gen.hsb (SHA-1 and SHA-256), body signatures of target
// 0 in gen.ndb and a tenth of target 1 in gen-pe.ndb (a third at EP+n),
// logical signatures in gen.ldb; and the probe's test signatures in
// test.hdb and test.ndb. It returns the number of signatures.
func benchGenDatabase(b *testing.B, dir string, scale float64) int {
	b.Helper()
	scaled := func(n int) int { return max(1, int(float64(n)*scale+0.5)) }
	nHash, nBody, nLogical := scaled(benchHashSigs), scaled(benchBodySigs), scaled(benchLogicalSigs)
	g := &benchSigGen{rng: rand.New(rand.NewPCG(11, 99))}
	files := map[string]*bufio.Writer{}
	var closers []*os.File
	w := func(name string) *bufio.Writer {
		if bw := files[name]; bw != nil {
			return bw
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, f)
		files[name] = bufio.NewWriterSize(f, 1<<20)
		return files[name]
	}
	for i := range nHash {
		line, hsb := g.hashLine(i)
		name := "gen.hdb"
		if hsb {
			name = "gen.hsb"
		}
		fmt.Fprintln(w(name), line)
	}
	nPE := nBody / 10
	for i := range nBody - nPE {
		fmt.Fprintln(w("gen.ndb"), g.bodyLine(i))
	}
	for i := range nPE {
		line := g.bodyLine(i)
		hexs := line[strings.LastIndexByte(line, ':')+1:]
		off := "*"
		if i%3 == 0 {
			off = "EP+" + strconv.Itoa(g.rng.IntN(256))
		}
		fmt.Fprintf(w("gen-pe.ndb"), "Win.Trojan.Body-%07d-0:1:%s:%s\n", i, off, hexs)
	}
	lg := &benchLdbGen{rng: rand.New(rand.NewPCG(13, 77))}
	for i := range nLogical {
		fmt.Fprintln(w("gen.ldb"), lg.line(i))
	}
	fmt.Fprintf(w("test.hdb"), "%x:%d:Vigil.Test.OnAccess-Hash\n", md5.Sum([]byte(benchProbe)), len(benchProbe))
	fmt.Fprintf(w("test.ndb"), "Vigil.Test.OnAccess-Body:0:*:%s\n", hex.EncodeToString([]byte(benchProbeMarker)))
	for _, f := range closers {
		if err := files[filepath.Base(f.Name())].Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return nHash + nBody + nLogical + 2
}

// benchSigGen is internal/scan's sigGen: hash signatures of random
// digests and sizes, body signatures of random bytes with ClamAV's
// pattern forms.
type benchSigGen struct{ rng *rand.Rand }

func (g *benchSigGen) random(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(g.rng.Uint32())
	}
	return p
}

// hashLine is hash signature i: 80 % MD5, 10 % SHA-1, 10 % SHA-256; sizes
// up to 4 MiB, a few "*".
func (g *benchSigGen) hashLine(i int) (line string, hsb bool) {
	var n int
	switch r := g.rng.IntN(10); {
	case r < 8:
		n = 16
	case r < 9:
		n = 20
	default:
		n = 32
	}
	size := fmt.Sprint(1 + g.rng.IntN(4<<20))
	extra := ""
	if g.rng.IntN(100000) == 0 {
		size, extra = "*", ":73"
	}
	return fmt.Sprintf("%x:%s:Gen.Trojan.Hash-%07d-0%s", g.random(n), size, i, extra), n != 16
}

// bodyLine is body signature i: 14 to 60 random fixed bytes with, for
// half of them, one of ClamAV's pattern forms in the middle.
func (g *benchSigGen) bodyLine(i int) string {
	var sb strings.Builder
	lit := func(n int) { sb.WriteString(hex.EncodeToString(g.random(n))) }
	lit(8 + g.rng.IntN(24))
	switch i % 10 {
	case 1:
		sb.WriteString("??")
	case 2:
		fmt.Fprintf(&sb, "{%d-%d}", g.rng.IntN(8), 8+g.rng.IntN(32))
	case 3:
		fmt.Fprintf(&sb, "(%x|%x)", g.random(2), g.random(2))
	case 4:
		sb.WriteString("*")
	case 5:
		fmt.Fprintf(&sb, "%x?", g.rng.IntN(16))
	}
	lit(6 + g.rng.IntN(24))
	return fmt.Sprintf("Gen.Trojan.Body-%07d-0:0:*:%s", i, sb.String())
}

// benchLdbLogics are the logical expressions of the generated .ldb lines
// (as in daily.ldb), with the number of subsignatures each uses, and
// whether one subsignature alone can make it true.
var benchLdbLogics = []struct {
	logic  string
	subs   int
	single bool
}{
	{"0", 1, true},
	{"0>2", 1, true},
	{"0&1", 2, false},
	{"0|1", 2, true},
	{"0&1&2", 3, false},
	{"(0|1)&2", 3, false},
	{"0&1&2&3", 4, false},
	{"(0|1)&2&3", 4, false},
	{"(0&1)|2", 3, true},
	{"0&1&2&3&4", 5, false},
	{"(0|1|2)&3&4", 5, false},
}

// benchLdbGen is internal/scan's ldbGen, without what it keeps for
// planting matches.
type benchLdbGen struct{ rng *rand.Rand }

func (g *benchLdbGen) bytes(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(g.rng.Uint32())
	}
	return p
}

func (g *benchLdbGen) letters(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + g.rng.IntN(26))
	}
	return p
}

// sub is one content subsignature: 4–40 fixed bytes (at least 8 when it
// alone can make its signature true), in one or two parts joined by ??,
// {n-m}, * or a nibble; an alternative only without modifiers.
func (g *benchLdbGen) sub(strong bool, mods, off string) string {
	minLen := 4
	if strong {
		minLen = 8
	}
	total := minLen + g.rng.IntN(41-minLen)
	fixed := func(k int) string {
		if mods == "i" {
			return hex.EncodeToString(g.letters(k))
		}
		return hex.EncodeToString(g.bytes(k))
	}
	var text string
	if total < 6 || g.rng.IntN(10) < 6 {
		text = fixed(total)
	} else {
		first := 3 + g.rng.IntN(total-5)
		text = fixed(first)
		switch r := g.rng.IntN(5); {
		case r == 0:
			text += "??"
		case r == 1:
			lo := 1 + g.rng.IntN(8)
			text += fmt.Sprintf("{%d-%d}", lo, lo+g.rng.IntN(24))
		case r == 2:
			text += "*"
		case r == 3 && mods != "i":
			text += fmt.Sprintf("%x?", g.rng.IntN(16))
		case mods == "":
			text += fmt.Sprintf("(%x|%x)", g.bytes(2), g.bytes(2))
		default:
			text += "??"
		}
		text += fixed(total - first)
	}
	if off != "" {
		text = off + ":" + text
	}
	if mods != "" {
		text += "::" + mods
	}
	return text
}

// line is logical signature i, its target drawn as in daily.ldb (many
// Win.* of target 1, Html.* of target 3, Txt.* of 7).
func (g *benchLdbGen) line(i int) string {
	var target int
	var prefix string
	switch r := g.rng.IntN(20); {
	case r < 6:
		target, prefix = 0, "Multios.Ldb.Generic"
	case r < 15:
		target, prefix = 1, "Win.Ldb.Trojan"
	case r < 18:
		target, prefix = 3, "Html.Ldb.Exploit"
	default:
		target, prefix = 7, "Txt.Ldb.Downloader"
	}
	engine := []string{"51-255", "51-255", "81-255", "90-255", "150-255", "200-255"}[g.rng.IntN(6)]
	l := benchLdbLogics[g.rng.IntN(len(benchLdbLogics))]
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s-%07d-0;Engine:%s,Target:%d;%s", prefix, i, engine, target, l.logic)
	for range l.subs {
		mods := ""
		switch r := g.rng.IntN(20); {
		case target == 3 || target == 7:
			mods = "i"
		case r < 3:
			mods = "i"
		case r < 5:
			mods = "wa"
		case r < 6:
			mods = "w"
		}
		// Offsets: mostly anywhere; absolute and EOF-n for target 0
		// (never with a count comparison, which needs several starts),
		// EP+n for target 1.
		off := ""
		if l.logic != "0>2" && target < 3 {
			switch r := g.rng.IntN(10); {
			case target == 0 && r < 1:
				off = strconv.Itoa(g.rng.IntN(1024))
			case r < 2:
				off = "EOF-" + strconv.Itoa(300+g.rng.IntN(400))
			case target == 1 && r < 5:
				off = "EP+" + strconv.Itoa(g.rng.IntN(256))
			}
		}
		sb.WriteString(";" + g.sub(l.single, mods, off))
	}
	return sb.String()
}
