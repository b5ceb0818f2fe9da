// Package exefmttest builds executables for tests: hand-made PE, ELF and
// Mach-O objects with exactly the headers a test wants (BuildPE,
// BuildELF, BuildMachO), and small Go programs cross-compiled for
// Linux, Windows and macOS (GoPrograms). It serves the tests of package
// exefmt and of the packages that match executables (package scan), in
// the manner of net/http/httptest.
//
// It imports only the standard library (not even exefmt, so that
// exefmt's own tests can use it): the objects are laid out from the
// specifications' fields, with deterministic noise (Filler) everywhere
// else, so that bytes taken from one offset are unlikely to be found at
// another.
package exefmttest

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
)

// Filler returns n bytes of deterministic noise, so that the bytes at any
// two offsets differ and a signature taken from one offset is unlikely to
// be found at another.
func Filler(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func Put(b []byte, off int, order binary.ByteOrder, v any) {
	var w bytes.Buffer
	if err := binary.Write(&w, order, v); err != nil {
		panic(err)
	}
	copy(b[off:], w.Bytes())
}

// PESpec describes a hand-made PE32 file.
type PESpec struct {
	Size                    int // total file size
	EP                      uint32
	SectionAlign, FileAlign uint32
	SizeOfHeaders           uint32
	NumberOfSections        uint16 // 0: len(sections)
	Sections                []pe.SectionHeader32
	OptMagic                uint16 // 0: 0x10b
	Seed                    uint64
}

// BuildPE lays out a PE32: DOS header, "PE\0\0" at 0x40, the file header,
// a full optional header with 16 data directories, the section table, and
// noise everywhere else.
func BuildPE(s PESpec) []byte {
	b := Filler(s.Size, s.Seed)
	copy(b, "MZ")
	Put(b, 60, binary.LittleEndian, uint32(0x40))
	copy(b[0x40:], "PE\x00\x00")
	n := s.NumberOfSections
	if n == 0 {
		n = uint16(len(s.Sections))
	}
	Put(b, 0x44, binary.LittleEndian, pe.FileHeader{
		Machine: pe.IMAGE_FILE_MACHINE_I386, NumberOfSections: n,
		SizeOfOptionalHeader: 224, Characteristics: pe.IMAGE_FILE_EXECUTABLE_IMAGE | pe.IMAGE_FILE_32BIT_MACHINE,
	})
	magic := s.OptMagic
	if magic == 0 {
		magic = 0x10b
	}
	Put(b, 0x58, binary.LittleEndian, pe.OptionalHeader32{
		Magic: magic, AddressOfEntryPoint: s.EP, ImageBase: 0x400000,
		SectionAlignment: s.SectionAlign, FileAlignment: s.FileAlign,
		MajorSubsystemVersion: 4, SizeOfImage: 0x10000, SizeOfHeaders: s.SizeOfHeaders,
		Subsystem: pe.IMAGE_SUBSYSTEM_WINDOWS_CUI, NumberOfRvaAndSizes: 16,
	})
	at := 0x58 + 224
	for _, sh := range s.Sections {
		if at+40 <= len(b) {
			Put(b, at, binary.LittleEndian, sh)
		}
		at += 40
	}
	return b
}

func PESection(name string, va, vsize, raw, rawsize uint32) pe.SectionHeader32 {
	var h pe.SectionHeader32
	copy(h.Name[:], name)
	h.VirtualAddress, h.VirtualSize, h.PointerToRawData, h.SizeOfRawData = va, vsize, raw, rawsize
	h.Characteristics = pe.IMAGE_SCN_CNT_CODE | pe.IMAGE_SCN_MEM_EXECUTE | pe.IMAGE_SCN_MEM_READ
	return h
}

// ELFSpec describes a hand-made ELF file.
type ELFSpec struct {
	Size      int
	Class64   bool
	Big       bool
	Entry     uint64
	Progs     [][4]uint64 // vaddr, memsz, offset, filesz
	Sections  [][3]uint64 // addr, offset, size
	Shentsize uint16      // 0: the right size
	Seed      uint64
}

func BuildELF(s ELFSpec) []byte {
	b := Filler(s.Size, s.Seed)
	var bo binary.ByteOrder = binary.LittleEndian
	data := elf.ELFDATA2LSB
	if s.Big {
		bo, data = binary.BigEndian, elf.ELFDATA2MSB
	}
	var ident [16]byte
	copy(ident[:], elf.ELFMAG)
	ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	ident[elf.EI_DATA] = byte(data)
	if s.Class64 {
		ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
		phoff, shoff := uint64(64), uint64(64+56*len(s.Progs))
		shent := s.Shentsize
		if shent == 0 {
			shent = 64
		}
		Put(b, 0, bo, elf.Header64{Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
			Entry: s.Entry, Phoff: phoff, Shoff: shoff, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(s.Progs)),
			Shentsize: shent, Shnum: uint16(len(s.Sections))})
		for i, p := range s.Progs {
			Put(b, int(phoff)+56*i, bo, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
				Vaddr: p[0], Paddr: p[0], Memsz: p[1], Off: p[2], Filesz: p[3], Align: 0x1000})
		}
		for i, sh := range s.Sections {
			if at := int(shoff) + 64*i; at+64 <= len(b) {
				Put(b, at, bo, elf.Section64{Type: uint32(elf.SHT_PROGBITS), Addr: sh[0], Off: sh[1], Size: sh[2]})
			}
		}
		return b
	}
	ident[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	phoff, shoff := uint32(52), uint32(52+32*len(s.Progs))
	shent := s.Shentsize
	if shent == 0 {
		shent = 40
	}
	Put(b, 0, bo, elf.Header32{Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_386), Version: 1,
		Entry: uint32(s.Entry), Phoff: phoff, Shoff: shoff, Ehsize: 52, Phentsize: 32, Phnum: uint16(len(s.Progs)),
		Shentsize: shent, Shnum: uint16(len(s.Sections))})
	for i, p := range s.Progs {
		Put(b, int(phoff)+32*i, bo, elf.Prog32{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
			Vaddr: uint32(p[0]), Paddr: uint32(p[0]), Memsz: uint32(p[1]), Off: uint32(p[2]), Filesz: uint32(p[3]), Align: 0x1000})
	}
	for i, sh := range s.Sections {
		if at := int(shoff) + 40*i; at+40 <= len(b) {
			Put(b, at, bo, elf.Section32{Type: uint32(elf.SHT_PROGBITS), Addr: uint32(sh[0]), Off: uint32(sh[1]), Size: uint32(sh[2])})
		}
	}
	return b
}

// MachOSpec describes a hand-made Mach-O file: one segment holding the
// sections, and an LC_UNIXTHREAD (after the segment, or before it with
// threadFirst, where the size ClamAV gives the thread state decides where
// the segment is read).
type MachOSpec struct {
	Size        int
	Cpu         macho.Cpu
	Big         bool
	M64         bool
	Sections    [][3]uint32 // addr, size, offset
	Align       uint32
	Thread      bool
	ThreadFirst bool
	SRR0        uint64
	Seed        uint64
}

func BuildMachO(s MachOSpec) []byte {
	b := Filler(s.Size, s.Seed)
	var bo binary.ByteOrder = binary.LittleEndian
	if s.Big {
		bo = binary.BigEndian
	}
	ncmd := uint32(1)
	if s.Thread {
		ncmd++
	}
	magic, at, segSize, sectSize, stateSize := macho.Magic32, 28, 56, 68, 160
	if s.M64 {
		magic, at, segSize, sectSize, stateSize = macho.Magic64, 32, 72, 80, 312
	}
	segLen := uint32(segSize + sectSize*len(s.Sections))
	threadLen := uint32(16 + stateSize)
	Put(b, 0, bo, macho.FileHeader{Magic: magic, Cpu: s.Cpu, Type: macho.TypeExec, Ncmd: ncmd, Cmdsz: segLen + threadLen})
	thread := func() {
		Put(b, at, bo, [4]uint32{uint32(macho.LoadCmdUnixThread), threadLen, 1, uint32(stateSize / 4)})
		at += 16
		state := make([]byte, stateSize)
		if s.M64 {
			bo.PutUint64(state, s.SRR0)
		} else {
			bo.PutUint32(state, uint32(s.SRR0))
		}
		copy(b[at:], state)
		at += stateSize
	}
	if s.Thread && s.ThreadFirst {
		thread()
	}
	name := [16]byte{'_', '_', 'T', 'E', 'X', 'T'}
	if s.M64 {
		Put(b, at, bo, macho.Segment64{Cmd: macho.LoadCmdSegment64, Len: segLen, Name: name,
			Memsz: 0x10000, Filesz: uint64(s.Size), Maxprot: 7, Prot: 5, Nsect: uint32(len(s.Sections))})
	} else {
		Put(b, at, bo, macho.Segment32{Cmd: macho.LoadCmdSegment, Len: segLen, Name: name,
			Memsz: 0x10000, Filesz: uint32(s.Size), Maxprot: 7, Prot: 5, Nsect: uint32(len(s.Sections))})
	}
	at += segSize
	for _, sc := range s.Sections {
		sect := [16]byte{'_', '_', 't', 'e', 'x', 't'}
		if s.M64 {
			Put(b, at, bo, macho.Section64{Name: sect, Seg: name, Addr: uint64(sc[0]), Size: uint64(sc[1]), Offset: sc[2], Align: s.Align})
		} else {
			Put(b, at, bo, macho.Section32{Name: sect, Seg: name, Addr: sc[0], Size: sc[1], Offset: sc[2], Align: s.Align})
		}
		at += sectSize
	}
	if s.Thread && !s.ThreadFirst {
		thread()
	}
	return b
}

// SetMachOSection rewrites the address and size of section i of a file
// BuildMachO made with threadFirst unset.
func SetMachOSection(b []byte, s MachOSpec, i int, addr, size uint64) {
	var bo binary.ByteOrder = binary.LittleEndian
	if s.Big {
		bo = binary.BigEndian
	}
	if s.M64 {
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

// GoPrograms cross-compiles one small Go program for linux/amd64 (ELF),
// windows/amd64 (PE32+), darwin/arm64 and darwin/amd64 (Mach-O 64) with
// the go tool at goTool (the caller finds it, e.g. with
// testenv.NeedTool), once per test binary, and returns the programs by
// "GOOS/GOARCH". A build failure fails t.
func GoPrograms(t testing.TB, goTool string) map[string][]byte {
	t.Helper()
	goBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "exefmt-go")
		if err != nil {
			goBuildErr = err
			return
		}
		defer os.RemoveAll(dir)
		const src = "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"vigil exefmt\\n\") }\n"
		goBuilt = map[string][]byte{}
		for _, sys := range [][2]string{{"linux", "amd64"}, {"windows", "amd64"}, {"darwin", "arm64"}, {"darwin", "amd64"}} {
			b, err := GoBuild(goTool, dir, src, sys[0], sys[1])
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

// GoBuild cross-compiles the Go program src (one main.go, standard
// library only) for goos/goarch with the go tool at goTool, stripped and
// static, in dir (a go.mod and main.go are written there), and returns
// the executable.
func GoBuild(goTool, dir, src, goos, goarch string) ([]byte, error) {
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module exefmtprobe\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, goos+"_"+goarch)
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, &buildError{sys: goos + "/" + goarch, err: err, out: msg}
	}
	return os.ReadFile(out)
}

type buildError struct {
	sys string
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "go build for " + e.sys + ": " + e.err.Error() + "\n" + string(e.out)
}
