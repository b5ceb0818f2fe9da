package filetype

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func BenchmarkDetect(b *testing.B) {
	head := bytes.Repeat([]byte("plain text <b>with</b> words\n"), 40)[:MagicSize]
	for b.Loop() {
		Detect(head)
	}
}

// BenchmarkRecognizer feeds 4 MiB of text with markup, and of random
// data, through the whole-file recognition.
func BenchmarkRecognizer(b *testing.B) {
	text := bytes.Repeat([]byte("Plain TEXT with <b>tags</b> & MZ letters, From: x\n"), 4<<20/50)
	random := make([]byte, 4<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{{"text", text}, {"random", random}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.in)))
			for b.Loop() {
				rec := Builtin().NewRecognizer(int64(len(tc.in)), Any)
				for i := 0; i < len(tc.in); i += 32 << 10 {
					rec.Write(tc.in[i:min(i+32<<10, len(tc.in))])
				}
				rec.Result()
			}
		})
	}
}
