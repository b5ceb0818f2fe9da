package cli

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// safe returns s fit for a terminal, for every human (non-JSON) output of
// the CLI: text that agents supply (host names, outputs, paths) must not
// reach the administrator's terminal as control sequences (window title,
// clipboard write with OSC 52, screen clear) or as tabs and newlines that
// make fake rows in a table. It escapes, in the style of strconv.Quote so
// that the tampering shows:
//
//   - C0 controls and DEL: \t, \n, \r and \xNN for the others (\x1b for ESC);
//   - C1 controls (U+0080–U+009F), which some terminals obey like ESC
//     sequences, and the Unicode line and paragraph separators: \u0085;
//   - the bidirectional formatting characters, which reorder what is shown
//     (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069): \u202e;
//   - bytes that are not valid UTF-8: \xff;
//   - the backslash itself, as \\, so that an escape cannot be forged.
//
// Everything else, including printable non-ASCII text, is kept.
func safe(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case escapedRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// safeLines is safe for multi-line text of our own (error messages, which
// may quote what a server or agent sent): each line is escaped, the line
// breaks between them kept.
func safeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = safe(l)
	}
	return strings.Join(lines, "\n")
}

// needsEscape reports whether safe would change s.
func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == '\\' {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || escapedRune(r) {
			return true
		}
		i += n
	}
	return false
}

// escapedRune reports whether r, a valid rune of at least U+0080, is
// escaped: a C1 control, a line or paragraph separator, or a bidi
// formatting character.
func escapedRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x2028 || r == 0x2029:
		return true
	case r == 0x061c || r == 0x200e || r == 0x200f:
		return true
	case r >= 0x202a && r <= 0x202e:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// safeList escapes each element of list and joins them with sep.
func safeList(list []string, sep string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = safe(s)
	}
	return strings.Join(out, sep)
}
