package repo

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Hashers computes, in one pass over a target's bytes, every hash its
// signed metadata lists (sha256, sha512), to check the target against
// them. It is an io.Writer.
type Hashers struct {
	algs []string
	hs   []hash.Hash
}

// NewHashers returns hashers for the algorithms of want; an algorithm it
// does not know, or none at all, is an error.
func NewHashers(want metadata.Hashes) (*Hashers, error) {
	h := &Hashers{}
	for alg := range want {
		h.algs = append(h.algs, alg)
	}
	slices.Sort(h.algs)
	for _, alg := range h.algs {
		switch alg {
		case "sha256":
			h.hs = append(h.hs, sha256.New())
		case "sha512":
			h.hs = append(h.hs, sha512.New())
		default:
			return nil, fmt.Errorf("hash algorithm %q is not supported", alg)
		}
	}
	if len(h.hs) == 0 {
		return nil, errors.New("no hash to verify against")
	}
	return h, nil
}

// Write hashes p with every algorithm.
func (h *Hashers) Write(p []byte) (int, error) {
	for _, x := range h.hs {
		x.Write(p)
	}
	return len(p), nil
}

// Reset starts every hash again.
func (h *Hashers) Reset() {
	for _, x := range h.hs {
		x.Reset()
	}
}

// Mismatch compares the sums with want, in the algorithms' order: it
// returns the first algorithm whose sum differs, with both sums in hex,
// and ok false; ok is true when every sum matches.
func (h *Hashers) Mismatch(want metadata.Hashes) (alg, got, wanted string, ok bool) {
	for i, a := range h.algs {
		sum := h.hs[i].Sum(nil)
		if !bytes.Equal(sum, want[a]) {
			return a, hex.EncodeToString(sum), hex.EncodeToString(want[a]), false
		}
	}
	return "", "", "", true
}
