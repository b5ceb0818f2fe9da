package filetype

import (
	"errors"
	"io"
)

// Type is a ClamAV file type (cli_file_t), with ClamAV's number.
type Type int

func index(t Type) int {
	if t == Any {
		return 0
	}
	if t < TextASCII || int(t-TextASCII)+1 >= len(names) {
		return -1
	}
	return int(t-TextASCII) + 1
}

// String returns ClamAV's name of t, "CL_TYPE_…".
func (t Type) String() string {
	if i := index(t); i >= 0 {
		return names[i]
	}
	return "CL_TYPE_UNKNOWN"
}

// ByName returns the type ClamAV names name ("CL_TYPE_HTML"), as
// cli_ftcode does.
func ByName(name string) (Type, bool) {
	for i, n := range names {
		if n == name {
			if i == 0 {
				return Any, true
			}
			return TextASCII + Type(i-1), true
		}
	}
	return Error, false
}

// fold keeps what ClamAV's cli_ac_scanbuff needs to decide the type it
// returns for one buffer in type-recognition mode: it starts at Any and,
// match by match in the order they end, takes a type greater than the
// current one, any SFX-or-later type and MSEXE unconditionally, and stops
// at Ignored. That result depends only on each type's last match end, so
// the fold keeps that and nothing else: bounded, and indifferent to the
// order matches are found in.
type fold struct {
	last    []int64 // per type index: the end of its last match, -1 none
	ignored bool
}

func newFold() *fold {
	f := &fold{last: make([]int64, len(names))}
	for i := range f.last {
		f.last[i] = -1
	}
	return f
}

func (f *fold) add(t Type, end int64) {
	if t == Ignored {
		f.ignored = true
		return
	}
	if i := index(t); i >= 0 && end > f.last[i] {
		f.last[i] = end
	}
}

func overrides(t Type) bool { return t >= SFX || t == MSEXE }

func (f *fold) result() Type {
	if f.ignored {
		return Ignored
	}
	res, resEnd := Any, int64(-1)
	for i, e := range f.last {
		t := typeAt(i)
		if e >= 0 && overrides(t) && e > resEnd {
			res, resEnd = t, e
		}
	}
	for i, e := range f.last {
		if t := typeAt(i); e > resEnd && t > res {
			res = t
		}
	}
	return res
}

func typeAt(i int) Type {
	if i == 0 {
		return Any
	}
	return TextASCII + Type(i-1)
}

// rtypeOK is the pattern's condition on the type the buffer is scanned as.
func (p *pattern) rtypeOK(ftype Type) bool { return p.rtype == Any || p.rtype == ftype }

// scanAll matches every recognition pattern in b (one whole buffer, as
// cli_determine_fmap_type does with the first bytes), folding its matches
// into f. Patterns at an offset from the end of the file are not applied
// (the recognizer is given no size).
func (t *Table) scanAll(b []byte, ftype Type, f *fold) {
	r := t.NewRecognizer(-1, ftype)
	r.buf = b // read only: a final advance examines every start and moves no byte
	r.advance(true)
	for _, w := range r.folds {
		for i, e := range w.last {
			if e > f.last[i] {
				f.last[i] = e
			}
		}
		f.ignored = f.ignored || w.ignored
	}
}

// Recognizer finds the type ClamAV's raw scan of a whole file recognizes
// in it (scanraw with type recognition: the value of found_type), fed the
// file's bytes in order through Write. ClamAV uses it for a file typed
// TextASCII: found HTML, the file is scanned as HTML (normalized by
// htmlnorm) instead of as text; found Mail, as mail.
//
// As ClamAV, it keeps one result per ScanBuffer-sized buffer (the fold of
// cli_ac_scanbuff) and the greatest over the buffers; a match belongs to
// the buffer it ends in. Memory is bounded by the longest pattern span
// plus one write, whatever the file's size.
type Recognizer struct {
	t       *Table
	ftype   Type
	size    int64
	buf     []byte // the bytes from bufStart on
	bufOff  int64  // file offset of buf[0]
	next    int64  // the next start position to examine
	seg     []int  // per pattern: the segment it waits for
	minFrom []int64
	folds   map[int64]*fold
	found   Type
	done    bool
	// waiting lists the patterns past their first segment; snapshot is
	// examine's copy of it.
	waiting, snapshot []int
}

// NewRecognizer starts a recognition of a file of size bytes scanned as
// ftype (ClamAV scans a TextASCII file as Any here).
func (t *Table) NewRecognizer(size int64, ftype Type) *Recognizer {
	return &Recognizer{
		t: t, ftype: ftype, size: size,
		seg:     make([]int, len(t.patterns)),
		minFrom: make([]int64, len(t.patterns)),
		folds:   map[int64]*fold{},
		found:   Any,
	}
}

// ErrClosed is returned by Write after Result.
var ErrClosed = errors.New("filetype: recognizer already finished")

// Write feeds the file's next bytes.
func (r *Recognizer) Write(p []byte) (int, error) {
	if r.done {
		return 0, ErrClosed
	}
	r.buf = append(r.buf, p...)
	r.advance(false)
	return len(p), nil
}

// Result ends the recognition and returns the type found (Any if none).
func (r *Recognizer) Result() Type {
	if !r.done {
		r.advance(true)
		r.done = true
		for w, f := range r.folds {
			r.closeWindow(w, f)
		}
	}
	return r.found
}

func (r *Recognizer) closeWindow(w int64, f *fold) {
	if t := f.result(); t > r.found {
		r.found = t
	}
	delete(r.folds, w)
}

// advance examines every start position that has enough bytes after it
// (all of them at the end), then drops the bytes no longer needed.
func (r *Recognizer) advance(final bool) {
	end := r.bufOff + int64(len(r.buf))
	limit := end - int64(r.t.maxSpan)
	if final {
		limit = end
	}
	for ; r.next < limit; r.next++ {
		r.examine(r.next)
		if r.next%ScanBuffer == ScanBuffer-1 {
			w := r.next / ScanBuffer
			if f, ok := r.folds[w]; ok {
				r.closeWindow(w, f)
			}
		}
	}
	if drop := r.next - r.bufOff; drop > 0 && !final {
		n := copy(r.buf, r.buf[drop:])
		r.buf = r.buf[:n]
		r.bufOff = r.next
	}
}

func (r *Recognizer) examine(s int64) {
	i := int(s - r.bufOff)
	c := r.buf[i]
	for _, pi := range r.t.byFirst[c] {
		if r.seg[pi] == 0 {
			r.try(pi, s, i)
		}
	}
	if s <= r.t.atLimit {
		for _, pi := range r.t.byFirstAt[c] {
			if r.seg[pi] == 0 {
				r.try(pi, s, i)
			}
		}
	}
	if len(r.t.atEOF) > 0 && r.size >= 0 {
		for _, pi := range r.t.atEOF {
			p := &r.t.patterns[pi]
			if r.seg[pi] == 0 && s == r.size-p.fromEOF && p.segments[0].parts[0][0].has(c) {
				r.try(pi, s, i)
			}
		}
	}
	if len(r.waiting) > 0 {
		r.snapshot = append(r.snapshot[:0], r.waiting...)
		for _, pi := range r.snapshot {
			if p := &r.t.patterns[pi]; p.segments[r.seg[pi]].parts[0][0].has(c) {
				r.try(pi, s, i)
			}
		}
	}
}

// try matches pattern pi's awaited segment at file offset s (buf index i).
func (r *Recognizer) try(pi int, s int64, i int) {
	p := &r.t.patterns[pi]
	k := r.seg[pi]
	if s < r.minFrom[pi] || !p.rtypeOK(r.ftype) {
		return
	}
	if k == 0 {
		switch {
		case p.eof:
			if r.size < 0 || s != r.size-p.fromEOF {
				return
			}
		case !p.anyOffset:
			if s < p.offMin || s > p.offMax {
				return
			}
		}
	}
	e, _ := matchSegment(&p.segments[k], r.buf, i)
	if e < 0 {
		return
	}
	endOff := r.bufOff + int64(e)
	if k+1 < len(p.segments) {
		if k == 0 {
			r.waiting = append(r.waiting, pi)
		}
		r.seg[pi], r.minFrom[pi] = k+1, endOff
		return
	}
	if k > 0 {
		for j, w := range r.waiting {
			if w == pi {
				r.waiting = append(r.waiting[:j], r.waiting[j+1:]...)
				break
			}
		}
	}
	r.seg[pi], r.minFrom[pi] = 0, endOff
	w := (endOff - 1) / ScanBuffer
	f := r.folds[w]
	if f == nil {
		f = newFold()
		r.folds[w] = f
	}
	f.add(p.typ, endOff)
}

// Recognize runs a Recognizer over r, a file of size bytes typed ftype.
func (t *Table) Recognize(r io.Reader, size int64, ftype Type) (Type, error) {
	rec := t.NewRecognizer(size, ftype)
	if _, err := io.Copy(rec, r); err != nil {
		return Any, err
	}
	return rec.Result(), nil
}
