package liveupdate

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fileChunk is how much of a file one write deadline covers: a client must
// accept fileChunk bytes within Config.WriteTimeout.
const fileChunk = 256 << 10

// conn is an accepted connection: it keeps its listener's counts right on
// Close, refreshes its write deadline before every write, and sends files
// in chunks with sendfile, each chunk under a fresh deadline.
type conn struct {
	net.Conn
	tcp          *net.TCPConn // nil for non-TCP connections
	writeTimeout time.Duration
	release      func(*conn) // nil for connections no listener counts
	ip           netip.Addr
	closeOnce    sync.Once
	state        atomic.Int32    // HTTP: stateActive, stateNew, stateIdle, stateClosing
	raw          syscall.RawConn // of tcp, once needed
	more         bool            // send the next Write with MSG_MORE
	mw           moreWriter
	deadline     time.Time        // write deadline last set
	lr           io.LimitedReader // the chunk being sent by ReadFrom
}

// rawConn returns the connection's syscall.RawConn, or nil.
func (c *conn) rawConn() syscall.RawConn {
	if c.raw == nil && c.tcp != nil {
		c.raw, _ = c.tcp.SyscallConn()
	}
	return c.raw
}

// refreshWriteDeadline moves the write deadline to WriteTimeout from now,
// unless it was set less than a sixteenth of WriteTimeout ago: a write
// then gets between 15/16 and all of WriteTimeout, and a busy connection
// does not reset its timer for every small write.
func (c *conn) refreshWriteDeadline() {
	now := time.Now()
	if now.Sub(c.deadline) < c.writeTimeout/16 {
		return
	}
	c.deadline = now
	c.Conn.SetWriteDeadline(now.Add(c.writeTimeout))
}

func newConn(c net.Conn, writeTimeout time.Duration) *conn {
	tc, _ := c.(*net.TCPConn)
	return &conn{Conn: c, tcp: tc, writeTimeout: writeTimeout, ip: remoteIP(c)}
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}

func (c *conn) Write(p []byte) (int, error) {
	c.refreshWriteDeadline()
	if c.more {
		c.more = false
		if rc := c.rawConn(); haveSendMore && rc != nil {
			return c.mw.write(rc, p)
		}
	}
	return c.Conn.Write(p)
}

// ReadFrom sends r. When r is a file (or a file behind an io.LimitedReader,
// as http.ServeContent and io.CopyN pass it), it goes out with sendfile in
// fileChunk pieces, each under its own write deadline; anything else is
// copied with a fresh deadline per buffer.
func (c *conn) ReadFrom(r io.Reader) (total int64, err error) {
	remain := int64(-1) // unknown: until EOF
	lr, isLimited := r.(*io.LimitedReader)
	src := r
	if isLimited {
		src = lr.R
		remain = lr.N
	}
	var f *os.File
	var sf *sizedFile
	switch s := src.(type) {
	case *os.File:
		f = s
	case *sizedFile:
		if err := s.sync(); err != nil {
			return 0, err
		}
		f, sf = s.f, s
	}
	if f == nil || c.tcp == nil {
		return io.Copy(writerOnly{c}, r)
	}
	if sf != nil {
		defer func() { sf.advance(total) }()
	}
	for remain != 0 {
		n := int64(fileChunk)
		if remain > 0 && remain < n {
			n = remain
		}
		c.refreshWriteDeadline()
		var w int64
		c.lr = io.LimitedReader{R: f, N: n}
		w, err = c.tcp.ReadFrom(&c.lr)
		c.lr.R = nil
		total += w
		if remain > 0 {
			remain -= w
		}
		if isLimited {
			lr.N -= w
		}
		if err != nil {
			return total, err
		}
		if w < n { // end of file
			break
		}
	}
	return total, nil
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.release != nil {
			c.release(c)
		}
	})
	return err
}

// sizedFile is a file whose size is known, for http.ServeContent: its
// Seek answers without a system call (ServeContent seeks to the end and
// back to learn the size), and the descriptor is moved only when bytes
// are really read or sent.
type sizedFile struct {
	f    *os.File
	size int64
	pos  int64 // logical position
	fpos int64 // the descriptor's position
}

func (s *sizedFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if off < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.pos = off
	return off, nil
}

// sync moves the descriptor to the logical position.
func (s *sizedFile) sync() error {
	if s.pos != s.fpos {
		if _, err := s.f.Seek(s.pos, io.SeekStart); err != nil {
			return err
		}
		s.fpos = s.pos
	}
	return nil
}

func (s *sizedFile) advance(n int64) { s.pos += n; s.fpos += n }

func (s *sizedFile) Read(p []byte) (int, error) {
	if err := s.sync(); err != nil {
		return 0, err
	}
	n, err := s.f.Read(p)
	s.advance(int64(n))
	return n, err
}

// writerOnly hides ReadFrom so that io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }

// limitListener accepts at most max connections in all and perIP from one
// address (0: no limit). A connection beyond a limit is refused: it gets
// the protocol's refusal message and is closed, unless drainIdle finds an
// idle connection to close in its place.
type limitListener struct {
	net.Listener
	proto        string
	max, perIP   int
	writeTimeout time.Duration
	refusal      []byte // written to refused connections
	drainIdle    bool   // close an idle connection to make room
	log          *slog.Logger
	alog         *accessLog

	mu     sync.Mutex
	byIP   map[netip.Addr]int
	conns  map[*conn]struct{}
	closed bool
}

func newLimitListener(l net.Listener, proto string, max, perIP int, writeTimeout time.Duration, refusal string, log *slog.Logger, alog *accessLog) *limitListener {
	return &limitListener{
		Listener: l, proto: proto, max: max, perIP: perIP, writeTimeout: writeTimeout,
		refusal: []byte(refusal), log: log, alog: alog,
		byIP: map[netip.Addr]int{}, conns: map[*conn]struct{}{},
	}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := newConn(nc, l.writeTimeout)
		if l.admit(c) {
			return c, nil
		}
		l.refuse(c)
	}
}

// admit counts c in, making room by closing an idle connection if allowed.
func (l *limitListener) admit(c *conn) bool {
	l.mu.Lock()
	full := func() (bool, bool) { // total, per IP
		return l.max > 0 && len(l.conns) >= l.max, l.perIP > 0 && l.byIP[c.ip] >= l.perIP
	}
	if total, ip := full(); (total || ip) && l.drainIdle {
		for old := range l.conns {
			if (!ip || old.ip == c.ip) && old.state.CompareAndSwap(stateIdle, stateClosing) {
				l.mu.Unlock()
				l.log.Debug("closing an idle connection to make room", "proto", l.proto, "remote", old.RemoteAddr().String())
				old.Close()
				l.mu.Lock()
				break
			}
		}
	}
	if total, ip := full(); total || ip || l.closed {
		l.mu.Unlock()
		return false
	}
	l.conns[c] = struct{}{}
	l.byIP[c.ip]++
	c.release = l.release
	l.mu.Unlock()
	return true
}

func (l *limitListener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	if l.byIP[c.ip]--; l.byIP[c.ip] <= 0 {
		delete(l.byIP, c.ip)
	}
}

func (l *limitListener) refuse(c *conn) {
	l.log.Info("connection refused: limit reached", "proto", l.proto, "remote", c.RemoteAddr().String(),
		"max_conns", l.max, "max_conns_per_ip", l.perIP)
	l.alog.log(logEntry{proto: l.proto, host: hostOf(c.RemoteAddr()), request: [3]string{"CONNECT"}, status: refusalStatus(l.proto)})
	// The send buffer of a new connection is empty: this write does
	// not block, and the deadline makes sure of it.
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.Conn.Write(l.refusal)
	c.Conn.Close()
}

func refusalStatus(proto string) int {
	if proto == "ftp" {
		return 421
	}
	return 503
}

// Close stops accepting; the connections already accepted stay open.
func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

// each calls f on every open connection.
func (l *limitListener) each(f func(*conn)) {
	l.mu.Lock()
	cs := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		f(c)
	}
}

// count returns the number of open connections.
func (l *limitListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
