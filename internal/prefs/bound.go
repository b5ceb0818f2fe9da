package prefs

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"fmt"
)

// A preference file is small, but a small file can decode to something
// enormous: a binary property list refers to its objects by number, so an
// array may list the same sub-array many times, and that one many times
// again. howett.net/plist shares such objects while parsing but copies them
// out into a tree of Go values, one copy per reference — 426 bytes of
// nested shared arrays asked it for 24 GB. So before any file reaches the
// decoder, its expanded size is worked out from its structure and the file
// is refused if that size is beyond these limits, which no real
// preference file comes near.
const (
	// maxValues bounds the values in the decoded tree: every dictionary,
	// array, dictionary key and scalar, each counted once per place it
	// appears.
	maxValues = 1 << 16
	// maxDepth bounds how deep arrays and dictionaries nest.
	maxDepth = 64
	// maxDecodedBytes bounds the bytes of strings and data in the decoded
	// tree, each counted once per place it appears.
	maxDecodedBytes = 4 << 20
)

// limitError is a file that is well formed as far as the check went but
// whose decoded form would exceed a limit.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func overLimit(format string, args ...any) error {
	return &limitError{fmt.Sprintf(format, args...)}
}

// checkDecodedSize refuses data, a binary or XML property list, if decoding
// it would build more than the limits allow. A *limitError says so; any
// other error is a binary property list whose structure is broken (a
// reference out of range, a reference cycle, an object running past the
// object table). Problems that do not bear on the size, such as a
// malformed number, are left for the decoder to report.
func checkDecodedSize(data []byte) error {
	if bytes.HasPrefix(data, []byte("bplist")) {
		_, err := measureBinary(data)
		return err
	}
	return checkXMLSize(data)
}

// checkXMLSize counts the elements of an XML property list and how deep
// they nest. XML has no references, so the decoded tree is never larger
// than the file; the limits keep its depth (the decoder recurses once per
// level) and the number of values the same as for binary files. Syntax
// errors end the count silently: the decoder reports them in its own words.
func checkXMLSize(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	var open []bool // per open element: is it an array or dictionary?
	containers, elements := 0, 0
	for {
		tok, err := d.RawToken()
		if err != nil {
			return nil
		}
		switch t := tok.(type) {
		case xml.StartElement:
			isContainer := t.Name.Local == "array" || t.Name.Local == "dict"
			if isContainer {
				containers++
			}
			open = append(open, isContainer)
			elements++
			// <plist> and the innermost scalar add two levels to the
			// arrays and dictionaries; <plist> is not a value.
			if containers > maxDepth || len(open) > maxDepth+2 {
				return overLimit("the XML property list nests arrays and dictionaries more than %d deep", maxDepth)
			}
			if elements > maxValues+1 {
				return overLimit("the XML property list holds more than %d values", maxValues)
			}
		case xml.EndElement:
			if len(open) == 0 {
				return nil // unbalanced: the decoder's error
			}
			if open[len(open)-1] {
				containers--
			}
			open = open[:len(open)-1]
		}
	}
}

// bplist is the part of a binary property list's trailer that locates its
// objects.
type bplist struct {
	data       []byte
	offSize    uint64 // bytes per entry of the offset table
	refSize    uint64 // bytes per object reference in arrays and dictionaries
	numObjects uint64
	top        uint64 // the root object's number
	tableOff   uint64 // where the offset table starts: the objects end there
}

// expanded is the size of an object once decoded: values and bytes as for
// maxValues and maxDecodedBytes, and depth the number of arrays and
// dictionaries on the longest path down from it (0 for a scalar).
type expanded struct {
	values, bytes uint64
	depth         int
}

// measureBinary walks a binary property list's objects from its root,
// following the references in arrays and dictionaries, and computes the
// size of the tree the decoder would build. Each object is measured once
// (its size is remembered), so the walk costs one pass over the references
// however often they repeat, and stops at the first limit exceeded.
//
// Layout (CoreFoundation's bplist00): an 8-byte header, the objects, an
// offset table giving each object's position, and a 32-byte trailer:
// 6 unused bytes, the offset table's entry size, the object reference
// size, then 8-byte big-endian counts: the number of objects, the root
// object's number and the offset table's position. Each object starts with
// a marker byte: the high 4 bits its type, the low 4 its length, or 0xF for
// a length in the integer object that follows.
func measureBinary(data []byte) (expanded, error) {
	const header, trailerLen = 8, 32
	if len(data) < header+trailerLen {
		return expanded{}, fmt.Errorf("%d bytes is too short for a binary property list (header and trailer take %d)", len(data), header+trailerLen)
	}
	t := data[len(data)-trailerLen:]
	p := &bplist{
		data:       data,
		offSize:    uint64(t[6]),
		refSize:    uint64(t[7]),
		numObjects: binary.BigEndian.Uint64(t[8:]),
		top:        binary.BigEndian.Uint64(t[16:]),
		tableOff:   binary.BigEndian.Uint64(t[24:]),
	}
	trailerOff := uint64(len(data) - trailerLen)
	switch {
	case p.offSize < 1 || p.offSize > 8:
		return expanded{}, fmt.Errorf("trailer gives an offset size of %d bytes, want 1 to 8", p.offSize)
	case p.refSize < 1 || p.refSize > 8:
		return expanded{}, fmt.Errorf("trailer gives an object reference size of %d bytes, want 1 to 8", p.refSize)
	case p.tableOff < header || p.tableOff >= trailerOff:
		return expanded{}, fmt.Errorf("trailer puts the offset table at %d, outside the file's objects (%d to %d)", p.tableOff, header, trailerOff)
	case p.numObjects > (trailerOff-p.tableOff)/p.offSize:
		return expanded{}, fmt.Errorf("trailer claims %d objects, but the offset table has room for %d", p.numObjects, (trailerOff-p.tableOff)/p.offSize)
	case p.top >= p.numObjects:
		return expanded{}, fmt.Errorf("trailer names object %d as the root, but there are only %d objects", p.top, p.numObjects)
	}
	// Writers store each distinct object once, so a file with more objects
	// than the decoded tree may hold values is refused without a walk.
	if p.numObjects > maxValues {
		return expanded{}, overLimit("the binary property list has %d objects, more than the %d values allowed", p.numObjects, maxValues)
	}
	return p.walk()
}

// be reads an n-byte big-endian unsigned integer at off, which the
// caller has checked lies within data.
func (p *bplist) be(off, n uint64) uint64 {
	var v uint64
	for _, b := range p.data[off : off+n] {
		v = v<<8 | uint64(b)
	}
	return v
}

// object is one object located and measured: a scalar's size, or where a
// container's references are.
type object struct {
	own        expanded // the object itself, without its contents
	refs, nref uint64   // a container's first reference and their number
}

// locate finds object i and reads its marker.
func (p *bplist) locate(i uint64) (object, error) {
	off := p.be(p.tableOff+i*p.offSize, p.offSize)
	if off < 8 || off >= p.tableOff {
		return object{}, fmt.Errorf("object %d is at offset %d, outside the objects (8 to %d)", i, off, p.tableOff)
	}
	marker := p.data[off]
	kind := marker >> 4
	switch kind {
	case 0x0, 0x1, 0x2, 0x3, 0x8: // null/boolean/fill, integer, real, date, UID
		return object{own: expanded{values: 1}}, nil
	}
	n, start, err := p.length(off, i)
	if err != nil {
		return object{}, err
	}
	room := p.tableOff - start // bytes between the contents and the offset table
	switch kind {
	case 0x4, 0x5: // data, ASCII string
		if n > room {
			return object{}, fmt.Errorf("object %d (%d bytes of string or data at offset %d) runs past the objects", i, n, off)
		}
		return object{own: expanded{values: 1, bytes: n}}, nil
	case 0x6: // UTF-16 string: up to 3 bytes of UTF-8 per unit
		if n > room/2 {
			return object{}, fmt.Errorf("object %d (%d UTF-16 units at offset %d) runs past the objects", i, n, off)
		}
		return object{own: expanded{values: 1, bytes: 3 * n}}, nil
	case 0xA, 0xD: // array; dictionary: n keys, then n values
		if kind == 0xD {
			if n > room/p.refSize/2 {
				return object{}, fmt.Errorf("object %d (a dictionary of %d entries at offset %d) runs past the objects", i, n, off)
			}
			n *= 2
		} else if n > room/p.refSize {
			return object{}, fmt.Errorf("object %d (an array of %d items at offset %d) runs past the objects", i, n, off)
		}
		return object{own: expanded{values: 1, depth: 1}, refs: start, nref: n}, nil
	}
	return object{}, fmt.Errorf("object %d at offset %d has unknown type 0x%02x", i, off, marker)
}

// length reads the length of the object whose marker is at off: the low 4
// bits of the marker, or with 0xF there the integer object that follows.
// It returns the length and where the contents start.
func (p *bplist) length(off, i uint64) (n, start uint64, err error) {
	if low := uint64(p.data[off] & 0x0F); low != 0x0F {
		return low, off + 1, nil
	}
	if off+1 >= p.tableOff || p.data[off+1]>>4 != 0x1 {
		return 0, 0, fmt.Errorf("object %d at offset %d: its length is not an integer object", i, off)
	}
	size := uint64(1) << (p.data[off+1] & 0x0F)
	start = off + 2 + size
	if size > 16 || start > p.tableOff {
		return 0, 0, fmt.Errorf("object %d at offset %d: its length is a malformed integer", i, off)
	}
	if size == 16 { // a 128-bit integer: the decoder takes the low 64 bits
		return p.be(off+2+8, 8), start, nil
	}
	return p.be(off+2, size), start, nil
}

// frame is a container being measured: sum holds its own size plus that of
// the contents measured so far.
type frame struct {
	index uint64
	next  uint64 // position of the next reference to follow
	end   uint64
	sum   expanded
}

// walk measures the tree under the root object, depth first, without
// recursion: the stack holds the containers on the path from the root,
// which maxDepth bounds. An object met again on that path is a cycle.
func (p *bplist) walk() (expanded, error) {
	measured := make(map[uint64]expanded)
	onPath := make(map[uint64]bool)
	var stack []frame

	// add adds child to the container on top of the stack.
	add := func(child expanded) error {
		f := &stack[len(stack)-1]
		f.sum.values += child.values
		f.sum.bytes += child.bytes
		f.sum.depth = max(f.sum.depth, child.depth+1)
		switch {
		case f.sum.values > maxValues:
			return overLimit("the binary property list expands to more than %d values when decoded (it refers to the same objects over and over)", maxValues)
		case f.sum.bytes > maxDecodedBytes:
			return overLimit("the binary property list expands to more than %d bytes of strings and data when decoded (it refers to the same objects over and over)", maxDecodedBytes)
		case f.sum.depth > maxDepth:
			return overLimit("the binary property list nests arrays and dictionaries more than %d deep", maxDepth)
		}
		return nil
	}
	// visit measures object i if it is a scalar or already measured, and
	// otherwise starts measuring it by pushing it on the stack.
	visit := func(i, from uint64) (done bool, size expanded, err error) {
		if i >= p.numObjects {
			return false, size, fmt.Errorf("object %d refers to object %d, but there are only %d objects", from, i, p.numObjects)
		}
		if size, ok := measured[i]; ok {
			return true, size, nil
		}
		if onPath[i] {
			return false, size, fmt.Errorf("object %d contains itself (a reference cycle through object %d)", i, from)
		}
		obj, err := p.locate(i)
		if err != nil {
			return false, size, err
		}
		if obj.nref == 0 {
			measured[i] = obj.own
			return true, obj.own, nil
		}
		if len(stack) >= maxDepth {
			return false, size, overLimit("the binary property list nests arrays and dictionaries more than %d deep", maxDepth)
		}
		onPath[i] = true
		stack = append(stack, frame{index: i, next: obj.refs, end: obj.refs + obj.nref*p.refSize, sum: obj.own})
		return false, size, nil
	}

	done, size, err := visit(p.top, p.top)
	if err != nil || done {
		return size, err
	}
	for {
		f := &stack[len(stack)-1]
		if f.next < f.end {
			ref := p.be(f.next, p.refSize)
			f.next += p.refSize
			done, size, err := visit(ref, f.index)
			if err != nil {
				return expanded{}, err
			}
			if done {
				if err := add(size); err != nil {
					return expanded{}, err
				}
			}
			continue
		}
		fin := *f
		stack = stack[:len(stack)-1]
		delete(onPath, fin.index)
		measured[fin.index] = fin.sum
		if len(stack) == 0 {
			return fin.sum, nil
		}
		if err := add(fin.sum); err != nil {
			return expanded{}, err
		}
	}
}
