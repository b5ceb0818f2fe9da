package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// TokenPrefix begins every user's API token, so that one is recognised
// where it leaks (logs, repositories) and told from the bootstrap
// admin.token, which is 64 hexadecimal digits.
const TokenPrefix = "vgl_"

// NewToken returns a new API token: TokenPrefix and 256 random bits in
// unpadded URL-safe base64 (47 characters in all), and the SHA-256 of it,
// which is all the store keeps. A token is high-entropy, so a fast hash
// suffices: it cannot be guessed from its hash.
func NewToken() (token string, hash []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the SHA-256 of a token, as the store keeps it.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// IsUserToken reports whether s has the form of a user's API token.
func IsUserToken(s string) bool {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok || len(rest) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil && len(b) == 32
}

// newID is a random handle for a stored token (16 hexadecimal digits).
func newID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
