//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package mcast

// restrictToJoinedGroups does nothing on BSD-derived systems: their kernels
// deliver a multicast datagram only to sockets that joined its group on the
// arrival interface, which is what Linux needs IP_MULTICAST_ALL=0 for.
func restrictToJoinedGroups(int, bool) {}
