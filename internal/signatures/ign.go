package signatures

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ignState is what ClamAV's cli_loadign keeps from one line of a file to
// the next: its line buffer, and the position of the last MD5 read. Its
// variable for the MD5 is set by a NAME:MD5 line and never reset, so
// every later line of the same file without an MD5 is checked with the
// stale pointer: the C string at that position of the buffer, which
// now holds the later line (usually not 32 hex digits: ClamAV then
// refuses the file). Vigil emulates the buffer to do the same.
type ignState struct {
	buf     [8192]byte
	hashOff int // position of the last MD5 in buf, or -1
}

func newIgnState() *ignState { return &ignState{hashOff: -1} }

// parseIgnLine parses a line of a .ign or .ign2 file as ClamAV's
// cli_loadign does: NAME, NAME:MD5 (the MD5 of the ignored signature's
// whole line), or the old three-field form whose third field is the name.
func parseIgnLine(set *Set, file string, l line, st *ignState) error {
	// fgets stores the line, its end and a NUL; cli_chomp and
	// cli_strtokenize put NULs over the line end and the colons.
	n := copy(st.buf[:len(st.buf)-2], l.text)
	st.buf[n], st.buf[n+1] = 0, 0
	for i := 0; i < n; i++ {
		if st.buf[i] == ':' && strings.Count(l.text[:i], ":") < 3 {
			st.buf[i] = 0
		}
	}
	f := cStrtokenize(l.text, ':', 4)
	if len(f) > 3 {
		return errors.New("more than 3 fields")
	}
	r := IgnoreRule{File: file, Line: l.raw}
	var md5hex string
	hasHash := false
	switch len(f) {
	case 1:
		r.Name = l.text
	case 2:
		r.Name, md5hex = f[0], f[1]
		hasHash = true
		st.hashOff = len(f[0]) + 1
	default:
		r.Name = f[2]
	}
	if r.Name == "" {
		return errors.New("no signature name (ClamAV refuses it too)")
	}
	if !hasHash && st.hashOff >= 0 {
		// The stale MD5 pointer of an earlier line of this file (at 4
		// or more: a short name's padding does not reach it).
		end := bytes.IndexByte(st.buf[st.hashOff:], 0)
		stale := string(st.buf[st.hashOff : st.hashOff+end])
		b, err := hex.DecodeString(stale)
		if len(stale) != 32 || err != nil {
			return fmt.Errorf("no MD5 after an earlier NAME:MD5 line: ClamAV reads %q at this line as its MD5 and refuses it (it keeps the earlier line's MD5 pointer)", truncate(stale))
		}
		r.MD5 = b
	} else if hasHash {
		if len(r.Name) < 3 {
			// ClamAV pads a short name to 3 bytes in its line buffer,
			// over the first byte of the MD5 that follows it.
			return fmt.Errorf("name %q shorter than 3 bytes before an MD5 (ClamAV refuses it: its padding overwrites the MD5)", r.Name)
		}
		b, err := hex.DecodeString(md5hex)
		if len(md5hex) != 32 || err != nil {
			return fmt.Errorf("MD5 %q is not 32 hex digits", truncate(md5hex))
		}
		r.MD5 = b
	}
	set.Ignores = append(set.Ignores, r)
	return nil
}

// ignoreList applies ignore rules as ClamAV's cli_chkign does. byName
// indexes the rules by their padded name (in order), so that checking a
// line costs one map lookup however many rules there are.
type ignoreList struct {
	rules  []IgnoreRule
	byName map[string][]int
}

func newIgnoreList(rules []IgnoreRule) *ignoreList {
	il := &ignoreList{rules: rules, byName: make(map[string][]int, len(rules))}
	for i := range rules {
		n := padName(rules[i].Name)
		il.byName[n] = append(il.byName[n], i)
	}
	return il
}

// normName is ClamAV's cli_signorm: a name ending in ".{...}" or
// ".UNOFFICIAL" loses that ending, and a name shorter than 3 bytes is
// padded with spaces; any other name is compared as it is.
func normName(name string) string {
	n := len(name)
	switch {
	case n > 3 && name[n-1] == '}':
		i := strings.Index(name, ".{")
		if i < 0 {
			return name
		}
		n = i
	case n > 11:
		if !strings.HasSuffix(name, ".UNOFFICIAL") {
			return name
		}
		n -= 11
	case n > 2:
		return name
	}
	s := name[:n]
	for len(s) < 3 {
		s += " "
	}
	return s
}

// padName is a rule's name as ClamAV stores it: padded to 3 bytes.
func padName(name string) string {
	for len(name) < 3 {
		name += " "
	}
	return name
}

// match returns the rule ignoring the signature name on line entry, or
// nil. ClamAV's matcher anchors the rule's name at both ends of the
// (normalized) signature name: the names must be equal.
func (il *ignoreList) match(name, entry string) *IgnoreRule {
	if il == nil {
		return nil
	}
	for _, i := range il.byName[normName(name)] {
		r := &il.rules[i]
		if r.MD5 != nil {
			sum := md5.Sum([]byte(entry))
			if !bytes.Equal(sum[:], r.MD5) {
				continue
			}
		}
		return r
	}
	return nil
}

func (il *ignoreList) ignores(name, entry string) bool { return il.match(name, entry) != nil }

func (il *ignoreList) which(name, entry string) string {
	r := il.match(name, entry)
	return fmt.Sprintf("%s:%d", r.File, r.Line)
}
