// Package exefmt reads what ClamAV's offset resolution needs from a PE, ELF
// or Mach-O object, exactly as ClamAV (clamscan 1.4.6) computes it, and
// resolves the
// relative offsets of body signatures of target types 1 (PE), 6 (ELF) and
// 9 (Mach-O): EP+n, EP-n, Sx+n, SL+n, SEx, and EOF-n.
//
// # Model
//
// ClamAV types an object by its magic number (MZ: CL_TYPE_MSEXE, \x7fELF:
// CL_TYPE_ELF, feedface and its kin: CL_TYPE_MACHO, cafebabe:
// CL_TYPE_MACHO_UNIBIN) and, before matching it against the signatures of
// that type's target, parses its headers once (cli_targetinfo in
// libclamav/matcher.c: cli_pe_targetinfo, cli_elfheader, cli_machoheader).
// Parse is that step. It fills an Info as ClamAV fills its cli_exe_info:
//
//   - EP, the entry point as a file offset, 32 bits wide, mapped as ClamAV
//     maps it (PE: cli_rawaddr over the aligned section table; ELF: the first
//     program header whose virtual range holds e_entry; Mach-O: the PowerPC
//     thread state's srr0 through the sections, and 0 for every other CPU);
//   - Sections, each with its raw (file) offset and raw size as ClamAV keeps
//     them (PE: aligned and cut at the end of the file; ELF: the section
//     headers as written; Mach-O: every section of every segment, its size
//     rounded up to its alignment);
//   - NumberOfSections, the count ClamAV compares, 16 bits wide.
//
// EP and NumberOfSections are also what the target description block of a
// logical signature (EntryPoint, NumberOfSections) compares.
//
// Where ClamAV's reading differs from debug/pe, debug/elf and debug/macho
// (which this package uses for the structures' layouts and constants),
// ClamAV's reading wins; docs/executables.md lists the differences.
//
// # Invariants
//
//   - Parse never panics and never reads outside [0, size) of the object,
//     whatever its bytes (fuzzed); it reads at most a bounded number of
//     header bytes (ClamAV's own limits: 1,024 Mach-O load commands, 128
//     ELF program headers, 256 ELF sections, 65,535 PE sections).
//   - A malformed object is a *MalformedError (errors.Is(err,
//     ErrMalformed)) and a nil Info: ClamAV's "status -1". The engine then
//     scans the object as raw bytes: signatures at absolute offsets or
//     anywhere still match, but every relative offset, EOF-n included, is
//     unresolvable ((*Info)(nil).Resolve reports false), so no signature
//     anchored at one can match.
//   - Resolve computes in uint32, as ClamAV does, wrapping where it wraps:
//     EP-n with n > EP gives a start near 2^32, where no match can start
//     (Fits may still accept it when Min+length wraps, as ClamAV's check
//     does; the match itself then never happens).
//   - Nothing in this package modifies an Info after Parse returns it:
//     Resolve may be called concurrently.
//
// One matcher rule belongs with the offsets: in PE objects of
// ExactStartSize bytes or more, ClamAV matches static signatures only at
// Where.Min, so such a signature at SEx matches only at the section's
// start (see ExactStartSize).
package exefmt

import (
	"errors"
	"fmt"
	"io"
)

// Format is the kind of executable, as ClamAV's file typing names it.
type Format uint8

// The formats. None is an object of any other type: only EOF-n resolves.
const (
	None  Format = iota
	PE           // CL_TYPE_MSEXE, target type 1
	ELF          // CL_TYPE_ELF, target type 6
	MachO        // CL_TYPE_MACHO and CL_TYPE_MACHO_UNIBIN, target type 9
)

func (f Format) String() string {
	switch f {
	case None:
		return "none"
	case PE:
		return "PE"
	case ELF:
		return "ELF"
	case MachO:
		return "Mach-O"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Target is the signature target type ClamAV parses f for (1, 6, 9), or 0.
func (f Format) Target() int {
	switch f {
	case PE:
		return 1
	case ELF:
		return 6
	case MachO:
		return 9
	}
	return 0
}

// ForTarget is the format whose headers ClamAV parses for signatures of
// target type t, and false for the targets that have none.
func ForTarget(t int) (Format, bool) {
	switch t {
	case 1:
		return PE, true
	case 6:
		return ELF, true
	case 9:
		return MachO, true
	}
	return None, false
}

// Section is one section as ClamAV keeps it (struct cli_exe_section).
type Section struct {
	RVA     uint32 // virtual address (PE: aligned down to SectionAlignment)
	VSize   uint32 // virtual size (PE: aligned up; Mach-O: the section's size)
	Raw     uint32 // file offset of the section's data (PE: aligned down to FileAlignment)
	RawSize uint32 // size in the file (PE: aligned up, cut at the end of the file, 0 when it starts past it)
}

// Info is what ClamAV knows of a parsed executable (struct cli_exe_info,
// the fields offset resolution and the target description block use).
type Info struct {
	Format Format
	// Size is the object's size (ClamAV's fsize).
	Size int64
	// EP is the entry point's file offset, as ClamAV computes it.
	EP uint32
	// NumberOfSections is ClamAV's nsections, 16 bits wide: the bound for Sx
	// and SEx, and what SL and a logical signature's NumberOfSections use.
	NumberOfSections uint16
	// Sections holds the sections; len(Sections) may exceed
	// NumberOfSections only for a Mach-O object with more than 65,535.
	Sections []Section
	// VirtualEP is the entry point before mapping to the file: the PE
	// AddressOfEntryPoint, the ELF e_entry (low 32 bits), or the Mach-O
	// PowerPC srr0 (low 32 bits; 0 for other CPUs).
	VirtualEP uint32
	// HeaderSize is the PE SizeOfHeaders aligned up to SectionAlignment
	// (cli_exe_info.hdr_size); 0 for other formats.
	HeaderSize uint32
}

// ErrMalformed is what every parse failure wraps: the object is scanned as
// raw bytes, with no relative offset resolvable.
var ErrMalformed = errors.New("malformed executable")

// MalformedError says why ClamAV would not parse an object's headers.
type MalformedError struct {
	Format Format
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrMalformed, e.Format, e.Reason)
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Unwrap() error { return ErrMalformed }

func malformed(f Format, format string, args ...any) error {
	return &MalformedError{Format: f, Reason: fmt.Sprintf(format, args...)}
}

// Parse reads the headers of the object r (size bytes) as ClamAV reads an
// object of format f before matching it against the signatures of f's
// target. It returns a *MalformedError when ClamAV would fail (its status
// -1), and an I/O error from r as is. For None it returns an Info that
// resolves EOF-n only, as ClamAV does for objects of other types.
func Parse(r io.ReaderAt, size int64, f Format) (*Info, error) {
	if size < 0 {
		return nil, fmt.Errorf("exefmt: negative size %d", size)
	}
	o := object{r: r, size: uint64(size), f: f}
	var (
		in  *Info
		err error
	)
	switch f {
	case None:
		return &Info{Format: None, Size: size}, nil
	case PE:
		in, err = parsePE(&o, false)
	case ELF:
		in, err = parseELF(&o)
	case MachO:
		in, err = parseMachO(&o)
	default:
		return nil, fmt.Errorf("exefmt: unknown format %d", f)
	}
	if err != nil {
		return nil, err
	}
	in.Format = f
	in.Size = size
	return in, nil
}

// object reads an object as ClamAV's fmap_readn does: a read succeeds only
// when all its bytes lie in the object.
type object struct {
	r    io.ReaderAt
	size uint64
	f    Format
	buf  [512]byte
}

// errShort marks a read past the end of the object; the parsers turn it into
// a MalformedError naming what they were reading.
var errShort = errors.New("short read")

// read returns the n bytes at off (n <= len(o.buf)), errShort when they are
// not all in the object, or r's error.
func (o *object) read(off uint64, n int) ([]byte, error) {
	if n == 0 {
		return o.buf[:0], nil
	}
	if off >= o.size || uint64(n) > o.size-off {
		return nil, errShort
	}
	b := o.buf[:n]
	if _, err := o.r.ReadAt(b, int64(off)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errShort
		}
		return nil, err
	}
	return b, nil
}

// need reads like read and turns a short read into a MalformedError saying
// what could not be read.
func (o *object) need(off uint64, n int, what string) ([]byte, error) {
	b, err := o.read(off, n)
	if errors.Is(err, errShort) {
		return nil, malformed(o.f, "cannot read %s (%d bytes at %d, object of %d)", what, n, off, o.size)
	}
	return b, err
}

// Kind is the form of a relative offset (ClamAV's CLI_OFF_*).
type Kind uint8

// The relative offset forms of body signatures.
const (
	EPPlus          Kind = iota + 1 // EP+n
	EPMinus                         // EP-n
	SectionPlus                     // Sx+n
	LastSectionPlus                 // SL+n
	SectionWhole                    // SEx
	EOFMinus                        // EOF-n
)

func (k Kind) String() string {
	switch k {
	case EPPlus:
		return "EP+"
	case EPMinus:
		return "EP-"
	case SectionPlus:
		return "Sx+"
	case LastSectionPlus:
		return "SL+"
	case SectionWhole:
		return "SE"
	case EOFMinus:
		return "EOF-"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Offset is a relative offset of a signature, as ClamAV decodes it
// (offdata): the form, n, the section x, and the maximum shift of the
// ",shift" suffix (0 without one).
type Offset struct {
	Kind     Kind
	N        uint32
	Section  uint32
	MaxShift uint32
}

// Where is a resolved offset: a match may start anywhere in [Min, Max]
// (Min == Max for a fixed offset without a shift).
type Where struct {
	Min, Max uint32
}

// Resolve computes where o lets a match start in this object, as ClamAV's
// cli_caloff does with the parsed headers, and false where ClamAV's result
// is "no offset" (CLI_OFF_NONE): in an object whose headers failed to parse
// (a nil Info), for a section index at or past NumberOfSections, for SL+n
// without sections, and for the executable forms in an object of format
// None. The arithmetic is ClamAV's, in uint32:
//
//	EP+n   EP + n
//	EP-n   EP - n
//	Sx+n   Sections[x].Raw + n
//	SL+n   Sections[NumberOfSections-1].Raw + n
//	SEx    [Sections[x].Raw, Sections[x].Raw + Sections[x].RawSize + shift]
//	EOF-n  Size - n
//
// and Max = Min + shift for every form but SEx.
func (in *Info) Resolve(o Offset) (Where, bool) {
	if in == nil {
		return Where{}, false
	}
	var w Where
	switch o.Kind {
	case EOFMinus:
		w.Min = uint32(uint64(in.Size) - uint64(o.N))
	case EPPlus, EPMinus, SectionPlus, LastSectionPlus, SectionWhole:
		if in.Format == None {
			return Where{}, false
		}
		switch o.Kind {
		case EPPlus:
			w.Min = in.EP + o.N
		case EPMinus:
			w.Min = in.EP - o.N
		case LastSectionPlus:
			// ClamAV indexes sections[nsections-1] unchecked; with no
			// section that is outside the array (a crash or garbage), so
			// no offset here.
			if in.NumberOfSections == 0 {
				return Where{}, false
			}
			w.Min = in.Sections[in.NumberOfSections-1].Raw + o.N
		case SectionPlus:
			if o.Section >= uint32(in.NumberOfSections) {
				return Where{}, false
			}
			w.Min = in.Sections[o.Section].Raw + o.N
		case SectionWhole:
			if o.Section >= uint32(in.NumberOfSections) {
				return Where{}, false
			}
			s := in.Sections[o.Section]
			w.Min = s.Raw
			w.Max = s.Raw + s.RawSize + o.MaxShift
			if w.Min == offNone {
				return Where{}, false
			}
			if w.Max == offNone { // cli_caloff recomputes a maximum that reads as "none"
				w.Max = w.Min + o.MaxShift
			}
			return w, true
		}
	default:
		return Where{}, false
	}
	if w.Min == offNone {
		// The value ClamAV reserves for "no offset": an offset that lands
		// on it is no offset there either.
		return Where{}, false
	}
	w.Max = w.Min + o.MaxShift
	return w, true
}

// ExactStartSize is the object size (CLI_DEFAULT_BM_OFFMODE_FSIZE, 256 KiB)
// from which ClamAV matches the static body signatures of the PE target
// (those it gives its Boyer-Moore matcher: no wildcard, alternative or
// range in the body, no ",shift" in the offset) only at Where.Min: in a PE
// object of this size or more, such a signature at SEx matches only at the
// section's start. Below it, and for every other signature, a match may
// start anywhere in [Min, Max].
const ExactStartSize = 262144

// offNone is ClamAV's CLI_OFF_NONE.
const offNone = 0xfffffffe

// Fits reports whether a pattern of length bytes starting at w.Min ends
// within an object of size bytes, as ClamAV checks before scanning (in
// uint32, as it does: Min + length wraps): when it does not, the resolved
// offset is dropped and the signature cannot match.
func (w Where) Fits(length uint32, size int64) bool {
	return uint64(w.Min+length) <= uint64(size)
}

// Admits reports whether a match starting at off starts where w allows.
func (w Where) Admits(off int64) bool {
	return off >= int64(w.Min) && off <= int64(w.Max)
}
