package signatures

import (
	"errors"
	"fmt"
	"strings"
)

// targetNames are ClamAV's target types.
var targetNames = map[int32]string{
	0: "any file", 1: "PE", 2: "OLE2", 3: "HTML", 4: "mail", 5: "graphics", 6: "ELF",
	7: "ASCII text", 8: "unused", 9: "Mach-O", 10: "PDF", 11: "Flash", 12: "Java class",
	13: "internal", 14: "other",
}

// MatchedTarget reports whether the engine matches body signatures of
// target type t: 0 (any file), the executables whose headers it parses as
// ClamAV does (package exefmt): 1 (PE), 6 (ELF) and 9 (Mach-O), the
// types whose buffers it makes as ClamAV does (textnorm.Plan): 3 (HTML),
// 4 (mail) and 7 (ASCII text), and the types ClamAV matches raw as
// Vigil does before (or instead of) parsing them: 2 (OLE2), 5
// (graphics), 10 (PDF), 11 (Flash), 12 (Java class) and 14 (other:
// binary data). Not 8 (unused) nor 13 (ClamAV's internal type).
func MatchedTarget(t int32) bool {
	return t >= 0 && t <= 14 && t != 8 && t != 13
}

// parseNDBLine parses a .ndb line, NAME:TARGET:OFFSET:HEX[:MINFL[:MAXFL]],
// as ClamAV's cli_loadndb does, in its order: fields, ignore lists,
// functionality levels, target type, then offset and hex.
func parseNDBLine(set *Set, file string, l line, ign *ignoreList) error {
	f := cStrtokenize(l.text, ':', 7)
	if len(f) < 4 || len(f) > 6 {
		if l.text == "" {
			return errors.New("empty line (ClamAV refuses it too; use # for comments)")
		}
		return fmt.Errorf("want NAME:TARGET:OFFSET:HEX[:MINFL[:MAXFL]], got %d fields", len(f))
	}
	name := f[0]
	skip := func(reason string, loads bool) error {
		set.Skipped = append(set.Skipped, Skipped{File: file, Line: l.raw, Name: clamVirname(name), Reason: reason, ClamAVLoads: loads})
		return nil
	}
	if ign.ignores(name, l.text) {
		return skip("listed in an ignore list ("+ign.which(name, l.text)+")", false)
	}
	if len(f) > 4 {
		if !cIsNumber(f[4]) {
			return fmt.Errorf("minimum functionality level %q is not a decimal number", f[4])
		}
		if uint32(cAtoi(f[4])) > FunctionalityLevel {
			return skip(fmt.Sprintf("minimum functionality level %s is above %d", f[4], FunctionalityLevel), false)
		}
		if len(f) == 6 {
			if !cIsNumber(f[5]) {
				return fmt.Errorf("maximum functionality level %q is not a decimal number", f[5])
			}
			if uint32(cAtoi(f[5])) < FunctionalityLevel {
				return skip(fmt.Sprintf("maximum functionality level %s is below %d", f[5], FunctionalityLevel), false)
			}
		}
	}
	if f[1] != "*" && !cIsNumber(f[1]) {
		return fmt.Errorf("target type %q is not a decimal number", f[1])
	}
	target := cAtoi(f[1])
	if target < 0 || target >= 15 {
		return skip(fmt.Sprintf("target type %s is unknown", f[1]), false)
	}
	off, err := clamOffset(f[2], target)
	if err != nil {
		return err
	}
	cp, err := clamPattern(f[3], target, f[2])
	if err != nil {
		return fmt.Errorf("hex signature: %w", err)
	}
	b := BodySig{Name: clamVirname(name), Target: target, Hex: f[3], OffsetText: f[2], File: file, Line: l.raw}
	if b.Name == "" {
		return errors.New("empty signature name")
	}
	switch {
	case !MatchedTarget(target):
		return skip(fmt.Sprintf("target type %d (%s): Vigil matches target types 0 to 14 but 8 and 13", target, targetNames[target]), true)
	case off.unsupported != "" && !off.exeOnly:
		return skip(off.unsupported, true)
	case cp.unsupported != "":
		return skip(cp.unsupported, true)
	}
	if err := checkName(b.Name); err != nil {
		return skip(err.Error()+": Vigil does not report such names", true)
	}
	b.Offset = off.Offset
	if b.Pattern, err = cp.build(); err != nil {
		return skip(err.Error(), true)
	}
	if set.sink != nil {
		set.sunkBodies++
		return set.sink.s.AddBody(&b)
	}
	set.Bodies = append(set.Bodies, b)
	return nil
}

// clamOffsetResult is an offset ClamAV accepts; unsupported says why
// Vigil cannot use it.
type clamOffsetResult struct {
	Offset
	unsupported string
	// exeOnly: unsupported says only that the offset is relative to an
	// executable's layout (EP+n, EP-n, Sx+n, SL+n, SEx). The engine
	// matches such offsets in .ndb signatures, which ignore that reason;
	// logical subsignatures keep it until they are matched.
	exeOnly bool
}

// clamOffset checks an offset as ClamAV's cli_caloff does: "*", "n",
// "EOF-n", "EP+n", "EP-n", "Sx+n", "SL+n", "SEx", "VI", "$n$", each
// with an optional ",shift". Numbers are read with atoi (an empty number
// is 0). EP, S and VI forms need target type 1, 6 or 9.
func clamOffset(s string, target int32) (clamOffsetResult, error) {
	if s == "*" {
		return clamOffsetResult{Offset: Offset{Kind: OffsetAny}}, nil
	}
	if len(s) > 64 {
		return clamOffsetResult{}, fmt.Errorf("offset %q is longer than 64 characters", truncate(s))
	}
	var r clamOffsetResult
	o := s
	var shift uint32
	if i := strings.IndexByte(o, ','); i >= 0 {
		if !cIsNumber(o[i+1:]) {
			return r, fmt.Errorf("offset %q: shift %q is not a decimal number", s, o[i+1:])
		}
		shift = uint32(cAtoi(o[i+1:]))
		o = o[:i]
	}
	relative := false
	bad := func(what string) (clamOffsetResult, error) {
		return clamOffsetResult{}, fmt.Errorf("offset %q: %s", s, what)
	}
	switch {
	case strings.HasPrefix(o, "EP+") || strings.HasPrefix(o, "EP-"):
		if !cIsNumber(o[3:]) {
			return bad("not a decimal number after EP")
		}
		r.Kind, r.N = OffsetEPPlus, int64(uint32(cAtoi(o[3:])))
		if o[2] == '-' {
			r.Kind = OffsetEPMinus
		}
		relative = true
	case strings.HasPrefix(o, "S"):
		switch {
		case strings.HasPrefix(o, "SE"):
			if !cIsNumber(o[2:]) {
				return bad("invalid section number")
			}
			r.Kind, r.Section = OffsetSection, uint32(cAtoi(o[2:]))
		case strings.HasPrefix(s, "SL+"):
			if !cIsNumber(o[3:]) {
				return bad("not a decimal number after SL+")
			}
			r.Kind, r.N = OffsetLastSection, int64(uint32(cAtoi(o[3:])))
		default:
			x, rest, ok := cScanUint(o[1:], 32)
			if !ok || !strings.HasPrefix(rest, "+") {
				return bad("invalid offset")
			}
			n, _, ok := cScanUint(rest[1:], 32)
			if !ok {
				return bad("invalid offset")
			}
			r.Kind, r.N, r.Section = OffsetSectionPlus, int64(n), uint32(x)
		}
		relative = true
	case strings.HasPrefix(o, "EOF-"):
		if !cIsNumber(o[4:]) {
			return bad("not a decimal number after EOF-")
		}
		r.Kind, r.N = OffsetEOF, int64(uint32(cAtoi(o[4:])))
	case strings.HasPrefix(o, "VI"):
		r.Kind = OffsetVersionInfo
		relative = true
	case strings.IndexByte(o, '$') >= 0:
		if !strings.HasPrefix(o, "$") {
			return bad("invalid macro")
		}
		n, rest, ok := cScanUint(o[1:], 32)
		_ = rest
		if !ok {
			return bad("invalid macro")
		}
		if n >= 32 {
			return bad("at most 32 macro groups")
		}
		r.Kind, r.N = OffsetMacro, int64(n)
		r.unsupported = fmt.Sprintf("offset %q: macro offsets are not supported", s)
	default:
		if !cIsNumber(o) {
			return bad("not a supported offset")
		}
		r.Kind, r.N = OffsetAbs, int64(uint32(cAtoi(o)))
	}
	if relative {
		if target != 1 && target != 6 && target != 9 {
			return bad(fmt.Sprintf("this offset needs target type 1 (PE), 6 (ELF) or 9 (Mach-O), not %d", target))
		}
		if r.Kind == OffsetVersionInfo {
			// The version information ClamAV matches VI in is not read.
			r.unsupported = fmt.Sprintf("offset %q: executable-relative offsets are not supported yet (PE version information)", s)
		}
	}
	r.Shift = int64(shift)
	if r.unsupported == "" && (r.N >= 1<<31 || r.Shift >= 1<<31) {
		r.unsupported = fmt.Sprintf("offset %q: a value of 2^31 or more (ClamAV wraps it)", s)
	}
	if r.unsupported == "" && relative {
		r.unsupported = fmt.Sprintf("offset %q: executable-relative offsets are not supported yet", s)
		r.exeOnly = true
	}
	return r, nil
}
