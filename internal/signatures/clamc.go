package signatures

import (
	"math"
	"strings"
)

// The C library functions ClamAV's loader parses fields with, emulated
// byte for byte so that Vigil accepts, skips and refuses the same lines.

// cIsSpace is C's isspace in the C locale.
func cIsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// cStrtol is strtol(s, &end, 10): leading white space, an optional sign,
// decimal digits; the value saturates at the int64 range. rest is what
// follows the number (all of s when there is no digit).
func cStrtol(s string) (v int64, rest string) { return cStrtolBase(s, 10) }

// cAtoi is glibc's atoi: (int)strtol(s, NULL, 10).
func cAtoi(s string) int32 {
	v, _ := cStrtol(s)
	return int32(v)
}

// cStrtoul is strtoul(s, &end, 10) on a 64-bit system: like strtol, but
// a minus sign negates the unsigned value and overflow gives ULONG_MAX.
func cStrtoul(s string) (v uint64, rest string) {
	i := 0
	for i < len(s) && cIsSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	over := false
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		d := uint64(s[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			over = true
		} else {
			v = v*10 + d
		}
		i++
	}
	if i == start {
		return 0, s
	}
	if over {
		return math.MaxUint64, s[i:]
	}
	if neg {
		v = -v
	}
	return v, s[i:]
}

// cScanUint is sscanf's %u on 64-bit size_t (%zu) or 32-bit unsigned
// (bits 32): like strtoul, truncated to the width. ok is false when no
// digit follows the optional white space and sign.
func cScanUint(s string, bits int) (v uint64, rest string, ok bool) {
	v, rest = cStrtoul(s)
	if len(rest) == len(s) {
		return 0, s, false
	}
	if bits == 32 {
		// strtoul's result converted to unsigned int.
		v = uint64(uint32(v))
	}
	return v, rest, true
}

// cIsNumber is ClamAV's cli_isnumber: only decimal digits (the empty
// string is a number).
func cIsNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// cStrtokenize is ClamAV's cli_strtokenize: at most max fields split at
// sep, the last holding the rest of the line.
func cStrtokenize(s string, sep byte, max int) []string {
	return strings.SplitN(s, string(sep), max)
}

// cStrtok is ClamAV's cli_strtok: field n of s, fields separated by runs
// of delimiter bytes; ok is false when the field is missing or empty.
func cStrtok(s string, n int, delim string) (string, bool) {
	counter, i := 0, 0
	for ; i < len(s) && counter != n; i++ {
		if strings.IndexByte(delim, s[i]) >= 0 {
			counter++
			for i+1 < len(s) && strings.IndexByte(delim, s[i+1]) >= 0 {
				i++
			}
		}
	}
	if i >= len(s) {
		return "", false
	}
	j := i
	for j < len(s) && strings.IndexByte(delim, s[j]) < 0 {
		j++
	}
	if i == j {
		return "", false
	}
	return s[i:j], true
}

// clamVirname applies ClamAV's cli_virname: a name is cut at " (Clam)".
func clamVirname(name string) string {
	if i := strings.Index(name, " (Clam)"); i >= 0 {
		return name[:i]
	}
	return name
}

// cStrtolBase is strtol(s, &end, base) for base 10 or 0 (0: "0x" hex,
// "0" octal, else decimal): leading white space, an optional sign; the
// value saturates at the int64 range. rest is what follows the number
// (all of s when there is no digit).
func cStrtolBase(s string, base int) (v int64, rest string) {
	i := 0
	for i < len(s) && cIsSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	b := uint64(10)
	if base == 0 {
		switch {
		case i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') && i+2 < len(s) && hexDigit(s[i+2]):
			b, i = 16, i+2
		case i < len(s) && s[i] == '0':
			b = 8
		}
	}
	start := i
	var u uint64
	over := false
	for i < len(s) {
		d, ok := digitIn(s[i], b)
		if !ok {
			break
		}
		if u > (math.MaxUint64-d)/b {
			over = true
		} else {
			u = u*b + d
		}
		i++
	}
	if i == start {
		return 0, s
	}
	switch {
	case !neg && (over || u > math.MaxInt64):
		v = math.MaxInt64
	case neg && (over || u > 1<<63):
		v = math.MinInt64
	case neg:
		v = -int64(u)
	default:
		v = int64(u)
	}
	return v, s[i:]
}

func hexDigit(c byte) bool {
	_, ok := digitIn(c, 16)
	return ok
}

func digitIn(c byte, base uint64) (uint64, bool) {
	var d uint64
	switch {
	case c >= '0' && c <= '9':
		d = uint64(c - '0')
	case c >= 'a' && c <= 'z':
		d = uint64(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		d = uint64(c-'A') + 10
	default:
		return 0, false
	}
	return d, d < base
}
