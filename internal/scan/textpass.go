package scan

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/textnorm"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// unknownSize is the size given to the matcher for a stream whose length
// is not known before it ends (the script normalization): the matcher
// reads to the end, matches no hash signature (ClamAV hashes no script
// buffer) and no offset counted from the end (ClamAV computes none for the
// generic signatures there, so they never match).
const unknownSize = math.MaxInt64

// bufferMatches collects what one object's buffers matched: every name
// once, in the order found; without AllMatch the first only.
type bufferMatches struct {
	allMatch bool
	names    []string
}

// add takes one buffer's result and reports whether matching may stop
// (without AllMatch, a detection).
func (b *bufferMatches) add(res Result) bool {
	if !b.allMatch {
		if res.First != "" {
			b.names = []string{res.First}
			return true
		}
		return false
	}
	for _, n := range res.Signatures {
		if !containsString(b.names, n) {
			b.names = append(b.names, n)
		}
	}
	return false
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// passTargets is the set of the target types a pass matches, of those
// the engine holds signatures of.
func (e *Engine) passTargets(p textnorm.Pass) targetSet {
	return targetsOf(p.Targets) & e.targets
}

// match matches one object as ClamAV's cli_magic_scan does, following
// textnorm.Plan: its raw bytes unless it is HTML (with, for a PE file,
// its section hashes after them), and the normalized copies ClamAV makes
// of text and HTML — after the raw bytes, but for UTF-16 HTML, which
// ClamAV normalizes before its raw scan. Hash signatures are matched by
// the raw pass, so an HTML object's own digest is not looked up (ClamAV
// skips its raw scan), but the digests of its normalized files are, as
// ClamAV scans each as a file. Without AllMatch, at most one name: the
// first found.
func (s *objectScan) match(o *unpack.Object) ([]string, error) {
	if o.Size < minScanSize {
		return nil, nil // too small to scan, as cli_magic_scan decides
	}
	// What logical signatures' target descriptions see: the object, in
	// its containers (ClamAV's recursion stack, normalized layers left
	// out, so the same for the object's normalized copies).
	facts := signatures.FileFacts{Size: o.Size, Containers: o.Containers}
	s.m.l.facts = &facts
	defer func() { s.m.l.facts, s.m.l.ra = nil, nil }()
	b := &bufferMatches{allMatch: s.allMatch}
	// Whether the object is matched raw does not depend on what the raw
	// pass recognizes in it.
	first := textnorm.Plan(o.Type, filetype.Any, o.Size)
	raw := len(first) > 0 && first[0].Buffer == textnorm.Raw
	if o.Type == filetype.HTMLUTF16 {
		// cli_scanhtml_utf16 runs among the parsers before the raw scan.
		if stop, err := s.matchNormalized(o, first, b); stop || err != nil {
			return b.names, err
		}
		if raw {
			if _, _, err := s.matchRaw(o, first[0], b); err != nil {
				return nil, err
			}
		}
		return b.names, nil
	}
	recognized := filetype.Any
	if raw {
		var stop bool
		var err error
		if recognized, stop, err = s.matchRaw(o, first[0], b); stop || err != nil {
			return b.names, err
		}
	}
	_, err := s.matchNormalized(o, textnorm.Plan(o.Type, recognized, o.Size), b)
	return b.names, err
}

// matchRaw matches the object's bytes as pass p (the plan's first, raw),
// and a PE file's section hashes, and returns the type recognized in a TextASCII object (the HTML or mail
// ClamAV's raw scan recognizes in it), and whether matching may stop.
func (s *objectScan) matchRaw(o *unpack.Object, p textnorm.Pass, b *bufferMatches) (filetype.Type, bool, error) {
	var r io.Reader = io.NewSectionReader(o.R, 0, o.Size)
	var rec *filetype.Recognizer
	if o.Type == filetype.TextASCII {
		// ClamAV's raw scan of a TextASCII file recognizes types in it:
		// HTML found, the file is normalized as HTML.
		rec = filetype.Builtin().NewRecognizer(o.Size, filetype.Any)
		r = io.TeeReader(r, rec)
	}
	s.m.setExe(o)
	s.m.l.ra = o.R
	res, err := s.m.scan(s.ctx, r, o.Size, s.e.passTargets(p), false)
	s.m.clearExe()
	if err != nil {
		return filetype.Any, false, err
	}
	recognized := filetype.Any
	if rec != nil {
		recognized = rec.Result()
	}
	if b.add(res) {
		return recognized, true, nil
	}
	if o.Type == filetype.MSEXE && (s.allMatch || len(b.names) == 0) {
		b.names = s.e.objs.sectionMatches(b.names, o.R, o.Size, s.allMatch)
		if !s.allMatch && len(b.names) > 0 {
			b.names = b.names[:1]
			return recognized, true, nil
		}
	}
	return recognized, false, nil
}

// matchNormalized matches the buffers of plan after the first raw one
// (matchRaw's) that take signatures the engine holds, in the plan's
// order, and reports whether matching may stop. A second raw pass (mail:
// targets 0 and 4) matches the raw bytes again with the signatures of
// the targets the first did not take (target 0 found all it could).
func (s *objectScan) matchNormalized(o *unpack.Object, plan []textnorm.Pass, b *bufferMatches) (bool, error) {
	var html []textnorm.Pass
	for i, p := range plan {
		ts := s.e.passTargets(p)
		if ts == 0 {
			continue
		}
		switch p.Buffer {
		case textnorm.Raw:
			if i == 0 {
				continue // matchRaw's
			}
			if ts &^= s.e.passTargets(plan[0]); ts == 0 {
				continue
			}
			s.m.l.ra = o.R
			res, err := s.m.scan(s.ctx, io.NewSectionReader(o.R, 0, o.Size), o.Size, ts, false)
			if err != nil {
				return false, err
			}
			if b.add(res) {
				return true, nil
			}
		case textnorm.ScriptText:
			r := textnorm.NewScriptReader(io.NewSectionReader(o.R, 0, o.Size), 0)
			s.m.l.ra = nil // the normalized text is not kept
			res, err := s.m.scan(s.ctx, r, unknownSize, ts, false)
			if err != nil {
				return false, err
			}
			if b.add(res) {
				return true, nil
			}
		default:
			html = append(html, p)
		}
	}
	if len(html) == 0 {
		return false, nil
	}
	return s.matchHTML(o, html, b)
}

// matchHTML normalizes the HTML object o as cli_scanhtml does, into
// temporary files (memory stays bounded whatever the page's size), and
// matches each buffer of passes as a file of its own, in ClamAV's order:
// nocomment.html, notags.html, the scripts.
func (s *objectScan) matchHTML(o *unpack.Object, passes []textnorm.Pass, b *bufferMatches) (bool, error) {
	var in io.Reader = io.NewSectionReader(o.R, 0, o.Size)
	if passes[0].UTF16Decoded {
		in = textnorm.UTF16ToASCIIReader(in)
	}
	files := map[textnorm.Buffer]*spool{}
	defer func() {
		for _, f := range files {
			f.close()
		}
	}()
	var out textnorm.HTMLOutputs
	for _, p := range passes {
		f, err := newSpool()
		if err != nil {
			return false, err
		}
		files[p.Buffer] = f
		switch p.Buffer {
		case textnorm.HTMLNoComment:
			out.NoComment = f.w
		case textnorm.HTMLNoTags:
			out.NoTags = f.w
		case textnorm.HTMLScript:
			out.Script = f.w
		}
	}
	if err := textnorm.NormalizeHTML(in, out); err != nil {
		return false, fmt.Errorf("normalizing %s as HTML: %w", o.Path, err)
	}
	for _, p := range passes {
		f := files[p.Buffer]
		n, err := f.finish()
		if err != nil {
			return false, err
		}
		// A normalized HTML file is a layer of its own, of its size.
		facts := *s.m.l.facts
		facts.Size = n
		s.m.l.facts = &facts
		s.m.l.ra = f.f
		res, err := s.m.scan(s.ctx, io.NewSectionReader(f.f, 0, n), n, s.e.passTargets(p), false)
		if err != nil {
			return false, err
		}
		if len(res.Signatures) > 0 && s.allow && s.e.objs.allowed(f.f, n) {
			// The normalized file is a layer of ClamAV's recursion stack,
			// which cli_check_fp checks with the others: a detection in
			// a buffer on the allow list is dropped.
			continue
		}
		if b.add(res) {
			return true, nil
		}
	}
	return false, nil
}

// spool is a temporary file holding one normalized buffer, unlinked as
// soon as it is created.
type spool struct {
	f *os.File
	w *bufio.Writer
}

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "vigil-norm-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file for a normalized buffer: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("temporary file for a normalized buffer: %w", err)
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// finish flushes the buffer and returns its size.
func (s *spool) finish() (int64, error) {
	if err := s.w.Flush(); err != nil {
		return 0, fmt.Errorf("writing a normalized buffer: %w", err)
	}
	n, err := s.f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("writing a normalized buffer: %w", err)
	}
	return n, nil
}

func (s *spool) close() { s.f.Close() }
