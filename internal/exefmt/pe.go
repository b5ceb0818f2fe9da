package exefmt

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
)

// ClamAV's constants and structure sizes (libclamav/pe.c, pe_structs.h).
const (
	peDOSSignature    = 0x5a4d // "MZ"
	peDOSSignatureOld = 0x4d5a // "ZM"
	peNTSignature     = 0x00004550
	pe32PlusMagic     = 0x020b
	peFileHeaderSize  = 4 + 20 // the "PE\0\0" signature and pe.FileHeader
	peOpt32Size       = 96     // pe.OptionalHeader32 without its data directories
	peOpt64Size       = 112    // pe.OptionalHeader64 without its data directories
	peSectionSize     = 40     // pe.SectionHeader32
	peDataDirSize     = 8      // pe.DataDirectory
)

// peAlign is ClamAV's PEALIGN: o rounded down to a multiple of a (a != 0).
func peAlign(o, a uint32) uint32 {
	if a == 0 {
		return o
	}
	return o / a * a
}

// peAlignUp is ClamAV's PESALIGN: o rounded up to a multiple of a, in uint32.
func peAlignUp(o, a uint32) uint32 {
	if a == 0 {
		return o
	}
	n := o / a
	if o%a != 0 {
		n++
	}
	return n * a
}

// ParsePESections reads the headers of the PE object r (size bytes) as
// ClamAV's cli_scanpe has cli_peheader read them before it hashes the
// sections for the section hash signatures (.mdb, .msb): with
// CLI_PEHEADER_OPT_REMOVE_MISSING_SECTIONS, a section starting past the
// end of the file is dropped before its values are checked, and the file
// is malformed when it was the only section left. Parse (PE) keeps such a
// section with a raw size of 0 instead, as cli_pe_targetinfo does.
// Info.Sections holds the sections kept, in header order.
func ParsePESections(r io.ReaderAt, size int64) (*Info, error) {
	if size < 0 {
		return nil, fmt.Errorf("exefmt: negative size %d", size)
	}
	o := object{r: r, size: uint64(size), f: PE}
	in, err := parsePE(&o, true)
	if err != nil {
		return nil, err
	}
	in.Format, in.Size = PE, size
	return in, nil
}

// parsePE is cli_peheader with the options cli_pe_targetinfo gives it
// (CLI_PEHEADER_OPT_EXTRACT_VINFO only: not strict, sections outside the
// file kept with a raw size of 0), or, with removeMissing, cli_scanpe's
// (ParsePESections).
func parsePE(o *object, removeMissing bool) (*Info, error) {
	b, err := o.need(0, 2, "the DOS signature")
	if err != nil {
		return nil, err
	}
	if m := binary.LittleEndian.Uint16(b); m != peDOSSignature && m != peDOSSignatureOld {
		return nil, malformed(PE, "DOS signature %#04x is neither MZ nor ZM", m)
	}
	b, err = o.need(60, 4, "e_lfanew")
	if err != nil {
		return nil, err
	}
	lfanew := binary.LittleEndian.Uint32(b)
	if lfanew == 0 {
		return nil, malformed(PE, "e_lfanew is 0")
	}
	b, err = o.need(uint64(lfanew), peFileHeaderSize, "the PE file header")
	if err != nil {
		return nil, err
	}
	if sig := binary.LittleEndian.Uint32(b); sig != peNTSignature {
		return nil, malformed(PE, "PE signature %#08x is not PE\\0\\0", sig)
	}
	var fh pe.FileHeader
	if err := binary.Read(bytes.NewReader(b[4:]), binary.LittleEndian, &fh); err != nil {
		return nil, err
	}
	if fh.NumberOfSections == 0 {
		return nil, malformed(PE, "NumberOfSections is 0")
	}
	if fh.SizeOfOptionalHeader < peOpt32Size {
		return nil, malformed(PE, "SizeOfOptionalHeader %d is below %d", fh.SizeOfOptionalHeader, peOpt32Size)
	}
	at := uint64(lfanew) + peFileHeaderSize
	b, err = o.need(at, peOpt32Size, "the optional header")
	if err != nil {
		return nil, err
	}
	// Decode through debug/pe's layouts: the header read is padded with
	// zeros over the data directories, which ClamAV reads separately.
	var opt [peOpt64Size + 16*peDataDirSize]byte
	copy(opt[:], b)
	stored := uint64(peOpt32Size)
	var vep, hdrSize, ndirs, salign, falign uint32
	if binary.LittleEndian.Uint16(opt[:]) == pe32PlusMagic {
		if fh.SizeOfOptionalHeader < peOpt64Size {
			return nil, malformed(PE, "SizeOfOptionalHeader %d is below %d for PE32+", fh.SizeOfOptionalHeader, peOpt64Size)
		}
		b, err = o.need(at+peOpt32Size, peOpt64Size-peOpt32Size, "the PE32+ optional header")
		if err != nil {
			return nil, err
		}
		copy(opt[peOpt32Size:], b)
		stored = peOpt64Size
		var oh pe.OptionalHeader64
		if err := binary.Read(bytes.NewReader(opt[:]), binary.LittleEndian, &oh); err != nil {
			return nil, err
		}
		vep, hdrSize, ndirs = oh.AddressOfEntryPoint, oh.SizeOfHeaders, oh.NumberOfRvaAndSizes
		salign, falign = oh.SectionAlignment, oh.FileAlignment
	} else {
		// Any other magic is read as PE32, as ClamAV does.
		var oh pe.OptionalHeader32
		if err := binary.Read(bytes.NewReader(opt[:]), binary.LittleEndian, &oh); err != nil {
			return nil, err
		}
		vep, hdrSize, ndirs = oh.AddressOfEntryPoint, oh.SizeOfHeaders, oh.NumberOfRvaAndSizes
		salign, falign = oh.SectionAlignment, oh.FileAlignment
	}
	at += stored
	ndirs = min(ndirs, 16)
	dirsSize := uint64(ndirs) * peDataDirSize
	if uint64(fh.SizeOfOptionalHeader) < stored+dirsSize {
		return nil, malformed(PE, "SizeOfOptionalHeader %d does not hold %d data directories", fh.SizeOfOptionalHeader, ndirs)
	}
	if _, err := o.need(at, int(dirsSize), "the data directories"); err != nil {
		return nil, err
	}
	// The section table follows the optional header as SizeOfOptionalHeader
	// says, never before the directories read.
	at += dirsSize
	if uint64(fh.SizeOfOptionalHeader) > stored+dirsSize {
		at += uint64(fh.SizeOfOptionalHeader) - (stored + dirsSize)
	}
	hdrSize = peAlignUp(hdrSize, salign)

	n := int(fh.NumberOfSections)
	tableSize := uint64(n) * peSectionSize
	if at >= o.size || tableSize > o.size-at {
		return nil, malformed(PE, "cannot read the %d section headers at %d (object of %d)", n, at, o.size)
	}
	hdrs := make([]pe.SectionHeader32, n)
	for i := range hdrs {
		b, err := o.need(at+uint64(i)*peSectionSize, peSectionSize, "a section header")
		if err != nil {
			return nil, err
		}
		if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &hdrs[i]); err != nil {
			return nil, err
		}
	}
	// ClamAV's "file alignment fallback mode": a section whose raw pointer
	// is 512-aligned but not FileAlignment-aligned makes the alignment 512.
	for i := 0; falign != 0x200 && i < n; i++ {
		h := &hdrs[i]
		if falign != 0 && h.SizeOfRawData != 0 && h.PointerToRawData%falign != 0 && h.PointerToRawData%0x200 == 0 {
			falign = 0x200
		}
	}

	fsize := o.size
	secs := make([]Section, 0, n)
	for i := range hdrs {
		h := &hdrs[i]
		secs = append(secs, Section{})
		s := &secs[len(secs)-1]
		s.RVA = peAlign(h.VirtualAddress, salign)
		s.VSize = peAlignUp(h.VirtualSize, salign)
		s.Raw = peAlign(h.PointerToRawData, falign)
		s.RawSize = peAlignUp(h.SizeOfRawData, falign)
		uraw, ursz := h.PointerToRawData, h.SizeOfRawData
		if s.RawSize != 0 {
			if uint64(s.Raw) >= fsize || uint64(uraw) >= fsize {
				if removeMissing {
					// Dropped; when it is the only one left, the file is
					// broken.
					if n-(i+1-len(secs)) == 1 {
						return nil, malformed(PE, "section %d, the only one left, starts past the end of the file", i)
					}
					secs = secs[:len(secs)-1]
					continue
				}
				// Starts past the end of the file: kept, with no raw data.
				s.RawSize, ursz = 0, 0
			} else {
				if !contained(fsize, s.Raw, s.RawSize) {
					s.RawSize = uint32(fsize - uint64(s.Raw))
				}
				if !contained(fsize, uraw, ursz) {
					ursz = uint32(fsize - uint64(uraw))
				}
			}
		}
		if s.VSize == 0 && s.RawSize != 0 {
			s.VSize = peAlignUp(ursz, salign)
		}
		if h.VirtualAddress>>31 != 0 || h.VirtualSize>>31 != 0 || (s.RawSize != 0 && uraw>>31 != 0) || ursz>>31 != 0 {
			return nil, malformed(PE, "section %d has a value with the sign bit set", i)
		}
	}
	ep, ok := peRawAddr(vep, secs, fsize, hdrSize)
	if !ok {
		return nil, malformed(PE, "entry point RVA %#x maps to no file offset", vep)
	}
	return &Info{
		EP:               ep,
		NumberOfSections: uint16(len(secs)),
		Sections:         secs,
		VirtualEP:        vep,
		HeaderSize:       hdrSize,
	}, nil
}

// contained is ClamAV's CLI_ISCONTAINED_0_TO(size, off, n): [off, off+n) is
// a non-empty range inside [0, size).
func contained(size uint64, off, n uint32) bool {
	return size > 0 && n > 0 && uint64(n) <= size && uint64(off)+uint64(n) <= size && uint64(off) < size
}

// peRawAddr is ClamAV's cli_rawaddr: an RVA below the (aligned) header size
// is its own file offset when inside the file; otherwise the last section
// with raw data whose raw extent, laid at its RVA, holds rva.
func peRawAddr(rva uint32, secs []Section, fsize uint64, hdrSize uint32) (uint32, bool) {
	if rva < hdrSize {
		if uint64(rva) >= fsize {
			return 0, false
		}
		return rva, true
	}
	for i := len(secs) - 1; i >= 0; i-- {
		s := &secs[i]
		if s.RawSize != 0 && s.RVA <= rva && s.RawSize > rva-s.RVA {
			return rva - s.RVA + s.Raw, true
		}
	}
	return 0, false
}
