package unpack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

const tarBlock = 512

// tarOctal is ClamAV's octal(): sscanf("%o") of the NUL-terminated
// field, into an int (an unsigned int reinterpreted): -1 when nothing
// parses.
func tarOctal(f []byte) int32 {
	if i := bytes.IndexByte(f, 0); i >= 0 {
		f = f[:i]
	}
	i := 0
	for i < len(f) && isSpace(f[i]) {
		i++
	}
	if i < len(f) && f[i] == '+' {
		i++
	}
	start := i
	var v uint64
	for i < len(f) && f[i] >= '0' && f[i] <= '7' {
		v = v<<3 | uint64(f[i]-'0')
		i++
	}
	if i == start {
		return -1
	}
	return int32(uint32(v))
}

// tarChecksumOK is untar.c's testchecksum: the stored sum against the
// unsigned (POSIX) and signed (legacy) sums of the header.
func tarChecksumOK(h []byte, target int32) bool {
	if target == -1 {
		return false
	}
	var posix, legacy int32
	for i, c := range h[:tarBlock] {
		if i >= 148 && i < 156 {
			posix += 32
			legacy += 32
			continue
		}
		posix += int32(c)
		legacy += int32(int8(c))
	}
	return target == posix || target == legacy
}

// untar is ClamAV's cli_untar: 512-byte blocks; a header with a bad
// checksum is skipped; regular files (and unknown types) are extracted
// and scanned, links, directories and devices are not, long-name and
// extended headers are skipped with their data. A member larger than
// the limits allow is scanned up to them (in whole blocks). The member's
// name is the header's 100-byte name field.
func (w *walker) untar(n *node, t filetype.Type) error {
	posix := t == filetype.PosixTar
	var (
		pos       int64
		inBlock   bool
		size      int64 // bytes of the current member left
		limitNear bool
		currSize  int64
		files     int
		name      string
		sp        *spool
		block     = make([]byte, tarBlock)
		br        = bufio.NewReaderSize(io.NewSectionReader(n.r, 0, n.size), 64<<10)
		rpos      int64 // where br is
		zero      = make([]byte, tarBlock)
	)
	defer func() {
		if sp != nil {
			sp.close()
		}
	}()
	flush := func() (bool, error) {
		if sp == nil {
			return true, nil
		}
		st, err := w.child(n, sp, name, memberPath(n.path, t, name))
		sp.close()
		sp = nil
		return st == stOK && err == nil, err
	}
	for {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		var nread int
		if pos < n.size {
			if rpos < pos {
				k, err := br.Discard(int(pos - rpos))
				rpos += int64(k)
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read %s: %w", n.path, err)
				}
			}
			k, err := io.ReadFull(br, block[:min(int64(tarBlock), n.size-pos)])
			rpos += int64(k)
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("read %s: %w", n.path, err)
			}
			nread = k
		}
		if !inBlock && nread == 0 {
			break
		}
		b := block[:nread]
		if nread == 0 {
			b = zero
		}
		pos += int64(nread)
		if !inBlock {
			currSize = 0
			if ok, err := flush(); !ok || err != nil {
				return err
			}
			if b[0] == 0 {
				break
			}
			if st := w.check(0, n.path); st != stOK {
				return nil
			}
			if nread < tarBlock {
				return nil
			}
			if !tarChecksumOK(b, tarOctal(b[148:156])) {
				continue
			}
			if posix && !bytes.Equal(b[257:262], []byte("ustar")) {
				return nil
			}
			directory, skip := false, false
			switch b[156] {
			case '1', '5', '2', '3', '4', '6', 'V':
				directory = true
			case 'K', 'L', 'N', 'A', 'E', 'I', 'g', 'x', 'X':
				skip = true
			default: // '0', '\0', '7', 'M' and unknown types
				files++
			}
			if directory {
				inBlock = false
				continue
			}
			if s := tarOctal(b[124:136]); s < 0 {
				skip = true
			} else {
				size = int64(s)
				switch w.check(size, n.path) {
				case stMaxFiles:
					skip = true
					limitNear = false
				case stMaxScanSize, stMaxFileSize:
					limitNear = true
				default:
					limitNear = false
				}
			}
			if skip {
				nskip := size
				if size%tarBlock != 0 || size == 0 {
					nskip = size + tarBlock - size%tarBlock
				}
				pos += nskip
				continue
			}
			nb := b[:100]
			if i := bytes.IndexByte(nb, 0); i >= 0 {
				nb = nb[:i]
			}
			name = string(nb)
			sp = w.newSpool()
			inBlock = true
		} else {
			nbytes := min(size, tarBlock)
			if nread > 0 && int64(nread) < nbytes {
				nbytes = int64(nread)
			}
			write := true
			if limitNear {
				currSize += nbytes
				if w.check(currSize, n.path) != stOK {
					write = false
				}
			}
			if write {
				if _, err := sp.Write(b[:nbytes]); err != nil {
					return fmt.Errorf("unpack: temporary file: %w", err)
				}
			}
			size -= nbytes
			if size != 0 && nread == 0 {
				size = 0
			}
		}
		if size == 0 {
			inBlock = false
		}
	}
	_, err := flush()
	return err
}
