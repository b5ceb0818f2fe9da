// Package textnorm is ClamAV's text normalization: the copies of a file
// that ClamAV 1.4 matches body signatures against besides the file's own
// bytes, and the plan of which buffer is matched with which signature
// targets.
//
// The model. ClamAV types a file (internal/filetype). A text file
// (TextASCII, TextUTF8, TextUTF16LE, TextUTF16BE — random binary data is
// often "UTF-16BE text") is matched raw with generic (target 0)
// signatures, then its script normalization (cli_scanscript, textnorm.c)
// is matched with generic and target 7 ("ASCII") signatures. The script
// normalization is bytewise and decodes nothing, UTF-16 included:
//
//   - A-Z become a-z;
//   - TAB, LF, VT, FF, CR and space become one space per run;
//   - NUL to BS, SO to US and every byte from 0x80 up are dropped, and do
//     not end a run of whitespace;
//   - every other byte (0x21-0x7f but A-Z) is kept.
//
// So "ZQXJKV" normalizes to "zqxjkv", "a\tb" to "a b", UTF-16LE "A\0B\0"
// to "ab", and the UTF-8 "é" to nothing. Invariants: the output is never
// longer than the input, holds no byte outside 0x20-0x7f, no upper-case
// letter and no two spaces in a row (except where ClamAV's buffer flush
// resets the whitespace state, which ScriptReader reproduces), and
// normalizing it again changes nothing.
//
// An HTML file (or a TextASCII one in which type recognition finds HTML)
// is not normalized as text, nor matched raw: ClamAV matches htmlnorm's
// outputs instead. NormalizeHTML makes all three byte for byte as ClamAV
// does (its state machine, its 8 KiB chunks, its entity table):
// nocomment.html, notags.html and the page's scripts through ClamAV's
// JavaScript normalizer (identifiers declared in a script renamed n000,
// n001…, strings decoded and lower-cased, unescape, eval, dF and the
// p,a,c,k,e,r packer unpacked). A file typed HTMLUTF16 is decoded first
// (UTF16ToASCIIReader).
//
// Everything streams: ScriptReader and UTF16ToASCIIReader are readers,
// NormalizeHTML writes to writers, each in memory bounded by a few pages
// whatever the file's size — except that, as ClamAV, the JavaScript
// normalizer holds one script's tokens until the script ends (bounded by
// MaxHTMLNormalize).
//
// Plan says, for a file's types and size, which buffers (Buffer: Raw,
// ScriptText, the HTML outputs) are matched with which targets; the
// scanner reports a match found in a normalized buffer against the file
// itself, as clamscan does.
package textnorm
