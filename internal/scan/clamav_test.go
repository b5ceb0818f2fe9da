package scan

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// clamscanArgs make clamscan compare signature matching on raw files:
// every match (-z), no heuristic alerts (they come from no signature
// file), sizes well above the corpus's files.
var clamscanArgs = []string{"--no-summary", "-r", "-z", "--heuristic-alerts=no",
	"--max-filesize=400M", "--max-scansize=400M"}

// runClamscan runs clamscan with args and paths and returns its
// detections as "path\tname" lines, sorted, every one (--allmatch prints
// one line per match), with the ".UNOFFICIAL" suffix ClamAV gives names
// from unofficial databases removed.
func runClamscan(t testing.TB, clamscan string, args []string, paths ...string) []string {
	t.Helper()
	cmd := exec.Command(clamscan, append(slices.Clone(args), paths...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("clamscan: %v\n%s", err, stderr.String())
	}
	var lines []string
	for _, line := range strings.Split(out.String(), "\n") {
		rest, ok := strings.CutSuffix(line, " FOUND")
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, ": ")
		if i < 0 {
			t.Fatalf("clamscan line %q", line)
		}
		lines = append(lines, rest[:i]+"\t"+strings.TrimSuffix(rest[i+2:], ".UNOFFICIAL"))
	}
	slices.Sort(lines)
	return lines
}

// clamscanPairs runs clamscan with clamscanArgs and returns the distinct
// "path\tname" pairs.
func clamscanPairs(t testing.TB, clamscan, sigDir string, paths ...string) []string {
	t.Helper()
	return slices.Compact(runClamscan(t, clamscan, append(slices.Clone(clamscanArgs), "-d", sigDir), paths...))
}

// vigilPairs scans like vigil scan -d sigDir and returns "path\tname".
func vigilPairs(t testing.TB, sigDir string, paths ...string) []string {
	t.Helper()
	set, err := signatures.Load(sigDir)
	if err != nil {
		t.Fatal(err)
	}
	// As clamscanArgs: every match, the sizes given.
	opts := Options{AllMatch: true, Limits: unpack.DefaultLimits(), NoHeuristicAlerts: true}
	opts.Limits.MaxFileSize, opts.Limits.MaxScanSize = 400<<20, 400<<20
	sum, err := New(set).ScanPaths(context.Background(), paths, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, d := range sum.Detections {
		pairs = append(pairs, d.Path+"\t"+d.Signature)
	}
	slices.Sort(pairs)
	return slices.Compact(pairs)
}

// corpus builds signature files and files to scan: planted matches of
// every signature form, near misses, large files, copies of system files.
type corpus struct {
	rng              *rand.Rand
	dir              string
	hdb, hsb, ndb    strings.Builder
	want             []string // expected "path\tname"
	nbody            int
	realFiles, bytes int64
}

func (c *corpus) random(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := c.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// write writes a file of the corpus and returns its path.
func (c *corpus) write(name string, data []byte) string {
	p := filepath.Join(c.dir, "files", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		panic(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		panic(err)
	}
	c.bytes += int64(len(data))
	return p
}

func (c *corpus) expect(path, name string) { c.want = append(c.want, path+"\t"+name) }

// body adds a body signature; hexsig may use %s for random fixed runs,
// filled from runs, which plant() uses to build matching files.
func (c *corpus) body(name, offset, hexsig string) {
	fmt.Fprintf(&c.ndb, "%s:0:%s:%s\n", name, offset, hexsig)
	c.nbody++
}

// buildCorpus generates everything under dir.
func buildCorpus(t testing.TB, dir string, large bool) *corpus {
	c := &corpus{rng: rand.New(rand.NewPCG(2024, 5)), dir: dir}
	h := func(b []byte) string { return hex.EncodeToString(b) }
	filler := func() []byte { return c.random(4096) }
	// A body signature case: the signature, a matching file (nil if no
	// file can match), near misses.
	type bodyCase struct {
		name, offset string
		hexsig       string
		hit          []byte
		misses       [][]byte
	}
	at := func(buf []byte, pos int, parts ...[]byte) []byte {
		for _, p := range parts {
			copy(buf[pos:], p)
			pos += len(p)
		}
		return buf
	}
	flip := func(b []byte) []byte { b = slices.Clone(b); b[len(b)-1] ^= 0x55; return b }
	var cases []bodyCase
	add := func(bc bodyCase) { cases = append(cases, bc) }

	a, b := c.random(6), c.random(6)
	lit := c.random(16)
	add(bodyCase{"Vigil.Test.Literal", "*", h(lit),
		at(filler(), 1000, lit),
		[][]byte{at(filler(), 1000, flip(lit))}})
	add(bodyCase{"Vigil.Test.Wildcard", "*", h(a) + "??" + h(b),
		at(filler(), 77, a, []byte{0xee}, b),
		[][]byte{at(filler(), 77, a, b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.NibbleHigh", "*", h(a) + "4?" + h(b),
		at(filler(), 300, a, []byte{0x4c}, b),
		[][]byte{at(filler(), 300, a, []byte{0x5c}, b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.NibbleLow", "*", h(a) + "?7" + h(b),
		at(filler(), 300, a, []byte{0xa7}, b),
		[][]byte{at(filler(), 300, a, []byte{0xa8}, b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.AltByte", "*", h(a) + "(11|22|33)" + h(b),
		at(filler(), 9, a, []byte{0x22}, b),
		[][]byte{at(filler(), 9, a, []byte{0x44}, b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.AltString", "*", h(a) + "(aabbcc|ddeeff)" + h(b),
		at(filler(), 2000, a, []byte{0xdd, 0xee, 0xff}, b),
		[][]byte{at(filler(), 2000, a, []byte{0xaa, 0xee, 0xff}, b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.FixedGap", "*", h(a) + "{10}" + h(b),
		at(filler(), 500, a, c.random(10), b),
		[][]byte{at(filler(), 500, a, c.random(11), b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.RangeGap", "*", h(a) + "{5-20}" + h(b),
		at(filler(), 500, a, c.random(20), b),
		[][]byte{
			at(filler(), 500, a, c.random(21), b),
			at(filler(), 500, a, c.random(4), b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.UpToGap", "*", h(a) + "{-8}" + h(b),
		at(filler(), 500, a, b),
		[][]byte{at(filler(), 500, a, c.random(9), b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.AtLeastGap", "*", h(a) + "{30-}" + h(b),
		at(filler(), 100, a, c.random(3000), b),
		[][]byte{at(filler(), 100, a, c.random(29), b)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.Star", "*", h(a) + "*" + h(b),
		at(filler(), 10, a, c.random(4000), b),
		[][]byte{at(at(filler(), 10, b), 3000, a)}})
	a, b = c.random(6), c.random(6)
	add(bodyCase{"Vigil.Test.LongFixedGap", "*", h(a) + "{300}" + h(b),
		at(filler(), 10, a, c.random(300), b),
		[][]byte{at(filler(), 10, a, c.random(301), b)}})
	a, b = c.random(4), c.random(4)
	d := c.random(4)
	add(bodyCase{"Vigil.Test.ThreeParts", "*", h(a) + "*" + h(b) + "{2-4}??" + h(d),
		at(filler(), 10, a, c.random(1000), b, c.random(5), d),
		[][]byte{at(filler(), 10, a, c.random(1000), b, c.random(6), d)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.Offset", "100", h(lit),
		at(filler(), 100, lit),
		[][]byte{at(filler(), 101, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.OffsetRange", "100,50", h(lit),
		at(filler(), 150, lit),
		[][]byte{at(filler(), 151, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOF", "EOF-64", h(lit),
		at(filler(), 4096-64, lit),
		[][]byte{at(filler(), 4096-63, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFRange", "EOF-64,16", h(lit),
		at(filler(), 4096-48, lit),
		[][]byte{at(filler(), 4096-65, lit)}})
	a, b = c.random(5), c.random(5)
	add(bodyCase{"Vigil.Test.OffsetParts", "EOF-2000", h(a) + "{10-100}" + h(b),
		at(filler(), 4096-2000, a, c.random(50), b),
		[][]byte{at(filler(), 4096-1999, a, c.random(50), b)}})
	// Offsets at the edges of the file (4096 bytes; a case with no hit
	// file has no start that can match). ClamAV never matches EOF-n when
	// n exceeds the file's size, whatever the shift: the window is not
	// cut to start at byte 0. EOF-n with n equal to the size starts at
	// byte 0, and a window running past the end of the file matches
	// what fits in it.
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFPastStart", "EOF-4100,100", h(lit), nil,
		[][]byte{at(filler(), 0, lit), at(filler(), 4, lit), at(filler(), 96, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFPastStartByOne", "EOF-4097,8", h(lit), nil,
		[][]byte{at(filler(), 0, lit), at(filler(), 7, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFPastStartNoShift", "EOF-4097", h(lit), nil,
		[][]byte{at(filler(), 0, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFAtStart", "EOF-4096", h(lit),
		at(filler(), 0, lit),
		[][]byte{at(filler(), 1, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFAtStartShift", "EOF-4096,5", h(lit),
		at(filler(), 5, lit),
		[][]byte{at(filler(), 6, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFWindowPastEnd", "EOF-12,100", h(lit),
		at(filler(), 4096-8, lit), // ends at the last byte
		[][]byte{at(filler(), 4096-13, lit), at(filler(), 4096-7, lit[:7])}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFShorterThanMatch", "EOF-7", h(lit), nil,
		[][]byte{at(filler(), 4096-7, lit[:7]), at(filler(), 4096-8, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.EOFZero", "EOF-0,50", h(lit), nil,
		[][]byte{at(filler(), 4096-8, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.OffsetWindowPastEnd", "4080,100", h(lit),
		at(filler(), 4096-8, lit),
		[][]byte{at(filler(), 4079, lit), at(filler(), 4096-7, lit[:7])}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.OffsetTooLate", "4089,100", h(lit), nil,
		[][]byte{at(filler(), 4096-8, lit), at(filler(), 4096-7, lit[:7])}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.OffsetAtSize", "4096", h(lit), nil,
		[][]byte{at(filler(), 4096-8, lit)}})
	lit = c.random(8)
	add(bodyCase{"Vigil.Test.OffsetBeyondEnd", "5000,1000", h(lit), nil,
		[][]byte{at(filler(), 4096-8, lit)}})
	add(bodyCase{"Vigil.Test.EICAR", "0", h([]byte(eicar)),
		[]byte(eicar),
		[][]byte{append([]byte(" "), eicar...)}})

	for _, bc := range cases {
		c.body(bc.name, bc.offset, bc.hexsig)
		if bc.hit != nil {
			c.expect(c.write("body/"+bc.name+".hit", bc.hit), bc.name)
		}
		for i, m := range bc.misses {
			c.write(fmt.Sprintf("body/%s.miss%d", bc.name, i), m)
		}
	}

	// Hash signatures.
	fmt.Fprintf(&c.hdb, "44d88612fea8a8f36de82e1278abb02f:68:Vigil.Test.EICAR-MD5\n")
	p := c.write("hash/eicar.com", []byte(eicar))
	var data []byte
	c.expect(p, "Vigil.Test.EICAR-MD5")
	c.expect(p, "Vigil.Test.EICAR")
	c.expect(filepath.Join(dir, "files/body/Vigil.Test.EICAR.hit"), "Vigil.Test.EICAR-MD5")
	hashFile := func(name string, n int) ([]byte, string) {
		data := c.random(n)
		return data, c.write("hash/"+name, data)
	}
	data, p = hashFile("md5", 1234)
	fmt.Fprintf(&c.hdb, "%x:%d:Vigil.Test.MD5\n", md5.Sum(data), len(data))
	c.expect(p, "Vigil.Test.MD5")
	c.write("hash/md5.near", flip(data))
	data, _ = hashFile("md5.wrongsize", 999)
	fmt.Fprintf(&c.hdb, "%x:%d:Vigil.Test.MD5-WrongSize\n", md5.Sum(data), len(data)+1)
	data, p = hashFile("md5.any", 777)
	fmt.Fprintf(&c.hdb, "%x:*:Vigil.Test.MD5-AnySize:73\n", md5.Sum(data))
	c.expect(p, "Vigil.Test.MD5-AnySize")
	data, p = hashFile("sha1", 4321)
	fmt.Fprintf(&c.hsb, "%x:%d:Vigil.Test.SHA1\n", sha1.Sum(data), len(data))
	c.expect(p, "Vigil.Test.SHA1")
	data, p = hashFile("sha256", 100000)
	fmt.Fprintf(&c.hsb, "%x:%d:Vigil.Test.SHA256\n", sha256.Sum256(data), len(data))
	c.expect(p, "Vigil.Test.SHA256")
	c.write("hash/sha256.near", flip(data))
	data, p = hashFile("sha256.any", 333)
	fmt.Fprintf(&c.hsb, "%x:*:Vigil.Test.SHA256-AnySize:73\n", sha256.Sum256(data))
	c.expect(p, "Vigil.Test.SHA256-AnySize")
	data, p = hashFile("sha1.any", 444)
	fmt.Fprintf(&c.hsb, "%x:*:Vigil.Test.SHA1-AnySize:73\n", sha1.Sum(data))
	c.expect(p, "Vigil.Test.SHA1-AnySize")
	data, _ = hashFile("tiny", 5) // too small for either engine
	fmt.Fprintf(&c.hdb, "%x:5:Vigil.Test.Tiny\n", md5.Sum(data))
	c.write("hash/empty", nil)

	if large {
		// Large files: matches near the end, across 64 KiB and 256 KiB
		// boundaries, and parts tens of megabytes apart.
		end, cross := c.random(16), c.random(16)
		c.body("Vigil.Test.Large.End", "*", h(end))
		c.body("Vigil.Test.Large.Boundary", "*", h(cross[:8])+"??"+h(cross[9:]))
		a, b := c.random(6), c.random(6)
		c.body("Vigil.Test.Large.Star", "*", h(a)+"*"+h(b))
		big := c.random(50 << 20)
		copy(big[len(big)-1000:], end)
		for k := 1; k*k*(64<<10) < 44<<20; k++ {
			copy(big[k*k*(64<<10)-8:], cross)
		}
		copy(big[1<<20:], a)
		copy(big[45<<20:], b)
		p := c.write("large/50M.bin", big)
		c.expect(p, "Vigil.Test.Large.End")
		c.expect(p, "Vigil.Test.Large.Boundary")
		c.expect(p, "Vigil.Test.Large.Star")
		small := slices.Clone(big[:300<<10])
		copy(small[256<<10-7:], cross)
		c.expect(c.write("large/boundary.bin", small), "Vigil.Test.Large.Boundary")
		copy(big[45<<20:], c.random(6)) // near miss: second part gone
		big[len(big)-1000] ^= 1
		for k := 1; k*k*(64<<10) < 44<<20; k++ {
			big[k*k*(64<<10)-8] ^= 1
		}
		c.write("large/50M.near", big)
	}

	// Real system files, one with a planted match in the middle.
	lit = c.random(12)
	c.body("Vigil.Test.InSystemFile", "*", h(lit))
	var budget int64 = 40 << 20
	for _, dir := range []string{"/usr/bin", "/etc", "/usr/lib/x86_64-linux-gnu"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if budget <= 0 {
				break
			}
			fi, err := os.Lstat(filepath.Join(dir, e.Name()))
			if err != nil || !fi.Mode().IsRegular() || fi.Size() > 4<<20 {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			budget -= int64(len(data))
			c.realFiles++
			c.write("system"+dir+"/"+e.Name(), data)
			if c.realFiles == 3 && len(data) > 100 {
				data = slices.Clone(data)
				copy(data[len(data)/2:], lit)
				c.expect(c.write("system/planted-"+e.Name(), data), "Vigil.Test.InSystemFile")
			}
		}
	}

	sigDir := filepath.Join(dir, "sigs")
	must(os.MkdirAll(sigDir, 0o755))
	must(os.WriteFile(filepath.Join(sigDir, "cmp.hdb"), []byte(c.hdb.String()), 0o644))
	must(os.WriteFile(filepath.Join(sigDir, "cmp.hsb"), []byte(c.hsb.String()), 0o644))
	must(os.WriteFile(filepath.Join(sigDir, "cmp.ndb"), []byte(c.ndb.String()), 0o644))
	slices.Sort(c.want)
	c.want = slices.Compact(c.want)
	return c
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// TestSameAsClamAV checks that detections are identical to ClamAV's:
// clamscan and Vigil scan the same corpus with the same signature files
// and must report the same (file, signature) pairs, the expected ones.
func TestSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	dir := t.TempDir()
	c := buildCorpus(t, dir, !testing.Short())
	sigDir, files := filepath.Join(dir, "sigs"), filepath.Join(dir, "files")
	t.Logf("corpus: %.1f MB, %d real system files; %d body signatures", float64(c.bytes)/(1<<20), c.realFiles, c.nbody)

	got := vigilPairs(t, sigDir, files)
	if !slices.Equal(got, c.want) {
		t.Errorf("vigil:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
	}
	clam := clamscanPairs(t, clamscan, sigDir, files)
	if !slices.Equal(got, clam) {
		t.Errorf("vigil and clamscan differ.\nvigil:\n%s\nclamscan:\n%s", strings.Join(got, "\n"), strings.Join(clam, "\n"))
	} else {
		t.Logf("%d detections, identical", len(got))
	}
}

// highAlphabet moves a random signature of randomSig (over the bytes a, b,
// c, i.e. 61, 62, 63, with nibble wildcards 6?) to the bytes f1, f2, f3,
// so that the files it is matched against are binary: clamscan normalises
// files it takes for text and matches the normalised text too, which
// Vigil does not do. Gap lengths in braces are left alone.
func highAlphabet(sig string) string {
	b := []byte(sig)
	depth := 0
	for i, c := range b {
		switch {
		case c == '{':
			depth++
		case c == '}':
			depth--
		case depth == 0 && c == '6':
			b[i] = 'f'
		}
	}
	return string(b)
}

// TestRandomSameAsClamAV compares Vigil with clamscan on random body
// signatures (offsets *, n, n,m, EOF-n and EOF-n,m, with n around the
// files' sizes) and random binary files of 6 to 305 bytes, where partial
// matches and edge-of-file windows abound, including zero-length gaps
// ({0}, {0-0}, {-0}), which mean any distance in both.
func TestRandomSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	nsig, nfile := 400, 600
	if testing.Short() {
		nsig, nfile = 150, 200
	}
	dir := t.TempDir()
	sigDir, files := filepath.Join(dir, "sigs"), filepath.Join(dir, "files")
	must(os.MkdirAll(sigDir, 0o755))
	must(os.MkdirAll(files, 0o755))
	var ndb strings.Builder
	lines := map[string]string{}
	for i := 0; len(lines) < nsig; i++ {
		name := fmt.Sprintf("R%d", i)
		line := fmt.Sprintf("%s:0:%s:%s", name, randomOffset(rng), highAlphabet(randomSig(rng)))
		if _, err := signatures.Parse("x.ndb", strings.NewReader(line)); err == nil {
			ndb.WriteString(line + "\n") // else not valid in ClamAV either
			lines[name] = line
		}
	}
	must(os.WriteFile(filepath.Join(sigDir, "r.ndb"), []byte(ndb.String()), 0o644))
	for i := range nfile {
		data := make([]byte, 6+rng.IntN(300))
		for j := range data {
			data[j] = byte(0xf1 + rng.IntN(3))
			if rng.IntN(20) == 0 {
				data[j] = 0
			}
		}
		must(os.WriteFile(filepath.Join(files, fmt.Sprint(i)), data, 0o644))
	}
	got := vigilPairs(t, sigDir, files)
	clam := clamscanPairs(t, clamscan, sigDir, files)
	var diff []string
	for _, d := range []struct {
		who        string
		have, lack []string
	}{{"vigil only", got, clam}, {"clamscan only", clam, got}} {
		for _, p := range d.have {
			if _, found := slices.BinarySearch(d.lack, p); !found {
				path, name, _ := strings.Cut(p, "\t")
				size := int64(-1)
				if fi, err := os.Stat(path); err == nil {
					size = fi.Size()
				}
				diff = append(diff, fmt.Sprintf("%s: %s (%d bytes) %s", d.who, filepath.Base(path), size, lines[name]))
			}
		}
	}
	if len(diff) > 0 {
		t.Errorf("%d of %d detections differ (vigil %d, clamscan %d); the first:\n%s",
			len(diff), len(clam), len(got), len(clam), strings.Join(diff[:min(len(diff), 20)], "\n"))
	} else {
		t.Logf("%d signatures, %d files: %d detections, identical", len(lines), nfile, len(got))
	}
}
