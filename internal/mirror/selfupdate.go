package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// SelfUpdateCheck is what the self-update check found and did.
type SelfUpdateCheck struct {
	// Running is the running version (Config.Version).
	Running string `json:"running"`
	// Latest is the newest release for the platform ("" if none is
	// published), Target its target path.
	Latest string `json:"latest,omitempty"`
	Target string `json:"target,omitempty"`
	// Available reports that Latest is newer than Running (a build
	// without a release version, "devel", is older than every release).
	Available bool `json:"available"`
	// Updated reports that Executable now holds Latest; Previous is
	// where the replaced executable was kept.
	Updated    bool   `json:"updated"`
	Executable string `json:"executable,omitempty"`
	Previous   string `json:"previous,omitempty"`
	Error      string `json:"error,omitempty"`
}

// selfUpdateCheck looks for the newest release in targets (the state just
// published, or the local one) and, if asked, installs it.
func (m *Mirror) selfUpdateCheck(_ context.Context, targets map[string]*metadata.TargetFiles) *SelfUpdateCheck {
	c := &SelfUpdateCheck{Running: m.cfg.Version}
	path, latest, ok := repo.LatestRelease(targets, m.cfg.GOOS, m.cfg.GOARCH)
	if !ok {
		m.printf("Self-update: the repository has no Vigil release for %s/%s\n", m.cfg.GOOS, m.cfg.GOARCH)
		return c
	}
	c.Latest, c.Target = latest, path
	c.Available = repo.CompareReleaseVersions(latest, m.cfg.Version) > 0
	if !c.Available {
		m.printf("Self-update: running %s; the newest release is %s: up to date\n", m.cfg.Version, latest)
		return c
	}
	if m.cfg.SelfUpdateExe == "" {
		m.printf("Self-update: running %s; %s is available (%s): run with -self-update to install it\n", m.cfg.Version, latest, path)
		return c
	}
	tf := targets[path]
	src, err := m.targetLocalPath(path, tf)
	if err == nil {
		c.Executable = m.cfg.SelfUpdateExe
		c.Previous, err = SelfUpdate(m.cfg.SelfUpdateExe, src, tf, m.cfg.GOOS, m.cfg.GOARCH)
	}
	if err != nil {
		c.Error = err.Error()
		m.printf("Self-update to %s failed: %v\n", latest, err)
		return c
	}
	c.Updated = true
	m.printf("Self-update: replaced %s with %s (the previous executable is %s); it takes effect at the next start\n", c.Executable, latest, c.Previous)
	return c
}

// SelfUpdate replaces the executable exe with the release at src (a
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
func SelfUpdate(exe, src string, tf *metadata.TargetFiles, goos, goarch string) (previous string, err error) {
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
	hs, err := newHashers(tf.Hashes)
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
	if err := hs.verify(src, tf.Hashes, false); err != nil {
		return "", fmt.Errorf("self-update: %w", err)
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
	_ = syncDir(dir)
	return previous, nil
}
