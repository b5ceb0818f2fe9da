package liveupdate

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// accessLog writes Common Log Format lines, extended with the protocol and
// the duration, to one writer. Lines are buffered, as nginx does with
// "access_log ... buffer=64k flush=1s": a write per request would cost
// more than the request. They are written when 64 KiB have gathered, every
// second, and at shutdown; past 1 MiB (a writer that cannot keep up) a
// logging request writes them itself. A nil *accessLog logs nothing.
type accessLog struct {
	w         io.Writer
	now       func() time.Time
	timeCache atomic.Pointer[cachedDate] // the time formatted for the last line

	mu  sync.Mutex
	buf []byte // lines not written yet

	wmu   sync.Mutex // serializes writes to w; guards spare
	spare []byte

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

const (
	accessLogFlushSize = 64 << 10
	accessLogMaxSize   = 1 << 20
	accessLogInterval  = time.Second
)

func newAccessLog(w io.Writer) *accessLog {
	if w == nil {
		return nil
	}
	return &accessLog{w: w, now: time.Now, kick: make(chan struct{}, 1)}
}

// start runs the background writer until close.
func (a *accessLog) start() {
	if a == nil || a.stop != nil {
		return
	}
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.done)
		t := time.NewTicker(accessLogInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-a.kick:
			case <-a.stop:
				a.flush()
				return
			}
			a.flush()
		}
	}()
}

// close writes what is buffered and stops the background writer.
func (a *accessLog) close() {
	if a == nil {
		return
	}
	if a.stop != nil {
		close(a.stop)
		<-a.done
		a.stop = nil
	}
	a.flush()
}

// flush writes the buffered lines.
func (a *accessLog) flush() {
	if a == nil {
		return
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.mu.Lock()
	b := a.buf
	a.buf = a.spare[:0]
	a.mu.Unlock()
	if len(b) > 0 {
		a.w.Write(b)
	}
	if cap(b) <= 4*accessLogFlushSize {
		a.spare = b[:0]
	} else {
		a.spare = nil
	}
}

// logEntry is one access log line.
type logEntry struct {
	proto, host, user string
	request           [3]string // joined with spaces, empty parts left out
	status            int
	bytes             int64
	dur               time.Duration
}

// log writes one line:
//
//	HOST - USER [TIME] "REQUEST" STATUS BYTES PROTO SECONDS
func (a *accessLog) log(e logEntry) {
	if a == nil {
		return
	}
	if e.host == "" {
		e.host = "-"
	}
	if e.user == "" {
		e.user = "-"
	}
	// The line is made outside the lock, in a buffer on the stack, so
	// that concurrent requests wait only for the copy.
	var line [256]byte
	b := append(line[:0], e.host...)
	b = append(b, " - "...)
	b = appendEscaped(b, e.user)
	b = append(b, " ["...)
	b = a.appendTime(b)
	b = append(b, "] \""...)
	sep := false
	for _, part := range e.request {
		if part == "" {
			continue
		}
		if sep {
			b = append(b, ' ')
		}
		b = appendEscaped(b, part)
		sep = true
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, ' ')
	b = append(b, e.proto...)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, e.dur.Seconds(), 'f', 6, 64)
	b = append(b, '\n')
	a.mu.Lock()
	a.buf = append(a.buf, b...)
	n := len(a.buf)
	a.mu.Unlock()
	switch {
	case n >= accessLogMaxSize:
		a.flush()
	case n >= accessLogFlushSize:
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// appendTime appends the current time as the log shows it, formatted
// once a second.
func (a *accessLog) appendTime(b []byte) []byte {
	now := a.now()
	sec := now.Unix()
	if t := a.timeCache.Load(); t != nil && t.sec == sec {
		return append(b, t.b...)
	}
	t := &cachedDate{sec: sec, b: now.UTC().AppendFormat(nil, "02/Jan/2006:15:04:05 -0700")}
	a.timeCache.Store(t)
	return append(b, t.b...)
}

// hostOf returns the IP address of a, or its string form.
func hostOf(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return "-"
	}
	return a.String()
}

// appendEscaped appends s with '"', '\' and every byte outside printable
// ASCII escaped, as Apache does, so that no request forges a line.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return b
}
