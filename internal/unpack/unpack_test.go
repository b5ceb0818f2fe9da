package unpack

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

func fixTarChecksum(h []byte) {
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// TestNesting walks every format nested in the others and checks the
// objects, their names, depths and ClamAV's order (members before their
// archive).
func TestNesting(t *testing.T) {
	t.Parallel()
	inner := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "dir/evil.txt", Data: markerText, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "clean.txt", Data: []byte("nothing to see here"), Method: zip.Store})
	tr := unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "sub/", Type: tar.TypeDir}, unpacktest.TarEntry{Name: "sub/in.zip", Data: inner}, unpacktest.TarEntry{Name: "b.bz2", Data: markerBz2})
	f := unpacktest.Xz(t, unpacktest.Gzip(tr))
	got, res := walkBytes(t, f, DefaultOptions())
	var lines []string
	for _, o := range got {
		var in []string
		for _, c := range o.Containers {
			in = append(in, typeName(c))
		}
		lines = append(lines, fmt.Sprintf("%s %d %s %v in %s", o.Path, o.Depth, typeName(o.Type), o.Marker, strings.Join(in, ">")))
	}
	want := []string{
		"f!POSIX_TAR:sub/in.zip!ZIP:dir/evil.txt 4 TEXT_ASCII true in XZ>GZ>POSIX_TAR>ZIP",
		"f!POSIX_TAR:sub/in.zip!ZIP:clean.txt 4 TEXT_ASCII false in XZ>GZ>POSIX_TAR>ZIP",
		"f!POSIX_TAR:sub/in.zip 3 ZIP false in XZ>GZ>POSIX_TAR",
		"f!POSIX_TAR:b.bz2 4 TEXT_ASCII true in XZ>GZ>POSIX_TAR>BZ",
		"f!POSIX_TAR:b.bz2 3 BZ false in XZ>GZ>POSIX_TAR",
		"f 2 POSIX_TAR false in XZ>GZ",
		"f 1 GZ false in XZ",
		"f 0 XZ false in ",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if res.Objects != len(want) || len(res.Alerts) != 0 || len(res.Limits) != 0 {
		t.Errorf("result %+v", res)
	}
}

func TestZipMethodsAndSFX(t *testing.T) {
	t.Parallel()
	z := unpacktest.Zip(t,
		unpacktest.ZipEntry{Name: "stored", Data: markerText, Method: zip.Store},
		unpacktest.ZipEntry{Name: "deflated", Data: markerText, Method: zip.Deflate},
		unpacktest.ZipEntry{Name: "bzip2", Data: markerText, Method: zipMethodBzip2, Raw: markerBz2})
	got, _ := walkBytes(t, z, DefaultOptions())
	var names []string
	for _, o := range got {
		if o.Depth == 1 && o.Marker {
			names = append(names, o.Path)
		}
	}
	if want := []string{"f!ZIP:stored", "f!ZIP:deflated", "f!ZIP:bzip2"}; !reflect.DeepEqual(names, want) {
		t.Errorf("members with the marker %q, want %q", names, want)
	}

	// A zip appended to other data: each local header is an embedded zip.
	sfx := append(bytes.Repeat([]byte("\x00MZ stub "), 50), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "x.txt", Data: markerText, Method: zip.Deflate})...)
	got, _ = walkBytes(t, sfx, DefaultOptions())
	if len(got) != 2 || got[0].Path != "f" || got[0].Marker || got[1].Path != "f!ZIP:x.txt" || got[1].Depth != 2 || !got[1].Marker {
		t.Errorf("sfx: %+v", got)
	}

	// No central directory: ClamAV opens nothing.
	nocd := z[:bytes.Index(z, []byte("PK\x01\x02"))]
	if got, _ := walkBytes(t, nocd, DefaultOptions()); len(got) != 1 {
		t.Errorf("zip without central directory: %d objects", len(got))
	}
}

func TestEncryptedZip(t *testing.T) {
	t.Parallel()
	z := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "secret.txt", Data: markerText, Method: zip.Deflate, Encrypted: true}, unpacktest.ZipEntry{Name: "open.txt", Data: []byte("open and clean")},
		unpacktest.ZipEntry{Name: "secret2.txt", Data: markerText, Encrypted: true})
	got, res := walkBytes(t, z, DefaultOptions())
	if len(res.Alerts) != 0 || len(got) != 2 {
		t.Errorf("by default: %d objects, alerts %v", len(got), res.Alerts)
	}
	opts := DefaultOptions()
	opts.AlertEncrypted = true
	got, res = walkBytes(t, z, opts)
	if want := []Alert{{Name: AlertEncryptedZip, Path: "f!ZIP:secret.txt"}}; !reflect.DeepEqual(res.Alerts, want) {
		t.Errorf("alerts %v, want %v", res.Alerts, want)
	}
	for _, o := range got {
		if strings.Contains(o.Path, "secret") {
			t.Errorf("encrypted entry extracted: %s", o.Path)
		}
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	var ents []unpacktest.ZipEntry
	for i := range 20 {
		ents = append(ents, unpacktest.ZipEntry{Name: fmt.Sprintf("m%02d", i), Data: []byte(fmt.Sprintf("member number %d", i)), Method: zip.Deflate})
	}
	manyZip := unpacktest.Zip(t, ents...)
	var tents []unpacktest.TarEntry
	for i := range 20 {
		tents = append(tents, unpacktest.TarEntry{Name: fmt.Sprintf("m%02d", i), Data: []byte(fmt.Sprintf("member number %d", i))})
	}
	manyTar := unpacktest.Tar(t, tar.FormatUSTAR, tents...)
	deep := markerText
	for range 20 {
		deep = unpacktest.Gzip(deep)
	}
	big := append(bytes.Repeat([]byte{'a'}, 3<<20), markerText...)
	bigZip := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "big", Data: big, Method: zip.Deflate})
	bigTar := unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "big", Data: append(append([]byte(nil), markerText...), big...)})

	tests := []struct {
		name    string
		data    []byte
		lim     Limits
		objects int
		marker  bool
		alert   string
	}{
		{"zip max-files", manyZip, Limits{MaxFiles: 10}, 10, false, AlertMaxFiles}, // the zip and 9 members
		{"tar max-files", manyTar, Limits{MaxFiles: 10}, 10, false, AlertMaxFiles},
		{"zip under max-files", manyZip, Limits{MaxFiles: 22}, 21, false, ""},
		{"recursion 17", deep, Limits{}, 17, false, AlertMaxRecursion},
		{"recursion 25", deep, Limits{MaxRecursion: 25}, 21, true, ""},
		{"recursion 5", deep, Limits{MaxRecursion: 5}, 5, false, AlertMaxRecursion},
		// A zip member is cut at max-filesize (in 8 KiB chunks): the
		// marker at its end is not reached.
		{"zip max-filesize", bigZip, Limits{MaxFileSize: 1 << 20}, 2, false, ""},
		{"zip max-filesize big enough", bigZip, Limits{MaxFileSize: 4 << 20}, 2, true, ""},
		// A tar member is scanned up to the limit (the marker is in the
		// tar's own bytes too).
		{"tar max-scansize", bigTar, Limits{MaxScanSize: 5 << 20}, 2, true, AlertMaxScanSize},
		{"file over max-filesize", bigTar, Limits{MaxFileSize: 1 << 20}, 0, false, AlertMaxFileSize},
		{"gz over max-filesize", unpacktest.Gzip(big), Limits{MaxFileSize: 1 << 20}, 1, false, AlertMaxFileSize},
		{"gz over max-scansize", unpacktest.Gzip(big), Limits{MaxScanSize: 3 << 20}, 1, false, AlertMaxScanSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Limits: tt.lim, AlertExceedsMax: true}
			got, res := walkBytes(t, tt.data, opts)
			if len(got) != tt.objects || anyMarker(got) != tt.marker {
				t.Errorf("%d objects, marker %v; want %d, %v", len(got), anyMarker(got), tt.objects, tt.marker)
			}
			var alerts []string
			for _, a := range res.Alerts {
				alerts = append(alerts, a.Name)
			}
			var want []string
			if tt.alert != "" {
				want = []string{tt.alert}
			}
			if !reflect.DeepEqual(alerts, want) {
				t.Errorf("alerts %v, want %v (limits %v)", alerts, want, res.Limits)
			}
			if tt.alert != "" && len(res.Limits) == 0 {
				t.Error("no limit recorded")
			}
			// Without --alert-exceeds-max: the same objects, no alert.
			opts.AlertExceedsMax = false
			got2, res2 := walkBytes(t, tt.data, opts)
			if len(got2) != len(got) || len(res2.Alerts) != 0 {
				t.Errorf("without alerts: %d objects, alerts %v", len(got2), res2.Alerts)
			}
		})
	}
}

// TestTarTruncated: a member cut short is scanned with what is there
// (and zeros for the rest of its last block, as ClamAV writes them).
func TestTarTruncated(t *testing.T) {
	t.Parallel()
	full := unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "a", Data: append(bytes.Repeat([]byte("x"), 700), markerText...)})
	got, _ := walkBytes(t, full[:512+700+len(markerText)], DefaultOptions())
	if len(got) != 2 || !got[0].Marker || got[0].Path != "f!POSIX_TAR:a" {
		t.Fatalf("%+v", got)
	}
	if got[0].Size != int64(700+len(markerText)) {
		t.Errorf("member size %d", got[0].Size)
	}
}

func TestXZDictionaryLimit(t *testing.T) {
	t.Parallel()
	x := unpacktest.Xz(t, markerText)
	// The first block header starts at 12; its LZMA2 property byte is the
	// last byte of the filter flags. Set 1.5 GiB (prop 37): ClamAV
	// refuses to allocate it.
	hs := (int(x[12]) + 1) * 4
	hdr := x[12 : 12+hs]
	i := bytes.Index(hdr, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in %x", hdr)
	}
	x[12+i+2] = 37
	got, res := walkBytes(t, x, DefaultOptions())
	if want := []Alert{{Name: AlertXZDictSize, Path: "f"}}; !reflect.DeepEqual(res.Alerts, want) || len(got) != 1 {
		t.Errorf("alerts %v, %d objects", res.Alerts, len(got))
	}
}

func TestZipOverlap(t *testing.T) {
	t.Parallel()
	z := overlapBomb(t, 10)
	got, res := walkBytes(t, z, DefaultOptions())
	if want := []Alert{{Name: AlertZipOverlap, Path: "f"}}; !reflect.DeepEqual(res.Alerts, want) || len(got) != 1 {
		t.Errorf("alerts %v, %d objects", res.Alerts, len(got))
	}
	opts := DefaultOptions()
	opts.NoHeuristicAlerts = true
	if got, res := walkBytes(t, z, opts); len(res.Alerts) != 0 || len(got) != 1 {
		t.Errorf("without heuristic alerts: alerts %v, %d objects", res.Alerts, len(got))
	}
}

// overlapBomb builds a zip whose n central entries point at local headers
// inside each other's data (David Fifield's non-recursive zip bomb):
// local header i is followed by a stored entry covering all later ones.
func overlapBomb(t testing.TB, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	offs := make([]int, n)
	names := make([]string, n)
	kernel := bytes.Repeat([]byte("A"), 64)
	// Lay out: header_0 header_1 ... header_{n-1} kernel; entry i's data
	// is everything after its header.
	hdrLen := func(i int) int { return zipLocalSize + len(names[i]) }
	for i := range n {
		names[i] = fmt.Sprintf("f%02d", i)
	}
	total := len(kernel)
	for i := n - 1; i >= 0; i-- {
		total += hdrLen(i)
	}
	pos := 0
	for i := range n {
		offs[i] = pos
		csize := total - pos - hdrLen(i)
		var h [zipLocalSize]byte
		putLE32(h[0:], zipLocalMagic)
		putLE16(h[4:], 20)
		putLE32(h[18:], uint32(csize))
		putLE32(h[22:], uint32(csize))
		putLE16(h[26:], uint16(len(names[i])))
		b.Write(h[:])
		b.WriteString(names[i])
		pos += hdrLen(i)
	}
	b.Write(kernel)
	cd := b.Len()
	for i := range n {
		var h [zipCentralSize]byte
		csize := total - offs[i] - hdrLen(i)
		putLE32(h[0:], zipCentralMagic)
		putLE32(h[20:], uint32(csize))
		putLE32(h[24:], uint32(csize))
		putLE16(h[28:], uint16(len(names[i])))
		putLE32(h[42:], uint32(offs[i]))
		b.Write(h[:])
		b.WriteString(names[i])
	}
	var e [22]byte
	putLE32(e[0:], zipEOCDMagic)
	putLE16(e[8:], uint16(n))
	putLE16(e[10:], uint16(n))
	putLE32(e[12:], uint32(b.Len()-cd))
	putLE32(e[16:], uint32(cd))
	b.Write(e[:])
	return b.Bytes()
}

func putLE16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func TestStop(t *testing.T) {
	t.Parallel()
	z := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a", Data: markerText}, unpacktest.ZipEntry{Name: "b", Data: markerText})
	n := 0
	res, err := Walk(context.Background(), bytes.NewReader(z), int64(len(z)), "f", DefaultOptions(), func(o *Object) error {
		n++
		return ErrStop
	})
	if err != nil || n != 1 || res.Objects != 1 {
		t.Errorf("ErrStop: err %v, %d calls", err, n)
	}
	boom := errors.New("boom")
	_, err = Walk(context.Background(), bytes.NewReader(z), int64(len(z)), "f", DefaultOptions(), func(o *Object) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("callback error: %v", err)
	}
	// Stopped on a member spilled to disk: its temporary file goes too.
	dir := t.TempDir()
	big := unpacktest.Gzip(append(bytes.Repeat([]byte("q"), 3<<20), markerText...))
	opts := DefaultOptions()
	opts.TempDir = dir
	if _, err := Walk(context.Background(), bytes.NewReader(big), int64(len(big)), "f", opts, func(o *Object) error { return ErrStop }); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("%d temporary files left after ErrStop", len(left))
	}
	if _, err := Walk(context.Background(), bytes.NewReader(z), -1, "f", DefaultOptions(), func(o *Object) error { return nil }); err == nil {
		t.Error("a negative size is accepted")
	}
	// Cancelled during the walk: no object after that, ctx's error.
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	if _, err := Walk(ctx, bytes.NewReader(z), int64(len(z)), "f", DefaultOptions(), func(o *Object) error {
		calls++
		cancel()
		return nil
	}); !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("cancelled in the callback: %v after %d calls", err, calls)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := Walk(ctx, bytes.NewReader(z), int64(len(z)), "f", DefaultOptions(), func(o *Object) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestSpillToDisk: an object over MemLimit is read from a temporary
// file, unlinked as soon as it is created.
func TestSpillToDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := append(bytes.Repeat([]byte("z"), 3<<20), markerText...)
	opts := DefaultOptions()
	opts.TempDir = dir
	f := filepath.Join(dir, "in.gz")
	if err := os.WriteFile(f, unpacktest.Gzip(data), 0o600); err != nil {
		t.Fatal(err)
	}
	spilled := false
	_, err := WalkFile(context.Background(), f, opts, func(o *Object) error {
		if o.Type == filetype.TextASCII {
			_, spilled = o.R.(*io.SectionReader) // a file, not a bytes.Reader
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("%d files in the temporary directory, want only the input", len(ents))
			}
			b := make([]byte, o.Size)
			if _, err := o.R.ReadAt(b, 0); err != nil || !bytes.Equal(b, data) {
				t.Errorf("spilled object differs: %v", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !spilled {
		t.Error("a 3 MiB object was kept in memory")
	}
}

// TestCleanCache: an object identical to one already scanned clean in the
// file is skipped (ClamAV's clean cache); once something matched, nothing
// more is cached.
func TestCleanCache(t *testing.T) {
	t.Parallel()
	clean := unpacktest.Gzip([]byte("the same clean content in both members"))
	z := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a", Data: clean}, unpacktest.ZipEntry{Name: "b", Data: clean})
	got, _ := walkBytes(t, z, DefaultOptions())
	var paths []string
	for _, o := range got {
		paths = append(paths, o.Path)
	}
	if want := []string{"f!ZIP:a", "f!ZIP:a", "f"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("clean duplicates: %q, want %q", paths, want)
	}
	z = unpacktest.Zip(t, unpacktest.ZipEntry{Name: "m", Data: markerText, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "a", Data: clean}, unpacktest.ZipEntry{Name: "b", Data: clean})
	if got, _ := walkBytes(t, z, DefaultOptions()); len(got) != 6 {
		t.Errorf("after a detection (ErrDetected) every member is opened: %d objects", len(got))
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"100M", 100 << 20, true},
		{"400m", 400 << 20, true},
		{"10k", 10 << 10, true},
		{"2G", 2 << 30, true},
		{"1048576", 1 << 20, true},
		{"010", 8, true}, // strtoll, base 0: octal
		{"0", 1<<32 - 1, true},
		{"0M", 1<<32 - 1, true},
		{"99999999999999999999", 1<<32 - 1, true},
		{"9999999999G", 1<<32 - 1, true},
		{"09", 0, false},
		{"", 0, false},
		{"M", 0, false},
		{"-1", 0, false},
		{"1T", 0, false},
		{"1.5M", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
	// libclamav cuts max-filesize to 2 GiB - 3.
	data := []byte("a small file, scanned")
	got, _ := walkBytes(t, data, Options{Limits: Limits{MaxFileSize: 1 << 40}})
	if len(got) != 1 {
		t.Errorf("%d objects", len(got))
	}
}
