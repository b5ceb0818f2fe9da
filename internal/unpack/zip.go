package unpack

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// Zip structures and ClamAV's constants (libclamav/unzip.c, unzip.h).
const (
	zipLocalMagic   = 0x04034b50
	zipCentralMagic = 0x02014b50
	zipEOCDMagic    = 0x06054b50
	zipSpannedMagic = 0x08074b50

	zipLocalSize   = 30
	zipCentralSize = 46

	zipFlagEncrypted  = 1 << 0
	zipFlagDataDesc   = 1 << 3
	zipFlagMasked     = 1 << 13
	zipMethodStored   = 0
	zipMethodDeflate  = 8
	zipMethodBzip2    = 12
	zipOverlapFudge   = 2 // ZIP_RECORD_OVERLAP_FUDGE_FACTOR
	zipMaxOverlapping = 5 // ZIP_MAX_NUM_OVERLAPPING_FILES
	zipNameMax        = 255
	zipBufSiz         = 8192 // BUFSIZ: unz's output chunk
)

// zipRecord is ClamAV's struct zip_record: one entry of the central
// directory, with what its local header says.
type zipRecord struct {
	name      string
	off       uint32 // local header offset
	hdrSize   uint32 // local header + name + extra
	csize     uint32
	usize     uint32
	method    uint16
	flags     uint16
	encrypted bool
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// readAt reads exactly len(p) bytes at off of n, false if they are not
// all there.
func readAt(n *node, p []byte, off int64) bool {
	if off < 0 || off+int64(len(p)) > n.size {
		return false
	}
	k, _ := n.r.ReadAt(p, off)
	return k == len(p)
}

// zipEOCD finds the central directory as cli_unzip does: the last
// end-of-central-directory record (searched back from size-22 to offset
// 1) whose directory offset leaves room for one central header; 0 when
// there is none.
func zipEOCD(n *node, fsize uint32) uint32 {
	const win = 64 << 10
	buf := make([]byte, win+20)
	hi := int64(fsize) - 22 // highest candidate offset
	for hi > 0 {
		lo := max(hi-win+1, 1)
		chunk := buf[:hi-lo+20]
		if !readAt(n, chunk, lo) {
			return 0
		}
		for c := hi; c >= lo; c-- {
			p := chunk[c-lo:]
			if le32(p) != zipEOCDMagic {
				continue
			}
			ch := le32(p[16:])
			if ch < fsize && uint64(ch)+zipCentralSize <= uint64(fsize) {
				return ch
			}
		}
		hi = lo - 1
	}
	return 0
}

// localHeader is ClamAV's parse_local_file_header. With rec non-nil it
// only fills rec (the indexing pass); otherwise it extracts and scans the
// entry. central is the entry's central header, nil when walking local
// headers. It returns the bytes the entry spans (0 to stop), whether rec
// was filled, and the status of the member's scan.
func (w *walker) localHeader(n *node, loff, zsize uint32, central []byte, detectEncrypted bool, rec *zipRecord, unzipped *int) (uint32, bool, status, error) {
	var lh [zipLocalSize]byte
	if !readAt(n, lh[:], int64(loff)) || le32(lh[:]) != zipLocalMagic {
		return 0, false, stOK, nil
	}
	flags := le16(lh[6:])
	method := le16(lh[8:])
	flen := uint32(le16(lh[26:]))
	elen := uint32(le16(lh[28:]))
	zsize -= zipLocalSize
	if zsize <= flen {
		return 0, false, stOK, nil
	}
	nb := make([]byte, min(flen, zipNameMax))
	if !readAt(n, nb, int64(loff)+zipLocalSize) {
		nb = nb[:0]
	}
	if i := bytes.IndexByte(nb, 0); i >= 0 {
		nb = nb[:i]
	}
	name := string(nb)
	zsize -= flen
	if flags&zipFlagMasked != 0 {
		return 0, false, stOK, nil
	}
	if detectEncrypted && flags&zipFlagEncrypted != 0 && w.opts.AlertEncrypted {
		w.alert(AlertEncryptedZip, memberPath(n.path, filetype.ZIP, name))
	}
	var csize, usize uint32
	if flags&zipFlagDataDesc != 0 {
		if central == nil {
			return 0, false, stOK, nil
		}
		usize, csize = le32(central[24:]), le32(central[20:])
	} else {
		usize, csize = le32(lh[22:]), le32(lh[18:])
	}
	if zsize <= elen {
		return 0, false, stOK, nil
	}
	zsize -= elen
	data := loff + zipLocalSize + flen + elen
	filled := false
	st := stOK
	if csize != 0 {
		if zsize < csize {
			return 0, false, stOK, nil
		}
		if rec != nil {
			*rec = zipRecord{name: name, off: loff, hdrSize: zipLocalSize + flen + elen, csize: csize, usize: usize, method: method, flags: flags, encrypted: flags&zipFlagEncrypted != 0}
			filled = true
		} else if flags&zipFlagEncrypted == 0 {
			// Encrypted entries: no password database, nothing extracted.
			var err error
			st, err = w.unz(n, int64(data), csize, usize, method, name, unzipped)
			if err != nil {
				return 0, false, st, err
			}
		}
		zsize -= csize
	}
	end := data + csize
	if flags&zipFlagDataDesc != 0 {
		if zsize < 12 {
			return 0, filled, st, nil
		}
		zsize -= 12
		var m [4]byte
		if readAt(n, m[:], int64(end)) && le32(m[:]) == zipSpannedMagic {
			if zsize < 4 {
				return 0, filled, st, nil
			}
			end += 4
		}
		end += 12
	}
	return end - loff, filled, st, nil
}

// centralHeader is ClamAV's parse_central_directory_file_header in its
// indexing use: it returns the offset of the next central header (0 when
// this was the last), and the entry's record if its local header gave
// one.
func (w *walker) centralHeader(n *node, coff, zsize uint32) (uint32, *zipRecord, error) {
	ch := make([]byte, zipCentralSize)
	if !readAt(n, ch, int64(coff)) || le32(ch) != zipCentralMagic {
		return 0, nil, nil
	}
	coff += zipCentralSize
	flen := uint32(le16(ch[28:]))
	elen := uint32(le16(ch[30:]))
	clen := uint32(le16(ch[32:]))
	if zsize-coff <= flen {
		return 0, nil, nil
	}
	coff += flen
	last := false
	if zsize-coff <= elen {
		last = true
	}
	coff += elen
	if !last && zsize-coff < clen {
		last = true
	}
	coff += clen
	var rec *zipRecord
	if off := le32(ch[42:]); off < zsize-zipLocalSize {
		var r zipRecord
		_, filled, _, err := w.localHeader(n, off, zsize-off, ch, true, &r, nil)
		if err != nil {
			return 0, nil, err
		}
		if filled {
			rec = &r
		}
	}
	if last {
		return 0, rec, nil
	}
	return coff, rec, nil
}

// zipIndex is ClamAV's index_the_central_directory: the records, sorted
// by local header offset, or none when entries overlap (a zip bomb of
// overlapping entries: Heuristics.Zip.OverlappingFiles).
func (w *walker) zipIndex(n *node, fsize, coff uint32) ([]zipRecord, error) {
	var recs []zipRecord
	for {
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		next, rec, err := w.centralHeader(n, coff, fsize)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			recs = append(recs, *rec)
		}
		if next == 0 {
			break
		}
		coff = next
		if w.lim.MaxFiles > 0 && len(recs) >= w.lim.MaxFiles {
			w.exceed(stMaxFiles, n.path, fmt.Sprintf("zip central directory: max-files %d reached", w.lim.MaxFiles))
			break
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].off < recs[j].off })
	overlapping := 0
	for i := 1; i < len(recs); i++ {
		prev, cur := &recs[i-1], &recs[i]
		prevSize := prev.hdrSize + prev.csize
		curSize := cur.hdrSize + cur.csize
		if math.MaxUint32-prevSize < prev.off || math.MaxUint32-curSize < cur.off {
			return nil, nil // CL_EFORMAT: nothing extracted
		}
		prevEnd, curEnd := prev.off+prevSize, cur.off+curSize
		if (cur.off >= prev.off && cur.off+zipOverlapFudge < prevEnd) || (prev.off >= cur.off && prev.off+zipOverlapFudge < curEnd) {
			overlapping++
			if cur.off == prev.off && cur.hdrSize == prev.hdrSize && cur.csize == prev.csize {
				continue // a duplicate entry, extracted once
			}
			if overlapping > zipMaxOverlapping {
				if !w.opts.NoHeuristicAlerts {
					w.alert(AlertZipOverlap, n.path)
				}
				return nil, nil
			}
		}
	}
	return recs, nil
}

// unzip is ClamAV's cli_unzip: the entries of the central directory in
// the order of their local headers, each extracted and scanned; a zip
// without a central directory is not opened. When no more than a quarter
// of the entries could be extracted, ClamAV walks the local headers from
// the start too.
func (w *walker) unzip(n *node) error {
	if n.size > math.MaxUint32 || n.size < zipCentralSize {
		return nil
	}
	fsize := uint32(n.size)
	coff := zipEOCD(n, fsize)
	unzipped, fileCount := 0, 0
	if coff != 0 {
		recs, err := w.zipIndex(n, fsize, coff)
		if err != nil {
			return err
		}
		for i, r := range recs {
			if i > 0 && r.off == recs[i-1].off && r.hdrSize == recs[i-1].hdrSize && r.csize == recs[i-1].csize {
				continue
			}
			st := stOK
			if !r.encrypted {
				if st, err = w.unz(n, int64(r.off)+int64(r.hdrSize), r.csize, r.usize, r.method, r.name, &unzipped); err != nil {
					return err
				}
			}
			fileCount++
			if w.lim.MaxFiles > 0 && unzipped >= w.lim.MaxFiles {
				w.exceed(stMaxFiles, n.path, fmt.Sprintf("zip: max-files %d entries extracted", w.lim.MaxFiles))
				st = stMaxFiles
			}
			if st != stOK {
				return nil
			}
		}
	}
	if unzipped > 0 && unzipped <= fileCount/4 {
		var lhoff uint32
		for lhoff < fsize {
			used, _, st, err := w.localHeader(n, lhoff, fsize-lhoff, nil, true, nil, &unzipped)
			if err != nil {
				return err
			}
			if used == 0 || st != stOK {
				break
			}
			lhoff += used
			if w.lim.MaxFiles > 0 && unzipped >= w.lim.MaxFiles {
				w.exceed(stMaxFiles, n.path, fmt.Sprintf("zip: max-files %d entries extracted", w.lim.MaxFiles))
				break
			}
		}
	}
	return nil
}

// unz is ClamAV's unz: extract one entry's data (csize bytes at off) to
// a spool and scan it. Stored data is cut to MaxFileSize; deflate and
// bzip2 output is cut at the last whole 8 KiB chunk within MaxFileSize.
// A corrupt stream is not scanned; a truncated one is, as far as it goes.
// unzipped counts the entries extracted (ClamAV's num_files_unzipped).
func (w *walker) unz(n *node, off int64, csize, usize uint32, method uint16, name string, unzipped *int) (status, error) {
	path := memberPath(n.path, filetype.ZIP, name)
	src := io.NewSectionReader(n.r, off, int64(csize))
	sp := w.newSpool()
	defer sp.close()
	ok := false
	switch method {
	case zipMethodStored:
		if csize < usize {
			// ClamAV first tries the data as deflate; if that works the
			// inflated data is scanned, then the stored bytes too.
			fake := *unzipped + 1
			st, err := w.unz(n, off, csize, usize, zipMethodDeflate, name, &fake)
			if err != nil || st != stOK {
				return st, err
			}
			*unzipped++
			if fake-*unzipped != 1 {
				*unzipped++ // the inflate failed: an empty file, not scanned
				return stOK, nil
			}
		}
		k := int64(csize)
		if w.lim.MaxFileSize > 0 && k > w.lim.MaxFileSize {
			k = w.lim.MaxFileSize
		}
		if _, err := io.Copy(sp, io.LimitReader(src, k)); err != nil {
			if sp.err != nil {
				return stOK, fmt.Errorf("unpack: temporary file: %w", err)
			}
			return stOK, fmt.Errorf("read %s: %w", n.path, err)
		}
		ok = true
	case zipMethodDeflate, zipMethodBzip2:
		var r io.Reader
		if method == zipMethodDeflate {
			fr := flate.NewReader(bufio.NewReader(src))
			defer fr.Close()
			r = fr
		} else {
			r = bzip2.NewReader(bufio.NewReader(src))
		}
		var err error
		ok, err = w.inflateTo(sp, r)
		if err != nil {
			return stOK, err
		}
	}
	if !ok {
		return stOK, nil
	}
	*unzipped++
	return w.child(n, sp, name, path)
}

// inflateTo decompresses r into sp in 8 KiB chunks, stopping (with
// success) before the chunk that would take the output past MaxFileSize.
// A truncated stream counts as success (zlib's Z_BUF_ERROR), a corrupt
// one does not.
func (w *walker) inflateTo(sp *spool, r io.Reader) (bool, error) {
	buf := make([]byte, zipBufSiz)
	var written int64
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			written += int64(k)
			if w.lim.MaxFileSize > 0 && written > w.lim.MaxFileSize {
				return true, nil
			}
			if _, werr := sp.Write(buf[:k]); werr != nil {
				return false, fmt.Errorf("unpack: temporary file: %w", werr)
			}
		}
		switch {
		case err == nil:
			if cerr := w.ctx.Err(); cerr != nil {
				return false, cerr
			}
			continue
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return true, nil
		}
		return false, nil
	}
}
