package scan

import (
	"bytes"
	"slices"
	"sort"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// hashTable holds one algorithm's hash signatures, grouped by file size:
// sizes is the size filter (a file whose size is not there, and no "*"
// group, needs no digest of this algorithm), and group g's digests,
// sorted, are entries start[g] to start[g+1] of digests (dlen bytes each)
// with their names. No map, no per-signature allocation: about dlen + 4
// bytes per signature plus 12 per distinct size.
type hashTable struct {
	dlen    int
	sizes   []int64  // distinct sizes, sorted; AnySize (-1) first when present
	start   []uint32 // len(sizes)+1
	digests []byte
	names   []uint32
}

func digestLen(a signatures.HashAlgo) int {
	switch a {
	case signatures.MD5:
		return 16
	case signatures.SHA1:
		return 20
	}
	return 32
}

// buildHashTable builds one algorithm's table from its signatures'
// sizes, digests and names in the order they were added (in blocks): the
// distinct sizes, then the size groups' bounds (a counting sort), then the
// digests and names into place, each block dropped once placed, then each
// group sorted.
func buildHashTable(algo signatures.HashAlgo, blocks []*hashBlock) hashTable {
	t := hashTable{dlen: digestLen(algo)}
	n := 0
	for _, bl := range blocks {
		n += len(bl.sizes)
	}
	if n == 0 {
		return t
	}
	distinct := make([]int64, 0, n)
	for _, bl := range blocks {
		distinct = append(distinct, bl.sizes...)
	}
	slices.Sort(distinct)
	t.sizes = slices.Clone(slices.Compact(distinct))
	distinct = nil
	t.start = make([]uint32, len(t.sizes)+1)
	guide := newSizeGuide(t.sizes)
	grp := make([]uint32, 0, n) // each signature's group, in order
	for _, bl := range blocks {
		for _, size := range bl.sizes {
			g := guide.find(size)
			grp = append(grp, uint32(g))
			t.start[g+1]++
		}
	}
	for g := range t.sizes {
		t.start[g+1] += t.start[g]
	}
	pos := slices.Clone(t.start[:len(t.sizes)])
	t.digests = make([]byte, n*t.dlen)
	t.names = make([]uint32, n)
	for k, bl := range blocks {
		for i := range bl.sizes {
			g := grp[0]
			grp = grp[1:]
			j := pos[g]
			pos[g]++
			copy(t.digests[int(j)*t.dlen:], bl.digests[i*t.dlen:(i+1)*t.dlen])
			t.names[j] = bl.names[i]
		}
		blocks[k] = nil // placed: its memory can go
	}
	for g := range t.sizes {
		if lo, hi := t.start[g], t.start[g+1]; hi-lo > 1 {
			sort.Sort(groupSorter{t: &t, lo: int(lo), n: int(hi - lo)})
		}
	}
	return t
}

// sizeGuide finds a size's index in sorted distinct sizes in about two
// memory accesses rather than a binary search's twenty: bucket k of
// first holds the sizes whose value >> shift is k.
type sizeGuide struct {
	sizes []int64
	neg   int // sizes[:neg] are negative (AnySize): binary search there
	shift uint
	first []uint32 // bucket k: sizes[first[k]:first[k+1]]
}

func newSizeGuide(sizes []int64) sizeGuide {
	g := sizeGuide{sizes: sizes}
	g.neg, _ = slices.BinarySearch(sizes, 0)
	vals := sizes[g.neg:]
	if len(vals) == 0 {
		return g
	}
	for vals[len(vals)-1]>>g.shift > int64(2*len(vals)) {
		g.shift++
	}
	g.first = make([]uint32, vals[len(vals)-1]>>g.shift+2)
	for _, v := range vals {
		g.first[v>>g.shift+1]++
	}
	for k := 1; k < len(g.first); k++ {
		g.first[k] += g.first[k-1]
	}
	return g
}

// find returns size's index in the sizes; size must be one of them.
func (g *sizeGuide) find(size int64) int {
	if size < 0 || g.first == nil {
		i, _ := slices.BinarySearch(g.sizes, size)
		return i
	}
	k := size >> g.shift
	lo, hi := int(g.first[k]), int(g.first[k+1])
	i, _ := slices.BinarySearch(g.sizes[g.neg+lo:g.neg+hi], size)
	return g.neg + lo + i
}

// groupSorter sorts one size group by digest.
type groupSorter struct {
	t     *hashTable
	lo, n int
}

func (s groupSorter) Len() int { return s.n }
func (s groupSorter) digest(i int) []byte {
	d := s.t.dlen
	return s.t.digests[(s.lo+i)*d : (s.lo+i+1)*d]
}
func (s groupSorter) Less(i, j int) bool { return bytes.Compare(s.digest(i), s.digest(j)) < 0 }
func (s groupSorter) Swap(i, j int) {
	var tmp [32]byte
	a, b := s.digest(i), s.digest(j)
	copy(tmp[:], a)
	copy(a, b)
	copy(b, tmp[:len(a)])
	s.t.names[s.lo+i], s.t.names[s.lo+j] = s.t.names[s.lo+j], s.t.names[s.lo+i]
}

func (t *hashTable) has(size int64) bool {
	_, ok := slices.BinarySearch(t.sizes, size)
	return ok
}

// needs reports whether a file of size bytes needs this algorithm's
// digest: some signature has that size, or "*".
func (t *hashTable) needs(size int64) bool {
	return len(t.sizes) > 0 && (t.sizes[0] == signatures.AnySize || t.has(size))
}

// lookup appends to found the names of the signatures matching digest d
// of a file of size bytes.
func (t *hashTable) lookup(size int64, d []byte, found []uint32) []uint32 {
	if len(t.sizes) == 0 {
		return found
	}
	for _, s := range [2]int64{signatures.AnySize, size} {
		g, ok := slices.BinarySearch(t.sizes, s)
		if !ok {
			continue
		}
		lo, hi := int(t.start[g]), int(t.start[g+1])
		j := lo + sort.Search(hi-lo, func(i int) bool {
			return bytes.Compare(t.digests[(lo+i)*t.dlen:(lo+i+1)*t.dlen], d) >= 0
		})
		for ; j < hi && bytes.Equal(t.digests[j*t.dlen:(j+1)*t.dlen], d); j++ {
			found = append(found, t.names[j])
		}
		if s == size { // a file's size is never AnySize; do not look twice
			break
		}
	}
	return found
}
