package mirror

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestDiskFull: a download that fills the local file system (a 3 MiB
// tmpfs, which takes direct I/O) ends the sync with the disk's error, at
// once, with the write-behind writer's error reported and nothing
// published — direct and buffered.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, testenv.RequireNetns, "mounting a small tmpfs needs root")
	}
	v := newVendor(t)
	v.publish("1", 6<<20)
	w := newWorld(t, v.live())
	root := v.rootJSON()
	for _, mode := range []string{"direct", "buffered"} {
		t.Run(mode, func(t *testing.T) {
			defer func(d bool) { directIO = d }(directIO)
			directIO = mode == "direct"
			mnt := t.TempDir()
			if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=3m"); err != nil {
				t.Fatalf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
			dir := filepath.Join(mnt, "mirror")
			m, err := New(w.config("http", root, dir, &testenv.Buffer{}))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err = m.Sync(ctx)
			if err == nil || !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
				t.Fatalf("sync into a full file system: %v, want %q", err, syscall.ENOSPC.Error())
			}
			if ctx.Err() != nil {
				t.Fatal("the sync ended only at the test's deadline")
			}
			if _, err := os.Stat(filepath.Join(dir, metaDir, "timestamp.json")); err == nil {
				t.Error("a timestamp was published")
			}
		})
	}
}
