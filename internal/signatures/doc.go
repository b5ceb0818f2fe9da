// Package signatures parses Vigil's definitions: ClamAV's public signature
// formats, loaded exactly as ClamAV 1.4.6 loads them, so that a real
// ClamAV database loads and detections can be compared with ClamAV's.
//
// [Load] reads a definitions directory as clamscan does: .hdb, .hsb
// (whole-file hashes) and .ndb (body signatures) into [Set.Hashes] and
// [Set.Bodies], which the engine matches; .mdb and .msb (PE section
// hashes) into [Set.SectionHashes]; .fp and .sfp (allow lists) into
// [Set.Allowed]; .ldb (logical signatures) into [Set.Logical], which the
// engine evaluates with [Expr.Eval] (ClamAV's evaluator of their logical
// expressions) and [TargetDesc.Allows], but for those whose
// [LogicalSig.Unsupported] says why not; .ign and .ign2 (ignore lists) applied while
// loading and kept in [Set.Ignores]. Extensions are compared
// case-insensitively.
//
// Every line is read, checked and counted as ClamAV's loader does it (its
// 8,191-byte line buffer, 32,768 bytes for .ldb, its atoi and strtoul field parsing, its hex
// syntax checks down to its prefilter's): a line ClamAV refuses is an
// [Error] naming the file and line; a line ClamAV skips (a functionality
// level excluding [FunctionalityLevel], an unknown target type, an
// ignored name) is skipped; a line ClamAV loads that Vigil cannot match
// yet (target types 8 and 13, VI offsets, negations,
// byte ranges, anchors, alternatives of different lengths) is skipped
// too. Skipped lines are listed in [Set.Skipped], and files not read
// (other database kinds such as .cdb or .yar, PUA variants, files
// ClamAV does not read) in [Set.IgnoredFiles]; [Set.WriteDebug] prints
// both. [Set.ClamAVCount] is the number ClamAV reports as loaded.
//
// [LoadTo] loads the same way but gives each hash and body signature to a
// [Sink] (the engine's scan.Builder) as it parses it, instead of keeping
// them in the Set: loading ClamAV's 3.5 million hash signatures then
// allocates nothing per hash line, and the signatures are never all held
// twice (once parsed, once in the engine).
//
// [ByteCompare.Check] decides a byte-compare subsignature at a match of
// the subsignature it refers to, as ClamAV's cli_bcomp_compare_check does.
//
// docs/signatures.md lists which kinds are used, ignored, skipped and
// refused, and the differences from ClamAV.
package signatures
