package cvd

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kind is a container's kind, named by its extension.
type Kind string

const (
	CVD Kind = "cvd" // signed by its distributor, gzip-compressed
	CLD Kind = "cld" // a .cvd patched by freshclam: unsigned header, signed .info, plain tar
	CUD Kind = "cud" // unsigned ("sigtool --unsigned"), gzip-compressed
)

// KindOf returns the container kind of a file name by its extension
// (case-insensitive, as ClamAV matches it), or false.
func KindOf(name string) (Kind, bool) {
	ext := strings.ToLower(filepath.Ext(name))
	switch ext {
	case ".cvd", ".cld", ".cud":
		return Kind(ext[1:]), true
	}
	return "", false
}

// DatabaseName is the database a container's file name names, as ClamAV
// takes it: the base name up to the first '-' or '.' ("daily" for
// daily.cvd or daily-27480.cvd).
func DatabaseName(name string) string {
	b := filepath.Base(name)
	if i := strings.IndexAny(b, "-."); i >= 0 {
		return b[:i]
	}
	return b
}

// Limits bound what Read accepts.
type Limits struct {
	MaxContainer int64 // bytes of the container file
	MaxFiles     int   // entries in its tar
	MaxFileSize  int64 // bytes of one entry
	MaxTotal     int64 // bytes of all entries
}

// DefaultLimits hold ClamAV's real databases (daily.cvd: about 60
// files; main.cvd: about 170 MiB unpacked) with room to grow.
var DefaultLimits = Limits{
	MaxContainer: 1 << 30,
	MaxFiles:     1000,
	MaxFileSize:  1 << 30,
	MaxTotal:     2 << 30,
}

// File is one file of a container.
type File struct {
	Name string
	Data []byte
}

// InfoEntry is one line of a container's .info: a signature file, its
// size and its SHA-256 (hex).
type InfoEntry struct {
	Name   string
	Size   int64
	SHA256 string
}

// Container is a container that passed every check.
type Container struct {
	Name       string // base name of the container file
	Kind       Kind
	Header     Header
	Compressed bool        // the tar is gzip-compressed
	Files      []File      // in tar order
	InfoFile   string      // name of the .info file among Files
	Info       []InfoEntry // its listing
	Signed     bool        // a signature was checked (header for .cvd, .info for .cvd and .cld)
}

// Open reads the container at path and checks it (see Read).
func Open(path string, keys Keys, lim Limits) (*Container, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > lim.MaxContainer {
		return nil, fmt.Errorf("%s: %d bytes, more than the limit of %d", path, st.Size(), lim.MaxContainer)
	}
	data, err := io.ReadAll(io.LimitReader(f, lim.MaxContainer+1))
	if err != nil {
		return nil, err
	}
	c, err := Read(filepath.Base(path), data, keys, lim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Read checks the container named name (its extension gives its kind)
// held in data, as the package documentation describes, and returns its
// files. Nothing is returned unless every check passed.
func Read(name string, data []byte, keys Keys, lim Limits) (*Container, error) {
	kind, ok := KindOf(name)
	if !ok {
		return nil, fmt.Errorf("%s: not a container (want .cvd, .cld or .cud)", name)
	}
	if int64(len(data)) > lim.MaxContainer {
		return nil, fmt.Errorf("%d bytes, more than the limit of %d", len(data), lim.MaxContainer)
	}
	if len(data) < HeaderSize {
		return nil, fmt.Errorf("%d bytes: smaller than the %d-byte container header", len(data), HeaderSize)
	}
	h, err := ParseHeader(data[:HeaderSize])
	if err != nil {
		return nil, err
	}
	body := data[HeaderSize:]
	if len(body) < 7 {
		return nil, errors.New("no tar after the header")
	}
	c := &Container{Name: name, Kind: kind, Header: h, Compressed: !bytes.HasPrefix(body, []byte("COPYING"))}

	sum := md5.Sum(body)
	md5hex := hex.EncodeToString(sum[:])
	if h.MD5 != "" && h.MD5 != md5hex {
		return nil, fmt.Errorf("MD5 of the body is %s, the header says %s: the container is corrupt or altered", md5hex, h.MD5)
	}
	if kind == CVD {
		if h.DSig == "" {
			return nil, errors.New("a .cvd must carry a digital signature; this header has none")
		}
		if keys.CVD == nil {
			return nil, errors.New("no key to check the .cvd signature with")
		}
		if err := VerifyMD5Sig(md5hex, h.DSig, keys.CVD); err != nil {
			return nil, err
		}
		c.Signed = true
	}

	var r io.Reader = bytes.NewReader(body)
	if c.Compressed {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("body: not gzip-compressed (and not a plain tar starting with COPYING): %w", err)
		}
		defer zr.Close()
		r = zr
	}
	if c.Files, err = readTar(r, lim); err != nil {
		return nil, err
	}
	if err := c.checkInfo(keys); err != nil {
		return nil, err
	}
	return c, nil
}

// readTar reads a container's tar as libclamav/cvd.c cli_tgzload does:
// 512-byte blocks; a block starting with NUL, or the end of the data,
// ends it; names without '/'; regular files only. Vigil also refuses
// names that are not plain file names, duplicates, and anything past
// the limits.
func readTar(r io.Reader, lim Limits) ([]File, error) {
	var files []File
	seen := map[string]bool{}
	var total int64
	block := make([]byte, 512)
	for {
		n, err := io.ReadFull(r, block)
		if n == 0 && (err == io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errors.New("tar: incomplete block")
			}
			return nil, fmt.Errorf("tar: %w", err)
		}
		if block[0] == 0 {
			break
		}
		name := string(block[:100])
		if i := strings.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if strings.Contains(name, "/") {
			return nil, fmt.Errorf("tar: entry %q: path separators are not allowed in a container", name)
		}
		if err := checkEntryName(name); err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		switch t := block[156]; t {
		case '0', 0:
		case '5':
			return nil, fmt.Errorf("tar: entry %q: directories are not allowed in a container", name)
		case '1', '2':
			return nil, fmt.Errorf("tar: entry %q: links are not allowed in a container", name)
		default:
			return nil, fmt.Errorf("tar: entry %q: type %q: only regular files are allowed in a container", name, t)
		}
		size, err := parseOctal(block[124:136])
		if err != nil {
			return nil, fmt.Errorf("tar: entry %q: %w", name, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("tar: entry %q appears twice", name)
		}
		seen[name] = true
		if len(files) >= lim.MaxFiles {
			return nil, fmt.Errorf("tar: more than %d files", lim.MaxFiles)
		}
		if size > lim.MaxFileSize {
			return nil, fmt.Errorf("tar: entry %q: %d bytes, more than the limit of %d", name, size, lim.MaxFileSize)
		}
		if total+size > lim.MaxTotal {
			return nil, fmt.Errorf("tar: more than %d bytes in all", lim.MaxTotal)
		}
		total += size
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("tar: entry %q: truncated: %w", name, err)
		}
		if pad := (512 - size%512) % 512; pad > 0 {
			if _, err := io.ReadFull(r, block[:pad]); err != nil {
				return nil, fmt.Errorf("tar: entry %q: truncated padding: %w", name, err)
			}
		}
		files = append(files, File{Name: name, Data: data})
	}
	if len(files) == 0 {
		return nil, errors.New("tar: no files")
	}
	return files, nil
}

// checkEntryName allows plain file names only: 1 to 100 characters from
// A-Z a-z 0-9 . _ - +, not starting with a dot or a dash.
func checkEntryName(name string) error {
	if name == "" {
		return errors.New("entry with an empty name")
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("entry %q: a name may not start with a dot or a dash", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == '+':
		default:
			return fmt.Errorf("entry %q: character %q not allowed in a file name", name, c)
		}
	}
	return nil
}

// parseOctal reads a tar size field as sscanf("%o") does: leading white
// space, then octal digits up to the first other byte; at least one.
func parseOctal(f []byte) (int64, error) {
	if i := bytes.IndexByte(f, 0); i >= 0 {
		f = f[:i]
	}
	f = bytes.TrimLeft(f, " \t\n\v\f\r")
	var v int64
	n := 0
	for _, c := range f {
		if c < '0' || c > '7' {
			break
		}
		v = v*8 + int64(c-'0')
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("size field %q is not an octal number", f)
	}
	return v, nil
}

// dbExts are the extensions ClamAV's CLI_DBEXT names (libclamav/readdb.h):
// the files of a container that its .info must list.
var dbExts = []string{".db", ".hdb", ".hdu", ".fp", ".mdb", ".mdu", ".hsb", ".hsu", ".sfp", ".msb", ".msu",
	".ndb", ".ndu", ".ldb", ".ldu", ".sdb", ".zmd", ".rmd", ".pdb", ".gdb", ".wdb", ".cbc", ".ftm", ".cfg",
	".cvd", ".cld", ".cud", ".cdb", ".cat", ".crb", ".idb", ".ioc", ".yar", ".yara", ".pwdb", ".ign", ".ign2", ".imp"}

// IsDatabaseFile reports whether name has an extension of a file ClamAV
// loads from a container (CLI_DBEXT), which the .info must list.
func IsDatabaseFile(name string) bool {
	l := strings.ToLower(name)
	for _, e := range dbExts {
		if strings.HasSuffix(l, e) {
			return true
		}
	}
	return false
}

// checkInfo finds the .info (the first entry whose name ends in .info),
// reads it as libclamav/readdb.c cli_loadinfo does, and checks the
// container against it.
func (c *Container) checkInfo(keys Keys) error {
	var info *File
	for i := range c.Files {
		if strings.HasSuffix(strings.ToLower(c.Files[i].Name), ".info") {
			info = &c.Files[i]
			break
		}
	}
	if info == nil {
		return errors.New("no .info file in the container")
	}
	c.InfoFile = info.Name
	unsigned := c.Kind == CUD
	sum := sha256.New()
	var ih *Header
	dsig := false
	// Lines end at '\n' only: a '\r' stays in the line and in the hash,
	// as cli_dbgets leaves it.
	lines := bytes.Split(info.Data, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	line := 0
	for _, lb := range lines {
		line++
		if len(lb) >= 8192 {
			return fmt.Errorf("%s:%d: line longer than 8191 bytes", info.Name, line)
		}
		l := string(lb)
		where := fmt.Sprintf("%s:%d", info.Name, line)
		if !unsigned && strings.HasPrefix(l, "DSIG:") {
			if keys.Info == nil {
				return fmt.Errorf("%s: no key to check the .info signature with", where)
			}
			if err := VerifySHA256Sig(sum.Sum(nil), l[5:], keys.Info); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			dsig = true
			break
		}
		sum.Write([]byte(l))
		sum.Write([]byte("\n"))
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, Magic+":") {
			if ih != nil {
				return fmt.Errorf("%s: a second header", where)
			}
			h, err := parseInfoHeader(l)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			ih = &h
			continue
		}
		if ih == nil {
			return fmt.Errorf("%s: the .info does not start with a ClamAV-VDB: header", where)
		}
		tok := strings.SplitN(l, ":", 4)
		if len(tok) != 3 {
			return fmt.Errorf("%s: want NAME:SIZE:SHA256", where)
		}
		if tok[1] == "" || strings.Trim(tok[1], "0123456789") != "" {
			return fmt.Errorf("%s: size %q is not a number", where, tok[1])
		}
		size, err := strconv.ParseInt(tok[1], 10, 64)
		if err != nil {
			return fmt.Errorf("%s: size %q: %w", where, tok[1], err)
		}
		if _, err := hex.DecodeString(tok[2]); err != nil || len(tok[2]) != 64 {
			return fmt.Errorf("%s: malformed SHA-256 %q", where, tok[2])
		}
		c.Info = append(c.Info, InfoEntry{Name: tok[0], Size: size, SHA256: strings.ToLower(tok[2])})
	}
	if !unsigned && !dsig {
		return fmt.Errorf("%s: no DSIG line (a .%s's .info must be signed)", info.Name, c.Kind)
	}
	if !unsigned {
		c.Signed = true
	}
	if ih == nil {
		return fmt.Errorf("%s: no ClamAV-VDB: header", info.Name)
	}
	h := c.Header
	if ih.Version != h.Version || ih.Signatures != h.Signatures || ih.FLevel != h.FLevel || ih.STime != h.STime {
		return fmt.Errorf("%s: its header (version %d, %d signatures, level %d, time %d) does not match the container's (version %d, %d signatures, level %d, time %d)",
			info.Name, ih.Version, ih.Signatures, ih.FLevel, ih.STime, h.Version, h.Signatures, h.FLevel, h.STime)
	}
	listed := map[string]InfoEntry{}
	for _, e := range c.Info {
		if _, ok := listed[e.Name]; !ok {
			listed[e.Name] = e
		}
	}
	for _, f := range c.Files {
		if !IsDatabaseFile(f.Name) {
			continue
		}
		e, ok := listed[f.Name]
		if !ok {
			return fmt.Errorf("%s is not listed in %s", f.Name, info.Name)
		}
		s := sha256.Sum256(f.Data)
		if e.Size != int64(len(f.Data)) || e.SHA256 != hex.EncodeToString(s[:]) {
			return fmt.Errorf("%s: size or SHA-256 differs from %s's listing: the container is corrupt or altered", f.Name, info.Name)
		}
	}
	return nil
}

// parseInfoHeader reads the header line of a .info as cl_cvdparse does:
// colon-separated fields, numbers read as atoi reads them; the build
// time in seconds may be missing (0).
func parseInfoHeader(l string) (Header, error) {
	f := strings.Split(l, ":")
	if len(f) < 8 {
		return Header{}, fmt.Errorf("header %q: want at least 8 fields", l)
	}
	h := Header{Time: f[1], Version: uint32(atoi(f[2])), Signatures: uint32(atoi(f[3])), FLevel: uint32(atoi(f[4])), Builder: f[7]}
	if len(f) > 8 {
		h.STime = uint64(uint32(atoi(f[8])))
	}
	return h, nil
}

// atoi is C's atoi: leading white space, a sign, digits.
func atoi(s string) int64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var v int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9' && v < 1<<40; i++ {
		v = v*10 + int64(s[i]-'0')
	}
	if neg {
		v = -v
	}
	return v
}
