package cvd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Build describes a container to Write.
type Build struct {
	Kind       Kind
	Database   string // the database name: NAME.info is written (e.g. "main")
	Version    uint32
	FLevel     uint32
	Signatures uint32 // 0: the count of lines in the database files that are neither empty nor comments
	Builder    string // at most 32 characters, no colon
	Time       time.Time
	Files      []File          // the signature files; a COPYING is added first if absent
	Key        *rsa.PrivateKey // signs a .cvd's header and a .cvd's or .cld's .info (2048 bits); not used for a .cud
}

// defaultCopying is the COPYING written when the build gives none.
const defaultCopying = "This container was built with Vigil (internal/cvd).\n"

// Write builds a container as sigtool --build does (and, for a .cld, as
// freshclam writes one): COPYING, then DATABASE.info, then the files, in
// a tar (gzip-compressed for .cvd and .cud, plain for .cld) after the
// 512-byte header. The .info lists every database file (IsDatabaseFile)
// with its size and SHA-256 and, except in a .cud, ends with a DSIG line
// signed by b.Key; a .cvd's header carries the MD5 of the body and its
// signature by b.Key. Read with KeysOf(&b.Key.PublicKey) accepts the
// result.
func Write(b Build) ([]byte, error) {
	switch b.Kind {
	case CVD, CLD, CUD:
	default:
		return nil, fmt.Errorf("build: kind %q, want cvd, cld or cud", b.Kind)
	}
	if b.Kind != CUD && b.Key == nil {
		return nil, fmt.Errorf("build: a .%s needs a signing key", b.Kind)
	}
	if err := checkEntryName(b.Database); err != nil || strings.Contains(b.Database, ".") {
		return nil, fmt.Errorf("build: database name %q: want a plain name such as main", b.Database)
	}
	if b.Builder == "" || len(b.Builder) > 32 || strings.ContainsAny(b.Builder, ": \t\r\n\x00") {
		return nil, fmt.Errorf("build: builder %q: want 1 to 32 characters, no colon or space", b.Builder)
	}
	if b.Time.IsZero() || b.Time.Unix() < 0 {
		return nil, errors.New("build: no build time")
	}
	infoName := b.Database + ".info"
	files := []File{}
	seen := map[string]bool{infoName: true}
	hasCopying := false
	for _, f := range b.Files {
		if err := checkEntryName(f.Name); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		if len(f.Name) > 99 {
			return nil, fmt.Errorf("build: %s: name longer than 99 bytes", f.Name)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("build: %s given twice, or named as the .info", f.Name)
		}
		seen[f.Name] = true
		if f.Name == "COPYING" {
			hasCopying = true
		}
		files = append(files, f)
	}
	sigs := b.Signatures
	if sigs == 0 {
		for _, f := range files {
			if IsDatabaseFile(f.Name) {
				for _, l := range strings.Split(string(f.Data), "\n") {
					if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
						sigs++
					}
				}
			}
		}
	}
	t := b.Time.UTC()
	h := Header{Time: t.Format(TimeLayout), Version: b.Version, Signatures: sigs, FLevel: b.FLevel, Builder: b.Builder, STime: uint64(t.Unix())}

	var info bytes.Buffer
	info.WriteString(h.line("X", "X") + "\n")
	for _, f := range files {
		if IsDatabaseFile(f.Name) {
			s := sha256.Sum256(f.Data)
			fmt.Fprintf(&info, "%s:%d:%s\n", f.Name, len(f.Data), hex.EncodeToString(s[:]))
		}
	}
	if b.Kind != CUD {
		d := sha256.Sum256(info.Bytes())
		sig, err := SignSHA256(d[:], b.Key)
		if err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		fmt.Fprintf(&info, "DSIG:%s\n", sig)
	}

	ordered := make([]File, 0, len(files)+2)
	if hasCopying {
		for _, f := range files {
			if f.Name == "COPYING" {
				ordered = append(ordered, f)
			}
		}
	} else {
		ordered = append(ordered, File{Name: "COPYING", Data: []byte(defaultCopying)})
	}
	ordered = append(ordered, File{Name: infoName, Data: info.Bytes()})
	for _, f := range files {
		if f.Name != "COPYING" {
			ordered = append(ordered, f)
		}
	}

	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range ordered {
		hdr := &tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), ModTime: t, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	body := tarBuf.Bytes()
	if b.Kind != CLD {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(body)
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		body = z.Bytes()
	}
	if b.Kind != CLD {
		sum := md5.Sum(body)
		h.MD5 = hex.EncodeToString(sum[:])
		if b.Kind == CVD {
			sig, err := SignMD5(sum[:], b.Key)
			if err != nil {
				return nil, fmt.Errorf("build: %w", err)
			}
			h.DSig = sig
		}
	}
	head, err := h.Encode()
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return append(head, body...), nil
}
