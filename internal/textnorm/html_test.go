package textnorm

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/vigil-fleet/vigil/internal/filetype"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// htmlCorpus returns HTML documents that exercise the normalizer: tags
// and arguments in every quoting, comments, entities and character
// references, scripts and styles, multi-byte text, NULs, CR LF, data:
// URIs, lines longer than ClamAV's 8 KiB chunks, and generated documents.
func htmlCorpus() map[string][]byte {
	c := map[string][]byte{
		"basic.html": []byte("<html><body>Hi <!-- c --> <b>THERE</b> &amp; &#65; <script>var A = \"X\";</script></body></html>\n"),
		"args.html": []byte("<HTML>\n<BODY BGCOLOR=#FFFFFF Onload='Go(1)'>\r\n<A HREF=\"http://Example.COM/X\" Title=Link>Click  HERE</A>\n" +
			"<IMG SRC='pic.GIF' WIDTH=10><input disabled value = \"a b\" x>\n</BODY></HTML>"),
		"entities.html": []byte("<html>caf&eacute; &lt;b&gt; &Agrave;&nbsp;x &#x4E2D;&#20013; &#0; &#xFFFF; &unknown; &amp &#65 &#x41;" +
			" &#99999999999999999999; &rsaquo;<a href=\"a&amp;b&#46;c\">l</a></html>"),
		"script.html": []byte("<html><head><SCRIPT language='JavaScript'>\nvar Msg = 'Hello'; // 'quoted'\n<!-- hidden -->\nif (a < b) { Run(Msg); }\n</SCRIPT>" +
			"<style>BODY { color: RED }</style></head><body onload=\"x()\">Text</body></html>"),
		"utf8.html": []byte("<html><body>Caf\xc3\xa9 \xe3\x80\x82 \xef\xbc\x8e \xe4\xb8\xad\xe6\x96\x87 <a title=\"\xc3\xa9t\xc3\xa9\">x</a>\xa1C \xa1D</body></html>"),
		"nul.html":  []byte("<html>\x00<bo\x00dy>N\x00U\x00L\x00S <b>bold</b>\x00</body></html>"),
		"data.html": []byte("<html><img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=x><a href='data:text/plain,Hello%20World&amp;x'>d</a>" +
			"<img src=data:,plain%41%4 ALT=y>after</html>"),
		"comments.html": []byte("<html><!-- one --><!DOCTYPE html><!--two--><p>para</p><script><!-- in script --></script><!></html>"),
		"late.txt":      append(bytes.Repeat([]byte("Plain text line, no tags at all.\n"), 60), []byte("<html><body>LATE Html</body></html>\n")...),
	}
	c["js-scopes.html"] = []byte("<html><script>function Foo(A, b) { var C = A + b, D = [1,2]; return C.Length; }\n" +
		"var x = Foo(1, 2.5e3); x.y = document.Write; function(){ var Inner = x; Inner++; }\nundeclared = Foo;</script></html>")
	c["js-strings.html"] = []byte("<script>var s = \"A\\x41\\u0042\\n\\t\\0z\" + 'two' + \"three\"; s2 = \"esc\\\"aped\"; s3 = 'it\\'s';</script>")
	c["js-unescape.html"] = []byte("<script>document.write(unescape(\"%3Cb%3EHi%u0041%zz%4\"));</script>")
	c["js-eval.html"] = []byte("<script>eval(\"var Q = 1; alert(Q)\"); eval('x' + 'y');</script>")
	c["js-packer.html"] = []byte("<script>eval(function(p,a,c,k,e,r){e=String;if(!''.replace(/^/,String)){while(c--)r[c]=k[c]||c;" +
		"k=[function(e){return r[e]}];e=function(){return'\\\\w+'};c=1};while(c--)if(k[c])p=p.replace(new RegExp('\\\\b'+e(c)+'\\\\b','g'),k[c]);return p}" +
		"('0 1=\\'2\\';3(1)',4,4,'var|x|hello|alert'.split('|'),0,{}))</script>")
	c["js-df.html"] = []byte("<script>dF('bmfsu%292*1')</script><script>dF(\"%3Dcpez%3F1\")</script>")
	c["js-numbers.html"] = []byte("<script>a = 0x1F + 1.5e10 + 123456789012 + .5 + 3.14159265 + 1e-7 + 99999999999999999999 + 1.e5 + 2E+3 + 7e;</script>")
	c["js-comments.html"] = []byte("<script>/* multi\nline */ a = b / c; // single line comment\nd = 1; /* open</script>")
	c["js-unclosed.html"] = []byte("<script>var Open = 'unterminated string\n<p>more")
	// Encoded scripts (JScript.Encode, VBScript.Encode): decoded by both
	// normalizers alike, whether the bytes are a real encoding or not.
	c["screnc-script.html"] = []byte("<html><script language=\"JScript.Encode\">#@~^EAAAAA==Wx9/n9mH0n9dkW3vKdW4cACAAA==^#~@</script><p>After</p></html>")
	c["screnc-long.html"] = []byte("<html><SCRIPT LANGUAGE='VBScript.Encode'>#@~^YAAAAA==" + strings.Repeat("@!mD@*@&@#@$xY", 12) + "QAAAAA==^#~@ tail</SCRIPT></html>")
	c["screnc-asp.html"] = []byte("<%@ LANGUAGE = \"VBScript.Encode\" %><html>before #@~^CAAAAA==\x7fdbkc3Jm4AAA==^#~@ rest</html>")
	c["screnc-short.html"] = []byte("<script language=jscript.encode>text #@~^abc</script>")
	b64 := base64.StdEncoding.EncodeToString
	c["style-images.html"] = []byte("<html><head><style>body { background: url( \"data:image/gif;base64," + b64([]byte("GIF89a VigilStyleMarkerOne")) +
		"\" ) }\n.x { background:url(data:image/png; base64 , " + b64([]byte("PNG VigilStyleMarkerTwo")) + ") }</STYLE></head>" +
		"<body><style>.y { background: url(data:image/png;base64,!!!!) } .z { background: url(data:x;base64," + b64([]byte("VigilStyleMarkerThree")) +
		") }</style>text</body></html>")
	bigScript := []byte("<html><script>")
	for i := 0; len(bigScript) < 2*htmlChunk+500; i++ {
		bigScript = append(bigScript, fmt.Sprintf("var Value%d = \"String number %d with  spaces\" + Value%d; ", i, i, i/2)...)
	}
	c["js-long.html"] = append(bigScript, "</script></html>"...)
	plain := bytes.Repeat([]byte("Plain Text LINE\n"), 100)
	// A PE marker, then HTML, which is greater: recognized as HTML.
	c["late-mz-html.txt"] = append(append(bytes.Clone(plain), "MZ"+strings.Repeat("x", 64)+"PE\x00\x00 Exe MARKER\n"...), "<html>Page</html>\n"...)
	long := []byte("<html><body>")
	for i := 0; len(long) < 3*htmlChunk; i++ {
		long = append(long, fmt.Sprintf("<p class=c%d>Word%d &amp; MORE\ttext</p>", i, i)...)
	}
	c["long.html"] = append(long, "</body></html>"...)
	page := "<html><body>UTF-16 <B>Page</B> &amp; caf\u00e9 \u4e2d</body></html>"
	c["utf16le-bom.html"] = utf16Bytes(page, false, true) // typed HTMLUTF16
	c["utf16le.html"] = utf16Bytes(page, false, false)    // typed HTMLUTF16
	c["utf16be-bom.html"] = utf16Bytes(page, true, true)  // typed HTML, normalized with its NULs skipped
	nospace := append([]byte("<html>"), bytes.Repeat([]byte("abcdefghij"), 2000)...)
	c["nospace.html"] = append(nospace, " tail</html>"...)
	for i := range uint64(12) {
		c[fmt.Sprintf("gen%02d.html", i)] = genHTML(rand.New(rand.NewPCG(i, 3)))
	}
	return c
}

// genHTML makes a random document from HTML's pieces.
func genHTML(r *rand.Rand) []byte {
	pieces := []string{
		"<html>", "<HEAD>", "<body bgcolor=red>", "</body>", "<p>", "</P>", "<br/>", "< b >", "</ b>",
		"<a href=\"http://X.example/p?q=1&amp;r=2\">", "</a>", "<img src='I.png' alt=\"A B\">", "<iframe src=f.html>",
		"<script>", "</script>", "<script language=\"javascript\">", "<style>", "</style>", "<!--", "-->", "<!x>",
		"&amp;", "&lt;", "&eacute;", "&#65;", "&#x263A;", "&bogus;", "&", "&#", "#", ";", "'", "\"", "=", ">", "<",
		" ", "  ", "\t", "\n", "\r\n", "\x00", "\xc3\xa9", "\xe3\x80\x82", "\xa1C", "\x80", "\xff",
		"Hello", "WORLD", "MiXeD", "var X = 'Y';", "if (a<b)", "data:", "%41", "\\",
	}
	var b []byte
	for range 40 + r.IntN(200) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return b
}

// keptHTML returns, by scanned file name, ClamAV's htmlnorm outputs kept
// under tmp: nocomment.html, notags.html and javascript.
func keptHTML(t *testing.T, tmp string) map[string]map[string][]byte {
	t.Helper()
	kept := map[string]map[string][]byte{}
	top := regexp.MustCompile(`^\d{8}_\d{6}-(.+)\.[0-9a-f]{10}$`)
	err := filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		key := d.Name()
		switch {
		case key == "nocomment.html", key == "notags.html", key == "javascript":
		case filepath.Base(filepath.Dir(p)) == "rfc2397":
			key = "rfc2397/" + key
		default:
			return nil
		}
		rel, _ := filepath.Rel(tmp, p)
		m := top.FindStringSubmatch(strings.Split(rel, string(filepath.Separator))[0])
		if m == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if kept[m[1]] == nil {
			kept[m[1]] = map[string][]byte{}
		}
		if _, dup := kept[m[1]][key]; dup {
			t.Errorf("%s: two %s kept", m[1], key)
		}
		kept[m[1]][key] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return kept
}

func normalizeHTML(t testing.TB, b []byte) (noComment, noTags []byte) {
	nc, nt, _ := normalizeHTMLScript(t, b)
	return nc, nt
}

func normalizeHTMLScript(t testing.TB, b []byte) (noComment, noTags, script []byte) {
	nc, nt, js, _ := normalizeHTMLAll(t, b)
	return nc, nt, js
}

type closingBuffer struct{ bytes.Buffer }

func (*closingBuffer) Close() error { return nil }

func normalizeHTMLAll(t testing.TB, b []byte) (noComment, noTags, script []byte, data [][]byte) {
	nc, nt, js, data, _ := normalizeHTMLImages(t, b)
	return nc, nt, js, data
}

func normalizeHTMLImages(t testing.TB, b []byte) (noComment, noTags, script []byte, data, images [][]byte) {
	var nc, nt, js bytes.Buffer
	var files []*closingBuffer
	out := HTMLOutputs{NoComment: &nc, NoTags: &nt, Script: &js, DataURI: func() io.WriteCloser {
		files = append(files, &closingBuffer{})
		return files[len(files)-1]
	}, StyleImage: func(img []byte) { images = append(images, img) }}
	if err := NormalizeHTML(iotest.HalfReader(bytes.NewReader(b)), out); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data = append(data, f.Bytes())
	}
	return nc.Bytes(), nt.Bytes(), js.Bytes(), data, images
}

// TestHTMLSameAsClamAV is the differential test of the HTML
// normalization: ClamAV's nocomment.html, notags.html and javascript
// (kept with --leave-temps) are byte for byte NormalizeHTML's, for every
// document of the corpus ClamAV normalizes as HTML; and clamscan detects
// a signature of target 0, 3 or 7 drawn from the document or its
// normalizations exactly when the model finds it in the buffers Plan
// names.
func TestHTMLSameAsClamAV(t *testing.T) {
	t.Parallel()
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	dir, tmp := t.TempDir(), t.TempDir()
	files := htmlCorpus()
	var paths []string
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// Signatures: substrings of the raw document and of both outputs.
	r := rand.New(rand.NewPCG(5, 5))
	var sigs []sig
	seen := map[string]bool{}
	for _, name := range slices.Sorted(mapsKeys(files)) {
		nc, nt := normalizeHTML(t, files[name])
		dec, dnc, dnt := UTF16ToASCII(nil, files[name]), []byte(nil), []byte(nil)
		if filetype.Detect(files[name]) == filetype.HTMLUTF16 {
			dnc, dnt = normalizeHTML(t, dec)
		}
		for _, src := range [][]byte{files[name], nc, nt, dnc, dnt} {
			for range 3 {
				if len(src) < 14 {
					continue
				}
				l := 6 + r.IntN(6)
				i := r.IntN(len(src) - l)
				body := src[i : i+l]
				if seen[string(body)] {
					continue
				}
				seen[string(body)] = true
				for _, target := range []int{0, 3, 7} {
					sigs = append(sigs, sig{fmt.Sprintf("Vigil.H%d.%d", target, len(sigs)), target, bytes.Clone(body)})
				}
			}
		}
	}
	for _, m := range []string{"VigilStyleMarkerOne", "VigilStyleMarkerTwo", "VigilStyleMarkerThree"} {
		sigs = append(sigs, sig{"Vigil.S." + m, 0, []byte(m)})
	}
	found, _ := runClamscan(t, clamscan, dir, tmp, sigs, paths)
	kept := keptHTML(t, tmp)

	htmlFiles, dataFiles, styleImages := 0, 0, 0
	for name, b := range files {
		d := filetype.Detect(b)
		rec, _ := filetype.Builtin().Recognize(bytes.NewReader(b), int64(len(b)), filetype.Any)
		plan := Plan(d, rec, int64(len(b)))
		isHTML := slices.ContainsFunc(plan, func(p Pass) bool { return p.Buffer == HTMLNoComment })
		k := kept[name]
		if isHTML != (k != nil) {
			t.Errorf("%s (%v, recognized %v): plan HTML %v, ClamAV normalized as HTML %v", name, d, rec, isHTML, k != nil)
			continue
		}
		if !isHTML {
			continue
		}
		htmlFiles++
		src := b
		if plan[len(plan)-1].UTF16Decoded {
			var err error
			if src, err = io.ReadAll(UTF16ToASCIIReader(iotest.OneByteReader(bytes.NewReader(b)))); err != nil {
				t.Fatal(err)
			}
		}
		nc, nt, js, data, images := normalizeHTMLImages(t, src)
		styleImages += len(images)
		var kdata [][]byte
		for key, v := range k {
			if strings.HasPrefix(key, "rfc2397/") {
				kdata = append(kdata, v)
			}
		}
		slices.SortFunc(kdata, bytes.Compare)
		slices.SortFunc(data, bytes.Compare)
		if !slices.EqualFunc(data, kdata, bytes.Equal) {
			t.Errorf("%s: data: URI files differ:\nclamav %q\nvigil  %q", name, kdata, data)
		}
		dataFiles += len(data)
		if !bytes.Equal(js, k["javascript"]) {
			t.Errorf("%s: javascript differs:\nclamav %q\nvigil  %q", name, head(k["javascript"]), head(js))
		}
		if !bytes.Equal(nc, k["nocomment.html"]) {
			t.Errorf("%s: nocomment.html differs:\nclamav %q\nvigil  %q", name, head(k["nocomment.html"]), head(nc))
		}
		if !bytes.Equal(nt, k["notags.html"]) {
			t.Errorf("%s: notags.html differs:\nclamav %q\nvigil  %q", name, head(k["notags.html"]), head(nt))
		}
		bufs := map[Buffer][]byte{Raw: b, HTMLNoComment: nc, HTMLNoTags: nt, HTMLScript: js}
		for _, s := range sigs {
			want := false
			for _, img := range images { // scanned as files of their own
				if s.target == 0 && bytes.Contains(img, s.body) {
					want = true
				}
			}
			for _, p := range plan {
				if buf, ok := bufs[p.Buffer]; ok && slices.Contains(p.Targets, s.target) && bytes.Contains(buf, s.body) {
					want = true
				}
			}
			if got := found[name+"\t"+s.name]; got != want {
				t.Errorf("%s: %s (target %d, %q): clamscan %v, model %v", name, s.name, s.target, s.body, got, want)
			}
		}
	}
	if htmlFiles < len(files)-1 {
		t.Errorf("only %d of %d documents normalized as HTML", htmlFiles, len(files))
	}
	if dataFiles == 0 {
		t.Errorf("no data: URI in the corpus")
	}
	if styleImages != 2 {
		t.Errorf("%d images extracted from <style> blocks, want 2 (the third follows one that does not decode)", styleImages)
	}
	t.Logf("%d HTML documents, %d data: URI files, %d style images, %d signatures", htmlFiles, dataFiles, styleImages, len(sigs))
}

func TestUTF16ToASCIIReader(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "a", "<\x00h\x00", "<\x00h\x00x", "\x00<\x4e\x2d\xff\xff"} {
		for _, r := range []io.Reader{bytes.NewReader([]byte(in)), iotest.OneByteReader(bytes.NewReader([]byte(in)))} {
			got, err := io.ReadAll(UTF16ToASCIIReader(r))
			if want := UTF16ToASCII(nil, []byte(in)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("UTF16ToASCIIReader(%q) = %q, %v; want %q", in, got, err, want)
			}
		}
	}
	if got := string(UTF16ToASCII(nil, []byte("<\x00h\x00\x00<"))); got != "<h\xc0" {
		t.Errorf("UTF16ToASCII: %q", got)
	}
}

func TestHTMLChunks(t *testing.T) {
	t.Parallel()
	// A chunk is cut after its last whitespace when the next byte is not
	// whitespace, NULs are skipped, and what follows is read again.
	in := append(bytes.Repeat([]byte("a"), 8000), []byte(" bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")...)
	c := &chunkReader{r: bytes.NewReader(in)}
	first := c.next()
	if len(first) != 8001 {
		t.Fatalf("first chunk %d bytes, want 8001 (cut after the space)", len(first))
	}
	if second := c.next(); len(second) != len(in)-8001 || c.next() != nil {
		t.Fatalf("second chunk %d bytes", len(second))
	}
	c = &chunkReader{r: bytes.NewReader([]byte("a\x00\x00b c\x00"))}
	if got := string(c.next()); got != "ab c" {
		t.Fatalf("NULs: %q", got)
	}
}

func TestNormalizeHTMLNilOutputs(t *testing.T) {
	t.Parallel()
	var nc bytes.Buffer
	if err := NormalizeHTML(bytes.NewReader([]byte("<html><B>Hi</B><script>var X=1;</script></html>")), HTMLOutputs{NoComment: &nc}); err != nil {
		t.Fatal(err)
	}
	if got := nc.String(); got != "<html><b>hi</b><script>varx=1;</script></html>" { // whitespace in a script goes
		t.Fatalf("nocomment %q", got)
	}
}

func FuzzNormalizeHTML(f *testing.F) {
	for _, b := range htmlCorpus() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		nc, nt := normalizeHTML(t, b)
		var nc2, nt2 bytes.Buffer
		if err := NormalizeHTML(bytes.NewReader(b), HTMLOutputs{NoComment: &nc2, NoTags: &nt2}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(nc, nc2.Bytes()) || !bytes.Equal(nt, nt2.Bytes()) {
			t.Fatalf("output depends on the reads")
		}
		for _, c := range nt {
			if c >= 'A' && c <= 'Z' && !bytes.Contains(b, []byte{c}) {
				t.Fatalf("notags holds %q, not in the input", c)
			}
		}
	})
}
