package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// sigLine returns a signature line like those of ClamAV's files.
func sigLine(rng *rand.Rand, ext string) string {
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	name := fmt.Sprintf("Win.Trojan.Agent-%d-0", rng.IntN(1e7))
	switch ext {
	case "ndb":
		return fmt.Sprintf("%s:0:*:%s\n", name, hex(16+rng.IntN(40)))
	case "ldb":
		return fmt.Sprintf("%s;Engine:51-255,Target:1;0&1;%s;%s\n", name, hex(20), hex(24))
	}
	return fmt.Sprintf("%s:%d:%s\n", hex(32), rng.IntN(1e6), name)
}

func textFile(rng *rand.Rand, ext string, lines int) []byte {
	var b strings.Builder
	for range lines {
		b.WriteString(sigLine(rng, ext))
	}
	return []byte(b.String())
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// editLines changes, removes and adds lines of p at random places.
func editLines(rng *rand.Rand, p []byte, ext string, edits int) []byte {
	lines := strings.SplitAfter(string(p), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for range edits {
		k := rng.IntN(len(lines) + 1)
		switch rng.IntN(3) {
		case 0:
			lines = append(lines[:k], append([]string{sigLine(rng, ext)}, lines[k:]...)...)
		case 1:
			if k < len(lines) {
				lines = append(lines[:k], lines[k+1:]...)
			}
		case 2:
			if k < len(lines) {
				lines[k] = sigLine(rng, ext)
			}
		}
	}
	return []byte(strings.Join(lines, ""))
}

// editBytes overwrites, inserts and cuts runs of bytes of p.
func editBytes(rng *rand.Rand, p []byte, edits int) []byte {
	p = bytes.Clone(p)
	for range edits {
		k := rng.IntN(len(p) + 1)
		n := 1 + rng.IntN(40)
		switch rng.IntN(3) {
		case 0:
			p = append(p[:k:k], append(randBytes(rng, n), p[k:]...)...)
		case 1:
			p = append(p[:k:k], p[min(k+n, len(p)):]...)
		case 2:
			copy(p[k:], randBytes(rng, n))
		}
	}
	return p
}

// release returns a random release's files: text signature files and a
// binary one.
func release(rng *rand.Rand) map[string][]byte {
	files := map[string][]byte{}
	for _, ext := range []string{"hdb", "hsb", "ndb", "ldb"} {
		if rng.IntN(5) > 0 {
			files[fmt.Sprintf("daily.%s", ext)] = textFile(rng, ext, rng.IntN(300))
		}
	}
	files["daily.bin"] = randBytes(rng, rng.IntN(5000))
	return files
}

// evolve returns the next release of files.
func evolve(rng *rand.Rand, files map[string][]byte) map[string][]byte {
	next := map[string][]byte{}
	for name, p := range files {
		switch {
		case rng.IntN(8) == 0: // removed
		case rng.IntN(6) == 0: // unchanged
			next[name] = p
		case strings.HasSuffix(name, ".bin"):
			next[name] = editBytes(rng, p, rng.IntN(10))
		default:
			ext := name[strings.LastIndexByte(name, '.')+1:]
			next[name] = editLines(rng, p, ext, rng.IntN(20))
			if rng.IntN(10) == 0 && len(next[name]) > 0 { // no final newline
				next[name] = next[name][:len(next[name])-1]
			}
		}
	}
	if rng.IntN(3) == 0 {
		next[fmt.Sprintf("new%d.ndb", rng.IntN(100))] = textFile(rng, "ndb", rng.IntN(50))
	}
	if len(next) == 0 {
		next["main.hdb"] = textFile(rng, "hdb", 3)
	}
	return next
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ops := map[byte]int{}
	for i := range 300 {
		base := release(rng)
		result := evolve(rng, base)
		d, err := Make(base, result)
		if err != nil {
			t.Fatalf("case %d: Make: %v", i, err)
		}
		got, err := Apply(d, base)
		if err != nil {
			t.Fatalf("case %d: Apply: %v", i, err)
		}
		if !maps.EqualFunc(got, result, bytes.Equal) {
			t.Fatalf("case %d: Apply(Make(base, result), base) differs from result", i)
		}
		body, err := decompress(d)
		if err != nil {
			t.Fatal(err)
		}
		for op := range opsOf(t, body) {
			ops[op]++
		}
	}
	// Every kind of file op was exercised.
	for _, op := range []byte{opUnchanged, opRemoved, opAdded, opLines, opBinary} {
		if ops[op] == 0 {
			t.Errorf("op %d never made", op)
		}
	}
}

// opsOf returns the op of every file of a body.
func opsOf(t *testing.T, body []byte) map[byte]bool {
	t.Helper()
	r := &reader{b: body}
	out := map[byte]bool{}
	n := r.uvarint()
	for range n {
		r.bytes(repo.MaxBundleNameLen)
		op := r.byte()
		out[op] = true
		switch op {
		case opUnchanged, opRemoved:
			r.id()
		case opAdded:
			r.bytes(repo.MaxBundleFileSize)
		case opLines, opBinary:
			r.id()
			r.id()
			for r.err == nil {
				ins := r.byte()
				if ins == insEnd {
					break
				}
				n := r.uvarint()
				if ins == insAdd {
					r.take(int(n))
				}
			}
		}
	}
	if r.err != nil || len(r.b) != 0 {
		t.Fatalf("body does not parse: %v, %d bytes left", r.err, len(r.b))
	}
	return out
}

// TestLineEditsSmall checks that a few line edits in a large file make a
// delta of about their size, and that a small change in a long line
// takes the binary patch.
func TestLineEditsSmall(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := map[string][]byte{"daily.hdb": textFile(rng, "hdb", 50000), "daily.ldb": textFile(rng, "ldb", 100)}
	result := maps.Clone(base)
	result["daily.hdb"] = editLines(rng, base["daily.hdb"], "hdb", 30)
	d, err := Make(base, result)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) > 30*100 {
		t.Errorf("30 line edits in a file of %d bytes make a delta of %d bytes", len(base["daily.hdb"]), len(d))
	}
	if got, err := Apply(d, base); err != nil || !bytes.Equal(got["daily.hdb"], result["daily.hdb"]) {
		t.Fatalf("Apply: %v", err)
	}

	long := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	base = map[string][]byte{"x.ndb": append([]byte("Sig:0:*:"), long...)}
	changed := bytes.Clone(base["x.ndb"])
	changed[5000] ^= 1
	result = map[string][]byte{"x.ndb": changed}
	d, err = Make(base, result)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := decompress(d)
	if ops := opsOf(t, body); !ops[opBinary] {
		t.Errorf("one byte changed in a 16 KB line: ops %v, want a binary patch", ops)
	}
	if got, err := Apply(d, base); err != nil || !bytes.Equal(got["x.ndb"], changed) {
		t.Fatalf("Apply: %v", err)
	}
}

func TestApplyRefusesWrongBase(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := map[string][]byte{
		"a.hdb": textFile(rng, "hdb", 100),
		"b.ndb": textFile(rng, "ndb", 100),
		"c.ldb": textFile(rng, "ldb", 10),
	}
	result := map[string][]byte{
		"a.hdb": base["a.hdb"],
		"b.ndb": editLines(rng, base["b.ndb"], "ndb", 5),
		"d.hsb": textFile(rng, "hsb", 5),
	}
	d, err := Make(base, result)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		change func(map[string][]byte)
		msg    string
	}{
		{"patched file changed", func(m map[string][]byte) { m["b.ndb"] = bytes.Clone(m["b.ndb"]); m["b.ndb"][3] ^= 1 }, "base file b.ndb: SHA-256 differs"},
		{"unchanged file changed", func(m map[string][]byte) { m["a.hdb"] = append(bytes.Clone(m["a.hdb"]), 'x') }, "base file a.hdb: "},
		{"removed file changed", func(m map[string][]byte) { m["c.ldb"] = m["c.ldb"][1:] }, "base file c.ldb"},
		{"patched file missing", func(m map[string][]byte) { delete(m, "b.ndb") }, "base file b.ndb: missing"},
		{"extra file", func(m map[string][]byte) { m["e.ndb"] = []byte("x\n") }, "base has file e.ndb, which the delta does not name"},
		{"added file present", func(m map[string][]byte) { m["d.hsb"] = []byte("x\n") }, "the delta adds it but base has it"},
	} {
		b := maps.Clone(base)
		tt.change(b)
		before := maps.Clone(b)
		got, err := Apply(d, b)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Apply = %v, want an error containing %q", tt.name, err, tt.msg)
		}
		if got != nil {
			t.Errorf("%s: a result with the error", tt.name)
		}
		if !maps.EqualFunc(b, before, bytes.Equal) {
			t.Errorf("%s: Apply changed base", tt.name)
		}
	}
}

// rawDelta compresses body into a delta as Make does.
func rawDelta(t *testing.T, body []byte) []byte {
	t.Helper()
	d, err := compress(body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestApplyRefusesMalformed(t *testing.T) {
	base := map[string][]byte{"a.hdb": []byte("line one\nline two\n")}
	good, err := Make(base, map[string][]byte{"a.hdb": []byte("line one\nline 2\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(good, base); err != nil {
		t.Fatal(err)
	}
	enc := func(f func(e *encoder)) []byte {
		var e encoder
		f(&e)
		return rawDelta(t, e.buf)
	}
	id := func(e *encoder, p []byte) { e.id(p) }
	a := base["a.hdb"]
	patch := func(res []byte, script ...any) []byte {
		return enc(func(e *encoder) {
			e.uvarint(1)
			e.bytes([]byte("a.hdb"))
			e.byte(opLines)
			id(e, a)
			id(e, res)
			for _, x := range script {
				switch x := x.(type) {
				case int:
					e.uvarint(uint64(x))
				case byte:
					e.byte(x)
				case string:
					e.buf = append(e.buf, x...)
				}
			}
		})
	}
	manyAdded := enc(func(e *encoder) {
		e.uvarint(repo.MaxBundleFiles + 2)
		e.bytes([]byte("a.hdb"))
		e.byte(opRemoved)
		id(e, a)
		for i := range repo.MaxBundleFiles + 1 {
			e.bytes(fmt.Appendf(nil, "f%04d.ndb", i))
			e.byte(opAdded)
			e.bytes([]byte("x\n"))
		}
	})
	bigFile := enc(func(e *encoder) {
		e.uvarint(1)
		e.bytes([]byte("a.hdb"))
		e.byte(opLines)
		id(e, a)
		e.uvarint(repo.MaxBundleFileSize + 1)
		e.buf = append(e.buf, make([]byte, 32)...)
	})
	for _, tt := range []struct {
		name string
		d    []byte
		msg  string
	}{
		{"empty", nil, "not a Vigil delta"},
		{"bad magic", append([]byte("VGLDELTX"), good[8:]...), "not a Vigil delta"},
		{"bad version", append([]byte(Magic+"\x02"), good[9:]...), "format version 2"},
		{"bad compression", append([]byte(Magic+"\x01\x07"), good[10:]...), "compression 7"},
		{"truncated", good[:len(good)-3], "decompress"},
		{"trailing garbage", append(bytes.Clone(good), 1, 2, 3), "decompress"},
		{"length too short", append(append([]byte(Magic+"\x01\x01"), binary.AppendUvarint(nil, 3)...), good[11:]...), ""},
		{"bomb", append(append([]byte(Magic+"\x01\x01"), binary.AppendUvarint(nil, 64<<20)...), good[11:]...), "beyond the limit"},
		{"trailing body", enc(func(e *encoder) {
			e.uvarint(1)
			e.bytes([]byte("a.hdb"))
			e.byte(opUnchanged)
			id(e, a)
			e.byte(9)
		}), "1 bytes after the last file"},
		{"bad name", enc(func(e *encoder) { e.uvarint(1); e.bytes([]byte("x/a.hdb")); e.byte(opAdded); e.bytes([]byte("x")) }), "path separator"},
		{"names out of order", enc(func(e *encoder) {
			e.uvarint(2)
			e.bytes([]byte("b.hdb"))
			e.byte(opAdded)
			e.bytes([]byte("x"))
			e.bytes([]byte("a.hdb"))
			e.byte(opUnchanged)
			id(e, a)
		}), "out of order"},
		{"unknown op", enc(func(e *encoder) { e.uvarint(1); e.bytes([]byte("a.hdb")); e.byte(9) }), "unknown op 9"},
		{"no result files", enc(func(e *encoder) { e.uvarint(1); e.bytes([]byte("a.hdb")); e.byte(opRemoved); id(e, a) }), "no files"},
		{"too many files", manyAdded, "more than 1000 files"},
		{"file too big", bigFile, "more than the limit"},
		{"script past the end", patch([]byte("x"), insCopy, 3, insEnd), "past the end"},
		{"script count 0", patch([]byte("x"), insSkip, 0, insEnd), "count of 0"},
		{"script leaves base", patch([]byte("line one\n"), insCopy, 1, insEnd), "unread"},
		{"script grows", patch([]byte("line one\n"), insCopy, 2, insEnd), "grows beyond"},
		{"script wrong sha", patch([]byte("line one\nline 2\n"), insCopy, 1, insSkip, 1, insAdd, 7, "line 3\n", insEnd), "SHA-256 differs"},
		{"script unknown", patch([]byte("x"), byte(8), 1, insEnd), "unknown instruction 8"},
		{"script truncated", patch([]byte("x"), insCopy), "truncated"},
	} {
		got, err := Apply(tt.d, base)
		if err == nil || got != nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Apply = %v (%d files), want an error containing %q", tt.name, err, len(got), tt.msg)
		}
	}
}

func TestMakeRefuses(t *testing.T) {
	ok := map[string][]byte{"a.hdb": []byte("x\n")}
	for _, tt := range []struct {
		name         string
		base, result map[string][]byte
		msg          string
	}{
		{"empty base", nil, ok, "base has no files"},
		{"empty result", ok, map[string][]byte{}, "result has no files"},
		{"bad name", ok, map[string][]byte{".hidden": nil}, "starts with a dot"},
	} {
		if _, err := Make(tt.base, tt.result); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Make = %v, want an error containing %q", tt.name, err, tt.msg)
		}
	}
}

func FuzzApply(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := map[string][]byte{
		"daily.hdb": textFile(rng, "hdb", 40),
		"daily.ndb": textFile(rng, "ndb", 20),
		"daily.bin": randBytes(rng, 300),
	}
	for range 8 {
		d, err := Make(base, evolve(rng, base))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		before := maps.Clone(base)
		got, err := Apply(d, base)
		if !maps.EqualFunc(base, before, bytes.Equal) {
			t.Fatal("Apply changed base")
		}
		if err != nil {
			if got != nil {
				t.Fatal("a result with an error")
			}
			return
		}
		if _, err := repo.MakeBundle(got); err != nil {
			t.Fatalf("Apply returned what is not a bundle: %v", err)
		}
	})
}
