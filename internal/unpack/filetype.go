package unpack

import (
	"bytes"
	"encoding/hex"
	"strconv"
)

// Type is a file type as ClamAV names it, without the "CL_TYPE_" prefix:
// "ZIP", "GZ", "BZ", "XZ", "POSIX_TAR", "OLD_TAR", and for the types this
// package does not open, the name ClamAV's file typing gives ("MSEXE",
// "PDF", "TEXT_ASCII", "BINARY_DATA", ...).
type Type string

// The types this package opens.
const (
	TypeZip      Type = "ZIP"
	TypeGzip     Type = "GZ"
	TypeBzip2    Type = "BZ"
	TypeXz       Type = "XZ"
	TypePosixTar Type = "POSIX_TAR"
	TypeOldTar   Type = "OLD_TAR"
)

// TypeIgnored is what ClamAV's typing gives files it never scans at all,
// neither matching signatures (hashes included) nor opening them: MP3,
// Ogg, RealMedia, SQLite databases and journals, and a few others. Walk
// does not yield them.
const TypeIgnored Type = "IGNORED"

// Text and binary types: what ClamAV's cli_texttype says of a file no
// magic number claims.
const (
	TypeTextASCII   Type = "TEXT_ASCII"
	TypeTextUTF8    Type = "TEXT_UTF8"
	TypeTextUTF16LE Type = "TEXT_UTF16LE"
	TypeTextUTF16BE Type = "TEXT_UTF16BE"
	TypeBinaryData  Type = "BINARY_DATA"
)

// Container reports whether this package opens files of type t.
func (t Type) Container() bool {
	switch t {
	case TypeZip, TypeGzip, TypeBzip2, TypeXz, TypePosixTar, TypeOldTar:
		return true
	}
	return false
}

// HeadSize is how much of the start of a file Detect looks at (ClamAV's
// CL_FILE_MBUFF_SIZE).
const HeadSize = 1024

// clamFLevel is the functionality level of ClamAV 1.4, which decides
// which of its built-in file type signatures are loaded.
const clamFLevel = 215

type magic struct {
	off   int
	magic []byte
	typ   Type
}

// magicSigs are the built-in file type signatures of ClamAV 1.4 with
// a fixed offset (libclamav/filetypes_int.h, lines "0:..." loadable at
// functionality level 215), in the order ClamAV tries them: it prepends
// each one to a list as it loads them, so the last one listed is tried
// first. The first that matches gives the type.
var magicSigs = func() []magic {
	var out []magic
	for _, l := range ftypesInt {
		f := splitColon(l)
		if f[0] != "0" {
			continue
		}
		if len(f) > 6 {
			if n, _ := strconv.Atoi(f[6]); n > clamFLevel {
				continue
			}
			if len(f) == 8 {
				if n, _ := strconv.Atoi(f[7]); n < clamFLevel {
					continue
				}
			}
		}
		off, err := strconv.Atoi(f[1])
		if err != nil {
			panic("unpack: bad built-in file type offset: " + l)
		}
		m, err := hex.DecodeString(f[2])
		if err != nil {
			panic("unpack: bad built-in file type magic: " + l)
		}
		out = append(out, magic{off: off, magic: m, typ: Type(f[5][len("CL_TYPE_"):])})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}()

func splitColon(s string) []string {
	var out []string
	for {
		i := bytes.IndexByte([]byte(s), ':')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
}

// Detect types a file from its first bytes (at most HeadSize of them are
// used) as ClamAV's cli_determine_fmap_type does for the types this
// package opens: the fixed-offset magic numbers in ClamAV's order, then
// for binary data the tar header check (is_tar: a valid header checksum,
// "ustar" for POSIX). It does not run ClamAV's pattern-based typing
// (HTML, mail, PE by "PE\0\0", ...) nor its OOXML re-typing of zips, which
// decide between types this package does not open.
func Detect(head []byte) Type {
	if len(head) > HeadSize {
		head = head[:HeadSize]
	}
	for _, m := range magicSigs {
		if m.off+len(m.magic) <= len(head) && bytes.Equal(head[m.off:m.off+len(m.magic)], m.magic) {
			return m.typ
		}
	}
	t := textType(head)
	if t == TypeBinaryData {
		switch isTar(head) {
		case 1:
			return TypeOldTar
		case 2:
			return TypePosixTar
		}
	}
	return t
}

// textClass is ClamAV's text_chars (libclamav/textdet.c): 0 never in
// text, 1 plain ASCII, 2 ISO-8859, 3 other extended ASCII.
var textClass = func() [256]byte {
	var c [256]byte
	for i := 0x20; i < 0x7f; i++ {
		c[i] = 1
	}
	for _, b := range []byte{7, 8, 9, 10, 12, 13, 27} {
		c[b] = 1
	}
	for i := 0x80; i < 0xa0; i++ {
		c[i] = 3
	}
	c[0x85] = 1
	for i := 0xa0; i < 0x100; i++ {
		c[i] = 2
	}
	return c
}()

// textType is ClamAV's cli_texttype.
func textType(b []byte) Type {
	ascii := true
	for _, c := range b {
		if textClass[c] == 0 {
			ascii = false
			break
		}
	}
	switch {
	case ascii:
		return TypeTextASCII
	case isUTF8(b):
		return TypeTextUTF8
	}
	switch isUTF16(b) {
	case 1:
		return TypeTextUTF16LE
	case 2:
		return TypeTextUTF16BE
	}
	return TypeBinaryData
}

func isUTF8(b []byte) bool {
	gotone := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c&0x80 == 0:
			if textClass[c] != 1 {
				return false
			}
			continue
		case c&0x40 == 0:
			return false
		}
		var following int
		switch {
		case c&0x20 == 0:
			following = 1
		case c&0x10 == 0:
			following = 2
		case c&0x08 == 0:
			following = 3
		case c&0x04 == 0:
			following = 4
		case c&0x02 == 0:
			following = 5
		default:
			return false
		}
		for range following {
			i++
			if i >= len(b) {
				return gotone
			}
			if b[i]&0x80 == 0 || b[i]&0x40 != 0 {
				return false
			}
		}
		gotone = true
	}
	return gotone
}

// isUTF16 returns 0 (not UTF-16), 1 (little-endian) or 2 (big-endian).
func isUTF16(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	be, nobom := 1, false
	switch {
	case b[0] == 0xff && b[1] == 0xfe:
		be = 0
	case b[0] == 0xfe && b[1] == 0xff:
	default:
		nobom = true
	}
	bad := 0
	for i := 2; i+1 < len(b); i += 2 {
		var c int
		if be == 1 {
			c = int(b[i+1]) + 256*int(b[i])
		} else {
			c = int(b[i]) + 256*int(b[i+1])
		}
		if c == 0xfffe {
			return 0
		}
		if c < 128 && textClass[c] != 1 {
			if nobom {
				return 0
			}
			bad++
		}
	}
	if !nobom && bad >= len(b)/2 {
		return 0
	}
	return 1 + be
}

// isTar is ClamAV's is_tar (libclamav/is_tar.c): 0 not a tar header, 1 an
// old tar header, 2 a POSIX one ("ustar  " with its NUL, the GNU magic).
func isTar(b []byte) int {
	if len(b) < 512 {
		return 0
	}
	h := b[:512]
	recsum := fromOct(h[148:156])
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	for _, c := range h[148:156] {
		sum -= int(c)
	}
	sum += ' ' * 8
	if sum != recsum {
		return 0
	}
	// strcmp(magic, "ustar  "): the 8-byte field holds "ustar  \0".
	if bytes.Equal(h[257:265], []byte("ustar  \x00")) {
		return 2
	}
	return 1
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// fromOct is is_tar.c's from_oct: -1 for an all-blank or non-octal field.
func fromOct(f []byte) int {
	digs := len(f)
	i := 0
	for i < len(f) && isSpace(f[i]) {
		i++
		digs--
		if digs <= 0 {
			return -1
		}
	}
	v := 0
	for digs > 0 && i < len(f) && f[i] >= '0' && f[i] <= '7' {
		v = v<<3 | int(f[i]-'0')
		i++
		digs--
	}
	if digs > 0 && i < len(f) && f[i] != 0 && !isSpace(f[i]) {
		return -1
	}
	return v
}
