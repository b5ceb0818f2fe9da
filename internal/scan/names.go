package scan

import (
	"encoding/binary"
	"math"
)

// nameTable holds every signature name, front-coded in groups of
// nameGroup: the first name of a group whole, each other as the length of
// the prefix it shares with the name before it and the bytes that
// follow (signature names come in families, "Win.Trojan.Agent-1234-0"
// after "Win.Trojan.Agent-1233-0"). Entries (uvarint shared, uvarint
// rest length, rest) are stored in blocks of nameChunk bytes, filled in
// turn and never reallocated (growing one block would copy it and hold
// both copies at every growth); an entry never spans two blocks. Reading
// a name decodes at most nameGroup entries: names are read only for
// detections.
type nameTable struct {
	chunks [][]byte
	// group[g] is the global offset (block k starts at k*nameChunk) of
	// group g's first entry.
	group []uint32
	n     uint32
	last  []byte // the name added last
}

// nameChunk is the size of a nameTable block, maxName the longest name
// it takes (a signature line is at most 32 KiB), nameGroup the names per
// group.
const (
	nameChunk = 1 << 20
	maxName   = 1 << 16
	nameGroup = 16
)

// add adds a non-empty name of at most maxName bytes; ok is false when
// the table is full (32-bit offsets).
func (t *nameTable) add(s string) (i uint32, ok bool) {
	if len(s) == 0 || len(s) > maxName || t.n >= math.MaxUint32/2 {
		return 0, false
	}
	shared := 0
	if t.n%nameGroup != 0 {
		for shared < len(s) && shared < len(t.last) && s[shared] == t.last[shared] {
			shared++
		}
	}
	rest := s[shared:]
	var hdr [2 * binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(shared))
	h += binary.PutUvarint(hdr[h:], uint64(len(rest)))
	k := len(t.chunks) - 1
	if k < 0 || len(t.chunks[k])+h+len(rest) > nameChunk {
		k++
		if uint64(k+1)*nameChunk > math.MaxUint32 {
			return 0, false
		}
		t.chunks = append(t.chunks, make([]byte, 0, nameChunk))
	}
	if t.n%nameGroup == 0 {
		t.group = append(t.group, uint32(k*nameChunk+len(t.chunks[k])))
	}
	t.chunks[k] = append(append(t.chunks[k], hdr[:h]...), rest...)
	t.last = append(t.last[:shared], rest...)
	t.n++
	return t.n - 1, true
}

func (t *nameTable) get(i uint32) string {
	off := t.group[i/nameGroup]
	k, pos := int(off/nameChunk), int(off%nameChunk)
	var name []byte
	for j := i / nameGroup * nameGroup; ; j++ {
		if pos == len(t.chunks[k]) { // the entry starts the next block
			k, pos = k+1, 0
		}
		c := t.chunks[k]
		shared, n1 := binary.Uvarint(c[pos:])
		pos += n1
		rl, n2 := binary.Uvarint(c[pos:])
		pos += n2
		name = append(name[:shared], c[pos:pos+int(rl)]...)
		pos += int(rl)
		if j == i {
			return string(name)
		}
	}
}
