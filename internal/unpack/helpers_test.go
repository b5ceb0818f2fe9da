package unpack

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/hex"
	"hash/crc32"
	"os/exec"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// marker is what the tests look for in yielded objects (and what the
// differential test's signature matches).
const marker = "VIGILMARKER-7f3a9c"

var markerText = []byte("hello " + marker + " world\n")

// markerBz2 is markerText compressed by bzip2 -9.
var markerBz2 = mustHex("425a6839314159265359d8c7e84d00000bdf800010400208a022ae11002f4490802000314000d03264183134606354f106c85fcc21984f6000230ccaaef2e34f4d8bb9229c28486c63f42680")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

type zent struct {
	name      string
	data      []byte
	method    uint16 // zip.Store, zip.Deflate, or 12 (bzip2, data given compressed in raw)
	raw       []byte // compressed data for method 12
	encrypted bool
}

func mkzip(t testing.TB, ents ...zent) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range ents {
		// Sizes in the local header, no data descriptor: as Info-ZIP
		// and Python write them.
		h := &zip.FileHeader{Name: e.name, Method: e.method, Modified: time.Unix(1700000000, 0)}
		comp := e.data
		switch e.method {
		case zip.Deflate:
			comp = deflate(t, e.data)
		case zipMethodBzip2:
			comp = e.raw
		}
		if e.encrypted {
			h.Flags |= zipFlagEncrypted
		}
		h.CRC32 = crc32.ChecksumIEEE(e.data)
		h.CompressedSize64 = uint64(len(comp))
		h.UncompressedSize64 = uint64(len(e.data))
		w, err := zw.CreateRaw(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(comp)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func deflate(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	fw, _ := flate.NewWriter(&out, flate.BestCompression)
	fw.Write(b)
	fw.Close()
	return out.Bytes()
}

func mkgz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func mkxz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := xz.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func mkbz2(t testing.TB, b []byte) []byte {
	t.Helper()
	cmd := exec.Command(testenv.NeedTool(t, "bzip2", "bzip2"), "-9", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type tent struct {
	name string
	data []byte
	typ  byte // tar.TypeReg unless set
}

func mktar(t testing.TB, format tar.Format, ents ...tent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: typ, Format: format, ModTime: time.Unix(1700000000, 0)}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return b.Bytes()
}

// seen is one yielded object.
type seen struct {
	Path   string
	Depth  int
	Type   filetype.Type
	Size   int64
	Marker bool
	Data   []byte
}

func walkBytes(t testing.TB, data []byte, opts Options) ([]seen, Result) {
	t.Helper()
	var got []seen
	res, err := Walk(context.Background(), bytes.NewReader(data), int64(len(data)), "f", opts, func(o *Object) error {
		b := make([]byte, o.Size)
		if _, err := o.R.ReadAt(b, 0); err != nil && o.Size > 0 {
			t.Fatalf("%s: read: %v", o.Path, err)
		}
		got = append(got, seen{Path: o.Path, Depth: o.Depth, Type: o.Type, Size: o.Size, Marker: bytes.Contains(b, []byte(marker)), Data: b})
		if bytes.Contains(b, []byte(marker)) {
			return ErrDetected
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, res
}

func anyMarker(s []seen) bool {
	for _, o := range s {
		if o.Marker {
			return true
		}
	}
	return false
}
