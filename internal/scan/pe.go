package scan

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"io"
)

// peSection is the raw data of a PE section as ClamAV reads it for its
// section hash signatures (.mdb, .msb): raw, its offset, and size, its
// size, both after ClamAV's alignment and truncation.
type peSection struct {
	raw, size int64
}

// Sizes of the PE headers as ClamAV reads them (libclamav/pe_structs.h):
// its optional headers leave out the data directories, read apart.
const (
	peFileHeaderSize = 4 + 20 // "PE\0\0" and the COFF header (pe.FileHeader)
	peOpt32Size      = 96
	peOpt64Size      = 112
	peSectionSize    = 40 // pe.SectionHeader32
	peDataDirSize    = 8
)

// peAlign and peSAlign are ClamAV's PEALIGN and PESALIGN, in 32 bits as
// in ClamAV: o rounded down, and up, to a multiple of a (a zero a: o).
func peAlign(o, a uint32) uint32 {
	if a == 0 {
		return o
	}
	return o / a * a
}

func peSAlign(o, a uint32) uint32 {
	if a == 0 {
		return o
	}
	n := o / a
	if o%a != 0 {
		n++
	}
	return n * a
}

// peSections parses the headers of a PE file of size bytes read from r as
// ClamAV's cli_peheader does (libclamav/pe.c, with the options cli_scanpe
// gives it) and returns the sections whose raw data ClamAV hashes for the
// section hash signatures: those with raw data, in header order. ok is
// false when ClamAV would not get that far: not a PE file, or a header it
// finds broken (no sections, an optional header too small, headers cut
// short, a section starting beyond the end of a one-section file, a value
// with its sign bit set, an entry point outside the file). The header
// structures are those of debug/pe; ClamAV's own reading is followed
// rather than debug/pe's, which refuses files ClamAV scans (bad symbol
// tables) and reads others differently (alignment). Package exefmt reads the
// same headers for relative offsets, with the options ClamAV's
// cli_pe_targetinfo gives cli_peheader; cli_scanpe, which matches section
// hashes, gives CLI_PEHEADER_OPT_REMOVE_MISSING_SECTIONS instead, and
// this follows that (a section starting past the end of the file is
// dropped before its values are checked).
func peSections(r io.ReaderAt, size int64) (secs []peSection, ok bool) {
	read := func(off int64, n int) ([]byte, bool) {
		if off < 0 || n < 0 || off+int64(n) > size {
			return nil, false
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, off); err != nil && !(err == io.EOF && off+int64(n) == size) {
			return nil, false
		}
		return b, true
	}
	le16, le32 := binary.LittleEndian.Uint16, binary.LittleEndian.Uint32
	b, ok := read(0, 2)
	if !ok || (le16(b) != 0x5a4d && le16(b) != 0x4d5a) { // "MZ", "ZM"
		return nil, false
	}
	b, ok = read(0x3c, 4)
	if !ok {
		return nil, false
	}
	lfanew := le32(b)
	if lfanew == 0 {
		return nil, false
	}
	b, ok = read(int64(lfanew), peFileHeaderSize)
	if !ok || !bytes.Equal(b[:4], []byte("PE\x00\x00")) {
		return nil, false
	}
	var fh pe.FileHeader
	if binary.Read(bytes.NewReader(b[4:]), binary.LittleEndian, &fh) != nil {
		return nil, false
	}
	nsections := int(fh.NumberOfSections)
	if nsections == 0 || int(fh.SizeOfOptionalHeader) < peOpt32Size {
		return nil, false
	}
	at := int64(lfanew) + peFileHeaderSize
	opt, ok := read(at, peOpt32Size)
	if !ok {
		return nil, false
	}
	stored := peOpt32Size
	if le16(opt) == 0x20b { // PE32+
		if int(fh.SizeOfOptionalHeader) < peOpt64Size {
			return nil, false
		}
		more, ok := read(at+peOpt32Size, peOpt64Size-peOpt32Size)
		if !ok {
			return nil, false
		}
		opt = append(opt, more...)
		stored = peOpt64Size
	}
	at += int64(stored)
	vep := le32(opt[16:])
	salign, falign := le32(opt[32:]), le32(opt[36:])
	hdrSize := le32(opt[60:])
	ndirs := le32(opt[stored-4:])
	ndirs = min(ndirs, 16)
	dirsSize := int(ndirs) * peDataDirSize
	if int(fh.SizeOfOptionalHeader) < stored+dirsSize {
		return nil, false
	}
	if _, ok := read(at, dirsSize); !ok {
		return nil, false
	}
	at += int64(fh.SizeOfOptionalHeader) - int64(stored)
	hdrSize = peSAlign(hdrSize, salign)
	sh, ok := read(at, nsections*peSectionSize)
	if !ok {
		return nil, false
	}
	hdrs := make([]pe.SectionHeader32, nsections)
	if binary.Read(bytes.NewReader(sh), binary.LittleEndian, hdrs) != nil {
		return nil, false
	}
	// File alignment fallback (a section not aligned to falign but to
	// 0x200 makes ClamAV take 0x200).
	for i := 0; falign != 0x200 && i < nsections; i++ {
		h := &hdrs[i]
		if falign != 0 && h.SizeOfRawData != 0 && h.PointerToRawData%falign != 0 && h.PointerToRawData%0x200 == 0 {
			falign = 0x200
		}
	}
	type section struct{ rva, raw, rsz uint32 }
	fsize := uint64(size)
	contained := func(off, n uint32) bool {
		return fsize > 0 && n > 0 && uint64(n) <= fsize && uint64(off)+uint64(n) <= fsize && uint64(off) < fsize
	}
	var ss []section
	for i := range hdrs {
		h := &hdrs[i]
		s := section{
			rva: peAlign(h.VirtualAddress, salign),
			raw: peAlign(h.PointerToRawData, falign),
			rsz: peSAlign(h.SizeOfRawData, falign),
		}
		uraw, ursz := h.PointerToRawData, h.SizeOfRawData
		if s.rsz != 0 {
			if uint64(s.raw) >= fsize || uint64(uraw) >= fsize {
				// A section beyond the end of the file is removed; when
				// it is the only one left, the file is broken.
				if len(hdrs)-(i-len(ss)) == 1 {
					return nil, false
				}
				continue
			}
			if !contained(s.raw, s.rsz) {
				s.rsz = uint32(fsize - uint64(s.raw))
			}
			if !contained(uraw, ursz) {
				ursz = uint32(fsize - uint64(uraw))
			}
		}
		if h.VirtualAddress>>31 != 0 || h.VirtualSize>>31 != 0 || (s.rsz != 0 && uraw>>31 != 0) || ursz>>31 != 0 {
			return nil, false
		}
		ss = append(ss, s)
	}
	// The entry point must map into the file (cli_rawaddr).
	if vep < hdrSize {
		if uint64(vep) >= fsize {
			return nil, false
		}
	} else {
		found := false
		for i := len(ss) - 1; i >= 0; i-- {
			s := ss[i]
			if s.rsz != 0 && s.rva <= vep && s.rsz > vep-s.rva {
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	for _, s := range ss {
		if s.rsz != 0 {
			secs = append(secs, peSection{raw: int64(s.raw), size: int64(s.rsz)})
		}
	}
	return secs, true
}
