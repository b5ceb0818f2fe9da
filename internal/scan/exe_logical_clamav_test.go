package scan

import (
	"archive/zip"
	"bytes"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/unpack"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// TestLogicalExecutablesSameAsClamAV: logical signatures of targets 1, 6
// and 9 over the executables corpus (alone and in a zip), with
// subsignatures at EP+n, EP-n, Sx+n, SL+n and SEx (one byte off too) and
// target descriptions on EntryPoint and NumberOfSections (ranges holding
// the parsed value and ranges missing it by one), and generic ones at
// EOF-n: the same (file, signature) pairs as clamscan, with and without
// --allmatch. Malformed executables resolve no relative offset and have
// no entry point, in both.
func TestLogicalExecutablesSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	dir := t.TempDir()
	files := exeCorpus()
	var lines []string
	add := func(name string, target int, tdb, logic string, subs ...string) {
		for _, sub := range subs {
			if sub == "" || strings.HasSuffix(sub, ":") || strings.HasSuffix(sub, ":::i") {
				return // bytes past the end of the file
			}
		}
		if tdb != "" {
			tdb = "," + tdb
		}
		lines = append(lines, fmt.Sprintf("Vigil.LExe.%s;Engine:51-255,Target:%d%s;%s;%s", name, target, tdb, logic, strings.Join(subs, ";")))
	}
	// differs: the n bytes at off are not those at off+1 (a control one
	// byte off must not match for repeated bytes).
	differs := func(f exeFile, off int64, n int) bool {
		return off >= 0 && off+1+int64(n) <= int64(len(f.data)) && !bytes.Equal(f.data[off:off+int64(n)], f.data[off+1:off+1+int64(n)])
	}
	at := func(f exeFile, off int64, n int) string {
		if off < 0 || off+int64(n) > int64(len(f.data)) {
			return ""
		}
		return hex.EncodeToString(f.data[off : off+int64(n)])
	}
	for i, f := range files {
		writeFile(t, filepath.Join(dir, "files", f.name), f.data)
		if i%3 == 0 {
			z := filepath.Join(dir, "files", f.name+".zip")
			writeFile(t, z, unpacktest.Zip(t, unpacktest.ZipEntry{Name: f.name, Data: f.data, Method: zip.Deflate}))
		}
		size := int64(len(f.data))
		target := f.format.Target()
		// A marker near the start, unique to the file: subsignature 0.
		mark := at(f, 0x1e0, 12)
		if target == 0 {
			add(fmt.Sprintf("F%d.EOF", i), 0, "", "0&1", mark, "EOF-12:"+at(f, size-12, 8))
			continue
		}
		in, err := exefmt.Parse(bytes.NewReader(f.data), size, f.format)
		if err != nil {
			// Nothing relative resolves; the target description's entry
			// point never holds.
			add(fmt.Sprintf("F%d.Bad.EP", i), target, "", "0|1", "EP+0:"+at(f, 0, 8), "EOF-12:"+at(f, size-12, 8))
			add(fmt.Sprintf("F%d.Bad.TDB", i), target, "EntryPoint:0-4294967295", "0", mark)
			add(fmt.Sprintf("F%d.Bad.Generic", i), 0, "", "0&1", mark, "EOF-12:"+at(f, size-12, 8))
			continue
		}
		ep := int64(in.EP)
		epHex, epmHex := at(f, ep+16, 8), at(f, ep-4, 8)
		if epHex != "" {
			add(fmt.Sprintf("F%d.EP", i), target, "", "0&1", mark, "EP+16:"+epHex)
			if differs(f, ep+16, 8) {
				add(fmt.Sprintf("F%d.EP.Off", i), target, "", "0&1", mark, "EP+17:"+epHex)
			}
			add(fmt.Sprintf("F%d.EP.Shift", i), target, "", "1", mark, "EP+14,2:"+epHex)
		}
		if epmHex != "" {
			add(fmt.Sprintf("F%d.EPminus", i), target, "", "0&1", mark, "EP-4:"+epmHex)
		}
		e := uint32(in.EP)
		add(fmt.Sprintf("F%d.TDB.EP", i), target, fmt.Sprintf("EntryPoint:%d-%d", e, e+10), "0", mark)
		add(fmt.Sprintf("F%d.TDB.EP.Off", i), target, fmt.Sprintf("EntryPoint:%d-%d", e+1, e+10), "0", mark)
		ns := uint32(in.NumberOfSections)
		add(fmt.Sprintf("F%d.TDB.NoS", i), target, fmt.Sprintf("NumberOfSections:%d-%d", ns, ns), "0", mark)
		add(fmt.Sprintf("F%d.TDB.NoS.Off", i), target, fmt.Sprintf("NumberOfSections:%d-%d", ns+1, ns+5), "0", mark)
		for x := range min(int(in.NumberOfSections), 3) {
			sec := in.Sections[x]
			if sec.RawSize < 32 {
				continue
			}
			h := at(f, int64(sec.Raw)+8, 8)
			add(fmt.Sprintf("F%d.S%d", i, x), target, "", "0&1", mark, fmt.Sprintf("S%d+8:%s", x, h))
			if differs(f, int64(sec.Raw)+8, 8) {
				add(fmt.Sprintf("F%d.S%d.Off", i, x), target, "", "0&1", mark, fmt.Sprintf("S%d+9:%s", x, h))
			}
			mid := at(f, int64(sec.Raw)+int64(sec.RawSize)/2, 8)
			add(fmt.Sprintf("F%d.SE%d", i, x), target, "", "1=1", mark, fmt.Sprintf("SE%d:%s", x, mid))
		}
		if n := in.NumberOfSections; n > 0 {
			last := in.Sections[n-1]
			add(fmt.Sprintf("F%d.SL", i), target, "", "0&1", mark, "SL+4:"+at(f, int64(last.Raw)+4, 8))
		}
		add(fmt.Sprintf("F%d.EOF", i), target, "", "0&1", mark, "EOF-12:"+at(f, size-12, 8))
	}
	sigDir := filepath.Join(dir, "sigs")
	writeFile(t, filepath.Join(sigDir, "exe.ldb"), []byte(strings.Join(lines, "\n")+"\n"))
	for _, run := range []struct {
		name  string
		flags []string
		opts  Options
	}{
		{"allmatch", []string{"--allmatch"}, Options{Limits: unpack.DefaultLimits(), AllMatch: true}},
		{"first", nil, Options{Limits: unpack.DefaultLimits()}},
	} {
		t.Run(run.name, func(t *testing.T) {
			files := filepath.Join(dir, "files")
			cl := slices.Compact(clamscanLines(t, clamscan, sigDir, run.flags, files))
			vl := slices.Compact(vigilLines(t, sigDir, run.opts, files))
			if !slices.Equal(cl, vl) {
				t.Errorf("clamscan and ScanPaths differ:\n%s", lineDiff(cl, vl))
			}
			joined := strings.Join(cl, "\n")
			for _, want := range []string{".EP\n", ".EPminus\n", ".TDB.EP\n", ".TDB.NoS\n", ".S1\n", ".SE1\n", ".SL\n", ".EOF\n", ".EP.Shift\n"} {
				if !strings.Contains(joined+"\n", want) && run.name == "allmatch" {
					t.Errorf("clamscan reports no signature %s", strings.TrimSpace(want))
				}
			}
			for _, never := range []string{".Off\n", ".Bad."} {
				for _, l := range cl {
					if strings.Contains(l+"\n", never) {
						t.Errorf("clamscan reports %s", l)
					}
				}
			}
			t.Logf("%d signatures: %d detections", len(lines), len(cl))
		})
	}
}
