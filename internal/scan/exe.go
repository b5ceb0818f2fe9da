package scan

import (
	"strings"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// This file resolves where a body signature's first part may start
// (startAllowed), including the offsets relative to an executable's
// layout (EP+n, EP-n, Sx+n, SL+n, SEx) of target types 1, 6 and 9, from
// the object's headers parsed once before its raw pass, as ClamAV's
// cli_scan_fmap does (cli_targetinfo, then cli_caloff for each
// signature).

// exeState is what the matcher knows of the layout of the object whose
// raw bytes it matches.
type exeState struct {
	// format is the format ClamAV parses the object's headers as (the
	// target its type selects); None for every other object and for
	// buffers that are not an object's raw bytes.
	format exefmt.Format
	// info is the parsed headers; nil when format is not None and the
	// headers are malformed (ClamAV's status -1): then no offset counted
	// from the object's layout or end resolves, EOF-n of generic
	// signatures included.
	info *exefmt.Info
}

// exeFormat is the format ClamAV parses the headers of an object of type
// t as before matching its raw bytes (cli_mtargets: the target of t, then
// cli_targetinfo). A Mach-O universal binary is parsed as a Mach-O,
// which fails on its magic: ClamAV scans it with status -1.
func exeFormat(t filetype.Type) exefmt.Format {
	switch t {
	case filetype.MSEXE:
		return exefmt.PE
	case filetype.ELF:
		return exefmt.ELF
	case filetype.MachO, filetype.MachOUniBin:
		return exefmt.MachO
	}
	return exefmt.None
}

// setExe parses the headers of o, if its type is an executable one, for
// the raw pass that follows; clearExe forgets them. A read error is taken
// as malformed headers: the raw pass reads the same bytes and reports it.
func (m *matcher) setExe(o *unpack.Object) {
	f := exeFormat(o.Type)
	m.exe = exeState{format: f}
	if f == exefmt.None || o.Size < minScanSize {
		return
	}
	if in, err := exefmt.Parse(o.R, o.Size, f); err == nil {
		m.exe.info = in
	}
}

func (m *matcher) clearExe() { m.exe = exeState{} }

// exeKinds maps the executable forms of signatures.Offset to exefmt's.
var exeKinds = [...]exefmt.Kind{
	signatures.OffsetEPPlus:      exefmt.EPPlus,
	signatures.OffsetEPMinus:     exefmt.EPMinus,
	signatures.OffsetSectionPlus: exefmt.SectionPlus,
	signatures.OffsetLastSection: exefmt.LastSectionPlus,
	signatures.OffsetSection:     exefmt.SectionWhole,
}

// startAllowed reports whether the first part of b may start at s in the
// buffer being matched, as ClamAV's cli_caloff resolves b's offset for
// it: "*" anywhere; "n,m" and "EOF-n,m" in their window (Offset.Range),
// EOF-n nowhere in an executable whose headers are malformed; the
// executable forms through the parsed headers (exefmt.Info.Resolve),
// nowhere in other buffers or malformed executables. A static signature
// of target type 1 (bodySig.static) matched in a PE object of
// exefmt.ExactStartSize bytes or more starts only at the window's first
// byte, as ClamAV's Boyer-Moore matcher in the PE root's offset mode has
// it (the generic root has no offset mode).
//
// ClamAV also drops a resolved offset whose pattern would end past the
// object (exefmt.Where.Fits); here a match lies in the object anyway, and
// an offset that wrapped past 2^32 admits no start, so that check changes
// nothing for objects under 4 GiB.
func (m *matcher) startAllowed(b *bodySig, s int64) bool {
	o := &b.off
	var lo, hi int64
	switch o.Kind {
	case signatures.OffsetAny, signatures.OffsetAbs, signatures.OffsetEOF:
		if o.Kind == signatures.OffsetEOF && m.exe.format != exefmt.None && m.exe.info == nil {
			return false
		}
		var ok bool
		if lo, hi, ok = o.Range(m.size); !ok {
			return false
		}
	default:
		if int(o.Kind) >= len(exeKinds) || exeKinds[o.Kind] == 0 || m.exe.info == nil {
			return false
		}
		w, ok := m.exe.info.Resolve(exefmt.Offset{Kind: exeKinds[o.Kind], N: uint32(o.N), Section: o.Section, MaxShift: uint32(o.Shift)})
		if !ok {
			return false
		}
		lo, hi = int64(w.Min), int64(w.Max)
	}
	if b.static && m.exe.format == exefmt.PE && m.size >= exefmt.ExactStartSize && m.e.parts[b.first].target == 1 {
		hi = lo
	}
	return s >= lo && s <= hi
}

// bmStatic reports whether ClamAV gives the .ndb signature s to its
// Boyer-Moore matcher (readdb.c cli_add_content_match_pattern): only the
// generic (0) and PE (1) roots have one (the others are "AC only"); the
// hex has no "{n-m}" range, "*" gap, "?" nibble or wildcard, "("
// alternative or "[" anchor; and, in the PE root, which runs it in offset
// mode (bm_offmode), the offset field is not "*" and has no "," (a shift,
// ",0" included; VI and macros, which ClamAV also leaves to Aho-Corasick,
// are not loaded). Without the offset's text (a signature not read from
// a line) a shift of 0 is taken as none. Every other signature, logical
// subsignatures included, is matched as Aho-Corasick matches it.
func bmStatic(s *signatures.BodySig) bool {
	if s.Target != 0 && s.Target != 1 || strings.ContainsAny(s.Hex, "{*?([") {
		return false
	}
	switch s.Offset.Kind {
	case signatures.OffsetVersionInfo, signatures.OffsetMacro:
		return false
	}
	if s.Target == 0 {
		return true
	}
	if s.OffsetText != "" {
		return s.OffsetText != "*" && !strings.Contains(s.OffsetText, ",")
	}
	return s.Offset.Kind != signatures.OffsetAny && s.Offset.Shift == 0
}
