//go:build linux

package scan

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// Sizes of ClamAV's real main and daily databases (late 2026): about 3.5
// million hash signatures and 150,000 body signatures. Their logical
// signatures (.ldb) are left out: Vigil's engine does not support them
// yet.
const (
	realHashSigs = 3_500_000
	realBodySigs = 150_000
)

// BenchmarkRealSize (docs/benchmarks.md) loads a generated
// database the size of ClamAV's real main+daily into vigil scan and into
// clamscan, each a child process of this benchmark, and scans a generated
// raw corpus (no archives) with both, in the same run. It reports each
// tool's load time (scanning one small file), its peak RSS (getrusage of
// the child), and its scan throughput (wall time over the corpus minus
// load time, in the same round; the best round counts). Run it with
//
//	VIGIL_BENCH_DIR=/tmp/vbench go test ./internal/scan -run '^$' -bench RealSize -benchtime 1x -timeout 60m -v
//
// VIGIL_BENCH_DIR keeps the database and corpus between runs (generated
// once, in its realsize subdirectory); VIGIL_BENCH_ROUNDS sets the rounds (default 2); VIGIL_BENCH_OUT
// writes the results table to that file.
func BenchmarkRealSize(b *testing.B) {
	clamscan := testenv.NeedTool(b, "clamscan", "clamav")
	dir := os.Getenv("VIGIL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	dir = filepath.Join(dir, "realsize") // BenchmarkVsClamscan may share VIGIL_BENCH_DIR
	must(os.MkdirAll(dir, 0o755))
	sigDir, files := filepath.Join(dir, "sigs"), filepath.Join(dir, "corpus")
	one := filepath.Join(dir, "one.txt")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err != nil {
		b.Logf("generating %d hash and %d body signatures and a corpus in %s", realHashSigs, realBodySigs, dir)
		must(os.RemoveAll(sigDir))
		must(os.RemoveAll(files))
		writeSigs(b, sigDir, 11, realHashSigs, realBodySigs)
		genRawCorpus(b, sigDir, files)
		must(os.WriteFile(one, []byte("one small clean file\n"), 0o644))
		must(os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644))
	}
	corpusBytes, corpusFiles := dirSize(files)

	vigil := filepath.Join(b.TempDir(), "vigil")
	root := strings.TrimSpace(run(b, "go", "env", "GOMOD"))
	build := exec.Command("go", "build", "-o", vigil, "./cmd/vigil")
	build.Dir = filepath.Dir(root)
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	type tool struct {
		name string
		args func(path string) []string
	}
	tools := []tool{
		{"vigil scan", func(p string) []string {
			return []string{vigil, "scan", "-d", sigDir, "-infected", "-no-summary", p}
		}},
		{"clamscan", func(p string) []string {
			return append([]string{clamscan}, append(slices.Clone(clamscanArgs), "-i", "-d", sigDir, p)...)
		}},
	}
	type result struct {
		load, total       time.Duration
		loadCPU           time.Duration
		loadRSS, totalRSS int64         // KiB
		scan              time.Duration // the best round's corpus wall − load wall
		found             []string
	}
	best := make([]result, len(tools))
	load0 := loadAvg()
	b.ResetTimer()
	for range b.N {
		// Rounds (VIGIL_BENCH_ROUNDS, default 2), alternating; the fastest
		// counts.
		rounds := 2
		if v, err := strconv.Atoi(os.Getenv("VIGIL_BENCH_ROUNDS")); err == nil && v > 0 {
			rounds = v
		}
		for round := range rounds {
			for i, t := range tools {
				lw, lcpu, lrss, _ := rusaged(b, nil, t.args(one))
				tw, _, trss, out := rusaged(b, nil, t.args(files))
				r := &best[i]
				if round == 0 || lw < r.load {
					r.load, r.loadCPU, r.loadRSS = lw, lcpu, lrss
				}
				if round == 0 || tw < r.total {
					r.total, r.totalRSS, r.found = tw, trss, found(out)
				}
				// Loading varies by seconds from run to run (page
				// faults), so the scan time is taken within a round.
				if d := tw - lw; d > 0 && (r.scan == 0 || d < r.scan) {
					r.scan = d
				}
				b.Logf("round %d: %s: load %v (CPU %v, %d MiB), corpus %v (%d MiB), %d detections; load average %s", round, t.name,
					lw.Round(time.Millisecond), lcpu.Round(time.Millisecond), lrss>>10, tw.Round(time.Millisecond), trss>>10, len(found(out)), loadAvg())
			}
		}
	}
	b.StopTimer()
	// What an agent keeps between scans: the engine alone, the Set
	// dropped and the loader's memory given back (a child again).
	self, err := os.Executable()
	must(err)
	_, _, _, held := rusaged(b, []string{"VIGIL_ENGINE_HELPER=" + sigDir}, []string{self, "-test.run=^TestEngineHeldHelper$", "-test.v"})
	heldRSS := "?"
	if _, v, ok := strings.Cut(held, "HELD-RSS-KiB "); ok {
		kib, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		heldRSS = fmt.Sprintf("%d MiB", kib>>10)
	}
	mb := float64(corpusBytes) / 1e6
	var sb strings.Builder
	fmt.Fprintf(&sb, "Signatures: %d hash (80 %% MD5, 10 %% SHA-1, 10 %% SHA-256) and %d body, generated; no logical signatures.\n",
		realHashSigs, realBodySigs)
	fmt.Fprintf(&sb, "Corpus: %d raw files, %.2f GiB (no archives).\n", corpusFiles, float64(corpusBytes)/(1<<30))
	fmt.Fprintf(&sb, "Machine: %d CPUs (%s/%s), Go %s, %s; load average %s before, %s after.\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(),
		strings.TrimSpace(run(b, clamscan, "--version")), load0, loadAvg())
	fmt.Fprintf(&sb, "| tool | load: wall | load: CPU | load: peak RSS | corpus: wall | corpus: peak RSS | scan throughput (corpus − load, same round) | detections |\n")
	fmt.Fprintf(&sb, "|---|---:|---:|---:|---:|---:|---:|---:|\n")
	clam := best[len(best)-1]
	scanSecs := func(r result) float64 { return max(r.scan, time.Millisecond).Seconds() }
	for i, t := range tools {
		r := best[i]
		tput := "– (every load took longer than the corpus run)"
		if r.scan > 0 && clam.scan > 0 {
			tput = fmt.Sprintf("%.1f MB/s (%.2f× clamscan)", mb/scanSecs(r), scanSecs(clam)/scanSecs(r))
		}
		fmt.Fprintf(&sb, "| %s | %.2f s | %.2f s | %d MiB | %.2f s | %d MiB | %s | %d |\n", t.name,
			r.load.Seconds(), r.loadCPU.Seconds(), r.loadRSS>>10, r.total.Seconds(), r.totalRSS>>10, tput, len(r.found))
	}
	fmt.Fprintf(&sb, "\nResident after the build with the Set dropped (what an agent keeps between scans): %s.\n", heldRSS)
	if !slices.Equal(best[0].found, clam.found) {
		fmt.Fprintf(&sb, "\nDETECTIONS DIFFER: vigil: %q; clamscan: %q\n", best[0].found, clam.found)
		b.Errorf("detections differ")
	}
	b.ReportMetric(best[0].load.Seconds(), "vigil-load-s")
	b.ReportMetric(clam.load.Seconds(), "clamscan-load-s")
	b.ReportMetric(float64(best[0].totalRSS>>10), "vigil-MiB")
	b.ReportMetric(float64(clam.totalRSS>>10), "clamscan-MiB")
	b.ReportMetric(mb/scanSecs(best[0]), "vigil-MB/s")
	b.ReportMetric(mb/scanSecs(clam), "clamscan-MB/s")
	fmt.Println(sb.String())
	if out := os.Getenv("VIGIL_BENCH_OUT"); out != "" {
		must(os.WriteFile(out, []byte(sb.String()), 0o644))
	}
}

// rusaged runs args with env added and returns its wall time, CPU time
// (user + system), peak RSS (KiB), all from getrusage of the child, and
// its standard output. Exit status 1 (something found) is not an error.
func rusaged(b testing.TB, env, args []string) (time.Duration, time.Duration, int64, string) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 1) {
		b.Fatalf("%s: %v\n%s", args[0], err, errb.String())
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var rss int64
	if ru != nil {
		rss = ru.Maxrss
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), rss, out.String()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// TestEngineHeldHelper is BenchmarkRealSize's child: it loads
// VIGIL_ENGINE_HELPER's signatures and builds the engine as the agent does
// (engineCache.get), drops the Set, and prints its resident memory.
func TestEngineHeldHelper(t *testing.T) {
	dir := os.Getenv("VIGIL_ENGINE_HELPER")
	if dir == "" {
		t.Skip("only a child of BenchmarkRealSize")
	}
	set, err := signatures.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := New(set)
	if e.err != nil {
		t.Fatal(e.err)
	}
	debug.FreeOSMemory()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Printf("HELD-RSS-KiB %s\n", strings.Fields(v)[0])
		}
	}
	runtime.KeepAlive(e)
}

// genRawCorpus writes about 400 MB of raw files, a third each of
// English-like text, pieces of the machine's own executables and
// libraries (/usr/bin, /usr/lib), and random bytes: 2,000 files of
// 0.5–128 KiB, 40 of 1–5 MiB and 2 of 64–96 MiB. Matches of some of the
// body signatures in sigDir are planted in 1 file in 31, and the MD5 of 1
// file in 301 is added to sigDir as a hash signature.
func genRawCorpus(b testing.TB, sigDir, files string) {
	rng := rand.New(rand.NewPCG(21, 22))
	g := newSigGen(23)
	must(os.MkdirAll(files, 0o755))
	ndb, err := os.ReadFile(filepath.Join(sigDir, "gen.ndb"))
	must(err)
	lines := strings.Split(strings.TrimSpace(string(ndb)), "\n")
	var pool []byte // the machine's binaries, up to 64 MiB
	for _, d := range []string{"/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if len(pool) >= 64<<20 || !e.Type().IsRegular() {
				continue
			}
			if data, err := os.ReadFile(filepath.Join(d, e.Name())); err == nil {
				pool = append(pool, data...)
			}
		}
	}
	if len(pool) < 1<<20 {
		b.Fatalf("only %d bytes of executables in /usr", len(pool))
	}
	var sizes []int
	for range 2000 {
		sizes = append(sizes, 512+rng.IntN(128<<10))
	}
	for range 40 {
		sizes = append(sizes, 1<<20+rng.IntN(4<<20))
	}
	for range 2 {
		sizes = append(sizes, 64<<20+rng.IntN(32<<20))
	}
	var hdb strings.Builder
	for i, n := range sizes {
		var data []byte
		switch i % 3 {
		case 0:
			var sb bytes.Buffer
			for sb.Len() < n {
				sb.WriteString(words[rng.IntN(len(words))])
				sb.WriteByte(' ')
			}
			data = sb.Bytes()[:n]
		case 1:
			for len(data) < n {
				at := rng.IntN(len(pool))
				data = append(data, pool[at:min(len(pool), at+n-len(data))]...)
			}
		default:
			data = g.random(n)
		}
		if i%31 == 7 {
			sig := lines[rng.IntN(len(lines))]
			m := plantFor(b, sig)
			if len(m) < len(data) {
				copy(data[rng.IntN(len(data)-len(m)):], m)
			}
		}
		if i%301 == 5 {
			fmt.Fprintf(&hdb, "%x:%d:Gen.Planted.Hash-%d-0\n", md5.Sum(data), len(data), i)
		}
		d := filepath.Join(files, fmt.Sprintf("d%02d", i%40))
		must(os.MkdirAll(d, 0o755))
		must(os.WriteFile(filepath.Join(d, "f"+strconv.Itoa(i)), data, 0o644))
	}
	f, err := os.OpenFile(filepath.Join(sigDir, "gen.hdb"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteString(hdb.String())
	must(err)
	must(f.Close())
}

// plantFor returns bytes matching a generated body signature line: each
// wildcard, nibble, gap or alternative filled with a choice that matches.
func plantFor(b testing.TB, line string) []byte {
	f := strings.Split(line, ":")
	hexs := f[3]
	var out []byte
	for i := 0; i < len(hexs); {
		switch c := hexs[i]; {
		case c == '*':
			out = append(out, "........"...)
			i++
		case c == '{':
			j := strings.IndexByte(hexs[i:], '}')
			lo, _, _ := strings.Cut(hexs[i+1:i+j], "-")
			n, _ := strconv.Atoi(lo)
			out = append(out, bytes.Repeat([]byte{'.'}, n)...)
			i += j + 1
		case c == '(':
			j := strings.IndexByte(hexs[i:], '|')
			v, err := strconv.ParseUint(hexs[i+1:i+j], 16, 64)
			if err != nil || j != 5 {
				b.Fatalf("plant %q: alternative", line)
			}
			out = append(out, byte(v>>8), byte(v))
			i = i + strings.IndexByte(hexs[i:], ')') + 1
		case hexs[i+1] == '?' && hexs[i] == '?':
			out = append(out, 'Z')
			i += 2
		case hexs[i+1] == '?':
			v, _ := strconv.ParseUint(hexs[i:i+1], 16, 8)
			out = append(out, byte(v<<4|5))
			i += 2
		default:
			v, err := strconv.ParseUint(hexs[i:i+2], 16, 8)
			if err != nil {
				b.Fatalf("plant %q at %d: %v", line, i, err)
			}
			out = append(out, byte(v))
			i += 2
		}
	}
	return out
}
