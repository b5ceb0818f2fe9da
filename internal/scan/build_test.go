package scan

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// TestNameTableBlocks: names of every length up to maxName, families
// sharing prefixes, repeats and prefixes of the name before, across many
// blocks (groups crossing from one block to the next), come back as
// added; an empty or too long name is refused; a family of names takes a
// few bytes each.
func TestNameTableBlocks(t *testing.T) {
	t.Parallel()
	var nt nameTable
	var want []string
	add := func(s string) {
		t.Helper()
		i, ok := nt.add(s)
		if !ok || int(i) != len(want) {
			t.Fatalf("add(%d bytes) = %d, %v", len(s), i, ok)
		}
		want = append(want, s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; len(nt.chunks) < 5; i++ {
		switch i % 7 {
		case 0, 1, 2:
			add(fmt.Sprintf("Win.Trojan.Agent-%d-0", i))
		case 3:
			add(want[len(want)-1]) // the same again
		case 4:
			add(want[len(want)-1][:1+rng.IntN(len(want[len(want)-1]))]) // a prefix
		case 5:
			b := make([]byte, 1+rng.IntN(300))
			for j := range b {
				b[j] = byte('A' + rng.IntN(26))
			}
			add(string(b))
		case 6:
			if i%70 == 6 {
				add(strings.Repeat(string(rune('a'+i%26)), maxName-rng.IntN(3)))
			} else {
				add(fmt.Sprintf("Unix.Malware.Agent-%d-0", i))
			}
		}
	}
	for i, w := range want {
		if got := nt.get(uint32(i)); got != w {
			t.Fatalf("name %d: %d bytes %.20q, want %d bytes %.20q", i, len(got), got, len(w), w)
		}
	}
	midGroup := 0
	for k, c := range nt.chunks {
		if cap(c) != nameChunk {
			t.Fatalf("a block of capacity %d", cap(c))
		}
		if k > 0 && !slices.Contains(nt.group, uint32(k*nameChunk)) {
			midGroup++
		}
	}
	if midGroup == 0 {
		t.Error("no group crosses from a block to the next: that case is not tested")
	}
	if _, ok := nt.add(""); ok {
		t.Error("empty name added")
	}
	if _, ok := nt.add(strings.Repeat("y", maxName+1)); ok {
		t.Error("name longer than maxName added")
	}
	b := NewBuilder()
	long := signatures.HashSig{Name: strings.Repeat("y", maxName+1), Algo: signatures.MD5, Hash: make([]byte, 16), File: "x.hdb", Line: 2}
	if err := b.AddHash(&long); err == nil || !strings.Contains(err.Error(), "x.hdb:2: signature name of 65537 bytes") {
		t.Errorf("too long a name: %v", err)
	}

	var fam nameTable
	const n = 100_000
	for i := range n {
		if _, ok := fam.add(fmt.Sprintf("Gen.Trojan.Hash-%07d-0", i)); !ok {
			t.Fatal("add failed")
		}
	}
	if bytes := len(fam.chunks[len(fam.chunks)-1]) + (len(fam.chunks)-1)*nameChunk + 4*len(fam.group); bytes > 8*n {
		t.Errorf("%d names of 25 bytes take %d bytes", n, bytes)
	}
	if got := fam.get(n - 1); got != "Gen.Trojan.Hash-0099999-0" {
		t.Errorf("last name %q", got)
	}
}

// TestLoadToBuilder: an engine built by streaming a directory into a
// Builder (as vigil scan and the agent do) detects what New(Load) does,
// with hash signatures over several blocks of every algorithm.
func TestLoadToBuilder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 5*hashBlockLen + 123 // 3/5 MD5, 1/5 SHA-1, 1/5 SHA-256
	content := func(i int) []byte { return fmt.Appendf(nil, "content of file %d", i) }
	var hdb, hsb bytes.Buffer
	for i := range n {
		c := content(i)
		size := fmt.Sprint(len(c))
		if i%7 == 0 {
			size = "*"
		}
		fl := ""
		if size == "*" {
			fl = ":73"
		}
		switch i % 5 {
		case 0:
			fmt.Fprintf(&hsb, "%x:%s:Sha1-%d%s\n", sha1.Sum(c), size, i, fl)
		case 1:
			fmt.Fprintf(&hsb, "%x:%s:Sha256-%d%s\n", sha256.Sum256(c), size, i, fl)
		default:
			fmt.Fprintf(&hdb, "%x:%s:Md5-%d%s\n", md5.Sum(c), size, i, fl)
		}
	}
	files := map[string][]byte{
		"a.hdb": hdb.Bytes(), "b.hsb": hsb.Bytes(),
		"c.ndb":  []byte("Body-A:0:*:" + hx("planted body") + "\nBody-Internal:13:*:" + hx("planted body") + "\n"),
		"d.ign2": []byte("Md5-2\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBuilder()
	set, err := signatures.LoadTo(dir, signatures.LoadOptions{}, b)
	if err != nil {
		t.Fatal(err)
	}
	streamed := b.Engine()
	full, err := signatures.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fromSet := New(full)
	if streamed.Signatures() != n || fromSet.Signatures() != n || set.Len() != n || len(set.Skipped) != 2 {
		t.Fatalf("signatures: streamed %d, from a Set %d, counted %d; want %d; skipped %+v", streamed.Signatures(), fromSet.Signatures(), set.Len(), n, set.Skipped)
	}
	for _, i := range []int{0, 1, 2, 3, 4, 7, hashBlockLen - 1, hashBlockLen, hashBlockLen + 1, 5*hashBlockLen/2 + 3, n - 1, n - 2, n - 3} {
		data := content(i)
		want := []string{}
		switch {
		case i == 2: // ignored
		case i%5 == 0:
			want = []string{fmt.Sprintf("Sha1-%d", i)}
		case i%5 == 1:
			want = []string{fmt.Sprintf("Sha256-%d", i)}
		default:
			want = []string{fmt.Sprintf("Md5-%d", i)}
		}
		for _, e := range []*Engine{streamed, fromSet} {
			res, err := e.ScanReader(context.Background(), bytes.NewReader(data), int64(len(data)))
			if err != nil || !slices.Equal(res.Signatures, want) {
				t.Errorf("file %d: %v, %v; want %v", i, res.Signatures, err, want)
			}
		}
	}
	data := []byte("xx planted body xx")
	for _, e := range []*Engine{streamed, fromSet} {
		checkAll(t, e, data, "Body-A")
	}
}

// gcPercent reads the garbage collector's percentage.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestBuildGC: BuildGC lowers the percentage until the last of
// overlapping builds restores it, each restore counting once. Not
// parallel: the setting is the process's.
func TestBuildGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(137))
	r1 := BuildGC()
	r2 := BuildGC()
	if p := gcPercent(); p != BuildGCPercent {
		t.Fatalf("during builds: %d", p)
	}
	r1()
	r1()
	if p := gcPercent(); p != BuildGCPercent {
		t.Fatalf("one build of two done (its restore called twice): %d", p)
	}
	r2()
	if p := gcPercent(); p != 137 {
		t.Fatalf("after the builds: %d, want 137", p)
	}
}

// TestBuilderTargets checks that the Builder refuses a body signature of
// a target type the engine does not match, and that ScanReader (raw bytes
// as any file) matches target-0 signatures only.
func TestBuilderTargets(t *testing.T) {
	t.Parallel()
	set, err := signatures.Parse("t.ndb", strings.NewReader("Any:0:*:414243\nHTML:3:*:414243\nMail:4:*:414243\nText:7:*:414243\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Bodies) != 4 {
		t.Fatalf("%d bodies loaded, want 4", len(set.Bodies))
	}
	e := New(set)
	res, err := e.ScanReader(context.Background(), strings.NewReader("xxABCxx"), 7)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Signatures, []string{"Any"}) || res.First != "Any" {
		t.Errorf("raw bytes matched %q (first %q), want Any only", res.Signatures, res.First)
	}
	pe := set.Bodies[0]
	pe.Name, pe.Target = "Internal", 13
	b := NewBuilder()
	if err := b.AddBody(&pe); err == nil || !strings.Contains(err.Error(), "target type 13") {
		t.Errorf("AddBody of a target-13 signature: %v, want an error naming target type 13", err)
	}
	if b.Engine().err == nil {
		t.Error("engine built after a refused signature has no error")
	}
}
