package scan

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// TestScanFileSameAsScanPaths: ScanFile finds in an open file what
// ScanPaths finds in it (archives opened, the first name first), from
// many goroutines at once, through the matcher pool.
func TestScanFileSameAsScanPaths(t *testing.T) {
	t.Parallel()
	e := testEngine(t)
	dir := t.TempDir()
	files := map[string][]byte{
		"eicar.com":  []byte(eicar),
		"clean.txt":  []byte("nothing to see here\n"),
		"in-zip.zip": unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a/b.txt", Data: []byte("xx MALWARE! yy")}),
		"clean.zip":  unpacktest.Zip(t, unpacktest.ZipEntry{Name: "c.txt", Data: []byte("clean")}),
		"empty":      nil,
	}
	for name, b := range files {
		write(t, filepath.Join(dir, name), string(b))
	}
	sum, err := e.ScanPaths(context.Background(), []string{dir}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for _, d := range sum.Detections {
		want[filepath.Base(d.Path)] = append(want[filepath.Base(d.Path)], d.Signature)
	}
	if len(want) != 2 {
		t.Fatalf("ScanPaths found %v; want two infected files", want)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for name := range files {
				f, err := os.Open(filepath.Join(dir, name))
				if err != nil {
					t.Error(err)
					return
				}
				fi, _ := f.Stat()
				res, err := e.ScanFile(context.Background(), f, fi.Size(), f.Name(), Options{})
				f.Close()
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(res.Signatures, want[name]) {
					t.Errorf("ScanFile(%s) = %v, ScanPaths found %v", name, res.Signatures, want[name])
				}
			}
		})
	}
	wg.Wait()
}
