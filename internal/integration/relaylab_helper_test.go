//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/netlab"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// relayLabHelperEnv names the environment variable that makes the test
// binary a small network program for TestRelayLab instead of running the
// tests: its init runs the helper and exits before TestMain (which would
// build vigil again). Helpers run inside lab hosts only.
const relayLabHelperEnv = "VIGIL_RELAYLAB_HELPER"

func init() {
	mode := os.Getenv(relayLabHelperEnv)
	if mode == "" {
		return
	}
	args := os.Args[1:]
	var err error
	switch {
	case mode == "capture" && len(args) == 5:
		err = helperCapture(args[0], args[1], atoiOr(args[2]), atoiOr(args[3]), args[4])
	case mode == "send" && len(args) == 5:
		err = helperMulticast(args[0], args[1], atoiOr(args[2]), atoiOr(args[3]), args[4])
	case mode == "waithttp" && len(args) == 2:
		err = helperWaitHTTP(args[0], atoiOr(args[1]))
	default:
		err = fmt.Errorf("unknown helper %q with %d arguments", mode, len(args))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaylab helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func atoiOr(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// helperCapture joins group:port on ifname for at most seconds and appends
// each datagram it receives to out as a line "SRC HEX", synced, printing
// "ready" once joined.
func helperCapture(ifname, group string, port, seconds int, out string) error {
	g, err := netip.ParseAddr(group)
	if err != nil {
		return err
	}
	rcv, err := mcast.NewReceiver(mcast.Config{Group: g, Port: port, Interface: ifname})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	time.AfterFunc(time.Duration(seconds)*time.Second, func() { rcv.Close() })
	fmt.Println("ready")
	buf := make([]byte, 65535)
	for {
		n, src, err := rcv.Receive(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if _, err := fmt.Fprintf(f, "%s %s\n", src.Addr(), hex.EncodeToString(buf[:n])); err != nil {
			return err
		}
	}
}

// helperMulticast multicasts each datagram of file (a hex line each) to
// group:port out of ifname with TTL ttl, 5 ms apart, and prints "sent N".
func helperMulticast(ifname, group string, port, ttl int, file string) error {
	g, err := netip.ParseAddr(group)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	snd, err := mcast.NewSender(mcast.Config{Group: g, Port: port, Interface: ifname, TTL: ttl})
	if err != nil {
		return err
	}
	defer snd.Close()
	n := 0
	for _, line := range strings.Fields(string(b)) {
		d, err := hex.DecodeString(line)
		if err != nil {
			return err
		}
		if err := snd.Send(d); err != nil {
			return err
		}
		n++
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("sent %d\n", n)
	return nil
}

// helperWaitHTTP asks url until any HTTP answer comes, for at most
// seconds, and prints "status CODE".
func helperWaitHTTP(url string, seconds int) error {
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			fmt.Printf("status %d\n", resp.StatusCode)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no HTTP answer from %s within %ds: %v", url, seconds, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// helperArgs returns the command that runs helper mode with args in a
// lab host: env sets the mode for the test binary's init.
func helperArgs(t testing.TB, mode string, args ...string) (string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "env", append([]string{relayLabHelperEnv + "=" + mode, exe}, args...)
}

// runLabHelper runs a helper to completion in h and returns its output.
func runLabHelper(t testing.TB, h *netlab.Host, mode string, args ...string) string {
	t.Helper()
	prog, a := helperArgs(t, mode, args...)
	return h.Run(t, prog, a...)
}

// labCapture is a capture helper running in a lab host: every datagram
// sent to the group that reaches the host.
type labCapture struct {
	path string
	proc *netlab.Proc

	mu   sync.Mutex
	read int // bytes of path parsed
	seen []captured
}

type captured struct {
	src netip.Addr
	b   []byte
}

// startLabCapture starts capturing group:port on h's interface for the
// rest of the test (stopped by owner's cleanup).
func startLabCapture(owner testing.TB, h *netlab.Host, group string, port int) *labCapture {
	owner.Helper()
	path := owner.TempDir() + "/capture-" + h.Name
	prog, a := helperArgs(owner, "capture", h.Ifname, group, strconv.Itoa(port), "3600", path)
	c := &labCapture{path: path, proc: h.Start(owner, prog, a...)}
	c.proc.WaitLog(owner, "ready", 10*time.Second)
	return c
}

// all returns every datagram captured so far.
func (c *labCapture) all() []captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := os.ReadFile(c.path)
	if len(b) > c.read {
		chunk := b[c.read:]
		chunk = chunk[:bytes.LastIndexByte(chunk, '\n')+1]
		c.read += len(chunk)
		sc := bufio.NewScanner(bytes.NewReader(chunk))
		sc.Buffer(make([]byte, 256<<10), 256<<10)
		for sc.Scan() {
			src, hx, ok := strings.Cut(sc.Text(), " ")
			a, err1 := netip.ParseAddr(src)
			d, err2 := hex.DecodeString(hx)
			if ok && err1 == nil && err2 == nil {
				c.seen = append(c.seen, captured{src: a, b: d})
			}
		}
	}
	return append([]captured(nil), c.seen...)
}

// wait waits until a captured datagram satisfies ok and returns it.
func (c *labCapture) wait(t testing.TB, what string, timeout time.Duration, ok func(captured, *wire.Envelope) bool) captured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		for _, d := range c.all() {
			if e, err := wire.Decode(d.b); err == nil && ok(d, e) {
				return d
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no datagram (%s) captured within %v (%d captured)", what, timeout, len(c.all()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
