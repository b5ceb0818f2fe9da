package unpack

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"testing"
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
	f.Add(mkzip(f, zent{name: "a", data: markerText, method: zip.Deflate}, zent{name: "b", data: markerText}))
	f.Add(mkzip(f, zent{name: "e", data: markerText, encrypted: true}, zent{name: "z", data: markerText, method: zipMethodBzip2, raw: markerBz2}))
	f.Add(mkzip(f, zent{name: "in.zip", data: mkzip(f, zent{name: "x", data: markerText})}))
	f.Add(overlapBomb(f, 8))
	f.Add(append([]byte("stub\x00\x01"), mkzip(f, zent{name: "a", data: markerText, method: zip.Deflate})...))
	f.Fuzz(fuzzWalk)
}

func FuzzGzip(f *testing.F) {
	f.Add(mkgz(markerText))
	f.Add(append(mkgz(markerText), mkgz([]byte("second member"))...))
	f.Add(mkgz(mkgz(markerText)))
	f.Add(mkgz(mktar(f, tar.FormatUSTAR, tent{name: "a", data: markerText})))
	f.Fuzz(fuzzWalk)
}

func FuzzBzip2(f *testing.F) {
	f.Add(markerBz2)
	f.Add(markerBz2[:40])
	f.Fuzz(fuzzWalk)
}

func FuzzXz(f *testing.F) {
	f.Add(mkxz(f, markerText))
	f.Add(mkxz(f, mkgz(markerText)))
	f.Add(mkxz(f, nil))
	f.Fuzz(fuzzWalk)
}

func FuzzTar(f *testing.F) {
	f.Add(mktar(f, tar.FormatUSTAR, tent{name: "a", data: markerText}, tent{name: "d/", typ: tar.TypeDir}))
	f.Add(mktar(f, tar.FormatGNU, tent{name: string(bytes.Repeat([]byte("n"), 150)), data: markerText}))
	f.Add(mktar(f, tar.FormatPAX, tent{name: "p\u00e9", data: markerText}))
	f.Add(mktar(f, tar.FormatUSTAR, tent{name: "z.zip", data: mkzip(f, zent{name: "x", data: markerText, method: zip.Deflate})}))
	f.Fuzz(fuzzWalk)
}
