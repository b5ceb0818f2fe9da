// Package delta makes and applies deltas between two definitions releases:
// what turns the files of release base (bundle file name -> content, as
// in a definitions bundle, internal/repo) into those of release result,
// so that an agent holding base downloads a few kilobytes instead of the
// whole release (issue 16). It is the counterpart of ClamAV's .cdiff.
//
// A delta names every file of base and of result. Per file it says one
// of: unchanged; removed; added whole; line edits (signature files are
// lines: keep n lines of the base file, drop n lines, insert bytes, as
// ClamAV's cdiff does); or a binary patch (copy n bytes of the base file,
// skip n bytes, insert bytes) where that is smaller (Make tries one when
// the line edits insert more than 1/16 of the file). Every file it reads from base is identified by its length and
// SHA-256, and every file it edits by its result's length and SHA-256,
// so Apply is strict: a missing, extra or different base file, a
// malformed delta or a result beyond the bundle limits (repo.MaxBundleFiles,
// repo.MaxBundleFileSize) is an error, and nothing is returned.
//
// The whole delta is compressed with Zstandard. Decompression is bounded:
// the decompressed length is declared in the header and must be at most
// MaxBodySize and at most maxRatio times the compressed length.
//
// A delta is not trusted on its own: it is published as a TUF target of
// its own, and what Apply returns is accepted only when the bundle made
// from it (repo.MakeBundle) has the length and SHA-256 that the signed
// targets metadata gives for the result release (docs/repository.md).
//
// # Format (version 1)
//
//	header   "VGLDELTA"                  8 bytes, magic
//	         0x01                        format version
//	         0x01                        compression: Zstandard
//	         uvarint                     length of the decompressed body
//	         ...                         one or more Zstandard frames, to the end
//	body     uvarint                     number of files named (≤ 2×MaxBundleFiles)
//	         file...                     in strictly increasing byte order of name
//	file     uvarint, bytes              name (repo.CheckBundleName)
//	         byte                        op:
//	   0 unchanged  id(base)             result = the base file
//	   1 removed    id(base)             not in the result
//	   2 added      uvarint, bytes       not in base; the result's content
//	   3 lines      id(base) id(result) script (unit: lines)
//	   4 binary     id(base) id(result) script (unit: bytes)
//	id       uvarint, [32]byte           length and SHA-256 of a file
//	script   instruction... 0x00
//	   0x01 uvarint n                    copy the next n units of the base file
//	   0x02 uvarint n                    skip the next n units of the base file
//	   0x03 uvarint n, n bytes           insert n bytes
//
// A line is the bytes up to and including a newline, or the bytes after
// the last newline if there are any. Counts are never 0; a script must
// consume its base file exactly and produce exactly the result's length
// and SHA-256. Every file of base must be named (ops 0, 1, 3, 4), no
// added file may be in base, and nothing may follow the body.
package delta

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// Magic starts every delta; FormatVersion follows it.
const (
	Magic         = "VGLDELTA"
	FormatVersion = 1
)

// MaxBodySize bounds a delta's decompressed body. A delta beyond it is
// not worth publishing: the full release is the better download.
const MaxBodySize = 256 << 20

// maxRatio bounds the decompressed body to this many times the compressed
// delta (no real delta comes near; a decompression bomb does), and
// minBound is the body every delta may have whatever its ratio.
const (
	maxRatio = 1024
	minBound = 1 << 20
)

const (
	compZstd  = 1
	maxWindow = 8 << 20 // Zstandard window of the encoder, and the most the decoder accepts
)

// Ops of a file.
const (
	opUnchanged = 0
	opRemoved   = 1
	opAdded     = 2
	opLines     = 3
	opBinary    = 4
)

// Instructions of a script.
const (
	insEnd  = 0
	insCopy = 1
	insSkip = 2
	insAdd  = 3
)

// Make returns a delta turning the files of release base into those of
// release result (bundle file name -> content, as in a definitions
// bundle). Both must be valid bundles' files (names, count and sizes
// within the repo limits). It fails when the delta would exceed
// MaxBodySize or the decompression ratio Apply accepts; the full release
// is then the better download.
func Make(base, result map[string][]byte) ([]byte, error) {
	if err := checkFiles("base", base); err != nil {
		return nil, err
	}
	if err := checkFiles("result", result); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(base)+len(result))
	for n := range base {
		names = append(names, n)
	}
	for n := range result {
		if _, ok := base[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var e encoder
	e.uvarint(uint64(len(names)))
	for _, name := range names {
		b, inBase := base[name]
		r, inResult := result[name]
		e.bytes([]byte(name))
		switch {
		case !inResult:
			e.byte(opRemoved)
			e.id(b)
		case !inBase:
			e.byte(opAdded)
			e.bytes(r)
		case bytes.Equal(b, r):
			e.byte(opUnchanged)
			e.id(b)
		default:
			// Line edits suit signature files. When they insert more
			// than 1/16 of the result (a file that is not lines, or long
			// lines changed a little), a binary patch may be smaller.
			op := opLines
			s, added := lineScript(b, r)
			if added > len(r)/16 {
				if bs := binaryScript(b, r); len(bs) < len(s) {
					op, s = opBinary, bs
				}
			}
			e.byte(byte(op))
			e.id(b)
			e.id(r)
			e.buf = append(e.buf, s...)
		}
		if len(e.buf) > MaxBodySize {
			return nil, fmt.Errorf("delta: more than %d bytes before compression; publish the full release", MaxBodySize)
		}
	}
	return compress(e.buf)
}

// checkFiles checks that files may be the files of a bundle.
func checkFiles(what string, files map[string][]byte) error {
	if len(files) == 0 {
		return fmt.Errorf("delta: %s has no files", what)
	}
	if len(files) > repo.MaxBundleFiles {
		return fmt.Errorf("delta: %s has %d files, more than the limit of %d", what, len(files), repo.MaxBundleFiles)
	}
	for name, data := range files {
		if err := repo.CheckBundleName(name); err != nil {
			return fmt.Errorf("delta: %s: %w", what, err)
		}
		if len(data) > repo.MaxBundleFileSize {
			return fmt.Errorf("delta: %s file %s: %d bytes, more than the limit of %d", what, name, len(data), repo.MaxBundleFileSize)
		}
	}
	return nil
}

func compress(body []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(maxWindow), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	out := []byte(Magic)
	out = append(out, FormatVersion, compZstd)
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = enc.EncodeAll(body, out)
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	if !bodyBounded(uint64(len(body)), len(out)) {
		return nil, fmt.Errorf("delta: its body of %d bytes compresses to %d, beyond the ratio Apply accepts; publish the full release", len(body), len(out))
	}
	return out, nil
}

// bodyBounded reports whether a body of n bytes may be decompressed from
// a delta of size bytes.
func bodyBounded(n uint64, size int) bool {
	return n <= MaxBodySize && (n <= minBound || n <= uint64(size)*maxRatio)
}

// Apply applies delta d to base and returns the result's files. It checks
// each base file a per-file patch names (its length and SHA-256 are in
// the delta) and fails clearly, changing nothing, on a malformed delta, a
// missing, extra or different base file, or a result beyond the bundle
// limits (repo.MaxBundleFiles, repo.MaxBundleFileSize). Base is only
// read; the result's unchanged files share their memory with base's.
func Apply(d []byte, base map[string][]byte) (map[string][]byte, error) {
	body, err := decompress(d)
	if err != nil {
		return nil, err
	}
	out, err := applyBody(body, base)
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	return out, nil
}

func decompress(d []byte) ([]byte, error) {
	hdr := len(Magic) + 2
	if len(d) < hdr || string(d[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("delta: not a Vigil delta (no %q header)", Magic)
	}
	if v := d[len(Magic)]; v != FormatVersion {
		return nil, fmt.Errorf("delta: format version %d, want %d", v, FormatVersion)
	}
	if c := d[len(Magic)+1]; c != compZstd {
		return nil, fmt.Errorf("delta: compression %d, want %d (Zstandard)", c, compZstd)
	}
	n, k := binary.Uvarint(d[hdr:])
	if k <= 0 {
		return nil, fmt.Errorf("delta: malformed body length")
	}
	if n == 0 || !bodyBounded(n, len(d)) {
		return nil, fmt.Errorf("delta: body of %d bytes: beyond the limit (at most %d, and %d times the delta's size)", n, MaxBodySize, maxRatio)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(max(n, maxWindow)), zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	defer dec.Close()
	body, err := dec.DecodeAll(d[hdr+k:], make([]byte, 0, n))
	if err != nil {
		return nil, fmt.Errorf("delta: decompress: %w", err)
	}
	if uint64(len(body)) != n {
		return nil, fmt.Errorf("delta: body is %d bytes, its header says %d", len(body), n)
	}
	return body, nil
}

func applyBody(body []byte, base map[string][]byte) (map[string][]byte, error) {
	r := &reader{b: body}
	n := r.uvarint()
	if r.err == nil && n > 2*repo.MaxBundleFiles {
		return nil, fmt.Errorf("names %d files, more than a base and a result can hold", n)
	}
	out := map[string][]byte{}
	named := 0
	prev := ""
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := string(r.bytes(repo.MaxBundleNameLen))
		op := r.byte()
		if r.err != nil {
			break
		}
		if err := repo.CheckBundleName(name); err != nil {
			return nil, err
		}
		if i > 0 && name <= prev {
			return nil, fmt.Errorf("file %s: names out of order (after %s)", name, prev)
		}
		prev = name
		var data []byte
		switch op {
		case opUnchanged, opRemoved, opLines, opBinary:
			b, err := r.checkBase(name, base)
			if err != nil {
				return nil, err
			}
			named++
			switch op {
			case opUnchanged:
				data = b
			case opLines, opBinary:
				if data, err = r.patch(name, b, op == opLines); err != nil {
					return nil, err
				}
			}
		case opAdded:
			if _, ok := base[name]; ok {
				return nil, fmt.Errorf("file %s: the delta adds it but base has it", name)
			}
			data = r.bytes(repo.MaxBundleFileSize)
		default:
			return nil, fmt.Errorf("file %s: unknown op %d", name, op)
		}
		if r.err != nil {
			break
		}
		if op != opRemoved {
			if len(out) == repo.MaxBundleFiles {
				return nil, fmt.Errorf("the result has more than %d files", repo.MaxBundleFiles)
			}
			out[name] = data
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%d bytes after the last file", len(r.b))
	}
	if named != len(base) {
		names := make([]string, 0, len(base))
		for name := range base {
			if !r.named[name] {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return nil, fmt.Errorf("base has file %s, which the delta does not name: not the delta's base", names[0])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the result has no files")
	}
	return out, nil
}

var errTruncated = errors.New("truncated or malformed")

// reader decodes a body; its first error sticks.
type reader struct {
	b     []byte
	err   error
	named map[string]bool
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[k:]
	return v
}

// bytes reads a length and that many bytes, at most max.
func (r *reader) bytes(max int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail(fmt.Errorf("a field of %d bytes, more than the limit of %d", n, max))
		return nil
	}
	return r.take(int(n))
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.fail(errTruncated)
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// id reads a file's length and SHA-256.
func (r *reader) id() (uint64, []byte) {
	n := r.uvarint()
	return n, r.take(sha256.Size)
}

// checkBase reads the identity of base file name and checks base's file.
func (r *reader) checkBase(name string, base map[string][]byte) ([]byte, error) {
	n, sum := r.id()
	if r.err != nil {
		return nil, r.err
	}
	b, ok := base[name]
	if !ok {
		return nil, fmt.Errorf("base file %s: missing (the delta patches it)", name)
	}
	if uint64(len(b)) != n {
		return nil, fmt.Errorf("base file %s: %d bytes, the delta's base has %d: not the delta's base", name, len(b), n)
	}
	if s := sha256.Sum256(b); !bytes.Equal(s[:], sum) {
		return nil, fmt.Errorf("base file %s: SHA-256 differs from the delta's base: not the delta's base", name)
	}
	if r.named == nil {
		r.named = map[string]bool{}
	}
	r.named[name] = true
	return b, nil
}

// patch reads a result's identity and a script, and runs the script on b.
func (r *reader) patch(name string, b []byte, lines bool) ([]byte, error) {
	want, sum := r.id()
	if r.err != nil {
		return nil, r.err
	}
	if want > repo.MaxBundleFileSize {
		return nil, fmt.Errorf("file %s: %d bytes, more than the limit of %d", name, want, repo.MaxBundleFileSize)
	}
	// The result is at most the base file and the bytes inserted.
	out := make([]byte, 0, min(want, uint64(len(b)+len(r.b))))
	pos := 0
	for {
		ins := r.byte()
		if r.err != nil {
			return nil, r.err
		}
		if ins == insEnd {
			break
		}
		n := r.uvarint()
		if r.err != nil {
			return nil, r.err
		}
		if n == 0 {
			return nil, fmt.Errorf("file %s: instruction %d with a count of 0", name, ins)
		}
		switch ins {
		case insCopy, insSkip:
			end, ok := advance(b, pos, n, lines)
			if !ok {
				return nil, fmt.Errorf("file %s: the script goes past the end of the base file", name)
			}
			if ins == insCopy {
				if uint64(len(out)+end-pos) > want {
					return nil, fmt.Errorf("file %s: the result grows beyond its %d bytes", name, want)
				}
				out = append(out, b[pos:end]...)
			}
			pos = end
		case insAdd:
			if n > want-uint64(len(out)) {
				return nil, fmt.Errorf("file %s: the result grows beyond its %d bytes", name, want)
			}
			p := r.take(int(n))
			if r.err != nil {
				return nil, r.err
			}
			out = append(out, p...)
		default:
			return nil, fmt.Errorf("file %s: unknown instruction %d", name, ins)
		}
	}
	if pos != len(b) {
		return nil, fmt.Errorf("file %s: the script leaves %d bytes of the base file unread", name, len(b)-pos)
	}
	if uint64(len(out)) != want {
		return nil, fmt.Errorf("file %s: the result is %d bytes, the delta says %d", name, len(out), want)
	}
	if s := sha256.Sum256(out); !bytes.Equal(s[:], sum) {
		return nil, fmt.Errorf("file %s: the result's SHA-256 differs from the delta's", name)
	}
	return out, nil
}

// advance returns the position n units (lines or bytes) after pos in b,
// or false when b ends before.
func advance(b []byte, pos int, n uint64, lines bool) (int, bool) {
	if !lines {
		if n > uint64(len(b)-pos) {
			return 0, false
		}
		return pos + int(n), true
	}
	for ; n > 0; n-- {
		if pos >= len(b) {
			return 0, false
		}
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			pos = len(b)
		} else {
			pos += i + 1
		}
	}
	return pos, true
}

// encoder writes a body or a script.
type encoder struct{ buf []byte }

func (e *encoder) byte(c byte)       { e.buf = append(e.buf, c) }
func (e *encoder) uvarint(v uint64)  { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) bytes(p []byte)    { e.uvarint(uint64(len(p))); e.buf = append(e.buf, p...) }
func (e *encoder) ins(k byte, n int) { e.byte(k); e.uvarint(uint64(n)) }
func (e *encoder) id(p []byte) {
	e.uvarint(uint64(len(p)))
	s := sha256.Sum256(p)
	e.buf = append(e.buf, s[:]...)
}
