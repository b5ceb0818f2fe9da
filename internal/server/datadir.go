package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
)

// Files in the server's data directory.
const (
	FileSigningKey   = "signing.key"   // base64 Ed25519 seed, mode 0600
	FilePublicKey    = "signing.pub"   // base64 Ed25519 public key, for agents' ServerPublicKey
	FileAdminToken   = "admin.token"   // admin API bearer token, mode 0600
	FileEnrollSecret = "enroll.secret" // enrollment secret, mode 0600
	FileDatabase     = "vigil.db"      // SQLite store
)

// DataDir is the server's data directory: its keys, secrets and store.
type DataDir struct {
	Path string
}

// Init creates the directory (0700) and, when missing, the signing key,
// admin token and enrollment secret. Existing files are kept.
func (d DataDir) Init() error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if _, err := os.Stat(d.file(FileSigningKey)); errors.Is(err, fs.ErrNotExist) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		if err := writeSecret(d.file(FileSigningKey), base64.StdEncoding.EncodeToString(priv.Seed())); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(d.file(FilePublicKey), []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
			return err
		}
	}
	for _, f := range []string{FileAdminToken, FileEnrollSecret} {
		if _, err := os.Stat(d.file(f)); errors.Is(err, fs.ErrNotExist) {
			if err := writeSecret(d.file(f), randomToken(32)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d DataDir) file(name string) string { return filepath.Join(d.Path, name) }

// SigningKey reads the command-signing key.
func (d DataDir) SigningKey() (ed25519.PrivateKey, error) {
	s, err := d.read(FileSigningKey)
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: not a base64 Ed25519 seed", d.file(FileSigningKey))
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// AdminToken reads the admin API token.
func (d DataDir) AdminToken() (string, error) { return d.read(FileAdminToken) }

// EnrollSecret reads the enrollment secret.
func (d DataDir) EnrollSecret() (string, error) { return d.read(FileEnrollSecret) }

// PublicKey returns the base64 public key agents pin.
func (d DataDir) PublicKey() (string, error) { return d.read(FilePublicKey) }

// DatabasePath is where the SQLite store lives.
func (d DataDir) DatabasePath() string { return d.file(FileDatabase) }

func (d DataDir) read(name string) (string, error) {
	b, err := os.ReadFile(d.file(name))
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", d.file(name))
	}
	return s, nil
}

func writeSecret(path, s string) error { return atomicfile.WriteFile(path, []byte(s+"\n"), 0o600) }

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
