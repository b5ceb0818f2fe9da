package liveupdate

// BenchmarkVersusPeers measures `vigil liveupdate` against nginx (HTTP) and
// vsftpd (FTP) serving the same directory, each pair in the same run, and
// the server's memory with idle connections and large files. It needs
// nginx, vsftpd, wrk and curl (apt-get install -y nginx vsftpd wrk curl)
// and root (vsftpd's anonymous mode chroots); it runs only with -bench:
//
//	go test -run '^$' -bench VersusPeers -benchtime 1x -timeout 30m ./internal/liveupdate
//
// Results are in docs/benchmarks.md ("LiveUpdate server"). Every
// connection is on 127.0.0.1, every load is bounded in time.

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	benchDuration = 5 * time.Second // one measurement
	httpRounds    = 6               // alternating measurements per HTTP pair
	ftpRounds     = 4               // alternating measurements per FTP pair
	ftpParallel   = 16              // concurrent curl processes
	ftpPerCurl    = 8               // downloads per curl process, over one control connection
)

type benchFile struct {
	name string
	size int64
}

var benchFiles = []benchFile{{"f64k.bin", 64 << 10}, {"f4m.bin", 4 << 20}}

// benchEnv is the shared setup: a repository and the three servers.
type benchEnv struct {
	b                   *testing.B
	dir, repo           string
	vigilPID            int
	nginxPID, vsftpdPID int
	vigilHTTP, vigilFTP string
	nginx, vsftpd       string
}

func requireBenchTools(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the peer benchmark reads /proc and runs Linux daemons")
	}
	if os.Geteuid() != 0 {
		b.Skip("vsftpd's anonymous mode needs root")
	}
	for _, t := range [][2]string{{"nginx", "nginx"}, {"vsftpd", "vsftpd"}, {"wrk", "wrk"}, {"curl", "curl"}} {
		if _, err := exec.LookPath(t[0]); err != nil {
			if _, err := os.Stat("/usr/sbin/" + t[0]); err != nil {
				b.Skipf("%s not installed (Debian: apt-get install -y %s)", t[0], t[1])
			}
		}
	}
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(b *testing.B, addr string) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never started listening: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startProc starts a daemon in its own process group, killed at cleanup.
func startProc(b *testing.B, logFile string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	lf, err := os.Create(logFile)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		lf.Close()
	})
	return cmd
}

func setupBench(b *testing.B) *benchEnv {
	requireBenchTools(b)
	dir, err := os.MkdirTemp("", "vigil-lu-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // nginx's workers run as nobody
	e := &benchEnv{b: b, dir: dir, repo: filepath.Join(dir, "repo")}
	os.Mkdir(e.repo, 0o755)
	for _, f := range benchFiles {
		data := make([]byte, f.size)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(e.repo, f.name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	huge, _ := os.Create(filepath.Join(e.repo, "f1g.bin"))
	huge.Truncate(1 << 30) // sparse: costs no disk
	huge.Close()
	os.Chmod(filepath.Join(e.repo, "f1g.bin"), 0o644)

	// vigil liveupdate, built from this tree.
	bin := filepath.Join(dir, "vigil")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vigil-fleet/vigil/cmd/vigil").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	hp, fp, pp := freePort(b), freePort(b), 50000+os.Getpid()%500*10
	e.vigilHTTP, e.vigilFTP = fmt.Sprintf("127.0.0.1:%d", hp), fmt.Sprintf("127.0.0.1:%d", fp)
	cmd := startProc(b, filepath.Join(dir, "vigil.log"), bin, "liveupdate", "-root", e.repo,
		"-http", e.vigilHTTP, "-ftp", e.vigilFTP, "-passive-ports", fmt.Sprintf("%d-%d", pp, pp+1999),
		"-max-conns", "8192", "-max-conns-per-ip", "-1", "-access-log", filepath.Join(dir, "vigil-access.log"))
	e.vigilPID = cmd.Process.Pid

	// nginx: two workers (one per core), sendfile and tcp_nopush, an
	// access log buffered as ours is (64 KiB, flushed every second),
	// keep-alive without a request limit (ours has none).
	np := freePort(b)
	e.nginx = fmt.Sprintf("127.0.0.1:%d", np)
	ndir := filepath.Join(dir, "nginx")
	os.MkdirAll(filepath.Join(ndir, "tmp"), 0o755)
	conf := fmt.Sprintf(`daemon off;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
  default_type application/octet-stream;
  access_log %[1]s/access.log combined buffer=64k flush=1s;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  server {
    listen %[2]s;
    root %[3]s;
    location / { }
  }
}
`, ndir, e.nginx, e.repo)
	os.WriteFile(filepath.Join(ndir, "nginx.conf"), []byte(conf), 0o644)
	e.nginxPID = startProc(b, filepath.Join(ndir, "stderr.log"), "nginx", "-e", filepath.Join(ndir, "error.log"), "-p", ndir, "-c", filepath.Join(ndir, "nginx.conf")).Process.Pid

	// vsftpd: anonymous, read-only, its own passive range, a transfer log.
	vp := freePort(b)
	e.vsftpd = fmt.Sprintf("127.0.0.1:%d", vp)
	vdir := filepath.Join(dir, "vsftpd")
	os.MkdirAll(vdir, 0o755)
	vconf := fmt.Sprintf(`listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=%d
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=%s
no_anon_password=YES
pasv_enable=YES
pasv_min_port=%d
pasv_max_port=%d
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
use_sendfile=YES
xferlog_enable=YES
xferlog_file=%s/xferlog
connect_from_port_20=NO
hide_ids=YES
`, vp, e.repo, pp+2000, pp+3999, vdir)
	os.WriteFile(filepath.Join(vdir, "vsftpd.conf"), []byte(vconf), 0o644)
	vsftpd := "vsftpd"
	if _, err := exec.LookPath(vsftpd); err != nil {
		vsftpd = "/usr/sbin/vsftpd"
	}
	e.vsftpdPID = startProc(b, filepath.Join(vdir, "stderr.log"), vsftpd, filepath.Join(vdir, "vsftpd.conf")).Process.Pid

	for _, a := range []string{e.vigilHTTP, e.vigilFTP, e.nginx, e.vsftpd} {
		waitListening(b, a)
	}
	// Every server must serve the same bytes.
	for _, f := range benchFiles {
		for _, u := range []string{"http://" + e.vigilHTTP, "http://" + e.nginx, "ftp://" + e.vigilFTP, "ftp://" + e.vsftpd} {
			out, err := exec.Command("curl", "-sS", "--fail", "-o", os.DevNull, "-w", "%{size_download}", u+"/"+f.name).CombinedOutput()
			if err != nil || string(out) != strconv.FormatInt(f.size, 10) {
				b.Fatalf("%s/%s: %v %s", u, f.name, err, out)
			}
		}
	}
	return e
}

var wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrk runs wrk -t2 -c64 for benchDuration and returns requests/s.
func (e *benchEnv) wrk(url string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), benchDuration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", "-t2", "-c64", "-d"+strconv.Itoa(int(benchDuration.Seconds()))+"s", url).CombinedOutput()
	m := wrkRPS.FindSubmatch(out)
	if err != nil || m == nil || strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		e.b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	return rps
}

// ftpLoad runs ftpParallel curl processes, each downloading the file
// ftpPerCurl times over one control connection, again and again for
// benchDuration; it returns bytes/s and files/s.
func (e *benchEnv) ftpLoad(url string, size int64) (float64, float64) {
	var total, files atomic.Int64
	var failures atomic.Int64
	start := time.Now()
	deadline := start.Add(benchDuration)
	var wg sync.WaitGroup
	for range ftpParallel {
		wg.Go(func() {
			args := []string{"-sS", "--fail", "-w", "%{size_download}\n"}
			for range ftpPerCurl {
				args = append(args, "-o", os.DevNull, url)
			}
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				out, err := exec.CommandContext(ctx, "curl", args...).Output()
				cancel()
				if err != nil {
					failures.Add(1)
					continue
				}
				sc := bufio.NewScanner(strings.NewReader(string(out)))
				for sc.Scan() {
					if n, _ := strconv.ParseInt(sc.Text(), 10, 64); n == size {
						total.Add(n)
						files.Add(1)
					} else {
						failures.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	if f := failures.Load(); f > 0 {
		e.b.Errorf("%s: %d failed downloads", url, f)
	}
	return float64(total.Load()) / el, float64(files.Load()) / el
}

// rssKiB reads a process's resident set size.
func rssKiB(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func mb(bytesPerSec float64) float64 { return bytesPerSec / 1e6 }

// cpuTicks returns the CPU time (clock ticks) used by pid, its live
// children, and its children that have exited and been waited for: nginx's
// workers, vsftpd's per-session processes.
func cpuTicks(pid int) int64 {
	stat := func(p string) []string {
		data, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			return nil
		}
		s := string(data)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from state on
	}
	num := func(f []string, i int) int64 { n, _ := strconv.ParseInt(f[i], 10, 64); return n }
	var total int64
	if f := stat(strconv.Itoa(pid)); f != nil {
		total += num(f, 11) + num(f, 12) + num(f, 13) + num(f, 14) // utime stime cutime cstime
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if f := stat(e.Name()); f != nil && f[1] == strconv.Itoa(pid) {
			total += num(f, 11) + num(f, 12)
		}
	}
	return total
}

const ticksPerSecond = 100 // USER_HZ

// measure runs load against a server and returns its result and the
// server's CPU time in microseconds.
func measure(pid int, load func() (float64, float64)) (rate, count, cpuMicros float64) {
	t0 := cpuTicks(pid)
	rate, count = load()
	return rate, count, float64(cpuTicks(pid)-t0) * 1e6 / ticksPerSecond
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// pair measures two servers in alternating order, rounds times, and
// returns each one's median rate, median CPU per unit, and the median of
// the per-round ratios a/b.
func pair(rounds int, a, b func() (rate, units, cpu float64)) (ra, rb, ca, cb, ratio float64) {
	var ras, rbs, cas, cbs, ratios []float64
	for i := range rounds {
		var x, y [3]float64
		if i%2 == 0 {
			x[0], x[1], x[2] = a()
			y[0], y[1], y[2] = b()
		} else {
			y[0], y[1], y[2] = b()
			x[0], x[1], x[2] = a()
		}
		ras, rbs = append(ras, x[0]), append(rbs, y[0])
		cas, cbs = append(cas, x[2]/max(x[1], 1)), append(cbs, y[2]/max(y[1], 1))
		ratios = append(ratios, x[0]/y[0])
	}
	return median(ras), median(rbs), median(cas), median(cbs), median(ratios)
}

func BenchmarkVersusPeers(b *testing.B) {
	e := setupBench(b)
	var report strings.Builder
	fmt.Fprintf(&report, "\nHTTP: wrk -t2 -c64 -d%s, %d rounds per file alternating the order; medians; CPU is the server's (user + system) per request:\n\n", benchDuration, httpRounds)
	fmt.Fprintf(&report, "| file | vigil req/s | vigil MB/s | vigil CPU/req | nginx req/s | nginx MB/s | nginx CPU/req | vigil / nginx |\n|---|---|---|---|---|---|---|---|\n")
	for _, f := range benchFiles {
		run := func(addr string, pid int) func() (float64, float64, float64) {
			return func() (float64, float64, float64) {
				return measure(pid, func() (float64, float64) {
					rps := e.wrk("http://" + addr + "/" + f.name)
					return rps, rps * benchDuration.Seconds()
				})
			}
		}
		v, n, vc, nc, ratio := pair(httpRounds, run(e.vigilHTTP, e.vigilPID), run(e.nginx, e.nginxPID))
		fmt.Fprintf(&report, "| %s | %.0f | %.0f | %.1f µs | %.0f | %.0f | %.1f µs | %.2f× |\n",
			f.name, v, mb(v*float64(f.size)), vc, n, mb(n*float64(f.size)), nc, ratio)
		b.ReportMetric(ratio, "http-ratio-"+f.name)
	}
	fmt.Fprintf(&report, "\nFTP: %d parallel curl processes, each downloading the file %d times over one control connection (EPSV), again and again for %s; %d rounds per file alternating the order; medians; CPU is the server's per file:\n\n",
		ftpParallel, ftpPerCurl, benchDuration, ftpRounds)
	fmt.Fprintf(&report, "| file | vigil MB/s | vigil files/s | vigil CPU/file | vsftpd MB/s | vsftpd files/s | vsftpd CPU/file | vigil / vsftpd |\n|---|---|---|---|---|---|---|---|\n")
	for _, f := range benchFiles {
		run := func(addr string, pid int) func() (float64, float64, float64) {
			return func() (float64, float64, float64) {
				return measure(pid, func() (float64, float64) {
					bps, fps := e.ftpLoad("ftp://"+addr+"/"+f.name, f.size)
					return bps, fps * benchDuration.Seconds()
				})
			}
		}
		v, s, vc, sc, ratio := pair(ftpRounds, run(e.vigilFTP, e.vigilPID), run(e.vsftpd, e.vsftpdPID))
		fmt.Fprintf(&report, "| %s | %.0f | %.0f | %.0f µs | %.0f | %.0f | %.0f µs | %.2f× |\n",
			f.name, mb(v), v/float64(f.size), vc, mb(s), s/float64(f.size), sc, ratio)
		b.ReportMetric(ratio, "ftp-ratio-"+f.name)
	}
	e.memory(&report)
	// b.Log output is cut short: print the report whole.
	fmt.Printf("\n%s\n(machine: %d CPUs, %s, %s; peers: %s)\n", report.String(), runtime.NumCPU(), cpuModel(), runtime.Version(), peerVersions())
}

// memory measures vigil's RSS at rest, with idle connections, and while
// sending a 1 GiB file.
func (e *benchEnv) memory(report *strings.Builder) {
	b := e.b
	runtime.GC()
	time.Sleep(time.Second)
	base := rssKiB(b, e.vigilPID)
	fmt.Fprintf(report, "\nMemory of the vigil liveupdate process (VmRSS), after the load above:\n\n| state | RSS | change | per connection |\n|---|---|---|---|\n")
	fmt.Fprintf(report, "| at rest | %.1f MiB | | |\n", float64(base)/1024)

	// 1,000 idle HTTP keep-alive connections, each after one request.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := "GET /f64k.bin HTTP/1.1\r\nHost: bench\r\n\r\n"
	for range 1000 {
		c, err := net.Dial("tcp", e.vigilHTTP)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, req)
		br := bufio.NewReader(c)
		var clen int64
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				clen, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
			if line == "\r\n" {
				break
			}
		}
		io.CopyN(io.Discard, br, clen)
	}
	time.Sleep(time.Second)
	h := rssKiB(b, e.vigilPID)
	fmt.Fprintf(report, "| + 1,000 idle HTTP keep-alive connections | %.1f MiB | %+.1f MiB | %.1f KiB |\n", float64(h)/1024, float64(h-base)/1024, float64(h-base)/1000)

	// 200 idle FTP control connections, logged in.
	for range 200 {
		c, err := net.Dial("tcp", e.vigilFTP)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		br := bufio.NewReader(c)
		br.ReadString('\n')
		io.WriteString(c, "USER anonymous\r\n")
		br.ReadString('\n')
		io.WriteString(c, "PASS bench@\r\n")
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "230") {
			b.Fatalf("FTP login: %q", l)
		}
	}
	time.Sleep(time.Second)
	f := rssKiB(b, e.vigilPID)
	fmt.Fprintf(report, "| + 200 idle FTP control connections | %.1f MiB | %+.1f MiB | %.1f KiB |\n", float64(f)/1024, float64(f-h)/1024, float64(f-h)/200)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	time.Sleep(2 * time.Second)

	// Peak RSS while sending files of 4 MiB and 1 GiB.
	peak := func(url string) int64 {
		var max atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				if r := rssKiB(b, e.vigilPID); r > max.Load() {
					max.Store(r)
				}
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
		for range 3 {
			if out, err := exec.Command("curl", "-sS", "--fail", "-o", os.DevNull, url).CombinedOutput(); err != nil {
				b.Fatalf("curl %s: %v %s", url, err, out)
			}
		}
		close(stop)
		wg.Wait()
		return max.Load()
	}
	rest := rssKiB(b, e.vigilPID)
	for _, u := range []struct{ what, url string }{
		{"HTTP 4 MiB", "http://" + e.vigilHTTP + "/f4m.bin"},
		{"HTTP 1 GiB", "http://" + e.vigilHTTP + "/f1g.bin"},
		{"FTP 4 MiB", "ftp://" + e.vigilFTP + "/f4m.bin"},
		{"FTP 1 GiB", "ftp://" + e.vigilFTP + "/f1g.bin"},
	} {
		p := peak(u.url)
		fmt.Fprintf(report, "| peak while sending %s (×3) | %.1f MiB | %+.1f MiB | |\n", u.what, float64(p)/1024, float64(p-rest)/1024)
	}
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func peerVersions() string {
	var vs []string
	for _, c := range [][]string{{"nginx", "-v"}, {"wrk", "-v"}, {"curl", "--version"}} {
		out, _ := exec.Command(c[0], c[1:]...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		vs = append(vs, line)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "vsftpd ${Version}", "vsftpd").Output(); err == nil {
		vs = append(vs, string(out))
	}
	return strings.Join(vs, "; ")
}
