package signatures

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// The layouts of ClamAV's hash files (its cli_loadhash modes).
const (
	modeHDB = iota // .hdb .hsb .hdu .hsu: HASH:SIZE:NAME[:MINFL[:MAXFL]]
	modeMDB        // .mdb .msb .mdu .msu: SIZE:HASH:NAME[:MINFL[:MAXFL]] (a PE section)
	modeFP         // .fp .sfp: HASH:SIZE:NAME[:MINFL[:MAXFL]] (an allow-list entry)
)

// parseHashLine parses a line of a hash file as ClamAV's cli_loadhash
// does, in its order: fields, functionality levels (a line outside
// Vigil's level is skipped), size, name, hash. l.text is volatile (see
// readLines): what is kept of it is cloned. A line going to set's sink
// allocates nothing.
func parseHashLine(set *Set, file string, l line, mode int, ign *ignoreList) error {
	var fields [6]string
	f := splitN(fields[:0], l.text, ':', 6)
	if len(f) < 3 {
		layout := "HASH:SIZE:NAME[:MINFL[:MAXFL]]"
		if mode == modeMDB {
			layout = "SIZE:HASH:NAME[:MINFL[:MAXFL]]"
		}
		if l.text == "" {
			return errors.New("empty line (ClamAV refuses it too; use # for comments)")
		}
		return fmt.Errorf("want %s, got %d fields", layout, len(f))
	}
	skip := func(reason string, loads bool) error {
		set.Skipped = append(set.Skipped, Skipped{File: file, Line: l.raw, Name: strings.Clone(clamVirname(f[2])), Reason: reason, ClamAVLoads: loads})
		return nil
	}
	var reqFL uint32
	if len(f) > 3 {
		reqFL = uint32(cAtoi(f[3]))
		if len(f) > 5 {
			return errors.New("more than 5 fields")
		}
		if reqFL > FunctionalityLevel {
			return skip(fmt.Sprintf("minimum functionality level %q is above %d", f[3], FunctionalityLevel), false)
		}
		if len(f) == 5 {
			if maxFL := uint32(cAtoi(f[4])); maxFL < FunctionalityLevel {
				return skip(fmt.Sprintf("maximum functionality level %q is below %d", f[4], FunctionalityLevel), false)
			}
		}
	}
	sizeField, hashField := 1, 0
	if mode == modeMDB {
		sizeField, hashField = 0, 1
	}
	var h HashSig
	if s := f[sizeField]; s != "*" {
		v, rest := cStrtoul(s)
		if rest != "" || v == 0 || v >= 0xffffffff {
			return fmt.Errorf("size %q is not a number from 1 to 4294967294 (ClamAV refuses it too)", s)
		}
		h.Size = int64(v)
	} else {
		if len(f) < 4 || reqFL < minFLWildcardSize {
			return fmt.Errorf("size \"*\" needs a minimum functionality level of at least %d in the 4th field, as in ClamAV (HASH:*:NAME:%d)",
				minFLWildcardSize, minFLWildcardSize)
		}
		h.Size = AnySize
	}
	if ign.ignores(f[2], l.text) {
		return skip("listed in an ignore list ("+ign.which(f[2], l.text)+")", false)
	}
	h.Name = clamVirname(f[2])
	if h.Name == "" {
		return errors.New("empty signature name")
	}
	hs := f[hashField]
	switch len(hs) {
	case 32:
		h.Algo = MD5
	case 40:
		h.Algo = SHA1
	case 64:
		h.Algo = SHA256
	default:
		return fmt.Errorf("hash %q has %d hex digits; want 32 (MD5), 40 (SHA-1) or 64 (SHA-256)", truncate(hs), len(hs))
	}
	var digest [32]byte
	if !decodeHex(digest[:len(hs)/2], hs) {
		return fmt.Errorf("hash %q is not hexadecimal", hs)
	}
	h.File, h.Line = file, l.raw
	if err := checkName(h.Name); err != nil {
		return skip(err.Error()+": Vigil does not report such names", true)
	}
	if mode == modeHDB && set.sink != nil {
		set.sunkHashes++
		sh := &set.sink.h
		*sh = h
		sh.Hash = set.sink.buf[:len(hs)/2]
		copy(sh.Hash, digest[:])
		return set.sink.s.AddHash(sh)
	}
	h.Name = strings.Clone(h.Name) // not the whole line
	h.Hash = bytes.Clone(digest[:len(hs)/2])
	switch mode {
	case modeMDB:
		set.SectionHashes = append(set.SectionHashes, h)
	case modeFP:
		set.Allowed = append(set.Allowed, h)
	default:
		set.Hashes = append(set.Hashes, h)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// splitN is strings.SplitN(s, string(sep), n) (ClamAV's cli_strtokenize),
// appending to dst, so that a caller's array avoids an allocation.
func splitN(dst []string, s string, sep byte, n int) []string {
	for len(dst) < n-1 {
		i := strings.IndexByte(s, sep)
		if i < 0 {
			break
		}
		dst = append(dst, s[:i])
		s = s[i+1:]
	}
	return append(dst, s)
}

// decodeHex decodes the hex digits s (upper or lower case) into dst,
// len(s)/2 bytes; false when s is not all hex digits of that length.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	bad := byte(0)
	for i := range dst {
		hi, lo := hexValues[s[2*i]], hexValues[s[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	return bad&0xf0 == 0
}

// hexValues maps a hex digit to its value and any other byte to 0xff.
var hexValues = func() (t [256]byte) {
	for c := range t {
		v, ok := hexVal(byte(c))
		if !ok {
			v = 0xff
		}
		t[c] = v
	}
	return t
}()
