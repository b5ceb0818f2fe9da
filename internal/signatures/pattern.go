package signatures

import (
	"errors"
	"fmt"
	"strconv"
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

// token kinds of the hex syntax.
type tokKind uint8

const (
	tByte  tokKind = iota // a byte, nibble or ?? (val, mask)
	tAlt                  // (aa|bb)
	tBrace                // {n}, {n-m}, {-n}, {n-}
	tStar                 // *
)

type token struct {
	kind     tokKind
	val, msk byte
	choices  []Choice
	min, max int64 // tBrace; max Unbounded for {n-}
	simple   bool  // tBrace written {n}
	col      int   // 1-based column, for errors
}

// ParsePattern parses a body signature's hex field.
func ParsePattern(s string) (*Pattern, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, fmt.Errorf("hex signature: %w", err)
	}
	if err := clamavValid(toks); err != nil {
		return nil, fmt.Errorf("hex signature: %w", err)
	}
	p, err := build(toks)
	if err != nil {
		return nil, fmt.Errorf("hex signature: %w", err)
	}
	return p, nil
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

func tokenize(s string) ([]token, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		col := i + 1
		switch {
		case c == '*':
			toks = append(toks, token{kind: tStar, col: col})
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("column %d: { without }", col)
			}
			t, err := parseBrace(s[i+1 : i+end])
			if err != nil {
				return nil, fmt.Errorf("column %d: %v", col, err)
			}
			t.col = col
			toks = append(toks, t)
			i += end + 1
		case c == '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return nil, fmt.Errorf("column %d: ( without )", col)
			}
			body := s[i+1 : i+end]
			if strings.ContainsRune(body, '(') {
				return nil, fmt.Errorf("column %d: nested alternatives are not supported", col)
			}
			choices, err := parseAlt(body)
			if err != nil {
				return nil, fmt.Errorf("column %d: %v", col, err)
			}
			toks = append(toks, token{kind: tAlt, choices: choices, col: col})
			i += end + 1
		case c == '!':
			return nil, fmt.Errorf("column %d: negated alternatives !(...) are not supported", col)
		case c == '[':
			return nil, fmt.Errorf("column %d: [n-m] byte ranges are not supported; use {n-m}", col)
		case c == ')' || c == '}' || c == '|':
			return nil, fmt.Errorf("column %d: unexpected %q", col, c)
		default:
			v, m, err := hexPair(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tByte, val: v, msk: m, col: col})
			i += 2
		}
	}
	return toks, nil
}

// parseBrace parses the inside of {...}.
func parseBrace(s string) (token, error) {
	t := token{kind: tBrace}
	lo, hi, isRange := strings.Cut(s, "-")
	var err error
	if !isRange {
		if t.min, err = parseUint(s, "{n}"); err != nil {
			return t, err
		}
		t.max, t.simple = t.min, true
		return t, nil
	}
	if lo == "" && hi == "" {
		return t, errors.New("{-} needs a number")
	}
	if lo != "" {
		if t.min, err = parseUint(lo, "{n-m} minimum"); err != nil {
			return t, err
		}
	}
	t.max = Unbounded
	if hi != "" {
		if t.max, err = parseUint(hi, "{n-m} maximum"); err != nil {
			return t, err
		}
		if t.max < t.min {
			return t, fmt.Errorf("{%s}: minimum above maximum", s)
		}
	}
	return t, nil
}

// parseAlt parses the inside of (...).
func parseAlt(body string) ([]Choice, error) {
	switch body {
	case "B", "L", "W":
		return nil, fmt.Errorf("(%s) boundary anchors are not supported", body)
	}
	var choices []Choice
	for _, c := range strings.Split(body, "|") {
		if c == "" {
			return nil, errors.New("empty alternative; alternatives must be non-empty and of equal length")
		}
		var ch Choice
		for i := 0; i < len(c); i += 2 {
			if c[i] == '*' || c[i] == '{' {
				return nil, errors.New("gaps are not allowed inside alternatives")
			}
			v, m, err := hexPair(c, i)
			if err != nil {
				return nil, fmt.Errorf("in alternative %q: %v", c, err)
			}
			ch.Value = append(ch.Value, v)
			ch.Mask = append(ch.Mask, m)
		}
		if len(choices) > 0 && len(ch.Value) != len(choices[0].Value) {
			return nil, fmt.Errorf("alternatives of different lengths (%s) are not supported; they must be of equal length", body)
		}
		choices = append(choices, ch)
	}
	if len(choices) < 2 {
		return nil, fmt.Errorf("(%s) needs at least two alternatives", body)
	}
	return choices, nil
}

// clamavValid applies ClamAV's loading rules, so that a set Vigil loads
// also loads in ClamAV: ClamAV replaces leading "{n}" gaps (0 < n < 128)
// with n "??" and, from the first other "{...}" on, splits the signature
// at every "{...}" and "*"; each piece must be non-empty and hold two
// consecutive fixed bytes. A signature of fixed bytes only needs three.
func clamavValid(toks []token) error {
	inline := len(toks) // index of the first brace ClamAV splits at
	for i, t := range toks {
		if t.kind == tBrace && !(t.simple && t.min > 0 && t.min < maxInlineGap) {
			inline = i
			break
		}
	}
	literal := true
	for _, t := range toks {
		if t.kind != tByte || t.msk != 0xff {
			literal = false
		}
	}
	if literal && len(toks) < 3 {
		return errors.New("a signature of fixed bytes only needs at least 3 bytes (ClamAV's minimum)")
	}
	start, run, best := 0, 0, 0
	piece := 0
	for i := 0; i <= len(toks); i++ {
		split := i == len(toks) || toks[i].kind == tStar || (toks[i].kind == tBrace && i >= inline)
		if !split {
			if toks[i].kind == tByte && toks[i].msk == 0xff {
				run++
				best = max(best, run)
			} else {
				run = 0
			}
			continue
		}
		piece++
		switch {
		case i == start && i < len(toks):
			return fmt.Errorf("column %d: %s without bytes before it", toks[i].col, describe(toks[i]))
		case i == start:
			return fmt.Errorf("column %d: %s without bytes after it", toks[i-1].col, describe(toks[i-1]))
		case best < 2:
			return fmt.Errorf("column %d: piece %d has no two consecutive fixed bytes (ClamAV needs them in every piece between gaps)", toks[start].col, piece)
		}
		start, run, best = i+1, 0, 0
	}
	return nil
}

func describe(t token) string {
	if t.kind == tStar {
		return "*"
	}
	if t.simple {
		return "{" + strconv.FormatInt(t.min, 10) + "}"
	}
	return "gap {...}"
}

// build turns tokens into parts: fixed gaps below maxInlineGap become
// wildcard bytes, other gaps separate parts.
func build(toks []token) (*Pattern, error) {
	p := &Pattern{}
	var cur Part
	flush := func() error {
		if cur.Len() == 0 {
			return errors.New("empty part") // excluded by clamavValid
		}
		p.Parts = append(p.Parts, cur)
		cur = Part{}
		if len(p.Parts) > MaxParts {
			return fmt.Errorf("more than %d parts", MaxParts)
		}
		return nil
	}
	for _, t := range toks {
		switch t.kind {
		case tByte:
			cur.Value = append(cur.Value, t.val)
			cur.Mask = append(cur.Mask, t.msk)
		case tAlt:
			cur.Alts = append(cur.Alts, Alt{Pos: cur.Len(), Choices: t.choices})
			n := len(t.choices[0].Value)
			for range n {
				cur.Value = append(cur.Value, 0)
				cur.Mask = append(cur.Mask, 0)
			}
		case tBrace, tStar:
			g := Gap{Min: 0, Max: Unbounded}
			if t.kind == tBrace {
				g = Gap{Min: t.min, Max: t.max}
			}
			if g.Min == g.Max && g.Min < maxInlineGap {
				for range g.Min {
					cur.Value = append(cur.Value, 0)
					cur.Mask = append(cur.Mask, 0)
				}
				break
			}
			if err := flush(); err != nil {
				return nil, err
			}
			p.Gaps = append(p.Gaps, g)
		}
		if cur.Len() > MaxPatternLength {
			return nil, fmt.Errorf("a part longer than %d bytes", MaxPatternLength)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return p, nil
}
