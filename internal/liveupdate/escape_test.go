package liveupdate

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// leakedContent reports whether data holds a file from outside the root
// or a hidden file: the secret marker or /etc/passwd's first line.
func leakedContent(data []byte) bool {
	return bytes.Contains(data, []byte(secretMarker)) || bytes.Contains(data, []byte("root:x:0:0"))
}

// leaked is leakedContent, or a name from outside the root in a
// listing or a reply.
func leaked(data []byte) bool {
	return leakedContent(data) || bytes.Contains(data, []byte("secret.txt"))
}

// rawHTTP sends target verbatim in a request line and returns the status
// and the whole response.
func rawHTTP(t *testing.T, addr, method, target string) (int, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, method+" "+target+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	data, _ := io.ReadAll(c)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil)
	if err != nil {
		return 0, data
	}
	resp.Body.Close()
	return resp.StatusCode, data
}

// escapeTargets are request paths that try to leave the root, reach a
// hidden file, or confuse the path handling, each as a client could send
// it.
var escapeTargets = []string{
	"/../secret.txt",
	"/../../../../../../etc/passwd",
	"/%2e%2e/secret.txt",
	"/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
	"/.%2e/secret.txt",
	"/..%2fsecret.txt",
	"/%2e%2e%2fsecret.txt",
	"/targets/..%2f..%2fsecret.txt",
	"/..%5csecret.txt",
	"/%5c..%5csecret.txt",
	"/targets%5c..%5c..%5csecret.txt",
	"/..\\secret.txt",
	"/%252e%252e/secret.txt",
	"/%c0%ae%c0%ae/secret.txt",
	"/..;/secret.txt",
	"//etc/passwd",
	"/etc/passwd",
	"http://127.0.0.1/../secret.txt",
	"http://127.0.0.1/%2e%2e/secret.txt",
	"/escape-rel",
	"/escape-abs",
	"/escape-dir/secret.txt",
	"/escape-dir/",
	"/escape-dir",
	"/targets/up/secret.txt",
	"/targets/up/",
	"/targets/up/escape-rel",
	"/.hidden",
	"/%2ehidden",
	"/.git/config",
	"/sub%20dir/../../secret.txt",
	"/timestamp.json%00",
	"/%00../secret.txt",
	"/escape-rel%00.json",
	"/" + strings.Repeat("../", 1200) + "etc/passwd",
	"/" + strings.Repeat("a/", 2100) + "x",
	"/" + strings.Repeat("%2e%2e/", 600) + "etc/passwd",
	"/fifo",
}

func TestHTTPPathEscapes(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	before := snapshot(t, r.dir)
	for _, target := range escapeTargets {
		for _, method := range []string{"GET", "HEAD"} {
			code, data := rawHTTP(t, ts.http, method, target)
			if leaked(data) {
				t.Errorf("%s %.80s: response leaks a secret:\n%.300s", method, target, data)
			}
			if code != 400 && code != 404 && code != 414 && code != 431 {
				t.Errorf("%s %.80s: status %d, want 400 or 404", method, target, code)
			}
		}
	}
	if after := snapshot(t, r.dir); after != before {
		t.Error("repository changed")
	}
}

// TestFTPPathEscapes sends the same kind of paths over FTP: RETR, SIZE,
// MDTM, LIST, NLST, MLSD and CWD, plus CWD ".." sequences. goftp resolves
// ".." against the current directory without going above "/", and the
// repository refuses everything else.
func TestFTPPathEscapes(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	before := snapshot(t, r.dir)
	paths := []string{
		"../secret.txt",
		"../../../../../../etc/passwd",
		"/../../etc/passwd",
		"/../secret.txt",
		"/etc/passwd",
		"//etc/passwd",
		"..\\secret.txt",
		"\\..\\secret.txt",
		"targets\\..\\..\\secret.txt",
		"%2e%2e/secret.txt",
		"%2e%2e%2fsecret.txt",
		"~/secret.txt",
		"~root/.profile",
		"escape-rel",
		"escape-abs",
		"escape-dir/secret.txt",
		"targets/up/secret.txt",
		"targets/up/escape-rel",
		".hidden",
		".git/config",
		"/.git/config",
		"sub dir/../../secret.txt",
		"timestamp.json\x00../secret.txt",
		"\x00/etc/passwd",
		strings.Repeat("../", 1000) + "etc/passwd",
		strings.Repeat("a/", 1900) + "x",
		"fifo",
	}
	f := loginFTP(t, ts.ftp)
	for _, p := range paths {
		first, data, final := f.transfer("RETR " + p)
		if leaked(data) || final == 226 {
			t.Errorf("RETR %.60q: %d/%d, %d bytes: %.200q", p, first, final, len(data), data)
		}
		f.closeStalePassive()
		for _, cmd := range []string{"SIZE", "MDTM"} {
			if code, msg := f.cmd(cmd + " " + p); code == 213 || leaked([]byte(msg)) {
				t.Errorf("%s %.60q: %d %s", cmd, p, code, msg)
			}
		}
		if code, msg := f.cmd("MLST " + p); code == 250 || leaked([]byte(msg)) {
			t.Errorf("MLST %.60q: %d %s", p, code, msg)
		}
		for _, cmd := range []string{"LIST", "NLST", "MLSD"} {
			_, data, _ := f.transfer(cmd + " " + p)
			if leaked(data) {
				t.Errorf("%s %.60q: %q", cmd, p, data)
			}
			f.closeStalePassive()
		}
		if code, _ := f.cmd("CWD " + p); code == 250 {
			// A CWD may succeed only where ".." was clamped at "/".
			if pwd := f.expect(257, "PWD"); !strings.HasPrefix(pwd, `"/"`) {
				t.Errorf("CWD %.60q succeeded into %s", p, pwd)
			}
			f.expect(250, "CWD /")
		}
	}

	// CWD ".." repeatedly, then fetch relative and absolute paths.
	for _, seq := range [][]string{
		{"CWD ..", "CWD ..", "CWD ..", "CWD .."},
		{"CWD targets", "CWD ..", "CWD ..", "CDUP", "CDUP"},
		{"CWD /", "CWD ../../.."},
		{"CWD targets", "CWD up"},
		{"CWD escape-dir"},
		{"CWD sub dir", "CWD ../.."},
	} {
		f.expect(250, "CWD /")
		for _, cmd := range seq {
			f.cmd(cmd)
		}
		pwd := f.expect(257, "PWD")
		if !strings.HasPrefix(pwd, `"/"`) && !strings.HasPrefix(pwd, `"/targets"`) && !strings.HasPrefix(pwd, `"/sub dir"`) {
			t.Errorf("after %q: PWD %s", seq, pwd)
		}
		for _, p := range []string{"secret.txt", "../secret.txt", "etc/passwd", "/../../etc/passwd"} {
			_, data, final := f.transfer("RETR " + p)
			if leaked(data) || final == 226 {
				t.Errorf("after %q: RETR %s: %d, %q", seq, p, final, data)
			}
			f.closeStalePassive()
		}
		_, data, _ := f.transfer("LIST")
		if leaked(data) {
			t.Errorf("after %q: LIST shows %q", seq, data)
		}
	}

	// A command line over 4 KiB closes the connection.
	g := loginFTP(t, ts.ftp)
	g.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(g.conn, "RETR "+strings.Repeat("../", 3000)+"etc/passwd\r\n")
	g.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, _ := io.ReadAll(g.conn)
	if !strings.HasPrefix(string(rest), "500 ") || leaked(rest) {
		t.Errorf("over-long line: got %q, want a 500 reply and the connection closed", rest)
	}
	if after := snapshot(t, r.dir); after != before {
		t.Error("repository changed")
	}
}

// closeStalePassive drops a passive listener that a refused command left
// (none should be left; this keeps the next transfer's EPSV independent).
func (f *rawFTP) closeStalePassive() { f.expect(225, "ABOR") }
