package cvd

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HeaderSize is the size of a container's header.
const HeaderSize = 512

// Magic starts every container header.
const Magic = "ClamAV-VDB"

// TimeLayout is how sigtool writes the build time in a header ("%d %b %Y
// %H-%M %z": a dash for the colon, which separates fields).
const TimeLayout = "02 Jan 2006 15-04 -0700"

// Header is a container's 512-byte header.
type Header struct {
	Time       string // build time as written, e.g. "02 Dec 2026 08-15 +0000"
	Version    uint32 // the database's version (daily.cvd: 27480)
	Signatures uint32 // signature count
	FLevel     uint32 // minimum functionality level of the engine
	MD5        string // hex MD5 of the body; "" when the field is not 32 characters (.cld: "X")
	DSig       string // digital signature of the MD5; "" when the field has at most one character (.cld, .cud: "X")
	Builder    string // who built it
	STime      uint64 // build time, seconds since 1970
}

// BuildTime is the header's build time.
func (h Header) BuildTime() time.Time { return time.Unix(int64(h.STime), 0).UTC() }

// ParseHeader parses a container header as ClamAV 1.x does
// (libclamav_rust/src/cvd.rs, CVD::from_file): the 512 bytes split at
// colons; the magic; the build time (not checked); version, signature
// count and functionality level as unsigned 32-bit decimals; the MD5
// (kept when 32 characters long), the signature (kept when longer than
// one character), the builder; the build time in seconds, an unsigned
// 64-bit decimal once trailing white space is removed. Fields after it
// are ignored.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("container header: %d bytes, want %d", len(b), HeaderSize)
	}
	b = b[:HeaderSize]
	fields := bytes.SplitN(b, []byte(":"), 10)
	if string(fields[0]) != Magic {
		return h, errors.New("container header: not a ClamAV container (no ClamAV-VDB: magic)")
	}
	if len(fields) < 9 {
		return h, fmt.Errorf("container header: %d fields, want 9 (magic, time, version, signatures, functionality level, MD5, signature, builder, seconds)", len(fields))
	}
	str := func(i int, what string) (string, error) {
		if !utf8.Valid(fields[i]) {
			return "", fmt.Errorf("container header: %s is not valid UTF-8", what)
		}
		return string(fields[i]), nil
	}
	var err error
	if h.Time, err = str(1, "the build time"); err != nil {
		return Header{}, err
	}
	for i, f := range []struct {
		dst  *uint32
		what string
	}{{&h.Version, "version"}, {&h.Signatures, "signature count"}, {&h.FLevel, "functionality level"}} {
		s, err := str(2+i, "the "+f.what)
		if err != nil {
			return Header{}, err
		}
		v, err := parseRustUint(s, 32)
		if err != nil {
			return Header{}, fmt.Errorf("container header: %s %q is not an unsigned 32-bit integer", f.what, s)
		}
		*f.dst = uint32(v)
	}
	md5, err := str(5, "the MD5")
	if err != nil {
		return Header{}, err
	}
	if len(md5) == 32 {
		h.MD5 = md5
	}
	dsig, err := str(6, "the digital signature")
	if err != nil {
		return Header{}, err
	}
	if len(dsig) > 1 {
		h.DSig = dsig
	}
	if h.Builder, err = str(7, "the builder"); err != nil {
		return Header{}, err
	}
	st, err := str(8, "the build time in seconds")
	if err != nil {
		return Header{}, err
	}
	st = strings.TrimRightFunc(st, isRustWhitespace)
	v, err := parseRustUint(st, 64)
	if err != nil {
		return Header{}, fmt.Errorf("container header: build time in seconds %q is not an unsigned integer", st)
	}
	h.STime = v
	return h, nil
}

// parseRustUint parses as Rust's u32/u64 FromStr: decimal digits with an
// optional leading '+', nothing else.
func parseRustUint(s string, bits int) (uint64, error) {
	s = strings.TrimPrefix(s, "+")
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, errors.New("not a number")
	}
	return strconv.ParseUint(s, 10, bits)
}

// isRustWhitespace is Rust's char::is_whitespace (Unicode White_Space).
func isRustWhitespace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// line is the header's fields joined by colons, unpadded.
func (h Header) line(md5, dsig string) string {
	return fmt.Sprintf("%s:%s:%d:%d:%d:%s:%s:%s:%d", Magic, h.Time, h.Version, h.Signatures, h.FLevel, md5, dsig, h.Builder, h.STime)
}

// Encode returns the 512-byte header as sigtool writes it: the fields
// joined by colons and padded with spaces. An empty MD5 or signature is
// written "X", as sigtool writes them for unsigned containers.
func (h Header) Encode() ([]byte, error) {
	for _, f := range []struct{ v, what string }{{h.Time, "build time"}, {h.MD5, "MD5"}, {h.DSig, "signature"}, {h.Builder, "builder"}} {
		if strings.ContainsAny(f.v, ":\r\n\x00") {
			return nil, fmt.Errorf("container header: the %s %q holds a colon, a line break or a NUL", f.what, f.v)
		}
	}
	if h.MD5 != "" && len(h.MD5) != 32 {
		return nil, fmt.Errorf("container header: MD5 %q is not 32 hex digits", h.MD5)
	}
	md5, dsig := h.MD5, h.DSig
	if md5 == "" {
		md5 = "X"
	}
	if dsig == "" {
		dsig = "X"
	}
	s := h.line(md5, dsig)
	if len(s) > HeaderSize {
		return nil, fmt.Errorf("container header: %d bytes, more than %d", len(s), HeaderSize)
	}
	return []byte(s + strings.Repeat(" ", HeaderSize-len(s))), nil
}
