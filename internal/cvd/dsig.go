package cvd

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// ClamAV writes its signatures as a number in base 64, least significant
// digit first, in this alphabet (libclamav/dsig.c cli_ndecode).
const dsigAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"

// decodeDSig decodes a signature written in ClamAV's base 64.
func decodeDSig(s string) (*big.Int, error) {
	if s == "" {
		return nil, errors.New("empty signature")
	}
	if len(s) > 1024 {
		return nil, fmt.Errorf("signature of %d characters is too long", len(s))
	}
	c := new(big.Int)
	d := new(big.Int)
	for i := len(s) - 1; i >= 0; i-- {
		v := bytes.IndexByte([]byte(dsigAlphabet), s[i])
		if v < 0 {
			return nil, fmt.Errorf("signature character %q is not in ClamAV's alphabet", s[i])
		}
		c.Lsh(c, 6)
		c.Add(c, d.SetInt64(int64(v)))
	}
	return c, nil
}

// encodeDSig writes c in ClamAV's base 64.
func encodeDSig(c *big.Int) string {
	if c.Sign() == 0 {
		return dsigAlphabet[:1]
	}
	var out []byte
	x := new(big.Int).Set(c)
	m := new(big.Int)
	sixtyFour := big.NewInt(64)
	for x.Sign() > 0 {
		x.DivMod(x, sixtyFour, m)
		out = append(out, dsigAlphabet[m.Int64()])
	}
	return string(out)
}

// errTooLarge is a signature that decodes to more bytes than the
// signed digest: made with another key.
var errTooLarge = errors.New("decoded signature too large")

// decodeSig is cli_decodesig: the signature raised to the public
// exponent modulo N, as plen big-endian bytes; an error when the result
// does not fit.
func decodeSig(sig string, plen int, pub *rsa.PublicKey) ([]byte, error) {
	c, err := decodeDSig(sig)
	if err != nil {
		return nil, err
	}
	if pub == nil || pub.N == nil || pub.N.Sign() <= 0 || pub.E <= 0 {
		return nil, errors.New("no public key")
	}
	p := new(big.Int).Exp(c, big.NewInt(int64(pub.E)), pub.N)
	b := p.Bytes()
	if len(b) > plen {
		return nil, errTooLarge
	}
	out := make([]byte, plen)
	copy(out[plen-len(b):], b)
	return out, nil
}

// VerifyMD5Sig checks a header's digital signature of md5 (32 lower-case
// hex digits) as ClamAV's cli_versig does: the signature, raised to the
// key's exponent, is the MD5.
func VerifyMD5Sig(md5hex, sig string, pub *rsa.PublicKey) error {
	if len(md5hex) != 32 {
		return errors.New("digital signature: MD5 is not 32 hex digits")
	}
	bad := errors.New("digital signature does not match the MD5 of the body (not signed by the trusted key, or altered)")
	p, err := decodeSig(sig, 16, pub)
	if errors.Is(err, errTooLarge) {
		return bad
	}
	if err != nil {
		return fmt.Errorf("digital signature: %w", err)
	}
	if hex.EncodeToString(p) != md5hex {
		return bad
	}
	return nil
}

// SignMD5 is the signature VerifyMD5Sig checks: the MD5 raised to the
// private exponent, in ClamAV's base 64.
func SignMD5(md5 []byte, key *rsa.PrivateKey) (string, error) {
	if len(md5) != 16 {
		return "", errors.New("sign: want a 16-byte MD5")
	}
	m := new(big.Int).SetBytes(md5)
	if m.Cmp(key.N) >= 0 {
		return "", errors.New("sign: key too small")
	}
	return encodeDSig(new(big.Int).Exp(m, key.D, key.N)), nil
}

const (
	pssLen  = 2048 / 8             // PAD_LEN: the .info signature is made with a 2048-bit key
	pssHash = sha256.Size          // SHA256_HASH_SIZE
	pssBlk  = pssLen - pssHash - 1 // BLK_LEN
	pssSalt = 32                   // SALT_LEN
)

// VerifySHA256Sig checks a .info DSIG of digest (a SHA-256) as ClamAV's
// cli_versig2 does: RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte
// salt, for a 2048-bit key.
func VerifySHA256Sig(digest []byte, sig string, pub *rsa.PublicKey) error {
	bad := errors.New(".info signature does not match (not signed by the trusted key, or altered)")
	dec, err := decodeSig(sig, pssLen, pub)
	if errors.Is(err, errTooLarge) {
		return bad
	}
	if err != nil {
		return fmt.Errorf(".info signature: %w", err)
	}
	if dec[pssLen-1] != 0xbc {
		return bad
	}
	mask := dec[:pssBlk]
	digest2 := dec[pssBlk : pssBlk+pssHash]
	data := make([]byte, 0, pssBlk+pssHash)
	for i := 0; len(data) < pssBlk; i++ {
		h := sha256.New()
		h.Write(digest2)
		h.Write([]byte{0, 0, byte(i >> 8), byte(i)})
		data = h.Sum(data)
	}
	data = data[:pssBlk]
	for i := range data {
		data[i] ^= mask[i]
	}
	data[0] &= 0x7f
	i := bytes.IndexByte(data, 0x01)
	if i < 0 || len(data)-(i+1) != pssSalt {
		return bad
	}
	salt := data[i+1:]
	h := sha256.New()
	h.Write(make([]byte, 8))
	h.Write(digest)
	h.Write(salt)
	if !bytes.Equal(h.Sum(nil), digest2) {
		return bad
	}
	return nil
}

// SignSHA256 is the signature VerifySHA256Sig checks, made with a
// 2048-bit key.
func SignSHA256(digest []byte, key *rsa.PrivateKey) (string, error) {
	if key.N.BitLen() != 2048 {
		return "", fmt.Errorf("sign .info: the key has %d bits; ClamAV checks .info signatures of 2048-bit keys only", key.N.BitLen())
	}
	s, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest, &rsa.PSSOptions{SaltLength: pssSalt, Hash: crypto.SHA256})
	if err != nil {
		return "", fmt.Errorf("sign .info: %w", err)
	}
	return encodeDSig(new(big.Int).SetBytes(s)), nil
}
