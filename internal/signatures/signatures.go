package signatures

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FunctionalityLevel is the engine level that signatures' MINFL and MAXFL
// fields are compared with: ClamAV 1.4's, the version whose formats Vigil
// implements a subset of and is compared with. ClamAV skips a signature
// whose range excludes its level; Vigil refuses to load it instead.
const FunctionalityLevel = 216

// minFLWildcardSize is the functionality level ClamAV requires of hash
// signatures with a "*" size.
const minFLWildcardSize = 73

// Limits that keep a hostile definitions file from exhausting memory.
const (
	// MaxLineLength bounds one line of a signature file.
	MaxLineLength = 1 << 20
	// MaxPatternLength bounds the bytes one part of a body signature spans.
	MaxPatternLength = 1 << 16
	// MaxParts bounds the parts (pieces between variable gaps) of a body
	// signature.
	MaxParts = 256
	// MaxOffset bounds offsets and gap lengths.
	MaxOffset = 1 << 40
)

// AllowedExtraFiles are the names, besides *.hdb, *.hsb and *.ndb, that
// [Load] accepts (and ignores) in a definitions directory.
var AllowedExtraFiles = []string{"README", "README.md", "README.txt", "LICENSE", "LICENSE.txt", "COPYING", "VERSION"}

// HashAlgo is a hash signature's algorithm.
type HashAlgo uint8

// The hash algorithms, told apart by the hash's length.
const (
	MD5 HashAlgo = iota
	SHA1
	SHA256
)

func (a HashAlgo) String() string {
	switch a {
	case MD5:
		return "MD5"
	case SHA1:
		return "SHA-1"
	case SHA256:
		return "SHA-256"
	}
	return fmt.Sprintf("HashAlgo(%d)", uint8(a))
}

// AnySize is HashSig.Size for "*": the signature matches files of any size.
const AnySize = -1

// HashSig is a hash signature (.hdb or .hsb line).
type HashSig struct {
	Name string
	Algo HashAlgo
	Hash []byte // raw digest: 16, 20 or 32 bytes
	Size int64  // file size in bytes, or AnySize
	File string // file it came from
	Line int    // line number in File, from 1
}

// OffsetKind says where a body signature may start.
type OffsetKind uint8

// Offset kinds.
const (
	OffsetAny OffsetKind = iota // "*": anywhere
	OffsetAbs                   // "n" or "n,m": at n..n+m
	OffsetEOF                   // "EOF-n" or "EOF-n,m": at size-n..size-n+m
)

// Offset is where a body signature's first byte may be.
type Offset struct {
	Kind  OffsetKind
	N     int64 // n
	Shift int64 // m (0 when absent)
}

// Range returns the first and last allowed start of a match in a file of
// size bytes; ok is false when no start is possible. For OffsetAny it
// returns 0 and size. As in ClamAV, EOF-n allows no start at all in a file
// shorter than n bytes, whatever the shift: the window size-n..size-n+m is
// not cut to begin at byte 0 (EOF-n in a file of exactly n bytes starts at
// byte 0). A window reaching past the end of the file is cut there.
func (o Offset) Range(size int64) (lo, hi int64, ok bool) {
	switch o.Kind {
	case OffsetAbs:
		lo = o.N
	case OffsetEOF:
		if o.N > size {
			return 0, 0, false
		}
		lo = size - o.N
	default:
		return 0, size, true
	}
	if lo > size {
		return 0, 0, false
	}
	return lo, min(lo+o.Shift, size), true
}

func (o Offset) String() string {
	var s string
	switch o.Kind {
	case OffsetAny:
		return "*"
	case OffsetAbs:
		s = strconv.FormatInt(o.N, 10)
	case OffsetEOF:
		s = "EOF-" + strconv.FormatInt(o.N, 10)
	}
	if o.Shift != 0 {
		s += "," + strconv.FormatInt(o.Shift, 10)
	}
	return s
}

// BodySig is a body signature (.ndb line).
type BodySig struct {
	Name    string
	Offset  Offset
	Pattern *Pattern
	Hex     string // the signature's hex field as written
	File    string
	Line    int
}

// Set is a loaded set of signatures.
type Set struct {
	Hashes []HashSig
	Bodies []BodySig
	Files  []string // the signature files read, in order
}

// Len is the number of signatures ("known signatures").
func (s *Set) Len() int { return len(s.Hashes) + len(s.Bodies) }

// Add appends other's signatures to s.
func (s *Set) Add(other *Set) {
	s.Hashes = append(s.Hashes, other.Hashes...)
	s.Bodies = append(s.Bodies, other.Bodies...)
	s.Files = append(s.Files, other.Files...)
}

// Error is a problem in a signature file, at a line (0 for the whole file).
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Kind returns the signature file kind of name by its extension: "hdb",
// "hsb", "ndb", or "" when Vigil does not read such files.
func Kind(name string) string {
	switch ext := filepath.Ext(name); ext {
	case ".hdb", ".hsb", ".ndb":
		return ext[1:]
	}
	return ""
}

// Load reads every *.hdb, *.hsb and *.ndb file in dir (not recursively),
// in name order. Any other entry is an error naming it, except the files
// named in AllowedExtraFiles. A directory with no signature file is an
// error too. Error messages name the file and line.
func Load(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading signatures: %w", err)
	}
	set := &Set{}
	var unknown []string
	for _, e := range entries {
		name := e.Name()
		kind := Kind(name)
		if kind == "" {
			if !slices.Contains(AllowedExtraFiles, name) || e.IsDir() {
				unknown = append(unknown, name)
			}
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // a signature file may be a symbolic link
		if err != nil {
			return nil, fmt.Errorf("loading signatures: %w", err)
		}
		if !fi.Mode().IsRegular() {
			unknown = append(unknown, name)
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("loading signatures: %w", err)
		}
		s, err := Parse(name, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("loading signatures from %s: %w", dir, err)
		}
		set.Add(s)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("loading signatures from %s: not a signature file Vigil reads (*.hdb, *.hsb, *.ndb): %s",
			dir, strings.Join(unknown, ", "))
	}
	if len(set.Files) == 0 {
		return nil, fmt.Errorf("loading signatures from %s: no *.hdb, *.hsb or *.ndb file", dir)
	}
	return set, nil
}

// Parse reads one signature file; name (its base name is used in errors)
// says its kind by its extension.
func Parse(name string, r io.Reader) (*Set, error) {
	file := filepath.Base(name)
	kind := Kind(file)
	if kind == "" {
		return nil, &Error{File: file, Msg: "not a signature file Vigil reads (*.hdb, *.hsb, *.ndb)"}
	}
	set := &Set{Files: []string{file}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineLength)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		var err error
		if kind == "ndb" {
			var b BodySig
			b, err = parseNDB(string(line))
			b.File, b.Line = file, n
			set.Bodies = append(set.Bodies, b)
		} else {
			var h HashSig
			h, err = parseHash(string(line))
			h.File, h.Line = file, n
			set.Hashes = append(set.Hashes, h)
		}
		if err != nil {
			return nil, &Error{File: file, Line: n, Msg: err.Error()}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &Error{File: file, Line: n + 1, Msg: fmt.Sprintf("line longer than %d bytes", MaxLineLength)}
		}
		return nil, &Error{File: file, Msg: err.Error()}
	}
	return set, nil
}

// checkName checks a signature name: not empty, printable UTF-8.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty signature name")
	}
	if !utf8.ValidString(name) {
		return errors.New("signature name is not valid UTF-8")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("signature name %q contains a control character", name)
		}
	}
	return nil
}

// parseUint parses a decimal number of at most MaxOffset.
func parseUint(s, what string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty %s", what)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s %q is not a decimal number", what, s)
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > MaxOffset {
		return 0, fmt.Errorf("%s %q is too large", what, s)
	}
	return v, nil
}

// checkFL checks the optional MINFL and MAXFL fields.
func checkFL(fields []string) (minFL int64, err error) {
	if len(fields) > 0 {
		if minFL, err = parseUint(fields[0], "minimum functionality level"); err != nil {
			return 0, err
		}
		if minFL > FunctionalityLevel {
			return 0, fmt.Errorf("minimum functionality level %d is above Vigil's %d (ClamAV would skip this signature)", minFL, FunctionalityLevel)
		}
	}
	if len(fields) > 1 {
		maxFL, err := parseUint(fields[1], "maximum functionality level")
		if err != nil {
			return 0, err
		}
		if maxFL < FunctionalityLevel {
			return 0, fmt.Errorf("maximum functionality level %d is below Vigil's %d (ClamAV would skip this signature)", maxFL, FunctionalityLevel)
		}
	}
	return minFL, nil
}
