package doctor

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// Multicast checks the flow of commands from the server to this agent: it
// joins group on port (on interface iface, "" for the system's choice)
// exactly as the agent does — with internal/mcast, sharing the port with
// an agent running on this machine — and waits up to wait for a datagram
// that verifies (internal/wire) as signed by serverKey: a beacon, a command
// or a command reference, which the server multicasts every beacon
// interval (30 s by default: wait longer than the server's interval).
// Datagrams that fail verification (signed by another key, bad signature,
// expired, malformed) are counted and named in the result.
func Multicast(ctx context.Context, group netip.Addr, port int, iface string, serverKey ed25519.PublicKey, wait time.Duration) Result {
	return listenSigned(ctx, group, port, iface, serverKey, wait, agentListener)
}

// RelayMulticast checks, on a relay's machine, the flow of commands the
// relay re-sends to its subnet: it listens on group and port on the
// relay's interface iface as Multicast does, and waits up to wait for a
// datagram signed by serverKey (the server's key, -server-key). The
// relay re-sends the server's datagrams verbatim — a beacon every beacon
// interval of the server at least — and sends with multicast loopback on,
// as the server does, so a copy of each comes back to this host: one
// arriving shows that the relay receives the server's stream and sends
// on that interface. Nothing is sent to the group.
func RelayMulticast(ctx context.Context, group netip.Addr, port int, iface string, serverKey ed25519.PublicKey, wait time.Duration) Result {
	return listenSigned(ctx, group, port, iface, serverKey, wait, relayListener)
}

// listener is who listens for signed datagrams: what its key setting is
// called, and what to ask when nothing arrives.
type listener struct {
	keyName string
	silent  func(port int, group netip.Addr) string
}

var (
	agentListener = listener{keyName: "ServerPublicKey", silent: func(port int, group netip.Addr) string {
		return fmt.Sprintf("is UDP %d to %s allowed in, IGMP/MLD allowed, and the server's TTL enough to reach this subnet?", port, group)
	}}
	relayListener = listener{keyName: "the relay's ServerKey (-server-key)", silent: func(port int, group netip.Addr) string {
		return fmt.Sprintf("is vigil relay running, with its stream from the server open (agent-api), and multicasting to %s port %d on this interface?", group, port)
	}}
)

// listenSigned is Multicast, for the listener l.
func listenSigned(ctx context.Context, group netip.Addr, port int, iface string, serverKey ed25519.PublicKey, wait time.Duration, l listener) Result {
	t := startTimer()
	on := iface
	if on == "" {
		on = "the default interface"
	}
	target := fmt.Sprintf("%s on %s", netip.AddrPortFrom(group, uint16(port)), on)
	if port < 1 || port > 65535 {
		target = fmt.Sprintf("%s port %d on %s", group, port, on)
	}
	if len(serverKey) != ed25519.PublicKeySize {
		return t.result(ports.FlowCommands, target, false, "no valid server public key (%s) to verify datagrams with", l.keyName)
	}
	rcv, err := mcast.NewReceiver(mcast.Config{Group: group, Port: port, Interface: iface})
	if err != nil {
		return t.result(ports.FlowCommands, target, false, "cannot join the group: %v", err)
	}
	type got struct {
		env *wire.Envelope
		src netip.AddrPort
	}
	found := make(chan got, 1)
	done := make(chan struct{})
	var bad badCounts // written by the receiving goroutine until done is closed
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, src, err := rcv.Receive(buf)
			if err != nil {
				return
			}
			b := append([]byte(nil), buf[:n]...)
			env, err := wire.Verify(b, serverKey, time.Now())
			if err != nil {
				bad.add(err)
				continue
			}
			found <- got{env, src}
			return
		}
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var g got
	var ok bool
	select {
	case g = <-found:
		ok = true
	case <-timer.C:
	case <-ctx.Done():
	}
	rcv.Close()
	<-done
	if !ok {
		select { // found just as the wait ended
		case g = <-found:
			ok = true
		default:
		}
	}
	after := time.Since(t.start)
	if ok {
		kind := map[wire.Kind]string{wire.KindBeacon: "beacon", wire.KindCommand: "command", wire.KindRef: "command reference"}[g.env.Kind]
		return t.result(ports.FlowCommands, target, true, "signed %s seq %d from %s after %s%s",
			kind, g.env.Seq, g.src.Addr(), fmtDur(after), bad.note())
	}
	why := "no signed beacon within " + fmtDur(wait)
	if ctx.Err() != nil && after < wait {
		why = fmt.Sprintf("no signed beacon within %s (check cut short: %v)", fmtDur(after), context.Cause(ctx))
	}
	if bad.n > 0 {
		// Datagrams arrive: the network works, the trust does not.
		return t.result(ports.FlowCommands, target, false, "%s%s: datagrams to UDP %d reach this machine, but none verifies: %s",
			why, bad.note(), port, bad.advice(l.keyName))
	}
	return t.result(ports.FlowCommands, target, false, "%s: %s", why, l.silent(port, group))
}

// badCounts counts datagrams that failed verification, by reason.
type badCounts struct {
	n       int
	reasons map[string]int
}

func (b *badCounts) add(err error) {
	reason := "malformed"
	switch {
	case errors.Is(err, wire.ErrKey):
		reason = "signed by another key"
	case errors.Is(err, wire.ErrSignature):
		reason = "bad signature"
	case errors.Is(err, wire.ErrExpired):
		reason = "expired"
	}
	if b.reasons == nil {
		b.reasons = map[string]int{}
	}
	b.n++
	b.reasons[reason]++
}

// note is "" or "; 3 datagrams failed verification (2 signed by another
// key, 1 expired)".
func (b *badCounts) note() string {
	if b.n == 0 {
		return ""
	}
	var parts []string
	for r, n := range b.reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	s := "s"
	if b.n == 1 {
		s = ""
	}
	return fmt.Sprintf("; %d datagram%s failed verification (%s)", b.n, s, strings.Join(parts, ", "))
}

// advice explains what the verification failures suggest; keyName is the
// setting that holds the server's key.
func (b *badCounts) advice(keyName string) string {
	var a []string
	if b.reasons["signed by another key"] > 0 {
		a = append(a, "is "+keyName+" the server's signing.pub (or does another Vigil server use this group and port)?")
	}
	if b.reasons["bad signature"] > 0 {
		a = append(a, "datagrams are corrupted or forged on the way;")
	}
	if b.reasons["expired"] > 0 {
		a = append(a, "are this machine's and the server's clocks right?")
	}
	if b.reasons["malformed"] > 0 {
		a = append(a, "something else sends to this group and port;")
	}
	return strings.TrimSuffix(strings.Join(a, " "), ";")
}
