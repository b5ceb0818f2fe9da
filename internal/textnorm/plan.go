package textnorm

import (
	"io"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// ClamAV's default size limits on normalization (clamscan's
// --max-scriptsize, --max-htmlnormalize, --max-htmlnotags): a file larger
// than the limit is not normalized that way (its raw bytes are still
// matched where its type has a raw pass).
const (
	MaxScriptNormalize = 20 << 20 // CLI_DEFAULT_MAXSCRIPTNORMALIZE
	MaxHTMLNormalize   = 40 << 20 // CLI_DEFAULT_MAXHTMLNORMALIZE
	MaxHTMLNoTags      = 8 << 20  // CLI_DEFAULT_MAXHTMLNOTAGS
)

// Buffer names a byte stream ClamAV matches body signatures against.
type Buffer int

const (
	// Raw is the file's own bytes.
	Raw Buffer = iota
	// ScriptText is the script normalization (ScriptReader) of the file.
	ScriptText
	// HTMLNoComment is htmlnorm's nocomment.html of the file (HTML).
	HTMLNoComment
	// HTMLNoTags is htmlnorm's notags.html of the file (HTML).
	HTMLNoTags
	// HTMLScript is htmlnorm's javascript output (HTMLOutputs.Script):
	// the scripts of the page through ClamAV's JavaScript normalizer.
	HTMLScript
)

func (b Buffer) String() string {
	switch b {
	case Raw:
		return "raw"
	case ScriptText:
		return "normalized text"
	case HTMLNoComment:
		return "HTML without comments"
	case HTMLNoTags:
		return "HTML text without tags"
	case HTMLScript:
		return "HTML scripts"
	}
	return "unknown buffer"
}

// Pass is one match of a buffer: the signature target types (.ndb target
// field: 0 generic, 1 PE, 3 HTML, 7 ASCII text, ...) whose signatures are
// matched against it.
type Pass struct {
	Buffer  Buffer
	Targets []int
	// UTF16Decoded: the buffer is made from the file decoded as ClamAV's
	// cli_utf16toascii decodes it (UTF16ToASCII), not from its bytes.
	UTF16Decoded bool
}

// Target returns the signature target type whose signatures ClamAV
// matches against a buffer scanned as type t (cli_mtargets), 0 if none
// but the generic ones.
func Target(t filetype.Type) int {
	switch t {
	case filetype.MSEXE:
		return 1
	case filetype.MSOLE2:
		return 2
	case filetype.HTML:
		return 3
	case filetype.Mail:
		return 4
	case filetype.Graphics, filetype.GIF, filetype.PNG, filetype.JPEG, filetype.TIFF:
		return 5
	case filetype.ELF:
		return 6
	case filetype.TextASCII:
		return 7
	case filetype.MachO, filetype.MachOUniBin:
		return 9
	case filetype.PDF:
		return 10
	case filetype.SWF:
		return 11
	case filetype.Java:
		return 12
	case filetype.Internal:
		return 13
	case filetype.Other:
		return 14
	}
	return 0
}

func targets(t filetype.Type) []int {
	if n := Target(t); n != 0 {
		return []int{0, n}
	}
	return []int{0}
}

// Plan returns the buffers ClamAV 1.4 matches body signatures of a file
// against, with clamscan's default options, in its order. detected is the
// file's type (filetype.Detect), recognized what type recognition found
// in the whole file (filetype.Recognizer; it matters for TextASCII only),
// size the file's size.
//
//   - Text (TextASCII, TextUTF8, TextUTF16LE, TextUTF16BE): the raw bytes
//     with generic signatures only (ClamAV scans a TextASCII file as "any
//     type" there), then the script normalization with generic and target
//     7 signatures, up to MaxScriptNormalize. A TextASCII file in which
//     recognition found HTML is scanned as HTML instead of normalized as
//     text; other text types are normalized whatever is found. One in
//     which recognition found mail is, after its normalization, matched
//     raw again with generic and target 4 (mail) signatures (ClamAV also
//     parses it as mail, which is not normalization and not planned here).
//   - HTML: never the raw bytes (ClamAV's HTMLSKIPRAW, on by default):
//     nocomment.html, notags.html (up to MaxHTMLNoTags) and the scripts,
//     all with generic and target 3 signatures, the scripts with target 7
//     as well; nothing above MaxHTMLNormalize.
//   - HTMLUTF16: the raw bytes (generic) and the HTML buffers of the
//     file decoded by UTF16ToASCII. ClamAV matches the HTML buffers
//     first (cli_scanhtml_utf16 runs before the raw scan), which decides
//     the name reported without --allmatch; the list keeps raw first,
//     and the scanner (package scan) orders them.
//   - The files of an HTML page's data: URIs (HTMLOutputs.DataURI) and
//     the images of its <style> blocks (HTMLOutputs.StyleImage) are
//     scanned by ClamAV as files of their own, as the members of an
//     archive are; they are not buffers of this plan.
//   - BinaryData (and PythonCompiled): the raw bytes with generic and
//     target 14 (other) signatures.
//   - Every other type: the raw bytes with generic signatures and those
//     of the type's target (Target). What ClamAV extracts from archives
//     and executables is scanned as files of their own.
func Plan(detected, recognized filetype.Type, size int64) []Pass {
	html := func(decoded bool, n int64) []Pass {
		if n > MaxHTMLNormalize {
			return nil
		}
		p := []Pass{{Buffer: HTMLNoComment, Targets: []int{0, 3}, UTF16Decoded: decoded}}
		if n <= MaxHTMLNoTags {
			p = append(p, Pass{Buffer: HTMLNoTags, Targets: []int{0, 3}, UTF16Decoded: decoded})
		}
		return append(p, Pass{Buffer: HTMLScript, Targets: []int{0, 3, 7}, UTF16Decoded: decoded})
	}
	switch detected {
	case filetype.Ignored:
		return nil
	case filetype.HTML:
		return html(false, size)
	case filetype.HTMLUTF16:
		return append([]Pass{{Buffer: Raw, Targets: []int{0}}}, html(true, size/2)...)
	case filetype.TextASCII, filetype.TextUTF8, filetype.TextUTF16LE, filetype.TextUTF16BE:
		p := []Pass{{Buffer: Raw, Targets: []int{0}}}
		if detected == filetype.TextASCII && recognized == filetype.HTML {
			return append(p, html(false, size)...)
		}
		if size <= MaxScriptNormalize {
			p = append(p, Pass{Buffer: ScriptText, Targets: []int{0, 7}})
		}
		if detected == filetype.TextASCII && recognized == filetype.Mail {
			p = append(p, Pass{Buffer: Raw, Targets: []int{0, 4}})
		}
		return p
	case filetype.BinaryData, filetype.PythonCompiled:
		return []Pass{{Buffer: Raw, Targets: []int{0, 14}}}
	}
	return []Pass{{Buffer: Raw, Targets: targets(detected)}}
}

// UTF16ToASCIIReader decodes r as UTF16ToASCII does, streaming: the
// input to NormalizeHTML for a file typed HTMLUTF16.
func UTF16ToASCIIReader(r io.Reader) io.Reader { return &utf16Reader{r: r} }

type utf16Reader struct {
	r   io.Reader
	in  [2 * 4096]byte
	odd int // a byte of an unfinished pair at in[0]
	out []byte
	err error
}

func (u *utf16Reader) Read(p []byte) (int, error) {
	for len(u.out) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		n, err := u.r.Read(u.in[u.odd:])
		n += u.odd
		even := n &^ 1
		u.out = UTF16ToASCII(u.out[:0], u.in[:even])
		u.odd = copy(u.in[:], u.in[even:n])
		if err != nil {
			u.err = err // an odd last byte is dropped, as ClamAV drops it
		}
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	return n, nil
}

// UTF16ToASCII is ClamAV's cli_utf16toascii, with which it decodes a file
// typed HTMLUTF16 before normalizing it as HTML: each pair of bytes
// (lo, hi) becomes the byte lo + hi<<4, truncated to eight bits (so
// little-endian ASCII comes out as itself); an odd last byte is dropped.
// ClamAV decodes the file in pieces of 16 pages, so an odd-sized piece
// cannot occur but at the end.
func UTF16ToASCII(dst, src []byte) []byte {
	for i := 0; i+1 < len(src); i += 2 {
		dst = append(dst, src[i+1]<<4+src[i])
	}
	return dst
}
