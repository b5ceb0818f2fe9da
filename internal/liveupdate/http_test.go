package liveupdate

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func httpGet(t *testing.T, ts *testServer, method, p string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+ts.http+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func escapePath(name string) string { return (&url.URL{Path: "/" + name}).EscapedPath() }

func TestHTTPServesFilesByteIdentical(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	for name, want := range r.files {
		resp, body := httpGet(t, ts, "GET", escapePath(name), nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Errorf("GET %s: %d, %d bytes; want 200, %d bytes", name, resp.StatusCode, len(body), len(want))
		}
		if got := resp.Header.Get("Content-Length"); got != fmt.Sprint(len(want)) {
			t.Errorf("GET %s: Content-Length %s", name, got)
		}
		if resp.Header.Get("Etag") == "" || resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
			t.Errorf("GET %s: validators missing: %v", name, resp.Header)
		}
		head, hbody := httpGet(t, ts, "HEAD", escapePath(name), nil)
		if head.StatusCode != 200 || len(hbody) != 0 || head.Header.Get("Content-Length") != fmt.Sprint(len(want)) ||
			head.Header.Get("Etag") != resp.Header.Get("Etag") {
			t.Errorf("HEAD %s: %d %v", name, head.StatusCode, head.Header)
		}
	}
	resp, _ := httpGet(t, ts, "GET", "/timestamp.json", nil)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("timestamp.json Content-Type %q", ct)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
}

func TestHTTPRanges(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	big := r.files["big.bin"]
	size := len(big)
	tests := []struct {
		rng        string
		status     int
		start, end int // expected slice, end exclusive
	}{
		{"bytes=0-0", 206, 0, 1},
		{"bytes=100-199", 206, 100, 200},
		{"bytes=1000000-", 206, 1000000, size},
		{"bytes=-500", 206, size - 500, size},
		{fmt.Sprintf("bytes=%d-%d", size-10, size+1000), 206, size - 10, size},
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
		{"bytes=abc", 416, 0, 0},
	}
	for _, tt := range tests {
		resp, body := httpGet(t, ts, "GET", "/big.bin", map[string]string{"Range": tt.rng})
		if resp.StatusCode != tt.status {
			t.Errorf("Range %s: status %d, want %d", tt.rng, resp.StatusCode, tt.status)
			continue
		}
		if tt.status == 206 {
			if !bytes.Equal(body, big[tt.start:tt.end]) {
				t.Errorf("Range %s: got %d bytes, not bytes %d-%d", tt.rng, len(body), tt.start, tt.end)
			}
			want := fmt.Sprintf("bytes %d-%d/%d", tt.start, tt.end-1, size)
			if cr := resp.Header.Get("Content-Range"); cr != want {
				t.Errorf("Range %s: Content-Range %q, want %q", tt.rng, cr, want)
			}
		}
	}

	// Two ranges: multipart/byteranges.
	resp, body := httpGet(t, ts, "GET", "/big.bin", map[string]string{"Range": "bytes=0-9,2000-2099"})
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 206 || mt != "multipart/byteranges" {
		t.Fatalf("two ranges: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for _, want := range [][]byte{big[0:10], big[2000:2100]} {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(part)
		if !bytes.Equal(got, want) {
			t.Errorf("part %s: wrong bytes", part.Header.Get("Content-Range"))
		}
	}

	// If-Range: the current ETag gets the range, a stale one the whole file.
	resp, _ = httpGet(t, ts, "HEAD", "/big.bin", nil)
	etag := resp.Header.Get("Etag")
	resp, body = httpGet(t, ts, "GET", "/big.bin", map[string]string{"Range": "bytes=5-9", "If-Range": etag})
	if resp.StatusCode != 206 || !bytes.Equal(body, big[5:10]) {
		t.Errorf("If-Range current: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = httpGet(t, ts, "GET", "/big.bin", map[string]string{"Range": "bytes=5-9", "If-Range": `"stale"`})
	if resp.StatusCode != 200 || !bytes.Equal(body, big) {
		t.Errorf("If-Range stale: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestHTTPConditional(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	resp, _ := httpGet(t, ts, "GET", "/timestamp.json", nil)
	etag, lm := resp.Header.Get("Etag"), resp.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/`) {
		t.Fatalf("ETag %q is not a strong validator", etag)
	}
	for _, h := range []map[string]string{
		{"If-None-Match": etag},
		{"If-None-Match": `"other", ` + etag},
		{"If-None-Match": "*"},
		{"If-Modified-Since": lm},
		{"If-Modified-Since": time.Now().UTC().Add(time.Hour).Format(http.TimeFormat)},
	} {
		resp, body := httpGet(t, ts, "GET", "/timestamp.json", h)
		if resp.StatusCode != 304 || len(body) != 0 {
			t.Errorf("%v: %d with %d bytes, want 304", h, resp.StatusCode, len(body))
		}
		if resp.StatusCode == 304 && (resp.Header.Get("Etag") != etag || resp.Header.Get("Cache-Control") != "no-cache") {
			t.Errorf("%v: 304 without ETag or Cache-Control: %v", h, resp.Header)
		}
	}
	for _, h := range []map[string]string{
		{"If-None-Match": `"other"`},
		{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"},
	} {
		resp, body := httpGet(t, ts, "GET", "/timestamp.json", h)
		if resp.StatusCode != 200 || !bytes.Equal(body, r.files["timestamp.json"]) {
			t.Errorf("%v: %d, want 200 with the file", h, resp.StatusCode)
		}
	}
	resp, _ = httpGet(t, ts, "GET", "/timestamp.json", map[string]string{"If-Match": `"other"`})
	if resp.StatusCode != 412 {
		t.Errorf("If-Match mismatch: %d, want 412", resp.StatusCode)
	}
}

func TestHTTPCacheControl(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	for p, want := range map[string]string{
		"/timestamp.json": "no-cache",
		"/root.json":      "no-cache",
		"/3.root.json":    "public, max-age=31536000, immutable",
		"/" + r.hashPkg:   "public, max-age=31536000, immutable",
		"/big.bin":        "no-cache",
		"/":               "no-cache",
	} {
		resp, _ := httpGet(t, ts, "HEAD", p, nil)
		if got := resp.Header.Get("Cache-Control"); got != want {
			t.Errorf("%s: Cache-Control %q, want %q", p, got, want)
		}
	}
	for name, want := range map[string]bool{
		"12.snapshot.json": true, "1.targets.json": true, "0.root.json": false, "1.": false, "v1.json": false,
		strings.Repeat("a", 64) + ".x": true, strings.Repeat("A", 64) + ".x": false, strings.Repeat("a", 63) + ".x": false,
		strings.Repeat("0", 128) + ".pkg": true, "timestamp.json": false,
	} {
		if got := cacheControl(name) == cacheImmutable; got != want {
			t.Errorf("cacheControl(%q) immutable = %v, want %v", name, got, want)
		}
	}
}

func TestHTTPRefusesWrites(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	before := snapshot(t, r.dir)
	for _, m := range []string{"PUT", "POST", "DELETE", "PATCH", "MKCOL", "MOVE", "COPY", "PROPFIND", "OPTIONS", "TRACE", "CONNECT"} {
		req, _ := http.NewRequest(m, "http://"+ts.http+"/timestamp.json", strings.NewReader("overwritten"))
		if m == "CONNECT" {
			req.URL.Path = ""
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q; want 405 and GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if after := snapshot(t, r.dir); after != before {
		t.Errorf("repository changed:\nbefore\n%s\nafter\n%s", before, after)
	}
}

func TestHTTPDirectoriesAndHiddenFiles(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	resp, body := httpGet(t, ts, "GET", "/", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, want := range []string{`href="./timestamp.json"`, `href="./targets/"`, `href="./sub%20dir/"`, `href="./link-inside"`} {
		if !strings.Contains(page, want) {
			t.Errorf("listing lacks %s:\n%s", want, page)
		}
	}
	for _, hidden := range []string{".hidden", ".git", "escape-rel", "escape-abs", "escape-dir", "fifo"} {
		if strings.Contains(page, hidden) {
			t.Errorf("listing shows %s:\n%s", hidden, page)
		}
	}
	resp, _ = httpGet(t, ts, "GET", "/targets", nil)
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "./targets/" {
		t.Errorf("GET /targets: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = httpGet(t, ts, "GET", "/targets/", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "defs.tar") || strings.Contains(string(body), `"./up/"`) {
		t.Errorf("GET /targets/: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = httpGet(t, ts, "GET", "/timestamp.json/", nil)
	if resp.StatusCode != 404 {
		t.Errorf("file with a trailing slash: %d, want 404", resp.StatusCode)
	}
	// Symlinks inside the root are followed.
	resp, body = httpGet(t, ts, "GET", "/targets/link-inside-dir", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, r.files[r.hashPkg]) {
		t.Errorf("symlink inside the root: %d", resp.StatusCode)
	}
	// A FIFO is neither served nor allowed to block the server.
	start := time.Now()
	resp, _ = httpGet(t, ts, "GET", "/fifo", nil)
	if resp.StatusCode != 404 || time.Since(start) > 5*time.Second {
		t.Errorf("fifo: %d after %v", resp.StatusCode, time.Since(start))
	}
}

func TestHTTPAccessLog(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	httpGet(t, ts, "GET", "/3.root.json", nil)
	httpGet(t, ts, "GET", "/nope%22%0a", nil)
	ts.stop()
	log := ts.accessLogText()
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("access log has %d lines, want 2:\n%s", len(lines), log)
	}
	want0 := fmt.Sprintf(`"GET /3.root.json HTTP/1.1" 200 %d http `, len(r.files["3.root.json"]))
	if !strings.HasPrefix(lines[0], "127.0.0.1 - - [") || !strings.Contains(lines[0], want0) {
		t.Errorf("line %q lacks %q", lines[0], want0)
	}
	if !strings.Contains(lines[1], `"GET /nope%22%0a HTTP/1.1" 400 `) {
		t.Errorf("line %q", lines[1])
	}
}

// exchange writes raw bytes on one connection and returns everything read
// until the server closes it or nothing comes for a second.
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

func TestHTTPProtocol(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	ts2 := r.files["timestamp.json"]
	for _, tt := range []struct {
		name, raw string
		want      []string // in order
		not       []string
	}{
		{"pipelined requests on one connection",
			"GET /timestamp.json HTTP/1.1\r\nHost: x\r\n\r\nHEAD /root.json HTTP/1.1\r\nHost: x\r\n\r\nGET /3.root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", string(ts2), "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "Connection: close", `"version":3`}, nil},
		{"keep-alive after a 304",
			"GET /timestamp.json HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\nGET /timestamp.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 304 Not Modified", "HTTP/1.1 200 OK", string(ts2)}, nil},
		{"HTTP/1.0 closes", "GET /timestamp.json HTTP/1.0\r\n\r\nGET /root.json HTTP/1.0\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "Connection: close", string(ts2)}, []string{`"_type":"root"`}},
		{"HTTP/1.0 keep-alive", "GET /timestamp.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /root.json HTTP/1.0\r\n\r\n",
			[]string{"Connection: keep-alive", string(ts2), "Connection: close", `"_type":"root"`}, nil},
		{"HTTP/1.1 without Host", "GET /timestamp.json HTTP/1.1\r\n\r\n", []string{"HTTP/1.1 400 "}, []string{string(ts2)}},
		{"bad Host", "GET /timestamp.json HTTP/1.1\r\nHost: a b\r\n\r\n", []string{"HTTP/1.1 400 "}, []string{string(ts2)}},
		{"two Hosts", "GET /timestamp.json HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []string{"HTTP/1.1 400 "}, []string{string(ts2)}},
		{"HTTP/2.0 request line", "GET /timestamp.json HTTP/2.0\r\nHost: x\r\n\r\n", []string{"505"}, []string{string(ts2)}},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", []string{"HTTP/1.1 400 "}, nil},
		{"bad header name", "GET /timestamp.json HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", []string{"HTTP/1.1 400 "}, []string{string(ts2)}},
		{"control byte in a header", "GET /timestamp.json HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", []string{"HTTP/1.1 400 "}, []string{string(ts2)}},
		{"header too large", "GET /timestamp.json HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 20<<10) + "\r\n\r\n",
			[]string{"HTTP/1.1 431 "}, []string{string(ts2)}},
		{"a body closes the connection unread",
			"GET /timestamp.json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /root.json HTTP/1.1\r\nHost: x\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "Connection: close", string(ts2)}, []string{`"_type":"root"`}},
		{"chunked body", "POST /timestamp.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			[]string{"HTTP/1.1 405 ", "Connection: close"}, nil},
		{"412 without a body closes", "GET /timestamp.json HTTP/1.1\r\nHost: x\r\nIf-Match: \"nope\"\r\n\r\nGET /root.json HTTP/1.1\r\nHost: x\r\n\r\n",
			[]string{"HTTP/1.1 412 ", "Connection: close"}, []string{`"_type":"root"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(t, ts.http, tt.raw)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("response lacks %q (in order):\n%.2000s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("response contains %q:\n%.2000s", n, got)
				}
			}
		})
	}
}
