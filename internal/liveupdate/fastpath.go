package liveupdate

// The fast path: the request nearly every client sends, a plain GET or
// HEAD of a file without a range or a condition, is answered straight from
// the bytes already read, without http.ReadRequest and
// http.ServeContent.
//
// With 64 KiB files on two cores shared with the load generator, the Go
// code around the system calls (parsing into an http.Request with its
// header map and URL, answering through ServeContent, formatting
// Last-Modified, about 25 allocations per request) cost as much CPU as the
// gap to nginx. The fast path makes no allocation of its own beyond the
// path string and the file, and no system call beyond those of the slow
// path.
//
// It decides only from the buffered request header, which it does not
// consume until it answers: anything it does not fully understand (a
// range, a condition, a body, a query or a percent-encoded path, an
// unusual header line, a directory, an error) goes to the slow path, which
// reads the same bytes and answers as it always has. A request answered
// by the fast path gets the response the slow path would give, header for
// header (fastpath_test.go checks this).

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"time"
)

// fastRequest is a request the fast path may answer.
type fastRequest struct {
	head      bool   // HEAD, else GET
	http10    bool   // HTTP/1.0, else HTTP/1.1
	target    []byte // the request target: an absolute path, nothing to decode
	keepAlive bool   // the client wants the connection kept
	size      int    // bytes of the request line and header, final CRLF included
}

// parseFast parses the request at the start of buf, the bytes buffered so
// far. It reports false if the header is not complete in buf or if the
// request is not one for the fast path.
func parseFast(buf []byte, fr *fastRequest) bool {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return false
	}
	*fr = fastRequest{size: end + 4}
	hdr := buf[:end+2] // every line with its CRLF

	// Request line: GET or HEAD, an absolute path, HTTP/1.1 or HTTP/1.0.
	eol := bytes.IndexByte(hdr, '\n')
	if eol < 1 || hdr[eol-1] != '\r' {
		return false
	}
	line := hdr[:eol-1]
	hdr = hdr[eol+1:]
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		fr.head = true
		line = line[5:]
	default:
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || line[0] != '/' || sp > maxPathLen {
		return false
	}
	fr.target = line[:sp]
	for _, c := range fr.target {
		if !plainPathByte(c) {
			return false
		}
	}
	switch string(line[sp+1:]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		fr.http10 = true
	default:
		return false
	}

	// Header lines.
	var hostSeen, host, closeTok, keepAliveTok bool
	for len(hdr) > 0 {
		eol := bytes.IndexByte(hdr, '\n')
		if eol < 1 || hdr[eol-1] != '\r' {
			return false // a bare LF
		}
		line := hdr[:eol-1]
		hdr = hdr[eol+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false // no name, no colon, or a continuation line
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenByte(c) {
				return false
			}
		}
		value := bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
		}
		switch {
		case asciiEqualFold(name, "Host"):
			if hostSeen || !validHostHeader(string(value)) {
				return false // two Host fields: the slow path answers 400
			}
			hostSeen, host = true, len(value) > 0
		case asciiEqualFold(name, "Connection"):
			for part := range bytes.SplitSeq(value, []byte(",")) {
				part = bytes.Trim(part, " \t")
				closeTok = closeTok || asciiEqualFold(part, "close")
				keepAliveTok = keepAliveTok || asciiEqualFold(part, "keep-alive")
			}
		case fastRefused(name):
			return false
		}
	}
	if !host && !fr.http10 {
		return false // HTTP/1.1 requires Host: the slow path answers 400
	}
	if fr.http10 {
		fr.keepAlive = keepAliveTok
	} else {
		fr.keepAlive = !closeTok
	}
	return true
}

// fastRefused lists the request header fields that change the answer or
// how the request is read: they send the request to the slow path.
func fastRefused(name []byte) bool {
	for _, f := range [...]string{"Content-Length", "Transfer-Encoding", "Range", "If-Range", "If-Match",
		"If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "Expect", "Trailer", "Upgrade"} {
		if asciiEqualFold(name, f) {
			return true
		}
	}
	return false
}

// plainPathByte reports whether c may appear in a request target that
// needs no decoding: RFC 3986 unreserved and sub-delims, ':', '@' and '/'.
// '%', '?' and '#' are not among them.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return indexByte("-._~!$&'()*+,;=:@/", c)
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// fastConn is what the fast path keeps per connection, so that a request
// allocates nothing for it.
type fastConn struct {
	sf  sizedFile
	lr  io.LimitedReader
	buf [64]byte // formatting
}

// serveFast answers the request buffered in br if it is one for the fast
// path. handled reports whether it did (the request is then consumed);
// keep whether the connection can carry another request.
func (s *httpServer) serveFast(c *conn, br *bufio.Reader, bw *bufio.Writer, fc *fastConn, host string) (handled, keep bool) {
	buf, _ := br.Peek(br.Buffered())
	var fr fastRequest
	if !parseFast(buf, &fr) {
		return false, false
	}
	start := time.Now()
	p := string(fr.target)
	r := s.handler.repo
	if r.fill != nil && mayChange(p) {
		return false, false // the slow path consults Config.Fill first
	}
	f, fi, err := r.open(p)
	if err != nil {
		return false, false // the slow path answers 400 or 404 (or fills), and logs why
	}
	defer f.Close()
	if fi.IsDir() || p[len(p)-1] == '/' {
		return false, false // a listing, a redirect, or a 404
	}
	if r.hit != nil {
		r.hit(p[1:])
	}
	br.Discard(fr.size)
	size := fi.Size()
	base := p[lastSlash(p)+1:]

	// The header ServeContent and httpResponse.WriteHeader would write.
	bw.WriteString("HTTP/1.1 200 OK\r\nDate: ")
	bw.Write(httpDate())
	switch {
	case !fr.keepAlive:
		bw.WriteString("\r\nConnection: close")
	case fr.http10:
		bw.WriteString("\r\nConnection: keep-alive")
	}
	bw.WriteString("\r\nX-Content-Type-Options: nosniff\r\nContent-Type: ")
	writeHeaderValue(bw, contentType(base)[0])
	bw.WriteString("\r\nCache-Control: ")
	bw.WriteString(cacheControl(base))
	bw.WriteString("\r\nEtag: ")
	bw.Write(appendETag(fc.buf[:0], fi.ModTime(), size))
	if mt := fi.ModTime(); !isZeroTime(mt) {
		bw.WriteString("\r\nLast-Modified: ")
		bw.Write(appendHTTPTime(fc.buf[:0], mt))
	}
	bw.WriteString("\r\nAccept-Ranges: bytes\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(fc.buf[:0], size, 10))
	bw.WriteString("\r\n\r\n")

	var written int64
	ok := true
	if fr.head || size == 0 {
		ok = bw.Flush() == nil
	} else {
		// As httpResponse.ReadFrom: the header is held by MSG_MORE and
		// leaves with the file's first bytes.
		c.more = true
		err := bw.Flush()
		c.more = false
		if err == nil {
			fc.sf = sizedFile{f: f, size: size}
			fc.lr = io.LimitedReader{R: &fc.sf, N: size}
			written, err = c.ReadFrom(&fc.lr)
			fc.sf, fc.lr = sizedFile{}, io.LimitedReader{}
		}
		ok = err == nil && written == size
	}
	method := "GET"
	if fr.head {
		method = "HEAD"
	}
	proto := "HTTP/1.1"
	if fr.http10 {
		proto = "HTTP/1.0"
	}
	s.alog.log(logEntry{proto: "http", host: host, request: [3]string{method, p, proto},
		status: 200, bytes: written, dur: time.Since(start)})
	return true, ok && fr.keepAlive
}

func lastSlash(p string) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return i
		}
	}
	return -1
}

var unixEpoch = time.Unix(0, 0)

// isZeroTime is net/http's test for a modification time not worth
// sending.
func isZeroTime(t time.Time) bool { return t.IsZero() || t.Equal(unixEpoch) }

// appendETag appends the ETag of a file (see etag).
func appendETag(b []byte, mtime time.Time, size int64) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, mtime.UnixNano(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, size, 16)
	return append(b, '"')
}

// appendHTTPTime appends t as http.TimeFormat formats it in UTC
// ("Mon, 02 Jan 2006 15:04:05 GMT"), without time.Format's layout
// interpretation.
func appendHTTPTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	yy, mm, dd := t.Date()
	if yy < 1000 || yy > 9999 {
		return t.AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 GMT")
	}
	hh, mi, ss := t.Clock()
	const days = "SunMonTueWedThuFriSat"
	const months = "JanFebMarAprMayJunJulAugSepOctNovDec"
	wd := int(t.Weekday()) * 3
	mo := (int(mm) - 1) * 3
	two := func(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }
	b = append(b, days[wd:wd+3]...)
	b = append(b, ", "...)
	b = two(b, dd)
	b = append(b, ' ')
	b = append(b, months[mo:mo+3]...)
	b = append(b, ' ')
	b = two(b, yy/100)
	b = two(b, yy%100)
	b = append(b, ' ')
	b = two(b, hh)
	b = append(b, ':')
	b = two(b, mi)
	b = append(b, ':')
	b = two(b, ss)
	return append(b, " GMT"...)
}
