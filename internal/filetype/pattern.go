package filetype

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// byteSet is a set of byte values: one position of a magic pattern.
type byteSet [4]uint64

func (s *byteSet) add(b byte)      { s[b>>6] |= 1 << (b & 63) }
func (s *byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *byteSet) addAll()         { *s = byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)} }

func addMasked(s *byteSet, v, mask byte) {
	for b := 0; b < 256; b++ {
		if byte(b)&mask == v&mask {
			s.add(byte(b))
		}
	}
}

// part is a run of positions of fixed length, each a byteSet.
type part []byteSet

// segment is parts separated by bounded gaps: part i (i > 0) starts
// between minGap[i] and maxGap[i] bytes after part i-1 ends. A segment
// has a bounded span.
type segment struct {
	parts          []part
	minGap, maxGap []int
	lit            []int // per part: its first byte when that is one value, else -1
	span           int   // the greatest length of a match
}

// pattern is one type-recognition ("magic type 1") line of a file type
// table: segments separated by "*" (any distance), the offset its first
// byte must be at, and the type it gives.
type pattern struct {
	name     string
	segments []segment
	typ      Type
	rtype    Type
	// offset: any (anyOffset), an absolute range [offMin, offMax], or
	// fromEOF bytes before the end of the file.
	anyOffset      bool
	offMin, offMax int64
	fromEOF        int64
	eof            bool
}

// exact is a "magic type 0" line: magic at an exact offset, compared with
// memcmp before anything else.
type exact struct {
	offset int
	magic  []byte
	name   string
	typ    Type
}

// Table is a compiled file type table: the exact magics in the order
// ClamAV tries them (the last line of the table first) and the
// recognition patterns.
type Table struct {
	exacts   []exact
	patterns []pattern
	maxSpan  int // the longest span of any segment
	// byFirst lists, per byte value, the patterns at any offset whose
	// first segment can start with it; byFirstAt the same for patterns at
	// an absolute offset, which matter only up to atLimit; atEOF lists the
	// patterns at an offset from the end of the file.
	byFirst   [256][]int
	byFirstAt [256][]int
	atLimit   int64
	atEOF     []int
}

// FLevel is the functionality level of the ClamAV this package follows
// (CL_FLEVEL of ClamAV 1.4): table lines whose minimum level is above it,
// or whose maximum level is below it, are skipped as ClamAV skips them.
const FLevel = 215

// ParseTable compiles file type table lines (the format of ClamAV's
// daily.ftm and built-in table) as ClamAV's cli_loadftm does: comment
// lines (#) skipped, lines outside FLevel skipped, partition lines
// (magic type 4) and unknown magic types ignored; any other malformed line
// is an error naming its line number, and an empty table is an error.
func ParseTable(lines []string) (*Table, error) {
	t := &Table{}
	n := 0
	for i, line := range lines {
		if strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimRight(line, "\r\n")
		f := strings.Split(line, ":")
		if len(f) < 6 || len(f) > 8 {
			return nil, fmt.Errorf("file type table line %d: %d fields, want 6 to 8", i+1, len(f))
		}
		if len(f) > 6 {
			minLevel, err := field(f[6])
			if err != nil {
				return nil, fmt.Errorf("file type table line %d: minimum level: %v", i+1, err)
			}
			if minLevel > FLevel {
				continue
			}
			if len(f) == 8 {
				maxLevel, err := field(f[7])
				if err != nil {
					return nil, fmt.Errorf("file type table line %d: maximum level: %v", i+1, err)
				}
				if maxLevel < FLevel {
					continue
				}
			}
		}
		rtype, ok1 := ByName(f[4])
		typ, ok2 := ByName(f[5])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("file type table line %d: unknown type %q or %q", i+1, f[4], f[5])
		}
		mt, err := field(f[0])
		if err != nil {
			return nil, fmt.Errorf("file type table line %d: magic type: %v", i+1, err)
		}
		switch mt {
		case 1:
			p, err := compilePattern(f[2], f[1])
			if err != nil {
				return nil, fmt.Errorf("file type table line %d: %v", i+1, err)
			}
			p.name, p.typ, p.rtype = f[3], typ, rtype
			for _, s := range p.segments {
				t.maxSpan = max(t.maxSpan, s.span)
			}
			t.patterns = append(t.patterns, p)
		case 0, 4:
			off, err := field(f[1])
			if err != nil {
				return nil, fmt.Errorf("file type table line %d: offset: %v", i+1, err)
			}
			magic, err := decodeHex(f[2])
			if err != nil {
				return nil, fmt.Errorf("file type table line %d: %v", i+1, err)
			}
			if mt == 0 {
				// cli_loadftm prepends: the last line is tried first.
				t.exacts = append([]exact{{offset: off, magic: magic, name: f[3], typ: typ}}, t.exacts...)
			}
		default:
			continue
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("empty file type table")
	}
	for pi := range t.patterns {
		p := &t.patterns[pi]
		if p.eof {
			t.atEOF = append(t.atEOF, pi)
			continue
		}
		index := &t.byFirst
		if !p.anyOffset {
			index = &t.byFirstAt
			t.atLimit = max(t.atLimit, p.offMax)
		}
		first := &p.segments[0].parts[0][0]
		for c := 0; c < 256; c++ {
			if first.has(byte(c)) {
				index[c] = append(index[c], pi)
			}
		}
	}
	return t, nil
}

// field parses a table field as ClamAV's cli_isnumber and atoi accept it:
// digits only, and the empty field is 0.
func field(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return number(s)
}

// number parses a non-empty decimal number.
func number(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %v", s, err)
	}
	return v, nil
}

func decodeHex(s string) ([]byte, error) {
	if len(s)%2 != 0 || s == "" {
		return nil, fmt.Errorf("magic %q: odd or empty hex", s)
	}
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("magic %q: %v", s, err)
		}
		b[i] = byte(v)
	}
	return b, nil
}

// compilePattern compiles the body syntax the file type tables use: hex
// bytes, ?? and nibble wildcards (a? ?a), single-byte alternatives
// (aa|bb), {n}, {n-m}, {-n}, {n-} and *; and an offset: *, n, n,m or EOF-n.
func compilePattern(body, offset string) (pattern, error) {
	var p pattern
	switch {
	case offset == "*":
		p.anyOffset = true
	case strings.HasPrefix(offset, "EOF-"):
		n, err := number(offset[4:])
		if err != nil {
			return p, fmt.Errorf("offset %q: %v", offset, err)
		}
		p.eof, p.fromEOF = true, int64(n)
	default:
		a, b, ranged := strings.Cut(offset, ",")
		n, err := number(a)
		if err != nil {
			return p, fmt.Errorf("offset %q: %v", offset, err)
		}
		p.offMin, p.offMax = int64(n), int64(n)
		if ranged {
			m, err := number(b)
			if err != nil {
				return p, fmt.Errorf("offset %q: %v", offset, err)
			}
			p.offMax = int64(n + m)
		}
	}
	for _, segText := range strings.Split(body, "*") {
		seg, err := compileSegment(segText)
		if err != nil {
			return p, fmt.Errorf("pattern %q: %v", body, err)
		}
		p.segments = append(p.segments, seg)
	}
	return p, nil
}

func compileSegment(s string) (segment, error) {
	var seg segment
	var cur part
	minGap, maxGap := 0, 0
	flush := func() error {
		if len(cur) == 0 {
			return fmt.Errorf("empty part")
		}
		seg.parts = append(seg.parts, cur)
		seg.lit = append(seg.lit, literal(&cur[0]))
		seg.minGap = append(seg.minGap, minGap)
		seg.maxGap = append(seg.maxGap, maxGap)
		seg.span += maxGap + len(cur)
		cur = nil
		return nil
	}
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '(':
			j := strings.IndexByte(s[i:], ')')
			if j < 0 {
				return seg, fmt.Errorf("unclosed (")
			}
			var set byteSet
			for _, alt := range strings.Split(s[i+1:i+j], "|") {
				b, err := decodeHex(alt)
				if err != nil || len(b) != 1 {
					return seg, fmt.Errorf("alternative %q: one byte wanted", alt)
				}
				set.add(b[0])
			}
			cur = append(cur, set)
			i += j + 1
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return seg, fmt.Errorf("unclosed {")
			}
			in := s[i+1 : i+j]
			i += j + 1
			lo, hi, ranged := strings.Cut(in, "-")
			if !ranged {
				n, err := number(lo)
				if err != nil {
					return seg, fmt.Errorf("{%s}: %v", in, err)
				}
				var any byteSet
				any.addAll()
				for range n {
					cur = append(cur, any)
				}
				continue
			}
			a, b := 0, 1<<20
			var err error
			if lo != "" {
				if a, err = number(lo); err != nil {
					return seg, fmt.Errorf("{%s}: %v", in, err)
				}
			}
			if hi != "" {
				if b, err = number(hi); err != nil {
					return seg, fmt.Errorf("{%s}: %v", in, err)
				}
			}
			if b < a || b >= 1<<20 {
				return seg, fmt.Errorf("{%s}: unbounded or reversed gap", in)
			}
			if err := flush(); err != nil {
				return seg, err
			}
			minGap, maxGap = a, b
		default:
			if i+2 > len(s) {
				return seg, fmt.Errorf("odd hex")
			}
			h, l := s[i], s[i+1]
			var set byteSet
			switch {
			case h == '?' && l == '?':
				set.addAll()
			case h == '?':
				v, err := decodeHex("0" + string(l))
				if err != nil {
					return seg, err
				}
				addMasked(&set, v[0], 0x0f)
			case l == '?':
				v, err := decodeHex(string(h) + "0")
				if err != nil {
					return seg, err
				}
				addMasked(&set, v[0], 0xf0)
			default:
				v, err := decodeHex(s[i : i+2])
				if err != nil {
					return seg, err
				}
				set.add(v[0])
			}
			cur = append(cur, set)
			i += 2
		}
	}
	if err := flush(); err != nil {
		return seg, err
	}
	return seg, nil
}

// literal returns the one byte s holds, or -1.
func literal(s *byteSet) int {
	v := -1
	for c := 0; c < 256; c++ {
		if s.has(byte(c)) {
			if v >= 0 {
				return -1
			}
			v = c
		}
	}
	return v
}

// matchPart reports whether p matches b at i (wholly inside b).
func matchPart(p part, b []byte, i int) bool {
	if i < 0 || i+len(p) > len(b) {
		return false
	}
	for k := range p {
		if !p[k].has(b[i+k]) {
			return false
		}
	}
	return true
}

// matchSegment returns the end of the first match of seg starting at i
// in b (the smallest gaps first), or -1. complete reports whether b held
// enough bytes after i to decide (false: a match might need more bytes).
func matchSegment(seg *segment, b []byte, i int) (end int, complete bool) {
	return matchFrom(seg, 0, b, i)
}

func matchFrom(seg *segment, k int, b []byte, i int) (int, bool) {
	p := seg.parts[k]
	if i+len(p) > len(b) {
		return -1, false
	}
	if !matchPart(p, b, i) {
		return -1, true
	}
	end := i + len(p)
	if k+1 == len(seg.parts) {
		return end, true
	}
	complete := true
	lo, hi := end+seg.minGap[k+1], end+seg.maxGap[k+1]
	for g := lo; g <= hi; g++ {
		if lit := seg.lit[k+1]; lit >= 0 {
			// Skip to the next place the part's first byte is.
			if g >= len(b) {
				complete = false
				break
			}
			i := bytes.IndexByte(b[g:min(hi+1, len(b))], byte(lit))
			if i < 0 {
				complete = hi < len(b)
				break
			}
			g += i
		}
		e, c := matchFrom(seg, k+1, b, g)
		if e >= 0 {
			return e, true
		}
		if !c {
			complete = false
			break
		}
	}
	return -1, complete
}
