package liveupdate

import "syscall"

// haveSendMore: conn.Write can send with MSG_MORE.
const haveSendMore = true

// moreWriter writes with MSG_MORE: the kernel holds a partial segment
// until more data follows, so a response header written just before a
// sendfile leaves in the same segments as the file's first bytes (what
// nginx gets from tcp_nopush, without two setsockopt calls per response).
// One is kept per connection so that a write allocates nothing.
type moreWriter struct {
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func (m *moreWriter) write(rc syscall.RawConn, p []byte) (int, error) {
	if m.fn == nil {
		m.fn = func(fd uintptr) bool {
			for m.n < len(m.p) {
				k, e := syscall.SendmsgN(int(fd), m.p[m.n:], nil, nil, syscall.MSG_MORE)
				switch e {
				case nil:
					m.n += k
				case syscall.EINTR:
				case syscall.EAGAIN:
					return false
				default:
					m.err = e
					return true
				}
			}
			return true
		}
	}
	m.p, m.n, m.err = p, 0, nil
	werr := rc.Write(m.fn)
	n, err := m.n, m.err
	m.p = nil
	if err == nil {
		err = werr
	}
	return n, err
}

// push sends what MSG_MORE held back (setting TCP_NODELAY pushes pending
// segments).
func push(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) })
}
