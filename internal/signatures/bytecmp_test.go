package signatures

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// bcompPrefix starts the buffers of the table: binary bytes, so that
// ClamAV types the files as binary data.
const bcompPrefix = "\x00\x01\x80\x9c\x00\x02\x9d\x81"

// bcompCase is a byte compare "0(SPEC)" read from a match of the anchor
// in pre+ANCHOR01+post (pre is bcompPrefix when empty).
type bcompCase struct {
	spec      string
	pre, post string
	want      bool
	// goOnly says why clamscan does not decide this case reliably (it
	// is left out of TestByteCompareTableSameAsClamAV).
	goOnly string
}

func (c bcompCase) data() ([]byte, int64) {
	pre := c.pre
	if pre == "" {
		pre = bcompPrefix
	}
	return []byte(pre + bcompAnchor + c.post), int64(len(pre))
}

const staleErrno = "an exact LONG_MAX/LONG_MIN in a big-endian conversion: ClamAV also tests a stale errno"

var bcompCases = []bcompCase{
	// big-endian hex
	{spec: ">>8#hb4#=4660", post: "1234", want: true},
	{spec: ">>8#hb4#=43981", post: "abCD", want: true},
	{spec: ">>8#bh4#=0x1234", post: "1234", want: true},
	{spec: ">>8#hb4#>4660", post: "1234"},
	{spec: ">>8#hb4#<4661", post: "1234", want: true},
	{spec: ">>8#hb4#=0x123", post: " 123", want: true},           // leading white space trimmed
	{spec: ">>8#hbe4#=0x123", post: " 123"},                      // ... but not exact
	{spec: ">>8#hb4#=0x123", post: "\t\n\v1", want: false},       // "1" is 1
	{spec: ">>8#hb4#=1", post: "\t\n\v1", want: true},            // isspace: \t \n \v \f \r and space
	{spec: ">>8#hb4#=0x12", post: "12zz", want: true},            // trailing garbage, not exact
	{spec: ">>8#hbe4#=0x12", post: "12zz"},                       // exact: all 4 bytes
	{spec: ">>8#hb4#=31", post: "0x1f", want: true},              // 0x prefix
	{spec: ">>8#hbe4#=31", post: "0x1f", want: true},             // ... read exactly
	{spec: ">>8#hb2#=0", post: "0xzz", want: true},               // "0x" and nothing: 0, no digit
	{spec: ">>8#hbe2#=0", post: "0xzz"},                          // ... so not exact
	{spec: ">>8#hb3#=0", post: "0x1", want: false},               // 0x1 is 1
	{spec: ">>8#hb3#=1", post: "0x1", want: true},                //
	{spec: ">>8#hb4#=0", post: "-0x5", want: true},               // a sign, then no 0x: "-0" then x
	{spec: ">>8#hbe4#=0", post: "-0x5"},                          // ... stopping at the x
	{spec: ">>8#hb3#=-31", post: "-1f", want: true},              // negative hex
	{spec: ">>8#hb3#=31", post: "+1f", want: true},               //
	{spec: ">>8#hb3#=0", post: "+-1", want: true},                // two signs: no digit
	{spec: ">>8#hb4#=0", post: "    ", want: true},               // all white space: 0
	{spec: ">>8#hbe4#=0", post: "    "},                          //
	{spec: ">>8#h4#=4660", post: "1234"},                         // no endianness: never
	{spec: ">>8#he4#=4660", post: "1234"},                        //
	{spec: ">>8#hb16#<0", post: "ffffffffffffffff"},              // overflow: conversion unsuccessful
	{spec: ">>8#hb16#>0", post: "ffffffffffffffff"},              //
	{spec: ">>8#hb17#<0", post: "-8000000000000001"},             // negative overflow
	{spec: ">>8#hb16#<0", post: "-8000000000000001", want: true}, // 16 bytes: no overflow
	{spec: ">>8#hb16#=9223372036854775806", post: "7ffffffffffffffe", want: true},
	{spec: ">>8#hb16#=9223372036854775807", post: "7fffffffffffffff", want: true, goOnly: staleErrno},
	{spec: ">>8#hb17#=-9223372036854775808", post: "-8000000000000000", want: true, goOnly: staleErrno},
	{spec: ">>8#hb18#=0x12345678", post: "0x0000000012345678", want: true}, // 18 bytes, the most 'h' takes
	// little-endian hex
	{spec: ">>8#hl4#=4660", post: "3412", want: true},
	{spec: ">>8#lh4#=4660", post: "3412", want: true},
	{spec: ">>8#hle4#=4660", post: "3412", want: true},
	{spec: ">>8#hl2#=0x12", post: "12", want: true},
	{spec: ">>8#hl1#=7", post: "7", want: true},
	{spec: ">>8#hle1#=7", post: "7", want: true},
	{spec: ">>8#hl3#=0x3402", post: "234", want: true},    // odd: padded to "0234", reordered "3402"
	{spec: ">>8#hle3#=0x3402", post: "234"},               // exact compares with 3, not 4
	{spec: ">>8#hle3#=0x120", post: "x12", want: true},    // "0x12" reordered "120x": stops at 3
	{spec: ">>8#hl6#=0x1234", post: "0x3412", want: true}, // "xx3412" reordered "1234xx"
	{spec: ">>8#hle6#=0x3412", post: "0x3412"},            // stops at the x
	{spec: ">>8#hl5#=0x1204", post: "0x412", want: true},  // odd with 0x: "x00412" -> "1204x0"
	{spec: ">>8#hl4#=0x12", post: "12g4", want: true},     // non-hex: what was reordered is zeroed
	{spec: ">>8#hl4#=0", post: "g234", want: true},        // ... the pair "g2" zeroes it all
	{spec: ">>8#hl5#=4660", post: " 3412", want: true},    // white space trimmed
	{spec: ">>8#hle5#=4660", post: " 3412"},               //
	{spec: ">>8#hl4#=0x1234", post: "-412", want: false},  // "-4", the last pair reordered, zeroes it all
	{spec: ">>8#hl4#=0", post: "-412", want: true},        //
	{spec: ">>8#hl16#<0", post: "0000000000000080"},       // 0x8000000000000000 overflows
	{spec: ">>8#hl16#=0x7f", post: "7f00000000000000", want: true},
	{spec: ">>8#hl18#>0", post: "ffffffffffffffffff"},
	{spec: ">>8#l4#=4660", post: "3412"}, // no type: never
	// decimal (always big-endian)
	{spec: ">>8#d4#=1234", post: "1234", want: true},
	{spec: ">>8#db4#=1234", post: "1234", want: true},
	{spec: ">>8#bd4#=1234", post: "1234", want: true},
	{spec: ">>8#de4#=1234", post: "1234", want: true},
	{spec: ">>8#d4#=123", post: "+123", want: true},
	{spec: ">>8#d4#=-123", post: "-123", want: true},
	{spec: ">>8#d4#<0", post: "-123", want: true},
	{spec: ">>8#d4#=42", post: " 42x", want: true},
	{spec: ">>8#de4#=42", post: " 42x"},
	{spec: ">>8#de4#=42", post: "42x5"},
	{spec: ">>8#d4#=0", post: "0x10", want: true}, // base 10: no 0x
	{spec: ">>8#d4#=10", post: "0010", want: true},
	{spec: ">>8#d1#=7", post: "7", want: true},
	{spec: ">>8#d2#=7", post: "\v7", want: true},
	{spec: ">>8#d2#=0", post: "\xa07", want: true}, // 0xa0 is no space in the C locale: no digit
	{spec: ">>8#d2#=7", post: "\xa07"},
	{spec: ">>8#d20#>0", post: "99999999999999999999"},
	{spec: ">>8#d20#<0", post: "-99999999999999999999"},
	{spec: ">>8#d19#=9223372036854775806", post: "9223372036854775806", want: true},
	{spec: ">>8#d19#=9223372036854775807", post: "9223372036854775807", want: true, goOnly: staleErrno},
	{spec: ">>8#d20#=-9223372036854775808", post: "-9223372036854775808", want: true, goOnly: staleErrno},
	{spec: ">>8#d0x100000000#=0", post: "5", want: true},  // Length 1<<32 is ClamAV's uint32_t byte_len 0
	{spec: ">>8#de0x100000000#=0", post: "5", want: true}, // ... which reads nothing, exactly
	{spec: ">>8#d0x100000001#=5", post: "56", want: true}, // ... and 1<<32+1 reads 1 byte
	{spec: ">>8#d30#=5", post: "5" + strings.Repeat(" ", 29), want: true},
	{spec: ">>8#d30#=5", post: "5" + strings.Repeat(" ", 28)}, // one byte short
	// auto
	{spec: ">>8#ab4#=31", post: "0x1f", want: true},
	{spec: ">>8#ab4#=1234", post: "1234", want: true},
	{spec: ">>8#abe4#=1234", post: "1234", want: true},
	{spec: ">>8#ab4#=0", post: "0X10", want: false}, // 0X is hex too
	{spec: ">>8#ab4#=16", post: "0X10", want: true},
	{spec: ">>8#ab4#=1", post: " 0x1", want: true},  // trimmed to 3 bytes: hex
	{spec: ">>8#ab2#=12", post: "12"},               // fewer than 3 bytes: never
	{spec: ">>8#ab3#=7", post: "  7"},               // ... after trimming
	{spec: ">>8#ab3#=-12", post: "-12", want: true}, //
	{spec: ">>8#al4#=31", post: "0x1f", want: true}, // "xx1f" reordered "1fxx"
	{spec: ">>8#al6#=0x1234", post: "0x3412", want: true},
	{spec: ">>8#ale4#=31", post: "0x1f"},   // exact: stops at the x, so a, l and e never hold
	{spec: ">>8#ale4#=1234", post: "1234"}, //
	{spec: ">>8#al4#=1234", post: "1234"},  // little-endian decimal: unsupported
	{spec: ">>8#a4#=31", post: "0x1f"},     // no endianness: never
	// binary
	{spec: ">>8#ib2#=0x1234", post: "\x12\x34", want: true},
	{spec: ">>8#il2#=0x3412", post: "\x12\x34", want: true},
	{spec: ">>8#bi2#=0x1234", post: "\x12\x34", want: true},
	{spec: ">>8#ibe2#=0x1234", post: "\x12\x34", want: true},
	{spec: ">>8#ile2#=0x3412", post: "\x12\x34", want: true},
	{spec: ">>8#ib1#=255", post: "\xff", want: true}, // unsigned
	{spec: ">>8#il1#=255", post: "\xff", want: true},
	{spec: ">>8#ib4#=4294967295", post: "\xff\xff\xff\xff", want: true},
	{spec: ">>8#ib8#=-1", post: "\xff\xff\xff\xff\xff\xff\xff\xff", want: true}, // 8 bytes: an int64
	{spec: ">>8#il8#=0x0807060504030201", post: "\x01\x02\x03\x04\x05\x06\x07\x08", want: true},
	{spec: ">>8#ib8#=0x0102030405060708", post: "\x01\x02\x03\x04\x05\x06\x07\x08", want: true},
	{spec: ">>8#ib2#=0x2031", post: " 1", want: true}, // no white space trimming
	{spec: ">>8#i2#=0x1234", post: "\x12\x34"},        // no endianness: never
	{spec: ">>8#e2#=0", post: "\x00\x00"},             // no type: never
	// offsets and bounds
	{spec: ">>8#hb2#=0x12", post: "12", want: true}, // ends at the end of the buffer
	{spec: ">>8#hb3#=0x12", post: "12"},             // one byte past it
	{spec: ">>9#hb2#=0x12", post: "12"},
	{spec: ">>10#db1#=3", post: "123", want: true},
	{spec: "0#hb2#=10", want: true},                                // offset 0: the anchor itself, "AN" is 0xA then N
	{spec: "#hb2#=10", want: true},                                 // "" is offset 0
	{spec: ">>0x8#db1#=7", post: "7", want: true},                  //
	{spec: "<<8#db1#=0"},                                           // at buffer offset 0: never (offset must be > 0)
	{spec: "<<8#ib1#=0"},                                           //
	{spec: "<<7#ib1#=1", want: true},                               // buffer offset 1
	{spec: "<<7#db1#=0", want: true},                               //
	{spec: "<<9#db1#=0"},                                           // before the buffer
	{spec: "<<2#db2#=42", pre: "\x00\x01\x80\x9cxx42", want: true}, // reads before the anchor
	{spec: "<<4#db4#=0", pre: "\x00\x01\x80\x9cxx42", want: true},  // "xx42" is no number
	{spec: "<<1#ib1#=0x81", want: true},
	{spec: "<<8#db1#=5", pre: "\x00\x80\x00\x01\x80\x9c\x02\x035xxxxxxx", want: true}, // the anchor at 16, "5" at 8
	{spec: "<<9#db1#=5", pre: "\x00\x80\x00\x01\x80\x9c\x02\x035xxxxxxx"},
	{spec: ">>100#db1#=0", post: "5"},
	// comparisons
	{spec: ">>8#d1#>1,<5", post: "3", want: true},
	{spec: ">>8#d1#>1,<5", post: "5"},
	{spec: ">>8#d1#>1,<5", post: "1"},
	{spec: ">>8#d1#<5,>1", post: "4", want: true},
	{spec: ">>8#d1#=3,=3", post: "3", want: true},
	{spec: ">>8#d1#=3,=4", post: "3"},
	{spec: ">>8#d1#=", post: "0", want: true},    // "=" is =0
	{spec: ">>8#d1#<-0", post: "0"},              //
	{spec: ">>8#d2#>-1", post: "-0", want: true}, // -0 is 0
}

func TestByteCompareCheck(t *testing.T) {
	t.Parallel()
	for _, c := range bcompCases {
		bc, err := parseByteCompare("0(" + c.spec + ")")
		if err != nil {
			t.Errorf("%s: %v", c.spec, err)
			continue
		}
		data, off := c.data()
		if got := bc.Check(data, off); got != c.want {
			t.Errorf("%s on %q: Check = %v, want %v", c.spec, c.post, got, c.want)
		}
	}
}

// TestByteCompareCheckEdges: what the signature syntax cannot write.
func TestByteCompareCheckEdges(t *testing.T) {
	t.Parallel()
	buf := []byte("xx1234")
	cases := []struct {
		name string
		bc   ByteCompare
		buf  []byte
		off  int64
		want bool
	}{
		{"hb", ByteCompare{Hex: true, Big: true, Length: 4, Comparisons: []Comparison{{'=', 0x1234}}}, buf, 2, true},
		{"nil buffer", ByteCompare{Hex: true, Big: true, Length: 0, Comparisons: []Comparison{{'=', 0}}}, nil, 2, false},
		{"empty buffer", ByteCompare{Hex: true, Big: true, Length: 0, Comparisons: []Comparison{{'=', 0}}}, []byte{}, 0, false},
		{"no comparison", ByteCompare{Hex: true, Big: true, Length: 4}, buf, 2, false},
		{"bad operator", ByteCompare{Hex: true, Big: true, Length: 4, Comparisons: []Comparison{{'!', 0}}}, buf, 2, false},
		{"bad second operator", ByteCompare{Hex: true, Big: true, Length: 4, Comparisons: []Comparison{{'=', 0x1234}, {'!', 0}}}, buf, 2, false},
		{"decimal implies big-endian", ByteCompare{Decimal: true, Length: 4, Comparisons: []Comparison{{'=', 1234}}}, buf, 2, true},
		{"decimal and little-endian", ByteCompare{Decimal: true, Little: true, Length: 4, Comparisons: []Comparison{{'=', 1234}}}, buf, 2, false},
		{"binary length 3", ByteCompare{Binary: true, Big: true, Length: 3, Comparisons: []Comparison{{'>', -1}}}, buf, 2, false},
		{"hex and binary", ByteCompare{Hex: true, Binary: true, Little: true, Length: 2, Comparisons: []Comparison{{'>', -1}}}, buf, 2, false},
		{"auto and binary", ByteCompare{Auto: true, Binary: true, Big: true, Length: 4, Comparisons: []Comparison{{'>', -1}}}, buf, 2, false},
		{"both endiannesses", ByteCompare{Hex: true, Little: true, Big: true, Length: 4, Comparisons: []Comparison{{'>', -1}}}, buf, 2, false},
		{"int offset wraps", ByteCompare{Hex: true, Big: true, Length: 4, Comparisons: []Comparison{{'=', 0x1234}}}, buf, 2 + 1<<32, true},
		{"negative off", ByteCompare{Hex: true, Big: true, Offset: 4, Length: 4, Comparisons: []Comparison{{'=', 0x1234}}}, buf, -2, true},
		{"huge offset", ByteCompare{Hex: true, Big: true, Offset: math.MaxInt64, Length: 4, Comparisons: []Comparison{{'=', 0}}}, buf, 2, false},
		{"huge negative offset", ByteCompare{Hex: true, Big: true, Offset: math.MinInt64, Length: 4, Comparisons: []Comparison{{'=', 0}}}, buf, 2, false},
	}
	for _, c := range cases {
		if got := c.bc.Check(c.buf, c.off); got != c.want {
			t.Errorf("%s: Check = %v, want %v", c.name, got, c.want)
		}
	}
	var nilbc *ByteCompare
	if nilbc.Check(buf, 2) {
		t.Error("a nil ByteCompare holds")
	}
}

// TestCliStrntol checks the port of cli_strntol on its own.
func TestCliStrntol(t *testing.T) {
	t.Parallel()
	cases := []struct {
		s        string
		n        uint32
		base     int
		val      int64
		end      int
		overflow bool
	}{
		{"123", 3, 10, 123, 3, false},
		{"123", 2, 10, 12, 2, false},
		{"123", 0, 10, 0, 0, false},
		{"  12", 4, 10, 12, 4, false},
		{"   ", 3, 10, 0, 0, false},
		{"-", 1, 10, 0, 0, false},
		{"-5", 2, 10, -5, 2, false},
		{"+5", 2, 10, 5, 2, false},
		{"-x", 2, 10, 0, 0, false},
		{"0x1f", 4, 16, 31, 4, false},
		{"0X1F", 4, 16, 31, 4, false},
		{"0x", 2, 16, 0, 0, false},
		{"0x1", 2, 16, 0, 0, false},
		{"0x1", 3, 16, 1, 3, false},
		{"0xg", 3, 16, 0, 0, false},
		{"-0x1", 4, 16, 0, 2, false},
		{"0x10", 4, 10, 0, 1, false},
		{"1z", 2, 36, 71, 2, false},
		{"9223372036854775807", 19, 10, math.MaxInt64, 19, false},
		{"9223372036854775808", 19, 10, math.MaxInt64, 19, true},
		{"-9223372036854775808", 20, 10, math.MinInt64, 20, false},
		{"-9223372036854775809", 20, 10, math.MinInt64, 20, true},
		{"99999999999999999999x", 21, 10, math.MaxInt64, 20, true},
		{"ffffffffffffffff", 16, 16, math.MaxInt64, 16, true},
		{"12\x00", 5, 10, 12, 2, false},
		{"1\xb2", 2, 10, 1, 1, false},
	}
	for _, c := range cases {
		v, end, of := cliStrntol([]byte(c.s), c.n, c.base)
		if v != c.val || end != c.end || of != c.overflow {
			t.Errorf("cli_strntol(%q, %d, %d) = %d, %d, %v; want %d, %d, %v", c.s, c.n, c.base, v, end, of, c.val, c.end, c.overflow)
		}
	}
}

// FuzzByteCompareCheck: Check never panics, for any buffer, offset and
// options (also those the parser refuses), and never holds for a field
// that does not lie inside the buffer after its first byte.
func FuzzByteCompareCheck(f *testing.F) {
	f.Add([]byte("xxANCHOR01 0x1234"), int64(2), int64(9), uint16(0x21), uint64(7), byte('='), int64(0x1234), byte('<'), int64(5))
	f.Add([]byte("xx12g4"), int64(1), int64(1), uint16(0x11), uint64(4), byte('>'), int64(0), byte('='), int64(0))
	f.Add([]byte("x\xff\xff\xff\xff\xff\xff\xff\xff"), int64(1), int64(0), uint16(0x114), uint64(8), byte('<'), int64(0), byte(0), int64(0))
	f.Add([]byte("x 0x412"), int64(0), int64(1), uint16(0x18), uint64(6), byte('='), int64(0x1204), byte(0), int64(0))
	f.Add([]byte("x"), int64(-5), int64(-3), uint16(0xffff), uint64(1<<32), byte('='), int64(0), byte(0), int64(0))
	f.Fuzz(func(t *testing.T, buf []byte, off, offset int64, opts uint16, length uint64, op1 byte, v1 int64, op2 byte, v2 int64) {
		bc := &ByteCompare{
			Offset: offset, Length: length,
			Hex: opts&bcompHex != 0, Decimal: opts&bcompDec != 0, Binary: opts&bcompBin != 0, Auto: opts&bcompAuto != 0,
			Little: opts&bcompLE != 0, Big: opts&bcompBE != 0, Exact: opts&bcompExact != 0,
			Comparisons: []Comparison{{op1, v1}},
		}
		if op2 != 0 {
			bc.Comparisons = append(bc.Comparisons, Comparison{op2, v2})
		}
		got := bc.Check(buf, off)
		start := int64(int32(off)) + offset
		if got && (start <= 0 || start+int64(uint32(length)) > int64(len(buf))) {
			t.Errorf("holds for a field at %d+%d in a buffer of %d", start, uint32(length), len(buf))
		}
		// The same through the parser, for the options it accepts.
		spec := fmt.Sprintf("0(>>%d#%s%d#%c%d)", offset&0xffff, bcompLetters(opts), length, op1, v1)
		if p, err := parseByteCompare(spec); err == nil {
			p.Check(buf, off)
		}
	})
}

// bcompLetters spells an options bitmask with addpatt's letters.
func bcompLetters(opts uint16) string {
	var b strings.Builder
	for i, l := range "hdiaxxxxlbxxxxxxe" {
		if opts&(1<<i) != 0 && l != 'x' {
			b.WriteRune(l)
		}
	}
	return b.String()
}

// TestByteCompareTableSameAsClamAV runs the cases of TestByteCompareCheck
// (but those whose goOnly says why not) through clamscan: every
// signature over every file, reported iff Check holds at the anchor.
func TestByteCompareTableSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	anchorHex := fmt.Sprintf("%x", bcompAnchor)
	sigdir, corpus := t.TempDir(), t.TempDir()
	var lines []string
	var cases []bcompCase
	for _, c := range bcompCases {
		if c.goOnly == "" {
			lines = append(lines, fmt.Sprintf("T%d;Engine:81-255,Target:0;0&1;%s;0(%s)", len(cases), anchorHex, c.spec))
			cases = append(cases, c)
		}
	}
	if err := os.WriteFile(filepath.Join(sigdir, "t.ldb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(sigdir)
	if err != nil || len(set.Logical) != len(cases) {
		t.Fatalf("Load: %v", err)
	}
	want := map[string]bool{}
	for i, c := range cases {
		data, off := c.data()
		if bytes.LastIndex(data, []byte(bcompAnchor)) != int(off) {
			t.Fatalf("case %d: the anchor is not last at %d", i, off)
		}
		name := fmt.Sprintf("f%03d", i)
		if err := os.WriteFile(filepath.Join(corpus, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		for j, l := range set.Logical {
			if l.Subsigs[1].ByteCompare.Check(data, off) {
				want[name+" "+l.Name] = true
			} else if i == j && c.want {
				t.Errorf("case %d %s: Check does not hold", i, c.spec)
			}
		}
	}
	got := clamscanFound(t, clamscan, sigdir, corpus)
	desc := func(k string) string {
		var i, j int
		fmt.Sscanf(k, "f%d T%d", &i, &j)
		return fmt.Sprintf("file of case %d (%q) and signature %s", i, cases[i].post, cases[j].spec)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("%s: Check holds, clamscan does not report it", desc(k))
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("%s: clamscan reports it, Check does not hold", desc(k))
		}
	}
	t.Logf("%d cases, %d detections", len(cases), len(want))
}
