// Package unpacktest builds archives and compressed files for tests, in
// the manner of httptest: zip files written as Info-ZIP writes them (sizes
// in the local header, no data descriptor), tar files in any of
// archive/tar's formats, gzip, bzip2 (with the bzip2 program, which the
// standard library cannot write) and xz. Every builder is deterministic:
// the same arguments give the same bytes, so differential tests against
// clamscan can be repeated exactly.
package unpacktest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"hash/crc32"
	"os/exec"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// The zip methods and flags the builders know besides archive/zip's.
const (
	// MethodBzip2 is zip's method 12: the entry's data given compressed,
	// in ZipEntry.Raw.
	MethodBzip2 uint16 = 12
	// FlagEncrypted is the general-purpose flag of an encrypted entry.
	FlagEncrypted uint16 = 1
)

// modTime is every entry's modification time, so that archives repeat.
var modTime = time.Unix(1700000000, 0)

// ZipEntry is one member of a zip file.
type ZipEntry struct {
	Name string
	Data []byte
	// Method is zip.Store (the zero value), zip.Deflate or MethodBzip2.
	Method uint16
	// Raw is the compressed data of a MethodBzip2 entry.
	Raw []byte
	// Encrypted sets the entry's encryption flag; its data is left as is.
	Encrypted bool
}

// Zip returns a zip file of the entries, in order.
func Zip(t testing.TB, ents ...ZipEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.Name, Method: e.Method, Modified: modTime}
		comp := e.Data
		switch e.Method {
		case zip.Deflate:
			comp = Deflate(t, e.Data)
		case MethodBzip2:
			comp = e.Raw
		}
		if e.Encrypted {
			h.Flags |= FlagEncrypted
		}
		h.CRC32 = crc32.ChecksumIEEE(e.Data)
		h.CompressedSize64 = uint64(len(comp))
		h.UncompressedSize64 = uint64(len(e.Data))
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

// Deflate returns b compressed with raw deflate at the best compression.
func Deflate(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	fw, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(b)
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Gzip returns b as a one-member gzip file.
func Gzip(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// Xz returns b as an xz file.
func Xz(t testing.TB, b []byte) []byte {
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

// Bzip2 returns b compressed by the bzip2 program (-9); the test skips,
// or fails under testenv's requirement, without it.
func Bzip2(t testing.TB, b []byte) []byte {
	t.Helper()
	cmd := exec.Command(testenv.NeedTool(t, "bzip2", "bzip2"), "-9", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TarEntry is one member of a tar file.
type TarEntry struct {
	Name string
	Data []byte
	// Type is the header's type flag; tar.TypeReg when zero. Other types
	// are written without data.
	Type byte
}

// Tar returns a tar file of the entries in format.
func Tar(t testing.TB, format tar.Format, ents ...TarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Data)), Typeflag: typ, Format: format, ModTime: modTime}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.Data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
