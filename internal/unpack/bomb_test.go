package unpack

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// zeroDeflate is a raw deflate stream of n MiB of zeros (n*~1 KiB): one
// sync-flushed block of 1 MiB of zeros repeated, then a final empty
// block. Each repeat refers back only to zeros, so the stream is valid.
func zeroDeflate(t testing.TB, mib int) []byte {
	t.Helper()
	var blk bytes.Buffer
	fw, _ := flate.NewWriter(&blk, flate.BestCompression)
	fw.Write(make([]byte, 1<<20))
	fw.Flush()
	one := blk.Bytes()
	out := bytes.Repeat(one, mib)
	return append(out, 0x03, 0x00) // final, fixed-Huffman, end of block
}

func zeroGzip(t testing.TB, mib int) []byte {
	d := zeroDeflate(t, mib)
	out := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	out = append(out, d...)
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[4:], uint32(mib<<20))
	return append(out, tr[:]...) // the CRC is never reached: the limits stop first
}

func rawZip(t testing.TB, name string, comp []byte, usize uint64, method uint16) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: method, CompressedSize64: uint64(len(comp)), UncompressedSize64: usize, CRC32: crc32.ChecksumIEEE(nil)})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp)
	zw.Close()
	return b.Bytes()
}

// peakHeap samples the heap in use until stop is called, and returns its
// maximum.
func peakHeap() (stop func() uint64) {
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		mu.Lock()
		peak = max(peak, m.HeapInuse)
		mu.Unlock()
	}
	wg.Go(func() {
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				sample()
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		sample()
		return peak
	}
}

// TestBombs walks decompression bombs: each is stopped by the limits,
// the objects yielded stay within them, and the heap stays small (the
// members are never held whole in memory).
func TestBombs(t *testing.T) {
	// Not parallel: it measures the heap.
	member := rawZip(t, "zeros", zeroDeflate(t, 2048), 2<<30, zip.Deflate) // 2 GiB in ~2 MiB
	var copies, distinct []unpacktest.ZipEntry
	for i := range 4 {
		name := string(rune('a'+i)) + ".zip"
		copies = append(copies, unpacktest.ZipEntry{Name: name, Data: member, Method: zip.Store})
		distinct = append(distinct, unpacktest.ZipEntry{Name: name, Data: rawZip(t, "zeros", zeroDeflate(t, 2048-i), uint64(2048-i)<<20, zip.Deflate), Method: zip.Store})
	}
	// 42.zip-style: identical copies. As in ClamAV, the first is scanned
	// (its member cut at max-filesize) and cached clean, the others are
	// skipped.
	nested := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "level1.zip", Data: unpacktest.Zip(t, copies...), Method: zip.Deflate})
	// Distinct copies: each is opened, until max-scansize.
	nestedDistinct := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "level1.zip", Data: unpacktest.Zip(t, distinct...), Method: zip.Deflate})
	bz := unpacktest.Bzip2(t, make([]byte, 64<<20))
	xzb := xzZeros(t, 64)
	small := DefaultLimits()
	small.MaxFileSize = 8 << 20

	tests := []struct {
		name     string
		data     []byte
		lim      Limits
		maxSize  int64 // no object larger
		maxTotal int64 // Result.Bytes at most
		alert    string
	}{
		{"zip deflate 2 GiB", member, DefaultLimits(), DefaultMaxFileSize, DefaultMaxScanSize, ""},
		{"gzip 2 GiB", zeroGzip(t, 2048), DefaultLimits(), DefaultMaxFileSize, DefaultMaxScanSize, AlertMaxFileSize},
		{"nested identical zips of 2 GiB members", nested, DefaultLimits(), DefaultMaxFileSize, DefaultMaxScanSize, ""},
		{"nested distinct zips of 2 GiB members", nestedDistinct, DefaultLimits(), DefaultMaxFileSize, DefaultMaxScanSize, AlertMaxScanSize},
		{"bzip2 64 MiB", bz, small, 8 << 20, 8 << 20, AlertMaxFileSize},
		{"xz 64 MiB", xzb, small, 8 << 20, 8 << 20, AlertMaxFileSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Limits: tt.lim, AlertExceedsMax: true, TempDir: t.TempDir()}
			runtime.GC()
			stop := peakHeap()
			var biggest int64
			res, err := Walk(context.Background(), bytes.NewReader(tt.data), int64(len(tt.data)), "bomb", opts, func(o *Object) error {
				biggest = max(biggest, o.Size)
				return nil
			})
			peak := stop()
			if err != nil {
				t.Fatal(err)
			}
			if left, _ := os.ReadDir(opts.TempDir); len(left) != 0 {
				t.Errorf("%d temporary files left", len(left))
			}
			if biggest > tt.maxSize || res.Bytes > tt.maxTotal+int64(len(tt.data)) {
				t.Errorf("largest object %d (max %d), total %d", biggest, tt.maxSize, res.Bytes)
			}
			if (tt.alert == "" && len(res.Alerts) != 0) || (tt.alert != "" && (len(res.Alerts) != 1 || res.Alerts[0].Name != tt.alert)) {
				t.Errorf("alerts %v, want %s", res.Alerts, tt.alert)
			}
			// Generous: the input itself, a few MiB of buffers per level,
			// and the xz dictionary; a member held whole would be GiBs.
			if limit := uint64(len(tt.data)) + 48<<20; peak > limit {
				t.Errorf("peak heap %d MiB, over %d MiB", peak>>20, limit>>20)
			}
			t.Logf("%d objects, %d MiB yielded, largest %d MiB, peak heap %d MiB, limits %v", res.Objects, res.Bytes>>20, biggest>>20, peak>>20, res.Limits)
		})
	}
}

// xzZeros compresses mib MiB of zeros with xz.
func xzZeros(t testing.TB, mib int) []byte {
	t.Helper()
	return unpacktest.Xz(t, make([]byte, mib<<20))
}
