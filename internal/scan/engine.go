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
	"runtime/debug"
	"slices"
	"sort"
	"sync"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

const (
	// defaultChunk is how much of a file is read at a time.
	defaultChunk = 256 << 10
	// minScanSize: like ClamAV, smaller files never match.
	minScanSize = 6
)

// Engine matches files against a signature set. It is immutable and safe
// for concurrent use, and keeps nothing of the Set it was built from: the
// Set can be dropped once New returns.
type Engine struct {
	matchers *matcherPool // ScanFile's
	names    nameTable
	nSigs    int
	hashes   [3]hashTable // by signatures.HashAlgo
	bodies   []bodySig
	parts    []part
	alts     []alt
	arena    []byte // parts' and alternatives' bytes
	anchors  anchorIndex
	maxPart  int       // longest part: the look-back kept
	targets  targetSet // the target types of the body signatures held
	chunk    int
	objs     *objectSigs // allow list and PE section hashes (objects.go)
	// logical are the logical signatures (logical.go); nsubs counts
	// their subsignatures; zeroLogical are those whose expression holds
	// with no match.
	logical     []logicalSig
	nsubs       uint32
	zeroLogical []uint32
	err         error
}

// bodySig is a body signature: its parts are parts[first:first+nparts].
type bodySig struct {
	name   uint32
	first  uint32
	nparts uint32
	// static: ClamAV matches the signature with its Boyer-Moore matcher
	// (bmStatic); false is Aho-Corasick's semantics. (Here it fills the
	// padding before off.)
	static bool
	off    signatures.Offset
	subsigRef
}

// part is one piece of a body signature between variable gaps. Its bytes
// are arena[data:data+n] (values), then, unless fixed, as many masks.
type part struct {
	sig   uint32 // index in bodies
	num   uint32 // index in its signature's parts
	data  uint32
	n     uint32
	alts  uint32 // alternatives: alts[alts:alts+nalts]
	nalts uint32
	aoff  uint32         // the anchor's offset in the part
	gap   signatures.Gap // to the next part
	alen  uint8          // the anchor's length
	fixed bool           // every byte fixed, no alternative: no masks stored
	// tail is how many bytes after the part a match needs to see before
	// it is verified (the word-boundary check of a full-word pattern's
	// last part), unless the data ends first.
	tail uint8
	// target is the signature's target type (signatures.BodySig.Target):
	// the part is matched only in a buffer whose targetSet holds it.
	target uint8
}

// targetSet is a set of ClamAV target types (0 to 15), one bit each.
type targetSet uint16

// anyFile is the set of target type 0 alone: raw bytes scanned as any
// file.
const anyFile targetSet = 1

// targetsOf is the set of the target types ts.
func targetsOf(ts []int) targetSet {
	var s targetSet
	for _, t := range ts {
		if t >= 0 && t < 16 {
			s |= 1 << t
		}
	}
	return s
}

// alt is an alternative group at pos in its part: nchoices choices of
// clen bytes, each stored as clen values then clen masks from data.
type alt struct {
	pos, data, clen, nchoices uint32
}

// New compiles set into an engine. The engine copies what it needs into
// compact tables; set is not kept.
func New(set *signatures.Set) *Engine {
	b := NewBuilder()
	// Size the body tables once, rather than growing them (names and
	// hash signatures are stored in blocks that never grow).
	nparts, nbytes := 0, 0
	for i := range set.Bodies {
		if p := set.Bodies[i].Pattern; p != nil {
			nparts += len(p.Parts)
			for pi := range p.Parts {
				nbytes += p.Parts[pi].Len()
			}
		}
	}
	if nbytes <= math.MaxUint32 {
		e := b.e
		e.bodies = make([]bodySig, 0, len(set.Bodies))
		e.parts = make([]part, 0, nparts)
		e.arena = make([]byte, 0, nbytes)
	}
	for i := range set.Hashes {
		if b.AddHash(&set.Hashes[i]) != nil {
			break
		}
	}
	for i := range set.Bodies {
		if b.AddBody(&set.Bodies[i]) != nil {
			break
		}
	}
	for i := range set.Logical {
		if b.AddLogical(&set.Logical[i]) != nil {
			break
		}
	}
	e := b.Engine()
	e.objs = newObjectSigs(set)
	return e
}

// Builder compiles signatures into an Engine one at a time, so that a
// loader that hands each signature over as it parses it need not keep
// them all: what the Builder keeps of a signature is what the engine
// keeps (plus, until Engine, 8 bytes per hash signature). New is a
// Builder fed with a Set. *Builder is a signatures.Sink: give it to
// signatures.LoadTo and no Set of the signatures is ever held.
type Builder struct {
	e *Engine
	// Hash signatures by algorithm, in the order added, in blocks of
	// hashBlock that never grow (no copy, no garbage).
	hashes  [3][]*hashBlock
	anchors [][2]int // AddBody's: offset and length of each part's anchor
	err     error
}

var _ signatures.Sink = (*Builder)(nil)

// hashBlock holds up to hashBlockLen hash signatures of one algorithm.
type hashBlock struct {
	sizes   []int64
	digests []byte
	names   []uint32
}

const hashBlockLen = 1 << 15

// BuildGCPercent is the garbage collector's percentage
// (runtime/debug.SetGCPercent) that BuildGC sets, for vigil scan and the
// agent while they load definitions into a Builder and build the engine.
// The build's live memory is mostly pointer-free tables, cheap to
// mark, so collecting at 50 % growth rather than Go's default 100 % lowers
// the peak of a build the size of ClamAV's databases by about a fifth for
// a few percent more time (docs/benchmarks.md).
const BuildGCPercent = 50

var buildGC struct {
	sync.Mutex
	n     int // builds under way
	saved int // the percentage before the first
}

// BuildGC sets the garbage collector's percentage to BuildGCPercent until
// restore is called (once). Concurrent builds share the setting: the
// percentage saved by the first is restored by the last.
func BuildGC() (restore func()) {
	buildGC.Lock()
	if buildGC.n == 0 {
		buildGC.saved = debug.SetGCPercent(BuildGCPercent)
	}
	buildGC.n++
	buildGC.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			buildGC.Lock()
			buildGC.n--
			if buildGC.n == 0 {
				debug.SetGCPercent(buildGC.saved)
			}
			buildGC.Unlock()
		})
	}
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{e: &Engine{chunk: defaultChunk, matchers: &matcherPool{}}}
}

func (b *Builder) fail(err error) error {
	b.err = err
	return err
}

// addName adds a signature's name, failing when the names no longer fit
// the engine's 32-bit offsets.
func (b *Builder) addName(name string) (uint32, bool) {
	return b.e.names.add(name)
}

// AddHash adds a hash signature. After an error the Builder takes
// nothing more, and Engine returns an engine with that error.
func (b *Builder) AddHash(h *signatures.HashSig) error {
	if b.err != nil {
		return b.err
	}
	if int(h.Algo) >= len(b.e.hashes) || len(h.Hash) != digestLen(h.Algo) {
		return b.fail(fmt.Errorf("scan: %s:%d: signature %s: %s digest of %d bytes", h.File, h.Line, h.Name, h.Algo, len(h.Hash)))
	}
	if len(h.Name) == 0 || len(h.Name) > maxName {
		return b.fail(fmt.Errorf("scan: %s:%d: signature name of %d bytes (1 to %d)", h.File, h.Line, len(h.Name), maxName))
	}
	name, ok := b.addName(h.Name)
	if !ok {
		return b.fail(fmt.Errorf("scan: %s:%d: more signatures than the engine holds", h.File, h.Line))
	}
	a := h.Algo
	bl := b.hashes[a]
	if len(bl) == 0 || len(bl[len(bl)-1].sizes) == hashBlockLen {
		bl = append(bl, &hashBlock{
			sizes:   make([]int64, 0, hashBlockLen),
			digests: make([]byte, 0, hashBlockLen*len(h.Hash)),
			names:   make([]uint32, 0, hashBlockLen),
		})
		b.hashes[a] = bl
	}
	last := bl[len(bl)-1]
	last.sizes = append(last.sizes, h.Size)
	last.digests = append(last.digests, h.Hash...)
	last.names = append(last.names, name)
	b.e.nSigs++
	return nil
}

// AddBody adds a body signature: its parts' bytes are copied into the
// arena and each part's anchor is chosen.
func (b *Builder) AddBody(s *signatures.BodySig) error {
	return b.addBody(s, subsigRef{})
}

// addBody adds a body signature, or, with ref.ls set, the pattern of a
// logical signature's subsignature (AddLogical), which takes no name of
// its own and does not count as a signature.
func (b *Builder) addBody(s *signatures.BodySig, ref subsigRef) error {
	if b.err != nil {
		return b.err
	}
	e := b.e
	if s.Pattern == nil || len(s.Pattern.Parts) == 0 {
		return b.fail(fmt.Errorf("scan: %s:%d: signature %s has no pattern", s.File, s.Line, s.Name))
	}
	need := uint64(len(e.arena))
	b.anchors = b.anchors[:0]
	for pi := range s.Pattern.Parts {
		p := &s.Pattern.Parts[pi]
		if len(p.Mask) != p.Len() {
			return b.fail(fmt.Errorf("scan: %s:%d: signature %s has a part of %d bytes and %d masks", s.File, s.Line, s.Name, p.Len(), len(p.Mask)))
		}
		off, n := anchorOf(p)
		if n == 0 {
			return b.fail(fmt.Errorf("scan: %s:%d: signature %s has a part without fixed bytes", s.File, s.Line, s.Name))
		}
		b.anchors = append(b.anchors, [2]int{off, n})
		need += 2 * uint64(p.Len())
		for _, a := range p.Alts {
			for _, c := range a.Choices {
				need += uint64(len(c.Value)) + uint64(len(c.Mask))
			}
		}
	}
	if len(s.Name) == 0 || len(s.Name) > maxName {
		return b.fail(fmt.Errorf("scan: %s:%d: signature name of %d bytes (1 to %d)", s.File, s.Line, len(s.Name), maxName))
	}
	if !signatures.MatchedTarget(s.Target) {
		return b.fail(fmt.Errorf("scan: %s:%d: signature %s has target type %d, which the engine does not match", s.File, s.Line, s.Name, s.Target))
	}
	var name uint32
	ok := true
	if ref.ls == 0 {
		name, ok = b.addName(s.Name)
	}
	if !ok || need > math.MaxUint32 || uint64(len(e.parts))+uint64(len(s.Pattern.Parts)) > math.MaxUint32 {
		return b.fail(fmt.Errorf("scan: %s:%d: more signatures than the engine holds", s.File, s.Line))
	}
	si := uint32(len(e.bodies))
	e.bodies = append(e.bodies, bodySig{name: name, first: uint32(len(e.parts)), nparts: uint32(len(s.Pattern.Parts)), off: s.Offset,
		static: ref.ls == 0 && bmStatic(s), subsigRef: ref})
	for pi := range s.Pattern.Parts {
		p := &s.Pattern.Parts[pi]
		e.maxPart = max(e.maxPart, p.Len())
		off, n := b.anchors[pi][0], b.anchors[pi][1]
		cp := part{sig: si, num: uint32(pi), data: uint32(len(e.arena)), n: uint32(p.Len()),
			alts: uint32(len(e.alts)), nalts: uint32(len(p.Alts)), aoff: uint32(off), alen: uint8(n), target: uint8(s.Target)}
		if pi < len(s.Pattern.Gaps) {
			cp.gap = s.Pattern.Gaps[pi]
		}
		cp.fixed = len(p.Alts) == 0 && !slices.ContainsFunc(p.Mask, func(m byte) bool { return m != 0xff })
		if ref.fw != fwNone && pi == len(s.Pattern.Parts)-1 {
			cp.tail = fwTail
		}
		e.arena = append(e.arena, p.Value...)
		if !cp.fixed {
			e.arena = append(e.arena, p.Mask...)
		}
		for _, a := range p.Alts {
			ca := alt{pos: uint32(a.Pos), data: uint32(len(e.arena)), nchoices: uint32(len(a.Choices))}
			if len(a.Choices) > 0 {
				ca.clen = uint32(len(a.Choices[0].Value))
			}
			for _, c := range a.Choices {
				e.arena = append(e.arena, c.Value...)
				e.arena = append(e.arena, c.Mask...)
			}
			e.alts = append(e.alts, ca)
		}
		e.parts = append(e.parts, cp)
	}
	e.targets |= 1 << s.Target
	if ref.ls == 0 {
		e.nSigs++
	}
	return nil
}

// Engine finishes the engine: the hash tables sorted, the anchors
// indexed. The Builder is not usable after.
func (b *Builder) Engine() *Engine {
	e := b.e
	b.e = nil
	if b.err != nil {
		return &Engine{chunk: defaultChunk, err: b.err}
	}
	for a := range e.hashes {
		e.hashes[a] = buildHashTable(signatures.HashAlgo(a), b.hashes[a])
		b.hashes[a] = nil
	}
	e.anchors = buildAnchors(e.parts, e.arena)
	return e
}

// matchAt reports whether part p matches at the start of b, which holds
// at least p.n bytes.
func (e *Engine) matchAt(p *part, b []byte) bool {
	val := e.arena[p.data : p.data+p.n]
	b = b[:len(val)]
	if p.fixed {
		return string(b) == string(val)
	}
	mask := e.arena[p.data+p.n : p.data+2*p.n]
	for i, m := range mask {
		if b[i]&m != val[i] {
			return false
		}
	}
	for _, a := range e.alts[p.alts : p.alts+p.nalts] {
		if !e.altAt(&a, b[a.pos:]) {
			return false
		}
	}
	return true
}

func (e *Engine) altAt(a *alt, b []byte) bool {
	at := a.data
next:
	for range a.nchoices {
		val := e.arena[at : at+a.clen]
		mask := e.arena[at+a.clen : at+2*a.clen]
		at += 2 * a.clen
		for i, m := range mask {
			if b[i]&m != val[i] {
				continue next
			}
		}
		return true
	}
	return false
}

// Signatures is the number of signatures the engine knows.
func (e *Engine) Signatures() int { return e.nSigs }

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

// anchorOf picks the anchor of a part: a window of fixed bytes. When the
// part has runs of at least filterLen fixed bytes, the window among them
// (as long as the run allows, up to maxAnchorLen bytes) whose first
// filterLen bytes, which the filter looks at, are the most unusual, then
// whose whole is; else its longest run. A part whose runs of fixed bytes
// are shorter than filterLen may take instead a window of up to
// maxCaseAnchor bytes that holds case-folded letters (mask 0xdf, the "i"
// modifier), when that window is longer: buildAnchors indexes each of
// its case variants. n is 0 when the part has no such byte.
func anchorOf(p *signatures.Part) (off, n int) {
	off, n = anchorWindow(p, func(m byte) bool { return m == 0xff }, maxAnchorLen)
	if n >= filterLen {
		return off, n
	}
	if coff, cn := anchorWindow(p, func(m byte) bool { return m == 0xff || m == 0xdf }, maxCaseAnchor); cn > n {
		return coff, cn
	}
	return off, n
}

// maxCaseAnchor bounds an anchor holding case-folded letters: at most
// 2^maxCaseAnchor variants are indexed.
const maxCaseAnchor = filterLen

// anchorWindow is anchorOf's choice among the runs of bytes whose mask
// ok accepts, windows of up to maxLen bytes.
func anchorWindow(p *signatures.Part, ok func(byte) bool, maxLen int) (off, n int) {
	longest := 0
	for i := 0; i < p.Len(); {
		if !ok(p.Mask[i]) {
			i++
			continue
		}
		j := i
		for j < p.Len() && ok(p.Mask[j]) {
			j++
		}
		longest = max(longest, j-i)
		i = j
	}
	minRun := min(longest, filterLen)
	bestScore := -1
	for i := 0; i < p.Len(); {
		if !ok(p.Mask[i]) {
			i++
			continue
		}
		j := i
		for j < p.Len() && ok(p.Mask[j]) {
			j++
		}
		if j-i < minRun {
			i = j
			continue
		}
		for s := i; s+minRun <= j; s++ {
			w := min(j-s, maxLen)
			score := 0
			for k, b := range p.Value[s : s+w] {
				if k < filterLen {
					score += 16 * byteWeight(b)
				} else {
					score += byteWeight(b)
				}
			}
			if score > bestScore || (score == bestScore && w > n) {
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
	// First is the signature found first: the body signature whose match
	// completed first, else a hash signature; what clamscan reports
	// without --allmatch.
	First  string
	SHA256 []byte // the file's SHA-256, when the pass computed it
	Bytes  int64  // bytes read
}

// ScanReader matches the size bytes r yields (it reads no more) against
// the signatures. It is what ScanPaths does for each file.
func (e *Engine) ScanReader(ctx context.Context, r io.Reader, size int64) (Result, error) {
	if e.err != nil {
		return Result{}, e.err
	}
	m := e.newMatcher()
	return m.scan(ctx, r, size, anyFile, false)
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
	part  uint32 // index in Engine.parts
	start int64
}

// matcher is one worker's per-file state, reused across files.
type matcher struct {
	e        *Engine
	buf      []byte
	base     int64 // file offset of buf[0]
	n        int   // valid bytes in buf
	next     int64 // anchors starting before this offset are found
	frontier int64 // no part can still be verified starting before this
	size     int64
	targets  targetSet // the target types matched in this buffer
	deferred []hit
	hits     []hit // anchor hits of one round, when several filters run
	chains   map[int32]*chain
	seen     []uint32 // by signature: == gen when detected in this file
	gen      uint32
	found    []uint32 // names
	// first is the index in found of the name reported first, firstEnd
	// and firstTarget where it ends and its target type, firstStatic
	// whether it is a static signature (rankFirst).
	first       int
	firstEnd    int64
	firstTarget uint8
	firstStatic bool
	hashers     [3]hash.Hash
	l           lstate   // logical signatures (logical.go)
	exe         exeState // the layout of the object matched raw (exe.go)
}

func (e *Engine) newMatcher() *matcher {
	m := &matcher{
		e:      e,
		buf:    make([]byte, e.maxPart+fwTail+e.chunk+maxAnchorLen),
		chains: map[int32]*chain{},
		seen:   make([]uint32, len(e.bodies)),
	}
	if len(e.logical) > 0 {
		m.l.count = make([]uint32, e.nsubs)
		m.l.last = make([]int64, e.nsubs)
		m.l.mark = make([]uint32, len(e.logical))
	}
	return m
}

func (m *matcher) reset(size int64) {
	m.base, m.n, m.next, m.frontier, m.size = 0, 0, 0, 0, size
	m.deferred = m.deferred[:0]
	clear(m.chains)
	m.found = m.found[:0]
	m.first = 0
	m.resetLogical()
	m.gen++
	if m.gen == 0 { // wrapped: forget old generations
		clear(m.seen)
		clear(m.l.mark)
		m.gen = 1
	}
}

// needHash says whether a file of size bytes needs hash algo.
func (e *Engine) needHash(algo signatures.HashAlgo, size int64) bool {
	return e.hashes[algo].needs(size)
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

// scan matches one file, or one buffer made of it, with the body
// signatures whose target type is in targets. With wantSHA256 the pass
// also computes the SHA-256.
func (m *matcher) scan(ctx context.Context, r io.Reader, size int64, targets targetSet, wantSHA256 bool) (Result, error) {
	e := m.e
	m.reset(size)
	m.targets = targets
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
	bodies := len(e.parts) > 0 && size >= minScanSize && e.targets&targets != 0
	if !bodies && m.hashers == [3]hash.Hash{} {
		return res, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// Keep the look-back window, make room for a chunk.
		keep := max(0, m.next-int64(e.maxPart)-fwTail)
		if !bodies {
			keep = m.base + int64(m.n)
		}
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
			m.frontier = m.next - int64(e.maxPart)
			m.retryDeferred(eof)
			m.findAnchors(eof)
		}
		if eof {
			break
		}
	}
	if size >= minScanSize {
		m.matchHashes(res.Bytes)
		if bodies && len(e.logical) > 0 {
			m.evalLogical(res.Bytes)
		}
	}
	if len(m.found) > 0 {
		res.First = e.names.get(m.found[m.first])
	}
	names := make([]string, 0, len(m.found))
	for _, i := range m.found {
		names = append(names, e.names.get(i))
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
	var sum [sha256.Size]byte
	for a, h := range m.hashers {
		if h == nil {
			continue
		}
		d := h.Sum(sum[:0])
		m.found = m.e.hashes[a].lookup(m.size, d, m.found)
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
		ea := a.start + int64(e.parts[a.part].n)
		eb := b.start + int64(e.parts[b.part].n)
		return cmpInt64(ea, eb)
	})
	keep := m.deferred[:0]
	for _, h := range m.deferred {
		p := &e.parts[h.part]
		if h.start+int64(p.n)+int64(p.tail) <= end || eof && h.start+int64(p.n) <= end {
			m.process(h.part, h.start)
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

// anchorHit handles an anchor of part pi found at file offset at: the
// part is verified now if its bytes are in the buffer, later otherwise.
func (m *matcher) anchorHit(pi uint32, at int64, eof bool) {
	e := m.e
	p := &e.parts[pi]
	if m.seen[p.sig] == m.gen || m.targets&(1<<p.target) == 0 {
		return
	}
	s := at - int64(p.aoff)
	if s < 0 {
		return
	}
	if end := m.base + int64(m.n); s+int64(p.n)+int64(p.tail) <= end || eof && s+int64(p.n) <= end {
		m.process(pi, s)
	} else if !eof {
		m.deferred = append(m.deferred, hit{part: pi, start: s})
	}
}

// clamWindow is the size of the windows ClamAV's cli_scan_fmap matches
// a buffer in (SCANBUFF), each overlapping the previous one by the longest
// pattern.
const clamWindow = 128 << 10

// clamBuiltinPatLen is the longest pattern ClamAV 1.4.6 holds in its
// generic matcher whatever the databases: its built-in file type
// patterns (its debug output prints "maxpatlen 32" for a database of one
// short signature).
const clamBuiltinPatLen = 32

// windowStep is how far apart ClamAV's windows start: clamWindow less
// its longest pattern (its maxpatlen: the engine's longest part, or the
// built-in patterns').
func (e *Engine) windowStep() int64 {
	return int64(clamWindow - min(max(e.maxPart, clamBuiltinPatLen), clamWindow/2))
}

// window is the index of ClamAV's first window that holds a match ending
// at end (exclusive).
func (e *Engine) window(end int64) int64 {
	if end <= clamWindow {
		return 0
	}
	step := e.windowStep()
	return (end - clamWindow + step - 1) / step
}

// rankFirst takes the body signature just appended to found, of target
// type target, static or not (bodySig.static), ending at end, and decides
// which name is reported first. ClamAV matches each window of a buffer
// with the signatures of the buffer's target type before the generic ones
// (cli_scan_fmap), and in each its Boyer-Moore matcher (the static
// signatures) before Aho-Corasick (cli_scan_buff), so a match of a better
// rank (matchRank) is reported before one of a worse rank of the same
// window, or of a later one found first; otherwise the first found is.
func (m *matcher) rankFirst(target uint8, static bool, end int64) {
	i := len(m.found) - 1
	if i == 0 {
		m.first, m.firstEnd, m.firstTarget, m.firstStatic = 0, end, target, static
		return
	}
	if matchRank(target, static) < matchRank(m.firstTarget, m.firstStatic) && m.e.window(end) <= m.e.window(m.firstEnd) {
		m.first, m.firstEnd, m.firstTarget, m.firstStatic = i, end, target, static
	}
}

// matchRank orders ClamAV's matchers within a window: the target type's
// Boyer-Moore, its Aho-Corasick, then the generic ones'.
func matchRank(target uint8, static bool) int {
	r := 0
	if target == 0 {
		r = 2
	}
	if !static {
		r++
	}
	return r
}

// process verifies part pi at start s, whose bytes are in the buffer, and
// advances its signature's chain.
func (m *matcher) process(pi uint32, s int64) {
	e := m.e
	p := &e.parts[pi]
	si := p.sig
	if m.seen[si] == m.gen {
		return
	}
	b := &e.bodies[si]
	var ch *chain
	if p.num == 0 {
		if !m.startAllowed(b, s) {
			return
		}
	} else {
		ch = m.chains[int32(si)]
		if ch == nil || !ch.allows(p.num, s, m.frontier) {
			return
		}
	}
	if !e.matchAt(p, m.buf[s-m.base:]) {
		return
	}
	if b.fw != fwNone && !m.fullWordOK(b.fw, s, s+int64(p.n), p.num == 0, p.num == b.nparts-1) {
		return
	}
	if b.ls != 0 && p.num == b.nparts-1 {
		m.subMatched(b, s, s+int64(p.n))
		return
	}
	if p.num == b.nparts-1 {
		m.seen[si] = m.gen
		m.found = append(m.found, b.name)
		m.rankFirst(p.target, b.static, s+int64(p.n))
		return
	}
	if ch == nil {
		ch = m.chains[int32(si)]
		if ch == nil {
			ch = &chain{allowed: make([][]interval, b.nparts)}
			m.chains[int32(si)] = ch
		}
	}
	g := p.gap
	pend := s + int64(p.n)
	iv := interval{lo: pend + g.Min, hi: math.MaxInt64}
	if g.Max != signatures.Unbounded {
		iv.hi = pend + g.Max
	}
	ch.add(p.num+1, iv)
}

// allows reports whether part pi may start at s, dropping intervals that
// end before frontier (no later occurrence can use them).
func (c *chain) allows(pi uint32, s, frontier int64) bool {
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
func (c *chain) add(pi uint32, iv interval) {
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
