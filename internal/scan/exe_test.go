package scan

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/exefmt/exefmttest"
	"github.com/vigil-fleet/vigil/internal/signatures"
)

// TestExecutableOffsets scans the executables' corpus of the differential
// test with ScanPaths alone (it runs without clamscan): each file matches
// exactly the signatures predicted for it of those made from it.
func TestExecutableOffsets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := exeCorpus()
	sigs, ndb, paths := writeExeCorpus(t, dir, files)
	sigDir := filepath.Join(dir, "sigs")
	writeFile(t, filepath.Join(sigDir, "exe.ndb"), []byte(ndb))
	got := textPairs(t, sigDir, true, paths...)
	matched := 0
	for _, s := range sigs {
		in := slices.Contains(got, paths[s.file]+"\t"+s.name)
		if in != s.want {
			t.Errorf("%s on %s: matched %v, predicted %v", s.line(), files[s.file].name, in, s.want)
		}
		if in {
			matched++
		}
	}
	if matched < 200 || len(sigs)-matched < 100 {
		t.Errorf("%d of %d signatures matched: the corpus does not test both ways", matched, len(sigs))
	}
}

// TestStartAllowed checks the offset rules on one PE through the engine:
// the forms resolved from its headers, EOF-n lost with them when they are
// malformed (generic signatures too), and the exact start of static
// signatures at SEx in a PE of exefmt.ExactStartSize bytes, for target
// type 1 only.
func TestStartAllowed(t *testing.T) {
	t.Parallel()
	small := exefmttest.BuildPE(samplePESpec(7))
	big := samplePESpec(7)
	big.Size = exefmt.ExactStartSize
	large := exefmttest.BuildPE(big)
	broken := bytes.Clone(small)
	copy(broken[0x40:], "XX") // no PE signature: malformed
	// Section 1 is raw 0xa00, 0x200 bytes; the entry point maps to 0xa10.
	h := func(b []byte, at int) string { return fmt.Sprintf("%x", b[at:at+8]) }
	lines := func(b []byte) string {
		return strings.Join([]string{
			"EP:1:EP+0:" + h(b, 0xa10),
			"EPShift:1:EP-8,8:" + h(b, 0xa10),
			"SEMiddle:1:SE1:" + h(b, 0xb00),
			"SEMiddleGeneric:0:100,3000:" + h(b, 0xb00),
			"SEMiddleWild:1:SE1:" + h(b, 0xb00)[:2] + "??" + h(b, 0xb00)[4:],
			"SEStart:1:SE1:" + h(b, 0xa00),
			"EOF:1:EOF-16:" + h(b, len(b)-16),
			"EOFGeneric:0:EOF-16:" + h(b, len(b)-16),
			"Abs:1:2560:" + h(b, 0xa00),
		}, "\n") + "\n"
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"small", small, []string{"Abs", "EOF", "EOFGeneric", "EP", "EPShift", "SEMiddle", "SEMiddleGeneric", "SEMiddleWild", "SEStart"}},
		{"large", large, []string{"Abs", "EOF", "EOFGeneric", "EP", "EPShift", "SEMiddleGeneric", "SEMiddleWild", "SEStart"}},
		{"malformed", broken, []string{"Abs", "SEMiddleGeneric"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set, err := signatures.Parse("t.ndb", strings.NewReader(lines(tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "f.exe")
			writeFile(t, p, tc.data)
			sum, err := New(set).ScanPaths(context.Background(), []string{p}, Options{AllMatch: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range sum.Detections {
				got = append(got, d.Signature)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("matched %q, want %q", got, tc.want)
			}
		})
	}
}

// writeExeCorpus writes files under dir/files and returns their
// signatures (exeSigs), as .ndb lines too, and the files' paths.
func writeExeCorpus(t *testing.T, dir string, files []exeFile) (sigs []exeSig, ndb string, paths []string) {
	var b strings.Builder
	for i, f := range files {
		for _, s := range exeSigs(i, files) {
			sigs = append(sigs, s)
			fmt.Fprintln(&b, s.line())
		}
		p := filepath.Join(dir, "files", f.name)
		writeFile(t, p, f.data)
		paths = append(paths, p)
	}
	return sigs, b.String(), paths
}
