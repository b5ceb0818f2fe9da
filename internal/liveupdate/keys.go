package liveupdate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// A repository directory (docs/repository.md) holds the vendor's private
// keys in keys/ (keys/root/root.key, keys/targets.key, ...) beside public/,
// the only part meant to be served. The server refuses to start on a tree
// holding keys (checkNoKeys), and, in case keys appear later or lie deeper
// than the start-up check looks, never serves one (privateName, and
// repo.open reading the start of small files).

const (
	// keysDir is the repository directory's private key directory.
	keysDir = "keys"
	// keyCheckEntries bounds the directory entries the start-up check
	// looks at, breadth first, so that start-up stays cheap on a large
	// tree; whatever lies beyond is still refused per request.
	keyCheckEntries = 20000
	// keyCheckMaxSize is the largest file whose first bytes are read to
	// tell whether it is a PEM private key. PEM private keys are a few
	// KiB at most (an Ed25519 key is 119 bytes, a 4096-bit RSA key about
	// 3.3 KiB).
	keyCheckMaxSize = 64 << 10
	// keyHeadLen is how much of a file is read for that.
	keyHeadLen = 128
)

// PrivateKeyError is New's error for a root that holds private keys.
type PrivateKeyError struct {
	// Root is the directory that was to be served.
	Root string
	// Found is what gave the keys away: a keys/ directory or a key file.
	Found string
	// Public is the folder to serve instead: the public/ folder beside
	// the keys/ directory found; empty for a key file found elsewhere.
	Public string
}

func (e *PrivateKeyError) Error() string {
	if e.Public != "" {
		return fmt.Sprintf("liveupdate: refusing to serve %s: it holds a repository's private keys (%s), which must never be served; serve the repository's public/ folder instead: -root %s", e.Root, e.Found, e.Public)
	}
	return fmt.Sprintf("liveupdate: refusing to serve %s: %s is a private key, which must never be served; serve only a repository's public/ folder (the one beside its keys/ directory)", e.Root, e.Found)
}

// privateName reports whether a path segment is a name the server never
// serves because it names private keys: the repository's keys directory,
// or a file named like its key files ("*.key"). Vigil's public tree holds
// neither (metadata/N.ROLE.json, targets/definitions/SHA.VERSION.tar,
// targets/vigil/VERSION/OS-ARCH/SHA.vigil).
func privateName(seg string) bool {
	return seg == keysDir || strings.HasSuffix(seg, ".key")
}

// isPEMPrivateKey reports whether head, the first bytes of a file, starts
// a PEM private key of any kind: "-----BEGIN PRIVATE KEY-----" (PKCS #8, as
// vigil repo writes), "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED
// PRIVATE KEY", "OPENSSH PRIVATE KEY", "PGP PRIVATE KEY BLOCK", ...
func isPEMPrivateKey(head []byte) bool {
	head = bytes.TrimLeft(head, " \t\r\n")
	rest, ok := bytes.CutPrefix(head, []byte("-----BEGIN "))
	if !ok {
		return false
	}
	label, _, ok := bytes.Cut(rest, []byte("-----"))
	return ok && bytes.Contains(label, []byte("PRIVATE KEY")) && !bytes.ContainsAny(label, "\r\n")
}

// fileIsPrivateKey reads the start of f, a regular file of size bytes,
// and reports whether it is a PEM private key.
func fileIsPrivateKey(f *os.File, size int64) (bool, error) {
	if size > keyCheckMaxSize || size < int64(len("-----BEGIN PRIVATE KEY-----")) {
		return false, nil
	}
	var head [keyHeadLen]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	return isPEMPrivateKey(head[:n]), nil
}

// checkNoKeys refuses a root that holds private keys: a keys/ directory
// (the root being a repository directory, or holding one further down) or
// a key file, by name ("*.key") or by content (a PEM private key). It
// looks at the root itself and then at most budget entries (openRepo
// gives keyCheckEntries),
// breadth first, without following symbolic links (their targets are in
// the tree, and looked at where they are). Dot entries are skipped: they
// are never served. complete is false when the bound stopped the walk.
func checkNoKeys(root *os.Root, dir string, budget int) (complete bool, err error) {
	refuse := func(rel string, isKeysDir bool) error {
		e := &PrivateKeyError{Root: dir, Found: filepath.Join(dir, filepath.FromSlash(rel))}
		if isKeysDir {
			e.Found += string(filepath.Separator)
			e.Public = filepath.Join(dir, filepath.FromSlash(path.Dir(rel)), "public")
		}
		return e
	}
	if abs, err := filepath.Abs(dir); err == nil && filepath.Base(abs) == keysDir {
		return false, &PrivateKeyError{Root: dir, Found: dir, Public: filepath.Join(filepath.Dir(abs), "public")}
	}
	// The known layout first, whatever the budget: the root is a
	// repository directory.
	if fi, err := root.Lstat(keysDir); err == nil && fi.IsDir() {
		return false, refuse(keysDir, true)
	}
	queue := []string{"."}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		f, err := root.Open(d)
		if err != nil {
			return false, fmt.Errorf("liveupdate: checking %s for private keys: %w", dir, err)
		}
		for {
			des, rerr := f.ReadDir(256)
			for _, de := range des {
				if budget--; budget < 0 {
					f.Close()
					return false, nil
				}
				name := de.Name()
				if strings.HasPrefix(name, ".") {
					continue
				}
				rel := path.Join(d, name)
				switch t := de.Type(); {
				case t.IsDir():
					if name == keysDir {
						f.Close()
						return false, refuse(rel, true)
					}
					queue = append(queue, rel)
				case t.IsRegular():
					key := strings.HasSuffix(name, ".key")
					if !key {
						key, err = regularIsPrivateKey(root, rel)
						if err != nil {
							f.Close()
							return false, fmt.Errorf("liveupdate: checking %s for private keys: %w", dir, err)
						}
					}
					if key {
						f.Close()
						return false, refuse(rel, false)
					}
				}
			}
			if rerr == io.EOF || len(des) == 0 {
				break
			}
			if rerr != nil {
				f.Close()
				return false, fmt.Errorf("liveupdate: checking %s for private keys: %w", dir, rerr)
			}
		}
		f.Close()
	}
	return true, nil
}

// regularIsPrivateKey opens rel, listed as a regular file, and reports
// whether it is a PEM private key. A file that vanished or cannot be read
// is not one: it cannot be served either (an unreadable file is refused
// per request like anything else).
func regularIsPrivateKey(root *os.Root, rel string) (bool, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|oNonblock, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false, nil
	}
	return fileIsPrivateKey(f, fi.Size())
}
