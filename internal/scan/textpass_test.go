package scan

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/textnorm"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// textCorpus is a generated set of text, UTF-16, HTML, mail and zipped
// files with signatures of target types 0, 3 (HTML), 4 (mail) and 7
// (ASCII text) written in their normalized forms (and raw controls), for
// comparing detections with clamscan.
type textCorpus struct {
	rng   *rand.Rand
	dir   string
	ndb   strings.Builder
	hdb   strings.Builder
	fp    strings.Builder
	nsig  int
	paths []string
	// planted: "file\tsignature" pairs that only a normalized buffer
	// holds, or only a buffer of the signature's target type (not 0),
	// which the comparison must find detected (so that it cannot pass by
	// both sides detecting nothing).
	planted []string
	// absent: pairs of a signature whose bytes the file holds in a buffer
	// of a target type other than the signature's, which neither side
	// may detect.
	absent []string
}

func (c *textCorpus) token() string {
	const letters = "bcdfghjkmnpqrstvwxz"
	b := make([]byte, 10)
	for i := range b {
		b[i] = letters[c.rng.IntN(len(letters))]
	}
	return string(b)
}

// sig adds a target-0 body signature for the bytes s and returns its name.
func (c *textCorpus) sig(kind string, s []byte) string { return c.sigAt(kind, "*", s) }

// sigAt adds a target-0 body signature for the bytes s at offset off.
func (c *textCorpus) sigAt(kind, off string, s []byte) string {
	return c.sigTarget(kind, 0, off, s)
}

// sigTarget adds a body signature of target type target for the bytes s
// at offset off.
func (c *textCorpus) sigTarget(kind string, target int, off string, s []byte) string {
	c.nsig++
	name := fmt.Sprintf("Vigil.Text.%s.%d", kind, c.nsig)
	fmt.Fprintf(&c.ndb, "%s:%d:%s:%s\n", name, target, off, hex.EncodeToString(s))
	return name
}

func (c *textCorpus) write(name string, data []byte) string {
	p := filepath.Join(c.dir, "files", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		panic(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		panic(err)
	}
	c.paths = append(c.paths, p)
	return p
}

// mixCase upper-cases about half the letters of s.
func (c *textCorpus) mixCase(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] >= 'a' && b[i] <= 'z' && c.rng.IntN(2) == 0 {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// space is a random run of ClamAV's whitespace.
func (c *textCorpus) space() string {
	const ws = " \t\n\r\v\f"
	n := 1 + c.rng.IntN(4)
	b := make([]byte, n)
	for i := range b {
		b[i] = ws[c.rng.IntN(len(ws))]
	}
	return string(b)
}

func utf16Bytes(s string, bigEndian bool) []byte {
	var out []byte
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			out = append(out, byte(u>>8), byte(u))
		} else {
			out = append(out, byte(u), byte(u>>8))
		}
	}
	return out
}

// textFile writes a text file of words in mixed case and whitespace
// runs, with signatures: a piece of its normalization (planted: in no raw
// byte), a piece of its raw bytes, and a raw piece upper-cased where the
// file is not (matched by nothing).
func (c *textCorpus) textFile(name string, encode func(string) []byte) {
	words := []string{c.token(), c.token(), c.token(), c.token()}
	var raw strings.Builder
	raw.WriteString("Report" + c.space())
	for _, w := range words {
		raw.WriteString(c.mixCase(w) + c.space())
	}
	raw.WriteString(strings.ToUpper(words[1]) + "\tTAIL\n")
	text := raw.String()
	data := encode(text)
	p := c.write(name, data)
	norm := textnorm.NormalizeScript(data)
	lw := strings.ToLower(words[1] + " " + words[2])
	// Target 7 (ASCII text) and 3 (HTML): the script normalization of
	// text takes target 7, not 3; the raw bytes neither.
	if filetype.IsText(filetype.Detect(data)) && bytes.Contains(norm, []byte(lw)) && !bytes.Contains(data, []byte(lw)) {
		c.planted = append(c.planted, p+"\t"+c.sig("Norm", []byte(lw)))
		c.planted = append(c.planted, p+"\t"+c.sigTarget("NormT7", 7, "*", []byte(lw)))
		c.absent = append(c.absent, p+"\t"+c.sigTarget("NormT3", 3, "*", []byte(lw)))
	} else {
		c.sig("Norm", []byte(lw))
		c.sigTarget("NormT7", 7, "*", []byte(lw))
		c.sigTarget("NormT3", 3, "*", []byte(lw))
	}
	rawOnly := []byte(strings.ToUpper(words[1]) + "\tTAIL")
	if bytes.Contains(data, rawOnly) {
		c.absent = append(c.absent, p+"\t"+c.sigTarget("RawT7", 7, "*", rawOnly))
	} else {
		c.sigTarget("RawT7", 7, "*", rawOnly)
	}
	c.sigTarget("RawT7Any", 7, "*", data[len(data)/3:len(data)/3+8])
	c.sigTarget("NormT7Abs", 7, "0", []byte("report "))
	c.sig("Raw", data[len(data)/3:len(data)/3+8])
	c.sig("Upper", []byte(strings.ToUpper(words[0])+"Q"))
	// Offsets from the end: counted in the raw file; in the script
	// normalization ClamAV computes none for generic signatures.
	c.sigAt("RawEOF", "EOF-6", []byte("\tTAIL\n"))
	c.sigAt("NormEOF", "EOF-200,200", []byte(" tail "))
	c.sigAt("NormAbs", "0", []byte("report "))
}

// htmlFile writes an HTML page with tags, a comment, entities and a
// script, and signatures on each of ClamAV's HTML buffers and raw
// controls.
func (c *textCorpus) htmlFile(name string, prefix string, encode func(string) []byte) {
	tb, tc, te, ts, tv := c.token(), c.token(), c.token(), c.token(), c.token()
	page := prefix + "<HTML><Head><TITLE>Page</TITLE></Head>\n<BODY bgcolor='white'>\n" +
		"<!-- Comment " + strings.ToUpper(tc) + " -->\n" +
		"<P>Some &amp; <B>Bold\t" + strings.ToUpper(tb) + "</B> &lt;" + te + "&gt; &#x41;&#66;</P>\n" +
		"<script type=\"text/javascript\">\nvar " + tv + " = \"" + strings.ToUpper(ts) + "\";\ndocument.write(" + tv + ");\n</script>\n" +
		"</BODY></HTML>\n"
	p := c.write(name, encode(page))
	// In nocomment.html, an offset from its end.
	c.sigAt("HTMLEOF", "EOF-40,40", []byte("</body></html>"))
	// Raw controls: never matched in an HTML file.
	c.sig("HTMLRaw", []byte("<B>Bold\t"+strings.ToUpper(tb)))
	c.sig("HTMLComment", []byte(strings.ToUpper(tc)))
	// nocomment.html: tags lower-cased, whitespace one space.
	c.planted = append(c.planted, p+"\t"+c.sig("HTMLNoComment", []byte("<b>bold "+tb+"</b>")))
	// Target 3 (HTML) on each HTML buffer; target 7 (ASCII text) only on
	// the script's; neither on the raw bytes.
	c.planted = append(c.planted, p+"\t"+c.sigTarget("HTMLNoCommentT3", 3, "*", []byte("<b>bold "+tb+"</b>")))
	c.absent = append(c.absent, p+"\t"+c.sigTarget("HTMLNoCommentT7", 7, "*", []byte("<b>bold "+tb+"</b>")))
	c.planted = append(c.planted, p+"\t"+c.sigTarget("HTMLNoTagsT3", 3, "*", []byte("some bold "+tb)))
	c.absent = append(c.absent, p+"\t"+c.sigTarget("HTMLNoTagsT7", 7, "*", []byte("some bold "+tb)))
	c.sigTarget("HTMLScriptStringT3", 3, "*", []byte(`"`+ts+`"`))
	c.sigTarget("HTMLScriptStringT7", 7, "*", []byte(`"`+ts+`"`))
	c.sigTarget("HTMLScriptRenamedT7", 7, "*", []byte("var n000"))
	c.sigTarget("HTMLRawT3", 3, "*", []byte("<B>Bold\t"+strings.ToUpper(tb)))
	c.sigTarget("HTMLEOFT3", 3, "EOF-40,40", []byte("</body></html>"))
	c.sig("HTMLCommentNorm", []byte("comment "+tc))
	// notags.html: the text between tags, "&", "<" and ">" dropped.
	c.planted = append(c.planted, p+"\t"+c.sig("HTMLNoTags", []byte("some bold "+tb)))
	c.sig("HTMLEntity", []byte("<"+te+">"))
	c.sig("HTMLCharRef", []byte("&gt; ab</p>"))
	// The script, through the JavaScript normalizer: the string
	// lower-cased, the variable renamed.
	c.sig("HTMLScriptString", []byte(`"`+ts+`"`))
	c.sig("HTMLScriptVar", []byte("var "+tv))
	c.sig("HTMLScriptRenamed", []byte("var n000"))
	// The digest of the page itself (ClamAV does not match it: no raw
	// scan) and of its nocomment.html (matched: scanned as a file).
	sum := md5.Sum(encode(page))
	fmt.Fprintf(&c.hdb, "%x:%d:Vigil.Text.HTMLHash.%s\n", sum, len(encode(page)), name)
	var nc bytes.Buffer
	if err := textnorm.NormalizeHTML(strings.NewReader(page), textnorm.HTMLOutputs{NoComment: &nc}); err != nil {
		panic(err)
	}
	sum = md5.Sum(nc.Bytes())
	fmt.Fprintf(&c.hdb, "%x:%d:Vigil.Text.NoCommentHash.%s\n", sum, nc.Len(), name)
}

// largeFiles writes an HTML page over MaxHTMLNoTags (no notags.html)
// and a text file over MaxScriptNormalize (raw only), each with a word in
// capitals at its end and the signatures of its normalized forms.
func (c *textCorpus) largeFiles() {
	th, tt := c.token(), c.token()
	var h bytes.Buffer
	h.WriteString("<html><body>\n")
	for h.Len() < textnorm.MaxHTMLNoTags+1<<20 {
		h.WriteString("<p>Some words in a paragraph, and more words.</p>\n")
	}
	h.WriteString("<P>Last <B>" + strings.ToUpper(th) + "</B></P></body></html>\n")
	hp := c.write("large.html", h.Bytes())
	c.planted = append(c.planted, hp+"\t"+c.sig("LargeNoComment", []byte("<b>"+th+"</b>")))
	c.sig("LargeNoTags", []byte("last "+th+" "))
	var t bytes.Buffer
	for t.Len() < textnorm.MaxScriptNormalize+1<<20 {
		t.WriteString("Some words in a line, and more words.\n")
	}
	t.WriteString("Last\t" + strings.ToUpper(tt) + "\n")
	tp := c.write("large.txt", t.Bytes())
	c.sig("LargeText", []byte("last "+tt))
	c.planted = append(c.planted, tp+"\t"+c.sig("LargeTextRaw", []byte("Last\t"+strings.ToUpper(tt))))
}

// allowedPages writes pages like htmlFile's, one on the allow list by
// its own digest, one by its nocomment.html's: neither is detected (ClamAV
// checks the normalized file, a layer of its own, against the allow list
// too), while a third, not listed, is.
func (c *textCorpus) allowedPages() {
	tb := c.token()
	page := func(n int) []byte {
		return []byte(fmt.Sprintf("<HTML><BODY><B>Bold  %s</B> page %d</BODY></HTML>\n", strings.ToUpper(tb), n))
	}
	c.sig("AllowNorm", []byte("<b>bold "+tb+"</b>"))
	for n := range 3 {
		c.write(fmt.Sprintf("allow%d.html", n), page(n))
	}
	p0 := page(0)
	fmt.Fprintf(&c.fp, "%x:%d:Allow.Page\n", md5.Sum(p0), len(p0))
	var nc bytes.Buffer
	if err := textnorm.NormalizeHTML(bytes.NewReader(page(1)), textnorm.HTMLOutputs{NoComment: &nc}); err != nil {
		panic(err)
	}
	fmt.Fprintf(&c.fp, "%x:%d:Allow.NoComment\n", md5.Sum(nc.Bytes()), nc.Len())
	c.planted = append(c.planted, c.paths[len(c.paths)-1]+"\tVigil.Text.AllowNorm."+fmt.Sprint(c.nsig))
}

func newTextCorpus(t testing.TB, seed uint64) *textCorpus {
	c := &textCorpus{rng: rand.New(rand.NewPCG(seed, 11)), dir: t.TempDir()}
	plain := func(s string) []byte { return []byte(s) }
	for i := range 6 {
		c.textFile(fmt.Sprintf("plain%d.txt", i), plain)
	}
	c.textFile("utf16le-bom.txt", func(s string) []byte { return append([]byte{0xff, 0xfe}, utf16Bytes(s, false)...) })
	c.textFile("utf16be-bom.txt", func(s string) []byte { return append([]byte{0xfe, 0xff}, utf16Bytes(s, true)...) })
	c.textFile("utf16le.txt", func(s string) []byte { return utf16Bytes(s, false) })
	c.textFile("utf16be.txt", func(s string) []byte { return utf16Bytes(s, true) })
	c.textFile("latin1.txt", func(s string) []byte { return []byte("caf\xe9 " + s + " \xe0 la") })
	// Random data ClamAV takes for UTF-16BE text: high bytes, with
	// capital words (one byte of each pair) sprinkled in.
	for i := range 3 {
		tok := c.token()
		var b []byte
		for j := 0; j < 600; j++ {
			b = append(b, byte(0x80+c.rng.IntN(0x80)), byte(0x80+c.rng.IntN(0x80)))
		}
		at := 200 + 2*c.rng.IntN(100)
		for k, ch := range []byte(strings.ToUpper(tok)) {
			b[at+2*k+1] = ch
		}
		name := fmt.Sprintf("random%d.bin", i)
		p := c.write(name, b)
		s := c.sig("Random", []byte(tok))
		if filetype.Detect(b) == filetype.TextUTF16BE {
			c.planted = append(c.planted, p+"\t"+s)
		}
	}
	// Binary data is not normalized.
	tok := c.token()
	bin := append([]byte{0, 0, 0, 1, 0, 2}, []byte(strings.ToUpper(tok)+"\x00\x00")...)
	if ft := filetype.Detect(bin); ft != filetype.BinaryData {
		t.Fatalf("binary.bin typed %v", ft)
	}
	c.write("binary.bin", bin)
	c.sig("Binary", []byte(tok))
	c.htmlFile("page.html", "", plain)
	// A text file in which an HTML tag comes late: scanned as HTML.
	c.htmlFile("late.txt", strings.Repeat("Plain words, nothing more.\n", 300), plain)
	// UTF-16LE HTML (HTML_UTF16: raw, then the decoded page's buffers).
	c.htmlFile("page16.htm", "", func(s string) []byte { return utf16Bytes(s, false) })
	c.allowedPages()
	if seed == 1 {
		c.largeFiles()
	}
	// Over 128 KiB of text: ClamAV flushes its normalization buffer, and a
	// whitespace run across a flush gives two spaces.
	var long strings.Builder
	for long.Len() < 300<<10 {
		long.WriteString(c.mixCase(c.token()) + c.space())
	}
	tl := c.token()
	long.WriteString("Last\t\t" + strings.ToUpper(tl) + "\n")
	lp := c.write("long.txt", []byte(long.String()))
	c.planted = append(c.planted, lp+"\t"+c.sig("Long", []byte("last "+tl)))
	// Mail: its raw bytes take target 4 (mail), not 7 (ASCII text).
	tm := c.token()
	mail := "From: a@example.com\nTo: b@example.com\nSubject: Report " + strings.ToUpper(tm) + "\n\nHello.\n"
	mp := c.write("message.eml", []byte(mail))
	c.planted = append(c.planted, mp+"\t"+c.sigTarget("MailT4", 4, "*", []byte("Subject: Report "+strings.ToUpper(tm))))
	c.absent = append(c.absent, mp+"\t"+c.sigTarget("MailT7", 7, "*", []byte("Subject: Report "+strings.ToUpper(tm))))
	c.absent = append(c.absent, mp+"\t"+c.sigTarget("MailT3", 3, "*", []byte("Subject: Report "+strings.ToUpper(tm))))
	// Text and HTML inside a zip.
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	tz := c.token()
	w, _ := zw.Create("inner/Note.TXT")
	w.Write([]byte("Dear user,\r\n\tThe   KEY is " + strings.ToUpper(tz) + "\r\nBye\r\n"))
	tzh := c.token()
	w, _ = zw.Create("inner/page.htm")
	w.Write([]byte("<html><body><p>Zipped <I>" + strings.ToUpper(tzh) + "</I></p></body></html>"))
	zw.Close()
	zp := c.write("texts.zip", z.Bytes())
	c.planted = append(c.planted, zp+"\t"+c.sig("ZipText", []byte("key is "+tz)))
	c.planted = append(c.planted, zp+"\t"+c.sig("ZipHTML", []byte("zipped "+tzh)))
	c.sig("ZipHTMLRaw", []byte("Zipped <I>"+strings.ToUpper(tzh)))
	sigDir := filepath.Join(c.dir, "sigs")
	if err := os.MkdirAll(sigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*strings.Builder{"text.ndb": &c.ndb, "text.hdb": &c.hdb, "text.fp": &c.fp} {
		if err := os.WriteFile(filepath.Join(sigDir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// textPairs scans with Vigil, with or without AllMatch, and returns
// "path\tname" pairs.
func textPairs(t testing.TB, sigDir string, allMatch bool, paths ...string) []string {
	t.Helper()
	set, err := signatures.Load(sigDir)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{AllMatch: allMatch, Limits: unpack.DefaultLimits(), NoHeuristicAlerts: true}
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

// clamscanTextPairs runs clamscan with its default limits.
func clamscanTextPairs(t testing.TB, clamscan, sigDir string, allMatch bool, paths ...string) []string {
	t.Helper()
	args := []string{"--no-summary", "--heuristic-alerts=no", "-d", sigDir}
	if allMatch {
		args = append(args, "-z")
	}
	return slices.Compact(runClamscan(t, clamscan, args, paths...))
}

func diffPairs(a, b []string) (onlyA, onlyB []string) {
	for _, x := range a {
		if !slices.Contains(b, x) {
			onlyA = append(onlyA, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			onlyB = append(onlyB, x)
		}
	}
	return
}

// TestNormalizedTextSameAsClamAV scans the generated text corpus with
// Vigil and clamscan, with and without --allmatch: the same (file,
// signature) pairs, the normalized-only ones among them.
func TestNormalizedTextSameAsClamAV(t *testing.T) {
	t.Parallel()
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	for _, seed := range []uint64{1, 2, 3} {
		c := newTextCorpus(t, seed)
		sigDir := filepath.Join(c.dir, "sigs")
		for _, allMatch := range []bool{true, false} {
			want := clamscanTextPairs(t, clamscan, sigDir, allMatch, c.paths...)
			got := textPairs(t, sigDir, allMatch, c.paths...)
			onlyClam, onlyVigil := diffPairs(want, got)
			if len(onlyClam)+len(onlyVigil) > 0 {
				t.Errorf("seed %d allmatch %v: detected by clamscan only:\n%s\nby Vigil only:\n%s",
					seed, allMatch, strings.Join(onlyClam, "\n"), strings.Join(onlyVigil, "\n"))
			}
			if allMatch {
				for _, p := range c.planted {
					if !slices.Contains(got, p) {
						t.Errorf("seed %d: normalized-only pair %q not detected", seed, p)
					}
				}
				if len(c.planted) < 12 {
					t.Errorf("seed %d: only %d normalized-only pairs planted", seed, len(c.planted))
				}
				for _, p := range c.absent {
					if slices.Contains(got, p) || slices.Contains(want, p) {
						t.Errorf("seed %d: pair %q, of a buffer of another target type, detected", seed, p)
					}
				}
				if len(c.absent) < 6 {
					t.Errorf("seed %d: only %d other-target pairs planted", seed, len(c.absent))
				}
			}
		}
	}
}

// TestNormalizedTextDetections checks the plan's consequences without
// clamscan: normalized forms match text, an HTML page is matched only
// through its normalized buffers (its own digest not at all, its
// nocomment.html's digest yes), binary data is not normalized.
func TestNormalizedTextDetections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	page := "<HTML><BODY><B>Bold  QWERTZ</B></BODY></HTML>\n"
	files := map[string]string{
		"upper.txt": "Hello ZQXJKV world\n",
		"tab.txt":   "xx ALPHA\t\r\n beta yy\n",
		"page.html": page,
		"bin.dat":   "\x00\x00\x00\x01\x00\x02ZQXJKV\x00\x00",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var nc bytes.Buffer
	if err := textnorm.NormalizeHTML(strings.NewReader(page), textnorm.HTMLOutputs{NoComment: &nc}); err != nil {
		t.Fatal(err)
	}
	sigDir := filepath.Join(dir, "sigs")
	if err := os.Mkdir(sigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ndb := fmt.Sprintf("Lower:0:*:%x\nSpace:0:*:%x\nHTMLRaw:0:*:%x\nHTMLNorm:0:*:%x\n",
		"zqxjkv", "alpha beta", "<B>Bold", "<b>bold qwertz</b>")
	hdb := fmt.Sprintf("%x:%d:PageHash\n%x:%d:NoCommentHash\n%x:%d:TextHash\n",
		md5.Sum([]byte(page)), len(page), md5.Sum(nc.Bytes()), nc.Len(),
		md5.Sum([]byte(files["upper.txt"])), len(files["upper.txt"]))
	for name, data := range map[string]string{"t.ndb": ndb, "t.hdb": hdb} {
		if err := os.WriteFile(filepath.Join(sigDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := textPairs(t, sigDir, true, dir+"/upper.txt", dir+"/tab.txt", dir+"/page.html", dir+"/bin.dat")
	want := []string{
		dir + "/page.html\tHTMLNorm",
		dir + "/page.html\tNoCommentHash",
		dir + "/tab.txt\tSpace",
		dir + "/upper.txt\tLower",
		dir + "/upper.txt\tTextHash",
	}
	if !slices.Equal(got, want) {
		t.Errorf("detections:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Without AllMatch: one per file, the raw pass first.
	got = textPairs(t, sigDir, false, dir+"/upper.txt")
	if want := []string{dir + "/upper.txt\tTextHash"}; !slices.Equal(got, want) {
		t.Errorf("without AllMatch: %q, want %q", got, want)
	}
}

// BenchmarkScanTextCorpus scans 16 MiB of generated files through
// ScanPaths with 20,000 body and 1,000 hash signatures: text (raw, then normalized),
// HTML (htmlnorm's three buffers, no raw pass) and, for comparison,
// binary data of the same size (raw only).
func BenchmarkScanTextCorpus(b *testing.B) {
	set := genSet(b, 5, 1000, 20000)
	e := New(set)
	rng := rand.New(rand.NewPCG(7, 7))
	word := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		n := 2 + rng.IntN(9)
		w := make([]byte, n)
		for i := range w {
			w[i] = letters[rng.IntN(len(letters))]
		}
		return string(w)
	}
	const total, files = 16 << 20, 16
	makeFile := func(kind string) []byte {
		var sb strings.Builder
		switch kind {
		case "text":
			for sb.Len() < total/files {
				sb.WriteString(word())
				sb.WriteString([]string{" ", "  ", "\t", "\n", "\r\n"}[rng.IntN(5)])
			}
		case "html":
			sb.WriteString("<html><body>\n")
			for sb.Len() < total/files {
				fmt.Fprintf(&sb, "<p class='%s'>%s %s &amp; <b>%s</b></p>\n", word(), word(), word(), word())
				if rng.IntN(200) == 0 {
					fmt.Fprintf(&sb, "<script>var %s = \"%s\"; document.write(%s);</script>\n", word(), word(), word())
				}
			}
			sb.WriteString("</body></html>\n")
		case "binary":
			buf := make([]byte, total/files)
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			buf[0], buf[1] = 0, 0
			return buf
		}
		return []byte(sb.String())
	}
	for _, kind := range []string{"text", "html", "binary"} {
		b.Run(kind, func(b *testing.B) {
			dir := b.TempDir()
			var n int64
			for i := range files {
				data := makeFile(kind)
				n += int64(len(data))
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			opts := Options{Limits: unpack.DefaultLimits()}
			b.SetBytes(n)
			b.ResetTimer()
			for range b.N {
				if _, err := e.ScanPaths(context.Background(), []string{dir}, opts, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fuzzTextSigs are lower-case signatures, so that normalized text and
// HTML hit them, with every offset form.
const fuzzTextSigs = "" +
	"Word:0:*:6162636465\n" +
	"Space:0:*:6162206364\n" +
	"Tag:0:*:3c623e6162\n" +
	"Star:0:*:6162*6364\n" +
	"Abs:0:0,8:616263\n" +
	"Eof:0:EOF-8,8:636465\n"

// refTextObject is a reference model of match for one object with
// AllMatch: the plan's buffers made whole (textnorm's one-piece
// functions), each matched by the brute-force matcher.
func refTextObject(set *signatures.Set, data []byte) []string {
	if len(data) < minScanSize {
		return nil
	}
	t := filetype.Detect(data)
	rec := filetype.Any
	if t == filetype.TextASCII {
		rec, _ = filetype.Builtin().Recognize(bytes.NewReader(data), int64(len(data)), filetype.Any)
	}
	var names []string
	match := func(buf []byte, noEOF bool) {
		for i := range set.Bodies {
			b := &set.Bodies[i]
			if noEOF && b.Offset.Kind == signatures.OffsetEOF {
				continue
			}
			if refMatch(b, buf) && !slices.Contains(names, b.Name) {
				names = append(names, b.Name)
			}
		}
	}
	var html *[3]bytes.Buffer
	for _, p := range textnorm.Plan(t, rec, int64(len(data))) {
		switch p.Buffer {
		case textnorm.Raw:
			match(data, false)
		case textnorm.ScriptText:
			// Matched whatever its length, as ClamAV's cli_scan_buff
			// does (refMatch wants 6 bytes: NULs, in no signature of
			// fuzzTextSigs, pad it).
			norm := textnorm.NormalizeScript(data)
			for len(norm) < minScanSize {
				norm = append(norm, 0)
			}
			match(norm, true)
		default:
			if html == nil {
				html = new([3]bytes.Buffer)
				in := data
				if p.UTF16Decoded {
					in = textnorm.UTF16ToASCII(nil, data)
				}
				if err := textnorm.NormalizeHTML(bytes.NewReader(in), textnorm.HTMLOutputs{
					NoComment: &html[0], NoTags: &html[1], Script: &html[2]}); err != nil {
					panic(err)
				}
			}
			match(html[p.Buffer-textnorm.HTMLNoComment].Bytes(), false)
		}
	}
	slices.Sort(names)
	return names
}

// FuzzTextObject: for any text or HTML data, the object scan with
// AllMatch finds exactly what the reference model of the plan finds, and
// without AllMatch one of those names (none if none).
func FuzzTextObject(f *testing.F) {
	set, err := signatures.Parse("f.ndb", strings.NewReader(fuzzTextSigs))
	if err != nil {
		f.Fatal(err)
	}
	e := New(set)
	for _, seed := range []string{
		"ABCDE fgh", "xx AB\t\tCD yy", "<html><B>AB</B> cde</html>", "abc........cde",
		"hello <script>var ABCDE = 1;</script>", "A\x00B\x00 \x00C\x00D\x00E\x00",
		"\xff\xfeA\x00B\x00C\x00D\x00E\x00", "<\x00h\x00t\x00m\x00l\x00>\x00a\x00b\x00c\x00d\x00e\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		switch filetype.Detect(data) {
		case filetype.TextASCII, filetype.TextUTF8, filetype.TextUTF16LE, filetype.TextUTF16BE,
			filetype.HTML, filetype.HTMLUTF16, filetype.BinaryData:
		default:
			return // archives and executables: other tests
		}
		want := refTextObject(set, data)
		for _, all := range []bool{true, false} {
			names, _, err := e.scanObjects(context.Background(), e.newMatcher(), bytes.NewReader(data),
				int64(len(data)), "f", &Options{AllMatch: all, Limits: unpack.DefaultLimits()})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(names)
			switch {
			case all && !slices.Equal(names, want) && len(names)+len(want) > 0:
				t.Fatalf("data %q: got %q, want %q", data, names, want)
			case !all && (len(names) > 1 || len(names) != min(1, len(want)) || len(names) == 1 && !slices.Contains(want, names[0])):
				t.Fatalf("data %q without AllMatch: got %q, want one of %q", data, names, want)
			}
		}
	})
}
