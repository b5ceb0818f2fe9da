package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
)

// TestStream reads a file whole and resumed, a missing file and an offset
// past the end, from a real LiveUpdate server over HTTP and FTP.
func TestStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "targets", "file.bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: dir,
	},
	})
	lim, err := RateLimits{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	client := DefaultHTTPClient(5 * time.Second)
	defer client.CloseIdleConnections()
	streams := map[string]struct {
		base string
		s    Stream
	}{
		"http": {srv.HTTPURL, NewHTTPStream(client, 5*time.Second, lim, "test")},
		"ftp":  {srv.FTPURL, NewFTPStream(ctx, 5*time.Second, lim)},
	}
	for name, st := range streams {
		t.Run(name, func(t *testing.T) {
			defer st.s.Close()
			for _, offset := range []int64{0, 1000, int64(len(content)) - 1} {
				body, start, err := st.s.Open(ctx, st.base+"/targets/file.bin", offset)
				if err != nil {
					t.Fatalf("offset %d: %v", offset, err)
				}
				got, err := io.ReadAll(body)
				if cerr := body.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatalf("offset %d: %v", offset, err)
				}
				if start != offset || !bytes.Equal(got, content[start:]) {
					t.Fatalf("offset %d: start %d, %d bytes; want the file from %d", offset, start, len(got), offset)
				}
			}
			_, _, err := st.s.Open(ctx, st.base+"/targets/missing.bin", 0)
			if !IsNotFound(err) {
				t.Fatalf("missing file: %v, want not found", err)
			}
			if name == "http" {
				_, _, err = st.s.Open(ctx, st.base+"/targets/file.bin", int64(len(content)))
				if !errors.Is(err, ErrRangeNotSatisfiable) {
					t.Fatalf("offset at the end: %v, want ErrRangeNotSatisfiable", err)
				}
			}
			// The connection is still usable after an error.
			body, _, err := st.s.Open(ctx, st.base+"/targets/file.bin", 0)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, body)
			if cerr := body.Close(); err == nil {
				err = cerr
			}
			if err != nil || n != int64(len(content)) {
				t.Fatalf("after an error: %d bytes, %v", n, err)
			}
		})
	}
}
