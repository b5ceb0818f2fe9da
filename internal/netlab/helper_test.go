package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// TestHelperProcess is not a test: the lab tests re-execute the test binary
// inside host namespaces as `TESTBIN -test.run=^TestHelperProcess$ -- MODE
// ARGS...` to get small, bounded network programs. Run normally, it skips.
func TestHelperProcess(t *testing.T) {
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		t.Skip("helper process for the lab tests; not a test")
	}
	if err := helperMain(args[1], args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperCommand returns the arguments that make the test binary run a helper.
func helperCommand(t testing.TB, mode string, args ...string) (string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe, append([]string{"-test.run=^TestHelperProcess$", "--", mode}, args...)
}

// startHelper starts a helper in the host and returns it.
func startHelper(t testing.TB, h *Host, mode string, args ...string) *Proc {
	t.Helper()
	exe, a := helperCommand(t, mode, args...)
	return h.Start(t, exe, a...)
}

// runHelper runs a helper in the host to completion and returns its output.
func runHelper(t testing.TB, h *Host, mode string, args ...string) string {
	t.Helper()
	exe, a := helperCommand(t, mode, args...)
	return h.Run(t, exe, a...)
}

func helperMain(mode string, args []string) error {
	need := map[string]int{"listen": 5, "send": 7, "sendttl": 8, "echo": 3, "ask": 4, "ignoreterm": 0}
	n, ok := need[mode]
	if !ok {
		return fmt.Errorf("unknown mode %q", mode)
	}
	if len(args) != n {
		return fmt.Errorf("mode %s wants %d arguments, got %q", mode, n, args)
	}
	switch mode {
	case "listen":
		return helperListen(args[0], args[1], args[2], atoi(args[3]), atoi(args[4]))
	case "send":
		return helperSend(args[0], args[1], args[2], atoi(args[3]), args[4], atoi(args[5]), atoi(args[6]), 1)
	case "sendttl":
		return helperSend(args[0], args[1], args[2], atoi(args[3]), args[4], atoi(args[5]), atoi(args[6]), atoi(args[7]))
	case "echo":
		return helperEcho(args[0], atoi(args[1]), atoi(args[2]))
	case "ask":
		return helperAsk(args[0], args[1], atoi(args[2]), atoi(args[3]))
	default:
		return helperIgnoreTerm()
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// helperListen joins group on ifname, listens on port for seconds and prints
// "got PAYLOAD from SRC ttl TTL" for each datagram (multicast or unicast).
func helperListen(network, ifname, group string, port, seconds int) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	gip := net.ParseIP(group)
	bind := net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	if network == "udp6" {
		bind = net.JoinHostPort("::", strconv.Itoa(port))
	}
	c, err := net.ListenPacket(network, bind)
	if err != nil {
		return err
	}
	defer c.Close()
	if uc, ok := c.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(1 << 20) // room for bursts; capped by net.core.rmem_max
	}
	var read func([]byte) (int, net.Addr, int, error)
	if network == "udp6" {
		p := ipv6.NewPacketConn(c)
		if err := p.JoinGroup(ifi, &net.UDPAddr{IP: gip}); err != nil {
			return err
		}
		if err := p.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
			return err
		}
		read = func(b []byte) (int, net.Addr, int, error) {
			n, cm, src, err := p.ReadFrom(b)
			hl := -1
			if cm != nil {
				hl = cm.HopLimit
			}
			return n, src, hl, err
		}
	} else {
		p := ipv4.NewPacketConn(c)
		if err := p.JoinGroup(ifi, &net.UDPAddr{IP: gip}); err != nil {
			return err
		}
		if err := p.SetControlMessage(ipv4.FlagTTL, true); err != nil {
			return err
		}
		read = func(b []byte) (int, net.Addr, int, error) {
			n, cm, src, err := p.ReadFrom(b)
			ttl := -1
			if cm != nil {
				ttl = cm.TTL
			}
			return n, src, ttl, err
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(time.Duration(seconds) * time.Second)); err != nil {
		return err
	}
	fmt.Println("ready")
	buf := make([]byte, 1500)
	for {
		n, src, ttl, err := read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		fmt.Printf("got %s from %v ttl %d\n", buf[:n], src, ttl)
	}
}

// helperSend sends count datagrams "PREFIX-i" to dst:port, intervalMs apart,
// with multicast TTL (hop limit) ttl out of ifname and multicast loopback
// off. Unicast goes with the system's default TTL (64).
func helperSend(network, ifname, dst string, port int, prefix string, count, intervalMs, ttl int) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	laddr := "0.0.0.0:0"
	if network == "udp6" {
		laddr = "[::]:0"
	}
	c, err := net.ListenPacket(network, laddr)
	if err != nil {
		return err
	}
	defer c.Close()
	if network == "udp6" {
		p := ipv6.NewPacketConn(c)
		if err := p.SetMulticastInterface(ifi); err != nil {
			return err
		}
		if err := p.SetMulticastHopLimit(ttl); err != nil {
			return err
		}
		if err := p.SetMulticastLoopback(false); err != nil {
			return err
		}
	} else {
		p := ipv4.NewPacketConn(c)
		if err := p.SetMulticastInterface(ifi); err != nil {
			return err
		}
		if err := p.SetMulticastTTL(ttl); err != nil {
			return err
		}
		if err := p.SetMulticastLoopback(false); err != nil {
			return err
		}
	}
	to := &net.UDPAddr{IP: net.ParseIP(dst), Port: port}
	if to.IP.IsLinkLocalMulticast() || to.IP.IsLinkLocalUnicast() {
		to.Zone = ifname
	}
	for i := range count {
		if _, err := c.WriteTo(fmt.Appendf(nil, "%s-%d", prefix, i), to); err != nil {
			return err
		}
		time.Sleep(time.Duration(intervalMs) * time.Millisecond)
	}
	fmt.Printf("sent %d\n", count)
	return nil
}

// helperEcho echoes UDP datagrams on port for seconds.
func helperEcho(network string, port, seconds int) error {
	c, err := net.ListenPacket(network, ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Duration(seconds) * time.Second)); err != nil {
		return err
	}
	fmt.Println("ready")
	buf := make([]byte, 1500)
	for {
		n, src, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		if _, err := c.WriteTo(buf[:n], src); err != nil {
			return err
		}
	}
}

// helperAsk sends to an echo server until it gets its datagram back, for at
// most seconds, and prints "reply from SRC".
func helperAsk(network, dst string, port, seconds int) error {
	c, err := net.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer c.Close()
	to := &net.UDPAddr{IP: net.ParseIP(dst), Port: port}
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	buf := make([]byte, 1500)
	for i := 0; time.Now().Before(deadline); i++ {
		msg := fmt.Sprintf("ask-%d", i)
		if _, err := c.WriteTo([]byte(msg), to); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			return err
		}
		for {
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == msg {
				fmt.Printf("reply from %v\n", src)
				return nil
			}
		}
	}
	return fmt.Errorf("no echo from %s port %d within %ds", dst, port, seconds)
}

// helperIgnoreTerm ignores SIGTERM, forks a sleep in its own process group
// and prints "child PID" and "ready", then lingers (bounded).
func helperIgnoreTerm() error {
	signal.Ignore(syscall.SIGTERM)
	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		return err
	}
	fmt.Printf("child %d\n", child.Process.Pid)
	fmt.Println("ready")
	time.Sleep(5 * time.Minute)
	return nil
}
