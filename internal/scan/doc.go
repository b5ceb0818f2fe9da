// Package scan is Vigil's scanning engine: it matches files against a
// [signatures.Set] the way ClamAV matches them against the same
// signatures. Every object package unpack finds in a file (the file, each
// archive member, each decompressed stream) is matched: its bytes where
// ClamAV matches them, and the normalized copies ClamAV makes of text and
// HTML (textnorm.Plan; textpass.go), with allow lists and PE section
// hashes applied as ClamAV applies them (objects.go, allow.go, pe.go).
// docs/signatures.md and docs/normalization.md are the specification.
//
// # Matching
//
// Files are read in fixed-size chunks, so memory does not grow with file
// size. Every body signature is cut into parts at its variable gaps ("*",
// "{n-m}", long "{n}"); each part contributes a run of its fixed bytes (at
// most maxAnchorLen of them) as its anchor. The anchors are found in one
// pass by a filter in the manner of ClamAV's matcher-bm.c: at each file
// position the first bytes of a possible anchor (4, or 1 to 3 for parts
// with no longer run) are hashed into a bit array that rejects almost
// every position; the others are looked up in a bucketed table of the
// anchors and compared whole. An anchor hit is verified against its whole
// part (wildcards, nibbles, alternatives) in a window that keeps the
// longest part's length of bytes before the newest chunk; a hit whose
// part extends past the bytes read so far waits for the next chunk. Parts
// are chained left to right: a verified occurrence of part i opens the
// interval where part i+1 may start (its gap), so a signature with "*"
// gaps spanning any number of chunks is found with a few intervals of
// state per file, never by keeping the file. Offsets ("n", "n,m", "EOF-n",
// and for target types 1, 6 and 9 "EP+n", "Sx+n", "SEx" and the others
// relative to an executable's layout, resolved from the object's headers
// parsed once by package exefmt: exe.go) constrain where the first part
// may start; the file's size comes from stat before reading, and no more
// than that size is read.
//
// The engine keeps no per-signature allocation: names are front-coded in blocks
// of 1 MiB that never grow, hash signatures one sorted table per algorithm grouped by file
// size (binary search; the sorted sizes are the filter that says which
// digests a file needs), parts and their bytes flat arrays. It holds
// millions of signatures and is built once per definitions release.
// [Builder] takes signatures one at a time, so that a loader handing each
// over as it parses need not keep them all ([New] is a Builder fed with a
// whole Set): it is the signatures.Sink that vigil scan and the agent give
// signatures.LoadTo, under [BuildGC].
//
// Hashes (MD5, SHA-1, SHA-256) are computed during the same pass, and only
// those some hash signature can match: a signature with this file's exact
// size, or one with size "*". Detected files get a SHA-256 for the report
// (a second read when the pass did not compute it).
//
// Like ClamAV, files of 5 bytes or less are counted as scanned but never
// match (ClamAV ignores them as too small).
//
// # Walking
//
// [Engine.ScanPaths] walks the given paths with parallel workers. Symbolic
// links given as paths are followed; inside a tree they are followed only
// with Options.FollowSymlinks and only to targets inside the same tree.
// Special files (devices, FIFOs, sockets) are reported as skipped and never
// opened; regular files are opened with O_NONBLOCK|O_NOFOLLOW and checked
// to be the file that was examined, so a file swapped for a FIFO cannot
// block a worker.
//
// # Archives
//
// ScanPaths opens each file with unpack.Walk and matches every object it
// yields (archive members, decompressed streams, the file itself), as
// clamscan does, within clamscan's limits (Options.Limits); PE objects are
// also matched by their section hashes (.mdb, .msb), and the .fp/.sfp
// allow list is checked on every layer holding a match, as ClamAV's
// cli_check_fp does (objects.go). Detections are reported on the file:
// one per file, or every match with Options.AllMatch.
package scan
