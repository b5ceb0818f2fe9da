package cli

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// mirrorWorld is a vendor repository served over HTTP and FTP on
// 127.0.0.1 under the name liveupdate.vendor.test, which a fake DNS
// server resolves through one alias.
func mirrorWorld(t *testing.T) (httpURL, ftpURL, resolver, rootFile string) {
	t.Helper()
	r, err := repo.Init(filepath.Join(t.TempDir(), "repo"), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("1", map[string][]byte{"main.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(repo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := liveupdatetest.Start(t, liveupdate.Config{Root: r.PublicDir()})
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	dns.AddCNAME("liveupdate.vendor.test", "pool.vendor.test")
	dns.SetAddrs("pool.vendor.test", netip.MustParseAddr("127.0.0.1"))
	port := func(a string) string { return a[strings.LastIndexByte(a, ':'):] }
	return "http://liveupdate.vendor.test" + port(srv.HTTPAddr().String()),
		"ftp://liveupdate.vendor.test" + port(srv.FTPAddr().String()),
		dns.Addr(), r.RootPath()
}

func TestMirrorCommand(t *testing.T) {
	httpURL, ftpURL, resolver, rootFile := mirrorWorld(t)
	dir := filepath.Join(t.TempDir(), "local")

	code, stdout, stderr := run(t, nil, "mirror", "-root", rootFile, "-dir", dir, "-resolver", resolver, httpURL)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, s := range []string{
		"liveupdate.vendor.test is an alias for pool.vendor.test.",
		"pool.vendor.test has address 127.0.0.1",
		"fetched definitions/1.tar",
		"chosen:    127.0.0.1: highest verified timestamp version (2)",
		"fetched:   1 targets",
	} {
		if !strings.Contains(stdout, s) {
			t.Errorf("output lacks %q:\n%s", s, stdout)
		}
	}
	t.Logf("vigil mirror output:\n%s", stdout)
	if _, err := mirror.Verify(dir, mirrorReadFile(t, rootFile)); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr = run(t, nil, "mirror", "-json", "-progress", "off", "-root", rootFile, "-dir", dir, "-resolver", resolver, "-upstream", ftpURL)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum mirror.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("-json output %q: %v", stdout, err)
	}
	if !sum.UpToDate || sum.Chosen != "127.0.0.1" || sum.After.Timestamp != 2 || sum.Resolution == nil || len(sum.Resolution.Aliases) != 1 {
		t.Errorf("summary %+v", sum)
	}
	if !strings.Contains(stderr, "Up to date") {
		t.Errorf("with -json the report goes to standard error: %q", stderr)
	}
}

func TestMirrorUsageErrors(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "1.root.json")
	os.WriteFile(root, []byte("{}"), 0o644)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"mirror", "-root", root, "-dir", dir}, 2, "give the upstream URL"},
		{[]string{"mirror", "-dir", dir, "http://x/"}, 2, "-root is required"},
		{[]string{"mirror", "-root", root, "http://x/"}, 2, "-dir is required"},
		{[]string{"mirror", "-root", root, "-dir", dir, "-progress", "fancy", "http://x/"}, 2, "-progress"},
		{[]string{"mirror", "-root", root, "-dir", dir, "-parallel", "0", "http://x/"}, 2, "-parallel 0"},
		{[]string{"mirror", "-root", root, "-dir", dir, "-every", "10ms", "http://x/"}, 2, "at least 1s"},
		{[]string{"mirror", "-root", root, "-dir", dir, "http://x/", "extra"}, 2, "give one upstream URL"},
		{[]string{"mirror", "-root", root, "-dir", dir, "gopher://x/"}, 1, "want an ftp://, http:// or https:// URL"},
		{[]string{"mirror", "-root", root, "-dir", dir, "http://x/"}, 1, "pinned root: not valid root metadata"},
		{[]string{"mirror", "-root", filepath.Join(dir, "none"), "-dir", dir, "http://x/"}, 1, "-root:"},
	}
	for _, tt := range tests {
		code, _, stderr := run(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tt.args, code, stderr, tt.code, tt.msg)
		}
	}
}

func mirrorReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
