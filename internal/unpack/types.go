package unpack

import (
	"strings"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// Objects are typed by package filetype, as ClamAV types them
// (filetype.Detect on the first filetype.MagicSize bytes).

// opened reports whether Walk opens objects of type t: zip (and the
// OOXML documents ClamAV's typing tells from other zips, which it opens
// as zips too), gzip, bzip2, xz and tar.
func opened(t filetype.Type) bool {
	switch t {
	case filetype.ZIP, filetype.GZ, filetype.BZ, filetype.XZ, filetype.PosixTar, filetype.OldTar,
		filetype.OOXMLWord, filetype.OOXMLPPT, filetype.OOXMLXL, filetype.OOXMLHWP:
		return true
	}
	return false
}

// typeName is t as object paths name it: ClamAV's name without its
// "CL_TYPE_" prefix ("ZIP", "POSIX_TAR").
func typeName(t filetype.Type) string { return strings.TrimPrefix(t.String(), "CL_TYPE_") }

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}
