// Package unpack opens archives and compressed files as ClamAV 1.4 does
// by default, and yields every object clamscan would scan in a file: the
// file itself, each member of each archive, each decompressed stream,
// recursively. It does not match signatures: the scanner calls Walk and
// matches each Object it is given, reporting a detection on the file's
// path (Object.Root), as clamscan prints "FILE: NAME FOUND" for a
// detection anywhere inside FILE.
//
// # Formats
//
// Files are typed by content with package filetype, as ClamAV's file
// typing does (libclamav/filetypes.c and its built-in signatures,
// filetypes_int.h), and opened when they are a zip (OOXML documents
// included) ("PK\x03\x04"), gzip (1f 8b), bzip2 ("BZh"), xz
// (fd "7zXZ" 00), POSIX tar ("ustar" at 257) and old tar (a header with
// a valid checksum), never by name. Each is opened as ClamAV's own
// extractor opens it (libclamav/unzip.c, untar.c, scanners.c):
//
//   - zip: the central directory found from the end of the file, its
//     entries extracted in the order of their local headers, stored,
//     deflate and bzip2 methods; no central directory, nothing opened;
//     encrypted entries never extracted; more than five overlapping
//     entries (a non-recursive zip bomb) stop the zip with the alert
//     Heuristics.Zip.OverlappingFiles;
//   - a zip entry found inside any other object (a self-extracting
//     archive, a zip appended to a file): every "PK\x03\x04" past offset 0
//     of an object that is not a zip, gzip, tar or HTML file;
//   - gzip (all members), bzip2 and xz (first stream; an xz dictionary
//     over 1 GiB is the alert Heuristics.XZ.DicSizeLimit);
//   - tar: regular files, with ClamAV's handling of bad checksums, long
//     names and extended headers.
//
// # Limits
//
// Limits has ClamAV's four limits, with clamscan's flag names and
// defaults (DefaultLimits): --max-filesize 100 MiB, --max-scansize
// 400 MiB, --max-files 10000, --max-recursion 17. When a limit is hit
// that branch stops, silently as clamscan does by default, or with the
// alert Heuristics.Limits.Exceeded.* for the first limit of the file
// with Options.AlertExceedsMax (--alert-exceeds-max). Every limit hit is
// also listed in Result.Limits for debugging.
//
// # Memory
//
// Nothing is decompressed into memory beyond a bounded buffer: every
// extracted object goes to a spool that keeps up to Options.MemLimit
// (1 MiB) in memory and the rest in an unlinked temporary file, and extraction
// stops where the limits stop ClamAV (MaxFileSize, what MaxScanSize
// leaves). A zip bomb costs at most MaxFileSize of temporary disk per
// level being extracted, and a few MiB of memory per level.
//
// See docs/archives.md for the details and the known differences from
// ClamAV.
package unpack
