//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package mcast

// restrictToJoinedGroups does nothing on BSD-derived systems: their kernels
// deliver a multicast datagram only to sockets that joined its group on the
// arrival interface, which is what Linux needs IP_MULTICAST_ALL=0 for.
func restrictToJoinedGroups(int, bool) {}

// dropsCmsgSpace is 0: no drop count comes with the datagrams.
const dropsCmsgSpace = 0

// reportKernelDrops reports false: macOS and the BSDs have no per-socket
// drop counter (SO_RXQ_OVFL is Linux's); they count full-buffer drops only
// system-wide (netstat -s -p udp, "dropped due to full socket buffers").
func reportKernelDrops(int) bool { return false }

// kernelDrops is never called: reportKernelDrops reports false.
func kernelDrops([]byte) (uint32, bool) { return 0, false }
