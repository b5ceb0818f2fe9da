package scan

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// BenchmarkScanFileSmall is the cost of one small file's verdict, as
// on-access scanning asks for it (Engine.ScanFile on an open file), with
// an engine of the real database's size (VIGIL_BENCH_SCALE scales it
// down): Go source, text, JSON and binary files of 1 to 8 KiB.
//
//	VIGIL_BENCH_SCALE=1 go test ./internal/scan -run '^$' -bench ScanFileSmall -benchtime 20000x
func BenchmarkScanFileSmall(b *testing.B) {
	scale := benchScale(b)
	dir := b.TempDir()
	sigDir := filepath.Join(dir, "sigs")
	nHash, nBody, nLogical := scaled(realHashSigs, scale), scaled(realBodySigs, scale), scaled(realLogicalSigs, scale)
	writeSigs(b, sigDir, 11, nHash, nBody-nBody/10)
	writeBodyPE(b, sigDir, 12, nBody/10)
	writeLogical(b, sigDir, 13, nLogical)
	bld := NewBuilder()
	if _, err := signatures.LoadTo(sigDir, signatures.LoadOptions{}, bld); err != nil {
		b.Fatal(err)
	}
	e := bld.Engine()
	r := rand.New(rand.NewPCG(1, 2))
	var files []*os.File
	for i := range 64 {
		var data []byte
		n := 1024 + r.IntN(7*1024)
		line := []string{"func f(x int) int {\n\treturn x * 2 // comment\n}\n", "The quick brown fox jumps over the lazy dog. ",
			`{"name": "value", "n": 12345, "list": [1, 2, 3]}` + "\n", ""}[i%4]
		switch {
		case line != "":
			data = bytes.Repeat([]byte(line), n/len(line)+1)[:n]
		default:
			data = make([]byte, n)
			for j := range data {
				data[j] = byte(r.Uint32())
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		f := files[i%len(files)]
		fi, _ := f.Stat()
		if _, err := e.ScanFile(ctx, f, fi.Size(), f.Name(), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
