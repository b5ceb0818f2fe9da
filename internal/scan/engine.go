package scan

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"math"
	"slices"
	"sort"

	"github.com/coregx/ahocorasick"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

const (
	// maxAnchorLen bounds the anchor taken from each part: longer anchors
	// hardly select better but grow the automaton (states x 256 x 4 bytes).
	maxAnchorLen = 12
	// defaultChunk is how much of a file is read at a time.
	defaultChunk = 256 << 10
	// minScanSize: like ClamAV, smaller files never match.
	minScanSize = 6
)

// Engine matches files against a signature set. It is immutable and safe
// for concurrent use.
type Engine struct {
	set     *signatures.Set
	bodies  []bodySig
	ac      *ahocorasick.Automaton // nil without body signatures
	refs    [][]anchorRef          // by automaton pattern ID
	overlap int                    // longest anchor - 1
	maxPart int                    // longest part: the look-back kept
	hashes  [3]hashIndex           // by signatures.HashAlgo
	chunk   int
	objs    *objectSigs // allow list and PE section hashes (objects.go)
	err     error
}

type bodySig struct {
	name  string
	off   signatures.Offset
	parts []signatures.Part
	gaps  []signatures.Gap
}

// anchorRef locates an anchor: signature, part, and the anchor's offset in
// the part.
type anchorRef struct{ sig, part, off int32 }

type hashIndex struct {
	byHash map[string][]int32 // digest -> indexes into set.Hashes
	sizes  map[int64]bool     // sizes some signature has
	any    bool               // some signature has size "*"
}

// New compiles set into an engine.
func New(set *signatures.Set) *Engine {
	e := &Engine{set: set, chunk: defaultChunk, objs: newObjectSigs(set)}
	for i := range e.hashes {
		e.hashes[i] = hashIndex{byHash: map[string][]int32{}, sizes: map[int64]bool{}}
	}
	for i, h := range set.Hashes {
		x := &e.hashes[h.Algo]
		x.byHash[string(h.Hash)] = append(x.byHash[string(h.Hash)], int32(i))
		if h.Size == signatures.AnySize {
			x.any = true
		} else {
			x.sizes[h.Size] = true
		}
	}
	ids := map[string]int{}
	var patterns [][]byte
	for si, b := range set.Bodies {
		if b.Pattern == nil || len(b.Pattern.Parts) == 0 {
			e.err = fmt.Errorf("scan: %s:%d: signature %s has no pattern", b.File, b.Line, b.Name)
			return e
		}
		e.bodies = append(e.bodies, bodySig{name: b.Name, off: b.Offset, parts: b.Pattern.Parts, gaps: b.Pattern.Gaps})
		for pi := range b.Pattern.Parts {
			p := &b.Pattern.Parts[pi]
			e.maxPart = max(e.maxPart, p.Len())
			off, n := anchorOf(p)
			if n == 0 {
				e.err = fmt.Errorf("scan: %s:%d: signature %s has a part without fixed bytes", b.File, b.Line, b.Name)
				return e
			}
			a := string(p.Value[off : off+n])
			id, ok := ids[a]
			if !ok {
				id = len(patterns)
				ids[a] = id
				patterns = append(patterns, []byte(a))
				e.refs = append(e.refs, nil)
				e.overlap = max(e.overlap, n-1)
			}
			e.refs[id] = append(e.refs[id], anchorRef{sig: int32(si), part: int32(pi), off: int32(off)})
		}
	}
	if len(patterns) > 0 {
		// The library's byte classes overflow (a byte counter) when the
		// patterns use 255 or more distinct bytes: use one class per byte
		// then, which is what compression would give anyway.
		var used [256]bool
		distinct := 0
		for _, p := range patterns {
			for _, c := range p {
				if !used[c] {
					used[c] = true
					distinct++
				}
			}
		}
		ac, err := ahocorasick.NewBuilder().AddPatterns(patterns).SetByteClasses(distinct < 255).Build()
		if err != nil {
			e.err = fmt.Errorf("scan: building the automaton: %w", err)
			return e
		}
		e.ac = ac
	}
	return e
}

// Signatures is the number of signatures the engine knows.
func (e *Engine) Signatures() int { return e.set.Len() }

// byteWeight scores how unusual a byte is, for choosing anchors: runs of
// zeros, 0xff, spaces or NOPs are everywhere in files.
func byteWeight(b byte) int {
	switch {
	case b == 0x00 || b == 0xff:
		return 0
	case b == 0x20 || b == 0x90 || b == 0xcc:
		return 1
	case b >= 'a' && b <= 'z':
		return 2
	}
	return 3
}

// anchorOf picks the anchor of a part: the longest run of fixed bytes (at
// most maxAnchorLen), the most unusual window of it on ties. n is 0 when
// the part has no fixed byte.
func anchorOf(p *signatures.Part) (off, n int) {
	bestScore := -1
	for i := 0; i < p.Len(); {
		if p.Mask[i] != 0xff {
			i++
			continue
		}
		j := i
		for j < p.Len() && p.Mask[j] == 0xff {
			j++
		}
		w := min(j-i, maxAnchorLen)
		for s := i; s+w <= j; s++ {
			score := 0
			for _, b := range p.Value[s : s+w] {
				score += byteWeight(b)
			}
			if w > n || (w == n && score > bestScore) {
				off, n, bestScore = s, w, score
			}
		}
		i = j
	}
	return off, n
}

// Result is what matching one file found.
type Result struct {
	Signatures []string // names of the signatures that matched, sorted, each once
	SHA256     []byte   // the file's SHA-256, when the pass computed it
	Bytes      int64    // bytes read
}

// ScanReader matches the size bytes r yields (it reads no more) against
// the signatures. It is what ScanPaths does for each file.
func (e *Engine) ScanReader(ctx context.Context, r io.Reader, size int64) (Result, error) {
	if e.err != nil {
		return Result{}, e.err
	}
	m := e.newMatcher()
	return m.scan(ctx, r, size, false)
}

// interval is a range of allowed starts [lo, hi].
type interval struct{ lo, hi int64 }

// chain is a multi-part signature's progress in one file: where each part
// after the first may start.
type chain struct {
	allowed [][]interval // by part; allowed[0] unused
}

// hit is an anchor hit whose part is not yet verified.
type hit struct {
	sig, part int32
	start     int64
}

// matcher is one worker's per-file state, reused across files.
type matcher struct {
	e        *Engine
	buf      []byte
	base     int64 // file offset of buf[0]
	n        int   // valid bytes in buf
	scanned  int64 // anchors ending at or before this offset are found
	frontier int64 // no part can still be verified starting before this
	size     int64
	deferred []hit
	chains   map[int32]*chain
	seen     []uint32 // by signature: == gen when detected in this file
	gen      uint32
	found    []int32
	hashers  [3]hash.Hash
}

func (e *Engine) newMatcher() *matcher {
	return &matcher{
		e:      e,
		buf:    make([]byte, e.maxPart+e.chunk),
		chains: map[int32]*chain{},
		seen:   make([]uint32, len(e.bodies)),
	}
}

func (m *matcher) reset(size int64) {
	m.base, m.n, m.scanned, m.frontier, m.size = 0, 0, 0, 0, size
	m.deferred = m.deferred[:0]
	clear(m.chains)
	m.found = m.found[:0]
	m.gen++
	if m.gen == 0 { // wrapped: forget old generations
		clear(m.seen)
		m.gen = 1
	}
}

// needHash says whether a file of size bytes needs hash algo.
func (e *Engine) needHash(algo signatures.HashAlgo, size int64) bool {
	x := &e.hashes[algo]
	return x.any || x.sizes[size]
}

func newHash(algo signatures.HashAlgo) hash.Hash {
	switch algo {
	case signatures.MD5:
		return md5.New()
	case signatures.SHA1:
		return sha1.New()
	}
	return sha256.New()
}

// scan matches one file. With wantSHA256 the pass also computes the
// SHA-256.
func (m *matcher) scan(ctx context.Context, r io.Reader, size int64, wantSHA256 bool) (Result, error) {
	e := m.e
	m.reset(size)
	var res Result
	if size < minScanSize {
		// Too small to match, as in ClamAV; read nothing unless a hash is
		// wanted anyway.
		if !wantSHA256 {
			return res, nil
		}
	}
	for a := range m.hashers {
		m.hashers[a] = nil
		algo := signatures.HashAlgo(a)
		if (size >= minScanSize && e.needHash(algo, size)) || (wantSHA256 && algo == signatures.SHA256) {
			m.hashers[a] = newHash(algo)
		}
	}
	bodies := e.ac != nil && size >= minScanSize
	if !bodies && m.hashers == [3]hash.Hash{} {
		return res, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// Keep the look-back window, make room for a chunk.
		keep := max(0, m.scanned-int64(e.maxPart))
		if d := int(keep - m.base); d > 0 {
			copy(m.buf, m.buf[d:m.n])
			m.n -= d
			m.base = keep
		}
		end := m.base + int64(m.n)
		want := min(int64(len(m.buf)-m.n), size-end)
		got := 0
		var rerr error
		if want > 0 {
			got, rerr = io.ReadFull(r, m.buf[m.n:m.n+int(want)])
		}
		eof := false
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			eof = true // the file shrank: match what there is
		case rerr != nil:
			return res, rerr
		case end+int64(got) >= size:
			eof = true
		}
		for _, h := range m.hashers {
			if h != nil {
				h.Write(m.buf[m.n : m.n+got])
			}
		}
		m.n += got
		res.Bytes += int64(got)
		if bodies {
			m.frontier = m.scanned - int64(e.maxPart)
			m.retryDeferred(eof)
			m.findAnchors(eof)
		}
		m.scanned = m.base + int64(m.n)
		if eof {
			break
		}
	}
	if size >= minScanSize {
		m.matchHashes(res.Bytes)
	}
	names := make([]string, 0, len(m.found))
	for _, i := range m.found {
		if i >= 0 {
			names = append(names, e.bodies[i].name)
		} else {
			names = append(names, e.set.Hashes[-i-1].Name)
		}
	}
	sort.Strings(names)
	res.Signatures = slices.Compact(names)
	if h := m.hashers[signatures.SHA256]; h != nil && res.Bytes == size {
		res.SHA256 = h.Sum(nil)
	}
	return res, nil
}

// matchHashes looks the computed digests up. A file that shrank while
// being read (n != m.size) matches no hash signature.
func (m *matcher) matchHashes(n int64) {
	if n != m.size {
		return
	}
	for a, h := range m.hashers {
		if h == nil {
			continue
		}
		x := &m.e.hashes[a]
		for _, i := range x.byHash[string(h.Sum(nil))] {
			s := m.e.set.Hashes[i].Size
			if s == signatures.AnySize || s == m.size {
				m.found = append(m.found, -i-1)
			}
		}
	}
}

// retryDeferred verifies the hits that now have their bytes, in order of
// their end so that a part is always verified before the next one.
func (m *matcher) retryDeferred(eof bool) {
	if len(m.deferred) == 0 {
		return
	}
	e := m.e
	end := m.base + int64(m.n)
	slices.SortFunc(m.deferred, func(a, b hit) int {
		ea := a.start + int64(e.bodies[a.sig].parts[a.part].Len())
		eb := b.start + int64(e.bodies[b.sig].parts[b.part].Len())
		return cmpInt64(ea, eb)
	})
	keep := m.deferred[:0]
	for _, h := range m.deferred {
		if h.start+int64(e.bodies[h.sig].parts[h.part].Len()) <= end {
			m.process(h.sig, h.part, h.start)
		} else if !eof {
			keep = append(keep, h)
		}
	}
	m.deferred = keep
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// findAnchors runs the automaton over the bytes not scanned yet (and the
// overlap an anchor crossing into them needs).
func (m *matcher) findAnchors(eof bool) {
	e := m.e
	from := max(m.base, m.scanned-int64(e.overlap))
	end := m.base + int64(m.n)
	if end <= m.scanned {
		return
	}
	for _, hm := range e.ac.FindAllOverlapping(m.buf[from-m.base : m.n]) {
		if from+int64(hm.End) <= m.scanned {
			continue // found in the previous round
		}
		astart := from + int64(hm.Start)
		for _, ref := range e.refs[hm.PatternID] {
			if m.seen[ref.sig] == m.gen {
				continue
			}
			s := astart - int64(ref.off)
			if s < 0 {
				continue
			}
			if s+int64(e.bodies[ref.sig].parts[ref.part].Len()) <= end {
				m.process(ref.sig, ref.part, s)
			} else if !eof {
				m.deferred = append(m.deferred, hit{sig: ref.sig, part: ref.part, start: s})
			}
		}
	}
}

// process verifies part pi of signature si at start s, whose bytes are in
// the buffer, and advances the signature's chain.
func (m *matcher) process(si, pi int32, s int64) {
	if m.seen[si] == m.gen {
		return
	}
	b := &m.e.bodies[si]
	var ch *chain
	if pi == 0 {
		lo, hi, ok := b.off.Range(m.size)
		if !ok || s < lo || s > hi {
			return
		}
	} else {
		ch = m.chains[si]
		if ch == nil || !ch.allows(pi, s, m.frontier) {
			return
		}
	}
	part := &b.parts[pi]
	if !part.MatchAt(m.buf[s-m.base:]) {
		return
	}
	if int(pi) == len(b.parts)-1 {
		m.seen[si] = m.gen
		m.found = append(m.found, si)
		return
	}
	if ch == nil {
		ch = m.chains[si]
		if ch == nil {
			ch = &chain{allowed: make([][]interval, len(b.parts))}
			m.chains[si] = ch
		}
	}
	g := b.gaps[pi]
	pend := s + int64(part.Len())
	iv := interval{lo: pend + g.Min, hi: math.MaxInt64}
	if g.Max != signatures.Unbounded {
		iv.hi = pend + g.Max
	}
	ch.add(pi+1, iv)
}

// allows reports whether part pi may start at s, dropping intervals that
// end before frontier (no later occurrence can use them).
func (c *chain) allows(pi int32, s, frontier int64) bool {
	l := c.allowed[pi]
	k := 0
	for k < len(l) && l[k].hi < frontier {
		k++
	}
	if k > 0 {
		l = append(l[:0], l[k:]...)
		c.allowed[pi] = l
	}
	for _, iv := range l {
		if s < iv.lo {
			return false
		}
		if s <= iv.hi {
			return true
		}
	}
	return false
}

// add adds an interval of allowed starts for part pi, merging it with the
// last one when they touch (occurrences arrive in order of their start).
func (c *chain) add(pi int32, iv interval) {
	l := c.allowed[pi]
	if n := len(l); n > 0 && iv.lo <= satAdd(l[n-1].hi, 1) && iv.lo >= l[n-1].lo {
		l[n-1].hi = max(l[n-1].hi, iv.hi)
		return
	}
	// Keep the list sorted by lo (out-of-order arrival is not expected).
	i := sort.Search(len(l), func(i int) bool { return l[i].lo > iv.lo })
	l = slices.Insert(l, i, iv)
	c.allowed[pi] = l
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
