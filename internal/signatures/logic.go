package signatures

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Expr is a parsed logical expression of a .ldb signature (its third
// field), or the trigger of a PCRE subsignature. It is built by a
// line-for-line port of ClamAV 1.4's cli_ac_chklsig, which both checks
// an expression and evaluates it by rescanning the text: Expr keeps what
// that scan finds, so Eval gives the answer cli_ac_chklsig gives,
// quirks included (for example "0>1,2" on a single subsignature ignores
// ",2"; a modifier after a block applies to the block's total count).
//
// A leaf (Op 0) is a subsignature index with an optional comparison of
// its match count; an inner node (Op '&' or '|') joins two expressions,
// with an optional comparison (BlockMod) of the sum of the counts of the
// subsignatures that made it true and, with BlockMin2, of how many
// distinct subsignatures did.
type Expr struct {
	Op          byte // 0 (leaf), '&' or '|'
	Left, Right *Expr

	// Leaf.
	ID  uint32 // subsignature index
	Mod byte   // 0, '=', '<', '>' (or ')' in a malformed-but-accepted leaf, which never matches)
	Val uint32 // the number after Mod

	// Inner node with a block modifier: "(A|B)>5" or "(A|B)>5,2".
	BlockMod  byte   // 0, '=', '<', '>'
	BlockVal  uint32 // the count compared
	BlockMin2 uint32 // ",Y": at least Y distinct subsignatures (0: no such condition)
}

// MaxSubsigs is the most subsignatures a logical signature may have
// (ClamAV's MAX_LDB_SUBSIGS).
const MaxSubsigs = 64

// ParseExpr parses a logical expression as ClamAV's loader checks it. It
// returns the expression and the highest subsignature index it names
// (ClamAV requires a logical signature to have exactly that many
// subsignatures plus one).
func ParseExpr(s string) (*Expr, int, error) {
	e, max, err := chklsig(s, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("logical expression %q: %w", truncate(s), err)
	}
	return e, max, nil
}

// Eval evaluates the expression for counts[i], the number of matches of
// subsignature i in the file (as ClamAV counts them: see
// docs/signatures.md), as ClamAV's cli_ac_chklsig does. It returns
// whether the expression is true. An index beyond counts has count 0.
func (e *Expr) Eval(counts []uint32) bool {
	ok, _, _ := e.eval(counts)
	return ok
}

// eval returns the truth value, the total count and the set of
// subsignatures (a bit per index, as ClamAV's uint64 ids) contributing.
func (e *Expr) eval(counts []uint32) (bool, uint32, uint64) {
	if e.Op == 0 {
		var val uint32
		if int(e.ID) < len(counts) {
			val = counts[e.ID]
		}
		bit := uint64(1) << (e.ID & 63)
		switch e.Mod {
		case 0:
			if val == 0 {
				return false, 0, 0
			}
		case '=':
			if val != e.Val {
				return false, 0, 0
			}
		case '<':
			if val >= e.Val {
				return false, 0, 0
			}
		case '>':
			if val <= e.Val {
				return false, 0, 0
			}
		default:
			return false, 0, 0
		}
		return true, val, bit
	}
	lv, lc, lids := e.Left.eval(counts)
	rv, rc, rids := e.Right.eval(counts)
	var ok bool
	if e.Op == '&' {
		ok = lv && rv
	} else {
		ok = lv || rv
	}
	// As in ClamAV, a side that is false adds nothing; a block modifier
	// compares 0 when the block is false, so "(0|1)<2" is true when
	// neither matches.
	var tcnt uint32
	var tids uint64
	if ok {
		tcnt, tids = lc+rc, lids|rids
	}
	if e.BlockMod == 0 {
		return ok, tcnt, tids
	}
	switch e.BlockMod {
	case '=':
		if tcnt != e.BlockVal {
			return false, 0, 0
		}
	case '<':
		if tcnt >= e.BlockVal {
			return false, 0, 0
		}
	case '>':
		if tcnt <= e.BlockVal {
			return false, 0, 0
		}
	default:
		return false, 0, 0
	}
	if e.BlockMin2 != 0 {
		n := uint32(0)
		for t := tids; t != 0; t >>= 1 {
			n += uint32(t & 1)
		}
		if n < e.BlockMin2 {
			return false, 0, 0
		}
	}
	// ClamAV adds the block's count but not its ids to its caller's.
	return true, tcnt, 0
}

// String returns the expression in ClamAV's syntax (equivalent to the
// text it was parsed from).
func (e *Expr) String() string {
	var b strings.Builder
	e.write(&b, true)
	return b.String()
}

func (e *Expr) write(b *strings.Builder, top bool) {
	if e.Op == 0 {
		b.WriteString(strconv.FormatUint(uint64(e.ID), 10))
		if e.Mod != 0 {
			b.WriteByte(e.Mod)
			b.WriteString(strconv.FormatUint(uint64(e.Val), 10))
		}
		return
	}
	paren := !top || e.BlockMod != 0
	if paren {
		b.WriteByte('(')
	}
	e.Left.write(b, false)
	b.WriteByte(e.Op)
	e.Right.write(b, false)
	if paren {
		b.WriteByte(')')
	}
	if e.BlockMod != 0 {
		b.WriteByte(e.BlockMod)
		b.WriteString(strconv.FormatUint(uint64(e.BlockVal), 10))
		if e.BlockMin2 != 0 {
			b.WriteByte(',')
			b.WriteString(strconv.FormatUint(uint64(e.BlockMin2), 10))
		}
	}
}

// chklsig is cli_ac_chklsig in its parse-only mode, building the tree
// its evaluating mode walks. It returns the greatest index (as C's int:
// an index of 2^31 or more is negative) and an error where ClamAV
// returns -1.
func chklsig(expr string, depth int) (*Expr, int, error) {
	if depth > 1000 {
		return nil, 0, errors.New("nested too deeply")
	}
	n := len(expr)
	var pth, opoff, op1off, blkend int
	var op, op1, mod, blkmod byte
	var modoff int
	var modval1, modval2 uint32
	lstart, rend := 0, n
	at := func(i int) byte {
		if i < n {
			return expr[i]
		}
		return 0 // C's NUL terminator (or the character at end, which cannot matter)
	}
	for i := 0; i < n; i++ {
		switch expr[i] {
		case '(':
			pth++
		case ')':
			if pth == 0 {
				return nil, 0, errors.New("missing opening parenthesis")
			}
			pth--
			mod, modoff = expr[i], i
		case '>', '<', '=':
			mod, modoff = expr[i], i
		case '&', '|':
			if pth == 0 {
				op, opoff = expr[i], i
			} else if pth == 1 {
				op1, op1off = expr[i], i
			}
		}
		if op != 0 {
			break
		}
		if op1 != 0 && pth == 0 {
			blkend = i
			if c := at(i + 1); c == '>' || c == '<' || c == '=' {
				blkmod = c
				rest := expr[min(i+2, n):]
				v1, r, ok := cScanUint(rest, 32)
				if ok && strings.HasPrefix(r, ",") {
					if v2, _, ok2 := cScanUint(r[1:], 32); ok2 {
						modval1, modval2 = uint32(v1), uint32(v2)
					} else {
						modval1 = uint32(v1)
					}
				} else if ok {
					modval1 = uint32(v1)
				} else {
					return nil, 0, fmt.Errorf("missing number after %q", c)
				}
				for i += 2; i+1 < n && (isDigit(expr[i+1]) || expr[i+1] == ','); i++ {
				}
			}
			if i+1 == rend {
				break
			}
			blkmod = 0
		}
	}
	if pth != 0 {
		return nil, 0, errors.New("missing closing parenthesis")
	}
	if op == 0 && op1 == 0 {
		if n > 0 && expr[0] == '(' {
			return chklsig(expr[1:n-1], depth+1)
		}
		id, _, ok := cScanUint(expr, 32)
		if !ok {
			return nil, 0, fmt.Errorf("cannot read a subsignature index in %q", truncate(expr))
		}
		e := &Expr{ID: uint32(id)}
		if mod != 0 {
			v, _, ok := cScanUint(expr[modoff+1:], 32)
			if !ok {
				return nil, 0, fmt.Errorf("missing number after %q", mod)
			}
			e.Mod, e.Val = mod, uint32(v)
		}
		if int32(id) == -1 {
			// ClamAV's -1, its error value (an index of 2^32-1, or "-1").
			return nil, 0, fmt.Errorf("subsignature index %d is too large", id)
		}
		return e, int(int32(id)), nil
	}
	if op == 0 {
		op, opoff = op1, op1off
		lstart++
		rend = blkend
	}
	if opoff == 0 {
		return nil, 0, errors.New("missing left argument")
	}
	if opoff+1 == n {
		return nil, 0, errors.New("missing right argument")
	}
	if lstart > opoff || opoff+1 > rend {
		// ClamAV would read past its bounds here; no such expression
		// has an opoff of 0 that passes the checks above, but keep the
		// slices valid.
		return nil, 0, errors.New("malformed expression")
	}
	l, lmax, err := chklsig(expr[lstart:opoff], depth+1)
	if err != nil {
		return nil, 0, err
	}
	r, rmax, err := chklsig(expr[opoff+1:rend], depth+1)
	if err != nil {
		return nil, 0, err
	}
	e := &Expr{Op: op, Left: l, Right: r}
	if blkmod != 0 {
		e.BlockMod, e.BlockVal, e.BlockMin2 = blkmod, modval1, modval2
	}
	return e, max(lmax, rmax), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
