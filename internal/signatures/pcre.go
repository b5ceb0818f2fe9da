package signatures

import (
	"errors"
	"strings"
)

// pcreSyntax finds the regex errors PCRE2 certainly reports: unbalanced
// parentheses, an unterminated character class, a backslash at the end.
// ClamAV compiles every PCRE subsignature when it builds its engine and
// refuses the whole database when one does not compile; Vigil has no PCRE
// engine, so it checks only these, conservatively: a regex it accepts
// may still be refused by PCRE2 (see docs/signatures.md), but one it
// refuses is refused by PCRE2 too. Regexes in extended mode (flag x or
// an inline x option) and with callouts are not checked, as their
// comments and strings may hold anything.
func pcreSyntax(re, flags string) error {
	if strings.IndexByte(flags, 'x') >= 0 || strings.Contains(re, "(?C") {
		return nil
	}
	for i := 0; i+1 < len(re); i++ {
		if re[i] == '(' && re[i+1] == '?' {
			// An inline option group "(?...)" or "(?...:" naming x.
			for j := i + 2; j < len(re) && re[j] != ')' && re[j] != ':'; j++ {
				if re[j] == 'x' {
					return nil
				}
			}
		}
	}
	depth := 0
	for i := 0; i < len(re); i++ {
		switch c := re[i]; c {
		case '\\':
			if i+1 >= len(re) {
				return errors.New(`\ at the end of the regex (PCRE2 refuses it)`)
			}
			switch re[i+1] {
			case 'Q': // literal up to \E or the end
				if k := strings.Index(re[i+2:], `\E`); k >= 0 {
					i += 2 + k + 1
				} else {
					i = len(re)
				}
			case 'c': // \cX: X is any character
				i += 2
			default:
				i++
			}
		case '[':
			end, err := pcreClassEnd(re, i)
			if err != nil {
				return err
			}
			i = end
		case '(':
			if strings.HasPrefix(re[i:], "(?#") { // a comment, to the first ")"
				k := strings.IndexByte(re[i:], ')')
				if k < 0 {
					return errors.New("unterminated (?# comment (PCRE2 refuses it)")
				}
				i += k
				continue
			}
			depth++
		case ')':
			if depth == 0 {
				return errors.New("unmatched ) in the regex (PCRE2 refuses it)")
			}
			depth--
		}
	}
	if depth != 0 {
		return errors.New("missing ) in the regex (PCRE2 refuses it)")
	}
	return nil
}

// pcreClassEnd returns the index of the "]" closing the character class
// opened at re[start].
func pcreClassEnd(re string, start int) (int, error) {
	i := start + 1
	if i < len(re) && re[i] == '^' {
		i++
	}
	if i < len(re) && re[i] == ']' { // a "]" first is literal
		i++
	}
	for ; i < len(re); i++ {
		switch re[i] {
		case '\\':
			if i+1 < len(re) && re[i+1] == 'Q' {
				k := strings.Index(re[i+2:], `\E`)
				if k < 0 {
					return 0, errors.New("missing ] in the regex (PCRE2 refuses it)")
				}
				i += 2 + k + 1
				continue
			}
			if i+1 < len(re) && re[i+1] == 'c' { // \cX: X is any character
				i++
			}
			i++
		case '[':
			// A POSIX class "[:name:]" (or "[.x.]", "[=x=]") inside, as
			// PCRE2's check_posix_syntax finds it.
			if i+1 < len(re) && (re[i+1] == ':' || re[i+1] == '.' || re[i+1] == '=') {
				if end, ok := pcrePosixEnd(re, i+1, re[i+1]); ok {
					i = end + 1
				}
			}
		case ']':
			return i, nil
		}
	}
	return 0, errors.New("missing ] in the regex (PCRE2 refuses it)")
}

// pcrePosixEnd is PCRE2's check_posix_syntax: from the terminator
// character at re[at], the index of the terminator of "TERM]", or false
// when a "]" or a "[TERM" comes first.
func pcrePosixEnd(re string, at int, term byte) (int, bool) {
	for p := at + 1; p < len(re); p++ {
		next := byte(0)
		if p+1 < len(re) {
			next = re[p+1]
		}
		switch {
		case re[p] == '\\' && (next == ']' || next == '\\'):
			p++
		case re[p] == '[' && next == term || re[p] == ']':
			return 0, false
		case re[p] == term && next == ']':
			return p, true
		}
	}
	return 0, false
}
