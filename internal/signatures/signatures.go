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
	"unsafe"
)

// FunctionalityLevel is the engine level that signatures' MINFL and MAXFL
// fields are compared with: that of ClamAV 1.4.6, the version whose
// formats Vigil implements and is compared with. Like ClamAV, Vigil skips
// a signature whose range excludes its level (and lists it in
// Set.Skipped).
const FunctionalityLevel = 216

// minFLWildcardSize is the functionality level ClamAV requires of hash
// signatures with a "*" size.
const minFLWildcardSize = 73

// Limits, ClamAV's.
const (
	// MaxLineLength is the longest line ClamAV reads whole: its loader
	// reads lines into an 8,192-byte buffer, so a longer line is read as
	// several lines of at most 8,191 bytes (line end included). Vigil
	// reads them the same way.
	MaxLineLength = 8191
	// MaxPatternLength bounds the bytes one part of a body signature spans.
	MaxPatternLength = 1 << 16
	// MaxParts bounds the parts (pieces between variable gaps) of a body
	// signature.
	MaxParts = 256
	// MaxOffset bounds offsets and gap lengths.
	MaxOffset = 1 << 40
)

// AllowedExtraFiles are names that LoadWith ignores without listing them
// in Set.IgnoredFiles (any other file ClamAV does not read is listed).
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

	// Offsets relative to an executable's layout (target types 1, 6 and
	// 9), and macros. Range does not compute them: the engine resolves the
	// executable forms of .ndb signatures with the object's parsed
	// headers (package exefmt); VI and macros are not matched.
	OffsetEPPlus      // "EP+n": n bytes after the entry point
	OffsetEPMinus     // "EP-n": n bytes before the entry point
	OffsetSectionPlus // "Sx+n": n bytes into section x (Section), from 0
	OffsetLastSection // "SL+n": n bytes into the last section
	OffsetSection     // "SEx": anywhere in section x (Section)
	OffsetVersionInfo // "VI": in a PE's version information
	OffsetMacro       // "$n$": macro group n (N)
)

// Offset is where a body signature's first byte may be.
type Offset struct {
	Kind    OffsetKind
	N       int64  // n
	Shift   int64  // m (0 when absent)
	Section uint32 // x, for OffsetSectionPlus and OffsetSection
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
	case OffsetAny:
		return 0, size, true
	default: // relative to an executable's layout: not computed here
		return 0, 0, false
	}
	if lo > size {
		return 0, 0, false
	}
	return lo, min(lo+o.Shift, size), true
}

func (o Offset) String() string {
	var s string
	n := strconv.FormatInt(o.N, 10)
	x := strconv.FormatUint(uint64(o.Section), 10)
	switch o.Kind {
	case OffsetAny:
		return "*"
	case OffsetAbs:
		s = n
	case OffsetEOF:
		s = "EOF-" + n
	case OffsetEPPlus:
		s = "EP+" + n
	case OffsetEPMinus:
		s = "EP-" + n
	case OffsetSectionPlus:
		s = "S" + x + "+" + n
	case OffsetLastSection:
		s = "SL+" + n
	case OffsetSection:
		s = "SE" + x
	case OffsetVersionInfo:
		s = "VI"
	case OffsetMacro:
		s = "$" + n + "$"
	}
	if o.Shift != 0 {
		s += "," + strconv.FormatInt(o.Shift, 10)
	}
	return s
}

// BodySig is a body signature (.ndb line).
type BodySig struct {
	Name string
	// Target is ClamAV's target type: the buffers the signature is
	// matched against (0: every one; MatchedTarget lists those loaded).
	Target  int32
	Offset  Offset
	Pattern *Pattern
	Hex     string // the signature's hex field as written
	// OffsetText is the offset field as written ("" when the signature
	// was not read from a line): ClamAV decides by its text whether a
	// signature goes to its Boyer-Moore matcher (",0" is not no shift).
	OffsetText string
	File       string
	Line       int
}

// Set is a loaded set of signatures.
//
// Hashes and Bodies are what the engine matches. The other fields hold
// what ClamAV loads but the engine does not use yet, and what was skipped
// or ignored, so that nothing is dropped silently:
type Set struct {
	Hashes []HashSig
	Bodies []BodySig
	Files  []string // the signature files read, in order

	// SectionHashes are .mdb and .msb signatures: HashSig.Size is the
	// size of a PE section and Hash the hash of that section's bytes
	// (Size AnySize: a section of any size). A PE file with such a section
	// is detected as Name.
	SectionHashes []HashSig
	// Allowed are .fp and .sfp entries: a file whose whole content has
	// the hash and size (HashSig.Size AnySize: any size) is never
	// reported, whatever matches it. HashSig.Name is only a label.
	Allowed []HashSig
	// Logical are the .ldb (and, with LoadOptions.PUA, .ldu) logical
	// signatures ClamAV loads, each counted in ClamAVCount. The engine
	// evaluates those without LogicalSig.Unsupported; WriteDebug lists
	// the others as not matched. A Sink that is also a LogicalSink gets
	// each as it is loaded (it is kept here too, without its patterns).
	Logical []LogicalSig
	// Ignores are the .ign and .ign2 entries. Load already applies them
	// as ClamAV does (an ignored signature is not loaded, and listed in
	// Skipped); they are kept for Parse's callers and for the record.
	Ignores []IgnoreRule
	// Skipped lists every signature line not in Hashes, Bodies,
	// SectionHashes or Allowed: the lines ClamAV skips too, and the lines
	// ClamAV loads that Vigil cannot match yet.
	Skipped []Skipped
	// IgnoredFiles lists the files of a definitions directory that are
	// not read: kinds Vigil does not use, and files ClamAV does not read.
	IgnoredFiles []IgnoredFile

	// sink, while LoadTo loads, takes the hash and body signatures
	// instead of Hashes and Bodies; sunkHashes and sunkBodies count
	// what it took.
	sink                   *sinker
	sunkHashes, sunkBodies int
}

// Sink takes the signatures the engine matches as LoadTo parses them, in
// file and line order, instead of a Set keeping them: *scan.Builder is
// one. The signature passed is valid only during the call (its Name and
// Hash are reused for the next line): a Sink copies what it keeps. An
// error stops the load.
type Sink interface {
	AddHash(h *HashSig) error
	AddBody(b *BodySig) error
}

// LogicalSink is a Sink that also takes logical signatures: LoadTo gives
// it each one Set.Logical receives, when it is loaded (the pointer is
// valid only during the call). The Set then keeps the signature without
// its subsignatures' Patterns, which the sink has copied.
type LogicalSink interface {
	Sink
	AddLogical(l *LogicalSig) error
}

// sinker is a Sink with a HashSig and a digest buffer reused for every
// hash line, so that streaming a hash line allocates nothing.
type sinker struct {
	s   Sink
	h   HashSig
	buf [32]byte
}

// Skipped is a signature line that was not loaded.
type Skipped struct {
	File   string
	Line   int    // line in File, from 1
	Name   string // the signature's name, when it has one
	Reason string
	// ClamAVLoads is true when ClamAV 1.4 loads this signature (Vigil
	// cannot match it yet) and false when ClamAV skips it too.
	ClamAVLoads bool
}

// IgnoredFile is a file of a definitions directory that is not read.
type IgnoredFile struct {
	File   string
	Kind   string // its ClamAV kind ("ldb", "cdb", ...); "" when ClamAV does not read it either
	Reason string
	// ClamAVLines is the number of signature lines (not comments, not
	// blank) in a file ClamAV reads: a rough count of what it holds.
	ClamAVLines int
}

// IgnoreRule is a line of a .ign or .ign2 file: signatures named Name are
// not loaded. With MD5 set (.ign2 "NAME:MD5"), only the signature whose
// whole line (without its line end) has that MD5.
type IgnoreRule struct {
	Name string
	MD5  []byte // 16 bytes, or nil
	File string
	Line int
}

// Len is the number of signatures the engine matches ("known signatures").
func (s *Set) Len() int { return s.HashCount() + s.BodyCount() }

// HashCount is the number of hash signatures the engine matches: those in
// Hashes and those LoadTo gave to its Sink.
func (s *Set) HashCount() int { return len(s.Hashes) + s.sunkHashes }

// BodyCount is the number of body signatures the engine matches: those in
// Bodies and those LoadTo gave to its Sink.
func (s *Set) BodyCount() int { return len(s.Bodies) + s.sunkBodies }

// ClamAVCount is the number of signatures ClamAV 1.4 counts as loaded for
// the same files ("Known viruses"): what the engine matches, section
// hashes, allow-list entries, and the skipped lines ClamAV loads. Files
// in IgnoredFiles are not counted. Each logical signature counts one, as
// in ClamAV, whether the engine evaluates it or not.
func (s *Set) ClamAVCount() int {
	n := s.Len() + len(s.SectionHashes) + len(s.Allowed) + len(s.Logical)
	for _, k := range s.Skipped {
		if k.ClamAVLoads {
			n++
		}
	}
	return n
}

// NotMatched is the number of logical signatures the engine does not
// evaluate (LogicalSig.Unsupported set), which WriteDebug lists as "not
// matched".
func (s *Set) NotMatched() int {
	n := 0
	for i := range s.Logical {
		if s.Logical[i].Unsupported != "" {
			n++
		}
	}
	return n
}

// Add appends other's signatures to s.
func (s *Set) Add(other *Set) {
	s.Hashes = append(s.Hashes, other.Hashes...)
	s.Bodies = append(s.Bodies, other.Bodies...)
	s.sunkHashes += other.sunkHashes
	s.sunkBodies += other.sunkBodies
	s.Files = append(s.Files, other.Files...)
	s.SectionHashes = append(s.SectionHashes, other.SectionHashes...)
	s.Allowed = append(s.Allowed, other.Allowed...)
	s.Logical = append(s.Logical, other.Logical...)
	s.Ignores = append(s.Ignores, other.Ignores...)
	s.Skipped = append(s.Skipped, other.Skipped...)
	s.IgnoredFiles = append(s.IgnoredFiles, other.IgnoredFiles...)
}

// WriteDebug writes what was loaded, skipped and ignored, for
// `vigil scan --debug`: counts, then one line per ignored file and per
// skipped signature line.
func (s *Set) WriteDebug(w io.Writer) error {
	var b strings.Builder
	clamLoads := 0
	for _, k := range s.Skipped {
		if k.ClamAVLoads {
			clamLoads++
		}
	}
	fmt.Fprintf(&b, "signatures: %d hash, %d body matched; %d PE section hash, %d allow-list, %d ignore-list entries kept\n",
		s.HashCount(), s.BodyCount(), len(s.SectionHashes), len(s.Allowed), len(s.Ignores))
	unsupported := s.NotMatched()
	fmt.Fprintf(&b, "signatures: %d logical signatures loaded as ClamAV loads them: %d evaluated, %d not (never reported)\n", len(s.Logical), len(s.Logical)-unsupported, unsupported)
	if len(s.Logical) > 0 {
		var kinds [SubsigFuzzyImage + 1]int
		for _, l := range s.Logical {
			for _, sub := range l.Subsigs {
				kinds[sub.Kind]++
			}
		}
		fmt.Fprintf(&b, "signatures: logical subsignatures: %d content, %d byte compare, %d PCRE, %d macro, %d fuzzy image hash\n",
			kinds[SubsigContent], kinds[SubsigByteCompare], kinds[SubsigPCRE], kinds[SubsigMacro], kinds[SubsigFuzzyImage])
	}
	fmt.Fprintf(&b, "signatures: %d lines skipped (%d that ClamAV loads, %d that ClamAV skips too); %d files ignored\n",
		len(s.Skipped), clamLoads, len(s.Skipped)-clamLoads, len(s.IgnoredFiles))
	byKind := map[string]int{}
	for _, f := range s.IgnoredFiles {
		byKind[f.Kind]++
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		name := "." + k
		if k == "" {
			name = "not a ClamAV database"
		}
		fmt.Fprintf(&b, "ignored files: %s: %d\n", name, byKind[k])
	}
	for _, f := range s.IgnoredFiles {
		fmt.Fprintf(&b, "ignored file: %s: %s\n", f.File, f.Reason)
	}
	for _, l := range s.Logical {
		if l.Unsupported != "" {
			fmt.Fprintf(&b, "not matched: %s:%d: %s: %s (ClamAV loads it)\n", l.File, l.Line, l.Name, l.Unsupported)
		}
	}
	for _, k := range s.Skipped {
		who := "ClamAV skips it too"
		if k.ClamAVLoads {
			who = "ClamAV loads it"
		}
		fmt.Fprintf(&b, "skipped: %s:%d: %s: %s (%s)\n", k.File, k.Line, k.Name, k.Reason, who)
	}
	_, err := io.WriteString(w, b.String())
	return err
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

// clamKinds are the extensions ClamAV 1.4 reads in a definitions
// directory (its CLI_DBEXT), compared case-insensitively.
var clamKinds = []string{"db", "hdb", "hdu", "fp", "mdb", "mdu", "hsb", "hsu", "sfp", "msb", "msu",
	"ndb", "ndu", "ldb", "ldu", "sdb", "zmd", "rmd", "pdb", "gdb", "wdb", "cbc", "ftm", "cfg",
	"cvd", "cld", "cud", "cdb", "cat", "crb", "idb", "ioc", "yar", "yara", "pwdb", "ign", "ign2", "imp"}

// emptyRefused are the kinds of file ClamAV 1.4 refuses when empty (no
// line at all), among those Vigil does not parse.
var emptyRefused = []string{"db", "ldb", "ldu", "cdb", "ftm", "idb", "imp", "zmd", "rmd", "sdb", "pwdb"}

// ClamAVKind returns the kind of database ClamAV 1.4 reads name as (its
// extension in lower case: "hdb", "ndb", "ldb", "cvd", ...), or "" when
// ClamAV does not read such a file from a directory.
func ClamAVKind(name string) string {
	ext := strings.ToLower(filepath.Ext(name))
	if ext == "" {
		return ""
	}
	if k := ext[1:]; slices.Contains(clamKinds, k) {
		return k
	}
	return ""
}

// Kind returns the kind of signature file Vigil parses, by its extension
// (case-insensitive, like ClamAV): "hdb", "hsb", "hdu", "hsu" (hashes),
// "mdb", "msb", "mdu", "msu" (PE section hashes), "fp", "sfp" (allow
// lists), "ndb", "ndu" (body signatures), "ldb", "ldu" (logical
// signatures), "ign", "ign2" (ignore lists); "" for any other file.
func Kind(name string) string {
	switch k := ClamAVKind(name); k {
	case "hdb", "hsb", "hdu", "hsu", "mdb", "msb", "mdu", "msu", "fp", "sfp", "ndb", "ndu", "ldb", "ldu", "ign", "ign2":
		return k
	}
	return ""
}

// isPUA tells the kinds ClamAV loads only with --detect-pua.
func isPUA(kind string) bool {
	switch kind {
	case "hdu", "hsu", "mdu", "msu", "ndu", "ldu":
		return true
	}
	return false
}

// LoadOptions change what Load reads.
type LoadOptions struct {
	// PUA loads the .hdu, .hsu, .mdu, .msu, .ndu and .ldu files ("potentially
	// unwanted applications") as ClamAV does with --detect-pua. Without
	// it they are ignored and counted, as clamscan's default ignores them.
	PUA bool
}

// Load reads a definitions directory as ClamAV 1.4 does with default
// options (LoadWith with no option).
func Load(dir string) (*Set, error) { return LoadWith(dir, LoadOptions{}) }

// LoadWith reads a definitions directory (not recursively) as ClamAV 1.4
// reads it: every file whose extension ClamAV reads, .ign and .ign2 first
// (they decide which signatures of the other files are not loaded), then
// the others in name order. Lines ClamAV skips are skipped; lines it loads
// that Vigil cannot match are skipped too; both are listed in
// Set.Skipped. Files Vigil does not use are listed in Set.IgnoredFiles,
// and so are files ClamAV does not read, except those named in
// AllowedExtraFiles. What ClamAV refuses is an error naming the file and
// line, and so is a directory without any file ClamAV reads.
func LoadWith(dir string, opt LoadOptions) (*Set, error) { return load(dir, opt, nil) }

// LoadTo loads a definitions directory as LoadWith does, but gives each
// hash signature of Hashes and each body signature of Bodies to sink as
// it is parsed rather than keeping it: the Set returned has neither
// (HashCount, BodyCount and Len count them), and everything else LoadWith
// reports (lists, skipped lines, ignored files, logical signatures). The
// signatures a Set would hold are never all in memory at once. On an
// error, sink may have taken part of the directory's signatures.
func LoadTo(dir string, opt LoadOptions, sink Sink) (*Set, error) {
	if sink == nil {
		return nil, errors.New("loading signatures: no sink")
	}
	return load(dir, opt, &sinker{s: sink})
}

func load(dir string, opt LoadOptions, sink *sinker) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading signatures: %w", err)
	}
	set := &Set{sink: sink}
	defer func() { set.sink = nil }()
	var first, rest []string
	for _, e := range entries {
		name := e.Name()
		kind := ClamAVKind(name)
		switch {
		case kind == "":
			if !slices.Contains(AllowedExtraFiles, name) {
				set.IgnoredFiles = append(set.IgnoredFiles, IgnoredFile{File: name, Reason: "not a database file ClamAV reads"})
			}
		case kind == "ign" || kind == "ign2":
			first = append(first, name)
		default:
			rest = append(rest, name)
		}
	}
	if len(first)+len(rest) == 0 {
		return nil, fmt.Errorf("loading signatures from %s: no database file (ClamAV refuses such a directory too)", dir)
	}
	var ign *ignoreList
	for _, name := range append(first, rest...) {
		kind := ClamAVKind(name)
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // a signature file may be a symbolic link
		if err != nil {
			return nil, fmt.Errorf("loading signatures: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("loading signatures from %s: %s is not a regular file (ClamAV cannot read it either)", dir, name)
		}
		if Kind(name) == "" || (isPUA(kind) && !opt.PUA) {
			f, err := ignoredFile(path, name, kind, opt.PUA)
			if err != nil {
				return nil, fmt.Errorf("loading signatures from %s: %w", dir, err)
			}
			set.IgnoredFiles = append(set.IgnoredFiles, f)
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("loading signatures: %w", err)
		}
		// Parsed into the directory's Set, not a Set per file appended
		// to it: no signature is copied.
		nign := len(set.Ignores)
		err = parseInto(set, name, f, ign)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("loading signatures from %s: %w", dir, err)
		}
		if len(set.Ignores) > nign {
			ign = newIgnoreList(set.Ignores)
		}
	}
	return set, nil
}

// ignoredFile describes a file of a kind Vigil does not parse, and
// refuses it where ClamAV refuses it without reading a line: when empty.
func ignoredFile(path, name, kind string, pua bool) (IgnoredFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return IgnoredFile{}, err
	}
	if len(data) == 0 && slices.Contains(emptyRefused, kind) {
		return IgnoredFile{}, &Error{File: name, Msg: "empty file (ClamAV refuses an empty ." + kind + " file)"}
	}
	lines := 0
	for _, l := range bytes.Split(data, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' {
			lines++
		}
	}
	f := IgnoredFile{File: name, Kind: kind, ClamAVLines: lines}
	switch {
	case isPUA(kind) && !pua:
		f.Reason = "potentially unwanted applications: clamscan loads them only with --detect-pua"
	case kind == "cvd" || kind == "cld" || kind == "cud":
		f.Reason = "a ClamAV container: unpack it first"
	case kind == "cfg":
		f.Reason = "engine configuration (dconf): Vigil uses its defaults"
	case kind == "cbc":
		f.Reason = "bytecode signatures: Vigil has no bytecode engine"
	default:
		f.Reason = "a kind of signature Vigil does not use yet"
	}
	return f, nil
}

// Parse reads one signature file; name (its base name is used in errors)
// says its kind by its extension (see Kind). Parse does not apply ignore
// lists (Load does).
func Parse(name string, r io.Reader) (*Set, error) {
	set := &Set{}
	if err := parseInto(set, name, r, nil); err != nil {
		return nil, err
	}
	return set, nil
}

// isPUAOrHash tells the kinds parsed by parseHash, and the field layout.
func hashMode(kind string) (mode int, ok bool) {
	switch kind {
	case "hdb", "hsb", "hdu", "hsu":
		return modeHDB, true
	case "mdb", "msb", "mdu", "msu":
		return modeMDB, true
	case "fp", "sfp":
		return modeFP, true
	}
	return 0, false
}

// line is one line as ClamAV reads it.
type line struct {
	// text is the line without its line end, cut at a NUL byte. For the
	// hash kinds (readLines' volatile) it is valid only during the call:
	// a parser clones what it keeps of it.
	text string
	raw  int  // physical line number, from 1
	cut  bool // the line is longer than ClamAV's buffer and read in pieces
}

// parseInto reads one signature file into set: on an error, set may hold
// part of the file.
func parseInto(set *Set, name string, r io.Reader, ign *ignoreList) error {
	file := filepath.Base(name)
	kind := Kind(file)
	if kind == "" {
		return &Error{File: file, Msg: "not a kind of signature file Vigil parses (see docs/signatures.md)"}
	}
	set.Files = append(set.Files, file)
	ist := newIgnState()
	maxLine := MaxLineLength
	if kind == "ldb" || kind == "ldu" {
		maxLine = MaxLDBLineLength
	}
	_, volatile := hashMode(kind)
	n, err := readLines(r, maxLine, volatile, func(l line) error {
		msg := ""
		if l.cut {
			msg = fmt.Sprintf(" (the line is longer than %d bytes: ClamAV reads it as several lines)", maxLine)
		}
		var err error
		switch mode, isHash := hashMode(kind); {
		case isHash:
			err = parseHashLine(set, file, l, mode, ign)
		case kind == "ndb" || kind == "ndu":
			err = parseNDBLine(set, file, l, ign)
		case kind == "ldb" || kind == "ldu":
			err = parseLDBLine(set, file, l, ign)
		default:
			err = parseIgnLine(set, file, l, ist)
		}
		if err != nil {
			return &Error{File: file, Line: l.raw, Msg: err.Error() + msg}
		}
		return nil
	})
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			return se
		}
		return &Error{File: file, Msg: err.Error()}
	}
	if n == 0 && kind != "ign" && kind != "ign2" {
		return &Error{File: file, Msg: "empty file (ClamAV refuses an empty ." + kind + " file; a file of comments only loads)"}
	}
	return nil
}

// readLines reads r as ClamAV's loader does (fgets into a buffer of
// maxLine+1 bytes: 8,192 for most kinds, 32,769 for .ldb): pieces of at
// most maxLine bytes ending at a line end,
// each cut at its first NUL byte, comments ("#" first) left out, the
// trailing CR and LF bytes removed. It returns the number of pieces read,
// comments included (ClamAV refuses a file with none). With volatile, a
// line's text is not copied: it is valid only during fn.
func readLines(r io.Reader, maxLine int, volatile bool, fn func(line) error) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n, raw := 0, 1
	cont := false
	for {
		peek, err := br.Peek(maxLine)
		if len(peek) == 0 {
			if err == io.EOF || err == nil {
				return n, nil
			}
			return n, err
		}
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return n, err
		}
		piece := peek
		if i := bytes.IndexByte(peek, '\n'); i >= 0 {
			piece = peek[:i+1]
		}
		n++
		ends := piece[len(piece)-1] == '\n'
		next := !ends && len(piece) == maxLine && len(peek) == maxLine
		if next {
			if _, err := br.Peek(maxLine + 1); err != nil {
				next = false // the file ends with this piece
			}
		}
		l := line{raw: raw, cut: cont || next}
		text := piece
		if i := bytes.IndexByte(text, 0); i >= 0 {
			text = text[:i]
		}
		if len(text) == 0 || text[0] != '#' {
			for len(text) > 0 && (text[len(text)-1] == '\n' || text[len(text)-1] == '\r') {
				text = text[:len(text)-1]
			}
			if volatile {
				l.text = unsafe.String(unsafe.SliceData(text), len(text))
			} else {
				l.text = string(text)
			}
		}
		skip := len(text) > 0 && text[0] == '#'
		if _, err := br.Discard(len(piece)); err != nil {
			return n, err
		}
		if !skip {
			if err := fn(l); err != nil {
				return n, err
			}
		}
		cont = next
		if ends {
			raw++
		}
	}
}

// checkName checks a signature name: not empty, printable UTF-8.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty signature name")
	}
	ascii := true // and printable: the common case, checked fast
	for i := 0; i < len(name) && ascii; i++ {
		ascii = name[i] >= 0x20 && name[i] < 0x7f
	}
	if ascii {
		return nil
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
