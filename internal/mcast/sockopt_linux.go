package mcast

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// restrictToJoinedGroups turns off Linux's default of delivering to a
// wildcard-bound socket the datagrams of every group any socket on the host
// joined on the port (IP_MULTICAST_ALL, IPV6_MULTICAST_ALL since Linux
// 4.20). It is an optimisation only: Receive checks the destination of every
// datagram anyway, so failure (an old kernel) is ignored.
func restrictToJoinedGroups(fd int, v6 bool) {
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
		return
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
}

// dropsCmsgSpace is the room the SO_RXQ_OVFL control message takes.
var dropsCmsgSpace = unix.CmsgSpace(4)

// reportKernelDrops asks the kernel (SO_RXQ_OVFL, Linux 2.6.33) to attach
// to each datagram it queues its count of the datagrams it has dropped for
// the socket, and reports whether it agreed.
func reportKernelDrops(fd int) bool {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) == nil
}

// kernelDrops finds the SO_RXQ_OVFL count in a datagram's control
// messages. The kernel leaves it out while the count is 0.
func kernelDrops(oob []byte) (uint32, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data), true
		}
	}
	return 0, false
}
