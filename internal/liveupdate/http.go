package liveupdate

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// httpHandler serves the repository over HTTP, GET and HEAD only.
type httpHandler struct {
	repo *repo
	alog *accessLog
	log  *slog.Logger
}

const (
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheRevalid   = "no-cache"
)

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w, status: http.StatusOK}
	h.serve(rw, r)
	if h.alog == nil {
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	h.alog.log(logEntry{proto: "http", host: host, request: [3]string{r.Method, r.RequestURI, r.Proto},
		status: rw.status, bytes: rw.bytes, dur: time.Since(start)})
}

// Header values shared by all responses. net/http never modifies a
// value slice (Header.Add appends to a copy, as their capacity is full).
var (
	hvNosniff    = []string{"nosniff"}
	hvImmutable  = []string{cacheImmutable}
	hvRevalidate = []string{cacheRevalid}
	contentTypes sync.Map // extension → []string{type}
)

func contentType(name string) []string {
	ext := path.Ext(name)
	if v, ok := contentTypes.Load(ext); ok {
		return v.([]string)
	}
	ct := mime.TypeByExtension(ext)
	if ct == "" {
		ct = "application/octet-stream"
	}
	v, _ := contentTypes.LoadOrStore(ext, []string{ct})
	return v.([]string)
}

func (h *httpHandler) serve(w *responseWriter, r *http.Request) {
	hdr := w.Header()
	hdr["X-Content-Type-Options"] = hvNosniff
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		hdr.Set("Connection", "close") // do not read whatever body came with it
		httpError(w, http.StatusMethodNotAllowed, "read-only server: only GET and HEAD are allowed")
		return
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// Do not read a body, nor keep a connection that sent one.
		hdr.Set("Connection", "close")
	}
	p := r.URL.Path
	f, fi, err := h.repo.openFill(p)
	if err != nil {
		h.log.Debug("http: not served", "path", p, "remote", r.RemoteAddr, "err", err)
		switch {
		case errors.Is(err, errBadPath):
			httpError(w, http.StatusBadRequest, "malformed path")
		case errors.Is(err, ErrUnavailable):
			hdr.Set("Retry-After", "30")
			httpError(w, http.StatusServiceUnavailable, "unavailable for now, try again later")
		default:
			httpError(w, http.StatusNotFound, "not found")
		}
		return
	}
	defer f.Close()
	if fi.IsDir() {
		if !strings.HasSuffix(p, "/") {
			target := path.Base(p) + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			hdr.Set("Location", "./"+(&url.URL{Path: target}).EscapedPath())
			httpError(w, http.StatusMovedPermanently, "see the directory's URL, with a trailing slash")
			return
		}
		h.serveListing(w, r, p)
		return
	}
	if strings.HasSuffix(p, "/") {
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	base := path.Base(p)
	hdr["Content-Type"] = contentType(base)
	if cacheControl(base) == cacheImmutable {
		hdr["Cache-Control"] = hvImmutable
	} else {
		hdr["Cache-Control"] = hvRevalidate
	}
	hdr["Etag"] = []string{etag(fi)}
	w.file = sizedFile{f: f, size: fi.Size()}
	http.ServeContent(w, r, "", fi.ModTime(), &w.file)
}

// etag is a strong validator made of the modification time and the size.
func etag(fi fs.FileInfo) string {
	b := make([]byte, 0, 32)
	b = append(b, '"')
	b = strconv.AppendInt(b, fi.ModTime().UnixNano(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, fi.Size(), 16)
	b = append(b, '"')
	return string(b)
}

// cacheControl says how long caches may keep a file. Files whose names say
// they never change are immutable: consistent-snapshot targets
// ("<sha256 or sha512 hex>.name") and versioned metadata ("N.role.json").
// Everything else, timestamp.json and root.json included, is revalidated
// on every use.
func cacheControl(base string) string {
	if hashPrefixed(base) || versionPrefixed(base) {
		return cacheImmutable
	}
	return cacheRevalid
}

func hashPrefixed(base string) bool {
	for _, n := range []int{64, 128} { // SHA-256, SHA-512
		if len(base) > n+1 && base[n] == '.' && isLowerHex(base[:n]) {
			return true
		}
	}
	return false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func versionPrefixed(base string) bool {
	i := strings.IndexByte(base, '.')
	if i <= 0 || i == len(base)-1 || base[0] == '0' {
		return false
	}
	for _, c := range base[:i] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// serveListing writes a small HTML index of directory p.
func (h *httpHandler) serveListing(w http.ResponseWriter, r *http.Request, p string) {
	entries, err := h.repo.list(p)
	if err != nil {
		h.log.Debug("http: listing failed", "path", p, "err", err)
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	var b bytes.Buffer
	title := html.EscapeString(p)
	fmt.Fprintf(&b, "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Index of %s</title>\n<h1>Index of %s</h1>\n<pre>\n", title, title)
	if p != "/" {
		b.WriteString("<a href=\"../\">../</a>\n")
	}
	for _, e := range entries {
		name := e.name
		size := strconv.FormatInt(e.info.Size(), 10)
		if e.info.IsDir() {
			name += "/"
			size = "-"
		}
		href := "./" + (&url.URL{Path: name}).EscapedPath()
		text := html.EscapeString(name)
		pad := max(1, 52-len(name))
		fmt.Fprintf(&b, "<a href=\"%s\">%s</a>%s%s %20s\n", html.EscapeString(href), text,
			strings.Repeat(" ", pad), e.info.ModTime().UTC().Format("02-Jan-2006 15:04"), size)
	}
	b.WriteString("</pre>\n")
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", "default-src 'none'")
	hdr.Set("Cache-Control", cacheRevalid)
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

func httpError(w http.ResponseWriter, code int, msg string) {
	hdr := w.Header()
	hdr.Del("Etag")
	hdr.Del("Last-Modified")
	hdr.Del("Cache-Control")
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// responseWriter records the status and the body bytes of a response for
// the access log. It keeps the ReadFrom of the writer under it, which is
// how http.ServeContent's body reaches sendfile.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	file   sizedFile // the file served, allocated with the writer
}

func (w *responseWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
