package signatures

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

const bcompAnchor = "ANCHOR01"

// bcompValues are the numbers the files of TestByteCompareSameAsClamAV
// hold and its comparisons compare with (each also ±1), so that
// comparisons often hold and often just fail.
var bcompValues = []int64{0, 1, 2, 7, 9, 10, 15, 16, 17, 99, 100, 255, 256, 4096, 0x1234, 0xabcd, 65535, 1 << 31, 1 << 32,
	0x123456789a, -1, -7, -100, -256, -(1 << 40)}

// bcompToken writes one number to b in a random form: decimal or hex
// text (with or without white space, sign, "0x", leading zeros, in
// either case, little-endian hex byte pairs), a binary integer of 1, 2,
// 4 or 8 bytes in either byte order, a number that overflows a long, or
// text that is no number at all.
func bcompToken(rng *rand.Rand, b *bytes.Buffer) {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	v := bcompValues[rng.IntN(len(bcompValues))]
	if rng.IntN(3) == 0 {
		b.WriteString(pick(" ", "  ", "\t", "\n", "\r\n ", "\v", "\f", "   "))
	}
	sign := func() string {
		if v < 0 {
			return "-"
		}
		return pick("", "", "", "+")
	}
	abs := v
	if abs < 0 {
		abs = -abs
	}
	switch rng.IntN(9) {
	case 0, 1:
		fmt.Fprintf(b, "%s%s%d", sign(), pick("", "", "0", "00"), abs)
	case 2, 3:
		x := fmt.Sprintf("%x", abs)
		if rng.IntN(2) == 0 {
			x = strings.ToUpper(x)
		}
		if rng.IntN(3) == 0 && len(x)%2 == 1 {
			x = "0" + x
		}
		fmt.Fprintf(b, "%s%s%s", sign(), pick("", "0x", "0X", "0x", "0x0"), x)
	case 4:
		// little-endian hex: the byte pairs of the value in reverse
		x := fmt.Sprintf("%x", abs)
		if len(x)%2 == 1 {
			x = "0" + x
		}
		var r strings.Builder
		for i := len(x); i > 0; i -= 2 {
			r.WriteString(x[i-2 : i])
		}
		fmt.Fprintf(b, "%s%s", pick("", "", "0x"), r.String())
	case 5, 6:
		var le [8]byte
		n := []int{1, 2, 4, 8}[rng.IntN(4)]
		if rng.IntN(2) == 0 {
			binary.LittleEndian.PutUint64(le[:], uint64(v))
			b.Write(le[:n])
		} else {
			binary.BigEndian.PutUint64(le[:], uint64(v))
			b.Write(le[8-n:])
		}
	case 7:
		b.WriteString(pick("99999999999999999999", "-99999999999999999999", "9223372036854775808", "-9223372036854775809",
			"ffffffffffffffffff", "8000000000000000", "0x8000000000000000", "7ffffffffffffffe", "9223372036854775806",
			"12345678901234567890123"))
	default:
		b.WriteString(pick("zz", "0x", "-", "+", "-0x5", "+0x1f", "0xg1", "x12", "--3", "0x-3", "1 2", "12 ", "abc", "0X", "0x0x1"))
	}
	if rng.IntN(2) == 0 {
		b.WriteString(pick(" ", ",", "Z", "\x00", "x", ";", "g", "\xff", "0"))
	}
}

// randomByteCompare returns a valid byte compare "0(...)" that reads
// around a match of an 8-byte anchor, with every option combination
// cli_bcomp_addpatt accepts (including those that never hold).
func randomByteCompare(rng *rand.Rand) string {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	off := pick("0", ">>0x8", "<<1", "", "0x0")
	switch rng.IntN(6) {
	case 0, 1, 2, 3:
		off = fmt.Sprintf(">>%d", 6+rng.IntN(30))
	case 4:
		off = fmt.Sprintf("<<%d", 1+rng.IntN(24))
	}
	var opts string
	var n int
	switch rng.IntN(12) {
	case 0, 1:
		opts, n = pick("hb", "bh", "hl", "lh", "hbe", "hle", "ehl"), 1+rng.IntN(18)
	case 2, 3:
		opts, n = pick("d", "db", "de", "dbe", "bd"), 1+rng.IntN(22)
	case 4, 5:
		opts, n = pick("ab", "al", "abe", "ale", "ba"), 1+rng.IntN(22)
	case 6, 7:
		opts, n = pick("ib", "il", "ibe", "ile", "bi"), []int{1, 2, 4, 8}[rng.IntN(4)]
	case 8:
		opts, n = pick("h", "a", "i", "e", "b", "l", "he", "ae", "hbb", "hhl"), []int{1, 2, 4, 8}[rng.IntN(4)]
	default:
		opts, n = pick("hb", "hl", "db", "ab", "al"), 1+rng.IntN(4)
	}
	cmp := func() string {
		v := bcompValues[rng.IntN(len(bcompValues))] + int64(rng.IntN(3)-1)
		op := pick("<", ">", "=", "=")
		switch rng.IntN(8) {
		case 0:
			return fmt.Sprintf("%s0x%x", op, v&0xffffffff)
		case 1:
			return op + pick("9223372036854775807", "-9223372036854775808", "", "-0")
		}
		return fmt.Sprintf("%s%d", op, v)
	}
	c := cmp()
	if rng.IntN(3) == 0 {
		c += "," + cmp()
	}
	return fmt.Sprintf("0(%s#%s%d#%s)", off, opts, n, c)
}

// TestByteCompareSameAsClamAV is a differential test of
// ByteCompare.Check: random logical signatures "ANCHOR01 and a byte
// compare from it" and random binary files holding the anchor once or
// twice with numbers (text and binary) around it, scanned by clamscan
// --allmatch. ClamAV reads the field from the start of the anchor's last
// match (lsigsuboff_last); a (file, signature) pair is reported iff the
// anchor is in the file and Check holds at its last start.
func TestByteCompareSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	rng := rand.New(rand.NewPCG(81, 82))
	nsigs, nfiles := 600, 120 // under a second, -short too
	anchorHex := fmt.Sprintf("%x", bcompAnchor)
	var lines []string
	for i := range nsigs {
		lines = append(lines, fmt.Sprintf("B%d;Engine:81-255,Target:0;0&1;%s;%s", i, anchorHex, randomByteCompare(rng)))
	}
	sigdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sigdir, "b.ldb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(sigdir)
	if err != nil || len(set.Logical) != nsigs {
		t.Fatalf("Load: %v (%d logical)", err, len(set.Logical))
	}
	corpus := t.TempDir()
	want := map[string]bool{}
	holds := make([]int, nsigs) // files where each signature holds
	for f := range nfiles {
		var b bytes.Buffer
		// Binary bytes first, so that ClamAV types the file as binary
		// data and matches it raw only.
		b.Write([]byte{0x00, 0x01, 0x80, 0x9c, 0x00, 0x02, 0x9d, 0x81})
		filler := func(max int) {
			for r := rng.IntN(max + 1); r > 0; r-- {
				b.WriteByte([]byte{0x00, 0x01, 0x7f, 0x80, 0x90, 0xc3, 0xf0, 0x10, ' ', '5', 'A'}[rng.IntN(11)])
			}
		}
		numbers := func() {
			for k := 1 + rng.IntN(4); k > 0; k-- {
				filler(2)
				bcompToken(rng, &b)
			}
		}
		if rng.IntN(2) == 0 {
			numbers()
		} else {
			filler(16)
		}
		anchors := 1 + rng.IntN(2)
		if rng.IntN(12) == 0 {
			anchors = 0
		}
		for range anchors {
			b.WriteString(bcompAnchor)
			numbers()
			if rng.IntN(3) != 0 {
				filler(10)
				numbers()
			}
		}
		if rng.IntN(3) != 0 {
			filler(40)
		}
		data := b.Bytes()
		name := fmt.Sprintf("f%03d", f)
		if err := os.WriteFile(filepath.Join(corpus, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		last := bytes.LastIndex(data, []byte(bcompAnchor))
		if last < 0 {
			continue
		}
		for i, l := range set.Logical {
			if l.Subsigs[1].ByteCompare.Check(data, int64(last)) {
				want[name+" "+l.Name] = true
				holds[i]++
			}
		}
	}
	got := clamscanFound(t, clamscan, sigdir, corpus)
	sigOf := map[string]string{}
	for _, l := range set.Logical {
		sigOf[l.Name] = l.Subsigs[1].Raw
	}
	bad := 0
	report := func(k, what string) {
		bad++
		file, sig, _ := strings.Cut(k, " ")
		data, _ := os.ReadFile(filepath.Join(corpus, file))
		last := bytes.LastIndex(data, []byte(bcompAnchor))
		lo, hi := max(last-24, 0), min(last+48, len(data))
		t.Errorf("%s %s (%s), anchor at %d: %s; around it: %q", file, sig, sigOf[sig], last, what, data[lo:hi])
		if bad > 20 {
			t.FailNow()
		}
	}
	for k := range want {
		if !got[k] {
			report(k, "Check holds, clamscan does not report it")
		}
	}
	for k := range got {
		if !want[k] {
			report(k, "clamscan reports it, Check does not hold")
		}
	}
	never := 0
	byKind := map[string]int{} // detections by options
	for i, n := range holds {
		if n == 0 {
			never++
		}
		byKind[bcompKind(set.Logical[i].Subsigs[1].ByteCompare)] += n
	}
	t.Logf("%d signatures x %d files: %d detections (%d signatures never hold), all agreeing; by options: %v",
		nsigs, nfiles, len(want), never, byKind)
	if len(want) < nsigs/2 || never > nsigs*3/4 {
		t.Errorf("a weak test: %d detections, %d signatures never hold", len(want), never)
	}
	for _, k := range []string{"hb", "hl", "db", "ab", "al", "ib", "il", "hbe", "hle", "dbe", "abe", "ibe", "ile"} { // "ale" never holds
		if byKind[k] == 0 {
			t.Errorf("a weak test: no detection by a byte compare with options %s", k)
		}
	}
}

// bcompKind names bc's options: type, endianness, e.
func bcompKind(bc *ByteCompare) string {
	k := ""
	for _, o := range []struct {
		on bool
		l  string
	}{{bc.Hex, "h"}, {bc.Decimal, "d"}, {bc.Auto, "a"}, {bc.Binary, "i"}, {bc.Little, "l"}, {bc.Big, "b"}, {bc.Exact, "e"}} {
		if o.on {
			k += o.l
		}
	}
	return k
}
