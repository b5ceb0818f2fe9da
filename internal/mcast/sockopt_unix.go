//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package mcast

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// msgTrunc is the recvmsg flag saying the datagram did not fit the buffer.
const msgTrunc = unix.MSG_TRUNC

// setReceiverSockopts runs before bind: it lets many sockets share the port
// and, where the platform needs it and filter is set, restricts multicast
// delivery to the groups the socket joins.
func setReceiverSockopts(fd int, v6, filter bool) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", err)
	}
	if filter {
		restrictToJoinedGroups(fd, v6)
	}
	return nil
}
