package cli

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/transport/trickle"
)

// mirrorWorld is a vendor repository served over HTTP and FTP on
// 127.0.0.1 under the name liveupdate.vendor.test, which a fake DNS
// server resolves through one alias.
func mirrorWorld(t *testing.T) (httpURL, ftpURL, resolver, rootFile string) {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("1", map[string][]byte{"main.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: r.PublicDir(),
	},
	})
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
		{[]string{"mirror", "-root", root, "-dir", dir, "-min-rate", "-1", "http://x/"}, 2, "-min-rate -1"},
		{[]string{"mirror", "-root", root, "-dir", dir, "-rate-window", "0s", "http://x/"}, 2, "-rate-window"},
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

// TestMirrorBehind: the address with the newest state serves it at 512
// bytes/s (its metadata at full speed): vigil mirror abandons it as too
// slow, publishes the older state of the other address, and exits with
// status 3 saying it is behind, which version it has, which it saw and
// where, and why it could not get it; the next run, where the other
// address has only what the mirror has, does not say "Up to date" but
// behind again, with status 3.
func TestMirrorBehind(t *testing.T) {
	t.Parallel()
	// No deltas: with one, the mirror would build the newest release
	// from the slow address's small delta instead of giving it up.
	none := 0
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{DeltaReleases: &none})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(version string, size int) {
		blob := make([]byte, size)
		for i := range blob {
			blob[i] = byte(i*7 + i/251)
		}
		if err := r.AddDefinitionsData(version, map[string][]byte{"bulk.ldb": blob}); err != nil {
			t.Fatal(err)
		}
		if err := r.Publish(publish.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	publish("1", 16<<10)
	stale := filepath.Join(t.TempDir(), "stale")
	if err := os.CopyFS(stale, os.DirFS(r.PublicDir())); err != nil {
		t.Fatal(err)
	}
	publish("2", 256<<10)
	_, slowURL, _ := trickle.LiveUpdate(t, r.PublicDir(), "127.0.0.2", "127.0.0.3", trickle.Settings{Rate: 512, Burst: 32 << 10})
	port := slowURL[strings.LastIndexByte(slowURL, ':'):]
	liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root:     stale,
		HTTPAddr: "127.0.0.1" + port,
	},
	})
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	dns.AddCNAME("liveupdate.vendor.test", "pool.vendor.test")
	dns.SetAddrs("pool.vendor.test", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1"))
	dir := filepath.Join(t.TempDir(), "local")
	args := []string{"mirror", "-root", r.RootPath(), "-dir", dir, "-resolver", dns.Addr(), "-progress", "off",
		"-min-rate", "8192", "-rate-window", "1s", "-rate-grace", "500ms", "http://liveupdate.vendor.test" + port}

	code, stdout, stderr := run(t, nil, args...)
	t.Logf("first run:\n%s%s", stdout, stderr)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (behind)", code)
	}
	for _, s := range []string{
		"vigil mirror: behind: the local copy has timestamp version 2, but 127.0.0.2 serves timestamp version 3 (verified), which could not be fetched: session on 127.0.0.2: GET ",
		"too slow",
		"below the minimum of 8.0 KiB/s",
	} {
		if !strings.Contains(stderr, s) {
			t.Errorf("standard error lacks %q", s)
		}
	}
	if !strings.Contains(stdout, "chosen:    127.0.0.1: next best after a failed session") || !strings.Contains(stdout, "BEHIND: no state (root 1) → timestamp 2") {
		t.Errorf("summary does not say it is behind:\n%s", stdout)
	}
	if _, err := mirror.Verify(dir, mirrorReadFile(t, r.RootPath())); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr = run(t, nil, append([]string{"mirror", "-json"}, args[1:]...)...)
	t.Logf("second run:\n%s%s", stdout, stderr)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (behind)", code)
	}
	if strings.Contains(stderr, "Up to date") || !strings.Contains(stderr, "vigil mirror: behind: the local copy has timestamp version 2, but 127.0.0.2 serves timestamp version 3") {
		t.Errorf("second run does not say it is behind:\n%s", stderr)
	}
	var sum mirror.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("-json output %q: %v", stdout, err)
	}
	if sum.UpToDate || sum.Behind == nil || sum.Behind.Have != 2 || sum.Behind.Newest != 3 || sum.Behind.Address != "127.0.0.2" || sum.Error == "" {
		t.Errorf("summary %+v, behind %+v", sum, sum.Behind)
	}
}
