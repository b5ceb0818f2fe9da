// Package filetype is ClamAV 1.4's file type recognition, as far as it
// decides how a file is scanned: which files are text (and so normalized,
// see internal/textnorm), HTML, archives (zip, gzip, bzip2, xz, tar) or
// executables (PE, ELF, Mach-O).
//
// The model is ClamAV's, with its numbers and names (Type, "CL_TYPE_…"):
//
//   - Detect types a file by its first MagicSize bytes as
//     cli_determine_fmap_type does: the exact magics of the file type
//     table, the last line first; else the text detection of textdet.c
//     (Texttype); then tar checksums, zip entry names, the recognition
//     patterns within those bytes, and the UTF-16 HTML checks.
//   - A Recognizer finds the type ClamAV's raw scan recognizes in the
//     whole file (HTML anywhere in a text file makes ClamAV scan it as
//     HTML), streaming, with bounded memory.
//
// The table is ClamAV's built-in one (Builtin), used when no daily.ftm is
// loaded, as with clamscan -d and a database of one's own. A real
// daily.cvd carries daily.ftm, which replaces the built-in table whole;
// ParseTable compiles such a file for an engine that loads it.
//
// Invariants: Detect and the Recognizer never fail and never read more
// than they are given; Detect depends only on the first MagicSize bytes;
// a Recognizer's result does not depend on how the file is split into
// writes.
package filetype
