package signatures

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// MaxLDBLineLength is the longest .ldb line ClamAV reads whole: its
// logical-signature loader reads lines into a 32,769-byte buffer
// (CLI_DEFAULT_LSIG_BUFSIZE + 1), so a longer line is read as several.
const MaxLDBLineLength = 32768

// LogicalSig is a logical signature (.ldb or .ldu line):
// NAME;TARGETDESCRIPTION;LOGIC;SUBSIG0[;SUBSIG1...].
//
// They are parsed, checked and counted as ClamAV loads them. To evaluate
// one, an engine (internal/scan) computes for each subsignature i the
// number of matches in the buffer as ClamAV counts them, checks
// Logic.Eval(counts), then Target.Allows and the rest of the target
// description, as docs/signatures.md describes. Those whose Unsupported
// is set are never reported, and listed as not matched.
type LogicalSig struct {
	Name      string // cut at " (Clam)", as ClamAV cuts it
	Target    TargetDesc
	Logic     *Expr
	LogicText string // the expression as written
	Subsigs   []Subsig
	File      string
	Line      int
	// Unsupported says why Vigil does not evaluate this signature (a
	// PCRE, a fuzzy image hash, a macro, a byte compare, a target type
	// the engine does not match, a HandlerType...), or "".
	Unsupported string
}

// TargetDesc is a logical signature's target description block.
type TargetDesc struct {
	Target int32 // ClamAV's target type (0 any, 1 PE, ... 14)
	// Engine is the functionality-level range (nil: any level).
	Engine *Range
	// FileSize, EntryPoint and NumberOfSections restrict the file's size,
	// its entry point (executables) and its number of sections (PE, ELF,
	// Mach-O); nil: no restriction. Bounds are inclusive.
	FileSize, EntryPoint, NumberOfSections *Range
	// Container is the type the file's direct container must have
	// (filetype.Any: the file is scanned on its own, in no container);
	// nil: no condition. HandlerType, when set, makes a match rescan the
	// file as that type instead of reporting it.
	Container, HandlerType *filetype.Type
	// Intermediates are the types the containers above the file must
	// have, the outermost first and the direct container last
	// (filetype.Any matches any type); nil: no condition.
	Intermediates []filetype.Type
	// IconGroup1 and IconGroup2 name icon groups of a .idb file (PE only).
	IconGroup1, IconGroup2 string
}

// Range is an inclusive range of unsigned 32-bit numbers.
type Range struct{ Min, Max uint32 }

// SubsigKind says what a subsignature is.
type SubsigKind uint8

// Subsignature kinds.
const (
	SubsigContent     SubsigKind = iota // [OFFSET:]HEX[::MODIFIERS], the .ndb body syntax
	SubsigByteCompare                   // N(>>OFFSET#OPTIONSLEN#COMPARISONS)
	SubsigPCRE                          // [OFFSET:]TRIGGER/REGEX/[FLAGS]
	SubsigMacro                         // ${MIN-MAX}GROUP$
	SubsigFuzzyImage                    // fuzzy_img#HASH[#DISTANCE]
)

func (k SubsigKind) String() string {
	switch k {
	case SubsigContent:
		return "content"
	case SubsigByteCompare:
		return "byte compare"
	case SubsigPCRE:
		return "PCRE"
	case SubsigMacro:
		return "macro"
	case SubsigFuzzyImage:
		return "fuzzy image hash"
	}
	return fmt.Sprintf("SubsigKind(%d)", uint8(k))
}

// Modifiers are a content subsignature's "::" options, as ClamAV applies
// them (ACPATT_OPTION_*):
//   - NoCase ("i"): the pattern's fixed bytes that are ASCII letters
//     match either case (ClamAV compares tolower of the file's byte);
//     nibbles, "??" and alternatives are unchanged;
//   - Wide ("w"): the pattern is matched in UTF-16LE: each byte of the
//     hex (fixed, nibble, "??", inside alternatives) is followed by 00;
//     gaps keep their numbers ("{4}" is still 4 bytes);
//   - ASCII ("a"): with Wide, the plain pattern is matched too (either
//     form counts as a match of the subsignature); alone it changes
//     nothing;
//   - FullWord ("f"): the match must not be preceded or followed by an
//     alphanumeric byte: ClamAV wraps the hex as "(W)HEX(W)".
type Modifiers struct{ NoCase, Wide, ASCII, FullWord bool }

func (m Modifiers) String() string {
	s := ""
	if m.NoCase {
		s += "i"
	}
	if m.Wide {
		s += "w"
	}
	if m.FullWord {
		s += "f"
	}
	if m.ASCII {
		s += "a"
	}
	return s
}

// Subsig is one subsignature of a logical signature.
type Subsig struct {
	Kind SubsigKind
	Raw  string // as written

	// Content and PCRE: where a match may start (ClamAV's offset forms;
	// OffsetText "*" when absent). Offset is meaningful when
	// OffsetUnsupported is "" (EP, S, SE, SL, VI and macro offsets are
	// parsed and kept in OffsetText only).
	OffsetText        string
	Offset            Offset
	OffsetUnsupported string

	// Content.
	Hex       string
	Modifiers Modifiers
	// Patterns are what ClamAV adds to its matcher: the wide form, the
	// plain form, or both (Modifiers.Wide with ASCII: the wide one
	// first), with NoCase already applied. A match of any of them is a
	// match of the subsignature. With FullWord they are the hex inside
	// ClamAV's "(W)" anchors, which the matcher checks itself (no ASCII
	// letter or digit just before or after a match: see
	// docs/signatures.md). Nil when Unsupported is set.
	Patterns []*Pattern

	ByteCompare *ByteCompare // SubsigByteCompare
	PCRE        *PCRESubsig  // SubsigPCRE
	Macro       *Macro       // SubsigMacro
	FuzzyHash   string       // SubsigFuzzyImage: 16 hex digits

	// Unsupported says why Vigil's matcher cannot evaluate this
	// subsignature, or "".
	Unsupported string
}

// PCRESubsig is a PCRE subsignature: Regex is tried only when Trigger,
// a logical expression over the earlier subsignatures, is true.
type PCRESubsig struct {
	Trigger     string
	TriggerExpr *Expr
	Regex       string
	Flags       string // any of "ismxAEU" (PCRE2 options) and "gre" (ClamAV's global, rolling, encompass)
}

// Macro is a macro subsignature "${MIN-MAX}GROUP$".
type Macro struct{ Min, Max, Group uint32 }

// ByteCompare is a byte-compare subsignature
// "SUBSIG(>>OFFSET#OPTIONSLENGTH#COMPARISON[,COMPARISON])": at each match
// of subsignature Ref, read Length bytes at the match's offset plus
// Offset, decode them as Options say, and compare.
type ByteCompare struct {
	Ref    int16 // the subsignature whose matches it starts from
	Offset int64 // bytes from the start of Ref's match (negative for "<<")
	// Options: 'h' hex text, 'd' decimal text, 'a' hex or decimal
	// text, 'i' binary; 'l' little-endian, 'b' big-endian; 'e' exactly
	// Length bytes.
	Hex, Decimal, Auto, Binary, Little, Big, Exact bool
	Length                                         uint64
	Comparisons                                    []Comparison // one or two, all must hold
}

// Comparison is one comparison of a byte-compare subsignature.
type Comparison struct {
	Op    byte // '<', '>', '='
	Value int64
}

// ldbTokenize is ClamAV's cli_ldbtokenize: at most count fields split
// at sep, the rest of the line dropped; from field skip+1 on, a "/" not
// preceded by "\" opens or closes a PCRE, inside which sep does not
// split.
func ldbTokenize(s string, sep byte, count, skip int) []string {
	var out []string
	within := false
	i := 0
	for len(out) < count {
		start := i
		for i < len(s) {
			if !within && s[i] == sep {
				break
			} else if len(out)+1 > skip && i > 0 && s[i-1] != '\\' && s[i] == '/' {
				within = !within
			}
			i++
		}
		out = append(out, s[start:i])
		if i >= len(s) {
			return out
		}
		i++
	}
	return out
}

// cStrtokenizeDrop is ClamAV's cli_strtokenize used with a limit: at most
// max fields split at sep; whatever follows the max-th field is dropped.
func cStrtokenizeDrop(s string, sep byte, max int) []string {
	f := strings.SplitN(s, string(sep), max+1)
	if len(f) > max {
		f = f[:max]
	}
	return f
}

// ftcodes are the names ClamAV 1.4's cli_ftcode knows (its ftmap).
var ftcodes = []string{"CL_TYPE_TEXT_ASCII", "CL_TYPE_TEXT_UTF8", "CL_TYPE_TEXT_UTF16LE", "CL_TYPE_TEXT_UTF16BE",
	"CL_TYPE_BINARY_DATA", "CL_TYPE_IGNORED", "CL_TYPE_ANY", "CL_TYPE_MSEXE", "CL_TYPE_ELF", "CL_TYPE_MACHO",
	"CL_TYPE_MACHO_UNIBIN", "CL_TYPE_POSIX_TAR", "CL_TYPE_OLD_TAR", "CL_TYPE_CPIO_OLD", "CL_TYPE_CPIO_ODC",
	"CL_TYPE_CPIO_NEWC", "CL_TYPE_CPIO_CRC", "CL_TYPE_GZ", "CL_TYPE_ZIP", "CL_TYPE_BZ", "CL_TYPE_RAR", "CL_TYPE_ARJ",
	"CL_TYPE_MSSZDD", "CL_TYPE_MSOLE2", "CL_TYPE_MSCAB", "CL_TYPE_MSCHM", "CL_TYPE_SIS", "CL_TYPE_SCRENC",
	"CL_TYPE_GRAPHICS", "CL_TYPE_GIF", "CL_TYPE_PNG", "CL_TYPE_JPEG", "CL_TYPE_TIFF", "CL_TYPE_RIFF", "CL_TYPE_BINHEX",
	"CL_TYPE_TNEF", "CL_TYPE_CRYPTFF", "CL_TYPE_PDF", "CL_TYPE_UUENCODED", "CL_TYPE_HTML_UTF16", "CL_TYPE_SCRIPT",
	"CL_TYPE_RTF", "CL_TYPE_HTML", "CL_TYPE_MAIL", "CL_TYPE_SFX", "CL_TYPE_ZIPSFX", "CL_TYPE_RARSFX", "CL_TYPE_CABSFX",
	"CL_TYPE_ARJSFX", "CL_TYPE_NULSFT", "CL_TYPE_AUTOIT", "CL_TYPE_ISHIELD_MSI", "CL_TYPE_7Z", "CL_TYPE_7ZSFX",
	"CL_TYPE_SWF", "CL_TYPE_ISO9660", "CL_TYPE_JAVA", "CL_TYPE_DMG", "CL_TYPE_MBR", "CL_TYPE_GPT", "CL_TYPE_APM",
	"CL_TYPE_XAR", "CL_TYPE_PART_ANY", "CL_TYPE_PART_HFSPLUS", "CL_TYPE_XZ", "CL_TYPE_OOXML_WORD", "CL_TYPE_OOXML_PPT",
	"CL_TYPE_OOXML_XL", "CL_TYPE_INTERNAL", "CL_TYPE_XDP", "CL_TYPE_XML_WORD", "CL_TYPE_XML_XL", "CL_TYPE_HWP3",
	"CL_TYPE_XML_HWP", "CL_TYPE_HWPOLE2", "CL_TYPE_OOXML_HWP", "CL_TYPE_PS", "CL_TYPE_MHTML", "CL_TYPE_LNK",
	"CL_TYPE_EGG", "CL_TYPE_EGGSFX", "CL_TYPE_UDF", "CL_TYPE_ALZ", "CL_TYPE_ONENOTE", "CL_TYPE_PYTHON_COMPILED",
	"CL_TYPE_LHA_LZH"}

// ftcode is cli_ftcode: the type named name, ok false when ClamAV does
// not know the name.
func ftcode(name string) (filetype.Type, bool) {
	if !slices.Contains(ftcodes, name) {
		return 0, false
	}
	return filetype.ByName(name)
}

// parseTDB parses a target description block as ClamAV's lsigattribs and
// init_tdb do: an error where ClamAV refuses the database, a skip reason
// where it skips the signature.
func parseTDB(s string) (td TargetDesc, skip string, err error) {
	var target *uint32
	newext, icons := false, false
	for i, tok := range cStrtokenizeDrop(s, ',', 10) {
		k := strings.IndexByte(tok, ':')
		if k < 0 {
			return td, "", fmt.Errorf("target description: attribute %q is not NAME:VALUE", truncate(tok))
		}
		name, val := tok[:k], tok[k+1:]
		switch name {
		case "Engine":
			if i != 0 {
				return td, "", errors.New("target description: Engine must be the first attribute")
			}
		case "Target":
		case "FileSize", "EntryPoint", "NumberOfSections", "IconGroup1", "IconGroup2", "Container", "HandlerType", "Intermediates":
			newext = true
		default:
			return td, fmt.Sprintf("target description: unknown attribute %q", truncate(name)), nil
		}
		switch name {
		case "Target":
			if !cIsNumber(val) {
				return td, "", fmt.Errorf("target description: Target %q is not a decimal number", truncate(val))
			}
			v := uint32(cAtoi(val))
			target = &v
		case "Container", "HandlerType":
			t, ok := ftcode(val)
			if !ok {
				return td, fmt.Sprintf("target description: unknown file type %q in %s", truncate(val), name), nil
			}
			if name == "Container" {
				td.Container = &t
			} else {
				td.HandlerType = &t
			}
		case "Intermediates":
			var types []filetype.Type
			for _, n := range cStrtokenizeDrop(val, '>', 16) {
				t, ok := ftcode(n)
				if !ok {
					return td, fmt.Sprintf("target description: unknown file type %q in Intermediates", truncate(n)), nil
				}
				types = append(types, t)
			}
			td.Intermediates = types
		case "IconGroup1":
			td.IconGroup1, icons = val, true
		case "IconGroup2":
			td.IconGroup2, icons = val, true
		default: // ranges
			j := strings.IndexByte(val, '-')
			if j < 0 {
				return td, "", fmt.Errorf("target description: %s %q is not MIN-MAX", name, truncate(val))
			}
			lo, hi := val[:j], val[j+1:]
			if !cIsNumber(lo) || !cIsNumber(hi) {
				return td, "", fmt.Errorf("target description: %s %q is not MIN-MAX in decimal", name, truncate(val))
			}
			r := &Range{uint32(cAtoi(lo)), uint32(cAtoi(hi))}
			switch name {
			case "Engine":
				td.Engine = r
			case "FileSize":
				td.FileSize = r
			case "EntryPoint":
				td.EntryPoint = r
			case "NumberOfSections":
				td.NumberOfSections = r
			}
		}
	}
	if newext && (td.Engine == nil || td.Engine.Min < 51) {
		return td, "", errors.New("target description: attributes other than Target need Engine first, with a minimum level of at least 51")
	}
	if td.Engine != nil {
		if td.Engine.Min > FunctionalityLevel {
			return td, fmt.Sprintf("minimum functionality level %d is above %d", td.Engine.Min, FunctionalityLevel), nil
		}
		if td.Engine.Max < FunctionalityLevel {
			return td, fmt.Sprintf("maximum functionality level %d is below %d", td.Engine.Max, FunctionalityLevel), nil
		}
	}
	if target == nil {
		return td, "", errors.New("target description: no Target")
	}
	if *target >= 15 {
		return td, fmt.Sprintf("target type %d is unknown", *target), nil
	}
	td.Target = int32(*target)
	if icons && td.Target != 1 { // even an empty one: ClamAV tests its pointer
		return td, "", errors.New("target description: IconGroup needs Target:1 (PE)")
	}
	if (td.EntryPoint != nil || td.NumberOfSections != nil) && td.Target != 1 && td.Target != 6 && td.Target != 9 {
		return td, "", errors.New("target description: EntryPoint and NumberOfSections need Target 1 (PE), 6 (ELF) or 9 (Mach-O)")
	}
	return td, "", nil
}

// parseLDBLine parses a .ldb line as ClamAV's load_oneldb does, in its
// order: fields, ignore lists, logical expression, number of
// subsignatures, target description (where functionality levels, unknown
// attributes, file types and targets skip the line), name, then each
// subsignature.
func parseLDBLine(set *Set, file string, l line, ign *ignoreList) error {
	tok := ldbTokenize(l.text, ';', MaxSubsigs+3+1, 2)
	if len(tok) < 4 {
		if l.text == "" {
			return errors.New("empty line (ClamAV refuses it too; use # for comments)")
		}
		return fmt.Errorf("want NAME;TARGETDESCRIPTION;LOGIC;SUBSIG0[;SUBSIG1...], got %d fields", len(tok))
	}
	name, logic := tok[0], tok[2]
	skip := func(reason string, loads bool) error {
		set.Skipped = append(set.Skipped, Skipped{File: file, Line: l.raw, Name: clamVirname(name), Reason: reason, ClamAVLoads: loads})
		return nil
	}
	if ign.ignores(name, l.text) {
		return skip("listed in an ignore list ("+ign.which(name, l.text)+")", false)
	}
	expr, maxID, err := ParseExpr(logic)
	if err != nil {
		return err
	}
	subsigs := maxID + 1
	if subsigs != len(tok)-3 {
		return fmt.Errorf("%d subsignatures, but the logical expression names %d (ClamAV requires the same number)", len(tok)-3, subsigs)
	}
	if subsigs > MaxSubsigs {
		return fmt.Errorf("more than %d subsignatures", MaxSubsigs)
	}
	td, why, err := parseTDB(tok[1])
	if err != nil {
		return err
	}
	if why != "" {
		return skip(why, false)
	}
	ls := LogicalSig{Name: clamVirname(name), Target: td, Logic: expr, LogicText: logic, File: file, Line: l.raw}
	if ls.Name == "" {
		return errors.New("empty signature name")
	}
	for i := 0; i < subsigs; i++ {
		s, err := parseSubsig(tok[3+i], td.Target, i, name)
		if err != nil {
			return fmt.Errorf("subsignature %d: %w", i, err)
		}
		if s.Unsupported != "" && ls.Unsupported == "" {
			ls.Unsupported = fmt.Sprintf("subsignature %d: %s", i, s.Unsupported)
		}
		ls.Subsigs = append(ls.Subsigs, s)
	}
	if err := checkName(ls.Name); err != nil {
		return skip(err.Error()+": Vigil does not report such names", true)
	}
	for i := range ls.Subsigs {
		bc := ls.Subsigs[i].ByteCompare
		if bc == nil || ls.Unsupported != "" {
			continue
		}
		if why := byteCompareRef(ls.Subsigs, int(bc.Ref)); why != "" {
			ls.Unsupported = fmt.Sprintf("subsignature %d: byte compare: %s", i, why)
		}
	}
	switch {
	case ls.Unsupported != "":
	case !MatchedTarget(td.Target):
		ls.Unsupported = fmt.Sprintf("target type %d is not matched by the engine", td.Target)
	case td.HandlerType != nil:
		ls.Unsupported = "HandlerType: a match rescans the file as another type, which Vigil does not do"
	case td.IconGroup1 != "" || td.IconGroup2 != "":
		ls.Unsupported = "icon groups need .idb files, which Vigil does not read"
	}
	set.Logical = append(set.Logical, ls)
	if set.sink != nil {
		if lsink, ok := set.sink.s.(LogicalSink); ok {
			kept := &set.Logical[len(set.Logical)-1]
			if err := lsink.AddLogical(kept); err != nil {
				return err
			}
			// The sink copied the patterns; the Set keeps the rest.
			for i := range kept.Subsigs {
				kept.Subsigs[i].Patterns = nil
			}
		}
	}
	return nil
}

// byteCompareRef says why the engine cannot start a byte compare from
// subsignature ref, or "": it needs the start of the referenced
// subsignature's last match, which it keeps for content subsignatures
// whose patterns are single parts.
func byteCompareRef(subs []Subsig, ref int) string {
	if ref < 0 || ref >= len(subs) {
		return fmt.Sprintf("the referenced subsignature %d does not exist", ref)
	}
	r := &subs[ref]
	if r.Kind != SubsigContent || len(r.Patterns) == 0 {
		return fmt.Sprintf("the referenced subsignature %d is not a content subsignature Vigil matches", ref)
	}
	for _, p := range r.Patterns {
		if len(p.Parts) != 1 {
			return fmt.Sprintf("the referenced subsignature %d is split by a gap (Vigil keeps no start for it)", ref)
		}
	}
	return ""
}

// parseSubsig parses subsignature idx of a logical signature for the
// target type given, as ClamAV's readdb_parse_ldb_subsignature does.
func parseSubsig(raw string, target int32, idx int, virname string) (Subsig, error) {
	s := Subsig{Raw: raw, OffsetText: "*"}
	switch {
	case raw != "" && raw[0] == '$':
		s.Kind = SubsigMacro
		if raw[len(raw)-1] != '$' || len(raw) == 1 {
			return s, errors.New("macro subsignature without its closing $")
		}
		m, ok := scanMacro(raw)
		if !ok {
			return s, fmt.Errorf("macro subsignature %q is not ${MIN-MAX}GROUP$", truncate(raw))
		}
		if m.Group >= 32 {
			return s, fmt.Errorf("macro subsignature %q: at most 32 macro groups", truncate(raw))
		}
		s.Macro = &m
		s.Unsupported = "macro subsignatures are not supported"
		return s, nil
	case strings.IndexByte(raw, '/') >= 0:
		s.Kind = SubsigPCRE
		return s, parsePCRE(&s, raw, target, idx, virname)
	case strings.IndexByte(raw, '(') >= 0 && strings.IndexByte(raw, '#') >= 0 &&
		strings.IndexByte(raw, '#') != strings.LastIndexByte(raw, '#'):
		s.Kind = SubsigByteCompare
		bc, err := parseByteCompare(raw)
		if err != nil {
			return s, fmt.Errorf("byte compare %q: %w", truncate(raw), err)
		}
		s.ByteCompare = bc
		return s, nil
	case strings.HasPrefix(raw, "fuzzy_img#"):
		s.Kind = SubsigFuzzyImage
		f := strings.Split(raw, "#")
		if len(f) > 2 {
			d := f[2]
			if strings.HasPrefix(d, "+") {
				d = d[1:]
			}
			if d == "" || !cIsNumber(d) || len(strings.TrimLeft(d, "0")) > 10 || (len(strings.TrimLeft(d, "0")) == 10 && strings.TrimLeft(d, "0") > "4294967295") {
				return s, fmt.Errorf("fuzzy image hash %q: hamming distance %q is not a number", truncate(raw), truncate(f[2]))
			}
			if strings.Trim(d, "0") != "" {
				return s, fmt.Errorf("fuzzy image hash %q: non-zero hamming distances are not supported (ClamAV refuses them)", truncate(raw))
			}
		}
		if len(f[1]) != 16 {
			return s, fmt.Errorf("fuzzy image hash %q: the hash must be 16 hex digits", truncate(raw))
		}
		for i := 0; i < 16; i++ {
			if _, ok := hexVal(f[1][i]); !ok {
				return s, fmt.Errorf("fuzzy image hash %q: the hash must be 16 hex digits", truncate(raw))
			}
		}
		s.FuzzyHash = strings.ToLower(f[1])
		s.Unsupported = "fuzzy image hashes are not supported"
		return s, nil
	}
	s.Kind = SubsigContent
	tok := ldbTokenize(raw, ':', 5, 0)
	opts := ""
	if len(tok)%2 == 0 {
		s.OffsetText = tok[0]
	}
	switch len(tok) {
	case 3:
		opts = tok[2]
	case 4:
		opts = tok[3]
	}
	for i := 0; i < len(opts); i++ {
		switch opts[i] {
		case 'i':
			s.Modifiers.NoCase = true
		case 'f':
			s.Modifiers.FullWord = true
		case 'w':
			s.Modifiers.Wide = true
		case 'a':
			s.Modifiers.ASCII = true
		default:
			return s, fmt.Errorf("unknown modifier %q (ClamAV knows i, w, f and a)", opts[i])
		}
	}
	if len(tok)%2 == 1 {
		s.Hex = tok[0]
	} else {
		s.Hex = tok[1]
	}
	off, err := clamOffset(s.OffsetText, target)
	if err != nil {
		return s, err
	}
	s.Offset, s.OffsetUnsupported = off.Offset, off.unsupported
	if off.exeOnly {
		s.OffsetUnsupported = "" // the engine resolves them (scan.startAllowed)
	}
	if s.OffsetUnsupported != "" {
		s.Unsupported = s.OffsetUnsupported
	}
	// hexes are the forms ClamAV adds (wide first), as it rewrites them;
	// matched are the forms Vigil matches: the same, but for "f", whose
	// "(W)" word anchors Pattern cannot hold: the engine checks them
	// itself (Modifiers.FullWord), around the hex inside them.
	var hexes, matched []string
	hex, inner := s.Hex, s.Hex
	if s.Modifiers.FullWord {
		w, err := fullWordHex(hex)
		if err != nil {
			return s, err
		}
		hex, inner = w, w[len("(W)"):len(w)-len("(W)")]
	}
	if s.Modifiers.Wide {
		w, err := wideHex(hex)
		if err != nil {
			return s, err
		}
		hexes = append(hexes, w)
		if w, err = wideHex(inner); err == nil {
			matched = append(matched, w)
		} else {
			matched = append(matched, "")
		}
	}
	if !s.Modifiers.Wide || s.Modifiers.ASCII {
		hexes = append(hexes, hex)
		matched = append(matched, inner)
	}
	for i, h := range hexes {
		cp, err := clamPatternAC(h, target, s.OffsetText, s.Modifiers != Modifiers{})
		if err != nil {
			if h != s.Hex {
				return s, fmt.Errorf("hex signature %q (as ClamAV rewrites it for the modifiers): %w", truncate(h), err)
			}
			return s, fmt.Errorf("hex signature: %w", err)
		}
		if s.Unsupported != "" {
			continue
		}
		if matched[i] != h {
			// ClamAV loads it; Vigil matches the form inside the anchors.
			if cp, err = clamPatternAC(matched[i], target, s.OffsetText, true); err != nil {
				s.Unsupported = fmt.Sprintf("the hex inside the word anchors: %v", err)
				continue
			}
		}
		if cp.unsupported != "" {
			s.Unsupported = cp.unsupported
			continue
		}
		p, err := cp.build()
		if err != nil {
			s.Unsupported = err.Error()
			continue
		}
		if s.Modifiers.NoCase {
			p.foldCase()
		}
		s.Patterns = append(s.Patterns, p)
	}
	if s.Unsupported != "" {
		s.Patterns = nil
	}
	return s, nil
}

// scanMacro is sscanf(s, "${%u-%u}%u$") == 3.
func scanMacro(s string) (Macro, bool) {
	if !strings.HasPrefix(s, "${") {
		return Macro{}, false
	}
	a, r, ok := cScanUint(s[2:], 32)
	if !ok || !strings.HasPrefix(r, "-") {
		return Macro{}, false
	}
	b, r, ok := cScanUint(r[1:], 32)
	if !ok || !strings.HasPrefix(r, "}") {
		return Macro{}, false
	}
	g, _, ok := cScanUint(r[1:], 32)
	if !ok {
		return Macro{}, false
	}
	return Macro{uint32(a), uint32(b), uint32(g)}, true
}

// fullWordHex is ClamAV's rewriting for "::f": "(W)HEX(W)", with every
// "[...]" turned into "{...}".
func fullWordHex(hex string) (string, error) {
	b := []byte("(W)" + hex + "(W)")
	for i := 0; i < len(b); i++ {
		if b[i] != '[' {
			continue
		}
		b[i] = '{'
		j := slices.Index(b[i:], ']')
		if j < 0 {
			return "", errors.New("unmatched [ (ClamAV refuses it with the f modifier)")
		}
		b[i+j] = '}'
		i += j
	}
	return string(b), nil
}

// wideHex is ClamAV's rewriting for "::w" (cli_sigopts_handler): each
// pair of characters of the hex is followed by "00", except "*", "|",
// ")", "{...}" (kept as they are), "[...]" (turned into "{...}"), "(",
// "!(" and the anchors "(B)", "(L)", "(W)". It is emulated on a
// NUL-filled buffer as C does it, so that odd inputs give the same
// string.
func wideHex(hex string) (string, error) {
	n := len(hex)
	out := make([]byte, 0, 2*n+8)
	at := func(i int) byte {
		if i < n {
			return hex[i]
		}
		return 0
	}
	// strlen: C writes a NUL byte for a NUL character; the string ends there.
	cut := func() {
		if k := slices.Index(out, 0); k >= 0 {
			out = out[:k]
		}
	}
	for i := 0; i < n; i++ {
		cut()
		switch c := hex[i]; {
		case c == '*' || c == '|' || c == ')':
			out = append(out, c)
		case c == '[':
			out = append(out, '{')
			i++
			for i < n && hex[i] != ']' {
				out = append(out, hex[i])
				i++
			}
			out = append(out, '}')
		case c == '{':
			for i < n && hex[i] != '}' {
				out = append(out, hex[i])
				i++
			}
			out = append(out, '}')
		case c == '!' || c == '(':
			if c == '!' {
				out = append(out, c)
				i++
			}
			out = append(out, at(i))
			if i+2 >= n {
				return "", errors.New("an alternative or anchor at the end of the signature (ClamAV refuses it with the w modifier)")
			}
			if b := hex[i+1]; b == 'B' || b == 'L' || b == 'W' {
				i++
				out = append(out, hex[i])
				i++
				if hex[i] != ')' {
					return "", errors.New("a malformed anchor (ClamAV refuses it with the w modifier)")
				}
				out = append(out, ')')
			}
		default:
			out = append(out, c, at(i+1), '0', '0')
			i++
		}
	}
	cut()
	return string(out), nil
}

// foldCase makes the fixed bytes that are ASCII letters match either
// case, as ClamAV's nocase option does (with a modifier, ClamAV stores
// alternatives as generic strings, which it folds too).
func (p *Pattern) foldCase() {
	fold := func(value, mask []byte) {
		for j := range value {
			if mask[j] == 0xff && isASCIILetter(value[j]) {
				value[j] &^= 0x20
				mask[j] = 0xdf
			}
		}
	}
	for i := range p.Parts {
		part := &p.Parts[i]
		fold(part.Value, part.Mask)
		for k := range part.Alts {
			for c := range part.Alts[k].Choices {
				fold(part.Alts[k].Choices[c].Value, part.Alts[k].Choices[c].Mask)
			}
		}
	}
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// parsePCRE checks a PCRE subsignature as ClamAV's
// readdb_load_regex_subsignature and cli_pcre_addpatt do (the regex itself
// is not compiled: Vigil has no PCRE engine).
func parsePCRE(s *Subsig, raw string, target int32, idx int, virname string) error {
	sig := raw
	if !strings.HasPrefix(virname, "YARA") {
		tok := ldbTokenize(raw, ':', 5, 0)
		if len(tok) == 2 {
			s.OffsetText, sig = tok[0], tok[1]
		} else {
			sig = tok[0]
		}
	}
	start, end := strings.IndexByte(sig, '/'), strings.LastIndexByte(sig, '/')
	if start == end {
		return errors.New("PCRE subsignature without a closing /")
	}
	if raw[0] == '/' {
		return errors.New("PCRE subsignature without a trigger (TRIGGER/REGEX/FLAGS)")
	}
	p := &PCRESubsig{Trigger: sig[:start], Regex: sig[start+1 : end], Flags: sig[end+1:]}
	if p.Trigger == "" || p.Regex == "" {
		return errors.New("PCRE subsignature with an empty trigger or regex")
	}
	e, max, err := ParseExpr(p.Trigger)
	if err != nil {
		return fmt.Errorf("PCRE trigger: %w", err)
	}
	if uint32(max) > uint32(idx) {
		return fmt.Errorf("PCRE trigger refers to a later subsignature (%d)", max)
	}
	if uint32(max) == uint32(idx) {
		return errors.New("PCRE trigger refers to its own subsignature")
	}
	p.TriggerExpr = e
	off, err := clamOffset(s.OffsetText, target)
	if err != nil {
		return err
	}
	s.Offset, s.OffsetUnsupported = off.Offset, off.unsupported
	if off.exeOnly {
		s.OffsetUnsupported = "" // the engine resolves them (scan.startAllowed)
	}
	for i := 0; i < len(p.Flags); i++ {
		if strings.IndexByte("ismxAEUgre", p.Flags[i]) < 0 {
			return fmt.Errorf("unknown PCRE flag %q", p.Flags[i])
		}
	}
	if err := pcreSyntax(p.Regex, p.Flags); err != nil {
		return err
	}
	s.PCRE = p
	s.Unsupported = "PCRE subsignatures are not supported (Vigil has no PCRE engine)"
	return nil
}

// parseByteCompare parses a byte-compare subsignature as ClamAV's
// cli_bcomp_addpatt does.
func parseByteCompare(raw string) (*ByteCompare, error) {
	bc := &ByteCompare{}
	v, rest := cStrtolBase(raw, 10)
	if rest == "" || rest[0] != '(' {
		return nil, errors.New("the referenced subsignature is not a decimal number followed by (")
	}
	ref := int16(v)
	if ref > MaxSubsigs {
		return nil, fmt.Errorf("referenced subsignature %d is above %d", ref, MaxSubsigs)
	}
	bc.Ref = ref
	k := strings.IndexByte(rest, ')')
	if k < 0 {
		return nil, errors.New("no closing )")
	}
	f := cStrtokenizeDrop(rest[1:k], '#', 4)
	if len(f) != 3 {
		return nil, fmt.Errorf("%d fields between the parentheses, want OFFSET#OPTIONSLENGTH#COMPARISONS", len(f))
	}
	switch {
	case strings.HasPrefix(f[0], "<<"), strings.HasPrefix(f[0], ">>"):
		n, r := cStrtolBase(f[0][2:], 0)
		if r != "" {
			return nil, fmt.Errorf("offset %q is not a number", f[0])
		}
		if f[0][0] == '<' {
			n = -n
		}
		bc.Offset = n
	case f[0] == "" || f[0][0] == '0':
	default:
		return nil, fmt.Errorf("offset %q: want <<N, >>N or 0", f[0])
	}
	o := f[1]
	i := 0
	for ; i < len(o) && !isDigit(o[i]); i++ {
		bad := false
		switch o[i] {
		case 'h':
			bad = bc.Decimal || bc.Binary || bc.Auto
			bc.Hex = true
		case 'd':
			bad = bc.Hex || bc.Binary || bc.Auto || bc.Little
			bc.Decimal, bc.Big = true, true
		case 'i':
			bad = bc.Hex || bc.Decimal || bc.Auto
			bc.Binary = true
		case 'a':
			bad = bc.Hex || bc.Decimal || bc.Binary
			bc.Auto = true
		case 'l':
			bad = bc.Big || bc.Decimal
			bc.Little = true
		case 'b':
			bad = bc.Little
			bc.Big = true
		case 'e':
			bc.Exact = true
		default:
			bad = true
		}
		if bad {
			return nil, fmt.Errorf("options %q are invalid", o)
		}
	}
	if i == len(o) {
		return nil, fmt.Errorf("options %q: no byte length", o)
	}
	n, r := cStrtolBase(o[i:], 0)
	if r != "" || n == 0 {
		return nil, fmt.Errorf("byte length %q is not a number above 0", o[i:])
	}
	bc.Length = uint64(n)
	if bc.Binary && (bc.Length > 8 || 8%bc.Length != 0) {
		return nil, fmt.Errorf("binary byte length %d is not 1, 2, 4 or 8", bc.Length)
	}
	if bc.Hex && bc.Length > 18 {
		return nil, fmt.Errorf("hex byte length %d is above 18", bc.Length)
	}
	comps := []string{f[2]}
	if c := strings.Count(f[2], ","); c == 1 {
		comps = strings.Split(f[2], ",")
	} else if c > 1 {
		return nil, fmt.Errorf("comparisons %q: at most two", f[2])
	}
	for _, c := range comps {
		if c == "" || strings.IndexByte("<>=", c[0]) < 0 {
			return nil, fmt.Errorf("comparison %q: want <, > or = and a number", c)
		}
		v, r := cStrtolBase(c[1:], 0)
		if r != "" {
			return nil, fmt.Errorf("comparison %q: the value is not a number", c)
		}
		bc.Comparisons = append(bc.Comparisons, Comparison{Op: c[0], Value: v})
	}
	return bc, nil
}

// FileFacts are what a logical signature's target description is
// checked against, for one file (or one file extracted from a container).
type FileFacts struct {
	Size int64 // the file's size (of the extracted file, inside a container)
	// Containers are the types of the containers the file was found in,
	// outermost first; empty for a file scanned on its own. ClamAV leaves
	// out its normalized layers.
	Containers []filetype.Type
	// Executable is true when the file was parsed as an executable (PE,
	// ELF, Mach-O) and EntryPoint and Sections are known.
	Executable           bool
	EntryPoint, Sections uint32
}

// Allows reports whether the target description lets a logical signature
// whose expression is true alert on the file, as ClamAV 1.4's lsig_eval
// checks it, in its order: Container (the direct container's type;
// filetype.Any for a file scanned on its own), Intermediates (the
// containers above, the last one the direct container; each must match
// unless it is filetype.Any, and the file must be at least that deep),
// FileSize, then EntryPoint and NumberOfSections (false when the file is
// not a parsed executable). The target type, HandlerType (a match rescans
// the file as that type instead of alerting) and icon groups (matched
// against a .idb) are the caller's.
func (t *TargetDesc) Allows(f FileFacts) bool {
	if t.Container != nil {
		parent := filetype.Any
		if n := len(f.Containers); n > 0 {
			parent = f.Containers[n-1]
		}
		if *t.Container != parent {
			return false
		}
	}
	if t.Intermediates != nil {
		if len(f.Containers) < len(t.Intermediates) {
			return false
		}
		for k := len(t.Intermediates) - 1; k >= 0; k-- {
			want := t.Intermediates[k]
			got := f.Containers[len(f.Containers)-len(t.Intermediates)+k]
			if want != filetype.Any && want != got {
				return false
			}
		}
	}
	if t.FileSize != nil && (int64(t.FileSize.Min) > f.Size || int64(t.FileSize.Max) < f.Size) {
		return false
	}
	if t.EntryPoint != nil || t.NumberOfSections != nil {
		if !f.Executable {
			return false
		}
		if t.EntryPoint != nil && (t.EntryPoint.Min > f.EntryPoint || t.EntryPoint.Max < f.EntryPoint) {
			return false
		}
		if t.NumberOfSections != nil && (t.NumberOfSections.Min > f.Sections || t.NumberOfSections.Max < f.Sections) {
			return false
		}
	}
	return true
}
