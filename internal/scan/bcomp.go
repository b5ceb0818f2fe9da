package scan

import "github.com/vigil-fleet/vigil/internal/signatures"

// Byte-compare subsignatures of logical signatures.
//
// ClamAV checks them in matcher_run after the patterns of each window
// its cli_scan_fmap matches a buffer in (clamWindow bytes, each
// overlapping the previous one by the longest pattern): for each byte
// compare whose referenced subsignature has matched so far, it reads the
// window's bytes at the referenced subsignature's last match start (a
// buffer offset, used as an index into the window: in every window but
// the first, ClamAV reads other bytes than the match's), and counts one
// more match of the byte compare when ByteCompare.Check holds. The
// engine does the same at the end of the buffer, from the start of the
// referenced subsignature's last match in each window (refHist) and the
// window's bytes, read from the buffer's ReaderAt (lstate.ra) or, for a
// buffer of one window, from the matcher's own buffer. A buffer with
// neither (the normalized text of a script larger than one window,
// which ClamAV checks per flushed chunk) gets no byte-compare match.

// bcompSub is a byte-compare subsignature of a logical signature.
type bcompSub struct {
	sub, ref uint8 // its index, and the index of the subsignature it starts from
	bc       *signatures.ByteCompare
}

// refStart is the start of a referenced subsignature's last match found
// by the end of ClamAV's window win.
type refStart struct{ win, start int64 }

// maxRefHist bounds the windows remembered for one subsignature in one
// buffer (a buffer of 1 GiB has about 8,200 windows).
const maxRefHist = 1 << 14

// noteRef records a counted match of subsignature k (global index), a
// byte compare's reference, from start to end.
func (m *matcher) noteRef(k uint32, start, end int64) {
	l := &m.l
	if l.refs == nil {
		l.refs = map[uint32][]refStart{}
	}
	w := m.e.window(end)
	h := l.refs[k]
	if n := len(h); n > 0 && h[n-1].win >= w {
		h[n-1].start = max(h[n-1].start, start)
		return
	}
	if len(h) < maxRefHist {
		l.refs[k] = append(h, refStart{win: w, start: start})
	}
}

// windows calls fn with the start and length of each window ClamAV's
// cli_scan_fmap matches a buffer of size bytes in, in order, until fn
// returns false.
func (e *Engine) windows(size int64, fn func(w, start, n int64) bool) {
	step := e.windowStep()
	for w, off := int64(0), int64(0); off < size; w, off = w+1, off+step {
		n := min(size-off, clamWindow)
		if !fn(w, off, n) || n < clamWindow {
			return
		}
	}
}

// bcompMatches counts the matches of byte compare b of logical signature
// ls in the buffer of size bytes just matched.
func (m *matcher) bcompMatches(ls *logicalSig, b *bcompSub, size int64) uint32 {
	l := &m.l
	hist := l.refs[ls.sub+uint32(b.ref)]
	if len(hist) == 0 {
		return 0
	}
	var count uint32
	h := 0
	m.e.windows(size, func(w, start, n int64) bool {
		for h+1 < len(hist) && hist[h+1].win <= w {
			h++
		}
		if hist[h].win > w {
			return true // the reference has not matched yet
		}
		buf, ok := m.window(start, n)
		if !ok {
			return false
		}
		if b.bc.Check(buf, hist[h].start) {
			count++
		}
		return true
	})
	return count
}

// window returns the n bytes of the buffer just matched from start: from
// the matcher's buffer when they are all still there, else read from the
// buffer's ReaderAt.
func (m *matcher) window(start, n int64) ([]byte, bool) {
	if start >= m.base && start+n <= m.base+int64(m.n) {
		return m.buf[start-m.base : start-m.base+n], true
	}
	if m.l.ra == nil {
		return nil, false
	}
	if int64(cap(m.l.win)) < n {
		m.l.win = make([]byte, n)
	}
	b := m.l.win[:n]
	if got, _ := m.l.ra.ReadAt(b, start); int64(got) != n {
		return nil, false // the buffer shrank: nothing to compare
	}
	return b, true
}
