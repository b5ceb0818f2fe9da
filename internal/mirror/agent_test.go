package mirror

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestAgentUpdatesDuringSyncs runs agents (internal/definitions, over HTTP
// and FTP) against a LiveUpdate server that serves the mirror's local
// directory, updating in a loop while the mirror syncs release after
// release from the vendor. No update may ever fail: no hash mismatch, no
// missing file, no bad signature.
func TestAgentUpdatesDuringSyncs(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 512<<10)
	w := newWorld(t, v.live(), v.live(), v.live())
	root := v.rootJSON()
	rootFile := filepath.Join(t.TempDir(), "1.root.json")
	if err := os.WriteFile(rootFile, root, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mirror")
	cfg := w.config("http", root, dir, &testenv.Buffer{})
	cfg.Progress = nil
	cfg.Keep = 1
	syncOK(t, cfg)

	srv := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: dir,
	},
	})

	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	updates := map[string]int{}
	for _, server := range []string{srv.HTTPURL, srv.FTPURL} {
		u, err := definitions.New(definitions.Config{
			Servers:        []string{server},
			TrustedRoot:    rootFile,
			StateDir:       filepath.Join(t.TempDir(), "state"),
			DefinitionsDir: filepath.Join(t.TempDir(), "definitions"),
			Timeout:        5 * time.Second,
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for !stop.Load() {
				res, err := u.Update(context.Background())
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else if res.Changed {
					updates[server]++
				}
				mu.Unlock()
			}
		})
	}
	const releases = 12
	for i := 2; i <= releases; i++ {
		v.publish(strconv.Itoa(i), 512<<10)
		syncOK(t, cfg)
		// One sync in two also has nothing new.
		if i%2 == 0 {
			syncOK(t, cfg)
		}
	}
	time.Sleep(200 * time.Millisecond) // the agents catch up with the last one
	stop.Store(true)
	wg.Wait()
	for _, err := range failures {
		var mm *metadata.ErrLengthOrHashMismatch
		if errors.As(err, &mm) {
			t.Errorf("an agent saw a hash or length mismatch: %v", err)
		} else {
			t.Errorf("an agent's update failed: %v", err)
		}
	}
	t.Logf("updates installed: %v", updates)
	for server, n := range updates {
		if n < 2 {
			t.Errorf("%s: only %d updates installed during the syncs", server, n)
		}
	}
	verifyState(t, dir, root)
}
