package textnorm

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// benchText is 4 MiB of mixed-case text with whitespace runs and markup.
func benchText() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"Hello", "WORLD", "var", "x", "=", "<b>", "</b>", "&amp;", "\t", "  ", "\r\n", "caf\xc3\xa9", "<a href=x>", "</a>"}
	var b []byte
	for len(b) < 4<<20 {
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b
}

func BenchmarkScriptReader(b *testing.B) {
	in := benchText()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := io.Copy(io.Discard, NewScriptReader(bytes.NewReader(in), 64)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizeHTML(b *testing.B) {
	in := benchText()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := NormalizeHTML(bytes.NewReader(in), HTMLOutputs{NoComment: io.Discard, NoTags: io.Discard}); err != nil {
			b.Fatal(err)
		}
	}
}
