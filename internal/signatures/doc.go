// Package signatures parses Vigil's definitions: a documented subset of
// ClamAV's public signature formats, so that existing signature sets work
// and detections can be compared with ClamAV's.
//
// Three file kinds are read, one signature a line:
//
//   - .hdb: hash signatures, HASH:SIZE:NAME[:MINFL[:MAXFL]], where HASH is
//     an MD5 (ClamAV's documented .hdb content).
//   - .hsb: the same with a SHA-1 or SHA-256 hash. As in ClamAV the
//     algorithm is told by the hash's length, in either file kind.
//     SIZE is the file size in bytes, or "*" for any size; like ClamAV,
//     "*" requires a MINFL field of at least 73.
//   - .ndb: body signatures, NAME:TARGET:OFFSET:HEX[:MINFL[:MAXFL]] with
//     TARGET 0 (any file) only. OFFSET is "*", "n", "n,m", "EOF-n" or
//     "EOF-n,m" (the match starts at n, or at any of n..n+m; EOF counts
//     back from the end of the file). HEX is hex bytes with "??", nibble
//     wildcards "a?" and "?a", "*", "{n}", "{n-m}", "{-n}", "{n-}" and
//     "(aa|bb)" alternatives of equal-length byte strings.
//
// Lines starting with "#" are comments. Anything else outside the subset
// (another target type, "!(...)" negations, "[n-m]" ranges, "(B)" word
// anchors, other database kinds such as .ldb, .cdb or .yar, a functionality
// level range that excludes [FunctionalityLevel]) is an error naming the
// file and the line: a signature is never skipped silently. Validity rules
// follow ClamAV's (each part of a body signature needs two consecutive
// fixed bytes, a fixed-bytes-only signature at least three), so that a set
// Vigil accepts also loads in ClamAV.
//
// docs/signatures.md describes the subset, the names reported and the
// differences from ClamAV.
package signatures
