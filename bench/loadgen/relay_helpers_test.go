package loadgen_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/bench/loadgen"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// relayProcess is a `vigil relay` child process, streaming from the real
// `vigil server` process and multicasting on lo (TTL 0) on a port of its
// own.
type relayProcess struct {
	pid     int
	port    int
	metrics string // /metrics URL
	logPath string
}

func (r *relayProcess) cpu(b *testing.B) loadgen.ProcCPU {
	c, err := loadgen.ReadProcCPU(r.pid)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// metricsText fetches the relay's /metrics.
func (r *relayProcess) metricsText(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.metrics, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("relay metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("relay metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("relay metrics: %s", resp.Status)
	}
	return string(body), nil
}

func (r *relayProcess) counter(b *testing.B, name, sel string) float64 {
	text, err := r.metricsText(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return loadgen.ParseCounter(text, name, sel)
}

const emptyPlist = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict></dict></plist>
`

// startRelayProcess starts `vigil relay` against the server's agent API
// (its enrollment, then its relay stream, GET /v1/relay/stream),
// multicasting on lo with TTL 0 on a free port of its own (never the
// server's), and waits until its stream is open (its
// vigil_relay_stream_connected gauge is 1). It is stopped at cleanup.
func startRelayProcess(b *testing.B, lo string, srv *loadgen.ServerProcess) *relayProcess {
	b.Helper()
	if err := loadgen.CheckLoopbackURL(srv.NodeCommURL); err != nil {
		b.Fatal(err)
	}
	var port int
	for {
		p, err := loadgen.FreeUDPPort()
		if err != nil {
			b.Fatal(err)
		}
		if p != srv.Port {
			port = p
			break
		}
	}
	mport, err := loadgen.FreeTCPPort()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	secret := filepath.Join(dir, "enroll.secret")
	if err := os.WriteFile(secret, []byte(srv.EnrollSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	// An empty preference file: the flags alone set the relay, never a
	// /etc/vigil/relay.plist of this host.
	prefsPath := filepath.Join(dir, "relay.plist")
	if err := os.WriteFile(prefsPath, []byte(emptyPlist), 0o600); err != nil {
		b.Fatal(err)
	}
	logPath := filepath.Join(dir, "relay.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	maddr := "127.0.0.1:" + strconv.Itoa(mport)
	cmd := exec.Command(vigilBinary(b), "relay",
		"-config", prefsPath,
		"-server", srv.NodeCommURL, "-server-key", base64.StdEncoding.EncodeToString(srv.PublicKey),
		"-enroll-secret-file", secret, "-state-dir", filepath.Join(dir, "state"), "-hostname", "bench-relay",
		"-interface", lo, "-ttl", "0", "-group", testGroup.String(), "-port", strconv.Itoa(port),
		"-metrics-listen", maddr, "-log-level", "warn")
	cmd.Env = append(loadgen.ChildEnv(), "VIGIL_RUNTIME_DIR=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	loadgen.KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	})
	rl := &relayProcess{pid: cmd.Process.Pid, port: port, metrics: "http://" + maddr + "/metrics", logPath: logPath}
	// The gauge is the relay's own word that its stream is open; it is
	// polled (the relay has no other signal to wait on) until a limit.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		text, err := rl.metricsText(context.Background())
		if err == nil && loadgen.ParseCounter(text, "vigil_relay_stream_connected", "") == 1 {
			return rl
		}
		if time.Now().After(deadline) {
			b.Fatalf("vigil relay did not open its stream within 30s (last metrics error: %v):\n%s", err, readFile(logPath))
		}
		select {
		case <-exited:
			b.Fatalf("vigil relay exited:\n%s", readFile(logPath))
		case <-tick.C:
		}
	}
}

// hopProbe times the relay's hop for each command: from the first copy of
// the server's datagram on the server's port to the first copy of the
// relay's on the relay's (one socket each, in this process).
type hopProbe struct {
	mu     sync.Mutex
	at     [2]map[uint64]time.Time
	notify chan struct{}
	rcv    [2]*mcast.Receiver
	done   sync.WaitGroup
}

func newHopProbe(b *testing.B, direct, relayed mcast.Config) *hopProbe {
	p := &hopProbe{notify: make(chan struct{}, 1)}
	for i, cfg := range []mcast.Config{direct, relayed} {
		r, err := mcast.NewReceiver(cfg)
		if err != nil {
			p.close()
			b.Fatal(err)
		}
		p.rcv[i], p.at[i] = r, map[uint64]time.Time{}
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			buf := make([]byte, 65536)
			for {
				n, _, err := r.Receive(buf)
				if err != nil {
					return
				}
				now := time.Now()
				h, err := wire.Decode(buf[:n])
				if err != nil || h.Kind == wire.KindBeacon {
					continue
				}
				p.mu.Lock()
				if _, ok := p.at[i][h.Seq]; !ok {
					p.at[i][h.Seq] = now
				}
				p.mu.Unlock()
				select {
				case p.notify <- struct{}{}:
				default:
				}
			}
		}()
	}
	return p
}

// wait returns the hop of command seq once both copies arrived.
func (p *hopProbe) wait(seq uint64, timeout time.Duration) (time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		d, okd := p.at[0][seq]
		r, okr := p.at[1][seq]
		p.mu.Unlock()
		if okd && okr {
			return r.Sub(d), nil
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			return 0, fmt.Errorf("command %d: seen from the server %v, from the relay %v", seq, okd, okr)
		}
	}
}

func (p *hopProbe) close() {
	for _, r := range p.rcv {
		if r != nil {
			r.Close()
		}
	}
	p.done.Wait()
}

// median returns the median of ds (which it sorts); 0 when empty.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return loadgen.Percentile(ds, 50)
}

// cpuAdd adds a reading difference to a running sum.
func cpuAdd(sum *loadgen.ProcCPU, d loadgen.ProcCPU) {
	sum.User += d.User
	sum.System += d.System
	sum.Run += d.Run
}
