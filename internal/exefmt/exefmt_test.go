package exefmt

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"errors"
	"reflect"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt/exefmttest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

func parse(t *testing.T, b []byte, f Format) (*Info, error) {
	t.Helper()
	return Parse(bytes.NewReader(b), int64(len(b)), f)
}

func mustParse(t *testing.T, b []byte, f Format) *Info {
	t.Helper()
	in, err := parse(t, b, f)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return in
}

func wantMalformed(t *testing.T, b []byte, f Format, reason string) {
	t.Helper()
	in, err := parse(t, b, f)
	var me *MalformedError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &me) || me.Format != f {
		t.Fatalf("Parse = %+v, %v; want a %v MalformedError", in, err, f)
	}
	if in != nil {
		t.Fatalf("Parse returned an Info with its error: %+v", in)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(reason)) {
		t.Fatalf("error %q does not say %q", err, reason)
	}
}

// samplePE is a PE32 whose entry point is in its second section, whose
// third section has no raw data and whose fourth runs past the end of the
// file.
func samplePE() exefmttest.PESpec {
	return exefmttest.PESpec{
		Size: 0xe00, EP: 0x2010, SectionAlign: 0x1000, FileAlign: 0x200, SizeOfHeaders: 0x400, Seed: 1,
		Sections: []pe.SectionHeader32{
			exefmttest.PESection(".text", 0x1000, 0x800, 0x400, 0x600),
			exefmttest.PESection(".data", 0x2000, 0x300, 0xa00, 0x200),
			exefmttest.PESection(".bss", 0x3000, 0x1000, 0, 0),
			exefmttest.PESection(".rsrc", 0x4000, 0x400, 0xc00, 0x400),
		},
	}
}

func TestPE(t *testing.T) {
	t.Parallel()
	in := mustParse(t, exefmttest.BuildPE(samplePE()), PE)
	want := &Info{
		Format: PE, Size: 0xe00, EP: 0xa10, NumberOfSections: 4, VirtualEP: 0x2010, HeaderSize: 0x1000,
		Sections: []Section{
			{RVA: 0x1000, VSize: 0x1000, Raw: 0x400, RawSize: 0x600},
			{RVA: 0x2000, VSize: 0x1000, Raw: 0xa00, RawSize: 0x200},
			{RVA: 0x3000, VSize: 0x1000, Raw: 0, RawSize: 0},
			{RVA: 0x4000, VSize: 0x1000, Raw: 0xc00, RawSize: 0x200}, // cut at the end of the file
		},
	}
	if !reflect.DeepEqual(in, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", in, want)
	}
}

func TestPEVariants(t *testing.T) {
	t.Parallel()
	t.Run("entry point in the headers", func(t *testing.T) {
		s := samplePE()
		s.EP = 0x300 // below SizeOfHeaders aligned to 0x1000: its own offset
		if in := mustParse(t, exefmttest.BuildPE(s), PE); in.EP != 0x300 {
			t.Fatalf("EP = %#x, want 0x300", in.EP)
		}
	})
	t.Run("entry point in the headers past the end of the file", func(t *testing.T) {
		s := samplePE()
		s.EP = 0xf00
		wantMalformed(t, exefmttest.BuildPE(s), PE, "maps to no file offset")
	})
	t.Run("entry point in a section without raw data", func(t *testing.T) {
		s := samplePE()
		s.EP = 0x3010
		wantMalformed(t, exefmttest.BuildPE(s), PE, "maps to no file offset")
	})
	t.Run("later sections win", func(t *testing.T) {
		// Two sections at the same RVA: cli_rawaddr searches from the last.
		s := samplePE()
		s.Sections[1] = exefmttest.PESection(".dup", 0x1000, 0x800, 0xa00, 0x200)
		s.EP = 0x1010
		if in := mustParse(t, exefmttest.BuildPE(s), PE); in.EP != 0xa10 {
			t.Fatalf("EP = %#x, want 0xa10 (the later section)", in.EP)
		}
	})
	t.Run("file alignment fallback", func(t *testing.T) {
		// FileAlignment 0x400 with a section at 0x600: ClamAV falls back
		// to 0x200, so the pointer is not aligned down to 0x400.
		s := samplePE()
		s.FileAlign = 0x400
		s.Sections[1] = exefmttest.PESection(".data", 0x2000, 0x300, 0x600, 0x200)
		in := mustParse(t, exefmttest.BuildPE(s), PE)
		if in.Sections[1].Raw != 0x600 || in.EP != 0x610 {
			t.Fatalf("section 1 raw %#x, EP %#x; want 0x600, 0x610", in.Sections[1].Raw, in.EP)
		}
	})
	t.Run("raw pointer aligned down", func(t *testing.T) {
		s := samplePE()
		s.Sections[1] = exefmttest.PESection(".data", 0x2000, 0x300, 0xa10, 0x1f0)
		in := mustParse(t, exefmttest.BuildPE(s), PE)
		if got := in.Sections[1]; got.Raw != 0xa00 || got.RawSize != 0x200 {
			t.Fatalf("section 1 = %+v, want raw 0xa00 size 0x200", got)
		}
	})
	t.Run("section past the end of the file kept", func(t *testing.T) {
		s := samplePE()
		s.Sections[3] = exefmttest.PESection(".far", 0x4000, 0x400, 0x2000, 0x200)
		in := mustParse(t, exefmttest.BuildPE(s), PE)
		if in.NumberOfSections != 4 || in.Sections[3].Raw != 0x2000 || in.Sections[3].RawSize != 0 {
			t.Fatalf("got %d sections, last %+v; want 4, raw 0x2000 size 0", in.NumberOfSections, in.Sections[3])
		}
	})
	t.Run("unknown optional header magic read as PE32", func(t *testing.T) {
		s := samplePE()
		s.OptMagic = 0x10c
		b := exefmttest.BuildPE(s)
		if _, err := pe.NewFile(bytes.NewReader(b)); err == nil {
			t.Fatal("debug/pe accepts the magic; the difference documented is gone")
		}
		if in := mustParse(t, b, PE); in.EP != 0xa10 {
			t.Fatalf("EP = %#x, want 0xa10", in.EP)
		}
	})
	t.Run("no sections", func(t *testing.T) {
		s := samplePE()
		s.Sections = nil
		wantMalformed(t, exefmttest.BuildPE(s), PE, "NumberOfSections is 0")
	})
	t.Run("section table cut", func(t *testing.T) {
		s := samplePE()
		s.Size = 0x58 + 224 + 3*40 + 20
		wantMalformed(t, exefmttest.BuildPE(s), PE, "section headers")
	})
	t.Run("sign bit", func(t *testing.T) {
		s := samplePE()
		s.Sections[2] = exefmttest.PESection(".bss", 0x3000, 0x80000000, 0, 0)
		wantMalformed(t, exefmttest.BuildPE(s), PE, "sign bit")
	})
	t.Run("not MZ", func(t *testing.T) {
		b := exefmttest.BuildPE(samplePE())
		b[0] = 'X'
		wantMalformed(t, b, PE, "DOS signature")
	})
	t.Run("ZM", func(t *testing.T) {
		b := exefmttest.BuildPE(samplePE())
		copy(b, "ZM")
		if in := mustParse(t, b, PE); in.EP != 0xa10 {
			t.Fatalf("EP = %#x", in.EP)
		}
	})
	t.Run("MZ only", func(t *testing.T) {
		wantMalformed(t, []byte("MZ"), PE, "e_lfanew")
	})
}

func sampleELF32() exefmttest.ELFSpec {
	return exefmttest.ELFSpec{
		Size: 0x400, Entry: 0x8049010, Seed: 2,
		Progs:    [][4]uint64{{0x8048000, 0x100, 0, 0x100}, {0x8049000, 0x200, 0x100, 0x200}},
		Sections: [][3]uint64{{0x8048000, 0, 0x100}, {0x8049000, 0x100, 0x200}, {0, 0x300, 0x40}},
	}
}

func TestELF(t *testing.T) {
	t.Parallel()
	in := mustParse(t, exefmttest.BuildELF(sampleELF32()), ELF)
	want := &Info{
		Format: ELF, Size: 0x400, EP: 0x110, NumberOfSections: 3, VirtualEP: 0x8049010,
		Sections: []Section{{RVA: 0x8048000, Raw: 0, RawSize: 0x100}, {RVA: 0x8049000, Raw: 0x100, RawSize: 0x200}, {Raw: 0x300, RawSize: 0x40}},
	}
	if !reflect.DeepEqual(in, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", in, want)
	}
	s := sampleELF32()
	s.Class64, s.Big, s.Entry = true, true, 0x400010
	s.Progs = [][4]uint64{{0x400000, 0x300, 0, 0x300}}
	in = mustParse(t, exefmttest.BuildELF(s), ELF)
	if in.EP != 0x10 || in.NumberOfSections != 3 || in.Sections[2] != (Section{Raw: 0x300, RawSize: 0x40}) {
		t.Fatalf("ELF64 big-endian: %+v", in)
	}
}

func TestELFVariants(t *testing.T) {
	t.Parallel()
	t.Run("entry outside every segment", func(t *testing.T) {
		s := sampleELF32()
		s.Entry = 0x9000000
		wantMalformed(t, exefmttest.BuildELF(s), ELF, "in no program header")
	})
	t.Run("entry 0", func(t *testing.T) {
		s := sampleELF32()
		s.Entry = 0
		if in := mustParse(t, exefmttest.BuildELF(s), ELF); in.EP != 0 {
			t.Fatalf("EP = %#x, want 0", in.EP)
		}
	})
	t.Run("first segment holding the entry wins", func(t *testing.T) {
		s := sampleELF32()
		s.Progs = append(s.Progs, [4]uint64{0x8049000, 0x200, 0x200, 0x200})
		s.Progs[0], s.Progs[2] = s.Progs[2], s.Progs[0]
		if in := mustParse(t, exefmttest.BuildELF(s), ELF); in.EP != 0x210 {
			t.Fatalf("EP = %#x, want 0x210", in.EP)
		}
	})
	t.Run("no section headers", func(t *testing.T) {
		s := sampleELF32()
		s.Sections = nil
		in := mustParse(t, exefmttest.BuildELF(s), ELF)
		if in.NumberOfSections != 0 || in.EP != 0x110 {
			t.Fatalf("got %+v", in)
		}
		if _, ok := in.Resolve(Offset{Kind: LastSectionPlus}); ok {
			t.Fatal("SL+0 resolved without sections")
		}
	})
	t.Run("wrong e_shentsize without sections", func(t *testing.T) {
		s := sampleELF32()
		s.Sections, s.Shentsize = nil, 1
		wantMalformed(t, exefmttest.BuildELF(s), ELF, "e_shentsize")
	})
	t.Run("program headers cut", func(t *testing.T) {
		b := exefmttest.BuildELF(sampleELF32())
		wantMalformed(t, b[:52+40], ELF, "program header")
	})
	t.Run("section past the end of the file taken as written", func(t *testing.T) {
		s := sampleELF32()
		s.Sections[2] = [3]uint64{0, 0x10000, 0x40}
		in := mustParse(t, exefmttest.BuildELF(s), ELF)
		if in.Sections[2].Raw != 0x10000 {
			t.Fatalf("section 2 = %+v", in.Sections[2])
		}
	})
	t.Run("unknown class", func(t *testing.T) {
		b := exefmttest.BuildELF(sampleELF32())
		b[elf.EI_CLASS] = 3
		wantMalformed(t, b, ELF, "class")
	})
	t.Run("any data byte but 1 is big-endian", func(t *testing.T) {
		s := sampleELF32()
		s.Big = true
		b := exefmttest.BuildELF(s)
		b[elf.EI_DATA] = 7
		if in := mustParse(t, b, ELF); in.EP != 0x110 {
			t.Fatalf("EP = %#x", in.EP)
		}
	})
}

func samplePPC() exefmttest.MachOSpec {
	return exefmttest.MachOSpec{
		Size: 0x400, Cpu: macho.CpuPpc, Big: true, Align: 4, Thread: true, SRR0: 0x2010, Seed: 3,
		Sections: [][3]uint32{{0x1000, 0x100, 0x200}, {0x2000, 0x81, 0x300}},
	}
}

func TestMachO(t *testing.T) {
	t.Parallel()
	in := mustParse(t, exefmttest.BuildMachO(samplePPC()), MachO)
	want := &Info{
		Format: MachO, Size: 0x400, EP: 0x310, NumberOfSections: 2, VirtualEP: 0x2010,
		Sections: []Section{{RVA: 0x1000, VSize: 0x100, Raw: 0x200, RawSize: 0x100}, {RVA: 0x2000, VSize: 0x81, Raw: 0x300, RawSize: 0x90}},
	}
	if !reflect.DeepEqual(in, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", in, want)
	}
}

func TestMachOVariants(t *testing.T) {
	t.Parallel()
	t.Run("x86 thread: no entry point", func(t *testing.T) {
		s := samplePPC()
		s.Cpu, s.Big = macho.Cpu386, false
		if in := mustParse(t, exefmttest.BuildMachO(s), MachO); in.EP != 0 || in.NumberOfSections != 2 {
			t.Fatalf("got %+v", in)
		}
	})
	t.Run("entry point in no section", func(t *testing.T) {
		s := samplePPC()
		s.SRR0 = 0x5000
		wantMalformed(t, exefmttest.BuildMachO(s), MachO, "in no section")
	})
	t.Run("entry point without sections kept virtual", func(t *testing.T) {
		s := samplePPC()
		s.Sections = nil
		in := mustParse(t, exefmttest.BuildMachO(s), MachO)
		if in.EP != 0x2010 || in.NumberOfSections != 0 {
			t.Fatalf("got %+v", in)
		}
	})
	t.Run("alignment of 2^32", func(t *testing.T) {
		for _, m64 := range []bool{false, true} {
			s := samplePPC()
			s.Align, s.M64 = 32, m64
			wantMalformed(t, exefmttest.BuildMachO(s), MachO, "alignment")
		}
	})
	t.Run("section sizes", func(t *testing.T) {
		for _, tc := range []struct {
			m64        bool
			addr, size uint64
			reason     string // "": parses
			rsz        uint32
		}{
			{false, 0x2000, 0xfffffff0, "", 0xfffffff0},
			{false, 0x2000, 0xfffffff1, "exceeds 32 bits", 0},
			{true, 0x2000, 0xfffffff1, "exceeds 32 bits", 0},
			{true, 0x2000, 1 << 32, "exceeds 32 bits", 0},
			{true, 0x2000, 1<<64 - 1, "exceeds 32 bits", 0},
			{true, 0x1_0000_2000, 0x81, "", 0x90}, // the address is truncated
		} {
			s := samplePPC()
			s.M64, s.Thread = tc.m64, false
			b := exefmttest.BuildMachO(s)
			exefmttest.SetMachOSection(b, s, 1, tc.addr, tc.size)
			if tc.reason != "" {
				wantMalformed(t, b, MachO, tc.reason)
				continue
			}
			in := mustParse(t, b, MachO)
			if got := in.Sections[1]; got.RawSize != tc.rsz || got.RVA != uint32(tc.addr) {
				t.Errorf("%+v: section 1 = %+v", tc, got)
			}
		}
	})
	t.Run("universal binary", func(t *testing.T) {
		b := append([]byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 1}, make([]byte, 40)...)
		wantMalformed(t, b, MachO, "magic")
	})
	t.Run("PowerPC 64, thread state first", func(t *testing.T) {
		s := samplePPC()
		s.Cpu, s.M64, s.ThreadFirst, s.SRR0 = macho.CpuPpc64, true, true, 0x1_0000_2010
		s.Sections = [][3]uint32{{0x1000, 0x100, 0x200}, {0x2000, 0x81, 0x300}}
		s.Align = 1
		in := mustParse(t, exefmttest.BuildMachO(s), MachO)
		want := &Info{
			Format: MachO, Size: 0x400, EP: 0x310, NumberOfSections: 2, VirtualEP: 0x2010,
			Sections: []Section{{RVA: 0x1000, VSize: 0x100, Raw: 0x200, RawSize: 0x100}, {RVA: 0x2000, VSize: 0x81, Raw: 0x300, RawSize: 0x82}},
		}
		if !reflect.DeepEqual(in, want) {
			t.Fatalf("Parse =\n%+v\nwant\n%+v", in, want)
		}
	})
	t.Run("thread state cut", func(t *testing.T) {
		b := exefmttest.BuildMachO(samplePPC())
		wantMalformed(t, b[:28+56+2*68+16+100], MachO, "thread state")
	})
}

// TestGoPrograms parses what the go tool builds and checks what ClamAV's
// reading shares with the standard library's: the ELF entry point and
// sections, the PE sections and entry point, the Mach-O sections.
func TestGoPrograms(t *testing.T) {
	t.Parallel()
	progs := exefmttest.GoPrograms(t, testenv.NeedTool(t, "go", "golang-go"))

	t.Run("linux/amd64", func(t *testing.T) {
		b := progs["linux/amd64"]
		in := mustParse(t, b, ELF)
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var ep uint64
		for _, p := range f.Progs {
			if p.Vaddr <= f.Entry && f.Entry < p.Vaddr+p.Memsz {
				ep = f.Entry - p.Vaddr + p.Off
				break
			}
		}
		if ep == 0 || uint64(in.EP) != ep {
			t.Fatalf("EP = %#x, debug/elf's mapping %#x", in.EP, ep)
		}
		if int(in.NumberOfSections) != len(f.Sections) {
			t.Fatalf("%d sections, debug/elf %d", in.NumberOfSections, len(f.Sections))
		}
		for i, s := range f.Sections {
			if uint64(in.Sections[i].Raw) != s.Offset || uint64(in.Sections[i].RawSize) != s.Size {
				t.Errorf("section %d %s: %+v, debug/elf offset %#x size %#x", i, s.Name, in.Sections[i], s.Offset, s.Size)
			}
		}
	})
	t.Run("windows/amd64", func(t *testing.T) {
		b := progs["windows/amd64"]
		in := mustParse(t, b, PE)
		f, err := pe.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		oh := f.OptionalHeader.(*pe.OptionalHeader64)
		if in.VirtualEP != oh.AddressOfEntryPoint || int(in.NumberOfSections) != len(f.Sections) {
			t.Fatalf("got %+v; debug/pe: entry %#x, %d sections", in, oh.AddressOfEntryPoint, len(f.Sections))
		}
		var ep uint32
		for i := len(f.Sections) - 1; i >= 0; i-- {
			s := f.Sections[i]
			if s.Size != 0 && s.VirtualAddress <= oh.AddressOfEntryPoint && oh.AddressOfEntryPoint-s.VirtualAddress < s.Size {
				ep = oh.AddressOfEntryPoint - s.VirtualAddress + s.Offset
				break
			}
		}
		if ep == 0 || in.EP != ep {
			t.Fatalf("EP = %#x, debug/pe's sections say %#x", in.EP, ep)
		}
		for i, s := range f.Sections {
			if in.Sections[i].Raw != s.Offset || in.Sections[i].RawSize != s.Size {
				t.Errorf("section %d %s: %+v, debug/pe offset %#x size %#x", i, s.Name, in.Sections[i], s.Offset, s.Size)
			}
		}
	})
	for _, sys := range []string{"darwin/arm64", "darwin/amd64"} {
		t.Run(sys, func(t *testing.T) {
			b := progs[sys]
			in := mustParse(t, b, MachO)
			f, err := macho.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			// No PowerPC thread state: ClamAV's entry point is 0.
			if in.EP != 0 || int(in.NumberOfSections) != len(f.Sections) {
				t.Fatalf("EP %#x, %d sections; want 0 and debug/macho's %d", in.EP, in.NumberOfSections, len(f.Sections))
			}
			for i, s := range f.Sections {
				a := uint32(1) << s.Align
				want := Section{RVA: uint32(s.Addr), VSize: uint32(s.Size), Raw: s.Offset, RawSize: uint32(s.Size) + (a-uint32(s.Size)%a)%a}
				if in.Sections[i] != want {
					t.Errorf("section %d %s: %+v, want %+v", i, s.Name, in.Sections[i], want)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	in := mustParse(t, exefmttest.BuildPE(samplePE()), PE)
	for _, tc := range []struct {
		o    Offset
		want Where
		ok   bool
	}{
		{Offset{Kind: EPPlus, N: 16}, Where{0xa20, 0xa20}, true},
		{Offset{Kind: EPPlus, N: 16, MaxShift: 5}, Where{0xa20, 0xa25}, true},
		{Offset{Kind: EPMinus, N: 4}, Where{0xa0c, 0xa0c}, true},
		{Offset{Kind: EPMinus, N: 0xa11}, Where{0xffffffff, 0xffffffff}, true}, // wraps, as in ClamAV
		{Offset{Kind: EPMinus, N: 0xa12}, Where{}, false},                      // lands on CLI_OFF_NONE
		{Offset{Kind: SectionPlus, Section: 0, N: 8}, Where{0x408, 0x408}, true},
		{Offset{Kind: SectionPlus, Section: 3}, Where{0xc00, 0xc00}, true},
		{Offset{Kind: SectionPlus, Section: 4}, Where{}, false},
		{Offset{Kind: LastSectionPlus, N: 4}, Where{0xc04, 0xc04}, true},
		{Offset{Kind: SectionWhole, Section: 1}, Where{0xa00, 0xc00}, true},
		{Offset{Kind: SectionWhole, Section: 1, MaxShift: 3}, Where{0xa00, 0xc03}, true},
		{Offset{Kind: SectionWhole, Section: 2}, Where{0, 0}, true},
		{Offset{Kind: SectionWhole, Section: 9}, Where{}, false},
		{Offset{Kind: EOFMinus, N: 4}, Where{0xdfc, 0xdfc}, true},
		{Offset{Kind: 0}, Where{}, false},
	} {
		got, ok := in.Resolve(tc.o)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Resolve(%v%d S%d ,%d) = %+v, %v; want %+v, %v", tc.o.Kind, tc.o.N, tc.o.Section, tc.o.MaxShift, got, ok, tc.want, tc.ok)
		}
	}
	var broken *Info
	for k := EPPlus; k <= EOFMinus; k++ {
		if _, ok := broken.Resolve(Offset{Kind: k}); ok {
			t.Errorf("a malformed object resolves %v", k)
		}
	}
	plain, err := Parse(bytes.NewReader(nil), 100, None)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := plain.Resolve(Offset{Kind: EOFMinus, N: 10}); !ok || w.Min != 90 {
		t.Errorf("EOF-10 of 100 bytes = %+v, %v", w, ok)
	}
	if _, ok := plain.Resolve(Offset{Kind: EPPlus}); ok {
		t.Error("EP+0 resolved in an object that is no executable")
	}
	if !(Where{Min: 92}).Fits(8, 100) || (Where{Min: 93}).Fits(8, 100) || !(Where{Min: 0xfffffffc}).Fits(8, 100) {
		t.Error("Fits does not follow ClamAV's uint32 check")
	}
	if w := (Where{Min: 4, Max: 6}); !w.Admits(4) || !w.Admits(6) || w.Admits(7) || w.Admits(3) {
		t.Error("Admits")
	}
}

func TestReadErrors(t *testing.T) {
	t.Parallel()
	b := exefmttest.BuildPE(samplePE())
	want := errors.New("disk on fire")
	_, err := Parse(failingReader{b, want}, int64(len(b)), PE)
	if !errors.Is(err, want) || errors.Is(err, ErrMalformed) {
		t.Fatalf("Parse over a failing reader: %v", err)
	}
	if _, err := Parse(bytes.NewReader(b), -1, PE); err == nil {
		t.Fatal("negative size accepted")
	}
	if _, err := Parse(bytes.NewReader(b), int64(len(b)), Format(42)); err == nil {
		t.Fatal("unknown format accepted")
	}
}

type failingReader struct {
	b   []byte
	err error
}

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off > 0x100 {
		return 0, r.err
	}
	return copy(p, r.b[off:]), nil
}

func BenchmarkParse(b *testing.B) {
	progs := exefmttest.GoPrograms(b, testenv.NeedTool(b, "go", "golang-go"))
	for _, c := range []struct {
		sys string
		f   Format
	}{{"linux/amd64", ELF}, {"windows/amd64", PE}, {"darwin/arm64", MachO}} {
		data := progs[c.sys]
		b.Run(c.f.String(), func(b *testing.B) {
			r := bytes.NewReader(data)
			for b.Loop() {
				if _, err := Parse(r, int64(len(data)), c.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParsePESections: a section starting past the end of the file is
// kept by Parse with no raw data (cli_pe_targetinfo), dropped by
// ParsePESections (cli_scanpe), which refuses the file when it was the
// only section.
func TestParsePESections(t *testing.T) {
	t.Parallel()
	spec := exefmttest.PESpec{Size: 0x600, EP: 0x1010, SectionAlign: 0x1000, FileAlign: 0x200, SizeOfHeaders: 0x200, Seed: 9,
		Sections: []pe.SectionHeader32{
			exefmttest.PESection(".text", 0x1000, 0x400, 0x200, 0x400),
			exefmttest.PESection(".far", 0x2000, 0x200, 0x10000, 0x200),
		}}
	b := exefmttest.BuildPE(spec)
	in, err := Parse(bytes.NewReader(b), int64(len(b)), PE)
	if err != nil || len(in.Sections) != 2 || in.Sections[1].RawSize != 0 || in.NumberOfSections != 2 {
		t.Fatalf("Parse: %+v, %v", in, err)
	}
	in, err = ParsePESections(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(in.Sections) != 1 || in.Sections[0].Raw != 0x200 || in.Sections[0].RawSize != 0x400 || in.NumberOfSections != 1 {
		t.Fatalf("ParsePESections: %+v, %v", in, err)
	}
	spec.Sections = spec.Sections[1:]
	spec.EP = 0x100 // in the headers
	b = exefmttest.BuildPE(spec)
	if _, err := ParsePESections(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParsePESections of a file whose only section is past its end: %v", err)
	}
	if in, err := Parse(bytes.NewReader(b), int64(len(b)), PE); err != nil || len(in.Sections) != 1 {
		t.Errorf("Parse of the same: %+v, %v", in, err)
	}
}
