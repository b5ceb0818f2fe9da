package textnorm

import (
	"encoding/base64"
	"strings"
	"unicode"
)

// cssImages is ClamAV's html_style_block_handler (libclamav_rust,
// css_image_extract.rs): in the text of a page's <style> blocks, each
// url( data:<type>;base64,<data> ) — quotes and whitespace allowed around
// the argument, whitespace around "base64" and "," — is decoded (strict
// base64, padding required) and given to fn, in order; the first one that
// does not decode ends the extraction, as it ends ClamAV's. ClamAV walks
// the text by grapheme clusters; this walks it by characters, which
// differs only for a "(", "b" or "," followed by a combining mark.
func cssImages(css []byte, fn func([]byte)) {
	rem := strings.ToValidUTF8(string(css), "\uFFFD")
outer:
	for {
		pos := strings.Index(rem, "url")
		if pos < 0 {
			return
		}
		rem = rem[pos+len("url"):]
		// Whitespace, then "(".
		for i, r := range rem {
			if r == '(' {
				rem = rem[i+1:]
				break
			} else if unicode.IsSpace(r) {
				continue
			}
			continue outer
		}
		// The matching ")".
		depth, arg, found := 1, "", false
		for i, r := range rem {
			if r == '(' {
				depth++
			} else if r == ')' {
				if depth > 1 {
					depth--
				} else {
					arg, rem, found = rem[:i], rem[i:], true
					break
				}
			}
		}
		if !found {
			return
		}
		arg = strings.TrimSpace(strings.Trim(strings.TrimSpace(arg), `"`))
		var ok bool
		if arg, ok = strings.CutPrefix(arg, "data:"); !ok {
			continue
		}
		i := strings.IndexByte(arg, ';')
		if i < 0 {
			continue
		}
		arg = arg[i+1:]
		if arg, ok = skipSpaceTo(arg, 'b'); !ok {
			continue
		}
		if arg, ok = strings.CutPrefix(arg, "ase64"); !ok {
			continue
		}
		if arg, ok = skipSpaceTo(arg, ','); !ok {
			continue
		}
		arg = strings.TrimLeftFunc(arg, unicode.IsSpace)
		if strings.ContainsAny(arg, "\r\n") {
			return // Go's decoder skips newlines; ClamAV's refuses them
		}
		img, err := base64.StdEncoding.Strict().DecodeString(arg)
		if err != nil {
			return
		}
		fn(img)
	}
}

// skipSpaceTo skips whitespace up to and past c; false if something else
// comes first. Only whitespace (or nothing) before the end: the text is
// left as it was, as ClamAV's loop leaves it.
func skipSpaceTo(s string, c rune) (string, bool) {
	for i, r := range s {
		if r == c {
			return s[i+len(string(c)):], true
		} else if !unicode.IsSpace(r) {
			return s, false
		}
	}
	return s, true
}
