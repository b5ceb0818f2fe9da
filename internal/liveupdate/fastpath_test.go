package liveupdate

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHTTPFastPathMatchesSlowPath sends the same requests to a server with
// the fast path and to one without it (every request through
// http.ReadRequest and http.ServeContent): every response must be the
// same, header for header (Date aside) and byte for byte, and the
// connection must be kept or closed alike.
func TestHTTPFastPathMatchesSlowPath(t *testing.T) {
	r := newTestRepo(t)
	if err := os.WriteFile(filepath.Join(r.root, "empty.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	epoch := filepath.Join(r.root, "epoch.txt") // no Last-Modified
	if err := os.WriteFile(epoch, []byte("1970\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(epoch, time.Unix(0, 0), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	fast := startServer(t, r, func(c *Config) { c.FTPAddr = "" })
	slow := startServer(t, r, func(c *Config) { c.FTPAddr = ""; c.noFastPath = true })

	get := func(path string, extra ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: vigil.test\r\n" + strings.Join(extra, "") + "\r\n"
	}
	reqs := []string{
		// Fast path.
		get("/timestamp.json"),
		get("/3.root.json"),
		get("/" + r.hashPkg),
		get("/big.bin"),
		get("/link-inside"),
		get("/targets/link-inside-dir"),
		get("/empty.json"),
		get("/epoch.txt"),
		"HEAD /big.bin HTTP/1.1\r\nHost: vigil.test\r\n\r\n",
		"HEAD /empty.json HTTP/1.1\r\nHost: x\r\n\r\n",
		get("/timestamp.json", "Connection: close\r\n"),
		get("/timestamp.json", "connection: Keep-Alive, CLOSE\r\n"),
		"GET /timestamp.json HTTP/1.1\r\nhost: vigil.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
		"GET /timestamp.json HTTP/1.1\r\nHost:vigil.test:8080\t \r\nX-Empty:\r\n\r\n",
		"GET /timestamp.json HTTP/1.0\r\n\r\n",
		"GET /timestamp.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /root.json HTTP/1.0\r\nHost: x\r\nConnection: foo, Keep-Alive\r\n\r\n",
		"HEAD /3.root.json HTTP/1.0\r\n\r\n",
		// The slow path, reached from the fast one or directly.
		get("/sub%20dir/file%20with%20space.txt"),
		get("/timestamp.json?x=1"),
		get("/timestamp.json", "Range: bytes=0-9\r\n"),
		get("/big.bin", "Range: bytes=0-9,20-29\r\n"),
		get("/timestamp.json", "If-None-Match: *\r\n"),
		get("/timestamp.json", "If-Modified-Since: Mon, 02 Jan 2106 15:04:05 GMT\r\n"),
		get("/timestamp.json", "If-Match: \"nope\"\r\n"),
		get("/timestamp.json", "Content-Length: 0\r\n"),
		get("/timestamp.json", "Expect: 100-continue\r\n"),
		get("/targets"),
		get("/targets/"),
		get("/"),
		get("/timestamp.json/"),
		get("/missing.json"),
		get("/.hidden"),
		get("/.git/config"),
		get("/escape-rel"),
		get("/escape-abs"),
		get("/escape-dir/secret.txt"),
		get("/targets/up/secret.txt"),
		get("/fifo"),
		get("/targets/../timestamp.json"),
		get("//timestamp.json"),
		get("/./timestamp.json"),
		get("/timestamp.json", "Host: second\r\n"),
		"GET /timestamp.json HTTP/1.1\r\nHost:\r\nHost: x\r\n\r\n",
		"GET /timestamp.json HTTP/1.0\r\nHost:\r\nHost: x\r\n\r\n",
		"GET /timestamp.json HTTP/1.0\r\nHost:\r\n\r\n",
		get("/timestamp.json", "Bad Name: y\r\n"),
		get("/timestamp.json", "X: a\x01b\r\n"),
		get("/timestamp.json", " folded\r\n"),
		"GET /timestamp.json HTTP/1.1\r\n\r\n",
		"GET /timestamp.json HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET /timestamp.json HTTP/1.1\nHost: x\n\n",
		"GET /timestamp.json HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
		"get /timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET  /timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /timestamp.json HTTP/1.2\r\nHost: x\r\n\r\n",
		"GET http://x/timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /timestamp.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	}
	for _, raw := range reqs {
		f := rawResponse(t, fast.http, raw)
		s := rawResponse(t, slow.http, raw)
		if f.status != s.status || !bytes.Equal(f.body, s.body) || f.closed != s.closed || !slices.Equal(f.header, s.header) {
			t.Errorf("%q:\nfast path: %s %q closed %v\n%s\nslow path: %s %q closed %v\n%s", raw,
				f.status, f.header, f.closed, abbrev(f.body), s.status, s.header, s.closed, abbrev(s.body))
		}
	}

	// The access log says the same of both.
	lines := func(ts *testServer) []string {
		var out []string
		for l := range strings.SplitSeq(strings.TrimSpace(ts.accessLogText()), "\n") {
			f := strings.Fields(l)
			// HOST - USER [TIME] "REQUEST..." STATUS BYTES PROTO SECONDS
			out = append(out, strings.Join(slices.Concat(f[:3], f[4:len(f)-1]), " "))
		}
		return out
	}
	for range 50 {
		fl, sl := lines(fast), lines(slow)
		if slices.Equal(fl, sl) && len(fl) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fl, sl := lines(fast), lines(slow); !slices.Equal(fl, sl) {
		t.Errorf("access logs differ:\nfast path:\n%s\nslow path:\n%s", strings.Join(fl, "\n"), strings.Join(sl, "\n"))
	}
}

type rawResp struct {
	status string
	header []string // sorted "Name: value" lines, Date left out
	body   []byte
	closed bool // the server closed the connection after the response
}

// rawResponse sends raw on a new connection and reads one response.
func rawResponse(t *testing.T, addr, raw string) rawResp {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	var out rawResp
	out.status = resp.Status
	// A multipart body's boundary is random.
	boundary := ""
	if v, ok := strings.CutPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges; boundary="); ok {
		boundary = v
		resp.Header.Set("Content-Type", "multipart/byteranges; boundary=B")
	}
	for k, vv := range resp.Header {
		if k == "Date" {
			continue
		}
		for _, v := range vv {
			out.header = append(out.header, k+": "+v)
		}
	}
	slices.Sort(out.header)
	out.body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", raw, err)
	}
	if boundary != "" {
		out.body = bytes.ReplaceAll(out.body, []byte(boundary), []byte("B"))
	}
	if resp.ContentLength >= 0 {
		// Is the connection still open? Nothing more is coming either way.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := br.ReadByte()
		out.closed = err == io.EOF
	}
	return out
}

func abbrev(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// TestHTTPFastPathPipelined sends requests for the fast and the slow
// path back to back in one write: each is answered in turn.
func TestHTTPFastPathPipelined(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) { c.FTPAddr = "" })
	var raw strings.Builder
	var want []string
	for i := range 30 {
		switch i % 3 {
		case 0:
			raw.WriteString("GET /timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n")
			want = append(want, string(r.files["timestamp.json"]))
		case 1:
			raw.WriteString("GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-14\r\n\r\n")
			want = append(want, string(r.files["big.bin"][5:15]))
		case 2:
			raw.WriteString("GET /" + r.hashPkg + " HTTP/1.1\r\nHost: x\r\n\r\n")
			want = append(want, string(r.files[r.hashPkg]))
		}
	}
	c, err := net.Dial("tcp", ts.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go io.WriteString(c, raw.String())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, w := range want {
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != w {
			t.Fatalf("response %d: %s, %d bytes (want %d), %v", i, resp.Status, len(body), len(w), err)
		}
	}
}

func TestParseFast(t *testing.T) {
	for _, tt := range []struct {
		raw       string
		ok        bool
		target    string
		head      bool
		keepAlive bool
	}{
		{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", true, "/a", false, true},
		{"HEAD /a/b.json HTTP/1.1\r\nHost: x\r\n\r\nGET /next", true, "/a/b.json", true, true},
		{"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true, "/a", false, false},
		{"GET /a HTTP/1.0\r\n\r\n", true, "/a", false, false},
		{"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, "/a", false, true},
		{"GET /a-b_c~d.e!$&'()*+,;=:@ HTTP/1.1\r\nHost: x\r\n\r\n", true, "/a-b_c~d.e!$&'()*+,;=:@", false, true},
		{"GET /a HTTP/1.1\r\nHost: x\r\n", false, "", false, false},            // incomplete
		{"GET /a HTTP/1.1\r\n\r\n", false, "", false, false},                   // no Host
		{"GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false},    // encoded
		{"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false},      // query
		{"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false},      // fragment
		{"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false}, // non-ASCII
		{"GET * HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false},         // not a path
		{"OPTIONS /a HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false},    // method
		{"GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n", false, "", false, false},
		{"GET /a HTTP/1.1\r\nHost: x\r\nif-none-match: *\r\n\r\n", false, "", false, false},
		{"GET /a HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: chunked\r\n\r\n", false, "", false, false},
		{"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", false, "", false, false},
		{"GET /a HTTP/1.1\r\nHost:\r\nHost: y\r\n\r\n", false, "", false, false},
		{"GET /a HTTP/1.0\r\nHost:\r\n\r\n", true, "/a", false, false},
		{"GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", false, "", false, false},
		{"\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", false, "", false, false},
		{"\r\n\r\n", false, "", false, false},
	} {
		var fr fastRequest
		ok := parseFast([]byte(tt.raw), &fr)
		if ok != tt.ok || ok && (string(fr.target) != tt.target || fr.head != tt.head || fr.keepAlive != tt.keepAlive) {
			t.Errorf("parseFast(%q) = %v %+v", tt.raw, ok, fr)
		}
	}
}

func TestAppendHTTPTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{time.Unix(0, 0), time.Date(2026, 1, 2, 15, 4, 5, 999, time.UTC),
		time.Date(999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.FixedZone("x", -7*3600))}
	for range 10000 {
		times = append(times, time.Unix(rng.Int64N(1<<36)-1<<35, rng.Int64N(1e9)).In(time.FixedZone("y", rng.IntN(50000)-25000)))
	}
	for _, tm := range times {
		if got, want := string(appendHTTPTime(nil, tm)), tm.UTC().Format(http.TimeFormat); got != want {
			t.Fatalf("appendHTTPTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

// TestHTTPFastPathBytes checks a fast-path response byte for byte, which
// also shows that the fast path answered (the slow path writes its header
// fields in map order).
func TestHTTPFastPathBytes(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) { c.FTPAddr = "" })
	fi, err := os.Stat(filepath.Join(r.root, "3.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(r.files["3.root.json"])
	for _, tt := range []struct{ raw, want string }{
		{"GET /3.root.json HTTP/1.1\r\nHost: x\r\n\r\n",
			"HTTP/1.1 200 OK\r\nDate: D\r\nX-Content-Type-Options: nosniff\r\nContent-Type: application/json\r\n" +
				"Cache-Control: public, max-age=31536000, immutable\r\nEtag: " + etag(fi) + "\r\n" +
				"Last-Modified: " + fi.ModTime().UTC().Format(http.TimeFormat) + "\r\nAccept-Ranges: bytes\r\n" +
				"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body},
		{"HEAD /3.root.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			"HTTP/1.1 200 OK\r\nDate: D\r\nConnection: keep-alive\r\nX-Content-Type-Options: nosniff\r\nContent-Type: application/json\r\n" +
				"Cache-Control: public, max-age=31536000, immutable\r\nEtag: " + etag(fi) + "\r\n" +
				"Last-Modified: " + fi.ModTime().UTC().Format(http.TimeFormat) + "\r\nAccept-Ranges: bytes\r\n" +
				"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"},
		{"GET /3.root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			"HTTP/1.1 200 OK\r\nDate: D\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\nContent-Type: application/json\r\n" +
				"Cache-Control: public, max-age=31536000, immutable\r\nEtag: " + etag(fi) + "\r\n" +
				"Last-Modified: " + fi.ModTime().UTC().Format(http.TimeFormat) + "\r\nAccept-Ranges: bytes\r\n" +
				"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body},
	} {
		c, err := net.Dial("tcp", ts.http)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, tt.raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		// The response is want with its 29-byte date in place of "D".
		got := make([]byte, len(tt.want)-1+len("Thu, 01 Jan 1970 00:00:00 GMT"))
		_, err = io.ReadFull(c, got)
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v after %q", tt.raw, err, got)
		}
		date := regexp.MustCompile(`\r\nDate: [^\r]*\r\n`)
		if g := date.ReplaceAllString(string(got), "\r\nDate: D\r\n"); g != tt.want {
			t.Errorf("%q:\ngot  %q\nwant %q", tt.raw, g, tt.want)
		}
	}
}

// FuzzParseFast checks that every request parseFast accepts is one
// http.ReadRequest and checkRequest accept too, with the same method,
// path, version and keep-alive, and without a field the fast path must
// not ignore. Without -fuzz it runs the seeds and random mutations of
// them.
func FuzzParseFast(f *testing.F) {
	seeds := []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /a/b.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /3.root.json HTTP/1.1\r\nHost: vigil:80\r\nUser-Agent: x\r\nAccept: */*\r\nConnection: close\r\n\r\n",
		"GET /t HTTP/1.1\r\nhost: x\r\nRange: bytes=0-1\r\nIf-None-Match: *\r\n\r\n",
		"GET /t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "GETHADP/ .:-,\r\n\t\x00\x7f\x80%?#HostConnectionclosekeep-aliveRangeIf-Content-Length01"
	for range 20000 {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(4) {
			i := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[i] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:i], b[i+1:]...)
			case 2:
				b = slices.Insert(b, i, alphabet[rng.IntN(len(alphabet))])
			}
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr fastRequest
		if !parseFast(b, &fr) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("parseFast accepts %q, ReadRequest: %v", b, err)
		}
		if code := checkRequest(req); code != 0 {
			t.Fatalf("parseFast accepts %q, checkRequest: %d", b, code)
		}
		method := "GET"
		if fr.head {
			method = "HEAD"
		}
		keep := wantsKeepAlive(req) && req.ContentLength == 0 && len(req.TransferEncoding) == 0
		if req.Method != method || req.URL.Path != string(fr.target) || req.RequestURI != string(fr.target) ||
			req.ProtoMinor == 0 != fr.http10 || keep != fr.keepAlive {
			t.Fatalf("%q: parseFast %+v, ReadRequest %s %q %s keep-alive %v", b, fr, req.Method, req.URL.Path, req.Proto, keep)
		}
		for _, k := range []string{"Content-Length", "Transfer-Encoding", "Range", "If-Range", "If-Match",
			"If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "Expect"} {
			if _, ok := req.Header[k]; ok {
				t.Fatalf("%q: parseFast accepts a request with %s", b, k)
			}
		}
		if n, _ := io.Copy(io.Discard, req.Body); n != 0 {
			t.Fatalf("%q: a body", b)
		}
	})
}
