package liveupdate

// A lean HTTP/1.1 server for a read-only file server.
//
// net/http's server costs a third more CPU per small file than nginx, most
// of it outside the handler: a goroutine per request to watch for the
// client going away, a cancellable context, a clone of the response
// header. None of that is needed to answer GET and HEAD without reading a
// body, so this file replaces the connection loop and the ResponseWriter
// and keeps the parts that carry the semantics: http.ReadRequest parses
// requests and http.ServeContent answers them (ranges, conditional
// requests, multipart byte ranges). The checks net/http's server makes
// beyond ReadRequest are made here too: HTTP/1.x only, a valid Host header
// (required with HTTP/1.1), valid header names and values, a bounded
// header size. A request with a body is answered and its connection
// closed; its body is never read.
//
// Plain GETs and HEADs of a file skip both: see fastpath.go.

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxHeaderBytes bounds a request's line and header.
const maxHeaderBytes = 16 << 10

// Connection states, in conn.state.
const (
	stateActive  = iota // reading or answering a request
	stateNew            // waiting for its first request
	stateIdle           // keep-alive, waiting for the next request
	stateClosing        // shutdown: finish the current response, then close
)

type httpServer struct {
	handler *httpHandler
	cfg     Config
	log     *slog.Logger
	alog    *accessLog
	ln      *limitListener
	closing atomic.Bool
	// noFastPath sends every request through http.ReadRequest and
	// http.ServeContent (tests compare both paths).
	noFastPath bool
}

var (
	bufReaders sync.Pool
	bufWriters sync.Pool
)

func (s *httpServer) serve(ln *limitListener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("http: accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go s.serveConn(nc.(*conn))
	}
}

// shutdown stops accepting, closes connections waiting for a request,
// waits for the others to finish their response, and closes whatever is
// left when ctxDone is closed.
func (s *httpServer) shutdown(ctxDone <-chan struct{}) {
	s.closing.Store(true)
	s.ln.Close()
	for {
		s.ln.each(func(c *conn) {
			if c.state.CompareAndSwap(stateIdle, stateClosing) || c.state.CompareAndSwap(stateNew, stateClosing) {
				c.Close()
			} else {
				c.state.CompareAndSwap(stateActive, stateClosing)
			}
		})
		if s.ln.count() == 0 {
			return
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctxDone:
			s.ln.each(func(c *conn) { c.Close() })
			return
		}
	}
}

// headerLimit bounds what a request line and header may read.
type headerLimit struct {
	r io.Reader
	n int64
}

var errHeaderTooLarge = errors.New("request header too large")

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (s *httpServer) serveConn(c *conn) {
	defer c.Close()
	defer func() {
		// As net/http does: a panic ends the connection, not the server.
		if v := recover(); v != nil {
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.log.Error("http: handler panic", "remote", c.RemoteAddr().String(), "panic", v, "stack", string(buf))
		}
	}()
	remote := c.RemoteAddr().String()
	host, _, _ := net.SplitHostPort(remote)
	lim := &headerLimit{r: c}
	br, _ := bufReaders.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(lim, 4096)
	} else {
		br.Reset(lim)
	}
	bw, _ := bufWriters.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(c, 4096)
	} else {
		bw.Reset(c)
	}
	defer func() {
		br.Reset(nil)
		bw.Reset(nil)
		bufReaders.Put(br)
		bufWriters.Put(bw)
	}()
	fc := new(fastConn)
	wait := s.cfg.ReadTimeout
	// The read deadline waiting for a request was set at rdSet for
	// rdWait. Between the requests of a busy keep-alive connection it is
	// moved only when a sixteenth of the idle timeout has passed (as
	// conn.refreshWriteDeadline does): a client then gets between 15/16
	// and all of IdleTimeout, and a request does not cost a timer update.
	var rdSet time.Time
	var rdWait time.Duration
	c.state.Store(stateNew)
	for {
		if s.closing.Load() || c.state.Load() == stateClosing {
			return
		}
		lim.n = maxHeaderBytes
		if now := time.Now(); wait != rdWait || now.Sub(rdSet) >= wait/16 {
			c.SetReadDeadline(now.Add(wait))
			rdSet, rdWait = now, wait
		}
		if _, err := br.Peek(1); err != nil {
			return // closed, timed out, or closed by shutdown or draining
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) && !c.state.CompareAndSwap(stateNew, stateActive) {
			return // closed under us
		}
		if !s.noFastPath {
			if handled, keep := s.serveFast(c, br, bw, fc, host); handled {
				if !keep {
					return
				}
				c.state.CompareAndSwap(stateActive, stateIdle)
				wait = s.cfg.IdleTimeout
				continue
			}
		}
		start := time.Now()
		c.SetReadDeadline(start.Add(s.cfg.ReadTimeout))
		rdWait = 0 // changed: set it again before the next request
		req, err := http.ReadRequest(br)
		if err != nil {
			var code int
			switch {
			case errors.Is(err, errHeaderTooLarge) || lim.n <= 0:
				code = http.StatusRequestHeaderFieldsTooLarge
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err):
				return
			default:
				code = http.StatusBadRequest
			}
			s.writeError(bw, code)
			s.alog.log(logEntry{proto: "http", host: host, request: [3]string{"-"}, status: code, dur: time.Since(start)})
			return
		}
		// The request is read; its body, if any, never will be. No read
		// deadline while answering: a download may take long.
		c.SetReadDeadline(time.Time{})
		if code := checkRequest(req); code != 0 {
			s.writeError(bw, code)
			s.alog.log(logEntry{proto: "http", host: host, request: [3]string{req.Method, req.RequestURI, req.Proto},
				status: code, dur: time.Since(start)})
			return
		}
		req.RemoteAddr = remote
		w := &httpResponse{c: c, bw: bw, req: req, hdr: make(http.Header, 8), clen: -1,
			keepAlive: wantsKeepAlive(req) && req.ContentLength == 0 && len(req.TransferEncoding) == 0}
		s.handler.ServeHTTP(w, req)
		if !w.finish() || !w.keepAlive || w.closeAfter {
			return
		}
		c.state.CompareAndSwap(stateActive, stateIdle)
		wait = s.cfg.IdleTimeout
	}
}

// checkRequest returns the error status for a request net/http's server
// would refuse, or 0.
func checkRequest(r *http.Request) int {
	if r.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported
	}
	if r.ProtoAtLeast(1, 1) && r.Host == "" && r.Method != http.MethodConnect {
		return http.StatusBadRequest
	}
	if r.Host != "" && !validHostHeader(r.Host) {
		return http.StatusBadRequest
	}
	for k, vv := range r.Header {
		if !validFieldName(k) {
			return http.StatusBadRequest
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return http.StatusBadRequest
			}
		}
	}
	return 0
}

func wantsKeepAlive(r *http.Request) bool {
	if r.ProtoAtLeast(1, 1) {
		return !containsToken(r.Header["Connection"], "close")
	}
	return containsToken(r.Header["Connection"], "keep-alive")
}

// writeError answers a request that never reached the handler, and the
// connection is closed after it.
func (s *httpServer) writeError(bw *bufio.Writer, code int) {
	msg := http.StatusText(code) + "\n"
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(msg)) + "\r\n\r\n" + msg)
	bw.Flush()
}

// httpResponse is the http.ResponseWriter of httpServer.
type httpResponse struct {
	c           *conn
	bw          *bufio.Writer
	req         *http.Request
	hdr         http.Header
	status      int
	wroteHeader bool
	bodyOK      bool  // the status and method allow a body
	clen        int64 // declared Content-Length, -1 if none
	written     int64
	keepAlive   bool
	closeAfter  bool // the connection closes after this response
}

func (w *httpResponse) Header() http.Header { return w.hdr }

func (w *httpResponse) WriteHeader(code int) {
	if w.wroteHeader || code < 100 || code > 999 {
		return
	}
	w.wroteHeader = true
	w.status = code
	w.bodyOK = w.req.Method != http.MethodHead && bodyAllowed(code)
	if v := w.hdr.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			w.hdr.Del("Content-Length")
		} else {
			w.clen = n
		}
	}
	if !bodyAllowed(code) {
		w.hdr.Del("Content-Length")
		w.clen = -1
	}
	if w.bodyOK && w.clen < 0 {
		w.closeAfter = true // the body ends when the connection does
	}
	if c, ok := w.hdr["Connection"]; ok && containsToken(c, "close") {
		w.closeAfter = true
	}
	bw := w.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nDate: ")
	bw.Write(httpDate())
	switch {
	case !w.keepAlive || w.closeAfter:
		w.hdr.Del("Connection")
		bw.WriteString("\r\nConnection: close")
	case !w.req.ProtoAtLeast(1, 1):
		bw.WriteString("\r\nConnection: keep-alive")
	}
	for k, vv := range w.hdr {
		for _, v := range vv {
			bw.WriteString("\r\n")
			bw.WriteString(k)
			bw.WriteString(": ")
			writeHeaderValue(bw, v)
		}
	}
	bw.WriteString("\r\n\r\n")
}

// writeHeaderValue writes v with CR and LF replaced, so that no value
// splits a header.
func writeHeaderValue(bw *bufio.Writer, v string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			bw.WriteByte(' ')
		} else {
			bw.WriteByte(c)
		}
	}
}

func bodyAllowed(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

func (w *httpResponse) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyOK {
		return len(p), nil
	}
	n, err := w.bw.Write(p)
	w.written += int64(n)
	return n, err
}

// ReadFrom sends a body: the header is flushed with MSG_MORE, so that the
// kernel holds it, and a file goes out with sendfile (see conn.ReadFrom),
// so that the header and the body leave in full segments (what nginx does
// with sendfile and tcp_nopush).
func (w *httpResponse) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyOK {
		return 0, nil
	}
	w.c.more = true
	err := w.bw.Flush()
	w.c.more = false
	if err != nil {
		return 0, err
	}
	n, err := w.c.ReadFrom(r)
	w.written += n
	if n == 0 {
		if rc := w.c.rawConn(); rc != nil {
			push(rc) // nothing followed the header held by MSG_MORE
		}
	}
	return n, err
}

func (w *httpResponse) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.bw.Flush()
}

// finish completes the response and reports whether the connection can
// carry another one.
func (w *httpResponse) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.bw.Flush(); err != nil {
		return false
	}
	if w.bodyOK && w.clen >= 0 && w.written != w.clen {
		return false // a short body: the client cannot find the next response
	}
	return true
}

// httpDate returns the current Date header value, formatted once a second.
func httpDate() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &cachedDate{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return d.b
}

type cachedDate struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[cachedDate]

// Header syntax checks (RFC 9110), as net/http's server makes them.

// isTokenByte reports whether c may appear in a token (a header name, a
// Connection option).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c != 0 && c < 0x7f && indexByte("!#$%&'*+-.^_`|~", c)
}

func indexByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

// validFieldValue refuses control bytes other than horizontal tab.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHostHeader allows the bytes of a host, an IP literal and a port.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		case indexByte("!$%&'()*+,-.:;=[]_~", c):
		default:
			return false
		}
	}
	return true
}

// containsToken reports whether a comma-separated header value lists
// token, case-insensitively.
func containsToken(vv []string, token string) bool {
	for _, v := range vv {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(part, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// isTemporary reports accept errors worth retrying, such as too many open
// files.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
