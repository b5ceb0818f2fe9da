package doctor

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Listening checks, on a server machine, that the local listener at addr
// (a listen address as configured: "host:port", ":port", "0.0.0.0:port",
// "[::]:port") accepts a TCP connection, and closes it at once without
// sending anything. A wildcard or empty host is reached through the
// loopback address of its family. flow is the flow the listener serves:
// ports.FlowAgentAPI, ports.FlowAdmin, ports.FlowDefinitions... It waits at most
// DefaultTimeout (or ctx's deadline, if sooner).
func Listening(ctx context.Context, flow, addr string) Result {
	t := startTimer()
	target := addr + " (listening)"
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return t.result(flow, target, false, "not a host:port listen address: %v", err)
	}
	dial := host
	switch {
	case host == "":
		dial = "127.0.0.1"
	default:
		if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
			dial = "127.0.0.1"
			if a.Is6() && !a.Is4In6() {
				dial = "::1"
			}
		}
	}
	dst := net.JoinHostPort(dial, port)
	if dst != addr {
		target = addr + " (listening, connecting to " + dst + ")"
	}
	step := DefaultTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < step {
		step = max(time.Until(dl), 0)
	}
	c, err := dialer(step).DialContext(ctx, "tcp", dst)
	if err != nil {
		return t.result(flow, target, false, "%s%s", describe(err, step), hint(err, port))
	}
	local := c.LocalAddr().String()
	c.Close()
	return t.result(flow, target, true, "accepts TCP connections (connected from %s in %s)", local, fmtDur(time.Since(t.start)))
}
