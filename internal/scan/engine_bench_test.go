package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// sigGen writes generated signatures the shape of ClamAV's real
// databases: hash signatures of random digests and sizes (mostly MD5, as
// in main.hdb and daily.hdb, some SHA-1 and SHA-256), and body signatures
// of random bytes with ClamAV's pattern forms.
type sigGen struct {
	rng *rand.Rand
}

func newSigGen(seed uint64) *sigGen { return &sigGen{rng: rand.New(rand.NewPCG(seed, 99))} }

func (g *sigGen) random(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(g.rng.Uint32())
	}
	return p
}

// hashLine is hash signature i: 80 % MD5, 10 % SHA-1, 10 % SHA-256; sizes
// up to 4 MiB, a few "*".
func (g *sigGen) hashLine(i int) (line string, hsb bool) {
	var n int
	switch r := g.rng.IntN(10); {
	case r < 8:
		n = 16
	case r < 9:
		n = 20
	default:
		n = 32
	}
	size := fmt.Sprint(1 + g.rng.IntN(4<<20))
	extra := ""
	if g.rng.IntN(100000) == 0 {
		size, extra = "*", ":73"
	}
	return fmt.Sprintf("%x:%s:Gen.Trojan.Hash-%07d-0%s", g.random(n), size, i, extra), n != 16
}

// bodyLine is body signature i: 14 to 60 random fixed bytes with, for
// half of them, one of ClamAV's pattern forms in the middle.
func (g *sigGen) bodyLine(i int) string {
	var sb strings.Builder
	lit := func(n int) { sb.WriteString(hex.EncodeToString(g.random(n))) }
	lit(8 + g.rng.IntN(24))
	switch i % 10 {
	case 1:
		sb.WriteString("??")
	case 2:
		fmt.Fprintf(&sb, "{%d-%d}", g.rng.IntN(8), 8+g.rng.IntN(32))
	case 3:
		fmt.Fprintf(&sb, "(%x|%x)", g.random(2), g.random(2))
	case 4:
		sb.WriteString("*")
	case 5:
		fmt.Fprintf(&sb, "%x?", g.rng.IntN(16))
	}
	lit(6 + g.rng.IntN(24))
	return fmt.Sprintf("Gen.Trojan.Body-%07d-0:0:*:%s", i, sb.String())
}

// writeSigs writes nHash hash and nBody body signatures into dir
// (gen.hdb, gen.hsb, gen.ndb; a kind with no signature has no file).
func writeSigs(tb testing.TB, dir string, seed uint64, nHash, nBody int) {
	tb.Helper()
	must(os.MkdirAll(dir, 0o755))
	g := newSigGen(seed)
	open := func(name string) (*os.File, *bufio.Writer) {
		f, err := os.Create(filepath.Join(dir, name))
		must(err)
		return f, bufio.NewWriterSize(f, 1<<20)
	}
	hf, hw := open("gen.hdb")
	sf, sw := open("gen.hsb")
	nf, nw := open("gen.ndb")
	for i := range nHash {
		line, hsb := g.hashLine(i)
		w := hw
		if hsb {
			w = sw
		}
		w.WriteString(line)
		w.WriteByte('\n')
	}
	for i := range nBody {
		nw.WriteString(g.bodyLine(i))
		nw.WriteByte('\n')
	}
	for _, fw := range []struct {
		f *os.File
		w *bufio.Writer
	}{{hf, hw}, {sf, sw}, {nf, nw}} {
		must(fw.w.Flush())
		must(fw.f.Close())
		// ClamAV refuses an empty signature file, and so does the loader.
		if fi, err := os.Stat(fw.f.Name()); err == nil && fi.Size() == 0 {
			must(os.Remove(fw.f.Name()))
		}
	}
}

// genSet is writeSigs parsed, in memory.
func genSet(tb testing.TB, seed uint64, nHash, nBody int) *signatures.Set {
	tb.Helper()
	dir := tb.TempDir()
	writeSigs(tb, dir, seed, nHash, nBody)
	set, err := signatures.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkEngineBuild measures New: time per build and the heap the
// engine keeps per signature (beyond the Set it was built from). Run with
//
//	go test ./internal/scan -run '^$' -bench EngineBuild -benchtime 3x
func BenchmarkEngineBuild(b *testing.B) {
	for _, c := range []struct{ hashes, bodies int }{
		{0, 20000},
		{0, 150000},
		{1000000, 0},
	} {
		b.Run(fmt.Sprintf("hash=%d/body=%d", c.hashes, c.bodies), func(b *testing.B) {
			set := genSet(b, 1, c.hashes, c.bodies)
			before := heapInUse()
			var e *Engine
			b.ResetTimer()
			for range b.N {
				e = nil
				e = New(set)
			}
			b.StopTimer()
			if e.err != nil {
				b.Fatal(e.err)
			}
			after := heapInUse()
			runtime.KeepAlive(e)
			runtime.KeepAlive(set)
			n := float64(c.hashes + c.bodies)
			b.ReportMetric(float64(after-before)/n, "engine-B/sig")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "build-ns/sig")
		})
	}
}

// BenchmarkEngineScan measures matching alone (no file system, one
// goroutine): a 64 MiB
// buffer, half random bytes and half English-like text, against 150,000
// body signatures and 1,000,000 hash signatures.
func BenchmarkEngineScan(b *testing.B) {
	set := genSet(b, 2, 1000000, 150000)
	e := New(set)
	if e.err != nil {
		b.Fatal(e.err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var data bytes.Buffer
	for data.Len() < 32<<20 {
		data.WriteString(words[rng.IntN(len(words))])
		data.WriteByte(' ')
	}
	g := newSigGen(5)
	data.Write(g.random(32 << 20))
	buf := data.Bytes()
	b.SetBytes(int64(len(buf)))
	runtime.GC()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if _, err := e.ScanReader(context.Background(), bytes.NewReader(buf), int64(len(buf))); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time per byte, which other jobs on a shared machine disturb
	// less than wall time.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/float64(len(buf)), "cpu-ns/B")
}
