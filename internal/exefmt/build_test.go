package exefmt

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// This file builds the executables the tests parse: small Go programs
// cross-compiled by the go tool, and hand-made objects with exactly the
// headers a test wants.

// filler returns n bytes of deterministic noise, so that the bytes at any
// two offsets differ and a signature taken from one offset is unlikely to
// be found at another.
func filler(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(b []byte, off int, order binary.ByteOrder, v any) {
	var w bytes.Buffer
	if err := binary.Write(&w, order, v); err != nil {
		panic(err)
	}
	copy(b[off:], w.Bytes())
}

// peSpec describes a hand-made PE32 file.
type peSpec struct {
	size             int // total file size
	ep               uint32
	salign, falign   uint32
	sizeOfHeaders    uint32
	numberOfSections uint16 // 0: len(sections)
	sections         []pe.SectionHeader32
	optMagic         uint16 // 0: 0x10b
	seed             uint64
}

// buildPE lays out a PE32: DOS header, "PE\0\0" at 0x40, the file header,
// a full optional header with 16 data directories, the section table, and
// noise everywhere else.
func buildPE(s peSpec) []byte {
	b := filler(s.size, s.seed)
	copy(b, "MZ")
	put(b, 60, binary.LittleEndian, uint32(0x40))
	copy(b[0x40:], "PE\x00\x00")
	n := s.numberOfSections
	if n == 0 {
		n = uint16(len(s.sections))
	}
	put(b, 0x44, binary.LittleEndian, pe.FileHeader{
		Machine: pe.IMAGE_FILE_MACHINE_I386, NumberOfSections: n,
		SizeOfOptionalHeader: 224, Characteristics: pe.IMAGE_FILE_EXECUTABLE_IMAGE | pe.IMAGE_FILE_32BIT_MACHINE,
	})
	magic := s.optMagic
	if magic == 0 {
		magic = 0x10b
	}
	put(b, 0x58, binary.LittleEndian, pe.OptionalHeader32{
		Magic: magic, AddressOfEntryPoint: s.ep, ImageBase: 0x400000,
		SectionAlignment: s.salign, FileAlignment: s.falign,
		MajorSubsystemVersion: 4, SizeOfImage: 0x10000, SizeOfHeaders: s.sizeOfHeaders,
		Subsystem: pe.IMAGE_SUBSYSTEM_WINDOWS_CUI, NumberOfRvaAndSizes: 16,
	})
	at := 0x58 + 224
	for _, sh := range s.sections {
		if at+40 <= len(b) {
			put(b, at, binary.LittleEndian, sh)
		}
		at += 40
	}
	return b
}

func peSection(name string, va, vsize, raw, rawsize uint32) pe.SectionHeader32 {
	var h pe.SectionHeader32
	copy(h.Name[:], name)
	h.VirtualAddress, h.VirtualSize, h.PointerToRawData, h.SizeOfRawData = va, vsize, raw, rawsize
	h.Characteristics = pe.IMAGE_SCN_CNT_CODE | pe.IMAGE_SCN_MEM_EXECUTE | pe.IMAGE_SCN_MEM_READ
	return h
}

// elfSpec describes a hand-made ELF file.
type elfSpec struct {
	size      int
	class64   bool
	big       bool
	entry     uint64
	progs     [][4]uint64 // vaddr, memsz, offset, filesz
	sections  [][3]uint64 // addr, offset, size
	shentsize uint16      // 0: the right size
	seed      uint64
}

func buildELF(s elfSpec) []byte {
	b := filler(s.size, s.seed)
	var bo binary.ByteOrder = binary.LittleEndian
	data := elf.ELFDATA2LSB
	if s.big {
		bo, data = binary.BigEndian, elf.ELFDATA2MSB
	}
	var ident [16]byte
	copy(ident[:], elf.ELFMAG)
	ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	ident[elf.EI_DATA] = byte(data)
	if s.class64 {
		ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
		phoff, shoff := uint64(64), uint64(64+56*len(s.progs))
		shent := s.shentsize
		if shent == 0 {
			shent = 64
		}
		put(b, 0, bo, elf.Header64{Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
			Entry: s.entry, Phoff: phoff, Shoff: shoff, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(s.progs)),
			Shentsize: shent, Shnum: uint16(len(s.sections))})
		for i, p := range s.progs {
			put(b, int(phoff)+56*i, bo, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
				Vaddr: p[0], Paddr: p[0], Memsz: p[1], Off: p[2], Filesz: p[3], Align: 0x1000})
		}
		for i, sh := range s.sections {
			if at := int(shoff) + 64*i; at+64 <= len(b) {
				put(b, at, bo, elf.Section64{Type: uint32(elf.SHT_PROGBITS), Addr: sh[0], Off: sh[1], Size: sh[2]})
			}
		}
		return b
	}
	ident[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	phoff, shoff := uint32(52), uint32(52+32*len(s.progs))
	shent := s.shentsize
	if shent == 0 {
		shent = 40
	}
	put(b, 0, bo, elf.Header32{Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_386), Version: 1,
		Entry: uint32(s.entry), Phoff: phoff, Shoff: shoff, Ehsize: 52, Phentsize: 32, Phnum: uint16(len(s.progs)),
		Shentsize: shent, Shnum: uint16(len(s.sections))})
	for i, p := range s.progs {
		put(b, int(phoff)+32*i, bo, elf.Prog32{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
			Vaddr: uint32(p[0]), Paddr: uint32(p[0]), Memsz: uint32(p[1]), Off: uint32(p[2]), Filesz: uint32(p[3]), Align: 0x1000})
	}
	for i, sh := range s.sections {
		if at := int(shoff) + 40*i; at+40 <= len(b) {
			put(b, at, bo, elf.Section32{Type: uint32(elf.SHT_PROGBITS), Addr: uint32(sh[0]), Off: uint32(sh[1]), Size: uint32(sh[2])})
		}
	}
	return b
}

// machoSpec describes a hand-made Mach-O file: one segment holding the
// sections, and an LC_UNIXTHREAD (after the segment, or before it with
// threadFirst, where the size ClamAV gives the thread state decides where
// the segment is read).
type machoSpec struct {
	size        int
	cpu         macho.Cpu
	big         bool
	m64         bool
	sections    [][3]uint32 // addr, size, offset
	align       uint32
	thread      bool
	threadFirst bool
	srr0        uint64
	seed        uint64
}

func buildMachO(s machoSpec) []byte {
	b := filler(s.size, s.seed)
	var bo binary.ByteOrder = binary.LittleEndian
	if s.big {
		bo = binary.BigEndian
	}
	ncmd := uint32(1)
	if s.thread {
		ncmd++
	}
	magic, at, segSize, sectSize, stateSize := macho.Magic32, 28, 56, 68, 160
	if s.m64 {
		magic, at, segSize, sectSize, stateSize = macho.Magic64, 32, 72, 80, 312
	}
	segLen := uint32(segSize + sectSize*len(s.sections))
	threadLen := uint32(16 + stateSize)
	put(b, 0, bo, macho.FileHeader{Magic: magic, Cpu: s.cpu, Type: macho.TypeExec, Ncmd: ncmd, Cmdsz: segLen + threadLen})
	thread := func() {
		put(b, at, bo, [4]uint32{uint32(macho.LoadCmdUnixThread), threadLen, 1, uint32(stateSize / 4)})
		at += 16
		state := make([]byte, stateSize)
		if s.m64 {
			bo.PutUint64(state, s.srr0)
		} else {
			bo.PutUint32(state, uint32(s.srr0))
		}
		copy(b[at:], state)
		at += stateSize
	}
	if s.thread && s.threadFirst {
		thread()
	}
	name := [16]byte{'_', '_', 'T', 'E', 'X', 'T'}
	if s.m64 {
		put(b, at, bo, macho.Segment64{Cmd: macho.LoadCmdSegment64, Len: segLen, Name: name,
			Memsz: 0x10000, Filesz: uint64(s.size), Maxprot: 7, Prot: 5, Nsect: uint32(len(s.sections))})
	} else {
		put(b, at, bo, macho.Segment32{Cmd: macho.LoadCmdSegment, Len: segLen, Name: name,
			Memsz: 0x10000, Filesz: uint32(s.size), Maxprot: 7, Prot: 5, Nsect: uint32(len(s.sections))})
	}
	at += segSize
	for _, sc := range s.sections {
		sect := [16]byte{'_', '_', 't', 'e', 'x', 't'}
		if s.m64 {
			put(b, at, bo, macho.Section64{Name: sect, Seg: name, Addr: uint64(sc[0]), Size: uint64(sc[1]), Offset: sc[2], Align: s.align})
		} else {
			put(b, at, bo, macho.Section32{Name: sect, Seg: name, Addr: sc[0], Size: sc[1], Offset: sc[2], Align: s.align})
		}
		at += sectSize
	}
	if s.thread && !s.threadFirst {
		thread()
	}
	return b
}

// setMachOSection rewrites the address and size of section i of a file
// buildMachO made with threadFirst unset.
func setMachOSection(b []byte, s machoSpec, i int, addr, size uint64) {
	var bo binary.ByteOrder = binary.LittleEndian
	if s.big {
		bo = binary.BigEndian
	}
	if s.m64 {
		at := 32 + 72 + 80*i
		bo.PutUint64(b[at+32:], addr)
		bo.PutUint64(b[at+40:], size)
		return
	}
	at := 28 + 56 + 68*i
	bo.PutUint32(b[at+32:], uint32(addr))
	bo.PutUint32(b[at+36:], uint32(size))
}

var (
	goBuildOnce sync.Once
	goBuilt     map[string][]byte
	goBuildErr  error
)

// goPrograms cross-compiles one small Go program for linux/amd64 (ELF),
// windows/amd64 (PE32+), darwin/arm64 and darwin/amd64 (Mach-O 64), once
// per test binary; the go tool is a test dependency like the compiler.
func goPrograms(t testing.TB) map[string][]byte {
	t.Helper()
	goTool := testenv.NeedTool(t, "go", "golang-go")
	goBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "exefmt-go")
		if err != nil {
			goBuildErr = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"vigil exefmt\\n\") }\n"), 0o644); err != nil {
			goBuildErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module exefmtprobe\n\ngo 1.22\n"), 0o644); err != nil {
			goBuildErr = err
			return
		}
		goBuilt = map[string][]byte{}
		for _, sys := range [][2]string{{"linux", "amd64"}, {"windows", "amd64"}, {"darwin", "arm64"}, {"darwin", "amd64"}} {
			out := filepath.Join(dir, sys[0]+"_"+sys[1])
			cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOOS="+sys[0], "GOARCH="+sys[1], "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
			if msg, err := cmd.CombinedOutput(); err != nil {
				goBuildErr = &buildError{sys: sys[0] + "/" + sys[1], err: err, out: msg}
				return
			}
			b, err := os.ReadFile(out)
			if err != nil {
				goBuildErr = err
				return
			}
			goBuilt[sys[0]+"/"+sys[1]] = b
		}
	})
	if goBuildErr != nil {
		t.Fatal(goBuildErr)
	}
	return goBuilt
}

type buildError struct {
	sys string
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "go build for " + e.sys + ": " + e.err.Error() + "\n" + string(e.out)
}
