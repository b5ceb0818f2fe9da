package scan

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// fuzzSigs are signatures over a small alphabet, so that fuzzed data hits
// them: every anchor length class, gaps, alternatives, nibbles, offsets.
const fuzzSigs = "" +
	"L8:0:*:6162636465666768\n" +
	"L4:0:*:61626364??6566\n" +
	"L3:0:*:616263??646566??676869\n" +
	"L2:0:*:6162??6364??6566\n" +
	"Star:0:*:6162*6364\n" +
	"Range:0:*:616161{2-5}626262\n" +
	"Alt:0:*:6162(63|64)6566\n" +
	"Nib:0:*:61626?6364\n" +
	"Abs:0:3,4:626364\n" +
	"Eof:0:EOF-6:646566\n" +
	"Parts:0:*:6161*6262{-3}6363*6464\n"

// FuzzEngine: for any data and read chunk size, the engine finds exactly
// the signatures the brute-force matcher finds.
func FuzzEngine(f *testing.F) {
	set, err := signatures.Parse("f.ndb", strings.NewReader(fuzzSigs))
	if err != nil {
		f.Fatal(err)
	}
	e := New(set)
	if e.err != nil {
		f.Fatal(e.err)
	}
	for _, seed := range []string{
		"..abcdefgh..", "abcdxef", "abcdefabcdef", "aaa..bbb", "xxabcdxeffffff",
		"abcxdefxghi", "abxcdxef", "ab........cd", "aa.bb.cc...dd", "...bc.def",
	} {
		f.Add([]byte(seed), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 4096 {
			return
		}
		var want []string
		for i := range set.Bodies {
			if refMatch(&set.Bodies[i], data) {
				want = append(want, set.Bodies[i].Name)
			}
		}
		slices.Sort(want)
		c := *e
		c.chunk = 1 + int(chunk)
		res, err := c.ScanReader(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Signatures, want) && !(len(res.Signatures) == 0 && len(want) == 0) {
			t.Fatalf("data %q chunk %d: got %q, want %q", data, c.chunk, res.Signatures, want)
		}
	})
}
