// Package selfupdate replaces the running vigil executable with a newer
// release from a verified repository (see docs/mirror.md): the release
// file is verified again against its signed length and hashes, checked to
// be an executable for the platform, written next to the executable and
// renamed over it, so the executable is at every moment the old one or
// the new one, complete; the old one is kept as FILE.old. The mirror
// (`vigil mirror -self-update`) and the agent's upgrade command
// (internal/agent, docs/selfupdate.md, which also tries the new
// executable and puts FILE.old back when it fails) decide when.
package selfupdate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// Replace replaces the executable exe with the release at src (a
// target file of the local repository), verified again against tf, its
// signed length and hashes, and checked to be an executable for
// goos/goarch. The new file is written next to exe under a temporary
// name, synced, made mode 0755, and renamed over exe, so exe is at every
// moment either the old executable or the new one, complete. The old one
// is kept as exe+".old" (a hard link made before the rename; an older
// ".old" is replaced), to go back with `mv vigil.old vigil`. If exe is a
// symbolic link, the file it points to is replaced. A running process
// keeps running the old code (it holds the old file); the new version
// takes effect at the next start. It returns the path of the kept copy
// ("" if none could be kept).
func Replace(exe, src string, tf *metadata.TargetFiles, goos, goarch string) (previous string, err error) {
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("self-update: %s is not a regular file", real)
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("self-update: the release: %w", err)
	}
	defer in.Close()
	dir := filepath.Dir(real)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(real)+".new-*")
	if err != nil {
		return "", fmt.Errorf("self-update: cannot write next to %s: %w", real, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	hs, err := repo.NewHashers(tf.Hashes)
	if err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	n, err := io.Copy(io.MultiWriter(tmp, hs), io.LimitReader(in, tf.Length+1))
	if err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	if n != tf.Length {
		return "", fmt.Errorf("self-update: %s is %d bytes, the release is signed as %d", src, n, tf.Length)
	}
	if alg, got, wanted, ok := hs.Mismatch(tf.Hashes); !ok {
		return "", fmt.Errorf("self-update: %s refused: does not match its signed %s hash (got %s, want %s)", src, alg, got, wanted)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	if err := repo.CheckBinary(tmp.Name(), goos, goarch); err != nil {
		return "", fmt.Errorf("self-update: the release is not usable here: %w", err)
	}
	previous = real + ".old"
	if err := os.Remove(previous); err != nil && !errors.Is(err, fs.ErrNotExist) {
		previous = ""
	} else if err := os.Link(real, previous); err != nil {
		previous = ""
	}
	if err := os.Rename(tmp.Name(), real); err != nil {
		return "", fmt.Errorf("self-update: %w", err)
	}
	tmp = nil
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort where directories cannot be synced
		d.Close()
	}
	return previous, nil
}
