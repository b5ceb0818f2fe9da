package liveupdatetest

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

func TestStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &testenv.Buffer{}
	s := Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: dir,
	},
		AccessLog: log,
	})
	if !strings.HasPrefix(s.HTTPURL, "http://127.0.0.1:") || !strings.HasPrefix(s.FTPURL, "ftp://127.0.0.1:") {
		t.Fatalf("URLs %q %q", s.HTTPURL, s.FTPURL)
	}
	resp, err := http.Get(s.HTTPURL + "/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello\n" {
		t.Fatalf("body %q", body)
	}
	s.Close()
	s.Close() // a second Close is harmless
	if !strings.Contains(log.String(), "/a.txt") {
		t.Errorf("access log %q lacks the request", log.String())
	}
	if _, err := http.Get(s.HTTPURL + "/a.txt"); err == nil {
		t.Fatal("the server still answers after Close")
	}
}
