package filetype

import (
	"bytes"
	"unicode/utf16"
)

// MagicSize is how many leading bytes ClamAV types a file by
// (CL_FILE_MBUFF_SIZE); Detect looks at no more.
const MagicSize = 1024

// ScanBuffer is the size of the buffers ClamAV matches a file in
// (SCANBUFF); type recognition keeps one result per buffer.
const ScanBuffer = 0x20000

var builtin = func() *Table {
	t, err := ParseTable(builtinTable)
	if err != nil {
		panic("filetype: built-in table: " + err.Error())
	}
	return t
}()

// Builtin returns ClamAV 1.4's built-in file type table, compiled.
func Builtin() *Table { return builtin }

// Detect returns the type ClamAV 1.4 gives a file whose first bytes are
// head, with the built-in table: Builtin().Detect(head).
func Detect(head []byte) Type { return builtin.Detect(head) }

// IsText reports whether t is one of the four text types, the types
// ClamAV normalizes with its script normalizer.
func IsText(t Type) bool { return t >= TextASCII && t <= TextUTF16BE }

// Detect returns the type ClamAV's cli_determine_fmap_type gives a file
// whose first bytes are head (at most MagicSize are used), in its order:
//
//  1. the exact magics (magic type 0), the table's last line first;
//  2. if none, the text detection of textdet.c (Texttype);
//  3. binary data with a valid tar header checksum is a tar (old or POSIX);
//     a zip whose first local headers name OOXML parts is that OOXML type;
//  4. text and binary data are then matched against the recognition
//     patterns (magic type 1) within head: the type found, unless an SFX
//     type, replaces it;
//  5. failing that, head decoded as UTF-16 by cli_utf16toascii holding an
//     HTML pattern makes it HTMLUTF16, and head with a UTF-16 or UCS-4
//     byte order mark (or a "<" so encoded) whose decoding holds one makes
//     it HTML.
//
// Not followed: patterns at an offset from the end of the file (Detect has
// no size; ClamAV does not apply them at this step either), the full-zip
// OOXML check ClamAV makes when a zip's first three entries only suggest
// OOXML (Detect says ZIP, which ClamAV scans the same way), and the
// partition table check of a table with a magic-type-0 MBR line (the
// built-in table has none).
func (t *Table) Detect(head []byte) Type {
	if len(head) > MagicSize {
		head = head[:MagicSize]
	}
	ret := t.compareExact(head)
	switch {
	case ret == BinaryData:
		switch isTar(head) {
		case 1:
			return OldTar
		case 2:
			return PosixTar
		}
	case ret == ZIP && len(head) > 2*(zipLocalHeader+5):
		if o := ooxmlType(head); o != Any {
			return o
		}
	}
	if ret < TextASCII || ret > BinaryData {
		return ret
	}
	f := newFold()
	t.scanAll(head, ret, f)
	if found := f.result(); found >= TextASCII && !isSFX(found) {
		return found
	}
	if dec := utf16ToASCII(head); dec != nil {
		f := newFold()
		t.scanAll(dec, TextASCII, f)
		if f.result() == HTML {
			ret = HTMLUTF16
		}
	}
	if ret != HTMLUTF16 {
		if dec, ok := bomToASCII(head); ok && len(dec) > 0 {
			f := newFold()
			t.scanAll(dec, Any, f)
			if f.result() == HTML {
				ret = HTML
			}
		}
	}
	return ret
}

func isSFX(t Type) bool {
	switch t {
	case ZIPSFX, ARJSFX, RARSFX, EGGSFX, CABSFX, SevenZipSFX:
		return true
	}
	return false
}

// compareExact is cli_compare_ftm_file: the first exact magic that fits
// and matches, else the text type.
func (t *Table) compareExact(head []byte) Type {
	for _, e := range t.exacts {
		if e.offset+len(e.magic) <= len(head) && bytes.Equal(head[e.offset:e.offset+len(e.magic)], e.magic) {
			return e.typ
		}
	}
	return Texttype(head)
}

const zipLocalHeader = 30

// ooxmlType follows the first three zip local headers within head for
// the entry names that make a zip an OOXML or HWP document.
func ooxmlType(head []byte) Type {
	entries := []struct {
		name string
		typ  Type
	}{
		{"xl/", OOXMLXL}, {"ppt/", OOXMLPPT}, {"word/", OOXMLWord},
		{"Contents/content.hpf", OOXMLHWP},
	}
	magic := []byte{'P', 'K', 3, 4}
	pos, seen := 0, 0
	for range 32 {
		i := bytes.Index(head[pos:], magic)
		if i < 0 {
			return Any
		}
		name := pos + i + zipLocalHeader
		if len(head)-name <= 22 {
			return Any
		}
		for _, e := range entries {
			if bytes.HasPrefix(head[name:], []byte(e.name)) {
				return e.typ
			}
		}
		pos = name
		if seen++; seen > 2 {
			return Any
		}
	}
	return Any
}

// utf16ToASCII is cli_utf16toascii: each pair of bytes (lo, hi) becomes
// the byte lo + hi<<4, truncated to eight bits; nil under two bytes.
func utf16ToASCII(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	n := len(b) &^ 1
	out := make([]byte, n/2)
	for i := 0; i < n; i += 2 {
		out[i/2] = b[i+1]<<4 + b[i]
	}
	return out
}

// bomToASCII is encoding_detect_bom and encoding_normalize_toascii for
// the encodings of more than one byte: the text decoded, each character
// then written as the byte lo + hi<<4 of its UTF-16BE code unit, zeros
// dropped. ok is false when the first four bytes name no such encoding.
func bomToASCII(b []byte) (out []byte, ok bool) {
	if len(b) < 4 {
		return nil, false
	}
	var units []uint16
	u16 := func(be bool) {
		for i := 0; i+1 < len(b); i += 2 {
			if be {
				units = append(units, uint16(b[i])<<8|uint16(b[i+1]))
			} else {
				units = append(units, uint16(b[i+1])<<8|uint16(b[i]))
			}
		}
	}
	u32 := func(be bool) {
		for i := 0; i+3 < len(b); i += 4 {
			var r rune
			if be {
				r = rune(b[i])<<24 | rune(b[i+1])<<16 | rune(b[i+2])<<8 | rune(b[i+3])
			} else {
				r = rune(b[i+3])<<24 | rune(b[i+2])<<16 | rune(b[i+1])<<8 | rune(b[i])
			}
			if r < 0 || r > 0x10ffff {
				return // iconv stops at an invalid character
			}
			units = utf16.AppendRune(units, r)
		}
	}
	switch {
	case b[0] == 0 && b[1] == 0 && (b[2] == 0xfe && b[3] == 0xff || b[2] == 0 && b[3] == 0x3c):
		u32(true) // UCS-4BE
	case b[0] == 0 && b[1] == 0 && (b[2] == 0xff && b[3] == 0xfe || b[2] == 0x3c && b[3] == 0):
		u32(true) // "UCS4", which glibc's iconv reads big-endian
	case b[0] == 0 && b[1] == 0x3c && b[2] == 0 && b[3] == 0:
		u32(true) // "UCS-4", big-endian to glibc
	case b[0] == 0 && b[1] == 0x3c && b[2] == 0 && b[3] == 0x3f:
		u16(true)
	case b[0] == 0xff && b[1] == 0xfe && b[2] == 0 && b[3] == 0:
		u32(false)
	case b[0] == 0xff && b[1] == 0xfe:
		u16(false)
	case b[0] == 0xfe && b[1] == 0xff && b[2] == 0 && b[3] == 0:
		u32(true)
	case b[0] == 0xfe && b[1] == 0xff:
		u16(true)
	case b[0] == 0x3c && b[1] == 0 && b[2] == 0 && b[3] == 0:
		u32(false)
	case b[0] == 0x3c && b[1] == 0 && b[2] == 0x3f && b[3] == 0:
		u16(false)
	default:
		return nil, false
	}
	for _, u := range units {
		if c := byte(u>>8)<<4 + byte(u); c != 0 {
			out = append(out, c)
		}
	}
	return out, true
}

// isTar is is_tar.c: 0 if head's first 512 bytes are no tar header (the
// checksum field does not hold the sum of the header's bytes, counting the
// field as spaces), 2 for a POSIX ("ustar  \0") header, 1 for an old one.
func isTar(head []byte) int {
	const record = 512
	if len(head) < record {
		return 0
	}
	h := head[:record]
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
	// strcmp(magic, "ustar  "): the field up to its first NUL equals it.
	magic := h[257:265]
	if i := bytes.IndexByte(magic, 0); i >= 0 {
		magic = magic[:i]
	}
	if string(magic) == "ustar  " {
		return 2
	}
	return 1
}

// fromOct is is_tar.c's from_oct: leading spaces skipped, octal digits
// read, and -1 for an all-blank field or one ending on something other
// than a space or NUL.
func fromOct(f []byte) int {
	digs, i := len(f), 0
	for i < len(f) && isSpace(f[i]) {
		i++
		if digs--; digs <= 0 {
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

func isSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }
