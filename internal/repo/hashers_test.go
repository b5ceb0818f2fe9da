package repo

import (
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestHashers(t *testing.T) {
	t.Parallel()
	data := []byte("definitions 2026120201")
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	want := metadata.Hashes{"sha256": s256[:], "sha512": s512[:]}
	h, err := NewHashers(want)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(data[:5])
	h.Write(data[5:])
	if alg, got, w, ok := h.Mismatch(want); !ok {
		t.Fatalf("the right bytes mismatch on %s: %s vs %s", alg, got, w)
	}
	h.Reset()
	h.Write([]byte("something else"))
	if alg, _, _, ok := h.Mismatch(want); ok || alg != "sha256" {
		t.Fatalf("other bytes: ok %v, alg %q", ok, alg)
	}
	if _, err := NewHashers(metadata.Hashes{"md5": []byte{1}}); err == nil {
		t.Error("md5 accepted")
	}
	if _, err := NewHashers(metadata.Hashes{}); err == nil {
		t.Error("no hash accepted")
	}
}
