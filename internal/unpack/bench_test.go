package unpack

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// BenchmarkWalk walks a tar.gz of 200 members (each a 50 KiB text or a
// zip of one) and reads every object once, as a scanner would; the
// throughput is of the archive's decompressed bytes.
func BenchmarkWalk(b *testing.B) {
	var ents []unpacktest.TarEntry
	var total int64
	for i := range 200 {
		var text bytes.Buffer
		for text.Len() < 50<<10 {
			fmt.Fprintf(&text, "member %d line %d of some text\n", i, text.Len())
		}
		data := text.Bytes()
		if i%2 == 1 {
			data = unpacktest.Zip(b, unpacktest.ZipEntry{Name: "t.txt", Data: data, Method: zip.Deflate})
		}
		total += int64(text.Len())
		ents = append(ents, unpacktest.TarEntry{Name: fmt.Sprintf("m%03d", i), Data: data})
	}
	f := unpacktest.Gzip(unpacktest.Tar(b, tar.FormatUSTAR, ents...))
	buf := make([]byte, 64<<10)
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		_, err := Walk(context.Background(), bytes.NewReader(f), int64(len(f)), "f", DefaultOptions(), func(o *Object) error {
			_, err := io.CopyBuffer(io.Discard, io.NewSectionReader(o.R, 0, o.Size), buf)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
