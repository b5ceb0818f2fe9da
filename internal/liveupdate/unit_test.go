package liveupdate

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

func TestCleanName(t *testing.T) {
	for p, want := range map[string]string{
		"/":                             ".",
		"/a":                            "a",
		"/a/b.json":                     "a/b.json",
		"/dir/":                         "dir",
		"/sub dir/f with space":         "sub dir/f with space",
		"/ünïcode/名前.json":              "ünïcode/名前.json",
		"/a..b":                         "a..b",
		"/3.root.json":                  "3.root.json",
		"/keysx/a.keys":                 "keysx/a.keys",
		"/a.key.json":                   "a.key.json",
		"/" + strings.Repeat("x", 4000): strings.Repeat("x", 4000),
	} {
		if got, err := cleanName(p); err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"", "a", "//", "/a//b", "/..", "/../x", "/a/../b", "/a/..", "/.", "/./a", "/a/./b",
		"/a\\b", "/..\\x", "/a\x00b", "/a\nb", "/a\rb", "/a\x7fb", "/a\tb", "/" + strings.Repeat("x", 4096)} {
		if _, err := cleanName(p); !errors.Is(err, errBadPath) {
			t.Errorf("cleanName(%q): %v, want errBadPath", p, err)
		}
	}
	for _, p := range []string{"/.hidden", "/.git/config", "/a/.b/c", "/a/.b",
		"/keys", "/keys/", "/keys/root/root.key", "/a/keys/targets.key", "/targets.key", "/a/b.key", "/x.key/y"} {
		if _, err := cleanName(p); !errors.Is(err, errNotFound) {
			t.Errorf("cleanName(%q): %v, want errNotFound", p, err)
		}
	}
}

func TestDriverRefusesWrites(t *testing.T) {
	r := newTestRepo(t)
	rp, err := openRepo(r.root, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.close()
	before := snapshot(t, r.dir)
	d := roDriver{rp}
	for name, err := range map[string]error{
		"DeleteDir":  d.DeleteDir(nil, "/targets"),
		"DeleteFile": d.DeleteFile(nil, "/timestamp.json"),
		"Rename":     d.Rename(nil, "/timestamp.json", "/x"),
		"MakeDir":    d.MakeDir(nil, "/new"),
	} {
		if !errors.Is(err, errReadOnly) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n, err := d.PutFile(nil, "/new", strings.NewReader("x"), -1); n != 0 || !errors.Is(err, errReadOnly) {
		t.Errorf("PutFile: %d, %v", n, err)
	}
	if _, rc, err := d.GetFile(nil, "/../secret.txt", 0); err == nil {
		rc.Close()
		t.Error("GetFile outside the root succeeded")
	}
	n, rc, err := d.GetFile(nil, "/timestamp.json", 3)
	if err != nil || n != int64(len(r.files["timestamp.json"])-3) {
		t.Errorf("GetFile: %d, %v", n, err)
	} else {
		rc.Close()
	}
	if after := snapshot(t, r.dir); after != before {
		t.Error("repository changed")
	}
}

func TestAccessLogFormat(t *testing.T) {
	var buf testenv.Buffer
	a := newAccessLog(&buf)
	a.now = func() time.Time { return time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC) }
	a.log(logEntry{proto: "http", host: "192.0.2.1", request: [3]string{"GET", "/a\"b\\c\x01\n\xff", "HTTP/1.1"}, status: 200, bytes: 42, dur: 1500 * time.Microsecond})
	a.log(logEntry{proto: "ftp", host: "2001:db8::1", user: "anon\"ymous", request: [3]string{"RETR", "/x"}, status: 226, bytes: 7})
	a.log(logEntry{proto: "ftp", request: [3]string{"CONNECT"}, status: 421})
	if buf.String() != "" {
		t.Errorf("written before a flush: %q", buf.String())
	}
	a.close()
	want := `192.0.2.1 - - [02/Jan/2026:15:04:05 +0000] "GET /a\"b\\c\x01\x0a\xff HTTP/1.1" 200 42 http 0.001500
2001:db8::1 - anon\"ymous [02/Jan/2026:15:04:05 +0000] "RETR /x" 226 7 ftp 0.000000
- - - [02/Jan/2026:15:04:05 +0000] "CONNECT" 421 0 ftp 0.000000
`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	var nilLog *accessLog // logging to no access log is a no-op
	nilLog.log(logEntry{})
	nilLog.start()
	nilLog.close()
}

func TestAccessLogFlushes(t *testing.T) {
	var buf testenv.Buffer
	a := newAccessLog(&buf)
	a.start()
	defer a.close()
	a.log(logEntry{proto: "http", request: [3]string{"GET", "/"}, status: 200})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), `"GET /" 200`) {
		if time.Now().After(deadline) {
			t.Fatal("a line was not written within the flush interval")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Enough lines to fill the buffer are written without waiting.
	long := strings.Repeat("x", 1000)
	for range 2 * accessLogFlushSize / 1000 {
		a.log(logEntry{proto: "http", request: [3]string{"GET", long}, status: 200})
	}
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(buf.String(), "\n"); n < accessLogFlushSize/1100 {
		t.Errorf("only %d lines written after filling the buffer", n)
	}
}
