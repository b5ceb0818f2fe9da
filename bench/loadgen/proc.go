package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/server"
)

// BuildVigil builds the vigil binary (./cmd/vigil of the product module)
// into out with `go build -o`. It must run inside the bench module's tree
// (as tests do). The build runs in the product module's own directory,
// which this module's replace directive names, so the binary is built with
// the product's go.mod exactly as a user builds it, not with the versions
// the load generator's dependencies would select.
func BuildVigil(ctx context.Context, out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" && fileExists(p) {
			goTool = p
		} else {
			return fmt.Errorf("building vigil: %w", err)
		}
	}
	list := exec.CommandContext(ctx, goTool, "list", "-m", "-f", "{{.Dir}}", productModule)
	dir, err := list.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("go list -m %s: %v\n%s", productModule, err, ee.Stderr)
		}
		return fmt.Errorf("go list -m %s: %w", productModule, err)
	}
	root := strings.TrimSpace(string(dir))
	if root == "" {
		return fmt.Errorf("go list -m %s: no directory (is the replace directive in bench/go.mod missing?)", productModule)
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./cmd/vigil")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build (in %s): %v\n%s", root, err, b)
	}
	return nil
}

// productModule is the module of the vigil binary the benchmarks run.
const productModule = "github.com/vigil-fleet/vigil"

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreeTCPPort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreeUDPPort returns a UDP port that no socket was bound to a moment
// ago, for a multicast group of the benchmarks' own.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// RaiseNoFile raises the soft limit on open files to at least n (and the
// hard limit when it is lower and the process may).
func RaiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	want := lim
	want.Cur = n
	want.Max = max(want.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("need %d open files, limit is %d (hard %d): %w", n, lim.Cur, lim.Max, err)
	}
	return nil
}

// ClockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on Linux).
const ClockTick = 10 * time.Millisecond

// ProcCPU is the CPU time a process has used.
type ProcCPU struct {
	User, System time.Duration // utime, stime of /proc/PID/stat (10 ms ticks)
	// Run is the sum over the process's threads of the time they spent on
	// a CPU, in nanoseconds (/proc/PID/task/*/schedstat). It is precise
	// where User+System are in ticks, but misses threads that exited.
	Run time.Duration
}

// Ticks is utime+stime in clock ticks.
func (c ProcCPU) Ticks() int64 { return int64((c.User + c.System) / ClockTick) }

// Total is utime+stime.
func (c ProcCPU) Total() time.Duration { return c.User + c.System }

// Sub returns c minus an earlier reading.
func (c ProcCPU) Sub(o ProcCPU) ProcCPU {
	return ProcCPU{User: c.User - o.User, System: c.System - o.System, Run: c.Run - o.Run}
}

// ReadProcCPU reads the CPU time of process pid from /proc.
func ReadProcCPU(pid int) (ProcCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcCPU{}, err
	}
	// The command name (field 2) may hold spaces; fields after its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcCPU{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return ProcCPU{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ProcCPU{}, fmt.Errorf("/proc/%d/stat: malformed utime/stime", pid)
	}
	c := ProcCPU{User: time.Duration(ut) * ClockTick, System: time.Duration(st) * ClockTick}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		sb, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited
		}
		if fs := strings.Fields(string(sb)); len(fs) > 0 {
			ns, _ := strconv.ParseInt(fs[0], 10, 64)
			c.Run += time.Duration(ns)
		}
	}
	return c, nil
}

// ProcMem is a process's memory use.
type ProcMem struct {
	RSS, HWM uint64 // VmRSS and VmHWM (peak RSS) in bytes
}

// MiB converts bytes to mebibytes.
func MiB(b uint64) float64 { return float64(b) / (1 << 20) }

// ReadProcMem reads VmRSS and VmHWM of process pid from /proc.
func ReadProcMem(pid int) (ProcMem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	defer f.Close()
	var m ProcMem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		kb, _ := strconv.ParseUint(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.HWM = kb << 10
		}
	}
	return m, sc.Err()
}

// ChildEnv is the environment for child processes: this process's without
// the Go runtime's GC settings (GOGC, GOMEMLIMIT, GODEBUG), so that tuning
// the load generator's garbage collector does not change the server's.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "GOGC" || k == "GOMEMLIMIT" || k == "GODEBUG" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// HostCPU is the machine's CPU time from /proc/stat, summed over CPUs.
type HostCPU struct {
	Busy, Total time.Duration // busy: all but idle and iowait
}

// Sub returns h minus an earlier reading.
func (h HostCPU) Sub(o HostCPU) HostCPU {
	return HostCPU{Busy: h.Busy - o.Busy, Total: h.Total - o.Total}
}

// ReadHostCPU reads the machine's CPU time. Compared with the CPU time of
// the processes under test it shows whether anything else ran.
func ReadHostCPU() (HostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return HostCPU{}, errors.New("/proc/stat: malformed")
	}
	var h HostCPU
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return HostCPU{}, errors.New("/proc/stat: malformed")
		}
		d := time.Duration(n) * ClockTick
		h.Total += d
		if i != 3 && i != 4 { // idle, iowait
			h.Busy += d
		}
	}
	return h, nil
}

// ReadSoftirqThreadsCPU sums the CPU time of the kernel's ksoftirqd
// threads: network receive processing (among others) that the kernel
// deferred from the context of the process that triggered it, so that it
// is charged to no process under test.
func ReadSoftirqThreadsCPU() (ProcCPU, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return ProcCPU{}, err
	}
	var sum ProcCPU
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		c, err := ReadProcCPU(pid)
		if err != nil {
			continue
		}
		sum.User += c.User
		sum.System += c.System
		sum.Run += c.Run
	}
	return sum, nil
}

// ParseCounter sums the samples of metric name whose labels contain sel
// in Prometheus text.
func ParseCounter(text, name, sel string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if sel != "" && !strings.Contains(line, sel) {
			continue
		}
		fs := strings.Fields(line)
		if v, err := strconv.ParseFloat(fs[len(fs)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// ServerOptions configures a `vigil server` child process.
type ServerOptions struct {
	// Binary is the vigil binary (see BuildVigil).
	Binary string
	// DataDir is the server's data directory; its keys and secrets are
	// created before the server starts, so they are known at once.
	DataDir string
	// Group and Port are where commands are multicast, on Interface
	// (a loopback interface) with TTL 0.
	Group     netip.Addr
	Port      int
	Interface string
	// Spread, BeaconInterval and CheckInInterval are passed as flags when
	// non-zero; otherwise the server's defaults apply.
	Spread, BeaconInterval, CheckInInterval time.Duration
	// Repeat is passed as -repeat (times each command datagram is sent)
	// when non-zero.
	Repeat int
	// LogLevel is the server's -log-level ("info" when empty).
	LogLevel string
	// Env is added to the child's environment (e.g. GOMAXPROCS=2).
	Env []string
	// Store is passed as -store when not empty (a postgres:// URL: the
	// server keeps its store there, not in its data directory).
	Store string
	// KeysFrom, when not empty, is another server's data directory whose
	// signing key, admin token and enrollment secret this one is given
	// before it starts: a second instance over the same store.
	KeysFrom string
}

// ServerProcess is a running `vigil server` child process listening on
// 127.0.0.1 and multicasting on a loopback interface with TTL 0.
type ServerProcess struct {
	Cmd          *exec.Cmd
	PID          int
	DataDir      string
	LogPath      string
	NodeCommURL  string
	AdminURL     string
	AdminToken   string
	EnrollSecret string
	PublicKey    ed25519.PublicKey
	Group        netip.Addr
	Port         int
	Interface    string
	// Admin is an admin API client.
	Admin *api.AdminClient

	exited chan struct{}
}

// StartServer starts `vigil server` on free loopback ports and waits until
// its admin API answers.
func StartServer(ctx context.Context, o ServerOptions) (*ServerProcess, error) {
	if err := checkLoopbackInterface(o.Interface); err != nil {
		return nil, err
	}
	if !o.Group.IsMulticast() {
		return nil, fmt.Errorf("loadgen: group %s is not multicast", o.Group)
	}
	dd := server.DataDir{Path: o.DataDir}
	if o.KeysFrom != "" {
		if err := copyKeys(o.KeysFrom, o.DataDir); err != nil {
			return nil, err
		}
	}
	if err := dd.Init(); err != nil {
		return nil, err
	}
	token, err := dd.AdminToken()
	if err != nil {
		return nil, err
	}
	secret, err := dd.EnrollSecret()
	if err != nil {
		return nil, err
	}
	pubB64, err := dd.PublicKey()
	if err != nil {
		return nil, err
	}
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("loadgen: bad public key in %s", o.DataDir)
	}
	agentPort, err := FreeTCPPort()
	if err != nil {
		return nil, err
	}
	adminPort, err := FreeTCPPort()
	if err != nil {
		return nil, err
	}
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	args := []string{"server",
		"-data-dir", o.DataDir,
		"-listen", fmt.Sprintf("127.0.0.1:%d", agentPort),
		"-admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"-group", o.Group.String(), "-port", strconv.Itoa(o.Port),
		"-interface", o.Interface, "-ttl", "0",
		"-log-level", level,
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"-spread", o.Spread}, {"-beacon-interval", o.BeaconInterval}, {"-checkin-interval", o.CheckInInterval}} {
		if d.v > 0 {
			args = append(args, d.flag, d.v.String())
		}
	}
	if o.Repeat > 0 {
		args = append(args, "-repeat", strconv.Itoa(o.Repeat))
	}
	if o.Store != "" {
		args = append(args, "-store", o.Store)
	}
	logPath := filepath.Join(o.DataDir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(ChildEnv(), o.Env...)
	KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close()
	p := &ServerProcess{
		Cmd: cmd, PID: cmd.Process.Pid, DataDir: o.DataDir, LogPath: logPath,
		NodeCommURL: fmt.Sprintf("http://127.0.0.1:%d%s", agentPort, server.DefaultConfig().BasePath),
		AdminURL:    fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		AdminToken:  token, EnrollSecret: secret, PublicKey: pub,
		Group: o.Group, Port: o.Port, Interface: o.Interface,
		exited: make(chan struct{}),
	}
	p.Admin = &api.AdminClient{Client: api.Client{Base: p.AdminURL, Auth: token, HTTP: &http.Client{
		Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}}}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := p.Info(ctx)
		if err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("vigil server exited: %s", tail(logPath))
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("vigil server did not answer within 30s: %v; log: %s", err, tail(logPath))
		}
	}
}

// copyKeys places the signing key, public key, admin token and enrollment
// secret of the data directory from into the data directory to, as an
// administrator places them on a second instance.
func copyKeys(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, name := range []string{server.FileSigningKey, server.FilePublicKey, server.FileAdminToken, server.FileEnrollSecret} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return fmt.Errorf("loadgen: keys of the first instance: %w", err)
		}
		mode := os.FileMode(0o600)
		if name == server.FilePublicKey {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(to, name), b, mode); err != nil {
			return err
		}
	}
	return nil
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Info asks the admin API for the server's state.
func (p *ServerProcess) Info(ctx context.Context) (api.ServerInfo, error) {
	return p.Admin.ServerInfo(ctx)
}

// Issue issues a command through the admin API.
func (p *ServerProcess) Issue(ctx context.Context, req api.SendRequest) (api.CommandInfo, error) {
	return p.Admin.Send(ctx, req)
}

// Results lists a command's per-agent results through the admin API.
func (p *ServerProcess) Results(ctx context.Context, seq uint64) (api.CommandResults, error) {
	return p.Admin.CommandResults(ctx, seq)
}

// Metrics returns the server's Prometheus metrics text.
func (p *ServerProcess) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, api.RouteMetrics.Method, api.RouteMetrics.URL(p.AdminURL, nil), nil)
	if err != nil {
		return "", err
	}
	resp, err := p.Admin.HTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(b), err
}

// CPU reads the server process's CPU time.
func (p *ServerProcess) CPU() (ProcCPU, error) { return ReadProcCPU(p.PID) }

// Mem reads the server process's memory use.
func (p *ServerProcess) Mem() (ProcMem, error) { return ReadProcMem(p.PID) }

// Stop asks the server to stop (SIGTERM) and kills it if it has not
// stopped within 10 seconds.
func (p *ServerProcess) Stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		p.Cmd.Process.Kill()
		<-p.exited
		return errors.New("vigil server did not stop on SIGTERM within 10s; killed")
	}
}

// Histogram is a Prometheus histogram's cumulative bucket counts, read
// from the text exposition.
type Histogram struct {
	Bounds []float64 // upper bounds, ascending, +Inf last
	Counts []float64 // cumulative counts
}

// ParseHistogram extracts the buckets of metric name with the label
// selector sel (e.g. `route="checkin"`) from Prometheus text.
func ParseHistogram(text, name, sel string) Histogram {
	type b struct{ le, n float64 }
	var bs []b
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"_bucket{") || !strings.Contains(line, sel) {
			continue
		}
		i := strings.Index(line, `le="`)
		if i < 0 {
			continue
		}
		rest := line[i+4:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			continue
		}
		le, err := strconv.ParseFloat(rest[:j], 64)
		if err != nil {
			continue
		}
		fs := strings.Fields(line)
		n, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err != nil {
			continue
		}
		bs = append(bs, b{le, n})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	var h Histogram
	for _, x := range bs {
		h.Bounds = append(h.Bounds, x.le)
		h.Counts = append(h.Counts, x.n)
	}
	return h
}

// Sub returns the observations h has that an earlier reading o had not.
func (h Histogram) Sub(o Histogram) Histogram {
	out := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts))}
	for i := range h.Counts {
		out.Counts[i] = h.Counts[i]
		if i < len(o.Counts) {
			out.Counts[i] -= o.Counts[i]
		}
	}
	return out
}

// Quantile returns the upper bound of the bucket holding quantile q
// (0 < q <= 1): an upper estimate at the buckets' resolution. It returns
// +Inf when the quantile lies beyond the last finite bound, and NaN when
// there are no observations.
func (h Histogram) Quantile(q float64) float64 {
	if len(h.Counts) == 0 || h.Counts[len(h.Counts)-1] == 0 {
		return math.NaN()
	}
	want := q * h.Counts[len(h.Counts)-1]
	for i, c := range h.Counts {
		if c >= want {
			return h.Bounds[i]
		}
	}
	return math.Inf(1)
}
