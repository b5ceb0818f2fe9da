package definitions

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/publish"
)

// releaseFixture publishes placeholder releases (the Go API does not
// check them) for this platform and returns their contents by version.
func releaseFixture(t *testing.T, versions ...string) (*fixture, map[string][]byte) {
	t.Helper()
	fx := newFixture(t, publish.Options{})
	content := map[string][]byte{}
	for _, v := range versions {
		b := []byte("release " + v + " " + strings.Repeat("x", 4096))
		p := filepath.Join(t.TempDir(), "vigil")
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fx.repo.AddRelease(v, runtime.GOOS, runtime.GOARCH, p); err != nil {
			t.Fatal(err)
		}
		content[v] = b
	}
	if err := fx.repo.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	return fx, content
}

func TestFetchRelease(t *testing.T) {
	fx, content := releaseFixture(t, "v1.0.0", "v1.1.0", "v1.2.0-rc.1")
	genuine := serve(t, fx.repo.PublicDir())
	// A second copy whose v1.1.0 file has one byte flipped.
	tamperedDir := fx.snapshotPublic()
	flipByte(t, findFile(t, filepath.Join(tamperedDir, "targets", "vigil", "v1.1.0"), ".vigil"))
	tampered := serve(t, tamperedDir)

	a := newAgent(t, fx, tampered.httpURL, genuine.httpURL)
	ctx := context.Background()
	rel, err := a.u.FetchRelease(ctx, "", runtime.GOOS, runtime.GOARCH, "v1.0.0", "")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != "v1.1.0" || rel.Server != genuine.httpURL || len(rel.Skipped) != 1 ||
		!strings.Contains(rel.Skipped[0].Error(), "does not match its signed hash or length") {
		t.Fatalf("newest release: %+v", rel)
	}
	if b, err := os.ReadFile(rel.Path); err != nil || !bytes.Equal(b, content["v1.1.0"]) {
		t.Errorf("fetched file differs from the release (%v)", err)
	}
	if rel.Target == nil || rel.Target.Length != int64(len(content["v1.1.0"])) {
		t.Errorf("signed target %+v", rel.Target)
	}
	os.Remove(rel.Path) // the caller's to remove

	for _, tc := range []struct {
		name, version, running, avoid string
		want                          func(Release) bool
	}{
		{"newest is running", "", "v1.1.0", "", func(r Release) bool { return r.Current && r.Path == "" }},
		{"newer than every release", "", "v2.0.0", "", func(r Release) bool { return r.Current && r.Path == "" }},
		{"newest avoided", "", "v1.0.0", "v1.1.0", func(r Release) bool { return r.Avoided && r.Path == "" && r.Version == "v1.1.0" }},
		{"named version is running", "v1.0.0", "v1.0.0", "", func(r Release) bool { return r.Current && r.Path == "" }},
		{"pre-release by name", "v1.2.0-rc.1", "v1.1.0", "v1.2.0-rc.1", func(r Release) bool { return r.Path != "" && r.Version == "v1.2.0-rc.1" }},
		{"downgrade by name", "v1.0.0", "v1.1.0", "", func(r Release) bool { return r.Path != "" && r.Version == "v1.0.0" }},
	} {
		rel, err := a.withServers(genuine.httpURL).FetchRelease(ctx, tc.version, runtime.GOOS, runtime.GOARCH, tc.running, tc.avoid)
		if err != nil || !tc.want(rel) {
			t.Errorf("%s: %+v, %v", tc.name, rel, err)
		}
		if rel.Path != "" {
			os.Remove(rel.Path)
		}
	}

	// Every server failing: each is named, nothing is left behind.
	_, err = a.withServers(tampered.httpURL).FetchRelease(ctx, "v1.1.0", runtime.GOOS, runtime.GOARCH, "v1.0.0", "")
	if err == nil || !strings.Contains(err.Error(), "failed on every server, keeping version v1.0.0") || !strings.Contains(err.Error(), tampered.httpURL) {
		t.Errorf("tampered only: %v", err)
	}
	_, err = a.withServers(genuine.httpURL).FetchRelease(ctx, "v9.9.9", runtime.GOOS, runtime.GOARCH, "v1.0.0", "")
	if err == nil || !strings.Contains(err.Error(), "lists no release v9.9.9") {
		t.Errorf("missing version: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(a.cfg.StateDir, downloadSubdir, "release-*")); len(left) != 0 {
		t.Errorf("downloads left behind: %v", left)
	}
}
