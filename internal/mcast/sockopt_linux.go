package mcast

import "golang.org/x/sys/unix"

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
