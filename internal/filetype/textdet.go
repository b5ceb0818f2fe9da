package filetype

// Character classes of textdet.c (from file(1)'s ascmagic.c).
const (
	cF = 0 // never in text
	cT = 1 // plain ASCII text
	cI = 2 // ISO-8859 text
	cX = 3 // non-ISO extended ASCII (Mac, IBM PC)
)

var textChars = func() (c [256]byte) {
	for b := 0; b < 256; b++ {
		switch {
		case b == 7 || b == 8 || b == 9 || b == 10 || b == 12 || b == 13 || b == 0x1b:
			c[b] = cT
		case b < 0x20 || b == 0x7f:
			c[b] = cF
		case b < 0x7f:
			c[b] = cT
		case b == 0x85:
			c[b] = cT
		case b < 0xa0:
			c[b] = cX
		default:
			c[b] = cI
		}
	}
	return c
}()

// Texttype is textdet.c's cli_texttype, which ClamAV applies to a file no
// exact magic matched: TextASCII if every byte can be in text (no NUL, no
// control character but BEL, BS, TAB, LF, FF, CR and ESC, no DEL);
// TextUTF8 if the bytes are UTF-8 sequences (lead bytes up to six-byte
// forms, not checked for overlong or surrogate forms), their ASCII all
// plain text, with at least one multi-byte sequence (a sequence cut by
// the end of buf counts if one came before); TextUTF16LE or TextUTF16BE
// as td_isutf16 decides; BinaryData otherwise.
//
// td_isutf16 reads the code units from the third byte on, whether the
// first two are a byte order mark or not. With FF FE it is little-endian,
// with FE FF or no mark big-endian. Without a mark every code unit below
// 128 must be plain text; with one, fewer than len/2 may fail. A U+FFFE
// code unit refuses it. So random binary data with no NUL pairs and no
// small control code units is typically "UTF-16BE text".
func Texttype(buf []byte) Type {
	switch {
	case isASCII(buf):
		return TextASCII
	case isUTF8(buf):
		return TextUTF8
	}
	switch isUTF16(buf) {
	case 1:
		return TextUTF16LE
	case 2:
		return TextUTF16BE
	}
	return BinaryData
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if textChars[c] == cF {
			return false
		}
	}
	return true
}

func isUTF8(b []byte) bool {
	gotone := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c&0x80 == 0:
			if textChars[c] != cT {
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

// isUTF16 is td_isutf16: 0 (not UTF-16), 1 (little-endian), 2 (big-endian).
func isUTF16(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	be, nobom := true, false
	switch {
	case b[0] == 0xff && b[1] == 0xfe:
		be = false
	case b[0] == 0xfe && b[1] == 0xff:
	default:
		nobom = true
	}
	bad := 0
	for i := 2; i+1 < len(b); i += 2 {
		var c int
		if be {
			c = int(b[i+1]) + 256*int(b[i])
		} else {
			c = int(b[i]) + 256*int(b[i+1])
		}
		if c == 0xfffe {
			return 0
		}
		if c < 128 && textChars[c] != cT {
			if nobom {
				return 0
			}
			bad++
		}
	}
	if !nobom && bad >= len(b)/2 {
		return 0
	}
	if be {
		return 2
	}
	return 1
}
