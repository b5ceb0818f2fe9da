package definitions

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/publish"
)

func TestCheckMetadata(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("2026112501", publish.PublishOptions{})
	root, err := os.ReadFile(fx.repo.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, fx.repo.PublicDir())
	ctx := context.Background()
	for _, u := range []string{s.httpURL, s.ftpURL + "/"} {
		info, err := CheckMetadata(ctx, u, root, nil, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if info.Timestamp != 2 || info.Snapshot != 2 || info.Targets != 2 || info.Root != 1 ||
			info.Definitions != "2026112501" || time.Until(info.Expires) < time.Hour {
			t.Errorf("%s: %+v", u, info)
		}
	}
	// A tampered timestamp is refused with the updater's explanation.
	pub := fx.snapshotPublic()
	flipByte(t, filepath.Join(pub, "metadata", "timestamp.json"))
	bad := serve(t, pub)
	if _, err := CheckMetadata(ctx, bad.httpURL, root, nil, 2*time.Second); err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Errorf("tampered timestamp: %v", err)
	}
	if _, err := CheckMetadata(ctx, "gopher://x/", root, nil, 0); err == nil {
		t.Error("a gopher:// URL was accepted")
	}
}
