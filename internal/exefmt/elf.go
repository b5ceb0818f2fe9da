package exefmt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// ClamAV's limits and structure sizes (libclamav/elf.c, elf.h).
const (
	elfHeader32Size  = 52 // elf.Header32
	elfHeader64Size  = 64 // elf.Header64
	elfProg32Size    = 32 // elf.Prog32
	elfProg64Size    = 56 // elf.Prog64
	elfSection32Size = 40 // elf.Section32
	elfSection64Size = 64 // elf.Section64
	elfMaxProgs      = 128
	elfMaxSections   = 256
)

// parseELF is cli_elfheader: the file header, the entry point mapped
// through the program headers (cli_elf_ph32/64), and the section headers
// (cli_elf_sh32/64).
func parseELF(o *object) (*Info, error) {
	b, err := o.need(0, elfHeader32Size, "the ELF header")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b[:4], []byte(elf.ELFMAG)) {
		return nil, malformed(ELF, "no ELF magic")
	}
	var is64 bool
	switch elf.Class(b[elf.EI_CLASS]) {
	case elf.ELFCLASS32:
	case elf.ELFCLASS64:
		is64 = true
	default:
		return nil, malformed(ELF, "unknown ELF class %d", b[elf.EI_CLASS])
	}
	// ClamAV takes 1 as little-endian and every other value as big-endian.
	var bo binary.ByteOrder = binary.BigEndian
	if elf.Data(b[elf.EI_DATA]) == elf.ELFDATA2LSB {
		bo = binary.LittleEndian
	}
	var (
		entry, phoff, shoff          uint64
		phentsize, phnum             uint16
		shentsize, shnum             uint16
		progSize, sectSize           uint16
		readProg                     func([]byte) (vaddr, memsz, off uint64)
		readSect                     func([]byte) (addr, off, size uint64)
		entryNonzero                 bool
		entry32, phoff32, shoffTrunc uint32
	)
	if is64 {
		b, err = o.need(0, elfHeader64Size, "the ELF64 header")
		if err != nil {
			return nil, err
		}
		var h elf.Header64
		if err := binary.Read(bytes.NewReader(b), bo, &h); err != nil {
			return nil, err
		}
		entry, phoff, shoff = h.Entry, h.Phoff, h.Shoff
		phentsize, phnum, shentsize, shnum = h.Phentsize, h.Phnum, h.Shentsize, h.Shnum
		progSize, sectSize = elfProg64Size, elfSection64Size
		readProg = func(b []byte) (uint64, uint64, uint64) {
			var p elf.Prog64
			binary.Read(bytes.NewReader(b), bo, &p)
			return p.Vaddr, p.Memsz, p.Off
		}
		readSect = func(b []byte) (uint64, uint64, uint64) {
			var s elf.Section64
			binary.Read(bytes.NewReader(b), bo, &s)
			return s.Addr, s.Off, s.Size
		}
		entryNonzero = entry != 0
	} else {
		var h elf.Header32
		if err := binary.Read(bytes.NewReader(b), bo, &h); err != nil {
			return nil, err
		}
		entry32, phoff32, shoffTrunc = h.Entry, h.Phoff, h.Shoff
		entry, phoff, shoff = uint64(h.Entry), uint64(h.Phoff), uint64(h.Shoff)
		phentsize, phnum, shentsize, shnum = h.Phentsize, h.Phnum, h.Shentsize, h.Shnum
		progSize, sectSize = elfProg32Size, elfSection32Size
		readProg = func(b []byte) (uint64, uint64, uint64) {
			var p elf.Prog32
			binary.Read(bytes.NewReader(b), bo, &p)
			return uint64(p.Vaddr), uint64(p.Memsz), uint64(p.Off)
		}
		readSect = func(b []byte) (uint64, uint64, uint64) {
			var s elf.Section32
			binary.Read(bytes.NewReader(b), bo, &s)
			return uint64(s.Addr), uint64(s.Off), uint64(s.Size)
		}
		entryNonzero = entry32 != 0
	}

	// Program headers: the entry point's file offset. Without program
	// headers or with e_entry 0, ClamAV leaves the entry point at 0.
	if phnum > elfMaxProgs {
		return nil, malformed(ELF, "%d program headers (ClamAV's limit is %d)", phnum, elfMaxProgs)
	}
	var ep uint32
	if phnum != 0 && entryNonzero {
		if phentsize != progSize {
			return nil, malformed(ELF, "e_phentsize %d is not %d", phentsize, progSize)
		}
		found := false
		off := phoff
		for i := 0; i < int(phnum); i++ {
			if !is64 {
				off = uint64(phoff32) // the 32-bit reader's offset is 32 bits wide
			}
			b, err := o.need(off, int(progSize), "a program header")
			if err != nil {
				return nil, err
			}
			if is64 {
				off += uint64(progSize)
			} else {
				phoff32 += uint32(progSize)
			}
			if found {
				continue // ClamAV reads every header before mapping
			}
			vaddr, memsz, poff := readProg(b)
			if is64 {
				if vaddr <= entry && vaddr+memsz > entry {
					ep, found = uint32(entry-vaddr+poff), true
				}
			} else {
				v, m, p := uint32(vaddr), uint32(memsz), uint32(poff)
				if v <= entry32 && v+m > entry32 {
					ep, found = entry32-v+p, true
				}
			}
		}
		if !found {
			return nil, malformed(ELF, "entry point %#x is in no program header", entry)
		}
	}

	// Section headers, taken as written.
	if shnum > elfMaxSections {
		return nil, malformed(ELF, "%d sections (ClamAV's limit is %d)", shnum, elfMaxSections)
	}
	if shentsize != sectSize {
		return nil, malformed(ELF, "e_shentsize %d is not %d", shentsize, sectSize)
	}
	secs := make([]Section, shnum)
	off := shoff
	sh32 := shoffTrunc
	for i := range secs {
		if !is64 {
			off = uint64(sh32)
		}
		b, err := o.need(off, int(sectSize), "a section header")
		if err != nil {
			return nil, err
		}
		if is64 {
			off += uint64(sectSize)
		} else {
			sh32 += uint32(sectSize)
		}
		addr, soff, size := readSect(b)
		secs[i] = Section{RVA: uint32(addr), Raw: uint32(soff), RawSize: uint32(size)}
	}
	return &Info{
		EP:               ep,
		NumberOfSections: shnum,
		Sections:         secs,
		VirtualEP:        uint32(entry),
	}, nil
}
