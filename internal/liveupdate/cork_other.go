//go:build !linux

package liveupdate

import "syscall"

// haveSendMore: MSG_MORE is Linux-only; conn.Write writes plainly.
const haveSendMore = false

type moreWriter struct{}

func (*moreWriter) write(syscall.RawConn, []byte) (int, error) { panic("unreachable") }

func push(syscall.RawConn) {}
