package cvd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

var (
	keyOnce        sync.Once
	testKey, other *rsa.PrivateKey
)

// keys are two 2048-bit keys: the tests' vendor key and another.
func keys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKey, other
}

var buildTime = time.Date(2026, 12, 2, 8, 15, 0, 0, time.UTC)

func build(t testing.TB, kind Kind, key *rsa.PrivateKey, files ...File) []byte {
	t.Helper()
	if files == nil {
		files = []File{
			{Name: "test.hdb", Data: []byte("44d88612fea8a8f36de82e1278abb02f:68:Vigil.Test.Hash\n")},
			{Name: "test.ndb", Data: []byte("# a comment\nVigil.Test.Body:0:*:5649474c2d544553542d424f4459\n")},
		}
	}
	b, err := Write(Build{Kind: kind, Database: "test", Version: 42, FLevel: 90, Builder: "vigil-tests", Time: buildTime, Files: files, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKnownAnswerClamAVKeys checks both signature schemes against
// signatures made by ClamAV's signing service with ClamAV's published
// keys: the header of ClamAV's unit-test database test-1.cvd
// (unit_tests/input/freshclam_testfiles/test-1.cvd) and the DSIG line of
// the test.info inside it (with the SHA-256 of the lines before it).
func TestKnownAnswerClamAVKeys(t *testing.T) {
	t.Parallel()
	const (
		md5hex  = "a4ab60ae1c1c4e8f787459102dcfd90b"
		hdrSig  = "ttQeKzTSL5iF5/IWsA8weveL64WDVkhgfbm/ABaW3xAWalVKcAp65Q/cWmhkhKFfHSLIXNfCzTLbhfTeISKpfWAheL7NZk+t6nQ8NEFBBst6CQcoFTwwyVLwwTSN38VYLW/vZFYphnkBcCotyo++NYU5VQ9JUA6dFQXxaU00b6c"
		infoSHA = "679a67c9b7b694b964fcee5b791070000514af6ab3e78bf488e4a80b62096550"
		infoSig = "TFd9RBeu6wZwfMrWGsGH9WOSs1j+3s+PD2fVTLwR8Qgv2QVF25EXnIfH4cKmKRDoqDCLE0P6Kk3KRROkvaSGv01aiGMNRzY3bHkGQlSUs2p6kXUoV4B+TLn1gZYR4x6XH7GuFPolfxgHuzK974zxoxXe7GhzHPVgxtUI6uODlzJNw2HfCXG/MqPnNmMSC1yquZjmzA3ak0+jrdqfmg8c27xSrvd7/6K6ItyYEa9q3HPL/9g7ANKQ0B+0TegXySdmIkZ+PYgf6u3uEx09db3RXLkesU8K3bvdVZSEyyRh0ir+GibrGM2Fef1GugtNAI8gUQAA9OtJmhuNUsbeWNdDV"
	)
	k := ClamAVKeys()
	if err := VerifyMD5Sig(md5hex, hdrSig, k.CVD); err != nil {
		t.Errorf("ClamAV's header signature: %v", err)
	}
	if err := VerifyMD5Sig("a4ab60ae1c1c4e8f787459102dcfd90c", hdrSig, k.CVD); err == nil {
		t.Error("header signature accepted for another MD5")
	}
	if err := VerifyMD5Sig(md5hex, "u"+hdrSig[1:], k.CVD); err == nil {
		t.Error("altered header signature accepted")
	}
	if err := VerifyMD5Sig(md5hex, hdrSig, k.Info); err == nil {
		t.Error("header signature accepted with the .info key")
	}
	d, _ := hex.DecodeString(infoSHA)
	if err := VerifySHA256Sig(d, infoSig, k.Info); err != nil {
		t.Errorf("ClamAV's .info signature: %v", err)
	}
	d[0] ^= 1
	if err := VerifySHA256Sig(d, infoSig, k.Info); err == nil {
		t.Error(".info signature accepted for another digest")
	}
	if err := VerifyMD5Sig(md5hex, hdrSig+"!", k.CVD); err == nil || !strings.Contains(err.Error(), "alphabet") {
		t.Errorf("signature with a character outside the alphabet: %v", err)
	}
}

func TestDSigEncoding(t *testing.T) {
	t.Parallel()
	key, _ := keys(t)
	for _, m := range [][]byte{make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), {0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}} {
		sig, err := SignMD5(m, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyMD5Sig(hex.EncodeToString(m), sig, &key.PublicKey); err != nil {
			t.Errorf("MD5 %x (leading zero bytes too): %v", m, err)
		}
	}
}

func TestWriteReadEveryKind(t *testing.T) {
	t.Parallel()
	key, _ := keys(t)
	for _, kind := range []Kind{CVD, CLD, CUD} {
		data := build(t, kind, key)
		c, err := Read("test."+string(kind), data, KeysOf(&key.PublicKey), DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		h := c.Header
		if h.Version != 42 || h.FLevel != 90 || h.Signatures != 2 || h.Builder != "vigil-tests" || h.STime != uint64(buildTime.Unix()) || h.Time != "02 Dec 2026 08-15 +0000" {
			t.Errorf("%s: header %+v", kind, h)
		}
		if c.Compressed != (kind != CLD) {
			t.Errorf("%s: compressed %v", kind, c.Compressed)
		}
		if c.Signed != (kind != CUD) {
			t.Errorf("%s: signed %v", kind, c.Signed)
		}
		var names []string
		for _, f := range c.Files {
			names = append(names, f.Name)
		}
		if got := strings.Join(names, " "); got != "COPYING test.info test.hdb test.ndb" {
			t.Errorf("%s: files %s", kind, got)
		}
		if len(c.Info) != 2 || c.InfoFile != "test.info" {
			t.Errorf("%s: info %s %+v", kind, c.InfoFile, c.Info)
		}
		if (kind == CLD) != (h.MD5 == "") || (kind == CVD) != (h.DSig != "") {
			t.Errorf("%s: MD5 %q signature %q", kind, h.MD5, h.DSig)
		}
		if !bytes.HasPrefix(data, []byte("ClamAV-VDB:02 Dec 2026 08-15 +0000:42:2:90:")) || len(data) < 512 || data[511] != ' ' {
			t.Errorf("%s: header %q", kind, data[:100])
		}
	}
}

// rewrap puts body after a .cud header carrying its MD5.
func rewrap(t testing.TB, head []byte, body []byte) []byte {
	h, err := ParseHeader(head)
	if err != nil {
		t.Fatal(err)
	}
	s := md5.Sum(body)
	h.MD5 = hex.EncodeToString(s[:])
	hb, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(hb, body...)
}

// unzipTar returns the plain tar of a compressed container.
func unzipTar(t testing.TB, data []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(data[512:]))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(zr)
	return b.Bytes()
}

func gz(b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

// rawTar builds a tar of the given headers, each with content of its size.
func rawTar(hdrs ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.Format == 0 {
			h.Format = tar.FormatUSTAR
		}
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return b.Bytes()
}

// flipped is a copy of data with one bit changed, 20 bytes from the end
// or at the index given.
func flipped(data []byte, at ...int) []byte {
	b := append([]byte(nil), data...)
	i := len(b) - 20
	if len(at) > 0 {
		i = at[0]
	}
	b[i] ^= 0x01
	return b
}

// retype sets the type flag of a tar's first entry, as a hostile tool
// would write it.
func retype(tb []byte, flag byte) []byte {
	tb[156] = flag
	return tb
}

func TestBadContainersRefusedNothingWritten(t *testing.T) {
	t.Parallel()
	key, otherKey := keys(t)
	trusted := KeysOf(&key.PublicKey)
	cvdData := build(t, CVD, key)
	cudData := build(t, CUD, key)
	cldData := build(t, CLD, key)

	flipBody := append([]byte(nil), cvdData...)
	flipBody[len(flipBody)-20] ^= 0x40

	// A .cvd whose header MD5 matches its body but whose signature is by
	// another key.
	foreign := build(t, CVD, otherKey)

	// A .cvd re-signed by the trusted key whose .info is signed by
	// another: rebuild by hand from the other key's .info.
	otherInfo := unzipTar(t, foreign)
	resigned := func() []byte {
		body := gz(otherInfo)
		h, _ := ParseHeader(cvdData[:512])
		s := md5.Sum(body)
		h.MD5 = hex.EncodeToString(s[:])
		h.DSig, _ = SignMD5(s[:], key)
		hb, _ := h.Encode()
		return append(hb, body...)
	}()

	// A .cud whose signature file was changed after the .info was made
	// (header MD5 recomputed).
	tarOf := unzipTar(t, cudData)
	i := bytes.Index(tarOf, []byte("Vigil.Test.Body"))
	tarOf[i] = 'X'
	alteredCUD := rewrap(t, cudData[:512], gz(tarOf))

	mismatchHead := func() []byte {
		h, _ := ParseHeader(cudData[:512])
		h.Version++
		hb, _ := h.Encode()
		return append(hb, cudData[512:]...)
	}()

	unlisted := func() []byte {
		tb := unzipTar(t, cudData)
		end := bytes.LastIndex(tb, []byte("Vigil.Test.Body"))
		_ = end
		extra := rawTar(&tar.Header{Name: "extra.ldb", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644})
		// Drop the two zero blocks of the original, then append.
		tb = bytes.TrimRight(tb, "\x00")
		tb = append(tb, make([]byte, (512-len(tb)%512)%512)...)
		return rewrap(t, cudData[:512], gz(append(tb, extra...)))
	}()

	hdr := cudData[:512]
	cases := []struct {
		name, file string
		data       []byte
		keys       Keys
		want       string
	}{
		{"body altered", "t.cvd", flipBody, trusted, "MD5 of the body is"},
		{"cud body altered", "t.cud", flipped(cudData), trusted, "MD5 of the body is"},
		{"cud header MD5 altered", "t.cud", func() []byte {
			h, _ := ParseHeader(cudData[:512])
			h.MD5 = strings.Repeat("0", 32)
			hb, _ := h.Encode()
			return append(hb, cudData[512:]...)
		}(), trusted, "MD5 of the body is"},
		{"signed by another key", "t.cvd", foreign, trusted, "digital signature does not match"},
		{"ClamAV's key for the test key's cvd", "t.cvd", cvdData, ClamAVKeys(), "digital signature does not match"},
		{"ClamAV's key for the test key's cld", "t.cld", cldData, ClamAVKeys(), ".info signature"},
		{".info by another key", "t.cvd", resigned, trusted, ".info signature"},
		{"cld .info by another key", "t.cld", build(t, CLD, otherKey), trusted, ".info signature"},
		{"signature file altered", "t.cud", alteredCUD, trusted, "differs from test.info"},
		{"file not in .info", "t.cud", unlisted, trusted, "not listed"},
		{"headers disagree", "t.cud", mismatchHead, trusted, "does not match the container's"},
		{"unsigned cvd", "t.cvd", rewrap(t, hdr, cudData[512:]), trusted, "must carry a digital signature"},
		{"signed cld claimed as cud", "t.cud", rewrap(t, hdr, gz(unzipTar(t, cvdData))), trusted, "want NAME:SIZE:SHA256"},
		{"not a container name", "t.tar", cudData, trusted, "not a container"},
		{"short", "t.cud", cudData[:300], trusted, "smaller than"},
		{"no magic", "t.cud", append([]byte("ClamAV-VDX"), cudData[10:]...), trusted, "magic"},
		{"not gzip", "t.cud", rewrap(t, hdr, []byte("PK\x03\x04 this is not gzip")), trusted, "not gzip"},
		{"slash", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "../evil.ndb", Typeflag: tar.TypeReg, Size: 1}))), trusted, "path separators"},
		{"directory", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "d", Typeflag: tar.TypeDir}))), trusted, "directories"},
		{"symlink", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "l.ndb", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}))), trusted, "links"},
		{"hard link", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "l.ndb", Typeflag: tar.TypeLink, Linkname: "COPYING"}))), trusted, "links"},
		{"pax", "t.cud", rewrap(t, hdr, gz(retype(rawTar(&tar.Header{Name: "p.ndb", Typeflag: tar.TypeReg, Size: 1}), 'x'))), trusted, "only regular files"},
		{"gnu long name", "t.cud", rewrap(t, hdr, gz(retype(rawTar(&tar.Header{Name: "p.ndb", Typeflag: tar.TypeReg, Size: 1}), 'L'))), trusted, "only regular files"},
		{"fifo", "t.cud", rewrap(t, hdr, gz(retype(rawTar(&tar.Header{Name: "p.ndb", Typeflag: tar.TypeReg, Size: 1}), '6'))), trusted, "only regular files"},
		{"hidden", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: ".hidden", Typeflag: tar.TypeReg, Size: 1}))), trusted, "dot"},
		{"duplicate", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "a.ndb", Typeflag: tar.TypeReg, Size: 1}, &tar.Header{Name: "a.ndb", Typeflag: tar.TypeReg, Size: 1}))), trusted, "twice"},
		{"truncated", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "a.ndb", Typeflag: tar.TypeReg, Size: 4000})[:1500])), trusted, "truncated"},
		{"half block", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "a.ndb", Typeflag: tar.TypeReg, Size: 4000})[:256])), trusted, "incomplete block"},
		{"no .info", "t.cud", rewrap(t, hdr, gz(rawTar(&tar.Header{Name: "a.ndb", Typeflag: tar.TypeReg, Size: 4}))), trusted, "no .info"},
		{"empty tar", "t.cud", rewrap(t, hdr, gz(make([]byte, 1024))), trusted, "no files"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, tc.file)
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			_, err := Unpack(p, out, tc.keys, DefaultLimits, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("%d files written for a refused container", len(ents))
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	key, _ := keys(t)
	data := build(t, CUD, key)
	trusted := KeysOf(&key.PublicKey)
	for _, tc := range []struct {
		lim  Limits
		want string
	}{
		{Limits{MaxContainer: 100, MaxFiles: 10, MaxFileSize: 1 << 20, MaxTotal: 1 << 20}, "limit"},
		{Limits{MaxContainer: 1 << 20, MaxFiles: 3, MaxFileSize: 1 << 20, MaxTotal: 1 << 20}, "more than 3 files"},
		{Limits{MaxContainer: 1 << 20, MaxFiles: 10, MaxFileSize: 60, MaxTotal: 1 << 20}, "more than the limit of 60"},
		{Limits{MaxContainer: 1 << 20, MaxFiles: 10, MaxFileSize: 1 << 20, MaxTotal: 200}, "more than 200 bytes in all"},
	} {
		if _, err := Read("t.cud", data, trusted, tc.lim); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("limits %+v: %v, want %q", tc.lim, err, tc.want)
		}
	}
	// A gzip bomb: a 1 GiB entry declared, zeros compressed; refused on
	// its declared size before anything is read.
	bomb := rewrap(t, data[:512], gz(rawTar(&tar.Header{Name: "z.ndb", Typeflag: tar.TypeReg, Size: 64 << 20})))
	if _, err := Read("t.cud", bomb, trusted, Limits{MaxContainer: 1 << 30, MaxFiles: 10, MaxFileSize: 1 << 20, MaxTotal: 1 << 20}); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("bomb: %v", err)
	}
}

func TestUnpackWritesFilesAndKeeps(t *testing.T) {
	t.Parallel()
	key, _ := keys(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "daily.cld")
	os.WriteFile(p, build(t, CLD, key), 0o644)
	out := t.TempDir()
	c, err := Unpack(p, out, KeysOf(&key.PublicKey), DefaultLimits, func(n string) bool { return strings.HasSuffix(n, "db") })
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 2 || ents[0].Name() != "test.hdb" || ents[1].Name() != "test.ndb" {
		t.Errorf("unpacked %v", ents)
	}
	if c.Name != "daily.cld" || DatabaseName(p) != "daily" || DatabaseName("daily-27480.cvd") != "daily" {
		t.Errorf("names %q %q", c.Name, DatabaseName(p))
	}
	// A second unpack into the same directory refuses to overwrite, and
	// leaves what was there.
	if _, err := Unpack(p, out, KeysOf(&key.PublicKey), DefaultLimits, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second unpack: %v", err)
	}
	if ents2, _ := os.ReadDir(out); len(ents2) != 2 {
		t.Errorf("after a failed unpack: %v", ents2)
	}
}

func TestParseHeaderAsClamAV(t *testing.T) {
	t.Parallel()
	pad := func(s string) []byte { return []byte(s + strings.Repeat(" ", 512-len(s))) }
	good := "ClamAV-VDB:02 Dec 2026 08-15 +0000:27480:2076000:90:0123456789abcdef0123456789abcdef:sig:builder:1764663300"
	h, err := ParseHeader(pad(good))
	if err != nil || h.Version != 27480 || h.Signatures != 2076000 || h.FLevel != 90 || h.DSig != "sig" || h.Builder != "builder" || h.STime != 1764663300 {
		t.Fatalf("%+v %v", h, err)
	}
	ok := []string{
		"ClamAV-VDB:t:+1:2:3:X:X:b:5",        // Rust's u32 parse takes a leading '+'
		"ClamAV-VDB:t:1:2:3:X:X:b:5:extra",   // fields after the ninth are ignored
		"ClamAV-VDB:t:1:2:3:short:X:b:5\t\r", // trailing white space
	}
	for _, s := range ok {
		if _, err := ParseHeader(pad(s)); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{
		"ClamAV-VDB:t:1:2:3:X:X:b",            // no seconds (ClamAV 1.x requires them)
		"ClamAV-VDB:t: 1:2:3:X:X:b:5",         // leading space in a number
		"ClamAV-VDB:t:1:2:-3:X:X:b:5",         // negative
		"ClamAV-VDB:t:4294967296:2:3:X:X:b:5", // over 32 bits
		"ClamAV-VDB:t:1:2:3:X:X:b:5x",         // junk after the seconds
		"clamav-vdb:t:1:2:3:X:X:b:5",          // magic is case-sensitive
		"ClamAV-VDB:t:1:2:3:X:X:b:\xff",       // not UTF-8
	}
	for _, s := range bad {
		if _, err := ParseHeader(pad(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if _, err := ParseHeader([]byte(good)); err == nil {
		t.Error("short header accepted")
	}
	// NUL padding is not white space to Rust's trim_end.
	nul := append([]byte(good), make([]byte, 512-len(good))...)
	if _, err := ParseHeader(nul); err == nil {
		t.Error("NUL-padded header accepted")
	}
}

// TestClamAVReadsWrittenContainers checks what ClamAV 1.x itself makes of
// the containers Write builds: sigtool --info reads every header; a .cud
// (unsigned) loads in clamscan and detects; a .cvd or .cld signed by the
// tests' key is refused by ClamAV, whose keys are built in.
func TestClamAVReadsWrittenContainers(t *testing.T) {
	t.Parallel()
	sigtool := testenv.NeedTool(t, "sigtool", "clamav")
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	key, _ := keys(t)
	dir := t.TempDir()
	sample := []byte("a file with VIGIL-TEST-BODY inside\n")
	hashed := []byte("a file found by its hash\n")
	s := md5.Sum(hashed)
	files := []File{
		{Name: "vt.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Test.Hash\n", s, len(hashed)))},
		{Name: "vt.ndb", Data: []byte("Vigil.Test.Body:0:*:" + hex.EncodeToString([]byte("VIGIL-TEST-BODY")) + "\n")},
	}
	os.WriteFile(filepath.Join(dir, "sample.txt"), sample, 0o644)
	os.WriteFile(filepath.Join(dir, "hashed.txt"), hashed, 0o644)
	// What ClamAV says: the header's signature (MD5 RSA, 1024-bit key)
	// does not decode to 16 bytes under ClamAV's key; the .cld's header is
	// not checked, its .info DSIG (RSA-PSS, 2048-bit key) is.
	wantRefusal := map[Kind]string{CVD: "(128 vs 16)", CLD: "cli_loadinfo: Incorrect digital signature"}
	for _, kind := range []Kind{CVD, CLD, CUD} {
		// Each in a directory of its own: ClamAV checks a .cvd next to a
		// .cld of the same name too.
		p := filepath.Join(t.TempDir(), "vt."+string(kind))
		if err := os.WriteFile(p, build(t, kind, key, files...), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sigtool, "--info", p).CombinedOutput()
		info := string(out)
		for _, want := range []string{"Build time: 02 Dec 2026 08:15 +0000", "Version: 42", "Signatures: 2", "Functionality level: 90", "Builder: vigil-tests"} {
			if !strings.Contains(info, want) {
				t.Errorf("sigtool --info %s: no %q in\n%s", kind, want, info)
			}
		}
		switch kind {
		case CUD:
			if err != nil || !strings.Contains(info, "Verification: Unsigned container") {
				t.Errorf("sigtool --info .cud: %v\n%s", err, info)
			}
		default:
			t.Logf("sigtool --info .%s: %s", kind, info)
			if err == nil || strings.Contains(info, "Verification OK") {
				t.Errorf("sigtool --info .%s verified the tests' key: %v\n%s", kind, err, info)
			}
		}
		if kind == CVD {
			if !strings.Contains(info, "MD5: ") || !strings.Contains(info, "Digital signature: ") {
				t.Errorf("sigtool --info .cvd: no MD5 or signature\n%s", info)
			}
		}
		cmd := exec.Command(clamscan, "--no-summary", "-d", p, filepath.Join(dir, "sample.txt"), filepath.Join(dir, "hashed.txt"))
		out, err = cmd.CombinedOutput()
		res := string(out)
		if kind == CUD {
			if !strings.Contains(res, "sample.txt: Vigil.Test.Body.UNOFFICIAL FOUND") || !strings.Contains(res, "hashed.txt: Vigil.Test.Hash.UNOFFICIAL FOUND") {
				t.Errorf("clamscan -d .cud: %v\n%s", err, res)
			}
		} else if t.Logf("clamscan -d .%s: %s", kind, res); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(res, wantRefusal[kind]) {
			t.Errorf("clamscan -d .%s signed by the tests' key: exit %d, want 2 (refused)\n%s", kind, cmd.ProcessState.ExitCode(), res)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	key, _ := keys(f)
	for _, k := range []Kind{CVD, CLD, CUD} {
		f.Add(build(f, k, key)[:512])
	}
	f.Add([]byte("ClamAV-VDB:t:1:2:3:X:X:b:5"))
	f.Add([]byte("ClamAV-VDB:::::::::::::::"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		enc, err := h.Encode()
		if err != nil {
			return
		}
		h2, err := ParseHeader(enc)
		if err != nil {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
		if h2.Version != h.Version || h2.Signatures != h.Signatures || h2.FLevel != h.FLevel || h2.STime != h.STime {
			t.Fatalf("round trip %+v -> %+v", h, h2)
		}
	})
}

func FuzzRead(f *testing.F) {
	key, _ := keys(f)
	trusted := KeysOf(&key.PublicKey)
	for _, k := range []Kind{CVD, CLD, CUD} {
		f.Add(string(k), build(f, k, key))
	}
	cud := build(f, CUD, key)
	// A .cud with a plain tar (it starts with COPYING): mutations reach
	// the tar and .info readers without breaking a gzip checksum.
	f.Add("cud", rewrap(f, cud[:512], unzipTar(f, cud)))
	f.Add("cud", rewrap(f, cud[:512], gz(rawTar(&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Size: 1}))))
	f.Add("cld", append(append([]byte(nil), cud[:512]...), rawTar(&tar.Header{Name: "COPYING", Typeflag: tar.TypeReg, Size: 3})...))
	lim := Limits{MaxContainer: 1 << 20, MaxFiles: 20, MaxFileSize: 1 << 16, MaxTotal: 1 << 18}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		// The fuzzer may not forge signatures, so the .cvd and .cld paths
		// mostly end at a signature check; the MD5 is fixed up so the
		// tar and .info code is reached for .cud.
		if kind == "cud" && len(data) >= 512 {
			if h, err := ParseHeader(data[:512]); err == nil && h.MD5 != "" {
				s := md5.Sum(data[512:])
				h.MD5 = hex.EncodeToString(s[:])
				if hb, err := h.Encode(); err == nil {
					data = append(hb, data[512:]...)
				}
			}
		}
		c, err := Read("f."+kind, data, trusted, lim)
		if err != nil {
			return
		}
		var total int64
		for _, fl := range c.Files {
			if checkEntryName(fl.Name) != nil || strings.ContainsAny(fl.Name, `/\`) {
				t.Fatalf("unsafe name %q accepted", fl.Name)
			}
			total += int64(len(fl.Data))
		}
		if len(c.Files) > lim.MaxFiles || total > lim.MaxTotal {
			t.Fatalf("limits exceeded: %d files, %d bytes", len(c.Files), total)
		}
		if c.InfoFile == "" {
			t.Fatal("accepted without a .info")
		}
		_ = sha256.Sum256
	})
}

// TestReadsSigtoolBuiltContainer reads a .cud that ClamAV's own sigtool
// builds (sigtool --build --unsigned: the only kind it builds without
// ClamAV's signing service).
func TestReadsSigtoolBuiltContainer(t *testing.T) {
	t.Parallel()
	sigtool := testenv.NeedTool(t, "sigtool", "clamav")
	dir := t.TempDir()
	hdb := "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"
	ndb := "Vigil.Body:0:*:" + hex.EncodeToString([]byte("VIGIL-SIGTOOL")) + "\n"
	os.WriteFile(filepath.Join(dir, "st.hdb"), []byte(hdb), 0o644)
	os.WriteFile(filepath.Join(dir, "st.ndb"), []byte(ndb), 0o644)
	// sigtool refuses a body whose MD5 starts with 00 (ClamAV 1.1 to 1.4
	// cannot verify it); another COPYING makes another MD5.
	for attempt := 0; ; attempt++ {
		os.WriteFile(filepath.Join(dir, "COPYING"), []byte(fmt.Sprintf("built by the tests (%d)\n", attempt)), 0o644)
		cmd := exec.Command(sigtool, "--build=st.cud", "--unsigned", "--cvd-version=5", "--no-cdiff", "--datadir="+dir)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SIGNDUSER=sigtool-tests")
		out, err := cmd.CombinedOutput()
		if _, serr := os.Stat(filepath.Join(dir, "st.cud")); err == nil && serr == nil {
			break
		}
		if attempt > 5 || !strings.Contains(string(out), "starts with 00") {
			t.Fatalf("sigtool --build: %v\n%s", err, out)
		}
	}
	c, err := Open(filepath.Join(dir, "st.cud"), Keys{}, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Header
	if h.Version != 5 || h.Signatures != 2 || h.Builder != "sigtool-tests" || h.MD5 == "" || h.DSig != "" || h.FLevel == 0 || !c.Compressed {
		t.Errorf("header %+v", h)
	}
	got := map[string]string{}
	for _, f := range c.Files {
		got[f.Name] = string(f.Data)
	}
	if got["st.hdb"] != hdb || got["st.ndb"] != ndb || got["COPYING"] == "" || c.InfoFile != "st.info" || len(c.Info) != 2 {
		t.Errorf("files %v, info %s %+v", got, c.InfoFile, c.Info)
	}
	// The same file under a .cvd name has no signature: refused.
	b, _ := os.ReadFile(filepath.Join(dir, "st.cud"))
	if _, err := Read("st.cvd", b, ClamAVKeys(), DefaultLimits); err == nil || !strings.Contains(err.Error(), "must carry a digital signature") {
		t.Errorf("as .cvd: %v", err)
	}
}
