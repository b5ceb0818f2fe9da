package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLiveUpdateUsage(t *testing.T) {
	dir := t.TempDir()
	// A repository directory, as vigil repo init lays it out: its keys/
	// must never be served; the error names its public/ folder.
	repoDir := t.TempDir()
	os.MkdirAll(filepath.Join(repoDir, "keys", "root"), 0o700)
	os.MkdirAll(filepath.Join(repoDir, "public", "metadata"), 0o755)
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"liveupdate"}, 2, "-root is required"},
		{[]string{"liveupdate", "-root", dir, "-http", "off", "-ftp", "off"}, 2, "nothing to serve"},
		{[]string{"liveupdate", "-root", dir, "-passive-ports", "5-3"}, 2, "-passive-ports"},
		{[]string{"liveupdate", "-root", dir, "-passive-ports", "0-10"}, 2, "-passive-ports"},
		{[]string{"liveupdate", "-root", dir, "-passive-ports", "a-b"}, 2, "-passive-ports"},
		{[]string{"liveupdate", "-root", dir, "-max-conns", "0"}, 2, "-max-conns"},
		{[]string{"liveupdate", "-root", dir, "-idle-timeout", "0s"}, 2, "-idle-timeout"},
		{[]string{"liveupdate", "-root", dir, "stray"}, 2, "unexpected arguments"},
		{[]string{"liveupdate", "-root", filepath.Join(dir, "none"), "-http", "127.0.0.1:0", "-ftp", "off"}, 1, "repository root"},
		{[]string{"liveupdate", "-root", dir, "-http", "127.0.0.1:0", "-ftp", "off", "-public-host", "::1"}, 1, "IPv4"},
		{[]string{"liveupdate", "-root", dir, "-log-level", "loud"}, 2, "-log-level"},
		{[]string{"liveupdate", "-root", repoDir, "-http", "127.0.0.1:0", "-ftp", "off"}, 1, "serve the repository's public/ folder instead: -root " + filepath.Join(repoDir, "public")},
	} {
		code, _, stderr := run(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d containing %q", tt.args, code, stderr, tt.code, tt.msg)
		}
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestLiveUpdateServes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "timestamp.json"), []byte(`{"v":1}`), 0o644)
	logFile := filepath.Join(t.TempDir(), "access.log")
	httpAddr, ftpAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, &Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return noRuntime[k] }},
			[]string{"liveupdate", "-root", dir, "-http", httpAddr, "-ftp", ftpAddr, "-passive-ports", "46000-46099", "-access-log", logFile})
	}()
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + httpAddr + "/timestamp.json"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("server never answered: %v\n%s", err, errb.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"v":1}` {
		t.Errorf("body %q", body)
	}
	c, err := net.Dial("tcp", ftpAddr)
	if err != nil {
		t.Fatal(err)
	}
	greeting := make([]byte, 3)
	io.ReadFull(c, greeting)
	c.Close()
	if string(greeting) != "220" {
		t.Errorf("FTP greeting %q", greeting)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("vigil liveupdate did not stop")
	}
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), `"GET /timestamp.json HTTP/1.1" 200 7 http`) {
		t.Errorf("access log:\n%s", log)
	}
}
