// Package mcast is Vigil's UDP multicast transport: the server sends signed
// command datagrams to a multicast group with a Sender, and every agent
// listens for them with a Receiver. IPv4 and IPv6 groups are supported.
//
// # Receiving only the group's datagrams
//
// A Receiver binds the wildcard address (0.0.0.0 or [::]) on the port with
// SO_REUSEADDR and SO_REUSEPORT, so any number of receivers, in one process
// or many, can share the port. It joins its group on the configured
// interface and asks the kernel for the destination address (and arrival
// interface) of every datagram through ancillary data (IP_PKTINFO,
// IP_RECVDSTADDR or IPV6_PKTINFO). A datagram whose destination is not the
// group — a unicast datagram to the port, or a datagram for another group
// joined by another socket on the same port — or, when an interface is
// configured, which arrived on another interface, is dropped and counted in
// Receiver.Stats. This is why net.ListenMulticastUDP is not used: it
// delivers every group on the port. On Linux the receiver additionally sets
// IP_MULTICAST_ALL / IPV6_MULTICAST_ALL to 0, so the kernel already withholds
// datagrams for groups the socket did not join; the destination check stays
// as the portable guarantee.
//
// # Counting what is not delivered
//
// Every datagram the socket reads that Receive does not return is counted,
// once, in [Stats]: sent to a unicast or broadcast address (Unicast), to
// another group or on another interface (Foreign), or larger than the
// caller's buffer (Truncated, detected by the MSG_TRUNC flag of recvmsg,
// which is set whatever the buffer's size). Datagrams the kernel dropped
// before the socket could read them, because its receive buffer was full,
// are counted too where the kernel says: on Linux the receiver sets
// SO_RXQ_OVFL, and the kernel attaches its cumulative drop count for the
// socket to every datagram it queues after a drop (KernelDrops). A drop
// therefore shows once the next datagram has been read. macOS and the BSDs
// have no per-socket drop counter: there KernelDrops stays 0 and
// Stats.KernelDropsCounted is false; their drops show only system-wide, in
// "netstat -s -p udp" ("dropped due to full socket buffers").
//
// # Local delivery and the loopback interface
//
// A TTL (IPv6: hop limit) of 0 with Loopback set keeps datagrams on the
// host: the kernel loops a copy back to local listeners and discards the
// original before it reaches the wire. On the loopback interface itself
// ("lo" on Linux) nothing ever leaves the host whatever the TTL, and
// Loopback has no effect there, because transmitting on lo is local
// delivery.
//
// On Linux (checked on 6.18) multicast on lo works as follows. IPv4 needs
// nothing: joining on lo and sending with the multicast interface set to lo
// works even though lo lacks the MULTICAST flag, because the kernel assumes
// an explicitly chosen output interface is on-link. IPv6 needs a route for
// the group through lo — the kernel installs its "multicast ff00::/8" routes
// for the other devices only — otherwise sending fails with ENETUNREACH;
// setting the MULTICAST flag on lo does not help. The interface-local scope
// ff11::/16 (transient flag, scope 1) is the natural choice there:
//
//	ip -6 route add ff11::/16 dev lo table local
//
// after which a group such as ff11::8192 works on lo with hop limit 0.
// Interface-local scope groups are never transmitted on a non-loopback
// device, so the route cannot leak traffic off the host.
package mcast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ErrInvalidConfig is wrapped by every error NewSender and NewReceiver return
// for a Config they reject, so callers can tell bad settings from socket
// failures with errors.Is.
var ErrInvalidConfig = errors.New("mcast: invalid config")

// Config describes a multicast group and how to reach it.
type Config struct {
	// Group is the multicast group, IPv4 or IPv6. It must be a multicast
	// address without a zone (use Interface to pick the link); an
	// IPv4-mapped IPv6 address is treated as the IPv4 group.
	Group netip.Addr
	// Port is the UDP port, 1-65535.
	Port int
	// Interface is the name of the network interface to send on and to join
	// the group on. "" leaves the choice to the system (the routing table);
	// a Receiver then accepts the group's datagrams from any interface.
	Interface string
	// TTL is the sender's IPv4 TTL or IPv6 hop limit, 0-255. 0 keeps
	// datagrams on the host (see the package documentation).
	TTL int
	// Loopback makes the sender deliver a copy to listeners on this host
	// too (IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP). Callers normally set it.
	Loopback bool
}

// endpoint is a validated Config.
type endpoint struct {
	group netip.Addr
	port  uint16
	ifi   *net.Interface // nil: system default
	ttl   int
	loop  bool
	v6    bool
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// validate checks cfg without touching any socket.
func (cfg Config) validate() (endpoint, error) {
	var ep endpoint
	if !cfg.Group.IsValid() {
		return ep, invalid("group not set")
	}
	if cfg.Group.Zone() != "" {
		return ep, invalid("group %s has a zone; set Interface instead", cfg.Group)
	}
	group := cfg.Group.Unmap()
	if !group.IsMulticast() {
		return ep, invalid("group %s is not a multicast address", cfg.Group)
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return ep, invalid("port %d out of range 1-65535", cfg.Port)
	}
	if cfg.TTL < 0 || cfg.TTL > 255 {
		return ep, invalid("TTL %d out of range 0-255", cfg.TTL)
	}
	var ifi *net.Interface
	if cfg.Interface != "" {
		var err error
		ifi, err = net.InterfaceByName(cfg.Interface)
		if err != nil {
			return ep, fmt.Errorf("%w: interface %q: %w", ErrInvalidConfig, cfg.Interface, err)
		}
	}
	return endpoint{
		group: group,
		port:  uint16(cfg.Port),
		ifi:   ifi,
		ttl:   cfg.TTL,
		loop:  cfg.Loopback,
		v6:    group.Is6(),
	}, nil
}

func (ep endpoint) network() string {
	if ep.v6 {
		return "udp6"
	}
	return "udp4"
}

func (ep endpoint) wildcard(port uint16) string {
	if ep.v6 {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), port).String()
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), port).String()
}

func (ep endpoint) ifName() string {
	if ep.ifi == nil {
		return "default interface"
	}
	return ep.ifi.Name
}

// closedErr maps the many forms of "use of closed network connection" to
// net.ErrClosed itself.
func closedErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// Sender sends datagrams to a multicast group. It is safe for concurrent
// use.
type Sender struct {
	conn *net.UDPConn
	dst  netip.AddrPort
}

// NewSender opens a UDP socket on an ephemeral port configured to send to
// cfg.Group:cfg.Port on cfg.Interface with cfg.TTL and cfg.Loopback.
func NewSender(cfg Config) (*Sender, error) {
	ep, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket(ep.network(), ep.wildcard(0))
	if err != nil {
		return nil, fmt.Errorf("mcast: open sender socket: %w", err)
	}
	conn := pc.(*net.UDPConn)
	if err := configureSender(conn, ep); err != nil {
		conn.Close()
		return nil, err
	}
	return &Sender{conn: conn, dst: netip.AddrPortFrom(ep.group, ep.port)}, nil
}

func configureSender(conn *net.UDPConn, ep endpoint) error {
	if ep.v6 {
		p := ipv6.NewPacketConn(conn)
		if ep.ifi != nil {
			if err := p.SetMulticastInterface(ep.ifi); err != nil {
				return fmt.Errorf("mcast: set multicast interface %s: %w", ep.ifi.Name, err)
			}
		}
		if err := p.SetMulticastHopLimit(ep.ttl); err != nil {
			return fmt.Errorf("mcast: set multicast hop limit %d: %w", ep.ttl, err)
		}
		if err := p.SetMulticastLoopback(ep.loop); err != nil {
			return fmt.Errorf("mcast: set multicast loopback: %w", err)
		}
		return nil
	}
	p := ipv4.NewPacketConn(conn)
	if ep.ifi != nil {
		if err := p.SetMulticastInterface(ep.ifi); err != nil {
			return fmt.Errorf("mcast: set multicast interface %s: %w", ep.ifi.Name, err)
		}
	}
	if err := p.SetMulticastTTL(ep.ttl); err != nil {
		return fmt.Errorf("mcast: set multicast TTL %d: %w", ep.ttl, err)
	}
	if err := p.SetMulticastLoopback(ep.loop); err != nil {
		return fmt.Errorf("mcast: set multicast loopback: %w", err)
	}
	return nil
}

// Send sends b as one datagram to the group. After Close it returns
// net.ErrClosed.
func (s *Sender) Send(b []byte) error {
	if _, err := s.conn.WriteToUDPAddrPort(b, s.dst); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return net.ErrClosed
		}
		return fmt.Errorf("mcast: send to %s: %w", s.dst, err)
	}
	return nil
}

// Close closes the socket. Closing twice returns net.ErrClosed.
func (s *Sender) Close() error {
	return closedErr(s.conn.Close())
}

// Receiver receives the datagrams sent to one multicast group on one port.
// Receive must not be called concurrently from several goroutines if
// datagram order matters; it is otherwise safe for concurrent use, and
// Stats and Close may be called at any time.
type Receiver struct {
	conn       *net.UDPConn
	group      netip.Addr
	ifIndex    int // 0: accept any arrival interface
	v6         bool
	oobLen     int
	dropsKnown bool // the kernel reports its drops (SO_RXQ_OVFL)
	received   atomic.Uint64
	unicast    atomic.Uint64
	foreign    atomic.Uint64
	truncated  atomic.Uint64

	dropsMu     sync.Mutex
	dropsLast   uint32 // the kernel's last reported cumulative count
	kernelDrops uint64 // dropsLast, widened past its wrap at 2^32
}

// Stats counts what a Receiver has seen since it was created. Every
// datagram the socket read is in exactly one of Received, Unicast, Foreign
// and Truncated; KernelDrops are datagrams for the port that the kernel
// discarded before the socket read them.
type Stats struct {
	// Received is the number of datagrams Receive returned.
	Received uint64
	// Unicast is the number of datagrams dropped because they were sent
	// to a unicast (or broadcast) address on the port, not to a group.
	Unicast uint64
	// Foreign is the number of datagrams dropped because they were sent
	// to another multicast group on the port, or arrived on another
	// interface than the configured one, or came without a readable
	// destination address.
	Foreign uint64
	// Truncated is the number of the group's datagrams dropped because
	// they were larger than the buffer passed to Receive.
	Truncated uint64
	// KernelDrops is the number of datagrams the kernel discarded for
	// this socket, mostly because its receive buffer was full, as of the
	// last datagram read (see the package documentation). It counts
	// datagrams of every destination: the kernel drops them before
	// anyone looks at the destination. Always 0 when KernelDropsCounted
	// is false.
	KernelDrops uint64
	// KernelDropsCounted reports whether the kernel tells the receiver
	// about its drops: true on Linux, false on macOS and the BSDs.
	KernelDropsCounted bool
}

// kernelGroupFilter controls whether receivers ask the kernel (Linux
// IP_MULTICAST_ALL=0) to withhold datagrams for groups they did not join.
// Tests turn it off to exercise the destination check itself.
var kernelGroupFilter = true

// NewReceiver binds cfg.Port on the wildcard address of cfg.Group's family
// with SO_REUSEADDR and SO_REUSEPORT, joins cfg.Group on cfg.Interface and
// enables destination-address control messages. TTL and Loopback are
// validated but otherwise unused.
func NewReceiver(cfg Config) (*Receiver, error) {
	ep, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	filter := kernelGroupFilter
	var dropsKnown bool
	lc := net.ListenConfig{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = setReceiverSockopts(int(fd), ep.v6, filter)
				if serr == nil {
					dropsKnown = reportKernelDrops(int(fd))
				}
			}); err != nil {
				return err
			}
			return serr
		},
	}
	laddr := ep.wildcard(ep.port)
	pc, err := lc.ListenPacket(context.Background(), ep.network(), laddr)
	if err != nil {
		return nil, fmt.Errorf("mcast: listen %s: %w", laddr, err)
	}
	conn := pc.(*net.UDPConn)
	r := &Receiver{conn: conn, group: ep.group, v6: ep.v6, dropsKnown: dropsKnown}
	if ep.ifi != nil {
		r.ifIndex = ep.ifi.Index
	}
	if err := r.join(ep); err != nil {
		conn.Close()
		return nil, err
	}
	return r, nil
}

func (r *Receiver) join(ep endpoint) error {
	group := &net.UDPAddr{IP: ep.group.AsSlice()}
	if ep.v6 {
		p := ipv6.NewPacketConn(r.conn)
		if err := p.JoinGroup(ep.ifi, group); err != nil {
			return fmt.Errorf("mcast: join %s on %s: %w", ep.group, ep.ifName(), err)
		}
		flags := ipv6.FlagDst | ipv6.FlagInterface
		if err := p.SetControlMessage(flags, true); err != nil {
			return fmt.Errorf("mcast: enable IPv6 packet info: %w", err)
		}
		r.oobLen = len(ipv6.NewControlMessage(flags)) + dropsCmsgSpace
		return nil
	}
	p := ipv4.NewPacketConn(r.conn)
	if err := p.JoinGroup(ep.ifi, group); err != nil {
		return fmt.Errorf("mcast: join %s on %s: %w", ep.group, ep.ifName(), err)
	}
	flags := ipv4.FlagDst | ipv4.FlagInterface
	if err := p.SetControlMessage(flags, true); err != nil {
		return fmt.Errorf("mcast: enable IPv4 packet info: %w", err)
	}
	r.oobLen = len(ipv4.NewControlMessage(flags)) + dropsCmsgSpace
	return nil
}

// Receive reads one datagram sent to the group into buf and returns its
// length and source address. Datagrams sent to a unicast address, to
// another group or (with an Interface configured) arriving on another
// interface are skipped, and so are datagrams longer than buf, so buf
// should hold the largest datagram expected (65535 bytes always suffices);
// Stats counts each. After Close, Receive returns net.ErrClosed.
func (r *Receiver) Receive(buf []byte) (n int, src netip.AddrPort, err error) {
	oob := make([]byte, r.oobLen)
	for {
		n, oobn, flags, from, err := r.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return 0, netip.AddrPort{}, closedErr(err)
		}
		if r.dropsKnown {
			if total, ok := kernelDrops(oob[:oobn]); ok {
				r.noteKernelDrops(total)
			}
		}
		switch r.classify(oob[:oobn]) {
		case toUnicast:
			r.unicast.Add(1)
			continue
		case toForeign:
			r.foreign.Add(1)
			continue
		}
		if flags&msgTrunc != 0 {
			r.truncated.Add(1)
			continue
		}
		r.received.Add(1)
		return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
	}
}

// noteKernelDrops takes in the kernel's cumulative drop count as reported
// with a datagram. The count is 32 bits and wraps; a report older than one
// already taken (from a concurrent Receive) is ignored.
func (r *Receiver) noteKernelDrops(total uint32) {
	r.dropsMu.Lock()
	defer r.dropsMu.Unlock()
	if d := total - r.dropsLast; d != 0 && d < 1<<31 {
		r.kernelDrops += uint64(d)
		r.dropsLast = total
	}
}

// destination is what the control message says about where a datagram
// was sent.
type destination int

const (
	toGroup   destination = iota // the group, on the configured interface
	toUnicast                    // a unicast or broadcast address
	toForeign                    // another group, another interface, or unknown
)

// classify reads the datagram's destination (and arrival interface) from
// its control message. A datagram without a readable destination is
// foreign.
func (r *Receiver) classify(oob []byte) destination {
	var dst []byte
	var ifIndex int
	if r.v6 {
		var cm ipv6.ControlMessage
		if cm.Parse(oob) != nil {
			return toForeign
		}
		dst, ifIndex = cm.Dst, cm.IfIndex
	} else {
		var cm ipv4.ControlMessage
		if cm.Parse(oob) != nil {
			return toForeign
		}
		dst, ifIndex = cm.Dst, cm.IfIndex
	}
	addr, ok := netip.AddrFromSlice(dst)
	switch {
	case !ok:
		return toForeign
	case !addr.Unmap().IsMulticast():
		return toUnicast
	case addr.Unmap() != r.group:
		return toForeign
	case r.ifIndex != 0 && ifIndex != r.ifIndex:
		return toForeign
	}
	return toGroup
}

// Stats returns the receiver's counts. It may be called at any time,
// concurrently with Receive; each count only grows.
func (r *Receiver) Stats() Stats {
	r.dropsMu.Lock()
	drops := r.kernelDrops
	r.dropsMu.Unlock()
	return Stats{
		Received:           r.received.Load(),
		Unicast:            r.unicast.Load(),
		Foreign:            r.foreign.Load(),
		Truncated:          r.truncated.Load(),
		KernelDrops:        drops,
		KernelDropsCounted: r.dropsKnown,
	}
}

// Close leaves the group and closes the socket, making a blocked Receive
// return net.ErrClosed. Closing twice returns net.ErrClosed.
func (r *Receiver) Close() error {
	return closedErr(r.conn.Close())
}
