package signatures

import "math"

// ClamAV's byte-compare option bits (matcher-byte-comp.h, CLI_BCOMP_*).
const (
	bcompHex   = 0x0001
	bcompDec   = 0x0002
	bcompBin   = 0x0004
	bcompAuto  = 0x0008
	bcompLE    = 0x0010
	bcompBE    = 0x0020
	bcompExact = 0x0100
)

// opts is the options bitmask cli_bcomp_addpatt builds for bc: one bit
// per letter, and 'd' sets big-endian too (addpatt does; a ByteCompare
// built by hand with Decimal set gets it here as well). No endianness is
// ever assumed: without 'l' or 'b' (or 'd') no bit is set, and Check
// never holds.
func (bc *ByteCompare) opts() uint16 {
	var o uint16
	set := func(b bool, bit uint16) {
		if b {
			o |= bit
		}
	}
	set(bc.Hex, bcompHex)
	set(bc.Decimal, bcompDec|bcompBE)
	set(bc.Binary, bcompBin)
	set(bc.Auto, bcompAuto)
	set(bc.Little, bcompLE)
	set(bc.Big, bcompBE)
	set(bc.Exact, bcompExact)
	return o
}

// Check reports whether the byte compare holds at a match of its
// referenced subsignature starting at off in buf (the buffer ClamAV
// passes: see docs), as cli_bcomp_compare_check decides (CL_VIRUS).
//
// It is ClamAV 1.4.6's cli_bcomp_compare_check ported line for line,
// with C's integer types: off is ClamAV's int offset parameter (an
// int32), the buffer length and Length are its uint32_t length and
// byte_len (Length 1<<32 reads 0 bytes). The quirks that follow are
// ClamAV's:
//   - the field must start strictly after buf[0] (off+Offset > 0) and end
//     within buf (off+Offset+Length <= len(buf));
//   - text fields ('h', 'd', 'a') lose their leading white space (C
//     isspace) before conversion, and with 'e' any such white space fails;
//   - 'a' decides hex ("0x"/"0X" prefix) or decimal only for a field of 3
//     bytes or more (after trimming); shorter, it never holds;
//   - without an endianness ('h' or 'a' alone, 'i' alone) it never holds,
//     and little-endian decimal (an 'a' field without 0x and 'l') never
//     holds;
//   - little-endian hex is reordered by byte pairs from the end (an odd
//     length is padded with a leading '0', a "0x" prefix becomes "x0" or
//     "xx" and stops the conversion), a non-hex character resets what was
//     reordered so far; with 'e' the end of the conversion is compared
//     with the unpadded length;
//   - conversions are ClamAV's cli_strntol (a sign, then "0x" only
//     without a sign, digits up to the length); an overflow (LONG_MIN or
//     LONG_MAX with ERANGE) fails; a conversion that reads no digit is 0;
//   - binary fields ('i') are 1, 2, 4 or 8 bytes, unsigned but for 8
//     bytes (an int64), whatever 'e' says;
//   - every comparison must hold, in order.
//
// ClamAV tests errno == ERANGE after cli_strntol but resets errno only
// before the little-endian hex conversion: a big-endian hex or decimal
// field whose value is exactly LONG_MAX or LONG_MIN (without overflow)
// fails in ClamAV when an earlier call in the same thread left errno at
// ERANGE. That depends on the history of the process, not on the
// signature and the buffer; Check is stateless and behaves as if errno
// were 0 before each conversion (only a real overflow fails).
func (bc *ByteCompare) Check(buf []byte, off int64) bool {
	if bc == nil || buf == nil {
		return false // CL_ENULLARG
	}
	byteLen := uint32(bc.Length)
	length := uint32(len(buf))
	opt := bc.opts()
	offset := int64(int32(off)) // int offset

	// offset + bm->offset + byte_len <= length, in C's signed long.
	if !(offset+bc.Offset+int64(byteLen) <= int64(length)) {
		return false
	}
	if !(offset+bc.Offset > 0) {
		return false
	}
	offset = int64(int32(offset + bc.Offset))
	if offset < 0 || offset+int64(byteLen) > int64(len(buf)) {
		// Only for buffers of 2 GiB and more, where C's int offset
		// wraps (undefined behaviour in ClamAV): never read outside buf.
		return false
	}
	fbuf := buf[offset : offset+int64(byteLen)]

	var padLen uint32
	var buffer, tmpBuffer []byte // NUL-terminated, as ClamAV's
	if opt&0x000F&bcompBin == 0 {
		buffer = bcompNormalize(fbuf, byteLen, &padLen, opt, true)
		byteLen -= padLen
	}
	if opt&0x00F0 == bcompLE {
		if opt&0x000F&bcompBin == 0 {
			tmpBuffer = bcompNormalize(buffer, byteLen, nil, opt, false)
			if tmpBuffer == nil {
				return false // CL_EMEM: no hex or auto option
			}
		}
	}
	if opt&bcompAuto != 0 {
		opt = bcompChkHex(buffer, opt, byteLen, false)
	}

	var value, binValue int64
	switch opt & 0x00FF {
	case bcompHex | bcompLE:
		normLen := byteLen
		if byteLen != 1 && byteLen%2 != 0 {
			normLen = byteLen + 1
		}
		v, end, overflow := cliStrntol(tmpBuffer, normLen, 16)
		if overflow {
			return false
		}
		if opt&bcompExact != 0 && (end != int(byteLen) || padLen != 0) {
			return false
		}
		value = v
	case bcompHex | bcompBE, bcompDec | bcompBE:
		base := 16
		if opt&bcompDec != 0 {
			base = 10
		}
		v, end, overflow := cliStrntol(buffer, byteLen, base)
		if overflow {
			return false
		}
		if opt&bcompExact != 0 && (end != int(byteLen) || padLen != 0) {
			return false
		}
		value = v
	case bcompDec | bcompLE:
		return false // auto detection found little-endian decimal: unsupported
	case bcompBin | bcompLE, bcompBin | bcompBE:
		le := opt&bcompLE != 0
		switch byteLen {
		case 1, 2, 4, 8:
			var u uint64
			for i := range byteLen {
				if le {
					u |= uint64(fbuf[i]) << (8 * i)
				} else {
					u = u<<8 | uint64(fbuf[i])
				}
			}
			binValue = int64(u)
		default:
			return false // CL_EARG
		}
	default:
		return false // options invalid
	}

	held := false // ret = CL_CLEAN
	for _, c := range bc.Comparisons {
		v := value
		if opt&bcompBin != 0 {
			v = binValue
		}
		switch c.Op {
		case '>':
			held = v > c.Value
		case '<':
			held = v < c.Value
		case '=':
			held = v == c.Value
		default:
			return false // CL_ENULLARG
		}
		if !held {
			return false
		}
	}
	return held
}

// bcompChkHex is cli_bcomp_chk_hex: whether buffer (len bytes, at least
// 3) starts with "0x" or "0X"; with checkOnly false, opt with AUTO
// replaced by HEX or DEC. For len < 3 ClamAV tests (opt & 0x00F0) &
// CLI_BCOMP_AUTO, which is never true (AUTO is 0x0008): opt is returned
// unchanged, AUTO still set.
func bcompChkHex(buffer []byte, opt uint16, n uint32, checkOnly bool) uint16 {
	var check uint16
	if buffer == nil || n < 3 {
		if buffer != nil && n < 3 {
			if (opt&0x00F0)&bcompAuto != 0 {
				opt |= bcompDec
				opt ^= bcompAuto
			}
		}
		if checkOnly {
			return check
		}
		return opt
	}
	if buffer[0] == '0' && (buffer[1] == 'x' || buffer[1] == 'X') {
		opt |= bcompHex
		check = 1
	} else {
		opt |= bcompDec
		check = 0
	}
	opt ^= bcompAuto
	if checkOnly {
		return check
	}
	return opt
}

// bcompNormalize is cli_bcomp_normalize_buffer. With whitespaceOnly: a
// copy of buffer[:n] without its leading white space, NUL-terminated,
// the number of bytes dropped in *padLen. Otherwise, for hex or auto
// options, little-endian hex text reordered to big-endian (a NUL-terminated
// buffer of n rounded up to even, filled with '0'); for other options
// nil (ClamAV returns its NULL tmp_buffer).
func bcompNormalize(buffer []byte, n uint32, padLen *uint32, opt uint16, whitespaceOnly bool) []byte {
	if buffer == nil {
		return nil
	}
	if whitespaceOnly {
		var pad uint32
		for i := range n {
			if !cIsSpace(buffer[i]) {
				break
			}
			pad++
		}
		n -= pad
		tmp := make([]byte, n+1)
		copy(tmp, buffer[pad:pad+n])
		if padLen != nil {
			*padLen = pad
		}
		return tmp
	}
	optVal := opt & 0x000F
	if optVal&bcompHex == 0 && optVal&bcompAuto == 0 {
		return nil
	}
	normLen := n
	if n%2 != 0 {
		normLen = n + 1
	}
	tmp := make([]byte, normLen+1)
	hex := make([]byte, normLen+1)
	fill := func(b []byte) {
		for i := range b {
			b[i] = '0'
		}
	}
	fill(tmp)
	fill(hex)
	hexish := func(c byte) bool { return hexDigit(c) || c == 'x' || c == 'X' }
	if n == 1 {
		tmp[0] = buffer[0]
	} else {
		if normLen == n+1 {
			if bcompChkHex(buffer, opt, n, true) != 0 {
				copy(hex[3:], buffer[2:n])
				hex[0] = 'x'
			} else {
				copy(hex[1:], buffer[:n])
			}
		} else {
			copy(hex, buffer[:n])
			if bcompChkHex(buffer, opt, n, true) != 0 {
				hex[0] = 'x'
			}
		}
		for i := uint32(0); i < normLen; i += 2 {
			if int32(normLen)-int32(i)-2 >= 0 {
				// 0000BA -> B0000A
				if c := hex[normLen-i-2]; hexish(c) {
					tmp[i] = c
				} else {
					fill(tmp) // non-hex: zero it out, skip this pair's other nibble
					continue
				}
			}
			// 0000BA -> 0A00B0
			if c := hex[normLen-i-1]; hexish(c) {
				tmp[i+1] = c
			} else {
				fill(tmp)
			}
		}
	}
	tmp[normLen] = 0
	return tmp
}

// cliStrntol is ClamAV's cli_strntol(nptr, n, &end, base) for base 10 or
// 16, over s (which holds at least n bytes, or a NUL before them). It
// returns the value as a C long, the offset of *endptr in s, and whether
// it overflowed (the value is then LONG_MIN or LONG_MAX and ClamAV sets
// errno to ERANGE). As ClamAV's (unlike strtol), after a sign c is still
// the sign, so "0x" is skipped only without a sign; "0x" with nothing
// after it within n reads nothing; white space is skipped first; end is
// 0 when no digit is read.
func cliStrntol(s []byte, n uint32, base int) (val int64, end int, overflow bool) {
	at := func(i int) byte { // bytes past s are NUL, as past ClamAV's terminator
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	limit := int(n)
	p := 0
	var acc uint64
	neg, anyd := false, 0
	var c byte
	if n == 0 {
		goto done
	}
	for {
		c = at(p)
		if !cIsSpace(c) {
			break
		}
		p++
		if p >= limit {
			break
		}
	}
	if p >= limit {
		goto done
	}
	if c == '-' {
		neg = true
		c = at(p)
		p++
		if p >= limit {
			goto done
		}
	} else if c == '+' {
		c = at(p)
		p++
		if p >= limit {
			goto done
		}
	}
	if base == 0 || base == 16 {
		if c == '0' && p+1 < limit && (at(p+1) == 'x' || at(p+1) == 'X') {
			if p+2 >= limit {
				goto done
			}
			c = at(p + 1)
			p += 2
			base = 16
		}
	}
	if base == 0 {
		if c == '0' {
			base = 8
		} else {
			base = 10
		}
	}
	{
		var cutoff uint64 = math.MaxInt64
		if neg {
			cutoff = 1 << 63 // -(unsigned long)LONG_MIN
		}
		cutlim := int(cutoff % uint64(base))
		cutoff /= uint64(base)
		for acc, anyd = 0, 0; p < limit; p++ {
			c = at(p)
			dd, ok := digitIn(c, uint64(base))
			if !ok {
				break
			}
			d := int(dd)
			if anyd < 0 || acc > cutoff || (acc == cutoff && d > cutlim) {
				anyd = -1
			} else {
				anyd = 1
				acc = acc*uint64(base) + uint64(d)
			}
		}
		if anyd < 0 {
			overflow = true
			if neg {
				acc = 1 << 63 // LONG_MIN
			} else {
				acc = math.MaxInt64
			}
		} else if neg {
			acc = -acc
		}
	}
done:
	if anyd != 0 {
		end = p
	}
	return int64(acc), end, overflow
}
