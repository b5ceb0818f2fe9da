package unpack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

var zipLocalSig = []byte("PK\x03\x04")

// sfx is the embedded-zip part of ClamAV's scanraw: every local file
// header ("PK\x03\x04") at an offset above 0 of an object (a
// self-extracting archive, a zip appended to anything) is taken as the
// start of a zip one level down, and that one entry is extracted
// (cli_unzip_single: its local header only, no central directory, no
// encryption alert). ClamAV keeps at most max-files + 1 such offsets.
func (w *walker) sfx(n *node) error {
	const win = 64 << 10
	buf := make([]byte, win+len(zipLocalSig)-1)
	found := 0
	var base int64 // offset of buf[0]
	carry := 0
	for base+int64(carry) < n.size {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		k, err := n.r.ReadAt(buf[carry:min(int64(len(buf)), n.size-base)], base+int64(carry))
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", n.path, err)
		}
		if k == 0 {
			return nil
		}
		chunk := buf[:carry+k]
		for i := 0; ; {
			j := bytes.Index(chunk[i:], zipLocalSig)
			if j < 0 {
				break
			}
			off := base + int64(i+j)
			i += j + 1
			if off == 0 {
				continue
			}
			if w.lim.MaxFiles > 0 && found > w.lim.MaxFiles {
				return nil
			}
			found++
			if err := w.sfxEntry(n, off); err != nil {
				return err
			}
		}
		keep := min(len(zipLocalSig)-1, len(chunk))
		copy(buf, chunk[len(chunk)-keep:])
		base += int64(len(chunk) - keep)
		carry = keep
		if int64(len(chunk)) < int64(len(buf)) && base+int64(carry) >= n.size {
			break
		}
	}
	return nil
}

// sfxEntry scans the zip entry whose local header is at off of n.
func (w *walker) sfxEntry(n *node, off int64) error {
	size := n.size - off
	if st := w.push(n.depth, size, n.path); st != stOK {
		return nil
	}
	if size > 1<<32-1 || size < zipLocalSize {
		return nil
	}
	sub := &node{r: io.NewSectionReader(n.r, off, size), size: size, path: n.path, depth: n.depth + 1}
	unzipped := 0
	_, _, _, err := w.localHeader(sub, 0, uint32(size), nil, false, nil, &unzipped)
	return err
}
