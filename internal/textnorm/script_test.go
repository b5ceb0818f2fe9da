package textnorm

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

func TestNormalizeScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"ZQXJKV", "zqxjkv"},
		{"a\tb", "a b"},
		{"a \t\r\n\v\f b", "a b"},
		{"a\x00 \x01\x80 \xffb", "a b"},  // dropped bytes do not end a run
		{"caf\xc3\xa9 Z", "caf z"},       // no decoding: UTF-8 bytes dropped
		{"H\x00i\x00 \x00!\x00", "hi !"}, // nor UTF-16: the NULs go
		{"\x7f~@[`{", "\x7f~@[`{"},
		{"   ", " "},
		{"", ""},
	} {
		if got := string(NormalizeScript([]byte(tc.in))); got != tc.want {
			t.Errorf("NormalizeScript(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestScriptReaderFlush: across ClamAV's buffer flush the whitespace
// state is reset, so a run of whitespace that straddles it gives two
// spaces; elsewhere the reader gives NormalizeScript's output, whatever
// the size of the reads.
func TestScriptReaderFlush(t *testing.T) {
	t.Parallel()
	in := bytes.Repeat([]byte("A"), 3*ScanBuffer)
	in[ScanBuffer-2], in[ScanBuffer-1], in[ScanBuffer], in[ScanBuffer+1] = 'x', ' ', ' ', 'y'
	in[1000], in[1001] = '\t', ' '
	r := NewScriptReader(iotest.OneByteReader(bytes.NewReader(in)), 0)
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	want := NormalizeScript(in)
	want = bytes.Replace(want, []byte("x y"), []byte("x  y"), 1)
	if !bytes.Equal(got, want) {
		t.Fatalf("ScriptReader differs from NormalizeScript with the flush's double space")
	}
	if f := r.Flushes(); len(f) != 2 || f[0] != ScanBuffer-1 {
		t.Fatalf("Flushes = %v, want two, the first at %d", f, ScanBuffer-1)
	}
	// With a target-7 pattern length the flush comes as much later.
	r = NewScriptReader(bytes.NewReader(in), 100)
	io.Copy(io.Discard, r)
	if f := r.Flushes(); len(f) == 0 || f[0] != ScanBuffer-1 {
		t.Fatalf("Flushes(100) = %v", f)
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	bufs := func(p []Pass) (s []Buffer) {
		for _, x := range p {
			s = append(s, x.Buffer)
		}
		return s
	}
	for _, tc := range []struct {
		detected, recognized filetype.Type
		size                 int64
		want                 []Buffer
	}{
		{filetype.TextASCII, filetype.Any, 10, []Buffer{Raw, ScriptText}},
		{filetype.TextASCII, filetype.HTML, 10, []Buffer{Raw, HTMLNoComment, HTMLNoTags, HTMLScript}},
		{filetype.TextUTF16BE, filetype.HTML, 10, []Buffer{Raw, ScriptText}},
		{filetype.TextASCII, filetype.Mail, 10, []Buffer{Raw, ScriptText, Raw}},
		{filetype.HTMLUTF16, filetype.Any, 10, []Buffer{Raw, HTMLNoComment, HTMLNoTags, HTMLScript}},
		{filetype.TextASCII, filetype.Any, MaxScriptNormalize + 1, []Buffer{Raw}},
		{filetype.HTML, filetype.Any, 10, []Buffer{HTMLNoComment, HTMLNoTags, HTMLScript}},
		{filetype.HTML, filetype.Any, MaxHTMLNoTags + 1, []Buffer{HTMLNoComment, HTMLScript}},
		{filetype.HTML, filetype.Any, MaxHTMLNormalize + 1, nil},
		{filetype.MSEXE, filetype.Any, 10, []Buffer{Raw}},
		{filetype.Ignored, filetype.Any, 10, nil},
	} {
		got := bufs(Plan(tc.detected, tc.recognized, tc.size))
		if !equal(got, tc.want) {
			t.Errorf("Plan(%v, %v, %d) = %v, want %v", tc.detected, tc.recognized, tc.size, got, tc.want)
		}
	}
	if p := Plan(filetype.MSEXE, filetype.Any, 1); !equal(p[0].Targets, []int{0, 1}) {
		t.Errorf("PE targets %v", p[0].Targets)
	}
	if p := Plan(filetype.TextUTF8, filetype.Any, 1); !equal(p[1].Targets, []int{0, 7}) || !equal(p[0].Targets, []int{0}) {
		t.Errorf("text targets %v", p)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzNormalizeScript(f *testing.F) {
	for _, s := range []string{"ZQXJKV", "a\tb", "a \x00 b", "H\x00i\x00", "caf\xc3\xa9", "\x7f\x80\xff", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := NormalizeScript(b)
		if len(n) > len(b) {
			t.Fatalf("grew: %d > %d", len(n), len(b))
		}
		for i, c := range n {
			if c < 0x20 || c > 0x7f || c >= 'A' && c <= 'Z' {
				t.Fatalf("byte %#x in the output", c)
			}
			if c == ' ' && i > 0 && n[i-1] == ' ' {
				t.Fatalf("two spaces in a row")
			}
		}
		if !bytes.Equal(NormalizeScript(n), n) {
			t.Fatalf("not idempotent")
		}
		got, err := io.ReadAll(NewScriptReader(iotest.HalfReader(bytes.NewReader(b)), 0))
		if err != nil || !bytes.Equal(got, n) {
			t.Fatalf("ScriptReader differs from NormalizeScript on a short input")
		}
	})
}
