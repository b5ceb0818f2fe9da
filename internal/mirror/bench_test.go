package mirror

import (
	"crypto"
	"crypto/ed25519"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// The benchmark compares a full sync by the mirror (in a child process:
// the test binary, as in the crash tests) with `lftp mirror` on the same
// files, from a LiveUpdate server on 127.0.0.2, over FTP and HTTP, with
// the same parallelism, in the same run. Run it with
//
//	go test ./internal/mirror -run '^$' -bench Mirror -benchtime 1x -timeout 30m
//
// VIGIL_BENCH_FILES and VIGIL_BENCH_MIB change the repository (default
// 2000 files, 1024 MiB); VIGIL_BENCH_ROUNDS the number of rounds (3; the
// median is reported).

func benchEnvInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// makeBenchRepo writes a repository with n targets totalling about total
// bytes (sizes spread evenly between a quarter and seven quarters of the
// mean, pseudo-random content) into pub, the public directory, and
// returns its root metadata.
func makeBenchRepo(tb testing.TB, pub string, n int, total int64, seed uint64) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	mean := total / int64(n)
	sizes := make([]int64, n)
	var written int64
	for i := range n {
		size := mean/4 + rng.Int64N(mean*3/2+1)
		if i == n-1 && total-written > 0 && total-written < mean*2 {
			size = total - written // land on the total
		}
		written += size
		sizes[i] = size
	}
	return makeBenchRepoSizes(tb, pub, sizes, seed)
}

// makeBenchRepoSizes writes a repository with a target of each size
// (pseudo-random content, bench/NNNN.bin) into pub, the public directory,
// and returns its root metadata.
func makeBenchRepoSizes(tb testing.TB, pub string, sizes []int64, seed uint64) []byte {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(cryptorand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		tb.Fatal(err)
	}
	exp := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	root := metadata.Root(exp)
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(key, role); err != nil {
			tb.Fatal(err)
		}
	}
	md, td := filepath.Join(pub, metaDir), filepath.Join(pub, targetsDir, "bench")
	for _, d := range []string{md, td} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	targets := metadata.Targets(exp)
	src := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 1<<20)
	for i, size := range sizes {
		name := fmt.Sprintf("%04d.bin", i)
		tmp := filepath.Join(td, ".tmp")
		f, err := os.Create(tmp)
		if err != nil {
			tb.Fatal(err)
		}
		h := sha256.New()
		for left := size; left > 0; {
			k := min(left, int64(len(buf)))
			src.Read(buf[:k])
			f.Write(buf[:k])
			h.Write(buf[:k])
			left -= k
		}
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
		sum := h.Sum(nil)
		if err := os.Rename(tmp, filepath.Join(td, hex.EncodeToString(sum)+"."+name)); err != nil {
			tb.Fatal(err)
		}
		p := "bench/" + name
		targets.Signed.Targets[p] = &metadata.TargetFiles{Length: size, Hashes: metadata.Hashes{"sha256": sum}, Path: p}
	}
	sign := func(m interface {
		Sign(signature.Signer) (*metadata.Signature, error)
		ToBytes(bool) ([]byte, error)
	}) []byte {
		if _, err := m.Sign(signer); err != nil {
			tb.Fatal(err)
		}
		b, err := m.ToBytes(true)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	tb1 := sign(targets)
	snap := metadata.Snapshot(exp)
	th := sha256.Sum256(tb1)
	snap.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: 1, Length: int64(len(tb1)), Hashes: metadata.Hashes{"sha256": th[:]}}
	sb := sign(snap)
	ts := metadata.Timestamp(exp)
	sh := sha256.Sum256(sb)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: 1, Length: int64(len(sb)), Hashes: metadata.Hashes{"sha256": sh[:]}}
	rb := sign(root)
	for name, b := range map[string][]byte{"1.root.json": rb, "1.targets.json": tb1, "1.snapshot.json": sb, "timestamp.json": sign(ts)} {
		if err := os.WriteFile(filepath.Join(md, name), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return rb
}

// benchRun is one timed run of a tool.
type benchRun struct {
	dur    time.Duration
	cpu    time.Duration // user + system
	maxRSS int64         // bytes
	sum    *Summary
}

// runMirrorProcess runs one sync in a child process and measures it.
func runMirrorProcess(tb testing.TB, cc childConfig) benchRun {
	tb.Helper()
	raw, _ := json.Marshal(cc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw), "GORACE=atexit_sleep_ms=0")
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	dur := time.Since(start)
	if err != nil {
		tb.Fatalf("mirror: %v\n%s", err, stderr.String())
	}
	r := benchRun{dur: dur, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), maxRSS: maxRSS(cmd.ProcessState)}
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "SUMMARY "); ok {
			r.sum = &Summary{}
			if err := json.Unmarshal([]byte(s), r.sum); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return r
}

func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024 // KiB on Linux
	}
	return 0
}

// runLftp mirrors url (a targets directory) into dst with lftp.
func runLftp(tb testing.TB, script, dst string) benchRun {
	tb.Helper()
	cmd := exec.Command("lftp", "-c", script)
	cmd.Dir = dst
	start := time.Now()
	out, err := cmd.CombinedOutput()
	dur := time.Since(start)
	if err != nil {
		tb.Fatalf("lftp: %v\n%s", err, out)
	}
	return benchRun{dur: dur, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), maxRSS: maxRSS(cmd.ProcessState)}
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(tb testing.TB, dir string) (files int, bytes int64) {
	tb.Helper()
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files++
			bytes += fi.Size()
		}
		return nil
	})
	return
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkMirror: see the comment at the top of this file.
func BenchmarkMirror(b *testing.B) {
	if _, err := exec.LookPath("lftp"); err != nil {
		b.Skip("lftp is not installed (apt-get install -y lftp)")
	}
	nFiles := benchEnvInt("VIGIL_BENCH_FILES", 2000)
	mib := benchEnvInt("VIGIL_BENCH_MIB", 1024)
	rounds := benchEnvInt("VIGIL_BENCH_ROUNDS", 3)
	const parallel = 4
	work := b.TempDir()
	top := filepath.Join(work, "upstream")
	pub := filepath.Join(top, "pub")
	b.Logf("generating %d targets, %d MiB", nFiles, mib)
	root := makeBenchRepo(b, pub, nFiles, int64(mib)<<20, 1)
	rootFile := filepath.Join(work, "1.root.json")
	os.WriteFile(rootFile, root, 0o644)
	// Large files, same total: memory must not follow file size.
	bigPub := filepath.Join(top, "big")
	makeBenchRepo(b, bigPub, 4, int64(mib)<<20, 2)
	bigRoot := filepath.Join(work, "big.root.json")
	bb, _ := os.ReadFile(filepath.Join(bigPub, metaDir, "1.root.json"))
	os.WriteFile(bigRoot, bb, 0o644)

	addr := netip.MustParseAddr("127.0.0.2")
	srv := liveupdatetest.Start(b, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root:     top,
		HTTPAddr: addr.String() + ":0",
		FTPAddr:  addr.String() + ":0",
	},
	})
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer dns.Close()
	dns.AddCNAME(upstreamName, poolName)
	dns.SetAddrs(poolName, addr)
	_, httpPort, _ := net.SplitHostPort(srv.HTTPAddr().String())
	_, ftpPort, _ := net.SplitHostPort(srv.FTPAddr().String())
	ftpBase := "ftp://" + upstreamName + ":" + ftpPort
	httpBase := "http://" + upstreamName + ":" + httpPort
	lftpFTP := fmt.Sprintf("set cmd:fail-exit yes; set net:max-retries 2; set net:timeout 30; set ftp:passive-mode yes; open -u anonymous,vigil ftp://%s:%s; mirror --parallel=%d /pub/targets .", addr, ftpPort, parallel)
	lftpHTTP := fmt.Sprintf("set cmd:fail-exit yes; set net:max-retries 2; set net:timeout 30; mirror --parallel=%d http://%s:%s/pub/targets/ .", parallel, addr, httpPort)

	// Warm the page cache, so that every run reads from memory.
	if _, n := dirSize(b, top); n > 0 {
		filepath.Walk(top, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if f, err := os.Open(p); err == nil {
					io.Copy(io.Discard, f)
					f.Close()
				}
			}
			return nil
		})
	}
	totalFiles, totalBytes := dirSize(b, filepath.Join(pub, targetsDir))
	mb := float64(totalBytes) / 1e6

	type result struct {
		name         string
		mirror, lftp []time.Duration
		lftpSync     []time.Duration // lftp, then sync(2): its files made durable, as the mirror's are
		cpu, lftpCPU []time.Duration
		rss, lftpRSS int64
		nothingNew   []time.Duration
	}
	var results []*result
	for _, proto := range []struct {
		name, base, lftp string
	}{{"ftp", ftpBase, lftpFTP}, {"http", httpBase, lftpHTTP}} {
		res := &result{name: proto.name}
		results = append(results, res)
		for round := range rounds {
			// lftp first in even rounds, the mirror first in odd ones.
			order := []string{"lftp", "mirror"}
			if round%2 == 1 {
				order = []string{"mirror", "lftp"}
			}
			for _, tool := range order {
				dst := filepath.Join(work, fmt.Sprintf("%s-%s-%d", tool, proto.name, round))
				os.MkdirAll(dst, 0o755)
				syscall.Sync() // nobody pays for the previous run's writes
				switch tool {
				case "lftp":
					r := runLftp(b, proto.lftp, dst)
					if f, n := dirSize(b, dst); f != totalFiles || n != totalBytes {
						b.Fatalf("lftp fetched %d files, %d bytes; want %d, %d", f, n, totalFiles, totalBytes)
					}
					res.lftp = append(res.lftp, r.dur)
					res.lftpCPU = append(res.lftpCPU, r.cpu)
					start := time.Now()
					syscall.Sync()
					res.lftpSync = append(res.lftpSync, r.dur+time.Since(start))
					res.lftpRSS = max(res.lftpRSS, r.maxRSS)
				case "mirror":
					cc := childConfig{Upstream: proto.base + "/pub", RootFile: rootFile, Dir: dst, Resolver: dns.Addr(), Parallel: parallel, Keep: 3}
					r := runMirrorProcess(b, cc)
					if r.sum == nil || r.sum.Fetched.TargetFiles != totalFiles || r.sum.Fetched.TargetBytes != totalBytes {
						b.Fatalf("mirror: %+v", r.sum)
					}
					res.mirror = append(res.mirror, r.dur)
					res.cpu = append(res.cpu, r.cpu)
					res.rss = max(res.rss, r.maxRSS)
					again := runMirrorProcess(b, cc)
					if again.sum == nil || !again.sum.UpToDate || again.sum.Fetched.TargetFiles != 0 {
						b.Fatalf("second sync: %+v", again.sum)
					}
					res.nothingNew = append(res.nothingNew, again.dur)
				}
				os.RemoveAll(dst)
				syscall.Sync()
			}
		}
	}
	// Memory with a few large files.
	dst := filepath.Join(work, "big")
	big := runMirrorProcess(b, childConfig{Upstream: ftpBase + "/big", RootFile: bigRoot, Dir: dst, Resolver: dns.Addr(), Parallel: parallel})
	os.RemoveAll(dst)

	b.Logf("repository: %d files, %d bytes; %d rounds, parallel %d; medians:", totalFiles, totalBytes, rounds, parallel)
	b.Logf("| protocol | vigil mirror | lftp mirror | speed vs lftp | lftp + sync | speed vs lftp + sync | nothing new | CPU: mirror / lftp | max RSS: mirror / lftp |")
	for _, r := range results {
		m, l, ls := median(r.mirror), median(r.lftp), median(r.lftpSync)
		b.Logf("| %s | %.2f s (%.0f MB/s) | %.2f s (%.0f MB/s) | %.2f× | %.2f s | %.2f× | %.0f ms | %.2f s / %.2f s | %.0f / %.0f MiB |",
			r.name, m.Seconds(), mb/m.Seconds(), l.Seconds(), mb/l.Seconds(), l.Seconds()/m.Seconds(),
			ls.Seconds(), ls.Seconds()/m.Seconds(),
			float64(median(r.nothingNew).Microseconds())/1000, median(r.cpu).Seconds(), median(r.lftpCPU).Seconds(),
			float64(r.rss)/(1<<20), float64(r.lftpRSS)/(1<<20))
		b.Logf("  %s runs: mirror %v, lftp %v, lftp+sync %v, nothing new %v", r.name, r.mirror, r.lftp, r.lftpSync, r.nothingNew)
		b.ReportMetric(mb/m.Seconds(), r.name+"-mirror-MB/s")
		b.ReportMetric(mb/l.Seconds(), r.name+"-lftp-MB/s")
		b.ReportMetric(l.Seconds()/m.Seconds(), r.name+"-speed-vs-lftp")
		b.ReportMetric(median(r.nothingNew).Seconds(), r.name+"-nothing-new-s")
		b.ReportMetric(float64(r.rss)/(1<<20), r.name+"-maxrss-MiB")
	}
	b.Logf("4 files of %d MiB each over FTP: %.2f s, max RSS %.0f MiB", mib/4, big.dur.Seconds(), float64(big.maxRSS)/(1<<20))
	b.ReportMetric(float64(big.maxRSS)/(1<<20), "bigfiles-maxrss-MiB")
}
