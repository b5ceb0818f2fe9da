package signatures

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// parseIgnLine parses a line of a .ign or .ign2 file as ClamAV's
// cli_loadign does: NAME, NAME:MD5 (the MD5 of the ignored signature's
// whole line), or the old three-field form whose third field is the name.
func parseIgnLine(set *Set, file string, l line) error {
	f := cStrtokenize(l.text, ':', 4)
	if len(f) > 3 {
		return errors.New("more than 3 fields")
	}
	r := IgnoreRule{File: file, Line: l.raw}
	var md5hex string
	switch len(f) {
	case 1:
		r.Name = l.text
	case 2:
		r.Name, md5hex = f[0], f[1]
	default:
		r.Name = f[2]
	}
	if r.Name == "" {
		return errors.New("no signature name (ClamAV refuses it too)")
	}
	if len(f) == 2 {
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

// ignoreList applies ignore rules as ClamAV's cli_chkign does.
type ignoreList struct{ rules []IgnoreRule }

func newIgnoreList(rules []IgnoreRule) *ignoreList { return &ignoreList{rules: rules} }

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
	name = normName(name)
	for i := range il.rules {
		r := &il.rules[i]
		if name != padName(r.Name) {
			continue
		}
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
