package scan

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/exefmt/exefmttest"
	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/textnorm"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// fuzzExeSigs are signatures of the executable targets at every offset
// form, over a small alphabet so that fuzzed data hits them.
const fuzzExeSigs = "" +
	"PE.EP:1:EP+0:61626364\n" +
	"PE.EPm:1:EP-2,3:616263??\n" +
	"PE.S1:1:S1+4:62636465\n" +
	"PE.SE0:1:SE0:63646566\n" +
	"PE.SE1w:1:SE1:6364??66\n" +
	"PE.SL:1:SL+0,8:61616161\n" +
	"PE.EOF:1:EOF-8:64656667\n" +
	"ELF.EP:6:EP+1:61626364\n" +
	"ELF.S0:6:S0+0,4:62636465\n" +
	"ELF.SE1:6:SE1,2:63646566\n" +
	"ELF.EOF:6:EOF-4:64656667\n" +
	"MachO.EP:9:EP+0,16:61626364\n" +
	"MachO.SE0:9:SE0:63646566\n" +
	"MachO.SL:9:SL+2:61616161\n" +
	"Gen.EOF:0:EOF-4,2:64656667\n" +
	"Gen.Abs:0:64,8:61626364\n"

// refExeMatch is the brute-force answer: whether b matches data typed
// as format f (its headers in, nil when malformed).
func refExeMatch(b *signatures.BodySig, data []byte, f exefmt.Format, in *exefmt.Info) bool {
	size := int64(len(data))
	var lo, hi int64
	switch b.Offset.Kind {
	case signatures.OffsetAny, signatures.OffsetAbs, signatures.OffsetEOF:
		if b.Offset.Kind == signatures.OffsetEOF && f != exefmt.None && in == nil {
			return false
		}
		var ok bool
		if lo, hi, ok = b.Offset.Range(size); !ok {
			return false
		}
	default:
		kind := map[signatures.OffsetKind]exefmt.Kind{
			signatures.OffsetEPPlus: exefmt.EPPlus, signatures.OffsetEPMinus: exefmt.EPMinus,
			signatures.OffsetSectionPlus: exefmt.SectionPlus, signatures.OffsetLastSection: exefmt.LastSectionPlus,
			signatures.OffsetSection: exefmt.SectionWhole,
		}[b.Offset.Kind]
		w, ok := in.Resolve(exefmt.Offset{Kind: kind, N: uint32(b.Offset.N), Section: b.Offset.Section, MaxShift: uint32(b.Offset.Shift)})
		if !ok {
			return false
		}
		lo, hi = int64(w.Min), int64(w.Max)
	}
	if b.Target == 1 && !strings.ContainsAny(b.Hex, "?") && b.Offset.Shift == 0 && f == exefmt.PE && size >= exefmt.ExactStartSize {
		hi = lo
	}
	p := &b.Pattern.Parts[0]
	for s := lo; s <= hi && s+int64(p.Len()) <= size; s++ {
		if p.MatchAt(data[s:]) {
			return true
		}
	}
	return false
}

// FuzzExecutableOffsets: for any object (seeded with well-formed PE, ELF
// and Mach-O), the raw pass of its type finds exactly the signatures the
// brute-force matcher finds with its headers as exefmt parses them, and
// never panics.
func FuzzExecutableOffsets(f *testing.F) {
	set, err := signatures.Parse("f.ndb", strings.NewReader(fuzzExeSigs))
	if err != nil {
		f.Fatal(err)
	}
	if len(set.Bodies) != strings.Count(fuzzExeSigs, "\n") {
		f.Fatalf("%d of the signatures loaded", len(set.Bodies))
	}
	e := New(set)
	for _, seed := range fuzzExeSeeds(set) {
		f.Add(seed)
	}
	f.Add([]byte("MZ not a PE at all, abcd abcd"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 || len(data) < minScanSize {
			return
		}
		typ := filetype.Detect(data)
		o := &unpack.Object{R: bytes.NewReader(data), Size: int64(len(data)), Type: typ}
		format := exeFormat(typ)
		var in *exefmt.Info
		if format != exefmt.None {
			in, _ = exefmt.Parse(o.R, o.Size, format)
		}
		targets := textnorm.Target(typ)
		var want []string
		for i := range set.Bodies {
			b := &set.Bodies[i]
			if (b.Target == 0 || int(b.Target) == targets) && refExeMatch(b, data, format, in) {
				want = append(want, b.Name)
			}
		}
		slices.Sort(want)
		m := e.newMatcher()
		m.setExe(o)
		res, err := m.scan(context.Background(), bytes.NewReader(data), o.Size, targetsOf([]int{0, targets}), false)
		m.clearExe()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Signatures, want) && len(res.Signatures)+len(want) > 0 {
			t.Fatalf("type %v: got %q, want %q", typ, res.Signatures, want)
		}
	})
}

// fuzzExeSeeds are a PE, an ELF and a Mach-O with the bytes of every
// signature of their target planted where its offset resolves.
func fuzzExeSeeds(set *signatures.Set) [][]byte {
	var seeds [][]byte
	for _, b := range [][]byte{
		exefmttest.BuildPE(samplePESpec(1)), exefmttest.BuildELF(sampleELFSpec(2)), exefmttest.BuildMachO(sampleMachOSpec(3)),
	} {
		f := exeFormat(filetype.Detect(b))
		in, err := exefmt.Parse(bytes.NewReader(b), int64(len(b)), f)
		if err != nil {
			panic(err)
		}
		for i := range set.Bodies {
			sig := &set.Bodies[i]
			if int(sig.Target) != f.Target() || sig.Offset.Kind == signatures.OffsetEOF {
				continue
			}
			w, ok := in.Resolve(exefmt.Offset{Kind: exeKinds[sig.Offset.Kind], N: uint32(sig.Offset.N), Section: sig.Offset.Section})
			p := sig.Pattern.Parts[0]
			if ok && w.Min >= 0x40 && int(w.Min)+p.Len() <= len(b) { // not over the magic
				copy(b[w.Min:], p.Value)
			}
		}
		seeds = append(seeds, b, append(bytes.Clone(b), "defg"...))
	}
	return append(seeds, []byte("MZ not a PE at all, abcd abcd defg"))
}

// TestFuzzExeSeeds checks that the seeds match many of the signatures
// (the fuzz target compares more than absences).
func TestFuzzExeSeeds(t *testing.T) {
	t.Parallel()
	set, err := signatures.Parse("f.ndb", strings.NewReader(fuzzExeSigs))
	if err != nil {
		t.Fatal(err)
	}
	e := New(set)
	for i, seed := range fuzzExeSeeds(set)[:6] {
		typ := filetype.Detect(seed)
		m := e.newMatcher()
		m.setExe(&unpack.Object{R: bytes.NewReader(seed), Size: int64(len(seed)), Type: typ})
		res, err := m.scan(context.Background(), bytes.NewReader(seed), int64(len(seed)), targetsOf([]int{0, textnorm.Target(typ)}), false)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Signatures) < 2 {
			t.Errorf("seed %d (%v): matched only %q", i, typ, res.Signatures)
		}
	}
}
