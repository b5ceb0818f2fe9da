package scan

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/vigil-fleet/vigil/internal/signatures"
)

// hashList is a compact table of hash entries of one algorithm, as
// ClamAV's hash matcher (matcher-hash.c) keeps them: entries with a size
// sorted by (size, digest), entries of any size ("*") sorted by digest.
// Names are kept once each in a name table.
type hashList struct {
	dlen      int
	sizes     []int64  // by entry
	digests   []byte   // dlen bytes per entry
	names     []uint32 // by entry: index in the engine's section names
	wild      []byte   // dlen bytes per "*" entry, sorted
	wildNames []uint32
}

// digestLenOf is the digest length of algo.
func digestLenOf(algo signatures.HashAlgo) int {
	switch algo {
	case signatures.MD5:
		return md5.Size
	case signatures.SHA1:
		return sha1.Size
	}
	return sha256.Size
}

// buildHashLists sorts sigs into one list per algorithm. name gives the
// index of a signature's name.
func buildHashLists(sigs []signatures.HashSig, name func(string) uint32) [3]hashList {
	var l [3]hashList
	type ent struct {
		size int64
		dig  []byte
		name uint32
	}
	var ents [3][]ent
	for i := range sigs {
		h := &sigs[i]
		a := int(h.Algo)
		if a >= len(ents) || len(h.Hash) != digestLenOf(h.Algo) {
			continue // the loader gives none such
		}
		ents[a] = append(ents[a], ent{size: h.Size, dig: h.Hash, name: name(h.Name)})
	}
	for a := range ents {
		x := &l[a]
		x.dlen = digestLenOf(signatures.HashAlgo(a))
		es := ents[a]
		slices.SortStableFunc(es, func(p, q ent) int {
			if p.size != q.size {
				if p.size < q.size {
					return -1
				}
				return 1
			}
			return bytes.Compare(p.dig, q.dig)
		})
		for _, e := range es {
			if e.size == signatures.AnySize {
				x.wild = append(x.wild, e.dig...)
				x.wildNames = append(x.wildNames, e.name)
				continue
			}
			x.sizes = append(x.sizes, e.size)
			x.digests = append(x.digests, e.dig...)
			x.names = append(x.names, e.name)
		}
	}
	return l
}

// empty reports whether the list has no entry.
func (x *hashList) empty() bool { return len(x.names) == 0 && len(x.wildNames) == 0 }

// needs reports whether an object of size bytes needs this algorithm's
// digest: some entry has that size, or any size.
func (x *hashList) needs(size int64) bool {
	if len(x.wildNames) > 0 {
		return true
	}
	i := sort.Search(len(x.sizes), func(i int) bool { return x.sizes[i] >= size })
	return i < len(x.sizes) && x.sizes[i] == size
}

// lookup returns what ClamAV's cli_hm_scan and cli_hm_scan_wild return
// for digest d of an object of size bytes: the name of an entry with
// that digest and size (sized), and of one of any size (wild); each
// lookup gives one name, the first in the table, as ClamAV's gives one.
func (x *hashList) lookup(d []byte, size int64) (sized, wild uint32, okSized, okWild bool) {
	lo := sort.Search(len(x.sizes), func(i int) bool { return x.sizes[i] >= size })
	hi := lo + sort.Search(len(x.sizes)-lo, func(i int) bool { return x.sizes[lo+i] > size })
	k := lo + sort.Search(hi-lo, func(i int) bool { return bytes.Compare(x.digests[(lo+i)*x.dlen:(lo+i+1)*x.dlen], d) >= 0 })
	if k < hi && bytes.Equal(x.digests[k*x.dlen:(k+1)*x.dlen], d) {
		sized, okSized = x.names[k], true
	}
	n := len(x.wildNames)
	k = sort.Search(n, func(i int) bool { return bytes.Compare(x.wild[i*x.dlen:(i+1)*x.dlen], d) >= 0 })
	if k < n && bytes.Equal(x.wild[k*x.dlen:(k+1)*x.dlen], d) {
		wild, okWild = x.wildNames[k], true
	}
	return sized, wild, okSized, okWild
}

// objectSigs are the signatures matched on objects rather than on a
// stream of bytes: the .fp/.sfp allow list and the .mdb/.msb PE section
// hashes. They are kept apart from the byte matcher's tables.
type objectSigs struct {
	allow    [3]hashList
	sections [3]hashList
	names    []string // section signatures' names (allow entries' are labels, not kept)
}

// newObjectSigs builds the tables of set's Allowed and SectionHashes.
func newObjectSigs(set *signatures.Set) *objectSigs {
	o := &objectSigs{}
	o.allow = buildHashLists(set.Allowed, func(string) uint32 { return 0 })
	idx := map[string]uint32{}
	o.sections = buildHashLists(set.SectionHashes, func(n string) uint32 {
		i, ok := idx[n]
		if !ok {
			i = uint32(len(o.names))
			idx[n] = i
			o.names = append(o.names, strings.Clone(n)) // not the loader's buffers
		}
		return i
	})
	return o
}

// hasAllow reports whether there is any allow entry.
func (o *objectSigs) hasAllow() bool {
	return o != nil && !(o.allow[0].empty() && o.allow[1].empty() && o.allow[2].empty())
}

// hasSections reports whether there is any section hash signature.
func (o *objectSigs) hasSections() bool {
	return o != nil && !(o.sections[0].empty() && o.sections[1].empty() && o.sections[2].empty())
}

// digests computes, in one read of size bytes of r from off, the digests
// of the algorithms of lists that need them for that size (nil for the
// others). ok is false when the bytes cannot all be read.
func digests(lists *[3]hashList, r io.ReaderAt, off, size int64) (d [3][]byte, ok bool) {
	var hs [3]hash.Hash
	var ws []io.Writer
	for a := range lists {
		if lists[a].needs(size) {
			hs[a] = newHash(signatures.HashAlgo(a))
			ws = append(ws, hs[a])
		}
	}
	if len(ws) == 0 {
		return d, true
	}
	n, err := io.Copy(io.MultiWriter(ws...), io.NewSectionReader(r, off, size))
	if err != nil || n != size {
		return d, false
	}
	for a, h := range hs {
		if h != nil {
			d[a] = h.Sum(nil)
		}
	}
	return d, true
}

// allowed reports whether an object of size bytes read from r is on the
// allow list (.fp, .sfp): ClamAV's cli_check_fp for one layer, by MD5,
// SHA-1 or SHA-256 with the object's size or any size.
func (o *objectSigs) allowed(r io.ReaderAt, size int64) bool {
	if !o.hasAllow() {
		return false
	}
	d, ok := digests(&o.allow, r, 0, size)
	if !ok {
		return false
	}
	for a := range d {
		if d[a] == nil {
			continue
		}
		if _, _, sized, wild := o.allow[a].lookup(d[a], size); sized || wild {
			return true
		}
	}
	return false
}

// sectionMatches returns the names of the section hash signatures that
// match the sections of a PE object (ClamAV's scan_pe_mdb for each
// section with raw data, in order), appended to out. Without allMatch it
// stops at the first.
func (o *objectSigs) sectionMatches(out []string, r io.ReaderAt, size int64, allMatch bool) []string {
	if !o.hasSections() {
		return out
	}
	secs, ok := peSections(r, size)
	if !ok {
		return out
	}
	for _, s := range secs {
		d, ok := digests(&o.sections, r, s.raw, s.size)
		if !ok {
			continue
		}
		for a := range d {
			if d[a] == nil {
				continue
			}
			sized, wild, okSized, okWild := o.sections[a].lookup(d[a], s.size)
			if okSized {
				out = append(out, o.names[sized])
				if !allMatch {
					return out
				}
			}
			if okWild {
				out = append(out, o.names[wild])
				if !allMatch {
					return out
				}
			}
		}
	}
	return out
}

// SetObjectSignatures gives the Builder an allow list (.fp, .sfp: a
// Set's Allowed) and PE section hashes (.mdb, .msb: its SectionHashes),
// which New takes from its Set; a later call replaces them.
func (b *Builder) SetObjectSignatures(allowed, sections []signatures.HashSig) {
	if b.e != nil {
		b.e.objs = newObjectSigs(&signatures.Set{Allowed: allowed, SectionHashes: sections})
	}
}
