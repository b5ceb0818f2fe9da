package unpack

import (
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"
)

// fileBuff is ClamAV's FILEBUFF, the output chunk of its gzip and bzip2
// decompression.
const fileBuff = 8192

// maxXZDict is ClamAV's CLI_MAX_ALLOCATION: an xz dictionary larger than
// this is not allocated, and reported as Heuristics.XZ.DicSizeLimit.
const maxXZDict = 1 << 30

// decompress copies the decompressed stream r of container n into a
// spool, checking ClamAV's limits after each chunk as its gzip, bzip2 and
// xz scanners do. stopped reports that a limit ended it (ClamAV then
// scans nothing of it: the output exceeds the limit it was checked
// against); derr is the decoder's error (nil at the end of the stream);
// err is a fatal error (a temporary file's, or ctx's).
func (w *walker) decompress(n *node, r io.Reader) (sp *spool, stopped bool, derr, err error) {
	sp = w.newSpool()
	buf := make([]byte, 64<<10)
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if _, err := sp.Write(buf[:k]); err != nil {
				return sp, false, nil, fmt.Errorf("unpack: temporary file: %w", err)
			}
			if st := w.check(sp.size(), n.path); st != stOK {
				// ClamAV goes on to scan the output, whose push fails
				// on the same limit (emax_reached).
				w.emax()
				return sp, true, nil, nil
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = nil
			}
			return sp, false, rerr, nil
		}
		if err := w.ctx.Err(); err != nil {
			return sp, false, nil, err
		}
	}
}

// gunzip is ClamAV's cli_scangzip: every gzip member in turn, into one
// stream; what was decoded before an error is scanned.
func (w *walker) gunzip(n *node) error {
	zr, err := gzip.NewReader(bufio.NewReader(io.NewSectionReader(n.r, 0, n.size)))
	if err != nil {
		return nil // a bad header: ClamAV decodes nothing
	}
	sp, stopped, _, err := w.decompress(n, zr)
	defer sp.close()
	if err != nil || stopped {
		return err
	}
	_, err = w.child(n, sp, "", n.path)
	return err
}

// bunzip2 is ClamAV's cli_scanbzip: after an error (or a truncated
// stream) it scans the whole FILEBUFF chunks decoded before it.
func (w *walker) bunzip2(n *node) error {
	br := bzip2.NewReader(bufio.NewReader(io.NewSectionReader(n.r, 0, n.size)))
	sp, stopped, derr, err := w.decompress(n, br)
	defer sp.close()
	if err != nil || stopped {
		return err
	}
	if derr != nil {
		sp.truncate(sp.size() / fileBuff * fileBuff)
	}
	_, err = w.child(n, sp, "", n.path)
	return err
}

// errXZTrailing is what the xz reader says of bytes after the first
// stream, which ClamAV ignores (it stops at the end of the first stream).
const errXZTrailing = "xz: unexpected data after stream"

// unxz is ClamAV's cli_scanxz: the first stream only, scanned only if it
// decodes without error; a dictionary over 1 GiB is an alert.
func (w *walker) unxz(n *node) error {
	if d, ok := xzFirstDict(n); ok && d > maxXZDict {
		w.alert(AlertXZDictSize, n.path)
		return nil
	}
	xr, err := xz.ReaderConfig{SingleStream: true}.NewReader(bufio.NewReader(io.NewSectionReader(n.r, 0, n.size)))
	if err != nil {
		return nil
	}
	sp, stopped, derr, err := w.decompress(n, xr)
	defer sp.close()
	if err != nil || stopped {
		return err
	}
	if derr != nil && derr.Error() != errXZTrailing {
		return nil
	}
	_, err = w.child(n, sp, "", n.path)
	return err
}

// xzFirstDict reads the LZMA2 dictionary size of the first block of an
// xz stream (its block header follows the 12-byte stream header).
func xzFirstDict(n *node) (uint64, bool) {
	var h [1024]byte
	k, _ := n.r.ReadAt(h[:], 0)
	b := h[:k]
	if len(b) < 13 || b[12] == 0 {
		return 0, false
	}
	hsize := (int(b[12]) + 1) * 4
	if 12+hsize > len(b) {
		return 0, false
	}
	hdr := b[12+2 : 12+hsize-4]
	flags := b[13]
	nf := int(flags&3) + 1
	uv := func() (uint64, bool) {
		v, k := binary.Uvarint(hdr)
		if k <= 0 {
			return 0, false
		}
		hdr = hdr[k:]
		return v, true
	}
	if flags&0x40 != 0 {
		if _, ok := uv(); !ok {
			return 0, false
		}
	}
	if flags&0x80 != 0 {
		if _, ok := uv(); !ok {
			return 0, false
		}
	}
	for range nf {
		id, ok := uv()
		if !ok {
			return 0, false
		}
		psize, ok := uv()
		if !ok || psize > uint64(len(hdr)) {
			return 0, false
		}
		props := hdr[:psize]
		hdr = hdr[psize:]
		if id == 0x21 && len(props) == 1 {
			p := props[0]
			switch {
			case p > 40:
				return 0, false
			case p == 40:
				return 0xFFFFFFFF, true
			}
			return uint64(2|p&1) << (p/2 + 11), true
		}
	}
	return 0, false
}
