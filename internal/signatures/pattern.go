package signatures

import (
	"errors"
	"fmt"

	"strings"
)

// Pattern is a parsed body-signature hex pattern: parts of fixed length,
// separated by gaps of variable length. A fixed gap shorter than
// maxInlineGap ("{n}", "{n-n}") is kept inside a part as wildcard bytes.
type Pattern struct {
	Parts []Part
	Gaps  []Gap // Gaps[i] is between Parts[i] and Parts[i+1]
}

// Gap is how many bytes may separate two parts: Min to Max, or Min or
// more when Max is Unbounded.
type Gap struct{ Min, Max int64 }

// Unbounded is Gap.Max for "*" and "{n-}".
const Unbounded = -1

// maxInlineGap: like ClamAV, fixed gaps {n} with n below it become n
// wildcard bytes inside a part; longer ones separate parts.
const maxInlineGap = 128

// Part is a fixed-length piece of a pattern. Byte i of a candidate
// matches when b&Mask[i] == Value[i] (Mask 0xff: a fixed byte, 0xf0 or
// 0x0f: a nibble, 0: any byte), and each alternative group matches one of
// its choices.
type Part struct {
	Value, Mask []byte
	Alts        []Alt
}

// Alt is an alternative group "(aa|bb)" at Pos in its part: one of its
// equal-length Choices must match there (their bytes have Mask 0 in the
// part).
type Alt struct {
	Pos     int
	Choices []Choice
}

// Choice is one alternative: bytes with masks as in Part.
type Choice struct{ Value, Mask []byte }

// Len is the number of bytes the part spans.
func (p *Part) Len() int { return len(p.Value) }

// MatchAt reports whether the part matches at the start of b, which must
// hold at least p.Len() bytes.
func (p *Part) MatchAt(b []byte) bool {
	b = b[:len(p.Value)]
	for i, m := range p.Mask {
		if b[i]&m != p.Value[i] {
			return false
		}
	}
	for _, a := range p.Alts {
		if !a.matchAt(b[a.Pos:]) {
			return false
		}
	}
	return true
}

func (a *Alt) matchAt(b []byte) bool {
next:
	for _, c := range a.Choices {
		for i, m := range c.Mask {
			if b[i]&m != c.Value[i] {
				continue next
			}
		}
		return true
	}
	return false
}

// Span returns the least and greatest number of bytes a match of the whole
// pattern covers (max is Unbounded when some gap is).
func (p *Pattern) Span() (lo, hi int64) {
	for _, part := range p.Parts {
		lo += int64(part.Len())
		hi += int64(part.Len())
	}
	for _, g := range p.Gaps {
		lo += g.Min
		if g.Max == Unbounded || hi == Unbounded {
			hi = Unbounded
		} else {
			hi += g.Max
		}
	}
	return lo, hi
}

// String returns the pattern in canonical ClamAV hex syntax; parsing it
// gives the same pattern.
func (p *Pattern) String() string {
	var sb strings.Builder
	for i := range p.Parts {
		if i > 0 {
			g := p.Gaps[i-1]
			switch {
			case g.Max == Unbounded && g.Min == 0:
				sb.WriteString("*")
			case g.Max == Unbounded:
				fmt.Fprintf(&sb, "{%d-}", g.Min)
			case g.Min == g.Max:
				fmt.Fprintf(&sb, "{%d}", g.Min)
			default:
				fmt.Fprintf(&sb, "{%d-%d}", g.Min, g.Max)
			}
		}
		part := &p.Parts[i]
		alts := part.Alts
		for j := 0; j < part.Len(); {
			if len(alts) > 0 && alts[0].Pos == j {
				sb.WriteByte('(')
				for k, c := range alts[0].Choices {
					if k > 0 {
						sb.WriteByte('|')
					}
					for x := range c.Value {
						writeByte(&sb, c.Value[x], c.Mask[x])
					}
				}
				sb.WriteByte(')')
				j += len(alts[0].Choices[0].Value)
				alts = alts[1:]
				continue
			}
			writeByte(&sb, part.Value[j], part.Mask[j])
			j++
		}
	}
	return sb.String()
}

const hexDigits = "0123456789abcdef"

func writeByte(sb *strings.Builder, v, m byte) {
	switch m {
	case 0xff:
		sb.WriteByte(hexDigits[v>>4])
		sb.WriteByte(hexDigits[v&15])
	case 0xf0:
		sb.WriteByte(hexDigits[v>>4])
		sb.WriteByte('?')
	case 0x0f:
		sb.WriteByte('?')
		sb.WriteByte(hexDigits[v&15])
	default:
		sb.WriteString("??")
	}
}

// ParsePattern parses a body signature's hex field as a target-type-0
// signature at offset "*": an error when ClamAV refuses it, or when Vigil
// cannot match it (see clamPattern).
func ParsePattern(s string) (*Pattern, error) {
	cp, err := clamPattern(s, 0, "*")
	if err != nil {
		return nil, fmt.Errorf("hex signature: %w", err)
	}
	if cp.unsupported != "" {
		return nil, fmt.Errorf("hex signature: %s", cp.unsupported)
	}
	p, err := cp.build()
	if err != nil {
		return nil, fmt.Errorf("hex signature: %w", err)
	}
	return p, nil
}

// clamPat is a hex signature ClamAV accepts, split into its pieces as
// ClamAV splits it.
type clamPat struct {
	pieces      []string // hex of each piece, leading {n} expanded to ??
	gaps        []Gap    // gaps[i] is between pieces[i] and pieces[i+1]
	unsupported string   // why Vigil cannot match it, or ""
	ac          bool     // always ClamAV's Aho-Corasick matcher (logical subsignatures, modifiers)
	sigopts     bool     // a logical subsignature with modifiers: every alternative is "generic"
}

func (cp *clamPat) unsupport(why string) {
	if cp.unsupported == "" {
		cp.unsupported = why
	}
}

// clamPattern checks a hex signature as ClamAV 1.4's
// cli_add_content_match_pattern and cli_ac_addsig do, for the target type
// and offset given: an error is a signature ClamAV refuses. ClamAV
// replaces "{n}" (0 < n < 128) by n "??" as long as no other "{...}"
// comes before it; from there on it splits the signature at every
// "{...}" and "*" into pieces. "{n-m}" with n or m absent or 0 leaves that
// side unbounded, so "{0}", "{-0}", "{0-0}", "{-}" and "{}" mean "*".
func clamPattern(hexsig string, target int32, offset string) (*clamPat, error) {
	cp := &clamPat{}
	if err := cp.add(hexsig, target, offset); err != nil {
		return nil, err
	}
	return cp, nil
}

// clamPatternAC is clamPattern for a subsignature of a logical signature:
// ClamAV adds those to its Aho-Corasick matcher whatever their form, so
// the 3-byte minimum of its Boyer-Moore matcher does not apply. With
// modifiers (sigopts), ClamAV stores every alternative as a "generic"
// one (ac_special_altstr): it cannot be negated, and ClamAV's prefilter
// stops at it even when it is of single bytes.
func clamPatternAC(hexsig string, target int32, offset string, sigopts bool) (*clamPat, error) {
	cp := &clamPat{ac: true, sigopts: sigopts}
	if err := cp.add(hexsig, target, offset); err != nil {
		return nil, err
	}
	return cp, nil
}

func (cp *clamPat) add(hexsig string, target int32, offset string) error {
	if hexsig == "" {
		return errors.New("empty")
	}
	if i := strings.IndexByte(hexsig, '{'); i >= 0 {
		if n, rest, ok := cScanUint(hexsig[i+1:], 64); ok && rest != "" && rest[0] == '}' && n > 0 && n < maxInlineGap {
			j := strings.IndexByte(hexsig[i:], '}')
			return cp.add(hexsig[:i]+strings.Repeat("??", int(n))+hexsig[i+j+1:], target, offset)
		}
		nest, parts := 0, 1
		for k := 0; k < len(hexsig); k++ {
			switch hexsig[k] {
			case '(':
				nest++
			case ')':
				nest--
			case '{', '*':
				if nest != 0 {
					return fmt.Errorf("column %d: %q inside an alternative", k+1, hexsig[k])
				}
				parts++
			}
		}
		if parts > MaxParts {
			return fmt.Errorf("more than %d pieces", MaxParts)
		}
		start := hexsig
		for i := 1; i <= parts; i++ {
			piece, rest, asterisk := start, "", false
			if i != parts {
				j := strings.IndexAny(start, "{*")
				if j < 0 {
					return errors.New("malformed gap")
				}
				piece, rest, asterisk = start[:j], start[j+1:], start[j] == '*'
			}
			if err := cp.addSig(piece, target); err != nil {
				return err
			}
			if i == parts {
				break
			}
			if asterisk {
				cp.gaps = append(cp.gaps, Gap{0, Unbounded})
				start = rest
				continue
			}
			k := strings.IndexByte(rest, '}')
			if k < 0 {
				return errors.New("{ without }")
			}
			g, err := cp.brace(rest[:k])
			if err != nil {
				return err
			}
			cp.gaps = append(cp.gaps, g)
			start = rest[k+1:]
		}
		return nil
	}
	if strings.IndexByte(hexsig, '*') >= 0 {
		nest, parts := 0, 1
		for k := 0; k < len(hexsig); k++ {
			switch hexsig[k] {
			case '(':
				nest++
			case ')':
				nest--
			case '*':
				if nest != 0 {
					return fmt.Errorf("column %d: * inside an alternative", k+1)
				}
				parts++
			}
		}
		if parts > MaxParts {
			return fmt.Errorf("more than %d pieces", MaxParts)
		}
		for i := 1; i <= parts; i++ {
			piece, ok := cStrtok(hexsig, i-1, "*")
			if !ok {
				return fmt.Errorf("piece %d around * is empty", i)
			}
			if i > 1 {
				cp.gaps = append(cp.gaps, Gap{0, Unbounded})
			}
			if err := cp.addSig(piece, target); err != nil {
				return err
			}
		}
		return nil
	}
	if cp.ac || (target != 0 && target != 1) || strings.ContainsAny(hexsig, "?([") ||
		(target == 1 && (offset == "*" || strings.IndexByte(offset, ',') >= 0)) ||
		strings.Contains(offset, "VI") || strings.IndexByte(offset, '$') >= 0 {
		return cp.addSig(hexsig, target)
	}
	// ClamAV's Boyer-Moore matcher: fixed bytes only, at least 3.
	if len(hexsig)%2 != 0 {
		return errors.New("odd number of hex digits")
	}
	for k := 0; k < len(hexsig); k++ {
		if _, ok := hexVal(hexsig[k]); !ok {
			return fmt.Errorf("column %d: unexpected character %q", k+1, hexsig[k])
		}
	}
	if len(hexsig)/2 < 3 {
		return errors.New("a signature of fixed bytes only needs at least 3 bytes (ClamAV's minimum)")
	}
	cp.pieces = append(cp.pieces, hexsig)
	return nil
}

// brace parses the inside of a "{...}" that splits pieces, as ClamAV
// does (atoi; an absent or zero bound is no bound).
func (cp *clamPat) brace(s string) (Gap, error) {
	bad := func() (Gap, error) { return Gap{}, fmt.Errorf("gap {%s} is malformed", s) }
	var lo, hi int32
	if strings.IndexByte(s, '-') < 0 {
		if !cIsNumber(s) {
			return bad()
		}
		if lo = cAtoi(s); lo < 0 {
			return bad()
		}
		hi = lo
	} else {
		if n, ok := cStrtok(s, 0, "-"); ok {
			if !cIsNumber(n) {
				return bad()
			}
			if lo = cAtoi(n); lo < 0 {
				return bad()
			}
		}
		if n, ok := cStrtok(s, 1, "-"); ok {
			if !cIsNumber(n) {
				return bad()
			}
			if hi = cAtoi(n); hi < 0 {
				return bad()
			}
		}
		if _, ok := cStrtok(s, 2, "-"); ok {
			return bad()
		}
	}
	g := Gap{Min: int64(lo), Max: int64(hi)}
	if hi == 0 {
		g.Max = Unbounded
	} else if lo > hi {
		cp.unsupport(fmt.Sprintf("gap {%s}: minimum above maximum, it can never match", s))
	}
	return g, nil
}

// element kinds of a piece, as ClamAV's cli_hex2ui decodes them.
const (
	eChar    = iota // a fixed byte
	eNibble         // a nibble
	eIgnore         // ??
	eAltChar        // a special: alternatives of single fixed bytes
	eSpecial        // any other special: longer alternatives, anchors
)

// addSig checks one piece as ClamAV's cli_ac_addsig does.
func (cp *clamPat) addSig(hexsig string, target int32) error {
	if len(hexsig)/2 < 2 {
		return fmt.Errorf("piece %q is shorter than 2 bytes", hexsig)
	}
	hex := hexsig
	if strings.IndexByte(hexsig, '[') >= 0 {
		cp.unsupport("[n-m] byte ranges are not supported")
		h := hexsig
		for i := 0; i < 2; i++ {
			p := strings.IndexByte(h, '[')
			if p < 0 {
				break
			}
			before, after := h[:p], h[p+1:]
			q := strings.IndexByte(after, ']')
			if q < 0 {
				return errors.New("[ without ]")
			}
			inside, pt2 := after[:q], after[q+1:]
			n1, r, ok := cScanUint(inside, 32)
			if !ok {
				return fmt.Errorf("[%s] is not a range", inside)
			}
			n2 := n1
			if strings.HasPrefix(r, "-") {
				if v, _, ok := cScanUint(r[1:], 32); ok {
					n2 = v
				}
			}
			if n1 > n2 || n2 > 32 {
				return fmt.Errorf("[%s]: ranges go from n to m, n ≤ m ≤ 32", inside)
			}
			switch {
			case len(before) == 2:
				if i == 1 {
					return errors.New("[n-m] ranges must be at the start and end of a piece")
				}
				if _, ok := hex2ui(before); !ok {
					return fmt.Errorf("%q before [ is not a byte", before)
				}
				h = pt2
			case len(pt2) == 2:
				if _, ok := hex2ui(pt2); !ok {
					return fmt.Errorf("%q after ] is not a byte", pt2)
				}
				i = 1
				h = before
			default:
				return errors.New("an [n-m] range must have one byte on its outer side")
			}
		}
		hex = h
	}
	var specials []int
	if strings.IndexByte(hexsig, '(') >= 0 {
		var nb strings.Builder
		s, start := hex, 0
		for {
			p := strings.IndexByte(s[start:], '(')
			if p < 0 {
				break
			}
			p += start
			neg := p >= 1 && s[p-1] == '!'
			seg := s[start:p]
			if neg {
				seg = s[start : p-1]
				cp.unsupport("!(...) negations are not supported")
			}
			nb.WriteString(seg)
			end, nest := findParenEnd(s[p+1:])
			if end < 0 {
				return errors.New("( without )")
			}
			inner := s[p+1 : p+1+end]
			start = p + 1 + end + 1
			if inner == "" {
				return errors.New("empty ()")
			}
			if nest > 15 {
				return errors.New("alternatives nested more than 15 deep")
			}
			if inner == "B" || inner == "L" || inner == "W" {
				cp.unsupport("(" + inner + ") anchors are not supported")
				if start == len(s) || p == 0 {
					continue
				}
				nb.WriteString("()")
				specials = append(specials, eSpecial)
				continue
			}
			typ, err := cp.altstr(inner, neg)
			if err != nil {
				return err
			}
			nb.WriteString("()")
			specials = append(specials, typ)
		}
		nb.WriteString(s[start:])
		hex = nb.String()
	}
	elems, ok := hex2ui(hex)
	if !ok {
		return fmt.Errorf("piece %q is not a sequence of hex bytes, nibbles, ?? and alternatives", truncate(hexsig))
	}
	for i, k := 0, 0; i < len(elems); i++ {
		if elems[i] == eSpecial {
			elems[i] = specials[k]
			k++
		}
	}
	if len(elems) < 2 {
		return fmt.Errorf("piece %q is shorter than 2 bytes", hexsig)
	}
	if target == 0 || target == 1 || target == 4 || target == 7 {
		if err := clamFilter(elems); err != nil {
			return fmt.Errorf("piece %q: %v", truncate(hexsig), err)
		}
	}
	two := false
	for i := 0; i+1 < len(elems); i++ {
		if elems[i] == eChar && elems[i+1] == eChar {
			two = true
			break
		}
	}
	if !two {
		return fmt.Errorf("piece %q has no two consecutive fixed bytes (ClamAV needs them in every piece between gaps)", truncate(hexsig))
	}
	cp.pieces = append(cp.pieces, hexsig)
	return nil
}

// clamFilter applies the rule of ClamAV's prefilter (filter_add_acpatt)
// that refuses a piece: past leading multi-byte alternatives, the
// elements before the next multi-byte alternative or anchor must be at
// least two and not all "??".
func clamFilter(elems []int) error {
	j := min(len(elems), 255)
	static := true
	for _, e := range elems[:j] {
		if e != eChar {
			static = false
			break
		}
	}
	if static {
		return nil
	}
	i := 0
	for i < len(elems) && elems[i] == eSpecial {
		i++
	}
	n, allIgnore := 0, true
	for ; i < j && elems[i] != eSpecial; i++ {
		n++
		if elems[i] != eIgnore {
			allIgnore = false
		}
	}
	if n < 2 {
		return errors.New("fewer than 2 bytes before a multi-byte alternative (ClamAV's prefilter refuses it)")
	}
	if allIgnore {
		return errors.New("only ?? before a multi-byte alternative (ClamAV's prefilter refuses it)")
	}
	return nil
}

// findParenEnd returns the index in s of the ")" closing an "(" just
// before s (-1 if none) and the number of "(" nested inside.
func findParenEnd(s string) (end, nest int) {
	level := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			nest++
			level++
		case ')':
			if level == 0 {
				return i, nest
			}
			level--
		}
	}
	return -1, nest
}

// hex2ui decodes a piece as ClamAV's cli_hex2ui: pairs of hex digits,
// "??", nibbles, or "(" followed by any byte (an alternative's place).
func hex2ui(s string) ([]int, bool) {
	if len(s)%2 != 0 {
		return nil, false
	}
	var out []int
	for i := 0; i < len(s); i += 2 {
		a, b := s[i], s[i+1]
		_, aok := hexVal(a)
		_, bok := hexVal(b)
		switch {
		case a == '?' && b == '?':
			out = append(out, eIgnore)
		case b == '?':
			if !aok {
				return nil, false
			}
			out = append(out, eNibble)
		case a == '?':
			if !bok {
				return nil, false
			}
			out = append(out, eNibble)
		case a == '(':
			out = append(out, eSpecial)
		default:
			if !aok || !bok {
				return nil, false
			}
			out = append(out, eChar)
		}
	}
	return out, true
}

// analyzeExpr is ClamAV's ac_analyze_expr: the number of alternatives,
// whether they are all fixed bytes of one length, and the longest length.
func analyzeExpr(h string) (num int, fixed bool, slen int) {
	level, length := 0, 0
	num, fixed = 1, true
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c == '(' {
			fixed = false
			level++
		} else if c == ')' {
			if level == 0 {
				break
			}
			level--
		}
		if level == 0 && c == '|' {
			if slen == 0 {
				slen = length
			} else if length != slen {
				fixed = false
				slen = max(slen, length)
			}
			length = 0
			num++
		} else {
			if c == '?' {
				fixed = false
			}
			length++
		}
	}
	if slen == 0 {
		slen = length
	} else if length != slen {
		fixed = false
		slen = max(slen, length)
	}
	return num, fixed, slen
}

// altstr checks an alternative's inside as ClamAV's ac_special_altstr.
func (cp *clamPat) altstr(inner string, neg bool) (int, error) {
	num, fixed, slen := analyzeExpr(inner)
	if fixed && !cp.sigopts {
		for i := 0; i < num; i++ {
			a := inner
			if num > 1 {
				var ok bool
				if a, ok = cStrtok(inner, i, "|"); !ok {
					return 0, fmt.Errorf("(%s): empty alternative", inner)
				}
			}
			if len(a)%2 != 0 {
				return 0, fmt.Errorf("(%s): odd number of hex digits", inner)
			}
			for k := 0; k < len(a); k++ {
				if _, ok := hexVal(a[k]); !ok {
					return 0, fmt.Errorf("(%s): unexpected character %q", inner, a[k])
				}
			}
		}
		if slen == 2 {
			return eAltChar, nil
		}
		return eSpecial, nil
	}
	if neg {
		return 0, fmt.Errorf("!(%s): ClamAV cannot negate alternatives of different lengths or with wildcards", inner)
	}
	if strings.Contains(inner, "!(") {
		return 0, fmt.Errorf("(%s): nested alternatives cannot be negated", inner)
	}
	exp, err := expandAlt(inner, 0)
	if err != nil {
		return 0, fmt.Errorf("(%s): %v", inner, err)
	}
	for _, e := range exp {
		if _, ok := hex2ui(e); !ok || strings.IndexByte(e, '(') >= 0 {
			return 0, fmt.Errorf("(%s): alternative %q is not hex bytes, nibbles and ??", inner, e)
		}
	}
	if strings.IndexByte(inner, '(') >= 0 {
		cp.unsupport("nested alternatives are not supported")
	} else {
		l := -1
		for _, a := range strings.Split(inner, "|") {
			if a == "" || (l >= 0 && len(a) != l) {
				cp.unsupport("alternatives of different lengths are not supported")
			}
			l = len(a)
		}
	}
	return eSpecial, nil
}

// maxExpand bounds the expansions of nested alternatives checked.
const maxExpand = 1024

// expandAlt lists the strings a generic alternative stands for.
func expandAlt(s string, depth int) ([]string, error) {
	if depth > 16 {
		return nil, errors.New("nested too deep")
	}
	var out []string
	level, from := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '(':
				level++
				continue
			case ')':
				level--
				continue
			case '|':
				if level != 0 {
					continue
				}
			default:
				continue
			}
		}
		seq, err := expandSeq(s[from:i], depth)
		if err != nil {
			return nil, err
		}
		out = append(out, seq...)
		if len(out) > maxExpand {
			return out[:maxExpand], nil
		}
		from = i + 1
	}
	return out, nil
}

func expandSeq(s string, depth int) ([]string, error) {
	out := []string{""}
	for i := 0; i < len(s); {
		if s[i] != '(' {
			j := strings.IndexByte(s[i:], '(')
			if j < 0 {
				j = len(s) - i
			}
			for k := range out {
				out[k] += s[i : i+j]
			}
			i += j
			continue
		}
		end, _ := findParenEnd(s[i+1:])
		if end < 0 {
			return nil, errors.New("( without )")
		}
		sub, err := expandAlt(s[i+1:i+1+end], depth+1)
		if err != nil {
			return nil, err
		}
		var next []string
		for _, a := range out {
			for _, b := range sub {
				if len(next) < maxExpand {
					next = append(next, a+b)
				}
			}
		}
		out = next
		i += end + 2
	}
	return out, nil
}

// build turns the pieces into Vigil's parts: a fixed gap {n} below
// maxInlineGap between two pieces becomes n wildcard bytes in one part.
func (cp *clamPat) build() (*Pattern, error) {
	p := &Pattern{}
	for i, h := range cp.pieces {
		part, err := buildPart(h)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			g := cp.gaps[i-1]
			if g.Min == g.Max && g.Min < maxInlineGap {
				last := &p.Parts[len(p.Parts)-1]
				for range g.Min {
					last.Value = append(last.Value, 0)
					last.Mask = append(last.Mask, 0)
				}
				for _, a := range part.Alts {
					a.Pos += last.Len()
					last.Alts = append(last.Alts, a)
				}
				last.Value = append(last.Value, part.Value...)
				last.Mask = append(last.Mask, part.Mask...)
				if last.Len() > MaxPatternLength {
					return nil, fmt.Errorf("a part longer than %d bytes", MaxPatternLength)
				}
				continue
			}
			p.Gaps = append(p.Gaps, g)
		}
		p.Parts = append(p.Parts, part)
	}
	if len(p.Parts) > MaxParts {
		return nil, fmt.Errorf("more than %d parts", MaxParts)
	}
	return p, nil
}

// buildPart builds one piece that clamPattern accepted and found
// supported: hex bytes, nibbles, ?? and equal-length alternatives.
func buildPart(h string) (Part, error) {
	var part Part
	for i := 0; i < len(h); {
		if h[i] == '(' {
			end := strings.IndexByte(h[i:], ')')
			if end < 0 {
				return Part{}, errors.New("( without )")
			}
			var alt Alt
			alt.Pos = part.Len()
			for _, c := range strings.Split(h[i+1:i+end], "|") {
				var ch Choice
				for k := 0; k+1 < len(c); k += 2 {
					v, m, err := hexPair(c, k)
					if err != nil {
						return Part{}, err
					}
					ch.Value = append(ch.Value, v)
					ch.Mask = append(ch.Mask, m)
				}
				alt.Choices = append(alt.Choices, ch)
			}
			for range alt.Choices[0].Value {
				part.Value = append(part.Value, 0)
				part.Mask = append(part.Mask, 0)
			}
			part.Alts = append(part.Alts, alt)
			i += end + 1
			continue
		}
		v, m, err := hexPair(h, i)
		if err != nil {
			return Part{}, err
		}
		part.Value = append(part.Value, v)
		part.Mask = append(part.Mask, m)
		i += 2
	}
	if part.Len() > MaxPatternLength {
		return Part{}, fmt.Errorf("a part longer than %d bytes", MaxPatternLength)
	}
	return part, nil
}
func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hexPair parses two characters of hex, "??", "a?" or "?a".
func hexPair(s string, i int) (val, mask byte, err error) {
	if i+1 >= len(s) {
		return 0, 0, fmt.Errorf("column %d: odd number of hex digits", i+1)
	}
	hi, lo := s[i], s[i+1]
	hv, hok := hexVal(hi)
	lv, lok := hexVal(lo)
	switch {
	case hi == '?' && lo == '?':
		return 0, 0, nil
	case hok && lo == '?':
		return hv << 4, 0xf0, nil
	case hi == '?' && lok:
		return lv, 0x0f, nil
	case hok && lok:
		return hv<<4 | lv, 0xff, nil
	}
	bad := hi
	if hok || hi == '?' {
		bad = lo
	}
	return 0, 0, fmt.Errorf("column %d: unexpected character %q", i+1, bad)
}
