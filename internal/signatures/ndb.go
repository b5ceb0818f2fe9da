package signatures

import (
	"errors"
	"fmt"
	"strings"
)

// targetNames are ClamAV's target types, for error messages.
var targetNames = map[int64]string{
	1: "PE", 2: "OLE2", 3: "HTML", 4: "mail", 5: "graphics", 6: "ELF",
	7: "ASCII text", 9: "Mach-O", 10: "PDF", 11: "Flash", 12: "Java class",
	13: "internal", 14: "internal",
}

// parseNDB parses a .ndb line: NAME:TARGET:OFFSET:HEX[:MINFL[:MAXFL]].
func parseNDB(line string) (BodySig, error) {
	if strings.TrimSpace(line) == "" {
		return BodySig{}, errors.New("empty line (ClamAV rejects it too; use # for comments)")
	}
	f := strings.Split(line, ":")
	if len(f) < 4 || len(f) > 6 {
		return BodySig{}, fmt.Errorf("want NAME:TARGET:OFFSET:HEX[:MINFL[:MAXFL]], got %d fields", len(f))
	}
	var b BodySig
	if err := checkName(f[0]); err != nil {
		return BodySig{}, err
	}
	b.Name = f[0]
	t, err := parseUint(f[1], "target type")
	if err != nil {
		return BodySig{}, err
	}
	if t != 0 {
		what := targetNames[t]
		if what == "" {
			what = "unknown"
		}
		return BodySig{}, fmt.Errorf("target type %d (%s) is not supported; Vigil supports 0 (any file)", t, what)
	}
	if b.Offset, err = parseOffset(f[2]); err != nil {
		return BodySig{}, err
	}
	if _, err := checkFL(f[4:]); err != nil {
		return BodySig{}, err
	}
	b.Hex = f[3]
	if b.Pattern, err = ParsePattern(f[3]); err != nil {
		return BodySig{}, err
	}
	return b, nil
}

// parseOffset parses *, n, n,m, EOF-n and EOF-n,m.
func parseOffset(s string) (Offset, error) {
	if s == "*" {
		return Offset{Kind: OffsetAny}, nil
	}
	unsupported := func() (Offset, error) {
		return Offset{}, fmt.Errorf("offset %q is not supported; Vigil supports *, n, n,m, EOF-n and EOF-n,m", s)
	}
	var o Offset
	rest := s
	if r, ok := strings.CutPrefix(s, "EOF-"); ok {
		o.Kind, rest = OffsetEOF, r
	} else if s == "" || s[0] < '0' || s[0] > '9' {
		return unsupported()
	} else {
		o.Kind = OffsetAbs
	}
	n, shift, hasShift := strings.Cut(rest, ",")
	var err error
	if o.N, err = parseUint(n, "offset"); err != nil {
		if o.Kind == OffsetAbs && strings.ContainsAny(n, "+-$") {
			return unsupported()
		}
		return Offset{}, fmt.Errorf("offset %q: %v", s, err)
	}
	if hasShift {
		if o.Shift, err = parseUint(shift, "offset shift"); err != nil {
			return Offset{}, fmt.Errorf("offset %q: %v", s, err)
		}
	}
	return o, nil
}
