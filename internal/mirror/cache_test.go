package mirror

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestSyncMetadataThenFetchTarget: SyncMetadata publishes a verified
// state's metadata and no target; LocalStates lists it (and Keep previous
// ones); FetchTarget brings each target in, verified, after which the
// directory verifies as a complete repository. A target changed upstream
// after signing is refused (ErrRefused) and nothing of it is kept.
func TestSyncMetadataThenFetchTarget(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 64<<10)
			w := newWorld(t, v.live(), v.live(), v.live())
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "cache")
			out := &testenv.Buffer{}
			cfg := w.config(proto, root, dir, out)
			cfg.Keep = 1
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			fetchAll := func() *LocalState {
				t.Helper()
				if _, err := m.SyncMetadata(ctx); err != nil {
					t.Fatalf("SyncMetadata: %v\n%s", err, out)
				}
				states, err := m.LocalStates()
				if err != nil || len(states) == 0 || !states[0].Current {
					t.Fatalf("LocalStates: %v, %d states", err, len(states))
				}
				return states[0]
			}
			cur := fetchAll()
			if len(cur.Files) != 1 {
				t.Fatalf("the state has %d targets, want 1", len(cur.Files))
			}
			for served := range cur.Files {
				if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(served))); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("SyncMetadata placed target %s: %v", served, err)
				}
			}
			if _, err := Verify(dir, root); err == nil {
				t.Fatal("the directory verifies as complete without its targets")
			}
			for _, tg := range cur.Files {
				res, err := m.FetchTarget(ctx, tg)
				if err != nil || res.Present || res.Bytes != tg.File.Length {
					t.Fatalf("FetchTarget %s: %+v, %v", tg.Path, res, err)
				}
				if res, err := m.FetchTarget(ctx, tg); err != nil || !res.Present {
					t.Errorf("second FetchTarget %s: %+v, %v, want present", tg.Path, res, err)
				}
			}
			if _, err := Verify(dir, root); err != nil {
				t.Fatalf("the directory does not verify once its targets are fetched: %v", err)
			}

			// Two more releases: with Keep 1, the current state and one
			// previous; the first state's metadata is pruned.
			for i := 2; i <= 3; i++ {
				v.publish(strconv.Itoa(i), 64<<10)
				cur = fetchAll()
			}
			states, _ := m.LocalStates()
			if len(states) != 2 || states[1].Current || states[1].Snapshot != cur.Snapshot-1 {
				t.Fatalf("states %+v, want the current one and the previous one", states)
			}
			// Release 3's bundle, changed upstream after signing.
			var tg Target
			for _, f := range cur.Files {
				if f.Path == "definitions/3.tar" {
					tg = f
				}
			}
			corruptTarget(t, v.live(), ".3.tar")
			_, err = m.FetchTarget(ctx, tg)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("FetchTarget of a tampered target: %v, want ErrRefused", err)
			}
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(tg.Served))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the tampered target was kept: %v", err)
			}
			if parts, _ := os.ReadDir(filepath.Join(dir, workDir, fillDir)); len(parts) != 0 {
				t.Errorf("partial files kept: %v", parts)
			}
		})
	}
}
