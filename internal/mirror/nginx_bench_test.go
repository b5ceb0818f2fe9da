package mirror

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkMirrorNginx measures, from outside, a full sync by a real
// `vigil mirror` process (built from ./cmd/vigil) against `lftp mirror
// --parallel=4` of the same targets directory, both from an nginx that
// the benchmark starts on 127.0.0.1 with its own configuration, both into
// an empty directory of the file system holding VIGIL_BENCH_DIR (default:
// the test's temporary directory; it should be a disk, not tmpfs). Pair
// by pair: each round runs both tools, each going first in turn, with
// sync(2) before each run (after an uncounted warm-up round); lftp's time
// is also given followed by sync(2), since the mirror's files are durable
// when it reports success and lftp's are only in the page cache. With
// VIGIL_BENCH_BEFORE=FILE, an earlier vigil binary runs in every round too
// (before/after figures from the same rounds). Run it with
//
//	go test ./internal/mirror -run '^$' -bench MirrorNginx -benchtime 1x -timeout 30m -v
//
// (needs the Debian packages nginx and lftp). VIGIL_BENCH_FILES (50) and
// VIGIL_BENCH_FILE_MIB (10) set the repository, VIGIL_BENCH_ROUNDS (5)
// the number of pairs, VIGIL_BENCH_PARALLEL (4) both tools' parallelism.
// With VIGIL_BENCH_HYPERFINE=1 it also runs hyperfine (Debian package
// hyperfine) on the same two commands, the same way (an empty directory
// and sync(2) before each run; lftp followed by sync). With
// VIGIL_BENCH_DIR set, VIGIL_BENCH_KEEP=1 keeps the repository, the vigil
// binary and nginx's configuration there for runs by hand.
func BenchmarkMirrorNginx(b *testing.B) {
	for _, tool := range []string{"nginx", "lftp", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (apt-get install -y nginx lftp)", tool)
		}
	}
	nFiles := benchEnvInt("VIGIL_BENCH_FILES", 50)
	fileMiB := benchEnvInt("VIGIL_BENCH_FILE_MIB", 10)
	rounds := benchEnvInt("VIGIL_BENCH_ROUNDS", 5)
	parallel := benchEnvInt("VIGIL_BENCH_PARALLEL", 4)
	work := os.Getenv("VIGIL_BENCH_DIR")
	if work == "" {
		work = b.TempDir()
	} else {
		var err error
		if work, err = os.MkdirTemp(work, "mirror-nginx-"); err != nil {
			b.Fatal(err)
		}
		if os.Getenv("VIGIL_BENCH_KEEP") == "" {
			defer os.RemoveAll(work)
		} else {
			b.Logf("kept after the run: %s (nginx -p %[1]s/nginx -c %[1]s/nginx/nginx.conf serves it again)", work)
		}
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(work, &sfs); err == nil && sfs.Type == 0x01021994 {
		b.Logf("warning: %s is on tmpfs: nothing is written to a disk", work)
	}

	// The repository: nFiles targets of fileMiB MiB each.
	top := filepath.Join(work, "www")
	pub := filepath.Join(top, "pub")
	sizes := make([]int64, nFiles)
	for i := range sizes {
		sizes[i] = int64(fileMiB) << 20
	}
	root := makeBenchRepoSizes(b, pub, sizes, 3)
	rootFile := filepath.Join(work, "1.root.json")
	if err := os.WriteFile(rootFile, root, 0o644); err != nil {
		b.Fatal(err)
	}
	totalFiles, totalBytes := dirSize(b, filepath.Join(pub, targetsDir))
	mb := float64(totalBytes) / 1e6

	// vigil, as shipped.
	vigil := filepath.Join(work, "vigil")
	if out, err := exec.Command("go", "build", "-o", vigil, "github.com/vigil-fleet/vigil/cmd/vigil").CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/vigil: %v\n%s", err, out)
	}

	port := startNginx(b, work, top)
	base := "http://127.0.0.1:" + port + "/pub"
	// Warm the server's page cache: every run reads the same files from
	// memory.
	filepath.Walk(filepath.Join(pub, targetsDir), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			os.ReadFile(path)
		}
		return nil
	})

	mirrorArgs := func(dst string) []string {
		return []string{"mirror", "-root", rootFile, "-dir", dst, "-parallel", fmt.Sprint(parallel), "-progress", "off", base}
	}
	lftpScript := fmt.Sprintf("set cmd:fail-exit yes; set net:max-retries 2; set net:timeout 30; mirror --parallel=%d %s/targets/ .", parallel, base)
	b.Logf("vigil: %s %s", vigil, strings.Join(mirrorArgs("DST"), " "))
	b.Logf("lftp: cd DST && lftp -c '%s'", lftpScript)

	// The tools: lftp, vigil, and an earlier vigil binary to compare with
	// (VIGIL_BENCH_BEFORE).
	type tool struct {
		name, bin         string
		dur, durSync, cpu []time.Duration
		sysCPU            []time.Duration // every process's CPU during the run (nginx's, the kernel's workers')
	}
	tools := []*tool{{name: "lftp"}, {name: "vigil mirror", bin: vigil}}
	if before := os.Getenv("VIGIL_BENCH_BEFORE"); before != "" {
		tools = append(tools, &tool{name: "vigil before", bin: before})
	}
	run := func(t *tool, dst string, record bool) {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dst)
		syscall.Sync() // nobody pays for the previous run's writes
		busy := systemBusy(b)
		var r benchRun
		if t.bin == "" {
			cmd := exec.Command("lftp", "-c", lftpScript)
			cmd.Dir = dst
			r = timeCommand(b, cmd)
			if f, n := dirSize(b, dst); f != totalFiles || n != totalBytes {
				b.Fatalf("lftp fetched %d files, %d bytes; want %d, %d", f, n, totalFiles, totalBytes)
			}
		} else {
			r = timeCommand(b, exec.Command(t.bin, mirrorArgs(dst)...))
			if f, n := dirSize(b, filepath.Join(dst, targetsDir)); f != totalFiles || n != totalBytes {
				b.Fatalf("%s placed %d files, %d bytes; want %d, %d", t.name, f, n, totalFiles, totalBytes)
			}
		}
		start := time.Now()
		syscall.Sync() // for the mirror: nothing left to write
		durSync := r.dur + time.Since(start)
		busy = systemBusy(b) - busy
		if record {
			t.dur, t.durSync, t.cpu, t.sysCPU = append(t.dur, r.dur), append(t.durSync, durSync), append(t.cpu, r.cpu), append(t.sysCPU, busy)
		}
	}
	// One round not counted: the first run of each tool is slower.
	for _, t := range tools {
		run(t, filepath.Join(work, "warm"), false)
	}
	var ratios, ratiosSync []string
	for round := range rounds {
		order := make([]*tool, 0, len(tools))
		for i := range tools {
			order = append(order, tools[(i+round)%len(tools)]) // each goes first in turn
		}
		var line []string
		for _, t := range order {
			run(t, filepath.Join(work, fmt.Sprintf("run-%d", round)), true)
			line = append(line, fmt.Sprintf("%s %.2f s", t.name, t.dur[round].Seconds()))
		}
		l, ls, m := tools[0].dur[round], tools[0].durSync[round], tools[1].dur[round]
		ratios = append(ratios, fmt.Sprintf("%.2f", l.Seconds()/m.Seconds()))
		ratiosSync = append(ratiosSync, fmt.Sprintf("%.2f", ls.Seconds()/m.Seconds()))
		b.Logf("round %d: %s (lftp + sync %.2f s): vigil mirror's speed %.2f× lftp, %.2f× lftp + sync",
			round+1, strings.Join(line, ", "), ls.Seconds(), l.Seconds()/m.Seconds(), ls.Seconds()/m.Seconds())
	}
	l, ls, m := median(tools[0].dur), median(tools[0].durSync), median(tools[1].dur)
	b.Logf("%d files, %d bytes, parallel %d, %d rounds; medians (CPU: the tool's user + system; all CPU: every process's, nginx's included):", totalFiles, totalBytes, parallel, rounds)
	b.Logf("| tool | time | speed | CPU | all CPU |")
	for _, t := range tools {
		b.Logf("| %s | %.2f s (%.0f MB/s) | %.2f× lftp, %.2f× lftp + sync | %.2f s | %.2f s |", t.name, median(t.dur).Seconds(), mb/median(t.dur).Seconds(),
			l.Seconds()/median(t.dur).Seconds(), ls.Seconds()/median(t.dur).Seconds(), median(t.cpu).Seconds(), median(t.sysCPU).Seconds())
	}
	b.Logf("| lftp + sync | %.2f s (%.0f MB/s) | | | |", ls.Seconds(), mb/ls.Seconds())
	b.Logf("round by round, vigil mirror's speed vs lftp: %s; vs lftp + sync: %s", strings.Join(ratios, " "), strings.Join(ratiosSync, " "))
	b.ReportMetric(mb/m.Seconds(), "mirror-MB/s")
	b.ReportMetric(mb/l.Seconds(), "lftp-MB/s")
	b.ReportMetric(l.Seconds()/m.Seconds(), "speed-vs-lftp")
	b.ReportMetric(ls.Seconds()/m.Seconds(), "speed-vs-lftp+sync")

	if os.Getenv("VIGIL_BENCH_HYPERFINE") != "" {
		if _, err := exec.LookPath("hyperfine"); err != nil {
			b.Fatal("VIGIL_BENCH_HYPERFINE: hyperfine is not installed (apt-get install -y hyperfine)")
		}
		dst := filepath.Join(work, "hf")
		prepare := fmt.Sprintf("rm -rf %s && mkdir %s && sync", dst, dst)
		args := []string{"-w", "1", "-r", fmt.Sprint(rounds), "--prepare", prepare,
			"-n", "vigil mirror", fmt.Sprintf("%s %s", vigil, strings.Join(mirrorArgs(dst), " ")),
			"-n", "lftp mirror", fmt.Sprintf("cd %s && lftp -c %q", dst, lftpScript),
			"-n", "lftp mirror + sync", fmt.Sprintf("cd %s && lftp -c %q && sync", dst, lftpScript)}
		if len(tools) > 2 {
			args = append(args, "-n", tools[2].name, fmt.Sprintf("%s %s", tools[2].bin, strings.Join(mirrorArgs(dst), " ")))
		}
		cmd := exec.Command("hyperfine", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		b.Logf("hyperfine %s", strings.Join(cmd.Args[1:], " "))
		if err := cmd.Run(); err != nil {
			b.Fatalf("hyperfine: %v\n%s", err, out.String())
		}
		b.Logf("%s", out.String())
	}
}

// systemBusy is the CPU time used by every process so far (/proc/stat:
// user, nice, system, irq, softirq), on every core.
func systemBusy(tb testing.TB) time.Duration {
	tb.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		if i < len(f) {
			var v int64
			fmt.Sscan(f[i], &v)
			ticks += v
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100
}

// timeCommand runs cmd and measures its wall time and CPU.
func timeCommand(tb testing.TB, cmd *exec.Cmd) benchRun {
	tb.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	dur := time.Since(start)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	return benchRun{dur: dur, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), maxRSS: maxRSS(cmd.ProcessState)}
}

// startNginx starts nginx on a free port of 127.0.0.1, serving dir (with
// directory listings, which lftp needs), configured and logging in
// work/nginx, and stops it when the benchmark ends. It returns the port.
func startNginx(tb testing.TB, work, dir string) string {
	tb.Helper()
	prefix := filepath.Join(work, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;" // the temporary directory is root's alone
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 2;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log;
events { worker_connections 256; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 10000;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	types { application/json json; }
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:%[3]s;
		root %[4]s;
		autoindex on;
	}
}
`, user, prefix, port, dir)
	confFile := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("nginx", "-p", prefix, "-c", confFile, "-e", filepath.Join(prefix, "logs", "error.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		<-exited
	})
	// Wait until it accepts connections (or exits).
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(prefix, "logs", "error.log"))
			tb.Fatalf("nginx exited: %v\n%s%s", err, out.String(), log)
		case <-time.After(delay):
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return port
		}
	}
}
