package mirror

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestProbeAddressAndCheckRelease checks the upstream address by address
// without a local repository, as `vigil doctor` does: over HTTP and FTP,
// one address serving the repository and one with nothing listening.
func TestProbeAddressAndCheckRelease(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the scratch directories go there
	v := newVendor(t)
	v.publish("1", 1<<10)
	w := newWorld(t, v.live(), "")
	root := v.rootJSON()
	ctx := context.Background()
	for _, proto := range []string{"http", "ftp"} {
		cfg := w.config(proto, root, "", &testenv.Buffer{})
		p, err := ProbeAddress(ctx, cfg, testAddrs[0])
		if err != nil || p.TimestampVersion != 2 || p.RootVersion != 1 || p.Address != "127.0.0.2" {
			t.Errorf("%s: probe of the serving address: %+v, %v", proto, p, err)
		}
		p, err = ProbeAddress(ctx, cfg, testAddrs[1])
		if err == nil || p.Error == "" || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: probe of the silent address: %+v, %v", proto, p, err)
		}
		c, err := CheckRelease(ctx, cfg, testAddrs[0])
		if err != nil || c.Latest != "" || c.Available || c.Running != "v1.0.0" {
			t.Errorf("%s: release check without a release: %+v, %v", proto, c, err)
		}
		if _, err := CheckRelease(ctx, cfg, testAddrs[1]); err == nil {
			t.Errorf("%s: release check on the silent address succeeded", proto)
		}
	}

	bin := filepath.Join(t.TempDir(), "vigil")
	if err := os.WriteFile(bin, []byte("not really an executable"), 0o755); err != nil {
		t.Fatal(err)
	}
	v.release("v1.2.0", bin)
	cfg := w.config("http", root, "", &testenv.Buffer{})
	c, err := CheckRelease(ctx, cfg, testAddrs[0])
	if err != nil || c.Latest != "v1.2.0" || !c.Available || c.Target == "" || c.Updated {
		t.Errorf("release check: %+v, %v", c, err)
	}
	// Nothing was left in the temporary directory.
	if m, _ := filepath.Glob(filepath.Join(tmp, tmpPrefix+"check-*")); len(m) != 0 {
		t.Errorf("left behind: %v", m)
	}
}
