package scan

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/signatures"
)

// Logical signatures (.ldb) in the engine.
//
// Each content subsignature's patterns (its wide and plain forms) are body
// signatures of the engine (bodySig with ls set): they are matched with
// the others, in the same buffers, through the same parts, anchors and
// offset checks, but a match counts for the subsignature instead of
// reporting a name. At the end of each buffer (matcher.scan: a file, an
// archive member, a normalized copy), the logical signatures whose
// subsignatures matched, and those whose expression holds with no match
// at all, are evaluated as ClamAV's cli_exp_eval does at the end of
// cli_scan_fmap: Logic.Eval over the counts, then the target description
// against the buffer's facts (TargetDesc.Allows).
//
// Counts follow ClamAV's lsig_sub_matched: a single-part subsignature
// counts its distinct start offsets (overlapping matches count; the wide
// and plain forms matching at one offset count once); a subsignature
// split into parts by "*" or "{n-m}" counts every completion of its last
// part (ClamAV passes it the offset of the chain's first part, which it
// counts again as long as it does not decrease).

// logicalSig is a logical signature in the engine.
type logicalSig struct {
	name   uint32
	sub    uint32 // its subsignatures' counters: matcher.l.count[sub : sub+nsub]
	nsub   uint8
	target uint8
	// zero: the expression holds with no match at all ("0<1"): evaluated
	// in every buffer of its target type.
	zero bool
	expr *signatures.Expr
	td   signatures.TargetDesc
	// bcomps are its byte-compare subsignatures (bcomp.go); refs has bit
	// i set when subsignature i is the reference of one.
	bcomps []bcompSub
	refs   uint64
}

// fullWord says which word-boundary rule (the "f" modifier) a subsignature
// pattern's matches must pass.
const (
	fwNone  uint8 = iota
	fwPlain       // no ASCII letter or digit just before or just after
	fwWide        // the same for UTF-16LE: a letter or digit followed by 00
)

// fwTail is how many bytes after a match the word-boundary check reads.
const fwTail = 2

// AddLogical adds a logical signature. One the engine cannot evaluate
// (LogicalSig.Unsupported: listed by Set.WriteDebug) is left out and
// never reported. *Builder is a signatures.LogicalSink: LoadTo gives it
// each logical signature as it loads it.
func (b *Builder) AddLogical(l *signatures.LogicalSig) error {
	if b.err != nil {
		return b.err
	}
	if l.Unsupported != "" {
		return nil
	}
	e := b.e
	if l.Logic == nil || len(l.Subsigs) == 0 || len(l.Subsigs) > signatures.MaxSubsigs {
		return b.fail(fmt.Errorf("scan: %s:%d: logical signature %s has %d subsignatures", l.File, l.Line, l.Name, len(l.Subsigs)))
	}
	if !signatures.MatchedTarget(l.Target.Target) {
		return b.fail(fmt.Errorf("scan: %s:%d: logical signature %s has target type %d, which the engine does not match", l.File, l.Line, l.Name, l.Target.Target))
	}
	var bcomps []bcompSub
	var refs uint64
	for i := range l.Subsigs {
		s := &l.Subsigs[i]
		switch {
		case s.Unsupported != "":
		case s.Kind == signatures.SubsigContent && len(s.Patterns) > 0:
			continue
		case s.Kind == signatures.SubsigByteCompare && s.ByteCompare != nil &&
			s.ByteCompare.Ref >= 0 && int(s.ByteCompare.Ref) < len(l.Subsigs) &&
			l.Subsigs[s.ByteCompare.Ref].Kind == signatures.SubsigContent:
			bcomps = append(bcomps, bcompSub{sub: uint8(i), ref: uint8(s.ByteCompare.Ref), bc: s.ByteCompare})
			refs |= 1 << s.ByteCompare.Ref
			continue
		}
		return b.fail(fmt.Errorf("scan: %s:%d: logical signature %s: subsignature %d cannot be matched", l.File, l.Line, l.Name, i))
	}
	if len(l.Name) == 0 || len(l.Name) > maxName {
		return b.fail(fmt.Errorf("scan: %s:%d: signature name of %d bytes (1 to %d)", l.File, l.Line, len(l.Name), maxName))
	}
	if uint64(e.nsubs)+uint64(len(l.Subsigs)) > math.MaxUint32 || len(e.logical) >= math.MaxUint32-1 {
		return b.fail(fmt.Errorf("scan: %s:%d: more signatures than the engine holds", l.File, l.Line))
	}
	name, ok := b.addName(l.Name)
	if !ok {
		return b.fail(fmt.Errorf("scan: %s:%d: more signatures than the engine holds", l.File, l.Line))
	}
	ls := uint32(len(e.logical))
	target := uint8(l.Target.Target)
	e.logical = append(e.logical, logicalSig{
		name: name, sub: e.nsubs, nsub: uint8(len(l.Subsigs)), target: target,
		zero: l.Logic.Eval(nil), expr: l.Logic, td: l.Target, bcomps: bcomps, refs: refs,
	})
	e.nsubs += uint32(len(l.Subsigs))
	if e.logical[ls].zero {
		e.zeroLogical = append(e.zeroLogical, ls)
	}
	for i := range l.Subsigs {
		s := &l.Subsigs[i]
		if s.Kind != signatures.SubsigContent {
			continue
		}
		for k, p := range s.Patterns {
			fw := fwNone
			if s.Modifiers.FullWord {
				fw = fwPlain
				if s.Modifiers.Wide && k == 0 {
					fw = fwWide // the wide form comes first
				}
			}
			body := signatures.BodySig{Name: l.Name, Target: l.Target.Target, Offset: s.Offset, Pattern: p, File: l.File, Line: l.Line}
			if err := b.addBody(&body, subsigRef{ls: ls + 1, sub: uint8(i), fw: fw}); err != nil {
				return err
			}
		}
	}
	e.targets |= 1 << target
	e.nSigs++
	return nil
}

// subsigRef ties a body signature of the engine to a logical signature's
// subsignature; the zero value is a body signature of its own.
type subsigRef struct {
	ls  uint32 // index in Engine.logical + 1; 0: not a subsignature
	sub uint8  // the subsignature's index
	fw  uint8  // fwNone, fwPlain, fwWide
}

// lstate is a matcher's logical-signature state for one buffer.
type lstate struct {
	count   []uint32 // by subsignature (Engine.logical[i].sub + index)
	last    []int64  // the last start counted, by subsignature
	touched []uint32 // logical signatures with a count, each once
	mark    []uint32 // by logical signature: == gen when in touched
	// facts are what the target descriptions are checked against (the
	// object the buffer belongs to), set by the caller of scan; nil: a
	// file of the buffer's size, in no container.
	facts *signatures.FileFacts
	// refs are the last match starts of byte compares' references, by
	// window (bcomp.go); ra reads the buffer being matched, when the
	// caller has it; win is a window's bytes read from it.
	refs map[uint32][]refStart
	ra   io.ReaderAt
	win  []byte
}

// resetLogical forgets the counts of the previous buffer.
func (m *matcher) resetLogical() {
	l := &m.l
	for _, i := range l.touched {
		ls := &m.e.logical[i]
		clear(l.count[ls.sub : ls.sub+uint32(ls.nsub)])
	}
	l.touched = l.touched[:0]
	clear(l.refs)
}

// subMatched counts a match of body signature b, a logical signature's
// subsignature, starting at s and ending at end (single part) or
// completed by its last part (several parts).
func (m *matcher) subMatched(b *bodySig, s, end int64) {
	l := &m.l
	i := b.ls - 1
	ls := &m.e.logical[i]
	k := ls.sub + uint32(b.sub)
	if b.nparts == 1 {
		if l.count[k] > 0 && s == l.last[k] {
			return // the other form, at the same offset
		}
		l.last[k] = s
		if ls.refs&(1<<b.sub) != 0 {
			m.noteRef(k, s, end)
		}
	}
	if l.count[k] < math.MaxUint32 {
		l.count[k]++
	}
	if l.mark[i] != m.gen {
		l.mark[i] = m.gen
		l.touched = append(l.touched, i)
	}
}

// evalLogical evaluates, at the end of a buffer of size bytes, the
// logical signatures of the buffer's target types that matched something
// or hold with no match, and appends the names of those that hold to
// found: the target-specific ones first, then the generic ones, each in
// load order, as ClamAV evaluates its target root before its generic one.
func (m *matcher) evalLogical(size int64) {
	e := m.e
	l := &m.l
	cand := l.touched
	for _, i := range e.zeroLogical {
		if m.targets&(1<<e.logical[i].target) != 0 && l.mark[i] != m.gen {
			cand = append(cand, i)
		}
	}
	l.touched = cand // so that resetLogical clears them all
	if len(cand) == 0 {
		return
	}
	slices.SortFunc(cand, func(a, b uint32) int {
		ga, gb := e.logical[a].target == 0, e.logical[b].target == 0
		switch {
		case ga != gb:
			if gb {
				return -1
			}
			return 1
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
	facts := signatures.FileFacts{Size: size}
	if l.facts != nil {
		facts = *l.facts
	}
	if in := m.exe.info; in != nil && m.exe.format != exefmt.None {
		// The headers ClamAV parsed for the buffer's target (its
		// target_info, status 1): what EntryPoint and NumberOfSections
		// compare.
		facts.Executable, facts.EntryPoint, facts.Sections = true, in.EP, uint32(in.NumberOfSections)
	}
	for _, i := range cand {
		ls := &e.logical[i]
		if m.targets&(1<<ls.target) == 0 {
			continue
		}
		for bi := range ls.bcomps {
			b := &ls.bcomps[bi]
			k := ls.sub + uint32(b.sub)
			l.count[k] = satAdd32(l.count[k], m.bcompMatches(ls, b, size))
		}
		if !ls.expr.Eval(l.count[ls.sub:ls.sub+uint32(ls.nsub)]) || !ls.td.Allows(facts) {
			continue
		}
		// Without anything found before, the first name appended is
		// the one reported first (m.first is 0).
		m.found = append(m.found, ls.name)
	}
}

// fullWordOK applies ClamAV's word-boundary rule ("f", AC_WORD_MARKER)
// to a match of part p (the pattern's only or last part for the end, its
// first for the start) from s to end: for the plain form, no ASCII letter
// or digit just before or just after it; for the wide form, no letter or
// digit followed by 00 just before it (a match at byte 0 or 1 always
// passes), nor just after it (when the match ends one byte before the
// end of the buffer: that byte not a letter or digit). Bytes before the
// buffer's look-back pass.
func (m *matcher) fullWordOK(fw uint8, s, end int64, checkStart, checkEnd bool) bool {
	dataEnd := m.base + int64(m.n)
	at := func(i int64) (byte, bool) {
		if i < m.base || i >= dataEnd {
			return 0, false
		}
		return m.buf[i-m.base], true
	}
	alnum := func(i int64) bool {
		c, ok := at(i)
		return ok && (c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z')
	}
	wideChar := func(i int64) bool {
		c, ok := at(i + 1)
		return alnum(i) && ok && c == 0
	}
	if fw == fwPlain {
		return !(checkStart && alnum(s-1)) && !(checkEnd && alnum(end))
	}
	if checkStart && s >= 2 && wideChar(s-2) {
		return false
	}
	if checkEnd && end < dataEnd {
		if end+1 < dataEnd && wideChar(end) || end+1 == dataEnd && alnum(end) {
			return false
		}
	}
	return true
}

func satAdd32(a, b uint32) uint32 {
	if a > math.MaxUint32-b {
		return math.MaxUint32
	}
	return a + b
}
