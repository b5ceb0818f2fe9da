package scan

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// eicar is the EICAR test file.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// mustSet parses signature files given as name -> content.
func mustSet(t testing.TB, files map[string]string) *signatures.Set {
	t.Helper()
	set := &signatures.Set{}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s, err := signatures.Parse(n, strings.NewReader(files[n]))
		if err != nil {
			t.Fatal(err)
		}
		set.Add(s)
	}
	return set
}

// scanWith matches data with the given read chunk size.
func scanWith(t testing.TB, e *Engine, chunk int, data []byte) []string {
	t.Helper()
	c := *e
	c.chunk = chunk
	res, err := c.ScanReader(context.Background(), bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return res.Signatures
}

var chunks = []int{1, 2, 3, 7, 16, 64, 4096, defaultChunk}

// checkAll asserts that data matches exactly want, with every chunk size.
func checkAll(t *testing.T, e *Engine, data []byte, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	for _, c := range chunks {
		got := scanWith(t, e, c, data)
		if got == nil {
			got = []string{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("chunk %d: got %q, want %q", c, got, want)
		}
	}
}

func pad(parts ...string) []byte {
	var b bytes.Buffer
	b.WriteString("........")
	for _, p := range parts {
		b.WriteString(p)
	}
	b.WriteString("........")
	return b.Bytes()
}

func hx(s string) string { return hex.EncodeToString([]byte(s)) }

func TestEICAR(t *testing.T) {
	e := New(mustSet(t, map[string]string{
		"t.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
		"t.ndb": "Eicar-Body:0:0:" + hx(eicar) + "\n",
	}))
	checkAll(t, e, []byte(eicar), "Eicar-Body", "Eicar-Test-Signature")
	// Not at offset 0 and longer: the body signature's offset and the
	// hash's size both fail.
	checkAll(t, e, []byte(" "+eicar))
	near := []byte(eicar)
	near[30] ^= 1
	checkAll(t, e, near)
}

func TestBodyFeatures(t *testing.T) {
	tests := []struct {
		name, sig string
		hit, miss []string // file contents (padded with 8 dots each side)
	}{
		{"literal", "*:" + hx("ABCD"), []string{"ABCD", "xABCDx"}, []string{"ABCE", "ABC"}},
		{"wildcard", "*:" + hx("AB") + "??" + hx("D"), []string{"ABxD", "AB\x00D"}, []string{"ABD", "ABxxD"}},
		{"nibble high", "*:" + hx("AB") + "4?" + hx("D"), []string{"ABCD", "ABOD"}, []string{"AB\x30D"}},
		{"nibble low", "*:" + hx("AB") + "?3" + hx("D"), []string{"ABCD", "ABSD"}, []string{"ABDD"}},
		{"alt single", "*:" + hx("AB") + "(43|44)" + hx("E"), []string{"ABCE", "ABDE"}, []string{"ABEE"}},
		{"alt multi", "*:" + hx("AB") + "(4344|4546)" + hx("G"), []string{"ABCDG", "ABEFG"}, []string{"ABCFG", "ABEDG"}},
		{"alt nibble", "*:" + hx("AB") + "(4?|50)" + hx("Z"), []string{"ABCZ", "ABPZ"}, []string{"ABQZ"}},
		{"alt first", "*:(41|42)" + hx("XY"), []string{"AXY", "BXY"}, []string{"CXY"}},
		{"fixed gap", "*:" + hx("AB") + "{2}" + hx("CD"), []string{"ABxxCD"}, []string{"ABxCD", "ABxxxCD"}},
		{"gap {0} is any distance, as in ClamAV", "*:" + hx("AB") + "{0}" + hx("CD"), []string{"ABCD", "ABxCD", "AB" + strings.Repeat("x", 300) + "CD"}, []string{"CDAB"}},
		{"range gap", "*:" + hx("AB") + "{1-3}" + hx("CD"), []string{"ABxCD", "ABxxxCD"}, []string{"ABCD", "ABxxxxCD"}},
		{"up to", "*:" + hx("AB") + "{-2}" + hx("CD"), []string{"ABCD", "ABxxCD"}, []string{"ABxxxCD"}},
		{"at least", "*:" + hx("AB") + "{2-}" + hx("CD"), []string{"ABxxCD", "AB" + strings.Repeat("x", 500) + "CD"}, []string{"ABxCD", "CDAB"}},
		{"star", "*:" + hx("AB") + "*" + hx("CD"), []string{"ABCD", "AB" + strings.Repeat("x", 900) + "CD"}, []string{"CDAB", "ABC"}},
		{"star no overlap", "*:" + hx("ABAB") + "*" + hx("ABAB"), []string{"ABABABAB"}, []string{"ABABAB"}},
		{"three parts", "*:" + hx("AB") + "*" + hx("CD") + "{-1}" + hx("EF"), []string{"ABCDEF", "AB..CD.EF", "CDABCDEF"}, []string{"AB..CD..EF", "CDEFAB"}},
		{"long fixed gap", "*:" + hx("AB") + "{200}" + hx("CD"), []string{"AB" + strings.Repeat("x", 200) + "CD"}, []string{"AB" + strings.Repeat("x", 199) + "CD"}},
		{"leading wildcard", "*:????" + hx("ABCD"), []string{"ABCD"}, nil},
		{"offset", "8:" + hx("ABCD"), []string{"ABCD", "ABCDABCD"}, []string{"xABCD"}},
		{"offset range", "6,2:" + hx("ABCD"), []string{"ABCD"}, []string{"xABCD"}},
		{"offset prefix", "6:????" + hx("ABCD"), []string{"ABCD"}, []string{"xABCD"}},
		{"eof", "EOF-12:" + hx("ABCD"), []string{"ABCD", "ABCDABCD"}, []string{"ABCDx"}},
		{"eof range", "EOF-14,2:" + hx("ABCD"), []string{"ABCD", "ABCDxx"}, []string{"ABCDxxx"}},
		// EOF-n in a file shorter than n never matches, though the shift
		// reaches into the file (ClamAV); in a file of exactly n bytes it
		// starts at byte 0.
		{"eof longer than file", "EOF-30,30:" + hx("ABCD"), []string{"ABCD" + strings.Repeat("x", 10)}, []string{"ABCD", "ABCD" + strings.Repeat("x", 9)}},
		{"eof equal to file", "EOF-21,8:" + hx("ABCD"), []string{"ABCDx"}, []string{"xABCD", "ABCD"}},
		{"eof past end", "EOF-12,50:" + hx("ABCD"), []string{"ABCD", "xxABCD"}, []string{"ABC"}},
		{"offset past end", "10,50:" + hx("ABCD"), []string{"xxABCD"}, []string{"xABCD"}},
		{"eof parts", "EOF-15:" + hx("AB") + "{1-3}" + hx("EF"), []string{"ABCDEFG"}, []string{"ABCDEF"}},
		{"offset parts", "8:" + hx("AB") + "*" + hx("EF"), []string{"ABCDEFG"}, []string{"xABCDEFG"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, off, _ := strings.Cut(tc.sig, ":")
			_ = name
			e := New(mustSet(t, map[string]string{"t.ndb": "S:0:" + tc.sig + "\n"}))
			_ = off
			for _, h := range tc.hit {
				checkAll(t, e, pad(h), "S")
			}
			for _, m := range tc.miss {
				checkAll(t, e, pad(m))
			}
		})
	}
}

func TestTooSmall(t *testing.T) {
	// ClamAV ignores files of 5 bytes or less.
	five := "ABCDE"
	e := New(mustSet(t, map[string]string{
		"t.ndb": "B:0:*:" + hx("ABCD") + "\n",
		"t.hdb": fmt.Sprintf("%x:5:H\n", md5.Sum([]byte(five))),
	}))
	checkAll(t, e, []byte(five))
	checkAll(t, e, []byte("ABCDEF"), "B")
}

func TestChunkBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sig := "01020304050607080910111213141516"
	e := New(mustSet(t, map[string]string{"t.ndb": "S:0:*:" + sig + "\n" +
		"G:0:*:a1a2a3a4*b1b2b3b4{100-200}c1c2c3c4\n"}))
	raw, _ := hex.DecodeString(sig)
	for _, chunk := range []int{7, 16, 64} {
		for at := 0; at < 3*chunk; at++ {
			data := make([]byte, 4*chunk+len(raw))
			for i := range data {
				data[i] = byte(rng.IntN(200)) + 0x20
			}
			copy(data[at:], raw)
			if got := scanWith(t, e, chunk, data); !slices.Equal(got, []string{"S"}) {
				t.Fatalf("chunk %d, at %d: got %q", chunk, at, got)
			}
		}
	}
	// A pattern whose parts are many chunks apart.
	data := make([]byte, 1<<20)
	copy(data[1000:], []byte{0xa1, 0xa2, 0xa3, 0xa4})
	copy(data[500000:], []byte{0xb1, 0xb2, 0xb3, 0xb4})
	copy(data[500004+150:], []byte{0xc1, 0xc2, 0xc3, 0xc4})
	for _, chunk := range []int{64, 4096, defaultChunk} {
		if got := scanWith(t, e, chunk, data); !slices.Equal(got, []string{"G"}) {
			t.Fatalf("chunk %d: got %q", chunk, got)
		}
	}
	data[500004+150] = 0 // near miss
	for _, chunk := range []int{64, 4096, defaultChunk} {
		if got := scanWith(t, e, chunk, data); len(got) != 0 {
			t.Fatalf("chunk %d: got %q", chunk, got)
		}
	}
}

func TestHashBySize(t *testing.T) {
	data := []byte("some file content that is malware")
	md := md5.Sum(data)
	s1 := sha1.Sum(data)
	s256 := sha256.Sum256(data)
	n := len(data)
	set := mustSet(t, map[string]string{
		"a.hdb": fmt.Sprintf("%x:%d:MD5\n%x:%d:MD5-wrong-size\n", md, n, md, n+1),
		"a.hsb": fmt.Sprintf("%x:%d:SHA1\n%x:%d:SHA256\n", s1, n, s256, n),
	})
	e := New(set)
	checkAll(t, e, data, "MD5", "SHA1", "SHA256")
	near := slices.Clone(data)
	near[0] ^= 1
	checkAll(t, e, near)

	// Only the algorithms a signature with this size needs are computed.
	m := e.newMatcher()
	if _, err := m.scan(context.Background(), bytes.NewReader(data), int64(n), anyFile, false); err != nil {
		t.Fatal(err)
	}
	if m.hashers[signatures.MD5] == nil || m.hashers[signatures.SHA1] == nil || m.hashers[signatures.SHA256] == nil {
		t.Errorf("size %d: hashers %v, want all three", n, m.hashers)
	}
	other := append(slices.Clone(data), 'x', 'y')
	if _, err := m.scan(context.Background(), bytes.NewReader(other), int64(len(other)), anyFile, false); err != nil {
		t.Fatal(err)
	}
	if m.hashers != [3]hash.Hash{} {
		t.Errorf("size %d: hashers %v, want none", len(other), m.hashers)
	}

	// A "*" size makes every file hashed with that algorithm.
	e = New(mustSet(t, map[string]string{"b.hsb": fmt.Sprintf("%x:*:Any256:73\n", s256)}))
	checkAll(t, e, data, "Any256")
	m = e.newMatcher()
	if _, err := m.scan(context.Background(), bytes.NewReader(other), int64(len(other)), anyFile, false); err != nil {
		t.Fatal(err)
	}
	if m.hashers[signatures.SHA256] == nil || m.hashers[signatures.MD5] != nil {
		t.Errorf("hashers %v, want SHA-256 only", m.hashers)
	}
}

// refMatch is a brute-force matcher: does the pattern match data at any
// allowed start? It works out the allowed starts itself, as ClamAV does,
// rather than through Offset.Range: EOF-n in a file shorter than n allows
// none, and starts past the end of the data never match.
func refMatch(b *signatures.BodySig, data []byte) bool {
	if len(data) < minScanSize {
		return false
	}
	size := int64(len(data))
	var lo, hi int64
	switch b.Offset.Kind {
	case signatures.OffsetAny:
		lo, hi = 0, size
	case signatures.OffsetAbs:
		lo, hi = b.Offset.N, b.Offset.N+b.Offset.Shift
	case signatures.OffsetEOF:
		if b.Offset.N > size {
			return false
		}
		lo = size - b.Offset.N
		hi = lo + b.Offset.Shift
	}
	hi = min(hi, size)
	memo := map[[2]int]bool{}
	var from func(i, s int) bool
	from = func(i, s int) bool {
		k := [2]int{i, s}
		if v, ok := memo[k]; ok {
			return v
		}
		p := &b.Pattern.Parts[i]
		r := false
		if s+p.Len() <= len(data) && p.MatchAt(data[s:]) {
			if i == len(b.Pattern.Parts)-1 {
				r = true
			} else {
				g := b.Pattern.Gaps[i]
				e := s + p.Len()
				last := len(data)
				if g.Max != signatures.Unbounded {
					last = min(last, e+int(g.Max))
				}
				for t := e + int(g.Min); t <= last && !r; t++ {
					r = from(i+1, t)
				}
			}
		}
		memo[k] = r
		return r
	}
	for s := lo; s <= hi; s++ {
		if from(0, int(s)) {
			return true
		}
	}
	return false
}

// randomSig writes a random hex signature over the bytes a, b, c, so that
// partial matches abound.
func randomSig(rng *rand.Rand) string {
	var sb strings.Builder
	lit := func() {
		for range 2 + rng.IntN(3) {
			fmt.Fprintf(&sb, "%02x", 'a'+rng.IntN(3))
		}
	}
	lit()
	for range rng.IntN(4) {
		switch rng.IntN(9) {
		case 0:
			sb.WriteString("??")
		case 1:
			sb.WriteString("6?")
		case 2:
			sb.WriteString("(61|63)")
		case 3:
			sb.WriteString("(6162|6361)")
		case 4:
			fmt.Fprintf(&sb, "{%d}", rng.IntN(4))
		case 5:
			a := rng.IntN(4)
			fmt.Fprintf(&sb, "{%d-%d}", a, a+rng.IntN(5))
		case 6:
			fmt.Fprintf(&sb, "{-%d}", rng.IntN(6))
		case 7:
			fmt.Fprintf(&sb, "{%d-}", rng.IntN(6))
		case 8:
			sb.WriteString("*")
		}
		lit()
	}
	return sb.String()
}

func randomOffset(rng *rand.Rand) string {
	switch rng.IntN(6) {
	case 0:
		return itoa(rng.IntN(20))
	case 1:
		return itoa(rng.IntN(20)) + "," + itoa(rng.IntN(30))
	case 2:
		return "EOF-" + itoa(rng.IntN(40))
	case 3:
		return "EOF-" + itoa(rng.IntN(40)) + "," + itoa(rng.IntN(10))
	case 4:
		// Around the data's sizes (below 300): n below, at and above
		// the size, with shifts reaching into the data.
		return "EOF-" + itoa(rng.IntN(320)) + "," + itoa(rng.IntN(300))
	}
	return "*"
}

func itoa(i int) string { return fmt.Sprint(i) }

// TestDifferential compares the engine with the brute-force matcher on
// random signatures, data and chunk sizes.
func TestDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var nMatch, nSig int
	defer func() { t.Logf("last batch %d signatures; %d matches in all", nSig, nMatch) }()
	iters := 10000
	if testing.Short() {
		iters = 300
	}
	var ndb strings.Builder
	for i := 0; i < iters; i++ {
		line := fmt.Sprintf("R%d:0:%s:%s", i, randomOffset(rng), randomSig(rng))
		if _, err := signatures.Parse("x.ndb", strings.NewReader(line)); err == nil {
			ndb.WriteString(line + "\n") // else not valid in ClamAV either
		}
		if (i%100 == 99 || i == iters-1) && ndb.Len() > 0 {
			set := mustSet(t, map[string]string{"r.ndb": ndb.String()})
			e := New(set)
			for range 20 {
				data := make([]byte, rng.IntN(300))
				for j := range data {
					data[j] = byte('a' + rng.IntN(3))
					if rng.IntN(20) == 0 {
						data[j] = 'x'
					}
				}
				var want []string
				for k := range set.Bodies {
					if refMatch(&set.Bodies[k], data) {
						want = append(want, set.Bodies[k].Name)
					}
				}
				slices.Sort(want)
				nMatch += len(want)
				nSig = len(set.Bodies)
				for _, c := range []int{1, 3, 8, 1000} {
					got := scanWith(t, e, c, data)
					if !slices.Equal(got, want) {
						t.Fatalf("data %q chunk %d:\n got %q\nwant %q\nsigs:\n%s", data, c, got, want, ndb.String())
					}
				}
			}
			ndb.Reset()
		}
	}
}

// TestAllByteValues: anchors using every byte value (the automaton
// library's byte classes overflow there unless disabled).
func TestAllByteValues(t *testing.T) {
	var ndb strings.Builder
	var data []byte
	for i := range 128 {
		anchor := []byte{byte(2 * i), byte(2*i + 1), byte(255 - 2*i), 0x5a}
		fmt.Fprintf(&ndb, "S%03d:0:*:%x\n", i, anchor)
		data = append(data, anchor...)
		data = append(data, '.')
	}
	e := New(mustSet(t, map[string]string{"t.ndb": ndb.String()}))
	got := scanWith(t, e, defaultChunk, data)
	if len(got) != 128 {
		t.Fatalf("got %d detections, want 128: %q", len(got), got)
	}
}

// TestAnchorsAcrossChunks: signatures whose anchors are of every length
// class the filter has (8, 3, 2 and 1 fixed bytes; a two-part signature
// whose parts are in different classes, either way round) match wherever they lie across
// the reads' boundaries, including the default chunk's.
func TestAnchorsAcrossChunks(t *testing.T) {
	t.Parallel()
	set := mustSet(t, map[string]string{"t.ndb": "" +
		"Long:0:*:f1f2f3f4f5f6f7f8f9fafb\n" +
		"Three:0:*:a1a2a3??b1b2b3??c1c2c3\n" +
		"Two:0:*:d1d2??d3d4??d5d6\n" +
		"Mixed:0:*:e1e2e3e4e5e6e7e8*c5c6??c7c8\n" +
		"Reversed:0:*:9192??9394*e9eaebecedeeeff0\n"})
	// ClamAV's syntax has no signature without two consecutive fixed
	// bytes; the engine still takes one (a one-byte anchor).
	set.Bodies = append(set.Bodies, signatures.BodySig{Name: "One", Pattern: &signatures.Pattern{Parts: []signatures.Part{
		{Value: []byte{0xb7, 0, 0xb8, 0, 0xb9}, Mask: []byte{0xff, 0, 0xff, 0, 0xff}}}}})
	e := New(set)
	if e.err != nil {
		t.Fatal(e.err)
	}
	if len(e.anchors.classes) != 4 {
		t.Fatalf("%d anchor classes, want 4 (1, 2, 3 and 4 bytes)", len(e.anchors.classes))
	}
	match := []byte{
		0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, '.',
		0xa1, 0xa2, 0xa3, 'x', 0xb1, 0xb2, 0xb3, 'x', 0xc1, 0xc2, 0xc3, '.',
		0xd1, 0xd2, 'x', 0xd3, 0xd4, 'x', 0xd5, 0xd6, '.',
		0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, '.', 0xc5, 0xc6, 'x', 0xc7, 0xc8, '.',
		0x91, 0x92, 'x', 0x93, 0x94, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef, 0xf0, '.',
		0xb7, 'x', 0xb8, 'x', 0xb9,
	}
	want := []string{"Long", "Mixed", "One", "Reversed", "Three", "Two"}
	try := func(chunk, at, size int) {
		data := bytes.Repeat([]byte{'.'}, size)
		copy(data[at:], match)
		if got := scanWith(t, e, chunk, data); !slices.Equal(got, want) {
			t.Fatalf("chunk %d, match at %d of %d: got %q, want %q", chunk, at, size, got, want)
		}
		near := slices.Clone(data)
		near[at+len(match)-1] ^= 1 // "One" no more
		if got := scanWith(t, e, chunk, near); !slices.Equal(got, []string{"Long", "Mixed", "Reversed", "Three", "Two"}) {
			t.Fatalf("chunk %d, near miss at %d: got %q", chunk, at, got)
		}
	}
	for _, chunk := range []int{1, 5, 16, 64} {
		for at := 0; at < 3*chunk+len(match); at++ {
			try(chunk, at, 4*chunk+2*len(match))
		}
	}
	// Around the first read's end with the default chunk (the buffer holds
	// the look-back, a chunk and the longest anchor).
	first := e.maxPart + defaultChunk + maxAnchorLen
	for at := first - len(match) - 2; at <= first+2; at++ {
		try(defaultChunk, at, first+defaultChunk)
	}
}

// TestAnchorChoice: the filter looks at an anchor's first 4 bytes, so
// they should be the part's most unusual fixed bytes, not zeros.
func TestAnchorChoice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hex       string
		off, n    int
		wantBytes string
	}{
		{"000000000000000041424344", 8, 4, "ABCD"},
		{"41424344454647484950", 0, 8, "ABCDEFGH"},
		{"0000??4142??00004344", 6, 4, "\x00\x00CD"}, // a run of 4 beats "AB"
		{"0000??4142??0043", 3, 2, "AB"},
		{"00000000??ffffffff45464748ffff", 9, 6, "EFGH\xff\xff"},
	} {
		p, err := signatures.ParsePattern(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		off, n := anchorOf(&p.Parts[0])
		if got := string(p.Parts[0].Value[off : off+n]); off != tc.off || n != tc.n || got != tc.wantBytes {
			t.Errorf("%s: anchor at %d, %d bytes (%q), want %d, %d (%q)", tc.hex, off, n, got, tc.off, tc.n, tc.wantBytes)
		}
	}
}

// TestBuilder: signatures added one at a time give the engine New gives;
// the engine keeps nothing of the signatures it was given (they are
// overwritten after the build, and it still detects); a bad signature is
// an error that the engine then returns.
func TestBuilder(t *testing.T) {
	t.Parallel()
	data := []byte("....." + eicar + ".....")
	sum := md5.Sum(data)
	set := mustSet(t, map[string]string{
		"t.hdb": fmt.Sprintf("%x:%d:Hash-Sig\n", sum, len(data)),
		"t.ndb": "Eicar-Body:0:*:" + hx("EICAR-STANDARD") + "*" + hx("FILE!") + "\nOther:0:*:" + hx("not in there") + "\n",
	})
	b := NewBuilder()
	for i := range set.Hashes {
		if err := b.AddHash(&set.Hashes[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range set.Bodies {
		if err := b.AddBody(&set.Bodies[i]); err != nil {
			t.Fatal(err)
		}
	}
	built, fromSet := b.Engine(), New(set)
	if built.Signatures() != 3 || fromSet.Signatures() != 3 {
		t.Fatalf("signatures %d and %d, want 3", built.Signatures(), fromSet.Signatures())
	}
	for i := range set.Hashes {
		clear(set.Hashes[i].Hash)
		set.Hashes[i].Name = "overwritten"
	}
	for i := range set.Bodies {
		for _, p := range set.Bodies[i].Pattern.Parts {
			clear(p.Value)
		}
		set.Bodies[i].Name = "overwritten"
	}
	for _, e := range []*Engine{built, fromSet} {
		checkAll(t, e, data, "Eicar-Body", "Hash-Sig")
	}

	b = NewBuilder()
	bad := signatures.HashSig{Name: "Short", Algo: signatures.SHA256, Hash: make([]byte, 16), File: "x.hsb", Line: 3}
	err := b.AddHash(&bad)
	if err == nil || !strings.Contains(err.Error(), "x.hsb:3") {
		t.Fatalf("a 16-byte SHA-256: %v", err)
	}
	if err2 := b.AddBody(&set.Bodies[0]); err2 != err {
		t.Fatalf("after an error: %v", err2)
	}
	if _, err3 := b.Engine().ScanReader(context.Background(), bytes.NewReader(data), int64(len(data))); err3 != err {
		t.Fatalf("engine after an error: %v", err3)
	}
}

// TestSizeGuide: the guide finds every size as a binary search does, with
// "*", sizes far apart (one of 2^40) and many sizes in one bucket.
func TestSizeGuide(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sizes := range [][]int64{
		{signatures.AnySize},
		{7},
		{signatures.AnySize, 1, 2, 3, 1 << 40},
		func() []int64 {
			l := []int64{signatures.AnySize, 1 << 32, 1<<32 + 1}
			for range 5000 {
				l = append(l, 1+rng.Int64N(1000))
				l = append(l, 1+rng.Int64N(1<<30))
			}
			slices.Sort(l)
			return slices.Compact(l)
		}(),
	} {
		g := newSizeGuide(sizes)
		for want, s := range sizes {
			if got := g.find(s); got != want {
				t.Fatalf("sizes %d..%d (%d): find(%d) = %d, want %d", sizes[0], sizes[len(sizes)-1], len(sizes), s, got, want)
			}
		}
	}
}
