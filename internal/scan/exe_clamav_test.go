package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/exefmt/exefmttest"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// exeFile is an executable of the differential corpus.
type exeFile struct {
	name   string
	format exefmt.Format
	data   []byte
}

func samplePESpec(seed uint64) exefmttest.PESpec {
	return exefmttest.PESpec{
		Size: 0xe00, EP: 0x2010, SectionAlign: 0x1000, FileAlign: 0x200, SizeOfHeaders: 0x400, Seed: seed,
		Sections: []pe.SectionHeader32{
			exefmttest.PESection(".text", 0x1000, 0x800, 0x400, 0x600),
			exefmttest.PESection(".data", 0x2000, 0x300, 0xa00, 0x200),
			exefmttest.PESection(".bss", 0x3000, 0x1000, 0, 0),
			exefmttest.PESection(".rsrc", 0x4000, 0x400, 0xc00, 0x400),
		},
	}
}

func sampleELFSpec(seed uint64) exefmttest.ELFSpec {
	return exefmttest.ELFSpec{
		Size: 0x400, Entry: 0x8049010, Seed: seed,
		Progs:    [][4]uint64{{0x8048000, 0x100, 0, 0x100}, {0x8049000, 0x200, 0x100, 0x200}},
		Sections: [][3]uint64{{0x8048000, 0, 0x100}, {0x8049000, 0x100, 0x200}, {0, 0x300, 0x40}},
	}
}

func sampleMachOSpec(seed uint64) exefmttest.MachOSpec {
	return exefmttest.MachOSpec{
		Size: 0x400, Cpu: macho.CpuPpc, Big: true, Align: 4, Thread: true, SRR0: 0x2010, Seed: seed,
		Sections: [][3]uint32{{0x1000, 0x100, 0x200}, {0x2000, 0x81, 0x300}},
	}
}

// exeCorpus is the executables of the differential test: well-formed
// PE, ELF and Mach-O objects with several sections and their entry points
// in different places, one PE of exefmt.ExactStartSize bytes and more,
// and malformed or truncated ones. None parses with zero sections: an
// SL+n signature makes clamscan 1.4.6 crash on such an object
// (docs/executables.md).
func exeCorpus() []exeFile {
	var files []exeFile
	add := func(name string, f exefmt.Format, b []byte) {
		files = append(files, exeFile{name: name, format: f, data: b})
	}
	add("pe-ep-second-section.exe", exefmt.PE, exefmttest.BuildPE(samplePESpec(101)))
	s := samplePESpec(102)
	s.EP = 0x1100 // in the first section
	add("pe-ep-first-section.exe", exefmt.PE, exefmttest.BuildPE(s))
	s = samplePESpec(103)
	s.EP = 0x300 // in the headers: its own offset
	add("pe-ep-in-headers.exe", exefmt.PE, exefmttest.BuildPE(s))
	s = samplePESpec(104)
	s.EP = 0x4020 // in the last section
	add("pe-ep-last-section.exe", exefmt.PE, exefmttest.BuildPE(s))
	s = samplePESpec(105)
	s.Size = exefmt.ExactStartSize + 0x1000 // an overlay past the sections
	add("pe-large.exe", exefmt.PE, exefmttest.BuildPE(s))
	s = samplePESpec(106)
	s.Size = 0xb00 // the last section cut by the end of the file
	add("pe-cut-in-a-section.exe", exefmt.PE, exefmttest.BuildPE(s))
	b := exefmttest.BuildPE(samplePESpec(107))
	add("pe-truncated-section-table.exe", exefmt.PE, b[:0x58+224+2*40])
	s = samplePESpec(108)
	s.EP = 0x3010 // in the section without raw data: refused
	add("pe-ep-unmapped.exe", exefmt.PE, exefmttest.BuildPE(s))

	add("elf32.elf", exefmt.ELF, exefmttest.BuildELF(sampleELFSpec(201)))
	e := sampleELFSpec(202)
	e.Class64, e.Big, e.Entry = true, true, 0x400110
	e.Progs = [][4]uint64{{0x400000, 0x400, 0, 0x400}}
	add("elf64-big-endian.elf", exefmt.ELF, exefmttest.BuildELF(e))
	e = sampleELFSpec(203)
	e.Entry = 0x8048020 // in the first segment
	add("elf32-ep-first-segment.elf", exefmt.ELF, exefmttest.BuildELF(e))
	e = sampleELFSpec(204)
	e.Entry = 0x9000000 // in no segment: refused
	add("elf-entry-outside.elf", exefmt.ELF, exefmttest.BuildELF(e))
	b = exefmttest.BuildELF(sampleELFSpec(205))
	add("elf-truncated.elf", exefmt.ELF, b[:52+40])
	e = sampleELFSpec(206)
	e.Shentsize = 41 // refused
	add("elf-bad-shentsize.elf", exefmt.ELF, exefmttest.BuildELF(e))

	add("macho-ppc.macho", exefmt.MachO, exefmttest.BuildMachO(sampleMachOSpec(301)))
	m := sampleMachOSpec(302)
	m.Cpu, m.Big, m.M64, m.Thread = macho.CpuAmd64, false, true, false // entry point 0
	m.Sections = [][3]uint32{{0x1000, 0x80, 0x180}, {0x2000, 0x100, 0x280}, {0x3000, 0x40, 0x380}}
	add("macho-x86-64.macho", exefmt.MachO, exefmttest.BuildMachO(m))
	m = sampleMachOSpec(303)
	m.SRR0 = 0x1010 // in the first section
	add("macho-ppc-ep-first-section.macho", exefmt.MachO, exefmttest.BuildMachO(m))
	b = exefmttest.BuildMachO(sampleMachOSpec(304))
	add("macho-truncated.macho", exefmt.MachO, b[:28+56+68+10])
	m = sampleMachOSpec(305)
	m.SRR0 = 0x5000 // in no section: refused
	add("macho-ep-outside.macho", exefmt.MachO, exefmttest.BuildMachO(m))
	add("plain.bin", exefmt.None, exefmttest.Filler(0x800, 401))
	return files
}

// exeSig is one generated .ndb signature; made from file (an index in
// the corpus), want says whether it matches that file.
type exeSig struct {
	name, offset string
	target       int
	hex          string
	file         int
	want         bool
}

func (s exeSig) line() string {
	return fmt.Sprintf("%s:%d:%s:%s", s.name, s.target, s.offset, s.hex)
}

// exeSigs makes the signatures of file fi of files: each form at the
// offset the file's parsed headers give, with bytes taken there (want),
// and the same bytes one byte off (controls); for a malformed file, what
// still matches (absolute, "*") and what no longer does (every relative
// offset, EOF-n of generic signatures included). Bytes found more than
// once in the corpus (headers, zeros) make no signature: a control must
// fail for its offset alone, and no two signatures may match the same
// bytes (which one clamscan names first is then an accident of its
// tables).
func exeSigs(fi int, files []exeFile) []exeSig {
	f := files[fi]
	var sigs []exeSig
	size := int64(len(f.data))
	t := f.format.Target()
	add := func(kind string, target int, offset string, at int64, n int, wild, want bool) {
		// The bytes at at, as few as are found once (up to 64).
		var pat []byte
		for ; n <= 64; n *= 2 {
			if at < 0 || at+int64(n) > size {
				return
			}
			count := 0
			for _, g := range files {
				count += bytes.Count(g.data, f.data[at:at+int64(n)])
			}
			if count == 1 {
				pat = f.data[at : at+int64(n)]
				break
			}
		}
		if pat == nil {
			return
		}
		h := hex.EncodeToString(pat)
		if wild {
			h = h[:4] + "??" + h[6:]
		}
		sigs = append(sigs, exeSig{name: fmt.Sprintf("Vigil.Exe.F%d.%s", fi, kind), target: target,
			offset: offset, hex: h, file: fi, want: want})
	}
	// Before the static signatures at 496 and 508: ClamAV reports the
	// static ones (its Boyer-Moore matcher runs first) without --allmatch.
	add("Early.AC", t, "*", 0x1e0, 8, true, true)
	add("Early.GenericAC", 0, "*", 0x1e8, 8, true, true)
	in, err := exefmt.Parse(bytes.NewReader(f.data), size, f.format)
	if f.format == exefmt.None {
		add("EOF.Generic", 0, "EOF-12", size-12, 8, false, true)
		add("Abs.Generic", 0, "508", 508, 8, false, true)
		return sigs
	}
	if err == nil {
		ep := int64(in.EP)
		add("EPplus", t, "EP+16", ep+16, 8, false, true)
		add("EPplus.Off", t, "EP+17", ep+16, 8, false, false)
		add("EPplus.Wild", t, "EP+24", ep+24, 8, true, true)
		add("EPminus", t, "EP-4", ep-4, 8, false, true)
		add("EPminus.Off", t, "EP-3", ep-4, 8, false, false)
		add("EPshift", t, "EP+2,4", ep+5, 8, false, true)
		add("EPshift.Off", t, "EP+2,2", ep+5, 8, false, false)
		for x := range min(int(in.NumberOfSections), 3) {
			sec := in.Sections[x]
			if sec.RawSize < 16 {
				continue
			}
			add(fmt.Sprintf("S%d", x), t, fmt.Sprintf("S%d+8", x), int64(sec.Raw)+8, 8, false, true)
			add(fmt.Sprintf("S%d.Off", x), t, fmt.Sprintf("S%d+7", x), int64(sec.Raw)+8, 8, false, false)
		}
		if in.NumberOfSections > 0 {
			last := in.Sections[in.NumberOfSections-1]
			add("SL", t, "SL+4", int64(last.Raw)+4, 8, false, true)
			add("SL.Off", t, "SL+5", int64(last.Raw)+4, 8, false, false)
		}
		if in.NumberOfSections > 1 && in.Sections[1].RawSize >= 32 {
			sec := in.Sections[1]
			raw, end := int64(sec.Raw), int64(sec.Raw)+int64(sec.RawSize)
			exact := f.format == exefmt.PE && size >= exefmt.ExactStartSize
			add("SE.Start", t, "SE1", raw, 8, false, true)
			// A static signature in the middle: ClamAV's Boyer-Moore
			// matcher finds it only at the section's start in a large PE.
			add("SE.Middle", t, "SE1", raw+int64(sec.RawSize)/2, 8, false, !exact)
			add("SE.MiddleWild", t, "SE1", raw+int64(sec.RawSize)/2+8, 8, true, true)
			// ",0" sends it to Aho-Corasick: anywhere in the section.
			add("SE.MiddleShift0", t, "SE1,0", raw+int64(sec.RawSize)/2+16, 8, false, true)
			add("SE.Last", t, "SE1", end-8, 8, true, true)
			add("SE.After", t, "SE1", end+4, 8, false, false)
			add("SE.AfterShift", t, "SE1,8", end+4, 8, false, true)
			add("SE.AfterShiftShort", t, "SE1,3", end+4, 8, false, false)
			add("SE.Before", t, "SE1", raw-8, 8, true, false)
		}
		add("EOF", t, "EOF-12", size-12, 8, false, true)
		add("EOF.Generic", 0, "EOF-12", size-12, 8, false, true)
		add("EOF.Off", t, "EOF-11", size-12, 8, false, false)
	} else {
		// Nothing relative resolves: not even EOF-n, of any target.
		add("EPzero", t, "EP+0", 0, 8, false, false)
		add("S0", t, "S0+0", 0x200, 8, false, false)
		add("EOF", t, "EOF-12", size-12, 8, false, false)
		add("EOF.Generic", 0, "EOF-12", size-12, 8, false, false)
	}
	add("Abs", t, "496", 496, 8, false, true)
	add("Abs.Off", t, "497", 496, 8, false, false)
	add("Abs.Generic", 0, "508", 508, 8, false, true)
	add("Any", t, "*", size/2, 8, false, true)
	add("Any.Generic", 0, "*", size/3, 8, false, true)
	other := 1
	if t == 1 {
		other = 6
	}
	add("Any.OtherTarget", other, "*", size/2+16, 8, false, false)
	return sigs
}

// TestExecutablesSameAsClamAV scans the executables corpus, alone and
// inside a zip and a tar.gz, with generated signatures of target types 1,
// 6, 9 and 0 at every offset form, with clamscan and with ScanPaths (what
// vigil scan runs), with and without --allmatch: the same (file,
// signature) pairs; and, with --allmatch, each top-level file matches
// exactly the signatures predicted for it.
func TestExecutablesSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	dir := t.TempDir()
	files := exeCorpus()
	// Real programs, as the go tool links them: a PE32+ of more than
	// exefmt.ExactStartSize, an ELF64, Mach-O 64 (entry point 0).
	progs := exefmttest.GoPrograms(t, testenv.NeedTool(t, "go", "golang-go"))
	files = append(files,
		exeFile{"go-windows-amd64.exe", exefmt.PE, progs["windows/amd64"]},
		exeFile{"go-linux-amd64.elf", exefmt.ELF, progs["linux/amd64"]},
		exeFile{"go-darwin-arm64.macho", exefmt.MachO, progs["darwin/arm64"]})
	sigs, ndb, paths := writeExeCorpus(t, dir, files)
	// The corpus has each form where it matches and where it does not.
	forms := map[string]bool{}
	for _, s := range sigs {
		kind := s.name[strings.Index(s.name[len("Vigil.Exe.F"):], ".")+len("Vigil.Exe.F")+1:]
		forms[fmt.Sprintf("%s/%s/%v", files[s.file].format, kind, s.want)] = true
	}
	for _, f := range []string{
		"PE/EPplus/true", "PE/EPminus/true", "PE/EPshift/true", "PE/S1/true", "PE/SL/true", "PE/SE.Start/true",
		"PE/SE.Middle/true", "PE/SE.Middle/false", "PE/SE.AfterShift/true", "PE/EOF/false", "PE/EOF.Generic/false",
		"ELF/EPplus/true", "ELF/EPminus/true", "ELF/S2/true", "ELF/SL/true", "ELF/SE.Middle/true", "ELF/EOF.Generic/false",
		"Mach-O/EPplus/true", "Mach-O/S1/true", "Mach-O/SL/true", "Mach-O/SE.Start/true", "Mach-O/EOF.Generic/false",
		"Mach-O/Abs/true", "Mach-O/Any.OtherTarget/false", "PE/EPplus.Off/false", "PE/SE.After/false",
	} {
		if !forms[f] {
			t.Errorf("the corpus has no signature %s (format/kind/matches)", f)
		}
	}
	sigDir := filepath.Join(dir, "sigs")
	writeFile(t, filepath.Join(sigDir, "exe.ndb"), []byte(ndb))

	// Archives: the first PE, ELF and Mach-O, and a malformed PE, in a
	// zip; the large PE and the x86-64 Mach-O in a tar.gz.
	byName := map[string][]byte{}
	for _, f := range files {
		byName[f.name] = f.data
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for _, n := range []string{"pe-ep-second-section.exe", "elf32.elf", "macho-ppc.macho", "pe-ep-unmapped.exe"} {
		w, err := zw.Create("bin/" + n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(byName[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(dir, "files", "exes.zip")
	writeFile(t, zipPath, zb.Bytes())
	var tb bytes.Buffer
	gw := gzip.NewWriter(&tb)
	tw := tar.NewWriter(gw)
	for _, n := range []string{"pe-large.exe", "macho-x86-64.macho"} {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(byName[n]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(byName[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	tgzPath := filepath.Join(dir, "files", "exes.tar.gz")
	writeFile(t, tgzPath, tb.Bytes())
	all := append(slices.Clone(paths), zipPath, tgzPath)

	for _, allMatch := range []bool{true, false} {
		t.Run(fmt.Sprintf("allmatch=%v", allMatch), func(t *testing.T) {
			t.Parallel()
			got := textPairs(t, sigDir, allMatch, all...)
			want := clamscanTextPairs(t, clamscan, sigDir, allMatch, all...)
			onlyVigil, onlyClam := diffPairs(got, want)
			if len(onlyVigil)+len(onlyClam) > 0 {
				t.Errorf("Vigil and clamscan differ:\nonly Vigil:\n  %s\nonly clamscan:\n  %s",
					strings.Join(onlyVigil, "\n  "), strings.Join(onlyClam, "\n  "))
			}
			if !allMatch {
				// Every file something was made to match is detected.
				for _, s := range sigs {
					if s.want && !slices.ContainsFunc(got, func(pair string) bool { return strings.HasPrefix(pair, paths[s.file]+"\t") }) {
						t.Errorf("%s: not detected without --allmatch (%s matches it)", files[s.file].name, s.name)
					}
				}
				return
			}
			// Each top-level file matches exactly what was predicted of the
			// signatures made from it (bytes shared between files can
			// make others match too: those are compared with clamscan
			// above only).
			for _, s := range sigs {
				pair := paths[s.file] + "\t" + s.name
				for who, pairs := range map[string][]string{"Vigil": got, "clamscan": want} {
					if slices.Contains(pairs, pair) != s.want {
						t.Errorf("%s: %s on %s: matched %v, predicted %v", who, s.line(), files[s.file].name, !s.want, s.want)
					}
				}
			}
			for _, p := range []string{zipPath, tgzPath} {
				n := 0
				for _, pair := range got {
					if strings.HasPrefix(pair, p+"\t") {
						n++
					}
				}
				if n < 10 {
					t.Errorf("%s: %d signatures matched, want the members' own", filepath.Base(p), n)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUniversalBinaryDisagreement shows the one known disagreement of
// executables (docs/signatures.md, "Differences from ClamAV"): clamscan
// scans each architecture of a Mach-O universal binary as an object of
// its own, with its own headers, and Vigil (package unpack does not
// split universal binaries) does not. At the top level both agree: the
// universal binary is typed Mach-O and its headers fail to parse, so
// target 9 signatures at absolute offsets and anywhere match, and no
// EOF-n does, not even a generic one.
func TestUniversalBinaryDisagreement(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	arch := exefmttest.BuildMachO(sampleMachOSpec(501))
	const at = 0x1000
	b := exefmttest.Filler(at+len(arch)+0x400, 502)
	for i, v := range []uint32{0xcafebabe, 1, 18 /* PowerPC */, 0, at, uint32(len(arch)), 12} {
		binary.BigEndian.PutUint32(b[4*i:], v)
	}
	copy(b[at:], arch)
	dir := t.TempDir()
	p := filepath.Join(dir, "files", "universal.bin")
	writeFile(t, p, b)
	h := func(off int) string { return hex.EncodeToString(b[off : off+8]) }
	sigDir := filepath.Join(dir, "sigs")
	writeFile(t, filepath.Join(sigDir, "u.ndb"), []byte(strings.Join([]string{
		"U.Top.Any:9:*:" + h(0x500),
		"U.Top.Abs:9:1280:" + h(0x500),
		"U.Top.EOF:9:EOF-16:" + h(len(b)-16),
		"U.Top.EOF.Generic:0:EOF-12:" + h(len(b)-12),
		"U.Arch.S0:9:S0+8:" + h(at+0x208),
		"U.Arch.EOF.Generic:0:EOF-12:" + h(at+len(arch)-12),
	}, "\n")+"\n"))
	got := textPairs(t, sigDir, true, p)
	want := clamscanTextPairs(t, clamscan, sigDir, true, p)
	top := []string{p + "\tU.Top.Abs", p + "\tU.Top.Any"}
	if !slices.Equal(got, top) {
		t.Errorf("Vigil matched %q, want the top level's %q", got, top)
	}
	clam := append(slices.Clone(top), p+"\tU.Arch.EOF.Generic", p+"\tU.Arch.S0")
	slices.Sort(clam)
	if !slices.Equal(want, clam) {
		t.Errorf("clamscan matched %q, want the top level's and the architecture's %q", want, clam)
	}
}
