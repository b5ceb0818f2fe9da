//go:build linux

package scan

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/exefmt"
	"github.com/vigil-fleet/vigil/internal/exefmt/exefmttest"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// This file generates what BenchmarkRealSize needs beyond writeSigs: the
// logical signatures (.ldb) and target-1 body signatures of a database the
// shape of ClamAV's main+daily, and a corpus of archives, executables,
// text and HTML with planted detections of every kind.

// benchScale is VIGIL_BENCH_SCALE (default 1): the fraction of the real
// database's signatures and of the 1 GiB corpus to generate. A small scale
// (0.02: 70,000 hash signatures, about 20 MB of corpus) gives the same
// kinds of signatures, files and planted detections in seconds, for
// developing and checking the comparison.
func benchScale(tb testing.TB) float64 {
	v := os.Getenv("VIGIL_BENCH_SCALE")
	if v == "" {
		return 1
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 || s > 1 {
		tb.Fatalf("VIGIL_BENCH_SCALE=%q: want a number in (0, 1]", v)
	}
	return s
}

// scaled is n·scale, at least 1.
func scaled(n int, scale float64) int { return max(1, int(float64(n)*scale+0.5)) }

// ldbSub is one generated content subsignature and one byte string that
// matches it (modifiers applied), with where it must be planted.
type ldbSub struct {
	text  string // [OFFSET:]HEX[::MODS]
	off   byte   // '*' anywhere, 'a' absolute n, 'e' EOF-n, 'p' EP+n
	n     int
	match []byte
}

// ldbSig is one generated logical signature; need[i] is how many times
// subsignature i is planted to make its logic true.
type ldbSig struct {
	name   string
	target int
	line   string
	subs   []ldbSub
	need   []int
}

// The logical expressions of the generated .ldb lines, as in daily.ldb,
// with the plants that make each true. single: true with one
// subsignature (its subsignatures are long enough not to match by
// chance).
var ldbLogics = []struct {
	logic  string
	need   []int
	single bool
}{
	{"0", []int{1}, true},
	{"0>2", []int{3}, true},
	{"0&1", []int{1, 1}, false},
	{"0|1", []int{0, 1}, true},
	{"0&1&2", []int{1, 1, 1}, false},
	{"(0|1)&2", []int{1, 0, 1}, false},
	{"0&1&2&3", []int{1, 1, 1, 1}, false},
	{"(0|1)&2&3", []int{0, 1, 1, 1}, false},
	{"(0&1)|2", []int{0, 0, 1}, true},
	{"0&1&2&3&4", []int{1, 1, 1, 1, 1}, false},
	{"(0|1|2)&3&4", []int{0, 0, 1, 1, 1}, false},
}

// ldbGen generates logical signatures.
type ldbGen struct{ rng *rand.Rand }

func (g *ldbGen) bytes(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(g.rng.Uint32())
	}
	return p
}

func (g *ldbGen) letters(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + g.rng.IntN(26))
	}
	return p
}

// sub generates one content subsignature: 4–40 fixed bytes (at least 8
// when it alone can make its signature true), in one or two parts joined
// by ??, {n-m}, * or a nibble; an alternative only without modifiers
// (ClamAV refuses some with them). mods is "", "i" (the fixed bytes
// letters, planted in upper case), "w" or "wa" (planted as UTF-16LE).
func (g *ldbGen) sub(strong bool, mods string, off string, offKind byte, n int) ldbSub {
	minLen := 4
	if strong {
		minLen = 8
	}
	total := minLen + g.rng.IntN(41-minLen)
	fixed := func(k int) []byte {
		if mods == "i" {
			return g.letters(k)
		}
		return g.bytes(k)
	}
	type tok struct {
		hex   string
		match []byte
		wide  bool // a byte position (widened by w), not a gap
	}
	var toks []tok
	add := func(k int) {
		f := fixed(k)
		toks = append(toks, tok{hex.EncodeToString(f), f, true})
	}
	if total < 6 || g.rng.IntN(10) < 6 {
		add(total)
	} else {
		first := 3 + g.rng.IntN(total-5)
		add(first)
		switch r := g.rng.IntN(5); {
		case r == 0:
			toks = append(toks, tok{"??", []byte{'Z'}, true})
		case r == 1:
			lo := 1 + g.rng.IntN(8)
			toks = append(toks, tok{fmt.Sprintf("{%d-%d}", lo, lo+g.rng.IntN(24)), bytes.Repeat([]byte{'.'}, lo), false})
		case r == 2:
			toks = append(toks, tok{"*", []byte("........"), false})
		case r == 3 && mods != "i":
			v := g.rng.IntN(16)
			toks = append(toks, tok{fmt.Sprintf("%x?", v), []byte{byte(v<<4 | 5)}, true})
		case mods == "":
			a, b := g.bytes(2), g.bytes(2)
			toks = append(toks, tok{fmt.Sprintf("(%x|%x)", a, b), b, true})
		default:
			toks = append(toks, tok{"??", []byte{'Z'}, true})
		}
		add(total - first)
	}
	var hx strings.Builder
	var match []byte
	for _, t := range toks {
		hx.WriteString(t.hex)
		for _, c := range t.match {
			switch {
			case mods == "i" && c >= 'a' && c <= 'z' && g.rng.IntN(2) == 0:
				c -= 'a' - 'A'
			}
			match = append(match, c)
			if t.wide && strings.Contains(mods, "w") {
				match = append(match, 0)
			}
		}
	}
	text := hx.String()
	if off != "" {
		text = off + ":" + text
	}
	if mods != "" {
		text += "::" + mods
	}
	return ldbSub{text: text, off: offKind, n: n, match: match}
}

// line generates logical signature i, its target type drawn as in
// daily.ldb (many Win.* of target 1, Html.* of target 3, Txt.* of 7).
func (g *ldbGen) line(i int) ldbSig {
	var target int
	var prefix string
	switch r := g.rng.IntN(20); {
	case r < 6:
		target, prefix = 0, "Multios.Ldb.Generic"
	case r < 15:
		target, prefix = 1, "Win.Ldb.Trojan"
	case r < 18:
		target, prefix = 3, "Html.Ldb.Exploit"
	default:
		target, prefix = 7, "Txt.Ldb.Downloader"
	}
	engine := []string{"51-255", "51-255", "81-255", "90-255", "150-255", "200-255"}[g.rng.IntN(6)]
	l := ldbLogics[g.rng.IntN(len(ldbLogics))]
	s := ldbSig{name: fmt.Sprintf("%s-%07d-0", prefix, i), target: target, need: l.need}
	for j := range l.need {
		mods := ""
		switch r := g.rng.IntN(20); {
		case target == 3 || target == 7:
			mods = "i"
		case r < 3:
			mods = "i"
		case r < 5:
			mods = "wa"
		case r < 6:
			mods = "w"
		}
		// Offsets: mostly anywhere; absolute and EOF-n for target 0
		// (never with a count comparison, which needs several starts),
		// EP+n for target 1.
		off, kind, n := "", byte('*'), 0
		if l.need[j] <= 1 && target < 3 {
			switch r := g.rng.IntN(10); {
			case target == 0 && r < 1:
				n = g.rng.IntN(1024)
				off, kind = strconv.Itoa(n), 'a'
			case r < 2:
				n = 300 + g.rng.IntN(400)
				off, kind = "EOF-"+strconv.Itoa(n), 'e'
			case target == 1 && r < 5:
				n = g.rng.IntN(256)
				off, kind = "EP+"+strconv.Itoa(n), 'p'
			}
		}
		s.subs = append(s.subs, g.sub(l.single, mods, off, kind, n))
	}
	attrs := fmt.Sprintf("Engine:%s,Target:%d", engine, target)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s;%s;%s", s.name, attrs, l.logic)
	for _, sub := range s.subs {
		sb.WriteString(";" + sub.text)
	}
	s.line = sb.String()
	return s
}

// writeLogical writes n logical signatures to dir/gen.ldb (seeded) and
// returns those of targets 0 and 1, which the corpus plants.
func writeLogical(tb testing.TB, dir string, seed uint64, n int) []ldbSig {
	g := &ldbGen{rng: rand.New(rand.NewPCG(seed, 77))}
	f, err := os.Create(filepath.Join(dir, "gen.ldb"))
	must(err)
	w := bufio.NewWriter(f)
	var plantable []ldbSig
	for i := range n {
		s := g.line(i)
		w.WriteString(s.line)
		w.WriteByte('\n')
		if s.target <= 1 {
			plantable = append(plantable, s)
		}
	}
	must(w.Flush())
	must(f.Close())
	return plantable
}

// writeBodyPE writes n body signatures of target 1 (PE) to
// dir/gen-pe.ndb, as main.ndb's Win.* lines: most anywhere, a third at
// EP+n; the forms of bodyLine.
func writeBodyPE(tb testing.TB, dir string, seed uint64, n int) []string {
	g := newSigGen(seed)
	lines := make([]string, 0, n)
	var sb strings.Builder
	for i := range n {
		line := g.bodyLine(i)
		hexs := line[strings.LastIndexByte(line, ':')+1:]
		off := "*"
		if i%3 == 0 {
			off = "EP+" + strconv.Itoa(g.rng.IntN(256))
		}
		l := fmt.Sprintf("Win.Trojan.Body-%07d-0:1:%s:%s", i, off, hexs)
		lines = append(lines, l)
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	must(os.WriteFile(filepath.Join(dir, "gen-pe.ndb"), []byte(sb.String()), 0o644))
	return lines
}

// exe is a real executable built by the go tool, and the file offset of
// its entry point (PE only).
type exe struct {
	data []byte
	ep   int
	pe   bool
}

// goExecutables builds two small Go programs (one with net/http, larger)
// for windows/amd64 (PE32+) and linux/amd64 (ELF).
func goExecutables(tb testing.TB) []exe {
	goTool := testenv.NeedTool(tb, "go", "golang-go")
	dir := tb.TempDir()
	progs := map[string]string{
		"small": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"vigil bench\") }\n",
		"large": "package main\n\nimport (\n\t\"encoding/json\"\n\t\"net/http\"\n\t\"os\"\n)\n\n" +
			"func main() {\n\tif len(os.Args) > 9 {\n\t\thttp.ListenAndServe(\"127.0.0.1:0\", nil)\n\t}\n\tjson.NewEncoder(os.Stdout).Encode(os.Args)\n}\n",
	}
	var out []exe
	for _, name := range []string{"small", "large"} {
		d := filepath.Join(dir, name)
		must(os.MkdirAll(d, 0o755))
		for _, goos := range []string{"windows", "linux"} {
			data, err := exefmttest.GoBuild(goTool, d, progs[name], goos, "amd64")
			if err != nil {
				tb.Fatal(err)
			}
			e := exe{data: data}
			if goos == "windows" {
				// The entry point's file offset as ClamAV (and the
				// engine) compute it.
				in, err := exefmt.Parse(bytes.NewReader(data), int64(len(data)), exefmt.PE)
				if err != nil {
					tb.Fatal(err)
				}
				e.pe, e.ep = true, int(in.EP)
			}
			out = append(out, e)
		}
	}
	return out
}

// mixedCorpus writes the scan corpus and the signatures of its planted
// detections; want collects the expected "path: name" pairs.
type mixedCorpus struct {
	tb       testing.TB
	rng      *rand.Rand
	g        *sigGen
	scale    float64
	files    string
	nfile    int
	exes     []exe
	elfs     [][]byte // real ELF files of this machine
	ndb0     []string // body signature lines of target 0
	ndb1     []string // of target 1
	ldb      []ldbSig // logical signatures of targets 0 and 1
	pPlant   float64
	hdb, hsb strings.Builder
	nhash    int
	pending  []string // names planted in the leaves of the object being built
	want     []string
	planted  map[string]int // kind -> count
}

// leaf is one file's content: a file of its own or an archive member.
type leaf struct {
	data []byte
	ext  string
	ep   int  // entry point's file offset, for a PE
	pe   bool // a PE (target 1 signatures may be planted)
	exe  bool // an executable: an overlay is appended, plants go there or at EP
	ov   int  // where the overlay starts
}

func (c *mixedCorpus) text(n int) []byte {
	var sb bytes.Buffer
	for sb.Len() < n {
		sb.WriteString(words[c.rng.IntN(len(words))])
		if c.rng.IntN(12) == 0 {
			sb.WriteString(".\n")
		} else {
			sb.WriteByte(' ')
		}
	}
	return sb.Bytes()[:n]
}

func (c *mixedCorpus) html(n int) []byte {
	var sb bytes.Buffer
	sb.WriteString("<!DOCTYPE html>\n<html><head><title>" + string(c.text(40)) + "</title>\n")
	fmt.Fprintf(&sb, "<script type=\"text/javascript\">var s = \"%s\"; document.title = s;</script>\n</head><body>\n", c.text(60))
	for sb.Len() < n {
		fmt.Fprintf(&sb, "<p class=\"x%d\">%s</p>\n<!-- %s -->\n", c.rng.IntN(9), c.text(200+c.rng.IntN(400)), c.text(30))
	}
	sb.WriteString("</body></html>\n")
	return sb.Bytes()
}

// newLeaf makes one leaf of kind: "txt", "html", "bin" (random bytes),
// "exe" (a PE), "elf" (Go's or one of this machine's), sized around n.
func (c *mixedCorpus) newLeaf(kind string, n int) leaf {
	switch kind {
	case "txt":
		return leaf{data: c.text(n), ext: ".txt"}
	case "html":
		return leaf{data: c.html(n), ext: ".html"}
	case "bin":
		return leaf{data: c.g.random(n), ext: ".bin"}
	}
	var base []byte
	l := leaf{exe: true}
	if kind == "exe" {
		e := c.exes[c.goBuild()]
		base, l.ep, l.pe, l.ext = e.data, e.ep, true, ".exe"
	} else if len(c.elfs) > 0 && c.rng.IntN(2) == 0 {
		base, l.ext = c.elfs[c.rng.IntN(len(c.elfs))], ".so"
	} else {
		base, l.ext = c.exes[c.goBuild()+1].data, ""
	}
	// An overlay of 16–64 KiB makes each copy distinct and holds the
	// plants that need no structure.
	l.ov = len(base)
	l.data = append(slices.Clip(base), c.g.random(16<<10+c.rng.IntN(48<<10))...)
	return l
}

// goBuild picks a Go build for windows (the one for linux follows it):
// the small program's three times in four.
func (c *mixedCorpus) goBuild() int {
	if c.rng.IntN(4) == 0 {
		return 2
	}
	return 0
}

// plant may plant one detection in l (a hash, a body signature of target
// 0 or, in a PE, 1, or a logical signature), recording the name in
// c.pending.
func (c *mixedCorpus) plant(l *leaf) {
	// Not in HTML: ClamAV does not match an HTML file's raw bytes.
	p := c.pPlant
	if l.pe {
		p *= 3 // PEs are few, and take five kinds of plants
	}
	if len(l.data) < 8192 || l.ext == ".html" || c.rng.Float64() >= p {
		return
	}
	kinds := []string{"hash", "ndb0", "ldb0"}
	if l.pe {
		kinds = append(kinds, "ndb1", "ldb1", "ndb1", "ldb1")
	}
	kind := kinds[c.rng.IntN(len(kinds))]
	// The region plants "anywhere" go to: the overlay of an executable,
	// else away from the absolute and EOF-n offsets.
	lo, hi := 1536, len(l.data)-1024
	if l.exe {
		lo = l.ov
	}
	anywhere := func(ms [][]byte) {
		slot := (hi - lo) / len(ms)
		for i, m := range ms {
			copy(l.data[lo+i*slot+c.rng.IntN(slot-len(m)):], m)
		}
	}
	var name string
	switch kind {
	case "hash":
		name = fmt.Sprintf("Gen.Planted.Hash-%05d-0", c.nhash)
		c.nhash++
		if c.nhash%4 == 0 {
			fmt.Fprintf(&c.hsb, "%x:%d:%s\n", sha256.Sum256(l.data), len(l.data), name)
		} else {
			fmt.Fprintf(&c.hdb, "%x:%d:%s\n", md5.Sum(l.data), len(l.data), name)
		}
	case "ndb0":
		line := c.ndb0[c.rng.IntN(len(c.ndb0))]
		name = line[:strings.IndexByte(line, ':')]
		anywhere([][]byte{plantFor(c.tb, line)})
	case "ndb1":
		line := c.ndb1[c.rng.IntN(len(c.ndb1))]
		name = line[:strings.IndexByte(line, ':')]
		m := plantFor(c.tb, line)
		if off := strings.Split(line, ":")[2]; strings.HasPrefix(off, "EP+") {
			n, _ := strconv.Atoi(off[3:])
			copy(l.data[l.ep+n:], m)
		} else {
			anywhere([][]byte{m})
		}
	default:
		target := int(kind[3] - '0')
		var s ldbSig
		for try := 0; s.name == "" || s.target != target || !c.fits(s, l); try++ {
			if try == 10000 {
				return
			}
			s = c.ldb[c.rng.IntN(len(c.ldb))]
		}
		name = s.name
		var ms [][]byte
		for i, sub := range s.subs {
			for range s.need[i] {
				switch sub.off {
				case '*':
					ms = append(ms, sub.match)
				case 'a':
					copy(l.data[sub.n:], sub.match)
				case 'e':
					copy(l.data[len(l.data)-sub.n:], sub.match)
				case 'p':
					copy(l.data[l.ep+sub.n:], sub.match)
				}
			}
		}
		if len(ms) > 0 {
			anywhere(ms)
		}
	}
	c.planted[kind]++
	c.pending = append(c.pending, name)
}

// fits reports whether s's plants at fixed places fit l: absolute offsets
// only in files without structure there, no two overlapping.
func (c *mixedCorpus) fits(s ldbSig, l *leaf) bool {
	var at [][2]int
	for i, sub := range s.subs {
		var p int
		switch {
		case s.need[i] == 0 || sub.off == '*':
			continue
		case sub.off == 'a' && !l.exe:
			p = sub.n
		case sub.off == 'e':
			p = len(l.data) - sub.n
		case sub.off == 'p' && l.pe:
			p = l.ep + sub.n
		default:
			return false
		}
		for _, o := range at {
			if p < o[1] && o[0] < p+len(sub.match) {
				return false
			}
		}
		at = append(at, [2]int{p, p + len(sub.match)})
	}
	return true
}

// write writes a top-level file and expects the names planted in it.
func (c *mixedCorpus) write(ext string, data []byte) {
	d := filepath.Join(c.files, fmt.Sprintf("d%02d", c.nfile%40))
	must(os.MkdirAll(d, 0o755))
	p := filepath.Join(d, fmt.Sprintf("f%05d%s", c.nfile, ext))
	c.nfile++
	must(os.WriteFile(p, data, 0o644))
	for _, name := range c.pending {
		c.want = append(c.want, p+": "+name)
	}
	c.pending = c.pending[:0]
}

// member makes one archive member of a random kind, planted.
func (c *mixedCorpus) member() leaf {
	var l leaf
	switch r := c.rng.IntN(10); {
	case r < 5:
		l = c.newLeaf("txt", 1<<10+c.rng.IntN(96<<10))
	case r < 6:
		l = c.newLeaf("html", 1<<10+c.rng.IntN(32<<10))
	case r < 7:
		l = c.newLeaf("bin", 4<<10+c.rng.IntN(256<<10))
	case r < 8:
		l = c.newLeaf("exe", 0)
	case r < 9:
		l = c.newLeaf("elf", 0)
	default:
		l = c.newLeaf("txt", 1<<10+c.rng.IntN(32<<10))
	}
	c.plant(&l)
	return l
}

func (c *mixedCorpus) members(lo, hi int) []leaf {
	n := lo + c.rng.IntN(hi-lo+1)
	ls := make([]leaf, n)
	for i := range ls {
		ls[i] = c.member()
	}
	return ls
}

func (c *mixedCorpus) zipOf(method uint16, ls []leaf) []byte {
	var ents []unpacktest.ZipEntry
	for i, l := range ls {
		ents = append(ents, unpacktest.ZipEntry{Name: fmt.Sprintf("dir/m%02d%s", i, l.ext), Data: l.data, Method: method})
	}
	return unpacktest.Zip(c.tb, ents...)
}

func (c *mixedCorpus) tarOf(ls []leaf) []byte {
	var ents []unpacktest.TarEntry
	for i, l := range ls {
		ents = append(ents, unpacktest.TarEntry{Name: fmt.Sprintf("pkg/m%02d%s", i, l.ext), Data: l.data})
	}
	return unpacktest.Tar(c.tb, tar.FormatPAX, ents...)
}

// genMixedCorpus writes the scan corpus (about 1 GiB at scale 1) into
// files and planted.hdb and planted.hsb into sigDir, and returns the
// expected "path: name" pairs, sorted:
//
//   - 1,500 text files (1–64 KiB) and 200 HTML pages (1–48 KiB);
//   - 200 files of random bytes (4 KiB–1 MiB);
//   - 60 PE and 60 ELF executables: two Go programs (1.7 and 6 MB, the
//     small one three times in four) built for windows and linux, and
//     this machine's own ELF files (/usr/bin, /usr/lib), each with an
//     overlay of 16–64 KiB;
//   - archives of 3–10 members (60 % text, 10 % each HTML, random, PE,
//     ELF): 100 zip stored, 40 zip deflated, 50 tar, 25 tar.gz, 15 zips
//     holding zips (stored and deflated, some three deep, some with a
//     tar.gz inside), and 2 large ones (a tar and a stored zip of 80–100
//     members).
//
// Each file or member of 8 KiB and more, but HTML, holds with probability
// pPlant (8 %, three times that for a PE; 50 % below scale 0.5, so that a
// small corpus has each kind) one planted detection: its own MD5 or
// SHA-256 as a hash signature, a match of a target-0 body signature, or
// of a logical signature of target 0; in a PE also of target-1 body and
// logical signatures (at EP+n where their offset says so).
func genMixedCorpus(tb testing.TB, sigDir, files string, scale float64, ndb0, ndb1 []string, ldb []ldbSig) []string {
	c := &mixedCorpus{tb: tb, rng: rand.New(rand.NewPCG(31, 32)), g: newSigGen(33), scale: scale, files: files,
		ndb0: ndb0, ndb1: ndb1, ldb: ldb, pPlant: 0.08, planted: map[string]int{}}
	if scale < 0.5 {
		c.pPlant = 0.5
	}
	must(os.MkdirAll(files, 0o755))
	c.exes = goExecutables(tb)
	for _, d := range []string{"/usr/bin", "/usr/lib/x86_64-linux-gnu"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if len(c.elfs) >= 40 || !e.Type().IsRegular() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err == nil && len(data) > 64<<10 && len(data) < 8<<20 && bytes.HasPrefix(data, []byte("\x7fELF")) {
				c.elfs = append(c.elfs, data)
			}
		}
	}
	n := func(k int) int { return scaled(k, scale) }
	single := func(kind string, count, lo, hi int) {
		for range n(count) {
			l := c.newLeaf(kind, lo+c.rng.IntN(hi-lo))
			c.plant(&l)
			c.write(l.ext, l.data)
		}
	}
	single("txt", 1500, 1<<10, 64<<10)
	single("html", 200, 1<<10, 48<<10)
	single("bin", 200, 4<<10, 1<<20)
	single("exe", 60, 0, 1)
	single("elf", 60, 0, 1)
	for range n(100) {
		c.write(".zip", c.zipOf(zip.Store, c.members(3, 10)))
	}
	for range n(40) {
		c.write(".zip", c.zipOf(zip.Deflate, c.members(3, 10)))
	}
	for range n(50) {
		c.write(".tar", c.tarOf(c.members(3, 10)))
	}
	for range n(25) {
		c.write(".tar.gz", unpacktest.Gzip(c.tarOf(c.members(3, 10))))
	}
	for i := range n(15) {
		// A zip of zips: 1–3 inner zips (every other one deflated) with
		// members, a member of its own, and in some a third level or a
		// tar.gz.
		var ents []unpacktest.ZipEntry
		for j := range 1 + c.rng.IntN(3) {
			inner := c.members(2, 5)
			if i%3 == 0 {
				l := leaf{data: c.zipOf(zip.Deflate, c.members(1, 3)), ext: ".zip"}
				inner = append(inner, l)
			}
			if i%4 == 1 {
				inner = append(inner, leaf{data: unpacktest.Gzip(c.tarOf(c.members(1, 3))), ext: ".tar.gz"})
			}
			ents = append(ents, unpacktest.ZipEntry{Name: fmt.Sprintf("inner%d.zip", j), Data: c.zipOf(uint16(j%2)*zip.Deflate, inner)})
		}
		l := c.member()
		ents = append(ents, unpacktest.ZipEntry{Name: "readme" + l.ext, Data: l.data, Method: zip.Deflate})
		c.write(".zip", unpacktest.Zip(tb, ents...))
	}
	for i := range n(2) {
		ls := c.members(80, 100)
		if i == 0 {
			c.write(".tar", c.tarOf(ls))
		} else {
			c.write(".zip", c.zipOf(zip.Store, ls))
		}
	}
	// ClamAV refuses an empty signature file.
	for name, sb := range map[string]*strings.Builder{"planted.hdb": &c.hdb, "planted.hsb": &c.hsb} {
		if sb.Len() > 0 {
			must(os.WriteFile(filepath.Join(sigDir, name), []byte(sb.String()), 0o644))
		}
	}
	tb.Logf("corpus: %d files; planted: %v", c.nfile, c.planted)
	slices.Sort(c.want)
	return slices.Compact(c.want)
}
