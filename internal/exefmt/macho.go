package exefmt

import (
	"bytes"
	"debug/macho"
	"encoding/binary"
)

// ClamAV's limits and structure sizes (libclamav/macho.c; its structures
// are not packed, so they have the natural alignment of x86-64).
const (
	machoHeaderSize    = 28 // macho.FileHeader
	machoSegment32Size = 56 // macho.Segment32, with the load command
	machoSegment64Size = 72 // macho.Segment64, with the load command
	machoSection32Size = 68 // macho.Section32
	machoSection64Size = 80 // macho.Section64
	machoMaxCmds       = 1024
	machoMaxSects      = 255
	// The thread states ClamAV reads after LC_THREAD/LC_UNIXTHREAD's
	// flavor and count: struct macho_thread_state_x86, _ppc, _ppc64 (the
	// last with its padding: 312 bytes).
	machoThreadX86   = 64
	machoThreadPPC   = 160
	machoThreadPPC64 = 312
)

// parseMachO is cli_machoheader (cli_scanmacho with file info wanted).
// ClamAV knows no LC_MAIN: the entry point is read only from a PowerPC
// thread state, and is 0 for every other CPU.
func parseMachO(o *object) (*Info, error) {
	b, err := o.need(0, machoHeaderSize, "the Mach-O header")
	if err != nil {
		return nil, err
	}
	var bo binary.ByteOrder
	var m64 bool
	switch binary.LittleEndian.Uint32(b) {
	case macho.Magic32:
		bo = binary.LittleEndian
	case macho.Magic64:
		bo, m64 = binary.LittleEndian, true
	case bswap32(macho.Magic32):
		bo = binary.BigEndian
	case bswap32(macho.Magic64):
		bo, m64 = binary.BigEndian, true
	default:
		// Universal binaries (cafebabe) land here too, as in ClamAV.
		return nil, malformed(MachO, "magic %#08x is not a Mach-O object's", binary.LittleEndian.Uint32(b))
	}
	var fh macho.FileHeader
	if err := binary.Read(bytes.NewReader(b), bo, &fh); err != nil {
		return nil, err
	}
	const (
		archNone = iota
		archX86
		archPPC
		archPPC64
	)
	arch := archNone
	switch fh.Cpu {
	case macho.Cpu386:
		arch = archX86
	case macho.CpuPpc:
		arch = archPPC
	case macho.CpuPpc64:
		arch = archPPC64
	}
	at := uint64(machoHeaderSize)
	if m64 {
		at += 4
	}
	if fh.Ncmd == 0 || fh.Ncmd > machoMaxCmds {
		return nil, malformed(MachO, "%d load commands (ClamAV takes 1 to %d)", fh.Ncmd, machoMaxCmds)
	}
	var (
		secs []Section
		ep   uint32
	)
	for i := uint32(0); i < fh.Ncmd; i++ {
		b, err := o.need(at, 8, "a load command")
		if err != nil {
			return nil, err
		}
		cmd := macho.LoadCmd(bo.Uint32(b))
		cmdsize := bo.Uint32(b[4:])
		switch {
		case m64 && cmd == macho.LoadCmdSegment64 || !m64 && cmd == macho.LoadCmdSegment:
			var nsects uint32
			if m64 {
				b, err := o.need(at, machoSegment64Size, "a segment command")
				if err != nil {
					return nil, err
				}
				var seg macho.Segment64
				if err := binary.Read(bytes.NewReader(b), bo, &seg); err != nil {
					return nil, err
				}
				nsects = seg.Nsect
				at += machoSegment64Size
			} else {
				b, err := o.need(at, machoSegment32Size, "a segment command")
				if err != nil {
					return nil, err
				}
				var seg macho.Segment32
				if err := binary.Read(bytes.NewReader(b), bo, &seg); err != nil {
					return nil, err
				}
				nsects = seg.Nsect
				at += machoSegment32Size
			}
			if nsects > machoMaxSects {
				return nil, malformed(MachO, "a segment of %d sections (ClamAV's limit is %d)", nsects, machoMaxSects)
			}
			// The sections follow the segment command; ClamAV goes on
			// reading after them, whatever the command's size says.
			for j := uint32(0); j < nsects; j++ {
				var addr, size uint64
				var off, align uint32
				if m64 {
					b, err := o.need(at, machoSection64Size, "a section")
					if err != nil {
						return nil, err
					}
					var sh macho.Section64
					if err := binary.Read(bytes.NewReader(b), bo, &sh); err != nil {
						return nil, err
					}
					at += machoSection64Size
					addr, size, off, align = sh.Addr, sh.Size, sh.Offset, sh.Align
				} else {
					b, err := o.need(at, machoSection32Size, "a section")
					if err != nil {
						return nil, err
					}
					var sh macho.Section32
					if err := binary.Read(bytes.NewReader(b), bo, &sh); err != nil {
						return nil, err
					}
					at += machoSection32Size
					addr, size, off, align = uint64(sh.Addr), uint64(sh.Size), sh.Offset, sh.Align
				}
				// clamscan 1.4.6 refuses an alignment of 2^32 or more, and a
				// size that, rounded up to the alignment, does not fit in 32
				// bits ("Section alignment or size is malformed").
				if align >= 32 {
					return nil, malformed(MachO, "section alignment 2^%d", align)
				}
				if size > 0xffffffff {
					return nil, malformed(MachO, "section size %#x exceeds 32 bits", size)
				}
				a := uint64(1) << align
				rsz := size + (a-size%a)%a
				if rsz > 0xffffffff {
					return nil, malformed(MachO, "section size %#x, aligned to %d, exceeds 32 bits", size, a)
				}
				s := Section{RVA: uint32(addr), VSize: uint32(size), Raw: off, RawSize: uint32(rsz)}
				secs = append(secs, s)
			}
		case arch != archNone && (cmd == macho.LoadCmdThread || cmd == macho.LoadCmdUnixThread):
			// The flavor and count, then the thread state; ClamAV goes on
			// reading after the state, whatever the command's size says.
			at += 8 + 8
			switch arch {
			case archX86:
				if _, err := o.need(at, machoThreadX86, "an x86 thread state"); err != nil {
					return nil, err
				}
				at += machoThreadX86
			case archPPC:
				b, err := o.need(at, machoThreadPPC, "a PowerPC thread state")
				if err != nil {
					return nil, err
				}
				ep = bo.Uint32(b) // srr0
				at += machoThreadPPC
			case archPPC64:
				b, err := o.need(at, machoThreadPPC64, "a PowerPC 64 thread state")
				if err != nil {
					return nil, err
				}
				ep = uint32(bo.Uint64(b)) // srr0
				at += machoThreadPPC64
			}
		default:
			at += 8
			if cmdsize > 8 {
				at += uint64(cmdsize) - 8
			}
		}
	}
	vep := ep
	if ep != 0 && len(secs) > 0 {
		// ClamAV's cli_rawaddr takes the count as 16 bits.
		mapped, found := uint32(0), false
		for _, s := range secs[:uint16(len(secs))] {
			if s.RVA <= ep && s.RVA+s.VSize > ep {
				mapped, found = ep-s.RVA+s.Raw, true
				break
			}
		}
		if !found {
			return nil, malformed(MachO, "entry point %#x is in no section", ep)
		}
		ep = mapped
	}
	// With an entry point and no section, ClamAV keeps the virtual address.
	return &Info{
		EP:               ep,
		NumberOfSections: uint16(len(secs)),
		Sections:         secs,
		VirtualEP:        vep,
	}, nil
}

func bswap32(v uint32) uint32 {
	return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24
}
