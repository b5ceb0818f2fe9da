package filetype

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

func utf16Bytes(s string, be, bom bool) []byte {
	var out []byte
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xfeff}, units...)
	}
	for _, u := range units {
		if be {
			out = append(out, byte(u>>8), byte(u))
		} else {
			out = append(out, byte(u), byte(u>>8))
		}
	}
	return out
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// v7Tar is a tar header without any magic, with a valid checksum.
func v7Tar(name string, body []byte) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", len(body)))
	copy(h[136:], "00000000000\x00")
	copy(h[148:], "        ")
	h[156] = '0'
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	out := append(h, body...)
	return append(out, make([]byte, 1024+(512-len(body)%512)%512)...)
}

// corpus returns files of every kind the type detection decides between.
func corpus(t testing.TB) map[string][]byte {
	t.Helper()
	c := map[string][]byte{
		"ascii.txt":              []byte("Hello WORLD\tof\t\tTabs   and  SPACES\r\nZQXJKV line two\n"),
		"ascii-esc.txt":          []byte("bell \a and escape \x1b[0m text\n"),
		"latin1.txt":             []byte("caf\xe9 na\xefve \xa0 text\n"),
		"utf8.txt":               []byte("caf\xc3\xa9 UTF-8 \xe2\x82\xac euro\n"),
		"ctrl.txt":               []byte("Hello\t\tWORLD  x\r\n\x01\xc3\xa9z"),
		"utf16le-bom.txt":        utf16Bytes("Hello UTF-16 LE World\tTAB\n", false, true),
		"utf16be-bom.txt":        utf16Bytes("Hello UTF-16 BE World\tTAB\n", true, true),
		"utf16le.txt":            utf16Bytes("Hello UTF-16 LE no BOM\n", false, false),
		"utf16be.txt":            utf16Bytes("Hello UTF-16 BE no BOM\n", true, false),
		"html.html":              []byte("<html><body>Hi <B>THERE</B></body></html>\n"),
		"script.html":            []byte("text then <script>var A = 1;</script>\n"),
		"href.html":              []byte("see <A class=x HREF=\"http://example.com\">link</A>\n"),
		"scriptlet.txt":          []byte("Hello <scriptlet> world\n"),
		"late-html.txt":          append(bytes.Repeat([]byte("plain text line\n"), 100), []byte("<html>late</html>\n")...),
		"utf16le-html.txt":       utf16Bytes("<html><body>UTF16 page</body></html>", false, true),
		"utf16be-html.txt":       utf16Bytes("<html><body>UTF16 page</body></html>", true, true),
		"utf16le-html-nobom.txt": utf16Bytes("<html><body>UTF16 page</body></html>", false, false),
		"mail.eml":               []byte("From: a@example.com\nTo: b@example.com\nSubject: hi\n\nbody\n"),
		"text-pk.txt":            []byte("text with PK\x03\x04 inside\n"),
		"text-mz.txt":            []byte("text then MZ" + strings.Repeat("x", 70) + "PE\x00\x00 more\n"),
		"pdf.pdf":                []byte("%PDF-1.4\n1 0 obj\n"),
		"png.png":                []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
		"pe.exe":                 append([]byte("MZ\x90\x00"), make([]byte, 200)...),
		"elf.bin":                append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...),
		"macho32.bin":            append([]byte{0xce, 0xfa, 0xed, 0xfe}, make([]byte, 60)...),
		"macho64.bin":            append([]byte{0xcf, 0xfa, 0xed, 0xfe}, make([]byte, 60)...),
		"machobe.bin":            append([]byte{0xfe, 0xed, 0xfa, 0xce}, make([]byte, 60)...),
		"unibin.bin":             append([]byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2}, make([]byte, 60)...),
		"java.class":             append([]byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0x34}, make([]byte, 60)...),
		"bz.bz2":                 []byte("BZh91AY&SY\x00\x00\x00\x00"),
		"xz.xz":                  append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 30)...),
		"zeros.bin":              make([]byte, 300),
		"v7.tar":                 v7Tar("file.txt", []byte("tar body\n")),
		"rtf.rtf":                []byte("{\\rtf1 text}"),
	}
	for i := range uint64(8) {
		c[fmt.Sprintf("random%d.bin", i)] = randBytes(i, 600+int(i)*300)
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("inner.txt")
	w.Write([]byte("zip body\n"))
	zw.Close()
	c["zip.zip"] = zb.Bytes()
	for name, entries := range map[string][]string{
		"docx.zip": {"word/document.xml", "docProps/app.xml"},
		"xlsx.zip": {"[Content_Types].xml", "xl/workbook.xml"},
		"odd.zip":  {"[Content_Types].xml", "docProps/core.xml", "customXml/item.xml", "other.txt"},
	} {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for _, e := range entries {
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: e, Method: zip.Store})
			w.Write([]byte("<x/>"))
		}
		zw.Close()
		c[name] = b.Bytes()
	}
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write([]byte("gzip body\n"))
	gw.Close()
	c["gz.gz"] = gb.Bytes()
	for _, f := range []tar.Format{tar.FormatUSTAR, tar.FormatGNU, tar.FormatPAX} {
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		tw.WriteHeader(&tar.Header{Name: "x.txt", Mode: 0o644, Size: 4, Format: f})
		tw.Write([]byte("tar\n"))
		tw.Close()
		c[fmt.Sprintf("tar-%v.tar", f)] = tb.Bytes()
	}
	return c
}

// clamscanTypes runs clamscan --gen-json --debug over files and returns
// each file's RootFileType by its base name.
func clamscanTypes(t *testing.T, clamscan, dir string, files []string) map[string]string {
	t.Helper()
	db := filepath.Join(dir, "db.ndb")
	if err := os.WriteFile(db, []byte("VigilFiletypeUnused:0:*:7a71786a6b767a71786a6b76\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--gen-json=yes", "--debug", "--no-summary", "-d", db}, files...)
	out, err := exec.Command(clamscan, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("clamscan: %v\n%s", err, out)
	}
	types := map[string]string{}
	root := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, `"RootFileType":"`); ok {
			root = strings.TrimSuffix(v, `",`)
		}
		if v, ok := strings.CutPrefix(line, `"FileName":"`); ok && root != "" {
			types[strings.TrimSuffix(v, `",`)] = root
			root = ""
		}
	}
	return types
}

// TestDetectSameAsClamAV types a corpus of every kind with Detect and
// with clamscan (the root type of its JSON metadata) and wants the same
// type for every file.
func TestDetectSameAsClamAV(t *testing.T) {
	t.Parallel()
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	dir := t.TempDir()
	var files []string
	c := corpus(t)
	for name, b := range c {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	got := clamscanTypes(t, clamscan, dir, files)
	for name, b := range c {
		want, ok := got[name]
		if !ok {
			t.Errorf("%s: clamscan printed no type", name)
			continue
		}
		if d := Detect(b); d.String() != want {
			t.Errorf("%s: Detect = %v, clamscan %s", name, d, want)
		}
	}
}

func TestTexttype(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Type
	}{
		{"", TextASCII},
		{"plain\ttext\r\n", TextASCII},
		{"caf\xc3\xa9", TextASCII}, // 0x80-0xff are ISO or extended ASCII
		{"a\x01\xc3\xa9", TextUTF16BE},
		{"\x00\x00", TextUTF16BE}, // nothing after the first two bytes
		{"ab\x00\x01", BinaryData},
		{"\xff\xfeA\x00\x01\x00", TextUTF16LE}, // with a mark one bad unit of three is allowed
		{"\xfe\xff\x00A\x00\x01", TextUTF16BE},
		{"a\x01\xff\xfe", BinaryData}, // U+FFFE
		{"ab\x00\x7f", BinaryData},    // DEL is no text
		{"ab\x7f\x00", TextUTF16BE},
	} {
		if got := Texttype([]byte(tc.in)); got != tc.want {
			t.Errorf("Texttype(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestIsTar(t *testing.T) {
	t.Parallel()
	tarball := v7Tar("a", []byte("x"))
	if got := isTar(tarball); got != 1 {
		t.Fatalf("isTar(v7) = %d, want 1", got)
	}
	bad := bytes.Clone(tarball)
	bad[0] ^= 1
	if got := isTar(bad); got != 0 {
		t.Fatalf("isTar(bad checksum) = %d, want 0", got)
	}
	if got := Detect(tarball); got != OldTar {
		t.Fatalf("Detect(v7 tar) = %v", got)
	}
}

func TestParseTableErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{nil, "empty file type table"},
		{[]string{"# only a comment"}, "empty file type table"},
		{[]string{"0:0:4d5a:x:CL_TYPE_ANY"}, "line 1: 5 fields"},
		{[]string{"0:0:4d5a:x:CL_TYPE_ANY:CL_TYPE_NOPE"}, "line 1: unknown type"},
		{[]string{"0:x:4d5a:x:CL_TYPE_ANY:CL_TYPE_MSEXE"}, "line 1: offset"},
		{[]string{"0:0:4d5:x:CL_TYPE_ANY:CL_TYPE_MSEXE"}, "line 1: magic"},
		{[]string{"1:*:4d(5a:x:CL_TYPE_ANY:CL_TYPE_MSEXE"}, "line 1: pattern"},
		{[]string{"0:0:4d5a:x:CL_TYPE_ANY:CL_TYPE_MSEXE:a"}, "line 1: minimum level"},
	} {
		_, err := ParseTable(tc.lines)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTable(%q) = %v, want an error with %q", tc.lines, err, tc.want)
		}
	}
	// Lines above this level, and partition lines, are skipped, not refused.
	tab, err := ParseTable([]string{"0:0:4d5a:x:CL_TYPE_ANY:CL_TYPE_MSEXE:999", "4:1024:482b:p:CL_TYPE_PART_ANY:CL_TYPE_PART_HFSPLUS", "0:0:7f454c46:ELF:CL_TYPE_ANY:CL_TYPE_ELF:", "0:0:504b0304:ZIP:CL_TYPE_ANY:CL_TYPE_ZIP:1:"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tab.Detect([]byte("MZ\x90\x00")); got != TextUTF16BE {
		t.Errorf("a skipped MZ line still types: %v", got)
	}
	if got := tab.Detect([]byte("\x7fELF")); got != ELF {
		t.Errorf("an empty minimum level (0): %v", got)
	}
	if got := tab.Detect([]byte("PK\x03\x04")); got == ZIP {
		t.Errorf("an empty maximum level (0, below FLevel) is loaded")
	}
}

// TestRecognizerFindsHTMLAnywhere: a text file typed by its first bytes
// as plain text is recognized as HTML by a tag far beyond them, and the
// result does not depend on how the file is written in.
func TestRecognizerFindsHTMLAnywhere(t *testing.T) {
	t.Parallel()
	b := append(bytes.Repeat([]byte("plain text line\n"), 20000), []byte("<A href=x>y</A>\n")...)
	if got := Detect(b); got != TextASCII {
		t.Fatalf("Detect = %v", got)
	}
	for _, step := range []int{1, 7, 4096, len(b)} {
		r := Builtin().NewRecognizer(int64(len(b)), Any)
		for i := 0; i < len(b); i += step {
			r.Write(b[i:min(i+step, len(b))])
		}
		if got := r.Result(); got != HTML {
			t.Errorf("writes of %d: Result = %v, want HTML", step, got)
		}
		if _, err := r.Write([]byte("x")); err != ErrClosed {
			t.Errorf("Write after Result: %v", err)
		}
	}
	// A pattern at an offset from the end applies there only.
	dmg := bytes.Repeat([]byte("x"), 4096)
	copy(dmg[len(dmg)-512:], "koly")
	if got, _ := Builtin().Recognize(bytes.NewReader(dmg), int64(len(dmg)), Any); got != DMG {
		t.Errorf("Recognize(koly at EOF-512) = %v, want DMG", got)
	}
	if got, _ := Builtin().Recognize(bytes.NewReader(dmg), int64(len(dmg))+1, Any); got == DMG {
		t.Errorf("koly one byte off EOF-512 recognized")
	}
	if got := Detect(dmg); got == DMG {
		t.Errorf("Detect applies an EOF pattern")
	}
	got, err := Builtin().Recognize(bytes.NewReader(bytes.Repeat([]byte("no tags here\n"), 1000)), 13000, Any)
	if err != nil || got != Any {
		t.Errorf("Recognize(plain) = %v, %v", got, err)
	}
}

func FuzzDetect(f *testing.F) {
	for _, b := range corpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := Detect(b)
		if d.String() == "CL_TYPE_UNKNOWN" {
			t.Fatalf("Detect gave an unnamed type %d", d)
		}
		if len(b) > MagicSize && Detect(b[:MagicSize]) != d {
			t.Fatalf("Detect looked past MagicSize")
		}
		whole, _ := Builtin().Recognize(bytes.NewReader(b), int64(len(b)), Any)
		r := Builtin().NewRecognizer(int64(len(b)), Any)
		for i := 0; i < len(b); i += 3 {
			r.Write(b[i:min(i+3, len(b))])
		}
		if got := r.Result(); got != whole {
			t.Fatalf("Recognizer: %v in writes of 3, %v whole", got, whole)
		}
	})
}
