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

// CheckPrivate refuses a data directory that other users may enter (it
// holds the store: agents' token hashes, commands, results), and secrets
// (signing key, admin token, enrollment secret) that other users may
// read, naming the chmod commands that fix it. The directory counts as
// closed when its own mode, or the mode of a directory above it, lets
// neither its group nor others through; the secrets, which the server
// creates with mode 0600, must keep that mode. The server does not change
// the modes itself: they may have been set so on purpose, and secrets that
// were readable may have been read (make new ones then).
func (d DataDir) CheckPrivate() error {
	var bad, cmds []string
	st, err := os.Stat(d.Path)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 && !closedAbove(d.Path) {
		bad = append(bad, fmt.Sprintf("the directory has mode %04o", st.Mode().Perm()))
		cmds = append(cmds, "chmod 700 "+shellQuote(d.Path))
	}
	var files []string
	for _, name := range []string{FileSigningKey, FileAdminToken, FileEnrollSecret} {
		fi, err := os.Stat(d.file(name))
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			bad = append(bad, fmt.Sprintf("%s has mode %04o", name, fi.Mode().Perm()))
			files = append(files, shellQuote(d.file(name)))
		}
	}
	if len(files) > 0 {
		cmds = append(cmds, "chmod 600 "+strings.Join(files, " "))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("data directory %s: %s, which lets other users read the server's secrets; "+
		"the server does not start so: run %s (and, if others may have read the secrets, "+
		"move them away to make new ones)", d.Path, strings.Join(bad, ", "), strings.Join(cmds, " && "))
}

// closedAbove reports whether a directory above dir (its symbolic links
// resolved) lets neither its group nor others through, so that what dir
// holds is out of their reach whatever dir's own mode.
func closedAbove(dir string) bool {
	p, err := filepath.Abs(dir)
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		return false
	}
	for parent := filepath.Dir(p); parent != p; p, parent = parent, filepath.Dir(parent) {
		st, err := os.Stat(parent)
		if err != nil {
			return false
		}
		if st.Mode().Perm()&0o011 == 0 {
			return true
		}
	}
	return false
}

// shellQuote quotes a path for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@%,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

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
