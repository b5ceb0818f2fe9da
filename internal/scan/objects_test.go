package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/unpack"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// objEngine detects markA and markB, with the allow list and section
// hashes given.
func objEngine(t *testing.T, files map[string]string) *Engine {
	t.Helper()
	all := map[string]string{"t.ndb": fmt.Sprintf("Vigil.Test.A:0:*:%s\nVigil.Test.B:0:*:%s\n",
		hex.EncodeToString([]byte(markA)), hex.EncodeToString([]byte(markB)))}
	for k, v := range files {
		all[k] = v
	}
	return New(mustSet(t, all))
}

// lines scans paths and returns "base\tsignature" for each detection, in
// order.
func lines(t *testing.T, e *Engine, opts Options, paths ...string) []string {
	t.Helper()
	sum := scanPaths(t, e, opts, paths...)
	var l []string
	for _, d := range sum.Detections {
		l = append(l, filepath.Base(d.Path)+"\t"+d.Signature)
	}
	return l
}

func fpLine(b []byte, name string) string {
	return fmt.Sprintf("%x:%d:%s\n", md5.Sum(b), len(b), name)
}

// TestArchiveDetections: detections inside archives are reported on the
// file, with the file's SHA-256 and size; one per file, or every match
// with AllMatch (a signature matching two members twice).
func TestArchiveDetections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := objEngine(t, nil)
	z := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "1.txt", Data: text(3000, 5, markA), Method: zip.Deflate}, unpacktest.ZipEntry{Name: "2.txt", Data: text(3100, 7, markB), Method: zip.Deflate},
		unpacktest.ZipEntry{Name: "3.txt", Data: text(3200, 9, markA), Method: zip.Deflate})
	tgz := unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "x.zip", Data: z}))
	p := write(t, filepath.Join(dir, "a.tar.gz"), string(tgz))
	sum := scanPaths(t, e, Options{}, p)
	h := sha256.Sum256(tgz)
	if len(sum.Detections) != 1 || sum.Detections[0].Signature != "Vigil.Test.A" || sum.Detections[0].SHA256 != hex.EncodeToString(h[:]) ||
		sum.Detections[0].Size != int64(len(tgz)) || sum.Files != 1 {
		t.Fatalf("summary %+v", sum)
	}
	got := lines(t, e, Options{AllMatch: true}, p)
	if want := []string{"a.tar.gz\tVigil.Test.A", "a.tar.gz\tVigil.Test.B", "a.tar.gz\tVigil.Test.A"}; !slices.Equal(got, want) {
		t.Fatalf("AllMatch: %q, want %q", got, want)
	}
	// Deeper than max-recursion: not found; with AlertExceedsMax, the alert.
	deep := text(3000, 5, markA)
	for range 4 {
		deep = unpacktest.Gzip(deep)
	}
	p = write(t, filepath.Join(dir, "deep.gz"), string(deep))
	lim := unpack.DefaultLimits()
	lim.MaxRecursion = 3
	if got := lines(t, e, Options{Limits: lim}, p); len(got) != 0 {
		t.Fatalf("too deep: %q", got)
	}
	if got := lines(t, e, Options{Limits: lim, AlertExceedsMax: true}, p); !slices.Equal(got, []string{"deep.gz\tHeuristics.Limits.Exceeded.MaxRecursion"}) {
		t.Fatalf("too deep, alert: %q", got)
	}
	lim.MaxRecursion = 5
	if got := lines(t, e, Options{Limits: lim, AlertExceedsMax: true}, p); !slices.Equal(got, []string{"deep.gz\tVigil.Test.A"}) {
		t.Fatalf("deep enough: %q", got)
	}
	// An encrypted entry: an alert with AlertEncrypted only; after the
	// signatures with AllMatch, instead of them without.
	enc := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "s", Data: text(300, 0, ""), Encrypted: true}, unpacktest.ZipEntry{Name: "a", Data: text(3000, 5, markA), Method: zip.Deflate})
	p = write(t, filepath.Join(dir, "enc.zip"), string(enc))
	if got := lines(t, e, Options{}, p); !slices.Equal(got, []string{"enc.zip\tVigil.Test.A"}) {
		t.Fatalf("encrypted: %q", got)
	}
	if got := lines(t, e, Options{AlertEncrypted: true}, p); !slices.Equal(got, []string{"enc.zip\tVigil.Test.A"}) {
		t.Fatalf("encrypted, alert: %q", got)
	}
	if got := lines(t, e, Options{AlertEncrypted: true, AllMatch: true}, p); !slices.Equal(got, []string{"enc.zip\tVigil.Test.A", "enc.zip\tHeuristics.Encrypted.Zip"}) {
		t.Fatalf("encrypted, alert, allmatch: %q", got)
	}
	enc = unpacktest.Zip(t, unpacktest.ZipEntry{Name: "s", Data: text(300, 0, ""), Encrypted: true})
	p = write(t, filepath.Join(dir, "enc2.zip"), string(enc))
	if got := lines(t, e, Options{AlertEncrypted: true}, p); !slices.Equal(got, []string{"enc2.zip\tHeuristics.Encrypted.Zip"}) {
		t.Fatalf("encrypted only, alert: %q", got)
	}
}

// TestAllowLayers: an allow-listed file, archive or member is never
// reported, nor anything inside an allowed archive at any depth, and the
// scan goes on past a dropped detection; a copy of a member whose
// detection was dropped is clean for the rest of the file.
func TestAllowLayers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	member := text(3000, 5, markA)
	allowedZip := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: member, Method: zip.Deflate})
	allowedFile := text(3100, 10, markB)
	allowedMember := text(3200, 20, markB)
	sfx := append(text(2000, 0, ""), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: text(3500, 3, markA), Method: zip.Deflate})...)
	sfxAllowed := append(text(2100, 0, ""), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.txt", Data: text(3600, 3, markA), Method: zip.Deflate})...)
	e := objEngine(t, map[string]string{
		"t.fp":  fpLine(allowedZip, "Allowed.Zip") + fpLine(allowedFile, "Allowed.File") + fpLine(sfxAllowed, "Allowed.SFX"),
		"t.sfp": fmt.Sprintf("%x:%d:Allowed.Member\n", sha256.Sum256(allowedMember), len(allowedMember)),
	})
	files := map[string][]byte{
		"file.txt":        allowedFile,
		"zip.zip":         allowedZip,
		"in.tar.gz":       unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "deeper/z.zip", Data: allowedZip})),
		"in.tar.xz":       unpacktest.Xz(t, unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "z.zip", Data: unpacktest.Zip(t, unpacktest.ZipEntry{Name: "zz.zip", Data: allowedZip})})),
		"beside.zip":      unpacktest.Zip(t, unpacktest.ZipEntry{Name: "z.zip", Data: allowedZip}, unpacktest.ZipEntry{Name: "b.txt", Data: text(3300, 1, markB), Method: zip.Deflate}),
		"copy.zip":        unpacktest.Zip(t, unpacktest.ZipEntry{Name: "z.zip", Data: allowedZip, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "copy.txt", Data: member, Method: zip.Deflate}),
		"copy-first.zip":  unpacktest.Zip(t, unpacktest.ZipEntry{Name: "copy.txt", Data: member, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "z.zip", Data: allowedZip, Method: zip.Deflate}),
		"member.zip":      unpacktest.Zip(t, unpacktest.ZipEntry{Name: "ok.txt", Data: allowedMember, Method: zip.Deflate}, unpacktest.ZipEntry{Name: "a.txt", Data: text(3400, 2, markA), Method: zip.Deflate}),
		"member-only.zip": unpacktest.Zip(t, unpacktest.ZipEntry{Name: "ok.txt", Data: allowedMember, Method: zip.Deflate}),
		// Zips appended to a file (self-extracting archives): their
		// members come after the file; the allowed one covers them.
		"sfx.bin":         sfx,
		"sfx-allowed.bin": sfxAllowed,
	}
	var paths []string
	for name, b := range files {
		paths = append(paths, write(t, filepath.Join(dir, name), string(b)))
	}
	for _, allMatch := range []bool{false, true} {
		got := lines(t, e, Options{AllMatch: allMatch}, paths...)
		slices.Sort(got)
		want := []string{
			"beside.zip\tVigil.Test.B",
			"copy-first.zip\tVigil.Test.A",
			"member.zip\tVigil.Test.A",
			"sfx.bin\tVigil.Test.A",
		}
		if !slices.Equal(got, want) {
			t.Errorf("AllMatch %v: %q, want %q", allMatch, got, want)
		}
	}
}

// TestPESections: the sections ClamAV hashes, as its cli_peheader finds
// them.
func TestPESections(t *testing.T) {
	t.Parallel()
	s1, s2 := text(0x200, 0, "one"), text(0x300, 0, "two")
	for _, c := range []struct {
		name string
		data []byte
		want []peSection // nil: not hashed
	}{
		{"two sections", mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x400, s2}}}), []peSection{{0x200, 0x200}, {0x400, 0x400}}},
		{"size rounded up", mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x2f0, s2}}}), []peSection{{0x200, 0x200}, {0x400, 0x400}}},
		{"PE32+", mkpe(peSpec{pe32plus: true, sections: []peSec{{0x200, s1}}}), []peSection{{0x200, 0x200}}},
		{"cut short", mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x400, s2}}, truncate: 0x180}), []peSection{{0x200, 0x200}, {0x400, 0x280}}},
		{"entry point in the headers", mkpe(peSpec{sections: []peSec{{0x200, s1}}, ep: 0x100}), []peSection{{0x200, 0x200}}},
		{"entry point nowhere", mkpe(peSpec{sections: []peSec{{0x200, s1}}, ep: 0x5000}), nil},
		{"no PE signature", func() []byte { b := mkpe(peSpec{sections: []peSec{{0x200, s1}}}); b[0x40] = 'X'; return b }(), nil},
		{"not MZ", func() []byte { b := mkpe(peSpec{sections: []peSec{{0x200, s1}}}); b[0] = 'X'; return b }(), nil},
		{"ZM", func() []byte { b := mkpe(peSpec{sections: []peSec{{0x200, s1}}}); copy(b, "ZM"); return b }(), []peSection{{0x200, 0x200}}},
		{"no sections", mkpe(peSpec{}), nil},
		{"headers only", mkpe(peSpec{sections: []peSec{{0x200, s1}}})[:0x100], nil},
		{"only section beyond the end", func() []byte {
			b := mkpe(peSpec{sections: []peSec{{0x200, s1}}})
			binary.LittleEndian.PutUint32(b[0x40+24+224+20:], 0x10000)
			return b
		}(), nil},
		{"a section beyond the end dropped", func() []byte {
			b := mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x200, s1}}})
			binary.LittleEndian.PutUint32(b[0x40+24+224+40+20:], 0x10000)
			return b
		}(), []peSection{{0x200, 0x200}}},
		{"sign bit", func() []byte {
			b := mkpe(peSpec{sections: []peSec{{0x200, s1}}})
			binary.LittleEndian.PutUint32(b[0x40+24+224+8:], 0x80000000)
			return b
		}(), nil},
		{"alignment fallback", func() []byte {
			b := mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x200, s1}}})
			binary.LittleEndian.PutUint32(b[0x40+24+36:], 0x1000) // FileAlignment
			return b
		}(), []peSection{{0x200, 0x200}, {0x400, 0x200}}},
		{"optional header too small", func() []byte {
			b := mkpe(peSpec{sections: []peSec{{0x200, s1}}})
			binary.LittleEndian.PutUint16(b[0x40+4+16:], 90)
			return b
		}(), nil},
	} {
		got, ok := peSections(bytes.NewReader(c.data), int64(len(c.data)))
		if ok != (c.want != nil) || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v %v, want %v", c.name, got, ok, c.want)
		}
	}
}

// FuzzPESections: any bytes: no panic, and sections inside the file.
func FuzzPESections(f *testing.F) {
	s1 := text(0x200, 0, "one")
	f.Add(mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x2f0, s1}}}))
	f.Add(mkpe(peSpec{pe32plus: true, sections: []peSec{{0x200, s1}}}))
	f.Add(mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x400, s1}}, truncate: 0x180}))
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		secs, ok := peSections(bytes.NewReader(b), int64(len(b)))
		if !ok && secs != nil {
			t.Fatal("sections without ok")
		}
		for _, s := range secs {
			if s.size <= 0 || s.raw < 0 || s.raw+s.size > int64(len(b)) {
				t.Fatalf("section %+v outside %d bytes", s, len(b))
			}
		}
	})
}

// TestSectionHashes: .mdb and .msb signatures match a PE's sections,
// inside archives too; a hash of the unrounded size does not; without
// AllMatch one name.
func TestSectionHashes(t *testing.T) {
	t.Parallel()
	s1, s2 := text(0x200, 0, "section one"), text(0x300, 0, "section two")
	pe := mkpe(peSpec{sections: []peSec{{0x200, s1}, {0x2f0, s2}}})
	full2 := make([]byte, 0x400)
	copy(full2, s2)
	e := objEngine(t, map[string]string{
		"t.mdb": fmt.Sprintf("%d:%x:Sec.MD5\n%d:%x:Sec.Unrounded\n", 0x200, md5.Sum(s1), 0x2f0, md5.Sum(s2[:0x2f0])),
		"t.msb": fmt.Sprintf("%d:%x:Sec.SHA256\n", 0x400, sha256.Sum256(full2)),
	})
	dir := t.TempDir()
	p := write(t, filepath.Join(dir, "app.exe"), string(pe))
	z := write(t, filepath.Join(dir, "app.zip"), string(unpacktest.Zip(t, unpacktest.ZipEntry{Name: "app.exe", Data: pe, Method: zip.Deflate})))
	notPE := slices.Clone(pe)
	notPE[0x40] = 'X'
	n := write(t, filepath.Join(dir, "not.exe"), string(notPE))
	got := lines(t, e, Options{AllMatch: true}, p, z, n)
	want := []string{"app.exe\tSec.MD5", "app.exe\tSec.SHA256", "app.zip\tSec.MD5", "app.zip\tSec.SHA256"}
	if !slices.Equal(got, want) {
		t.Errorf("AllMatch: %q, want %q", got, want)
	}
	if got := lines(t, e, Options{}, p, z); !slices.Equal(got, []string{"app.exe\tSec.MD5", "app.zip\tSec.MD5"}) {
		t.Errorf("one per file: %q", got)
	}
	if strings.Contains(strings.Join(got, ","), "Unrounded") {
		t.Errorf("unrounded hash matched: %q", got)
	}
}

// TestBuilderObjectSignatures: a Builder given a set's allow list and
// section hashes builds an engine that applies them as New's does.
func TestBuilderObjectSignatures(t *testing.T) {
	t.Parallel()
	s1 := text(0x200, 0, "section one")
	pe := mkpe(peSpec{sections: []peSec{{0x200, s1}}})
	allowed := text(3000, 5, markA)
	set := mustSet(t, map[string]string{
		"t.ndb": "Vigil.Test.A:0:*:" + hex.EncodeToString([]byte(markA)) + "\n",
		"t.mdb": fmt.Sprintf("%d:%x:Sec.MD5\n", 0x200, md5.Sum(s1)),
		"t.fp":  fpLine(allowed, "Allowed"),
	})
	dir := t.TempDir()
	paths := []string{
		write(t, filepath.Join(dir, "app.exe"), string(pe)),
		write(t, filepath.Join(dir, "allowed.txt"), string(allowed)),
		write(t, filepath.Join(dir, "a.txt"), string(text(3100, 5, markA))),
	}
	want := []string{"a.txt\tVigil.Test.A", "app.exe\tSec.MD5"}
	b := NewBuilder()
	for i := range set.Bodies {
		must(b.AddBody(&set.Bodies[i]))
	}
	plain := b.Engine()
	if got := lines(t, plain, Options{}, paths...); !slices.Equal(got, []string{"a.txt\tVigil.Test.A", "allowed.txt\tVigil.Test.A"}) {
		t.Errorf("without object signatures: %q", got)
	}
	b = NewBuilder()
	for i := range set.Bodies {
		must(b.AddBody(&set.Bodies[i]))
	}
	b.SetObjectSignatures(set.Allowed, set.SectionHashes)
	for _, e := range []*Engine{b.Engine(), New(set)} {
		if got := lines(t, e, Options{}, paths...); !slices.Equal(got, want) {
			t.Errorf("%q, want %q", got, want)
		}
	}
}
