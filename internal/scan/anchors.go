package scan

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

const (
	// maxAnchorLen bounds the anchor taken from each part: one uint64.
	maxAnchorLen = 8
	// filterLen is how many bytes the filter hashes at each position.
	filterLen = 4
	// hashMul is the multiplier of the filter's hash (Knuth's).
	hashMul = 0x9e3779b1
)

// anchorIndex finds every part's anchor in a file in one pass. It is a
// filter in the manner of ClamAV's (matcher-bm.c: a hash of a short
// prefix, then a compare): for each anchor length class k (1 to 3 bytes
// for parts without a longer run of fixed bytes, 4 for all others), the
// k bytes at each file position are hashed; a bit array of about 64 bits
// per anchor rejects almost every position, and the rest look in a
// bucketed sorted table for anchors with those first k bytes, comparing
// up to maxAnchorLen bytes. Memory is about 16 bytes per anchor plus
// 12 bytes per anchor of filter and buckets, whatever the number of
// signatures; no per-state transition tables.
type anchorIndex struct {
	classes []anchorClass // at most one per k, longest k first
	maxLen  int           // the longest anchor
}

type anchorClass struct {
	k       int
	mask    uint32   // the low k bytes
	bits    []uint64 // bit h>>bshift set when some anchor hashes to h
	bshift  uint32
	buckets []uint32 // bucket b (h>>kshift): ents[buckets[b]:buckets[b+1]]
	kshift  uint32
	ents    []anchorEnt
}

// anchorEnt is one part's anchor: n bytes, little-endian in key.
type anchorEnt struct {
	key  uint64
	part uint32
	n    uint8
}

func buildAnchors(parts []part, arena []byte) anchorIndex {
	var ix anchorIndex
	var byK [filterLen + 1][]anchorEnt
	var folded []int
	for pi := range parts {
		p := &parts[pi]
		n := int(p.alen)
		var key uint64
		a := arena[p.data+p.aoff : p.data+p.aoff+uint32(n)]
		for i := n - 1; i >= 0; i-- {
			key = key<<8 | uint64(a[i])
		}
		k := min(n, filterLen)
		// A case-folded letter (mask 0xdf, the upper-case value) in the
		// anchor: index every case variant (anchorOf keeps such anchors
		// short).
		folded = folded[:0]
		if !p.fixed {
			m := arena[p.data+p.n+p.aoff : p.data+p.n+p.aoff+uint32(n)]
			for i, mb := range m {
				if mb == 0xdf {
					folded = append(folded, i)
				}
			}
		}
		for v := 0; v < 1<<len(folded); v++ {
			vk := key
			for bit, i := range folded {
				if v&(1<<bit) != 0 {
					vk |= 0x20 << (8 * i)
				}
			}
			byK[k] = append(byK[k], anchorEnt{key: vk, part: uint32(pi), n: uint8(n)})
		}
		ix.maxLen = max(ix.maxLen, n)
	}
	for k := filterLen; k >= 1; k-- {
		if len(byK[k]) > 0 {
			ix.classes = append(ix.classes, newAnchorClass(k, byK[k]))
		}
	}
	return ix
}

func newAnchorClass(k int, ents []anchorEnt) anchorClass {
	c := anchorClass{k: k, mask: uint32(1<<(8*k) - 1), ents: ents}
	bbits := min(max(bits.Len(uint(len(ents)*64-1)), 12), 27)
	kbits := min(max(bits.Len(uint(len(ents)-1)), 1), 24)
	c.bshift, c.kshift = uint32(32-bbits), uint32(32-kbits)
	c.bits = make([]uint64, 1<<bbits/64)
	c.buckets = make([]uint32, 1<<kbits+1)
	hashOf := func(en *anchorEnt) uint32 { return (uint32(en.key) & c.mask) * hashMul }
	slices.SortFunc(c.ents, func(a, b anchorEnt) int {
		ha, hb := hashOf(&a)>>c.kshift, hashOf(&b)>>c.kshift
		switch {
		case ha != hb:
			return int(ha) - int(hb)
		case a.key != b.key:
			if a.key < b.key {
				return -1
			}
			return 1
		}
		return int(a.part) - int(b.part)
	})
	for i := range c.ents {
		h := hashOf(&c.ents[i])
		x := h >> c.bshift
		c.bits[x>>6] |= 1 << (x & 63)
		c.buckets[h>>c.kshift+1]++
	}
	for b := 1; b < len(c.buckets); b++ {
		c.buckets[b] += c.buckets[b-1]
	}
	return c
}

// find appends to hits the anchors starting at buf[from:to] (their file
// offsets: base + index), in order of position. An anchor must lie within
// buf.
func (c *anchorClass) find(buf []byte, from, to int, base int64, hits []hit) []hit {
	stop := min(to, len(buf)-c.k+1)
	if c.k == filterLen {
		for i := from; i < stop; i++ {
			w := binary.LittleEndian.Uint32(buf[i:])
			h := w * hashMul
			x := h >> c.bshift
			if c.bits[x>>6]&(1<<(x&63)) == 0 {
				continue
			}
			hits = c.lookup(buf, i, w, h, base, hits)
		}
		return hits
	}
	// Where 4 bytes can be read, one load and a mask give the k bytes.
	fast := min(stop, len(buf)-filterLen+1)
	for i := from; i < fast; i++ {
		w := binary.LittleEndian.Uint32(buf[i:]) & c.mask
		h := w * hashMul
		x := h >> c.bshift
		if c.bits[x>>6]&(1<<(x&63)) == 0 {
			continue
		}
		hits = c.lookup(buf, i, w, h, base, hits)
	}
	for i := max(from, fast); i < stop; i++ {
		var w uint32
		for j := c.k - 1; j >= 0; j-- {
			w = w<<8 | uint32(buf[i+j])
		}
		h := w * hashMul
		x := h >> c.bshift
		if c.bits[x>>6]&(1<<(x&63)) == 0 {
			continue
		}
		hits = c.lookup(buf, i, w, h, base, hits)
	}
	return hits
}

// lookup compares the anchors of bucket h whose first k bytes are w with
// buf at i.
func (c *anchorClass) lookup(buf []byte, i int, w, h uint32, base int64, hits []hit) []hit {
	b := h >> c.kshift
	for _, en := range c.ents[c.buckets[b]:c.buckets[b+1]] {
		if uint32(en.key)&c.mask != w {
			continue
		}
		if n := int(en.n); n > c.k {
			if i+n > len(buf) {
				continue
			}
			var v uint64
			if i+8 <= len(buf) {
				v = binary.LittleEndian.Uint64(buf[i:])
			} else {
				for j := n - 1; j >= 0; j-- {
					v = v<<8 | uint64(buf[i+j])
				}
			}
			if (v^en.key)&(^uint64(0)>>(64-8*n)) != 0 {
				continue
			}
		}
		hits = append(hits, hit{part: en.part, start: base + int64(i)})
	}
	return hits
}

// findAnchors looks for anchors at the positions not examined yet whose
// anchors are wholly in the buffer (all of them at the end of the file),
// and handles what it finds in order of position, so that a part is
// always verified before the next part of its signature.
func (m *matcher) findAnchors(eof bool) {
	ix := &m.e.anchors
	end := m.base + int64(m.n)
	limit := end - int64(ix.maxLen) + 1
	if eof {
		limit = end
	}
	if limit <= m.next {
		return
	}
	from, to := int(m.next-m.base), int(limit-m.base)
	buf := m.buf[:m.n]
	m.hits = m.hits[:0]
	for ci := range ix.classes {
		m.hits = ix.classes[ci].find(buf, from, to, m.base, m.hits)
	}
	if len(ix.classes) > 1 {
		slices.SortStableFunc(m.hits, func(a, b hit) int { return cmpInt64(a.start, b.start) })
	}
	for _, h := range m.hits {
		m.anchorHit(h.part, h.start, eof)
	}
	m.next = limit
}
