package publish

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
)

// Key files are PEM-encoded PKCS #8 Ed25519 private keys ("-----BEGIN
// PRIVATE KEY-----"), mode 0600: the format openssl genpkey -algorithm
// ed25519 writes and reads.
const pemPrivateKey = "PRIVATE KEY"

func generateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// writeKey writes a new key file; it never replaces an existing one.
func writeKey(path string, priv ed25519.PrivateKey) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("key file %s already exists", path)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), 0o600)
}

// readKey reads a key file, refusing one that others may read.
func readKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemPrivateKey {
		return nil, fmt.Errorf("key file %s: not a PEM %q block", path, pemPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s: not an Ed25519 key", path)
	}
	return priv, nil
}

// tufKey returns the TUF public key of priv and its key ID.
func tufKey(priv ed25519.PrivateKey) (*metadata.Key, string, error) {
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return nil, "", err
	}
	id, err := k.ID()
	if err != nil {
		return nil, "", err
	}
	return k, id, nil
}

func keyID(priv ed25519.PrivateKey) string {
	_, id, err := tufKey(priv)
	if err != nil {
		return ""
	}
	return id
}

// sign replaces m's signatures by those of keys and returns the signed
// metadata file.
func sign[T metadata.Roles](m *metadata.Metadata[T], keys ...ed25519.PrivateKey) ([]byte, error) {
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadSigner(k, crypto.Hash(0))
		if err != nil {
			return nil, err
		}
		if _, err := m.Sign(s); err != nil {
			return nil, err
		}
	}
	return m.ToBytes(true)
}

// roleKey reads the key of an online role (targets, snapshot, timestamp)
// from DIR/keys/ROLE.key and checks that root names it for the role.
func (r *Repo) roleKey(root *metadata.Metadata[metadata.RootType], role string) (ed25519.PrivateKey, error) {
	path := r.keyPath(role)
	priv, err := readKey(path)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", role, err)
	}
	if id := keyID(priv); !slices.Contains(root.Signed.Roles[role].KeyIDs, id) {
		return nil, fmt.Errorf("%s is not a %s key of root version %d (key id %.16s…)", path, role, root.Signed.Version, id)
	}
	return priv, nil
}

// rootKeys reads the *.key files of dir and returns those root names for
// the root role; there must be at least the threshold.
func rootKeys(dir string, root *metadata.Metadata[metadata.RootType]) ([]ed25519.PrivateKey, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("root keys: %s does not exist (give the directory holding the root keys)", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("root keys: %w", err)
	}
	role := root.Signed.Roles[metadata.ROOT]
	var keys []ed25519.PrivateKey
	seen := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".key") {
			continue
		}
		priv, err := readKey(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("root keys: %w", err)
		}
		id := keyID(priv)
		if slices.Contains(role.KeyIDs, id) && !seen[id] {
			seen[id] = true
			keys = append(keys, priv)
		}
	}
	if len(keys) < role.Threshold {
		return nil, fmt.Errorf("root keys: %s holds %d key(s) of root version %d, which needs %d", dir, len(keys), root.Signed.Version, role.Threshold)
	}
	return keys, nil
}
