package unpack

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"testing"

	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// fuzzWalk walks data with small limits and checks what must hold for
// any input: no panic, no error, objects within the limits.
func fuzzWalk(t *testing.T, data []byte) {
	lim := Limits{MaxFileSize: 1 << 20, MaxScanSize: 4 << 20, MaxFiles: 64, MaxRecursion: 8}
	opts := Options{Limits: lim, AlertExceedsMax: true, AlertEncrypted: true}
	res, err := Walk(context.Background(), bytes.NewReader(data), int64(len(data)), "f", opts, func(o *Object) error {
		if o.Depth > 0 && o.Size > lim.MaxFileSize {
			t.Errorf("%s: %d bytes, over max-filesize", o.Path, o.Size)
		}
		if o.Depth >= lim.MaxRecursion {
			t.Errorf("%s: depth %d", o.Path, o.Depth)
		}
		b := make([]byte, o.Size)
		if n, err := o.R.ReadAt(b, 0); int64(n) != o.Size {
			t.Errorf("%s: read %d of %d: %v", o.Path, n, o.Size, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects > lim.MaxFiles+1 || res.Bytes > lim.MaxScanSize+int64(len(data)) {
		t.Errorf("%d objects, %d bytes", res.Objects, res.Bytes)
	}
}

func FuzzZip(f *testing.F) {
	f.Add(unpacktest.Zip(f, unpacktest.ZipEntry{Name: "a", Data: markerText, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "b", Data: markerText}))
	f.Add(unpacktest.Zip(f, unpacktest.ZipEntry{Name: "e", Data: markerText, Encrypted: true}, unpacktest.ZipEntry{Name: "z", Data: markerText, Method: zipMethodBzip2, Raw: markerBz2}))
	f.Add(unpacktest.Zip(f, unpacktest.ZipEntry{Name: "in.zip", Data: unpacktest.Zip(f, unpacktest.ZipEntry{Name: "x", Data: markerText})}))
	f.Add(overlapBomb(f, 8))
	f.Add(append([]byte("stub\x00\x01"), unpacktest.Zip(f, unpacktest.ZipEntry{Name: "a", Data: markerText, Method: zip.Deflate})...))
	f.Fuzz(fuzzWalk)
}

func FuzzGzip(f *testing.F) {
	f.Add(unpacktest.Gzip(markerText))
	f.Add(append(unpacktest.Gzip(markerText), unpacktest.Gzip([]byte("second member"))...))
	f.Add(unpacktest.Gzip(unpacktest.Gzip(markerText)))
	f.Add(unpacktest.Gzip(unpacktest.Tar(f, tar.FormatUSTAR, unpacktest.TarEntry{Name: "a", Data: markerText})))
	f.Fuzz(fuzzWalk)
}

func FuzzBzip2(f *testing.F) {
	f.Add(markerBz2)
	f.Add(markerBz2[:40])
	f.Fuzz(fuzzWalk)
}

func FuzzXz(f *testing.F) {
	f.Add(unpacktest.Xz(f, markerText))
	f.Add(unpacktest.Xz(f, unpacktest.Gzip(markerText)))
	f.Add(unpacktest.Xz(f, nil))
	f.Fuzz(fuzzWalk)
}

func FuzzTar(f *testing.F) {
	f.Add(unpacktest.Tar(f, tar.FormatUSTAR, unpacktest.TarEntry{Name: "a", Data: markerText}, unpacktest.TarEntry{Name: "d/", Type: tar.TypeDir}))
	f.Add(unpacktest.Tar(f, tar.FormatGNU, unpacktest.TarEntry{Name: string(bytes.Repeat([]byte("n"), 150)), Data: markerText}))
	f.Add(unpacktest.Tar(f, tar.FormatPAX, unpacktest.TarEntry{Name: "p\u00e9", Data: markerText}))
	f.Add(unpacktest.Tar(f, tar.FormatUSTAR, unpacktest.TarEntry{Name: "z.zip", Data: unpacktest.Zip(f, unpacktest.ZipEntry{Name: "x", Data: markerText, Method: zip.Deflate})}))
	f.Fuzz(fuzzWalk)
}
