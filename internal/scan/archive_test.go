package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/unpack"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// peSpec describes a PE file for mkpe: sections of raw data placed one
// after the other from 0x200 (FileAlignment 0x200), each rawSize bytes
// declared (SizeOfRawData), data the bytes written.
type peSpec struct {
	pe32plus bool
	sections []peSec
	ep       uint32 // AddressOfEntryPoint; 0: the first section's
	truncate int    // bytes cut from the end of the file
}

type peSec struct {
	rawSize uint32
	data    []byte
}

// mkpe builds a minimal PE file ClamAV parses: DOS header, PE header,
// optional header with 16 data directories, section headers, sections.
func mkpe(spec peSpec) []byte {
	const lfanew = 0x40
	optSize := 96 + 16*8
	magic := uint16(0x10b)
	if spec.pe32plus {
		optSize, magic = 112+16*8, 0x20b
	}
	b := make([]byte, 0x200)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], lfanew)
	copy(b[lfanew:], "PE\x00\x00")
	fh := b[lfanew+4:]
	binary.LittleEndian.PutUint16(fh[0:], 0x14c)
	binary.LittleEndian.PutUint16(fh[2:], uint16(len(spec.sections)))
	binary.LittleEndian.PutUint16(fh[16:], uint16(optSize))
	binary.LittleEndian.PutUint16(fh[18:], 0x0102)
	opt := b[lfanew+24:]
	binary.LittleEndian.PutUint16(opt[0:], magic)
	ep := spec.ep
	if ep == 0 {
		ep = 0x1000
	}
	binary.LittleEndian.PutUint32(opt[16:], ep)
	binary.LittleEndian.PutUint32(opt[32:], 0x1000) // SectionAlignment
	binary.LittleEndian.PutUint32(opt[36:], 0x200)  // FileAlignment
	binary.LittleEndian.PutUint32(opt[56:], uint32(0x1000*(len(spec.sections)+1)))
	binary.LittleEndian.PutUint32(opt[60:], 0x200) // SizeOfHeaders
	binary.LittleEndian.PutUint16(opt[68:], 3)
	if spec.pe32plus {
		binary.LittleEndian.PutUint32(opt[108:], 16)
	} else {
		binary.LittleEndian.PutUint32(opt[28:], 0x400000)
		binary.LittleEndian.PutUint32(opt[92:], 16)
	}
	sh := b[lfanew+24+optSize:]
	raw := uint32(0x200)
	var body []byte
	for i, s := range spec.sections {
		h := sh[i*40:]
		copy(h, fmt.Sprintf(".s%d", i))
		binary.LittleEndian.PutUint32(h[8:], 0x1000)                // VirtualSize
		binary.LittleEndian.PutUint32(h[12:], uint32(0x1000*(i+1))) // VirtualAddress
		binary.LittleEndian.PutUint32(h[16:], s.rawSize)
		binary.LittleEndian.PutUint32(h[20:], raw)
		binary.LittleEndian.PutUint32(h[36:], 0x60000020)
		d := make([]byte, (len(s.data)+0x1ff)/0x200*0x200)
		copy(d, s.data)
		body = append(body, d...)
		raw += uint32(len(d))
	}
	out := append(b, body...)
	return out[:len(out)-spec.truncate]
}

// archiveCorpus is a differential corpus of archives, executables and
// allow lists, and its signature directory.
type archiveCorpus struct {
	dir, sigs, files string
	ndb, hdb, fp     strings.Builder
	sfp, mdb, msb    strings.Builder
}

func (c *archiveCorpus) file(t *testing.T, name string, data []byte) {
	t.Helper()
	p := filepath.Join(c.files, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *archiveCorpus) writeSigs(t *testing.T) {
	t.Helper()
	for name, b := range map[string]*strings.Builder{"t.ndb": &c.ndb, "t.hdb": &c.hdb, "t.fp": &c.fp, "t.sfp": &c.sfp, "t.mdb": &c.mdb, "t.msb": &c.msb} {
		if b.Len() == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(c.sigs, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// text is a file holding s at offset at, in filler bytes.
func text(size, at int, s string) []byte {
	b := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), size/44+1)[:size]
	copy(b[at:], s)
	return b
}

// Markers the signatures match.
const (
	markA = "VIGIL-ARCHIVE-MARKER-A-51c2"
	markB = "VIGIL-ARCHIVE-MARKER-B-8e07"
	markC = "VIGIL-ARCHIVE-STRADDLE-C-" // followed by 40 bytes of X
)

// buildArchiveCorpus writes the corpus under dir.
func buildArchiveCorpus(t *testing.T, dir string) *archiveCorpus {
	c := &archiveCorpus{dir: dir, sigs: filepath.Join(dir, "sigs"), files: filepath.Join(dir, "files")}
	for _, d := range []string{c.sigs, c.files} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(&c.ndb, "Vigil.Test.A:0:*:%s\n", hex.EncodeToString([]byte(markA)))
	fmt.Fprintf(&c.ndb, "Vigil.Test.B:0:*:%s\n", hex.EncodeToString([]byte(markB)))
	// C straddles the engine's 256 KiB read chunks: placed across them.
	fmt.Fprintf(&c.ndb, "Vigil.Test.C:0:*:%s{10-20}%s\n", hex.EncodeToString([]byte(markC)), hex.EncodeToString(bytes.Repeat([]byte("X"), 40)))
	straddle := text(600<<10, 256<<10-30, markC+"0123456789abcd"+strings.Repeat("X", 40))
	hashed := text(3000, 100, "a member detected by its MD5")
	fmt.Fprintf(&c.hdb, "%x:%d:Vigil.Test.Hash\n", md5.Sum(hashed), len(hashed))

	a := text(4000, 1000, markA)
	b := text(5000, 4000, markB)
	a2 := text(4100, 50, markA) // another file with A
	// uniq is a file with mark whose content appears nowhere else in the
	// corpus: clamscan's clean cache lasts its whole run, and an object
	// whose detection an allow list dropped is cached clean, so that a
	// copy of it in a later file would not be detected by clamscan.
	n := 0
	uniq := func(mark string) []byte {
		n++
		return text(3000+n*7, 100+n, fmt.Sprintf("%s unique %d", mark, n))
	}

	// Plain files.
	c.file(t, "plain/a.txt", a)
	// B before A in the file, and a hash: clamscan reports the body
	// signature whose match it finds first.
	ba := text(3700, 10, markB)
	copy(ba[2000:], markA)
	fmt.Fprintf(&c.hdb, "%x:%d:Vigil.Test.AAA.Hash\n", md5.Sum(ba), len(ba))
	c.file(t, "plain/b-then-a.txt", ba)
	c.file(t, "plain/clean.txt", text(7000, 0, ""))
	c.file(t, "plain/straddle.txt", straddle)
	c.file(t, "plain/hashed.bin", hashed)

	// Nested archives, a detection deep inside: xz > gzip > tar > zip > member.
	zipB := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "docs/readme.txt", Data: text(900, 0, ""), Method: zip.Deflate}, unpacktest.ZipEntry{Name: "docs/evil.txt", Data: b, Method: zip.Deflate})
	tarZ := unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "pkg/clean.txt", Data: text(1200, 0, "")}, unpacktest.TarEntry{Name: "pkg/inner.zip", Data: zipB})
	c.file(t, "nested/deep.tar.gz.xz", unpacktest.Xz(t, unpacktest.Gzip(tarZ)))
	c.file(t, "nested/deep.tar.bz2", unpacktest.Bzip2(t, tarZ))
	c.file(t, "nested/hash-member.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "h.bin", Data: hashed, Method: zip.Deflate}))
	// Straddling signatures inside members and streams.
	c.file(t, "nested/straddle.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "s.txt", Data: straddle, Method: zip.Deflate}))
	c.file(t, "nested/straddle.txt.gz", unpacktest.Gzip(straddle))
	c.file(t, "nested/straddle.tar.xz", unpacktest.Xz(t, unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "x/s.txt", Data: straddle})))
	// Two members with A, one with B, compressed: one line per match
	// with --allmatch, the first member's without.
	c.file(t, "nested/multi.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "1.txt", Data: a, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "2.txt", Data: b, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "3.txt", Data: a2, Method: zip.Deflate}))
	// Stored: the zip's own bytes match too.
	c.file(t, "nested/stored.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "1.txt", Data: uniq(markB)}))

	// Deeper than --max-recursion (8 in the runs below): gzip in gzip...
	deep := uniq(markA)
	for range 10 {
		deep = unpacktest.Gzip(deep)
	}
	c.file(t, "limits/too-deep.gz", deep)
	shallow := uniq(markA)
	for range 5 {
		shallow = unpacktest.Gzip(shallow)
	}
	c.file(t, "limits/deep-enough.gz", shallow)
	// More members than --max-files (20): A in the last member.
	var many []unpacktest.ZipEntry
	for i := range 30 {
		many = append(many, unpacktest.ZipEntry{Name: fmt.Sprintf("m%02d.txt", i), Data: text(100+i, 0, ""), Method: zip.Deflate})
	}
	manyA := append(slices.Clone(many), unpacktest.ZipEntry{Name: "last.txt", Data: uniq(markA), Method: zip.Deflate})
	c.file(t, "limits/many.zip", unpacktest.Zip(t, manyA...))
	c.file(t, "limits/few.zip", unpacktest.Zip(t, append(slices.Clone(many[:5]), unpacktest.ZipEntry{Name: "last.txt", Data: uniq(markA), Method: zip.Deflate})...))
	// Larger than --max-filesize (1M): not scanned.
	c.file(t, "limits/big.txt", text(1200<<10, 1000, markA))
	bigAllowed := text(1300<<10, 2000, markA)
	fmt.Fprintf(&c.fp, "%x:%d:Allowed.Big\n", md5.Sum(bigAllowed), len(bigAllowed))
	c.file(t, "limits/big-allowed.txt", bigAllowed)
	// An encrypted entry.
	c.file(t, "limits/encrypted.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "secret.txt", Data: text(500, 0, ""), Encrypted: true}, unpacktest.ZipEntry{Name: "open.txt", Data: text(600, 0, "")}))
	c.file(t, "limits/encrypted-a.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "secret.txt", Data: text(500, 0, ""), Encrypted: true}, unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate}))

	// Allow lists: a file, an archive (its members' detections dropped,
	// even further down), a member among others.
	allowedFile := uniq(markA)
	fmt.Fprintf(&c.fp, "%x:%d:Allowed.File\n", md5.Sum(allowedFile), len(allowedFile))
	c.file(t, "allow/file.txt", allowedFile)
	// By SHA-1 (.sfp) and by MD5 of any size (.fp, "*").
	allowedSHA1 := uniq(markA)
	fmt.Fprintf(&c.sfp, "%x:%d:Allowed.SHA1\n", sha1.Sum(allowedSHA1), len(allowedSHA1))
	c.file(t, "allow/file-sha1.txt", allowedSHA1)
	allowedAny := uniq(markB)
	fmt.Fprintf(&c.fp, "%x:*:Allowed.AnySize:73\n", md5.Sum(allowedAny))
	c.file(t, "allow/file-anysize.txt", allowedAny)
	zipOf := func(ents ...unpacktest.ZipEntry) ([]byte, []byte) {
		z := unpacktest.Zip(t, ents...)
		return z, []byte(fmt.Sprintf("%x:%d:Allowed.Zip\n", md5.Sum(z), len(z)))
	}
	allowedZip, line := zipOf(unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate}, unpacktest.ZipEntry{Name: "b.txt", Data: uniq(markB), Method: zip.Deflate})
	c.fp.Write(line)
	c.file(t, "allow/archive.zip", allowedZip)
	z, line := zipOf(unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate})
	c.fp.Write(line)
	c.file(t, "allow/archive-in.tar.gz", unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "allowed.zip", Data: z})))
	// Beside the allowed zip, a member with B: detected.
	z, line = zipOf(unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate})
	c.fp.Write(line)
	c.file(t, "allow/archive-beside.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "allowed.zip", Data: z}, unpacktest.ZipEntry{Name: "b.txt", Data: uniq(markB), Method: zip.Deflate}))
	// Beside the allowed zip, a copy of one of its members: clean to
	// ClamAV, whose clean cache took the member (its detection dropped)
	// as clean.
	copyB := uniq(markB)
	z, line = zipOf(unpacktest.ZipEntry{Name: "b.txt", Data: copyB, Method: zip.Deflate})
	c.fp.Write(line)
	c.file(t, "allow/archive-copy.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "allowed.zip", Data: z, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "b-copy.txt", Data: copyB, Method: zip.Deflate}))
	// An allowed zip with an encrypted entry: no alert either, alone or
	// inside a tar.
	z, line = zipOf(unpacktest.ZipEntry{Name: "secret.txt", Data: uniq("secret"), Encrypted: true}, unpacktest.ZipEntry{Name: "open.txt", Data: uniq("open"), Method: zip.Deflate})
	c.fp.Write(line)
	c.file(t, "allow/encrypted.zip", z)
	z, line = zipOf(unpacktest.ZipEntry{Name: "secret.txt", Data: uniq("secret"), Encrypted: true})
	c.fp.Write(line)
	c.file(t, "allow/encrypted-in.tar", unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "e.zip", Data: z}, unpacktest.TarEntry{Name: "x.txt", Data: uniq("nothing")}))
	// Not allowed: the same member in another zip.
	c.file(t, "allow/not-allowed.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate}, unpacktest.ZipEntry{Name: "c.txt", Data: uniq(markB), Method: zip.Deflate}))
	allowedMember := uniq(markA)
	sum := sha256.Sum256(allowedMember)
	fmt.Fprintf(&c.sfp, "%x:%d:Allowed.Member\n", sum, len(allowedMember))
	c.file(t, "allow/member.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "ok.txt", Data: allowedMember, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "bad.txt", Data: uniq(markB), Method: zip.Deflate}))
	allowedMember2 := uniq(markA)
	fmt.Fprintf(&c.sfp, "%x:%d:Allowed.Member\n", sha256.Sum256(allowedMember2), len(allowedMember2))
	c.file(t, "allow/member-only.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "ok.txt", Data: allowedMember2, Method: zip.Deflate}))

	// Zips appended to files (self-extracting archives), one file allowed.
	c.file(t, "sfx/plain.bin", append(text(2000, 0, ""), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate})...))
	sfxAllowed := append(text(2100, 0, ""), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate})...)
	fmt.Fprintf(&c.fp, "%x:%d:Allowed.SFX\n", md5.Sum(sfxAllowed), len(sfxAllowed))
	c.file(t, "sfx/allowed.bin", sfxAllowed)
	// The same, as tar members: the allowed host covers its embedded
	// zip's member, which comes after the host.
	sfxAllowed2 := append(text(2200, 0, ""), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate})...)
	fmt.Fprintf(&c.fp, "%x:%d:Allowed.SFX\n", md5.Sum(sfxAllowed2), len(sfxAllowed2))
	c.file(t, "sfx/allowed-in.tar", unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "clean.txt", Data: text(900, 0, "")}, unpacktest.TarEntry{Name: "host.bin", Data: sfxAllowed2}, unpacktest.TarEntry{Name: "after.txt", Data: text(800, 0, "")}))
	c.file(t, "sfx/plain-in.tar.gz", unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "host.bin", Data: append(text(2300, 0, ""), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: uniq(markA), Method: zip.Deflate})...)})))

	// PE files with section hash signatures (.mdb MD5, .msb SHA-256).
	sec1 := text(0x200, 0, "section one of the test PE")
	sec2 := text(0x300, 0, "section two, declared unaligned")
	pe := mkpe(peSpec{sections: []peSec{{0x200, sec1}, {0x2f0, sec2}}})
	fmt.Fprintf(&c.mdb, "%d:%x:Vigil.Test.Section.MD5\n", 0x200, md5.Sum(sec1))
	// ClamAV hashes SizeOfRawData rounded up to FileAlignment: 0x400.
	full2 := make([]byte, 0x400)
	copy(full2, sec2)
	fmt.Fprintf(&c.msb, "%d:%x:Vigil.Test.Section.SHA256\n", 0x400, sha256.Sum256(full2))
	// Hashes that would match if ClamAV did not round (must not match).
	fmt.Fprintf(&c.mdb, "%d:%x:Vigil.Test.Section.Unrounded\n", 0x2f0, md5.Sum(sec2[:0x2f0]))
	// A SHA-1 .msb entry and a "*"-size .mdb entry, on another PE.
	sec4, sec5 := text(0x200, 0, "section four, by SHA-1"), text(0x600, 0, "section five, any size")
	fmt.Fprintf(&c.msb, "%d:%x:Vigil.Test.Section.SHA1\n", 0x200, sha1.Sum(sec4))
	fmt.Fprintf(&c.mdb, "*:%x:Vigil.Test.Section.AnySize:73\n", md5.Sum(sec5))
	c.file(t, "pe/other.exe", mkpe(peSpec{sections: []peSec{{0x200, sec4}, {0x600, sec5}}}))
	c.file(t, "pe/app.exe", pe)
	c.file(t, "pe/app.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "bin/app.exe", Data: pe, Method: zip.Deflate}))
	sec3 := text(0x400, 0, "section three, cut short by the end of the file")
	fmt.Fprintf(&c.mdb, "%d:%x:Vigil.Test.Section.Truncated\n", 0x300, md5.Sum(sec3[:0x300]))
	c.file(t, "pe/truncated.exe", mkpe(peSpec{sections: []peSec{{0x200, text(0x200, 0, "first")}, {0x400, sec3}}, truncate: 0x100}))
	c.file(t, "pe/pe32plus.exe", mkpe(peSpec{pe32plus: true, sections: []peSec{{0x200, sec1}}}))
	// Entry point outside every section: ClamAV finds the PE broken and
	// hashes nothing.
	c.file(t, "pe/bad-ep.exe", mkpe(peSpec{sections: []peSec{{0x200, sec1}}, ep: 0x9000}))
	// Not a PE: raw bytes only.
	notPE := mkpe(peSpec{sections: []peSec{{0x200, sec1}}})
	copy(notPE[0x40:], "XX")
	c.file(t, "pe/not-pe.exe", notPE)
	c.writeSigs(t)
	return c
}

// clamscanLines runs clamscan and returns its "path\tname" lines, every
// one (duplicates kept: --allmatch prints one line per match).
func clamscanLines(t *testing.T, clamscan, sigs string, flags []string, paths ...string) []string {
	t.Helper()
	return runClamscan(t, clamscan, append([]string{"--no-summary", "-r", "-d", sigs}, flags...), paths...)
}

func vigilLines(t *testing.T, sigs string, opts Options, paths ...string) []string {
	t.Helper()
	set, err := signatures.Load(sigs)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := New(set).ScanPaths(context.Background(), paths, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range sum.Detections {
		lines = append(lines, d.Path+"\t"+d.Signature)
	}
	slices.Sort(lines)
	return lines
}

// TestArchivesSameAsClamAV: a corpus of nested archives (beyond the
// limits too), signatures straddling read chunks inside members, allow
// lists of files, archives and members, PE files with section hashes,
// scanned by clamscan and by ScanPaths with the same options: the same
// (file, signature) lines, duplicates included.
func TestArchivesSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	c := buildArchiveCorpus(t, t.TempDir())
	lim := unpack.DefaultLimits()
	lim.MaxFiles, lim.MaxRecursion, lim.MaxFileSize = 20, 8, 1<<20
	limFlags := []string{"--max-files=20", "--max-recursion=8", "--max-filesize=1M"}
	lim2 := unpack.DefaultLimits()
	lim2.MaxScanSize, lim2.MaxFileSize = 1<<20, 2<<20
	for _, run := range []struct {
		name   string
		limits []string // instead of limFlags
		flags  []string
		opts   Options
		want   []string // lines both must print (a check that the corpus does what it says)
	}{
		{"default", nil, nil, Options{Limits: lim}, []string{
			"nested/deep.tar.gz.xz\tVigil.Test.B", "nested/deep.tar.bz2\tVigil.Test.B", "nested/straddle.zip\tVigil.Test.C",
			"nested/straddle.tar.xz\tVigil.Test.C", "nested/straddle.txt.gz\tVigil.Test.C", "plain/straddle.txt\tVigil.Test.C",
			"pe/app.zip\tVigil.Test.Section.MD5", "allow/member.zip\tVigil.Test.B", "limits/deep-enough.gz\tVigil.Test.A",
			"limits/few.zip\tVigil.Test.A", "allow/archive-beside.zip\tVigil.Test.B", "allow/not-allowed.zip\tVigil.Test.A",
			"nested/hash-member.zip\tVigil.Test.Hash", "sfx/plain.bin\tVigil.Test.A",
			"plain/b-then-a.txt\tVigil.Test.B",
			"sfx/plain-in.tar.gz\tVigil.Test.A",
		}},
		{"allmatch", nil, []string{"--allmatch"}, Options{Limits: lim, AllMatch: true}, []string{
			"nested/multi.zip\tVigil.Test.A", "nested/multi.zip\tVigil.Test.B", "pe/app.exe\tVigil.Test.Section.SHA256",
			"pe/truncated.exe\tVigil.Test.Section.Truncated", "pe/pe32plus.exe\tVigil.Test.Section.MD5", "nested/stored.zip\tVigil.Test.B",
			"pe/other.exe\tVigil.Test.Section.SHA1", "pe/other.exe\tVigil.Test.Section.AnySize",
		}},
		{"allmatch-alerts", nil, []string{"--allmatch", "--alert-exceeds-max", "--alert-encrypted"},
			Options{Limits: lim, AllMatch: true, AlertExceedsMax: true, AlertEncrypted: true}, []string{
				"limits/encrypted.zip\tHeuristics.Encrypted.Zip", "limits/big.txt\tHeuristics.Limits.Exceeded.MaxFileSize",
				"limits/too-deep.gz\tHeuristics.Limits.Exceeded.MaxRecursion",
				// No allow list applies to a file over max-filesize.
				"limits/big-allowed.txt\tHeuristics.Limits.Exceeded.MaxFileSize",
			}},
		{"scansize", []string{"--max-scansize=1M", "--max-filesize=2M"}, []string{"--alert-exceeds-max"},
			Options{Limits: lim2, AlertExceedsMax: true}, []string{
				// Over max-scansize, not max-filesize: the allow list applies.
				"limits/big.txt\tHeuristics.Limits.Exceeded.MaxScanSize",
			}},
		{"alerts", nil, []string{"--alert-exceeds-max", "--alert-encrypted-archive"},
			Options{Limits: lim, AlertExceedsMax: true, AlertEncrypted: true}, []string{
				"limits/many.zip\tHeuristics.Limits.Exceeded.MaxFiles",
			}},
	} {
		t.Run(run.name, func(t *testing.T) {
			limits := limFlags
			if run.limits != nil {
				limits = run.limits
			}
			cl := clamscanLines(t, clamscan, c.sigs, append(slices.Clone(limits), run.flags...), c.files)
			vl := vigilLines(t, c.sigs, run.opts, c.files)
			rel := func(l []string) []string {
				out := make([]string, len(l))
				for i, s := range l {
					out[i] = strings.TrimPrefix(s, c.files+"/")
				}
				return out
			}
			cl, vl = rel(cl), rel(vl)
			if !slices.Equal(cl, vl) {
				t.Errorf("clamscan %q and ScanPaths differ:\n%s", run.flags, lineDiff(cl, vl))
			}
			for _, w := range run.want {
				if !slices.Contains(cl, w) {
					t.Errorf("clamscan does not print %q", w)
				}
			}
			for _, l := range cl {
				if strings.HasPrefix(l, "allow/file") || strings.HasPrefix(l, "allow/archive.zip") ||
					strings.HasPrefix(l, "allow/archive-in.tar.gz") || strings.HasPrefix(l, "allow/member-only.zip") ||
					strings.HasPrefix(l, "allow/archive-copy.zip") ||
					(run.limits == nil && (strings.HasPrefix(l, "limits/many.zip\tVigil") || strings.HasPrefix(l, "limits/too-deep.gz\tVigil"))) ||
					strings.HasPrefix(l, "limits/big.txt\tVigil") || strings.HasPrefix(l, "plain/clean.txt") ||
					strings.Contains(l, "Unrounded") || strings.HasPrefix(l, "pe/bad-ep.exe") || strings.HasPrefix(l, "pe/not-pe.exe") ||
					strings.HasPrefix(l, "sfx/allowed.bin") || strings.HasPrefix(l, "sfx/allowed-in.tar") ||
					strings.HasPrefix(l, "allow/encrypted") || strings.HasPrefix(l, "limits/big-allowed.txt\tVigil") {
					t.Errorf("clamscan prints %q", l)
				}
			}
		})
	}
}

// lineDiff lists the lines (sorted, duplicates counted) only one of a and
// b has.
func lineDiff(a, b []string) string {
	count := map[string]int{}
	for _, l := range a {
		count[l]++
	}
	for _, l := range b {
		count[l]--
	}
	var out []string
	for l, n := range count {
		switch {
		case n > 0:
			out = append(out, fmt.Sprintf("  clamscan only (%d): %s", n, l))
		case n < 0:
			out = append(out, fmt.Sprintf("  ScanPaths only (%d): %s", -n, l))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestDirRecursionSameAsClamAV: a tree 18 directories deep with a
// detected file at every level, scanned by clamscan and ScanPaths with
// the default --max-dir-recursion (15) and with 3, 1 and 0: the same files
// found. Its top level is the directory given (level 1).
func TestDirRecursionSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	dir := t.TempDir()
	sigs := filepath.Join(dir, "sigs")
	top := filepath.Join(dir, "top")
	must(os.MkdirAll(sigs, 0o755))
	must(os.WriteFile(filepath.Join(sigs, "t.ndb"), []byte("Vigil.Test.A:0:*:"+hex.EncodeToString([]byte(markA))+"\n"), 0o644))
	d := top
	for i := range 18 {
		must(os.MkdirAll(d, 0o755))
		must(os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d.txt", i+1)), text(2000+i, i, markA), 0o644))
		d = filepath.Join(d, fmt.Sprintf("d%02d", i+2))
	}
	for _, c := range []struct {
		flags []string
		opts  Options
		found int
	}{
		{nil, Options{}, 15},
		{[]string{"--max-dir-recursion=3"}, Options{MaxDirRecursion: 3}, 3},
		{[]string{"--max-dir-recursion=1"}, Options{MaxDirRecursion: 1}, 1},
		{[]string{"--max-dir-recursion=0"}, Options{MaxDirRecursion: -1}, 0},
	} {
		cl := clamscanLines(t, clamscan, sigs, c.flags, top)
		vl := vigilLines(t, sigs, c.opts, top)
		if !slices.Equal(cl, vl) || len(cl) != c.found {
			t.Errorf("%q: clamscan found %d, want %d; differences:\n%s", c.flags, len(cl), c.found, lineDiff(cl, vl))
		}
	}
}
