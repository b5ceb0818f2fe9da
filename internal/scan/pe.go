package scan

import (
	"io"

	"github.com/vigil-fleet/vigil/internal/exefmt"
)

// peSection is the raw data of a PE section as ClamAV reads it for its
// section hash signatures (.mdb, .msb): raw, its offset, and size, its
// size, both after ClamAV's alignment and truncation.
type peSection struct {
	raw, size int64
}

// peSections returns the sections of a PE file of size bytes read from r
// whose raw data ClamAV hashes for the section hash signatures: those with
// raw data, in header order, of the headers as cli_scanpe reads them
// (exefmt.ParsePESections). ok is false when ClamAV would not get that
// far: not a PE file, or headers it finds broken.
func peSections(r io.ReaderAt, size int64) (secs []peSection, ok bool) {
	in, err := exefmt.ParsePESections(r, size)
	if err != nil {
		return nil, false
	}
	for _, s := range in.Sections {
		if s.RawSize != 0 {
			secs = append(secs, peSection{raw: int64(s.Raw), size: int64(s.RawSize)})
		}
	}
	return secs, true
}
