package delta

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// script writes the instructions of a script, merging neighbours.
type script struct {
	e      encoder
	r      []byte // the result file, where inserted bytes come from
	kind   byte   // pending instruction, insEnd for none
	n      int    // its count (copy, skip)
	lo, hi int    // its bytes of r (insert)
	added  int    // bytes inserted in all
}

func (s *script) flush() {
	switch s.kind {
	case insCopy, insSkip:
		s.e.ins(s.kind, s.n)
	case insAdd:
		s.e.ins(insAdd, s.hi-s.lo)
		s.e.buf = append(s.e.buf, s.r[s.lo:s.hi]...)
	}
	s.kind = insEnd
}

// op adds a copy or skip of n units.
func (s *script) op(kind byte, n int) {
	if n == 0 {
		return
	}
	if s.kind == kind {
		s.n += n
		return
	}
	s.flush()
	s.kind, s.n = kind, n
}

// insert adds the insertion of r[lo:hi].
func (s *script) insert(lo, hi int) {
	if lo == hi {
		return
	}
	s.added += hi - lo
	if s.kind == insAdd && s.hi == lo {
		s.hi = hi
		return
	}
	s.flush()
	s.kind, s.lo, s.hi = insAdd, lo, hi
}

func (s *script) end() []byte {
	s.flush()
	s.e.byte(insEnd)
	return s.e.buf
}

// lineStarts returns the offset of every line of p, and len(p).
func lineStarts(p []byte) []int {
	starts := make([]int, 0, len(p)/64+2)
	for pos := 0; pos < len(p); {
		starts = append(starts, pos)
		i := bytes.IndexByte(p[pos:], '\n')
		if i < 0 {
			break
		}
		pos += i + 1
	}
	return append(starts, len(p))
}

// interner numbers distinct lines: equal lines get the same id.
type interner struct {
	seed   maphash.Seed
	byHash map[uint64]int32
	spill  map[string]int32 // lines whose hash another line has
	reps   [][]byte
}

func (in *interner) id(line []byte) int32 {
	h := maphash.Bytes(in.seed, line)
	id, ok := in.byHash[h]
	if !ok {
		id = int32(len(in.reps))
		in.reps = append(in.reps, line)
		in.byHash[h] = id
		return id
	}
	if bytes.Equal(in.reps[id], line) {
		return id
	}
	if id, ok := in.spill[string(line)]; ok {
		return id
	}
	if in.spill == nil {
		in.spill = map[string]int32{}
	}
	id = int32(len(in.reps))
	in.reps = append(in.reps, line)
	in.spill[string(line)] = id
	return id
}

func (in *interner) ids(p []byte, starts []int) []int32 {
	out := make([]int32, len(starts)-1)
	for i := range out {
		out[i] = in.id(p[starts[i]:starts[i+1]])
	}
	return out
}

// lineScript returns the line-edit script turning b into r, and the
// number of bytes it inserts: a patience
// diff over hashed lines (lines unique in both sides anchor the match,
// their longest increasing subsequence is kept, and the gaps between
// anchors are diffed the same way), so O(n log n) for signature files,
// whose lines are nearly all unique.
func lineScript(b, r []byte) ([]byte, int) {
	bs, rs := lineStarts(b), lineStarts(r)
	in := &interner{seed: maphash.MakeSeed(), byHash: make(map[uint64]int32, len(bs))}
	a, c := in.ids(b, bs), in.ids(r, rs)
	s := &script{r: r}
	ai, ci := 0, 0
	d := &differ{a: a, b: c, cntA: make([]int32, len(in.reps)), cntB: make([]int32, len(in.reps)), posB: make([]int32, len(in.reps))}
	d.emit = func(i, j int) {
		s.op(insSkip, i-ai)
		s.insert(rs[ci], rs[j])
		s.op(insCopy, 1)
		ai, ci = i+1, j+1
	}
	d.diff(0, len(a), 0, len(c), 0)
	s.op(insSkip, len(a)-ai)
	s.insert(rs[ci], rs[len(c)])
	return s.end(), s.added
}

// maxDepth bounds the recursion of the patience diff; deeper gaps are
// replaced whole (a correct, larger script).
const maxDepth = 48

type differ struct {
	a, b       []int32
	cntA, cntB []int32 // by id, zero between calls
	posB       []int32 // by id
	emit       func(i, j int)
}

type pair struct{ i, j int }

// diff emits the matched lines of a[alo:ahi] and b[blo:bhi], in order.
func (d *differ) diff(alo, ahi, blo, bhi, depth int) {
	for alo < ahi && blo < bhi && d.a[alo] == d.b[blo] {
		d.emit(alo, blo)
		alo, blo = alo+1, blo+1
	}
	sa, sb := ahi, bhi
	for sa > alo && sb > blo && d.a[sa-1] == d.b[sb-1] {
		sa, sb = sa-1, sb-1
	}
	if alo < sa && blo < sb && depth < maxDepth {
		if lis := longestIncreasing(d.unique(alo, sa, blo, sb)); len(lis) > 0 {
			pa, pb := alo, blo
			for _, an := range lis {
				d.diff(pa, an.i, pb, an.j, depth+1)
				d.emit(an.i, an.j)
				pa, pb = an.i+1, an.j+1
			}
			d.diff(pa, sa, pb, sb, depth+1)
		}
	}
	for k := 0; k < ahi-sa; k++ {
		d.emit(sa+k, sb+k)
	}
}

// unique returns the lines that occur once in a[alo:ahi] and once in
// b[blo:bhi], in the order of a.
func (d *differ) unique(alo, ahi, blo, bhi int) []pair {
	for _, id := range d.a[alo:ahi] {
		d.cntA[id]++
	}
	for j := blo; j < bhi; j++ {
		id := d.b[j]
		d.cntB[id]++
		d.posB[id] = int32(j)
	}
	var out []pair
	for i := alo; i < ahi; i++ {
		if id := d.a[i]; d.cntA[id] == 1 && d.cntB[id] == 1 {
			out = append(out, pair{i, int(d.posB[id])})
		}
	}
	for _, id := range d.a[alo:ahi] {
		d.cntA[id] = 0
	}
	for _, id := range d.b[blo:bhi] {
		d.cntB[id] = 0
	}
	return out
}

// longestIncreasing returns a longest subsequence of ps (increasing in
// i) that is increasing in j, by patience sorting.
func longestIncreasing(ps []pair) []pair {
	if len(ps) == 0 {
		return nil
	}
	tails := []int{} // tails[k]: index in ps of the smallest tail of an increasing run of length k+1
	prev := make([]int, len(ps))
	for x, p := range ps {
		lo, hi := 0, len(tails)
		for lo < hi {
			m := (lo + hi) / 2
			if ps[tails[m]].j < p.j {
				lo = m + 1
			} else {
				hi = m
			}
		}
		prev[x] = -1
		if lo > 0 {
			prev[x] = tails[lo-1]
		}
		if lo == len(tails) {
			tails = append(tails, x)
		} else {
			tails[lo] = x
		}
	}
	out := make([]pair, len(tails))
	for k, x := len(tails)-1, tails[len(tails)-1]; k >= 0; k, x = k-1, prev[x] {
		out[k] = ps[x]
	}
	return out
}

// Binary patches: blocks of blk bytes of the base file are indexed by a
// rolling hash; the result is scanned for them, and matches only move
// forward in the base file (copy and skip), as the format requires.
// Blocks that occur more than maxSame times in the base file (text every
// line repeats) are not indexed: they would match far from where the
// scan is, and the unique blocks around them anchor the match instead.
const (
	blk     = 32
	rollMul = 0x100000001b3
	maxSame = 8
)

var rollPow = func() uint64 {
	p := uint64(1)
	for i := 0; i < blk-1; i++ {
		p *= rollMul
	}
	return p
}()

func hashBlock(p []byte) uint64 {
	var h uint64
	for _, c := range p[:blk] {
		h = h*rollMul + uint64(c)
	}
	return h
}

// binaryScript returns the binary patch turning b into r.
func binaryScript(b, r []byte) []byte {
	s := &script{r: r}
	if len(b) < blk || len(r) < blk {
		s.op(insSkip, len(b))
		s.insert(0, len(r))
		return s.end()
	}
	nb := len(b) / blk
	hs := make([]uint64, nb)
	count := make(map[uint64]int32, nb)
	for k := range hs {
		hs[k] = hashBlock(b[k*blk:])
		count[hs[k]]++
	}
	head := make(map[uint64]int32, len(count))
	next := make([]int32, nb)
	for k := nb - 1; k >= 0; k-- {
		if count[hs[k]] > maxSame {
			continue
		}
		next[k] = -1
		if old, ok := head[hs[k]]; ok {
			next[k] = old
		}
		head[hs[k]] = int32(k)
	}
	count, hs = nil, nil
	bc, ls, p := 0, 0, 0
	// longest returns the base offset and length of the longest match of
	// r[q:] at an indexed block not before bc, or -1. Skipping base bytes
	// cannot be undone, so a match that skips must be worth it: at least
	// 2*blk bytes long and a sixteenth of the bytes it skips (repeated
	// text matches by chance far away, but not for long).
	longest := func(q int, h uint64) (int, int) {
		bo, bn := -1, 0
		k, ok := head[h]
		for ; ok && k >= 0; k = next[k] {
			off := int(k) * blk
			if off < bc || !bytes.Equal(b[off:off+blk], r[q:q+blk]) {
				continue
			}
			n := blk + matchLen(r[q+blk:], b[off+blk:])
			if off > bc && (n < 2*blk || off-bc > 16*n) {
				continue
			}
			if n > bn {
				bo, bn = off, n
			}
		}
		return bo, bn
	}
	roll := func(h uint64, out, in byte) uint64 { return (h-uint64(out)*rollPow)*rollMul + uint64(in) }
	h := hashBlock(r)
	for p+blk <= len(r) {
		o, n := longest(p, h)
		if o < 0 {
			if p+blk < len(r) {
				h = roll(h, r[p], r[p+blk])
			}
			p++
			continue
		}
		// A block repeated in the file may match by chance, far away:
		// the next blk positions hold the true match, if there is one;
		// keep the longest.
		for q, hq := p+1, h; q < p+blk && q+blk <= len(r); q++ {
			hq = roll(hq, r[q-1], r[q+blk-1])
			if o2, n2 := longest(q, hq); n2 > n {
				p, o, n = q, o2, n2
			}
		}
		for p > ls && o > bc && r[p-1] == b[o-1] {
			p, o, n = p-1, o-1, n+1
		}
		s.insert(ls, p)
		s.op(insSkip, o-bc)
		s.op(insCopy, n)
		bc, p = o+n, p+n
		ls = p
		if p+blk <= len(r) {
			h = hashBlock(r[p:])
		}
	}
	s.insert(ls, len(r))
	s.op(insSkip, len(b)-bc)
	return s.end()
}

// matchLen returns the length of the common prefix of x and y.
func matchLen(x, y []byte) int {
	n := 0
	for len(x) >= 8 && len(y) >= 8 {
		if d := binary.LittleEndian.Uint64(x) ^ binary.LittleEndian.Uint64(y); d != 0 {
			return n + bits.TrailingZeros64(d)/8
		}
		x, y, n = x[8:], y[8:], n+8
	}
	for len(x) > 0 && len(y) > 0 && x[0] == y[0] {
		x, y, n = x[1:], y[1:], n+1
	}
	return n
}
