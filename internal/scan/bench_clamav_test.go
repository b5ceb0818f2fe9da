package scan

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// BenchmarkVsClamscan (docs/benchmarks.md) measures vigil scan against
// clamscan with the same signatures (10,000 hash and 1,000 body
// signatures, generated from a fixed seed) over the same generated corpus
// of more than 1 GiB, measured in the same run with /usr/bin/time -v
// (wall time, peak RSS). Run it with
//
//	go test ./internal/scan -run '^$' -bench VsClamscan -benchtime 1x -timeout 60m
//
// It needs clamscan (Debian: clamav) and /usr/bin/time (Debian: time).
// VIGIL_BENCH_DIR keeps the corpus there between runs (generated once);
// the results table is printed and, with VIGIL_BENCH_OUT, written to that
// file.
func BenchmarkVsClamscan(b *testing.B) {
	clamscan := testenv.NeedTool(b, "clamscan", "clamav")
	timeBin := "/usr/bin/time"
	if _, err := os.Stat(timeBin); err != nil {
		testenv.NeedTool(b, "time-not-found", "time")
	}
	dir := os.Getenv("VIGIL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	sigDir, files := filepath.Join(dir, "sigs"), filepath.Join(dir, "corpus")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err != nil {
		b.Logf("generating signatures and corpus in %s", dir)
		must(os.RemoveAll(sigDir))
		must(os.RemoveAll(files))
		genBench(b, sigDir, files)
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
		env  []string
		args []string
	}
	clamArgs := append(slices.Clone(clamscanArgs), "-i", "-d", sigDir, files)
	// vigil scan with clamscanArgs' meaning: every match, no heuristic
	// alerts, the same size limits.
	vigilArgs := []string{vigil, "scan", "-d", sigDir, "-infected", "-no-summary", "-allmatch",
		"-heuristic-alerts=no", "-max-filesize", "400M", "-max-scansize", "400M", files}
	tools := []tool{
		{"vigil scan (2 workers)", nil, vigilArgs},
		{"vigil scan (GOMAXPROCS=1)", []string{"GOMAXPROCS=1"}, vigilArgs},
		{"clamscan", nil, append([]string{clamscan}, clamArgs...)},
	}
	type result struct {
		wall   time.Duration
		rssKiB int64
		found  []string
	}
	best := make([]result, len(tools))
	b.ResetTimer()
	for range b.N {
		// Two rounds, alternating, so both tools find the corpus in the
		// page cache; the faster round counts.
		for round := 0; round < 2; round++ {
			for i, t := range tools {
				wall, rss, out := timed(b, timeBin, t.env, t.args)
				if round == 0 || wall < best[i].wall {
					best[i] = result{wall, rss, found(out)}
				}
				b.Logf("round %d: %s: %v, %d MiB", round, t.name, wall.Round(time.Millisecond), rss>>10)
			}
		}
	}
	b.StopTimer()
	mb := float64(corpusBytes) / 1e6
	var sb strings.Builder
	fmt.Fprintf(&sb, "Corpus: %d files, %.2f GiB; signatures: 10,000 hash (5,000 MD5, 3,000 SHA-1, 2,000 SHA-256) and 1,000 body.\n",
		corpusFiles, float64(corpusBytes)/(1<<30))
	fmt.Fprintf(&sb, "Machine: %d CPUs (%s/%s), Go %s, %s.\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(),
		strings.TrimSpace(run(b, clamscan, "--version")))
	fmt.Fprintf(&sb, "| tool | wall time | throughput | peak RSS | detections |\n|---|---:|---:|---:|---:|\n")
	clam := best[len(best)-1]
	for i, t := range tools {
		r := best[i]
		fmt.Fprintf(&sb, "| %s | %.2f s | %.0f MB/s (%.2f× clamscan) | %d MiB | %d |\n", t.name, r.wall.Seconds(),
			mb/r.wall.Seconds(), clam.wall.Seconds()/r.wall.Seconds(), r.rssKiB>>10, len(r.found))
	}
	for i := range tools[:len(tools)-1] {
		if !slices.Equal(best[i].found, clam.found) {
			fmt.Fprintf(&sb, "\nDETECTIONS DIFFER: %s: %q; clamscan: %q\n", tools[i].name, best[i].found, clam.found)
			b.Errorf("detections differ")
		}
	}
	b.ReportMetric(mb/best[0].wall.Seconds(), "vigil-MB/s")
	b.ReportMetric(mb/clam.wall.Seconds(), "clamscan-MB/s")
	b.ReportMetric(float64(best[0].rssKiB>>10), "vigil-MiB")
	b.ReportMetric(float64(clam.rssKiB>>10), "clamscan-MiB")
	fmt.Println(sb.String())
	if out := os.Getenv("VIGIL_BENCH_OUT"); out != "" {
		must(os.WriteFile(out, []byte(sb.String()), 0o644))
	}
}

func run(b testing.TB, name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return string(out)
}

// timed runs args under /usr/bin/time -v; it returns wall time, peak RSS
// (KiB) and stdout.
func timed(b testing.TB, timeBin string, env, args []string) (time.Duration, int64, string) {
	cmd := exec.Command(timeBin, append([]string{"-v"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 1) {
		b.Fatalf("%s: %v\n%s", args[0], err, errb.String())
	}
	var wall time.Duration
	var rss int64
	sc := bufio.NewScanner(&errb)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Maximum resident set size (kbytes): "); ok {
			rss, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "Elapsed (wall clock) time (h:mm:ss or m:ss): "); ok {
			wall = parseClock(v)
		}
	}
	return wall, rss, out.String()
}

// parseClock parses h:mm:ss.ss or m:ss.ss.
func parseClock(v string) time.Duration {
	var secs float64
	for _, f := range strings.Split(v, ":") {
		x, _ := strconv.ParseFloat(f, 64)
		secs = secs*60 + x
	}
	return time.Duration(secs * float64(time.Second))
}

// found extracts sorted "path name" pairs from FOUND lines.
func found(out string) []string {
	var l []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutSuffix(line, " FOUND"); ok {
			l = append(l, strings.Replace(strings.TrimSuffix(rest, ".UNOFFICIAL"), ".UNOFFICIAL", "", 1))
		}
	}
	slices.Sort(l)
	return slices.Compact(l)
}

func dirSize(dir string) (n, files int64) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
				files++
			}
		}
		return nil
	})
	return n, files
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his
from at which but have an they you were their one all we can her has there been if more when will would
who so no file system agent server scan signature update network packet command result error warning
function return value string number object array class public private static void import export const`)

// genBench writes the benchmark's signatures and corpus.
func genBench(b testing.TB, sigDir, files string) {
	rng := rand.New(rand.NewPCG(1, 1))
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := 0; i < n; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < n; j++ {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		return p
	}
	text := func(n int) []byte {
		var sb bytes.Buffer
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				sb.WriteString(".\n")
			} else {
				sb.WriteByte(' ')
			}
		}
		return sb.Bytes()[:n]
	}
	must(os.MkdirAll(sigDir, 0o755))
	must(os.MkdirAll(files, 0o755))
	nfile := 0
	write := func(data []byte) string {
		d := filepath.Join(files, fmt.Sprintf("d%02d", nfile%50))
		must(os.MkdirAll(d, 0o755))
		p := filepath.Join(d, fmt.Sprintf("f%05d.bin", nfile))
		nfile++
		must(os.WriteFile(p, data, 0o644))
		return p
	}
	// The corpus: small text and binary files, medium files, large ones.
	var sizes []int
	for range 6000 {
		sizes = append(sizes, 512+rng.IntN(48<<10))
	}
	for range 300 {
		sizes = append(sizes, 256<<10+rng.IntN(1<<20))
	}
	for range 13 {
		sizes = append(sizes, 48<<20+rng.IntN(32<<20))
	}
	// Body signatures: random bytes with some wildcards, gaps and
	// alternatives; a few planted in corpus files.
	var ndb, hdb, hsb strings.Builder
	var plants [][]byte
	for i := range 1000 {
		var sig strings.Builder
		var match []byte
		lit := func(n int) {
			r := random(n)
			sig.WriteString(hex.EncodeToString(r))
			match = append(match, r...)
		}
		lit(8 + rng.IntN(12))
		switch i % 10 {
		case 1:
			sig.WriteString("??")
			match = append(match, 0x5a)
			lit(6)
		case 2:
			sig.WriteString("{4-12}")
			match = append(match, random(8)...)
			lit(6)
		case 3:
			sig.WriteString("(3132|4142)")
			match = append(match, 'A', 'B')
			lit(6)
		case 4:
			sig.WriteString("*")
			match = append(match, random(100)...)
			lit(8)
		case 5:
			sig.WriteString("4?")
			match = append(match, 0x47)
			lit(8)
		}
		fmt.Fprintf(&ndb, "Vigil.Bench.Body-%04d:0:*:%s\n", i, sig.String())
		if i%50 == 0 {
			plants = append(plants, match)
		}
	}
	// Hash signatures: 10,000, some of them of corpus files.
	hashOf := map[int][]byte{} // corpus index -> content, for planted hashes
	for k := 0; k < 10; k++ {
		hashOf[rng.IntN(6000)] = nil
	}
	contents := func(i, n int) []byte {
		if i%3 == 0 {
			return text(n)
		}
		return random(n)
	}
	for i, n := range sizes {
		data := contents(i, n)
		if len(plants) > 0 && i%97 == 5 {
			copy(data[rng.IntN(len(data)-len(plants[0])):], plants[0])
			plants = plants[1:]
		}
		if _, ok := hashOf[i]; ok {
			hashOf[i] = data
		}
		write(data)
	}
	nh := 0
	for _, data := range hashOf {
		fmt.Fprintf(&hdb, "%x:%d:Vigil.Bench.Hash-%05d\n", md5.Sum(data), len(data), nh)
		nh++
	}
	for nh < 10000 {
		size := 512 + rng.IntN(1<<20)
		h := random(32)
		switch {
		case nh < 5000:
			fmt.Fprintf(&hdb, "%x:%d:Vigil.Bench.Hash-%05d\n", h[:md5.Size], size, nh)
		case nh < 8000:
			fmt.Fprintf(&hsb, "%x:%d:Vigil.Bench.Hash-%05d\n", h[:sha1.Size], size, nh)
		default:
			fmt.Fprintf(&hsb, "%x:%d:Vigil.Bench.Hash-%05d\n", h[:sha256.Size], size, nh)
		}
		nh++
	}
	must(os.WriteFile(filepath.Join(sigDir, "bench.ndb"), []byte(ndb.String()), 0o644))
	must(os.WriteFile(filepath.Join(sigDir, "bench.hdb"), []byte(hdb.String()), 0o644))
	must(os.WriteFile(filepath.Join(sigDir, "bench.hsb"), []byte(hsb.String()), 0o644))
}
