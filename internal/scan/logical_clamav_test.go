package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
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

// lsigCorpus is a generated corpus for logical signatures: words planted
// in binary and text files (plain, upper case, UTF-16LE, next to letters
// or not, across read-chunk boundaries), some files inside zips, zips in
// zips and tar.gz files, and random .ldb lines over those words.
type lsigCorpus struct {
	rng   *rand.Rand
	words []string
	// plants are where each word was put: file (relative), offset, and
	// the file's size, so that offsets in signatures can hit and miss.
	plants []lsigPlant
	files  string
	sigs   string
	lines  []string
	// objects are the bytes of some files and archive members, for
	// the allow list.
	objects [][]byte
}

type lsigPlant struct {
	file      string
	off, size int
}

func (c *lsigCorpus) pick(s ...string) string { return s[c.rng.IntN(len(s))] }

// word makes a random word of letters and digits, starting with a
// letter.
func (c *lsigCorpus) word() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	const alnum = letters + "0123456789"
	n := 4 + c.rng.IntN(5)
	b := []byte{letters[c.rng.IntN(len(letters))]}
	for len(b) < n {
		b = append(b, alnum[c.rng.IntN(len(alnum))])
	}
	return string(b)
}

// content builds a file's bytes: binary bytes first (so that ClamAV
// types it as binary data) unless text, then random filler and planted
// words, in the forms the modifiers match. Large files get a word across
// the engine's 256 KiB read chunk and ClamAV's 128 KiB windows.
func (c *lsigCorpus) content(name string, text bool, large bool) []byte {
	var b bytes.Buffer
	if !text {
		b.Write([]byte{0x00, 0x01, 0x80, 0x9c, 0x00, 0x02, 0x9d, 0x81})
	}
	filler := func(n int) {
		for range n {
			if text {
				b.WriteByte(" .,;-\n"[c.rng.IntN(6)])
			} else {
				b.WriteByte([]byte{0x00, 0x01, 0x7f, 0x80, 0x90, 0xc3, 0xf0, 0x10, ' '}[c.rng.IntN(9)])
			}
		}
	}
	var plants []lsigPlant
	put := func(w string) {
		switch c.rng.IntN(7) {
		case 0:
			w = strings.ToUpper(w)
		case 1:
			w = strings.ToLower(w)
		case 2:
			if !text {
				var wb []byte
				for _, r := range []byte(w) {
					wb = append(wb, r, 0)
				}
				w = string(wb)
			}
		case 3:
			w = "x" + w // a letter before: no full word
		case 4:
			w += "9"
		}
		plants = append(plants, lsigPlant{file: name, off: b.Len()})
		b.WriteString(w)
	}
	for k := 2 + c.rng.IntN(10); k > 0; k-- {
		filler(c.rng.IntN(12))
		put(c.words[c.rng.IntN(len(c.words))])
	}
	if large {
		for _, at := range []int{128<<10 - 3, 256<<10 - 2, 384<<10 - 5} {
			filler(at - b.Len())
			put(c.words[c.rng.IntN(len(c.words))])
		}
		filler(c.rng.IntN(100))
	}
	filler(1 + c.rng.IntN(8))
	for i := range plants {
		plants[i].size = b.Len()
	}
	c.plants = append(c.plants, plants...)
	return b.Bytes()
}

func (c *lsigCorpus) write(t *testing.T, name string, data []byte) {
	p := filepath.Join(c.files, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// subsig makes a random content subsignature over the corpus's words.
func (c *lsigCorpus) subsig(target string) string {
	w := c.words[c.rng.IntN(len(c.words))]
	h := hex.EncodeToString([]byte(w))
	mods := c.pick("", "", "", "::i", "::w", "::wa", "::iwa", "::f", "::fi", "::fwa", "::fw")
	switch c.rng.IntN(6) {
	case 0: // a wildcard byte
		i := 1 + c.rng.IntN(len(w)-2)
		h = h[:2*i] + "??" + h[2*i+2:]
	case 1: // a single-byte alternative (no modifier: ClamAV's prefilter)
		if mods == "" && len(w) >= 5 {
			i := 3 + c.rng.IntN(len(w)-4)
			h = h[:2*i] + "(" + h[2*i:2*i+2] + "|" + hex.EncodeToString([]byte{'#'}) + ")" + h[2*i+2:]
		}
	case 2: // two words, a gap between
		w2 := c.words[c.rng.IntN(len(c.words))]
		h += c.pick("*", "{0-40}", "{2-}", "{-30}") + hex.EncodeToString([]byte(w2))
	}
	off := ""
	if c.rng.IntN(3) == 0 && len(c.plants) > 0 && target == "0" {
		p := c.plants[c.rng.IntN(len(c.plants))]
		d := c.rng.IntN(3) - 1 // off by one now and then
		switch c.rng.IntN(4) {
		case 0:
			off = fmt.Sprintf("%d:", max(0, p.off+d))
		case 1:
			off = fmt.Sprintf("%d,%d:", max(0, p.off-2+d), 2+c.rng.IntN(3))
		case 2:
			off = fmt.Sprintf("EOF-%d:", max(0, p.size-p.off+d))
		case 3:
			off = fmt.Sprintf("EOF-%d,%d:", max(0, p.size-p.off+2), 2+c.rng.IntN(3))
		}
	}
	return off + h + mods
}

// expr makes a random logical expression over n subsignatures.
func (c *lsigCorpus) expr(n, d int) string {
	if d > 2 || c.rng.IntN(3) == 0 {
		s := fmt.Sprint(c.rng.IntN(n))
		if c.rng.IntN(3) == 0 {
			s += c.pick("=", ">", "<") + fmt.Sprint(c.rng.IntN(3))
		}
		return s
	}
	s := c.expr(n, d+1) + c.pick("&", "|") + c.expr(n, d+1)
	if d > 0 || c.rng.IntN(2) == 0 {
		s = "(" + s + ")"
		if c.rng.IntN(3) == 0 {
			s += c.pick("=", ">", "<") + fmt.Sprint(c.rng.IntN(4)) + c.pick("", "", ",2")
		}
	}
	return s
}

func buildLsigCorpus(t *testing.T, dir string, seed uint64, nsigs, nfiles int) *lsigCorpus {
	c := &lsigCorpus{rng: rand.New(rand.NewPCG(seed, 7)), files: filepath.Join(dir, "files"), sigs: filepath.Join(dir, "sigs")}
	for range 24 {
		c.words = append(c.words, c.word())
	}
	for f := range nfiles {
		name := fmt.Sprintf("f%03d", f)
		switch c.rng.IntN(8) {
		case 0: // text: matched raw and normalized
			c.write(t, name+".txt", c.content(name+".txt", true, false))
		case 1: // zip of two members
			a, b := c.content(name+".zip!a", false, false), c.content(name+".zip!b", false, false)
			c.objects = append(c.objects, a)
			c.write(t, name+".zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.bin", Data: a},
				unpacktest.ZipEntry{Name: "b.bin", Data: b, Method: zip.Deflate}))
		case 2: // zip in a zip
			in := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "in.bin", Data: c.content(name+".zip!in", false, false), Method: zip.Deflate})
			c.write(t, name+"-nested.zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "in.zip", Data: in}))
		case 3: // tar.gz
			c.write(t, name+".tar.gz", unpacktest.Gzip(unpacktest.Tar(t, tar.FormatPAX,
				unpacktest.TarEntry{Name: "m.bin", Data: c.content(name+".tar.gz!m", false, false)})))
		case 4: // across read chunks
			c.write(t, name+".big", c.content(name+".big", false, true))
		default:
			data := c.content(name, false, false)
			c.objects = append(c.objects, data)
			c.write(t, name, data)
		}
	}
	for i := range nsigs {
		n := 1 + c.rng.IntN(4)
		e := c.expr(n, 0)
		_, max, err := signatures.ParseExpr(e)
		if err != nil {
			t.Fatalf("generated expression %q: %v", e, err)
		}
		target := c.pick("0", "0", "0", "0", "7")
		tdb := "Target:" + target
		switch c.rng.IntN(8) {
		case 0:
			lo := 20 + c.rng.IntN(200)
			tdb = fmt.Sprintf("Engine:51-255,Target:%s,FileSize:%d-%d", target, lo, lo+c.rng.IntN(300))
		case 1:
			tdb = "Engine:51-255,Target:" + target + "," + c.pick("Container:CL_TYPE_ANY", "Container:CL_TYPE_ZIP",
				"Container:CL_TYPE_POSIX_TAR", "Container:CL_TYPE_GZ", "Intermediates:CL_TYPE_ZIP",
				"Intermediates:CL_TYPE_ZIP>CL_TYPE_ZIP", "Intermediates:CL_TYPE_ANY>CL_TYPE_ZIP", "Intermediates:CL_TYPE_GZ>CL_TYPE_POSIX_TAR")
		}
		subs := make([]string, max+1)
		for j := range subs {
			subs[j] = c.subsig(target)
		}
		c.lines = append(c.lines, fmt.Sprintf("Vigil.L%d;%s;%s;%s", i, tdb, e, strings.Join(subs, ";")))
	}
	if err := os.MkdirAll(c.sigs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.sigs, "gen.ldb"), []byte(strings.Join(c.lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Signatures never reported (an ignore list), and files and members
	// never reported (an allow list).
	var ign, fp strings.Builder
	for i := 0; i < nsigs; i += 37 {
		fmt.Fprintf(&ign, "Vigil.L%d\n", i)
	}
	for i := 0; i < len(c.objects); i += 9 {
		fmt.Fprintf(&fp, "%x:%d:Vigil.Allowed.%d\n", md5.Sum(c.objects[i]), len(c.objects[i]), i)
	}
	c.write(t, "../sigs/gen.ign2", []byte(ign.String()))
	c.write(t, "../sigs/gen.fp", []byte(fp.String()))
	return c
}

// TestLogicalSameAsClamAV: random logical signatures (counts, nested
// blocks, every modifier, absolute and end-relative offsets with shifts,
// subsignatures split by gaps, FileSize, Container and Intermediates,
// targets 0 and 7), an ignore list (.ign2) of some of them and an allow
// list (.fp) of some files and archive members, over a generated corpus
// of binary and text files, archives, nested archives and large files,
// scanned by clamscan and by ScanPaths: the same (file, signature) pairs,
// with and without --allmatch.
func TestLogicalSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	nsigs, nfiles := 400, 160
	if testing.Short() {
		nsigs, nfiles = 150, 60
	}
	seed := uint64(11)
	if v := os.Getenv("VIGIL_TEST_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	c := buildLsigCorpus(t, t.TempDir(), seed, nsigs, nfiles)
	set, err := signatures.Load(c.sigs)
	if err != nil {
		t.Fatal(err)
	}
	evaluated := 0
	for _, l := range set.Logical {
		if l.Unsupported == "" {
			evaluated++
		} else {
			t.Errorf("%s: not evaluated: %s", l.Name, l.Unsupported)
		}
	}
	if len(set.Logical)+len(set.Skipped) != nsigs || len(set.Skipped) != (nsigs+36)/37 || len(set.Allowed) == 0 {
		t.Fatalf("loaded %d logical signatures of %d, skipped %v, %d allowed", len(set.Logical), nsigs, set.Skipped, len(set.Allowed))
	}
	// Without --allmatch the first signature found is reported: the
	// signatures true without any match (such as "0<1") would be the
	// first everywhere, so that run leaves them out.
	var some []string
	for _, l := range set.Logical {
		if !l.Logic.Eval(nil) {
			some = append(some, c.lines[l.Line-1])
		}
	}
	someSigs := filepath.Join(t.TempDir(), "sigs")
	if err := os.MkdirAll(someSigs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(someSigs, "some.ldb"), []byte(strings.Join(some, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"gen.ign2", "gen.fp"} {
		b, err := os.ReadFile(filepath.Join(c.sigs, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(someSigs, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lim := unpack.DefaultLimits()
	for _, run := range []struct {
		name  string
		sigs  string
		flags []string
		opts  Options
	}{
		{"allmatch", c.sigs, []string{"--allmatch"}, Options{Limits: lim, AllMatch: true}},
		{"first", someSigs, nil, Options{Limits: lim}},
	} {
		t.Run(run.name, func(t *testing.T) {
			// Distinct lines: clamscan prints a match once per buffer
			// it matches (binary data is matched twice, text raw and
			// normalized), Vigil once per object (docs/signatures.md).
			cl := slices.Compact(clamscanLines(t, clamscan, run.sigs, run.flags, c.files))
			vl := slices.Compact(vigilLines(t, run.sigs, run.opts, c.files))
			if !slices.Equal(cl, vl) {
				t.Errorf("clamscan %q and ScanPaths differ:\n%s", run.flags, lineDiff(cl, vl))
			}
			names := map[string]bool{}
			for _, l := range cl {
				names[l[strings.IndexByte(l, '\t')+1:]] = true
			}
			t.Logf("%d signatures, %d files: %d detections of %d signatures", nsigs, nfiles, len(cl), len(names))
			if len(names) < 10 || len(cl) < nfiles/4 {
				t.Errorf("a weak test: %d detections of %d signatures", len(cl), len(names))
			}
		})
	}
}

// TestByteCompareSameAsClamAV: logical signatures with byte-compare
// subsignatures (binary, hex and decimal text, both byte orders, offsets
// before and after the reference, one and two comparisons) over files
// holding their anchors once or several times, small and spanning several
// of ClamAV's 128 KiB scan windows (where ClamAV reads each window at the
// reference's offset in the buffer), inside zips too: the same (file,
// signature) pairs as clamscan --allmatch.
func TestByteCompareSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	seed := uint64(5)
	if v := os.Getenv("VIGIL_TEST_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 6))
	dir := t.TempDir()
	files, sigs := filepath.Join(dir, "files"), filepath.Join(dir, "sigs")
	os.MkdirAll(files, 0o755)
	os.MkdirAll(sigs, 0o755)
	anchors := []string{"BCANCHOR01", "bcanchor02", "BCANCHOR03"}
	// Values after (and before) anchors: binary integers and text numbers.
	value := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return []byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		case 1:
			return []byte(fmt.Sprintf("%x", rng.IntN(1<<16)))
		case 2:
			return []byte(fmt.Sprintf("%d", rng.IntN(5000)))
		}
		return []byte(fmt.Sprintf("  0x%X", rng.IntN(1<<12)))
	}
	group := func() []byte {
		var b []byte
		b = append(b, value()...)
		b = append(b, anchors[rng.IntN(len(anchors))]...)
		b = append(b, value()...)
		return append(b, value()...)
	}
	content := func(size int) []byte {
		b := make([]byte, 0, size+64)
		b = append(b, 0x00, 0x01, 0x80, 0x9c, 0x00, 0x02, 0x9d, 0x81)
		for len(b) < size {
			if rng.IntN(4) == 0 {
				b = append(b, byte(rng.IntN(200)), byte(rng.IntN(200)))
				continue
			}
			b = append(b, group()...)
		}
		return b
	}
	// A large file: filler with groups here and there, some in later
	// windows, some across the windows' edges.
	large := func(size int) []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.IntN(200))
		}
		copy(b, []byte{0x00, 0x01, 0x80, 0x9c, 0x00, 0x02, 0x9d, 0x81})
		for _, at := range []int{100 + rng.IntN(1000), 128<<10 - 8 - rng.IntN(8), 128<<10 + rng.IntN(4000), 200<<10 + rng.IntN(50<<10), 256<<10 - rng.IntN(100)} {
			if g := group(); at+len(g) < size {
				copy(b[at:], g)
			}
		}
		return b
	}
	for f := range 80 {
		size := 40 + rng.IntN(400)
		if f%8 == 0 {
			size = 100<<10 + rng.IntN(300<<10)
		}
		name := filepath.Join(files, fmt.Sprintf("f%02d", f))
		data := content(size)
		if size > 4096 {
			data = large(size)
		}
		if f%10 == 3 {
			data = unpacktest.Zip(t, unpacktest.ZipEntry{Name: "m.bin", Data: data, Method: zip.Deflate})
			name += ".zip"
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for i := range 300 {
		a := anchors[rng.IntN(len(anchors))]
		off := fmt.Sprintf(">>%d", len(a)+rng.IntN(6)-1)
		if rng.IntN(5) == 0 {
			off = fmt.Sprintf("<<%d", 1+rng.IntN(6))
		}
		opts := []string{"ib1", "ib2", "il2", "ib4", "il4", "hb2", "hl2", "hb4", "hl4", "hb3", "db2", "db4", "ab4", "al4", "hbe4", "dbe3", "ale4", "h4", "i2"}[rng.IntN(19)]
		cmp := []string{">", "<", "="}[rng.IntN(3)] + fmt.Sprint(rng.IntN(3000))
		if rng.IntN(4) == 0 {
			cmp = fmt.Sprintf(">%d,<%d", rng.IntN(1000), 1000+rng.IntN(50000))
		}
		logic := "0&1"
		if rng.IntN(4) == 0 {
			logic = "0&1>1"
		}
		lines = append(lines, fmt.Sprintf("Vigil.BC%d;Engine:81-255,Target:0;%s;%s;0(%s#%s#%s)", i, logic, hex.EncodeToString([]byte(a)), off, opts, cmp))
	}
	if d := os.Getenv("VIGIL_TEST_KEEP"); d != "" { // for a look at a disagreement
		os.RemoveAll(d)
		os.CopyFS(d, os.DirFS(dir))
		os.WriteFile(filepath.Join(d, "sigs", "bc.ldb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	}
	if err := os.WriteFile(filepath.Join(sigs, "bc.ldb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := signatures.Load(sigs)
	if err != nil {
		t.Fatal(err)
	}
	if n := set.NotMatched(); n != 0 {
		t.Fatalf("%d byte-compare signatures not evaluated", n)
	}
	cl := slices.Compact(clamscanLines(t, clamscan, sigs, []string{"--allmatch"}, files))
	vl := slices.Compact(vigilLines(t, sigs, Options{Limits: unpack.DefaultLimits(), AllMatch: true}, files))
	if !slices.Equal(cl, vl) {
		t.Errorf("clamscan and ScanPaths differ:\n%s", lineDiff(cl, vl))
	}
	names := map[string]bool{}
	for _, l := range cl {
		names[l[strings.IndexByte(l, '\t')+1:]] = true
	}
	t.Logf("%d detections of %d signatures", len(cl), len(names))
	if len(names) < 30 {
		t.Errorf("a weak test: %d signatures detected", len(names))
	}
}
