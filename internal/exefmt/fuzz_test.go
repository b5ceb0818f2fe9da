package exefmt

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt/exefmttest"
)

// boundedReader fails the test on any read outside the object.
type boundedReader struct {
	t *testing.T
	b []byte
}

func (r boundedReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(r.b)) {
		r.t.Fatalf("read of %d bytes at %d outside an object of %d", len(p), off, len(r.b))
	}
	return copy(p, r.b[off:]), nil
}

// checkParse parses b as f and checks the invariants every outcome keeps:
// no read outside the object, a MalformedError with no Info or an Info
// whose sections and offsets are consistent, and no panic resolving
// anything.
func checkParse(t *testing.T, b []byte, f Format) {
	in, err := Parse(boundedReader{t, b}, int64(len(b)), f)
	if err != nil {
		var me *MalformedError
		if !errors.As(err, &me) || !errors.Is(err, ErrMalformed) || me.Format != f || in != nil {
			t.Fatalf("Parse = %+v, %v: want a %v MalformedError and no Info", in, err, f)
		}
	} else {
		if in.Format != f || in.Size != int64(len(b)) || len(in.Sections) < int(in.NumberOfSections) {
			t.Fatalf("inconsistent Info: %+v", in)
		}
		if f == PE {
			if int(in.NumberOfSections) != len(in.Sections) || in.NumberOfSections == 0 {
				t.Fatalf("PE with %d sections listed, %d counted", len(in.Sections), in.NumberOfSections)
			}
			// cli_rawaddr maps only into raw data inside the file.
			if int64(in.EP) >= in.Size {
				t.Fatalf("PE entry point %#x outside %d bytes", in.EP, in.Size)
			}
			for i, s := range in.Sections {
				if s.RawSize != 0 && int64(s.Raw)+int64(s.RawSize) > in.Size {
					t.Fatalf("PE section %d %+v runs past %d bytes", i, s, in.Size)
				}
			}
		}
	}
	for k := EPPlus; k <= EOFMinus; k++ {
		for _, x := range []uint32{0, 1, 255, 65535, 1 << 31} {
			w, ok := in.Resolve(Offset{Kind: k, N: x, Section: x, MaxShift: x})
			if ok && k != SectionWhole && w.Max != w.Min+x {
				t.Fatalf("Resolve(%v) = %+v: Max is not Min+shift", k, w)
			}
			if !ok && w != (Where{}) {
				t.Fatalf("Resolve(%v) = %+v with false", k, w)
			}
			w.Fits(patLen, in.size())
		}
	}
}

func (in *Info) size() int64 {
	if in == nil {
		return 0
	}
	return in.Size
}

func seeds(f *testing.F, samples ...[]byte) {
	for _, b := range samples {
		f.Add(b)
		for _, n := range []int{len(b) / 2, len(b) / 4, 64, 16} {
			if n < len(b) {
				f.Add(b[:n])
			}
		}
	}
	f.Add([]byte{})
}

func FuzzPE(f *testing.F) {
	s := samplePE()
	s.Size = 0x600 // the headers and the first bytes of .text: keeps the fuzzer fast
	b := exefmttest.BuildPE(s)
	odd := samplePE()
	odd.Size, odd.OptMagic, odd.FileAlign = 0x600, 0x20b, 0x400
	seeds(f, b, exefmttest.BuildPE(odd), []byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, b, PE) })
}

func FuzzELF(f *testing.F) {
	e := sampleELF32()
	e64 := sampleELF32()
	e64.Class64, e64.Big, e64.Entry = true, true, 0x400010
	e64.Progs = [][4]uint64{{0x400000, 0x300, 0, 0x300}}
	e0 := sampleELF32()
	e0.Sections = nil
	seeds(f, exefmttest.BuildELF(e), exefmttest.BuildELF(e64), exefmttest.BuildELF(e0)[:0x100])
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, b, ELF) })
}

func FuzzMachO(f *testing.F) {
	m := samplePPC()
	x := samplePPC()
	x.Cpu, x.Big = 7, false
	seeds(f, exefmttest.BuildMachO(m), exefmttest.BuildMachO(x), []byte{0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 72, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x19, 0, 0, 0, 72, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, b, MachO) })
}

// TestParseNone checks that an object of no executable format is not read
// at all and resolves EOF-n only.
func TestParseNone(t *testing.T) {
	t.Parallel()
	in, err := Parse(bytes.NewReader(nil), 1000, None)
	if err != nil || in.Format != None || in.Size != 1000 {
		t.Fatalf("Parse(None) = %+v, %v", in, err)
	}
	if w, ok := in.Resolve(Offset{Kind: EOFMinus, N: 8}); !ok || w.Min != 992 {
		t.Fatalf("EOF-8 = %+v, %v", w, ok)
	}
}
