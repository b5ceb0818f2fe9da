// Package cvd reads and writes ClamAV's database containers: the .cvd,
// .cld and .cud files that hold ClamAV's signature databases (main,
// daily, bytecode). It imports only the standard library.
//
// A container is a 512-byte header, "ClamAV-VDB:" then colon-separated
// fields (build time, version, signature count, functionality level, MD5
// of the body, digital signature, builder, build time in seconds), padded
// with spaces, followed by a tar of the signature files: gzip-compressed,
// or plain when the body starts with the entry "COPYING" (as ClamAV
// decides it). The tar holds an NAME.info file: the header again, then
// NAME:SIZE:SHA256 for every signature file, then (except in a .cud) a
// DSIG line.
//
// Read checks a container as ClamAV 1.x does before it loads one
// (libclamav/cvd.c, libclamav_rust/src/cvd.rs, libclamav/readdb.c
// cli_loadinfo, libclamav/dsig.c):
//
//   - .cvd: the MD5 of the body, and the header's digital signature (an
//     RSA signature of that MD5 in ClamAV's own base64 alphabet) against
//     Keys.CVD; the .info DSIG (RSA-PSS with SHA-256) against Keys.Info;
//   - .cld (a .cvd that freshclam patched and wrote back): no header
//     signature (its MD5 and signature fields are "X"); the .info DSIG
//     against Keys.Info;
//   - .cud (unsigned, "sigtool --unsigned"): the MD5 of the body when the
//     header carries one, and no signature;
//   - all: the .info header matches the container's header, and every
//     signature file is listed in .info with its size and SHA-256.
//
// The keys default to ClamAV's published ones (ClamAVKeys); tests and
// vendors of their own containers pass theirs. The tar is unpacked
// within Limits (file count, sizes), flat (no directories, no links, no
// path separators) and only after every check has passed, so a bad
// container writes nothing. Write builds a container (used by the tests,
// and usable by a vendor) that ClamAV reads.
package cvd
