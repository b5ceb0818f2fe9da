package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters. A hash carries the ones it was
// made with (see HashPassword), so they can be raised later: hashes made
// before keep verifying, and a login with an older hash re-hashes the
// password with the current ones.
type Params struct {
	Time    uint32 // passes over the memory
	Memory  uint32 // KiB
	Threads uint8  // lanes
}

// DefaultParams are the parameters new hashes are made with: argon2id
// with 64 MiB, 2 passes and 2 lanes. They exceed the OWASP
// recommendation (19 MiB, 2 passes, 1 lane) in memory and take the
// memory of RFC 9106's second recommended option (64 MiB, with 3 passes
// and 4 lanes there), so each guess in flight costs an attacker 64 MiB.
// A hash records its parameters, so they can be raised later.
var DefaultParams = Params{Time: 2, Memory: 64 * 1024, Threads: 2}

const (
	saltLen = 16
	keyLen  = 32
	// MinPasswordLength is the shortest password accepted, in characters.
	MinPasswordLength = 12
	// MaxPasswordLength bounds a password, in bytes, so that hashing one
	// costs what the parameters say.
	MaxPasswordLength = 1024
)

// CheckPassword is the password policy: at least MinPasswordLength
// characters, at most MaxPasswordLength bytes of UTF-8.
func CheckPassword(password string) error {
	switch {
	case !utf8.ValidString(password):
		return fmt.Errorf("%w: the password is not UTF-8 text", ErrInvalid)
	case utf8.RuneCountInString(password) < MinPasswordLength:
		return fmt.Errorf("%w: the password must be at least %d characters long", ErrInvalid, MinPasswordLength)
	case len(password) > MaxPasswordLength:
		return fmt.Errorf("%w: the password must be at most %d bytes long", ErrInvalid, MaxPasswordLength)
	}
	return nil
}

// HashPassword hashes password with argon2id and p, with a random 16-byte
// salt, into the PHC string format:
//
//	$argon2id$v=19$m=65536,t=2,p=2$SALT$KEY
//
// SALT and KEY in unpadded standard base64; KEY is 32 bytes.
func HashPassword(password string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash: a stored hash that is not one HashPassword makes.
var errBadHash = errors.New("not an argon2id password hash")

// decodeHash parses an encoded hash.
func decodeHash(encoded string) (p Params, salt, key []byte, err error) {
	f := strings.Split(encoded, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var m, t, th uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return p, nil, nil, errBadHash
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		default:
			return p, nil, nil, errBadHash
		}
	}
	// Bounds keep a damaged or planted hash from costing more than a
	// GiB or a minute.
	if t < 1 || t > 64 || th < 1 || th > 255 || m < 8*th || m > 1<<20 {
		return p, nil, nil, errBadHash
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if key, err = b64.DecodeString(f[5]); err != nil || len(key) < 16 {
		return p, nil, nil, errBadHash
	}
	return Params{Time: uint32(t), Memory: uint32(m), Threads: uint8(th)}, salt, key, nil
}

// VerifyPassword reports whether password is the one encoded was made
// from, comparing in constant time, and whether encoded was made with
// parameters other than want (the caller may then re-hash). A malformed
// hash is an error.
func VerifyPassword(encoded, password string, want Params) (ok, stale bool, err error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, p != want, nil
}

// hashSlots bounds the argon2 computations in flight (each holds
// Params.Memory), so that a burst of logins costs time, not all memory.
var hashSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
