package textnorm

import (
	"io"
	"slices"
)

// action is what text_normalize_buffer does with one byte.
type action uint8

const (
	skip  action = iota // dropped
	space               // whitespace: one space for a run
	lower               // A-Z: written lower-cased
	copyB               // written as it is
)

// actions is textnorm.c's char_action table: NUL to BS, SO to US and every
// byte from 0x80 up are dropped; TAB, LF, VT, FF, CR and space are
// whitespace; A-Z are lower-cased; the rest of 0x21-0x7f (DEL included)
// is copied.
var actions = func() (a [256]action) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 0x09 && c <= 0x0d || c == ' ':
			a[c] = space
		case c < 0x20 || c >= 0x80:
			a[c] = skip
		case c >= 'A' && c <= 'Z':
			a[c] = lower
		default:
			a[c] = copyB
		}
	}
	return a
}()

// Script is ClamAV's text normalizer (textnorm.c), the state it keeps
// between buffers: whether the last byte written was the space standing
// for a run of whitespace. The zero value is ready to use.
type Script struct {
	spaceWritten bool
}

// Append normalizes src, appends the result to dst and returns it. Each
// input byte gives at most one output byte, so the result grows by at
// most len(src).
func (s *Script) Append(dst, src []byte) []byte {
	dst = slices.Grow(dst, len(src))
	n := len(dst)
	out := dst[:n+len(src)]
	sw := s.spaceWritten
	for _, c := range src {
		switch actions[c] {
		case skip:
		case space:
			if !sw {
				out[n] = ' '
				n++
			}
			sw = true
		case lower:
			out[n] = c + 32
			n++
			sw = false
		default:
			out[n] = c
			n++
			sw = false
		}
	}
	s.spaceWritten = sw
	return out[:n]
}

// Reset forgets the whitespace state, as text_normalize_reset does.
func (s *Script) Reset() { s.spaceWritten = false }

// NormalizeScript returns the script normalization of b in one piece (no
// buffer boundaries, as ClamAV for a file whose normalization fits one
// buffer).
func NormalizeScript(b []byte) []byte {
	var s Script
	return s.Append(make([]byte, 0, len(b)), b)
}

// PageSize is the size of the pieces cli_scanscript reads a file in (the
// fmap page size of ClamAV on Linux).
const PageSize = 4096

// ScanBuffer is cli_scanscript's buffer size before the overlap (SCANBUFF).
const ScanBuffer = 0x20000

// ScriptReader reads the script normalization of a file as ClamAV's
// cli_scanscript produces it: the file is read in PageSize pieces into a
// buffer of ScanBuffer+maxPatLen bytes; when the next piece might not fit,
// the buffer is matched ("flushed"), its last maxPatLen bytes are kept as
// the start of the next one, and the whitespace state is reset, so a run
// of whitespace across a flush gives two spaces. The reader yields the
// normalized stream once, without the repeated overlap; Flushes reports
// where ClamAV's buffers end, for an engine that wants to reproduce
// ClamAV's buffer boundaries too.
//
// maxPatLen is the length of the longest pattern of ClamAV's target-7
// (ASCII) matcher; 0 without target-7 signatures. Memory is bounded by
// one page and its normalization.
type ScriptReader struct {
	r         io.Reader
	norm      Script
	maxPatLen int
	inBuf     int   // bytes in ClamAV's buffer since its last flush
	produced  int64 // normalized bytes produced so far
	flushes   []int64
	page      []byte
	out       []byte // the normalization of the last page
	pending   []byte // what of out is not read yet
	err       error
}

// NewScriptReader returns a ScriptReader of r.
func NewScriptReader(r io.Reader, maxPatLen int) *ScriptReader {
	if maxPatLen < 0 {
		maxPatLen = 0
	}
	return &ScriptReader{r: r, maxPatLen: maxPatLen, page: make([]byte, PageSize)}
}

// Read implements io.Reader.
func (s *ScriptReader) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		s.fill()
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// fill reads the next page, called when nothing is pending (a full PageSize unless at the end, as
// fmap_need_off_once gives cli_scanscript) and normalizes it.
func (s *ScriptReader) fill() {
	n, err := io.ReadFull(s.r, s.page)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	if n > 0 {
		// cli_scanscript: flush when the piece might not fit.
		if s.inBuf+n > ScanBuffer+s.maxPatLen {
			s.flushes = append(s.flushes, s.produced)
			s.norm.Reset()
			s.inBuf = s.maxPatLen
		}
		s.out = s.norm.Append(s.out[:0], s.page[:n])
		s.pending = s.out
		s.inBuf += len(s.out)
		s.produced += int64(len(s.out))
	}
	if err != nil {
		s.err = err
	}
}

// Flushes returns the offsets in the normalized stream, read so far, at
// which ClamAV ended a buffer (before the final one, which ends at the
// end of the stream); the next buffer starts maxPatLen bytes earlier.
func (s *ScriptReader) Flushes() []int64 { return s.flushes }
