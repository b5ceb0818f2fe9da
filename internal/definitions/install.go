package definitions

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// Names inside DefinitionsDir.
const (
	currentLink    = "current"
	previousLink   = "previous"
	releasesSubdir = "releases"
	stagingPrefix  = ".staging-" // a release being extracted
	tmpLinkPrefix  = ".tmp-"     // a link about to be renamed over current or previous
	trashPrefix    = ".trash-"   // a release being deleted
)

// readLink returns the version a link in DefinitionsDir points to, "" if
// the link does not exist.
func (u *Updater) readLink(name string) (string, error) {
	p := filepath.Join(u.defs, name)
	target, err := os.Readlink(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("definitions: %s is not a link to a release: %w", p, err)
	}
	dir, v := path.Split(filepath.ToSlash(target))
	if dir != releasesSubdir+"/" || repo.CheckDefinitionsVersion(v) != nil {
		return "", fmt.Errorf("definitions: %s points to %q, not to %s/VERSION", p, target, releasesSubdir)
	}
	fi, err := os.Stat(filepath.Join(u.defs, releasesSubdir, v))
	if err != nil {
		return "", fmt.Errorf("definitions: %s points to a missing release: %w", p, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("definitions: %s points to %q, not a directory", p, target)
	}
	return v, nil
}

// install extracts a verified bundle as release version and makes it
// current. Every step leaves current pointing at a complete release.
func (u *Updater) install(version string, bundle []byte) error {
	staging, err := os.MkdirTemp(u.defs, stagingPrefix+version+"-")
	if err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	moved := false
	defer func() {
		if !moved {
			_ = os.RemoveAll(staging)
		}
	}()
	if err := os.Chmod(staging, 0o755); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	names, err := repo.ExtractBundle(bytes.NewReader(bundle), staging)
	if err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	for _, name := range names {
		if err := syncPath(filepath.Join(staging, name)); err != nil {
			return fmt.Errorf("installing definitions %s: %w", version, err)
		}
	}
	if err := syncPath(staging); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	u.hook("extracted")

	releases := filepath.Join(u.defs, releasesSubdir)
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	dest := filepath.Join(releases, version)
	if _, err := os.Lstat(dest); err == nil {
		// Left by an interrupted update and not current (it would not be
		// newer than the installed version otherwise): replace it.
		if err := u.discard(dest); err != nil {
			return fmt.Errorf("installing definitions %s: %w", version, err)
		}
	}
	if err := os.Rename(staging, dest); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	moved = true
	if err := syncPath(releases); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	if err := syncPath(u.defs); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	u.hook("renamed")

	old, err := u.readLink(currentLink)
	if err != nil {
		u.log.Warn("definitions: replacing unusable current link", "err", err)
		old = ""
	}
	if old != "" && old != version {
		if err := u.swapLink(previousLink, old); err != nil {
			return fmt.Errorf("installing definitions %s: keeping the previous release: %w", version, err)
		}
	}
	u.hook("previous")
	if err := u.swapLink(currentLink, version); err != nil {
		return fmt.Errorf("installing definitions %s: switching to it: %w", version, err)
	}
	if err := syncPath(u.defs); err != nil {
		return fmt.Errorf("installing definitions %s: %w", version, err)
	}
	u.hook("switched")
	u.prune()
	return nil
}

// swapLink atomically points link name at releases/version: a new link is
// created under a temporary name and renamed over the old one.
func (u *Updater) swapLink(name, version string) error {
	tmp := filepath.Join(u.defs, tmpLinkPrefix+name)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(releasesSubdir+"/"+version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(u.defs, name)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// discard deletes a directory in DefinitionsDir: it is first renamed to a
// trash name, so that a half-deleted directory is never taken for a
// release.
func (u *Updater) discard(dir string) error {
	trash, err := os.MkdirTemp(u.defs, trashPrefix)
	if err != nil {
		return err
	}
	if err := os.Rename(dir, filepath.Join(trash, "x")); err != nil {
		_ = os.Remove(trash)
		return err
	}
	return os.RemoveAll(trash)
}

// prune deletes the releases that neither current nor previous points to,
// and a previous link to a missing release. It does nothing if current is
// unusable: the releases are then left for an administrator to look at.
func (u *Updater) prune() {
	cur, err := u.Installed()
	if err != nil {
		return
	}
	prev, err := u.readLink(previousLink)
	if err != nil {
		u.log.Warn("definitions: removing unusable previous link", "err", err)
		if err := os.Remove(filepath.Join(u.defs, previousLink)); err != nil {
			u.log.Warn("definitions: cleanup", "err", err)
		}
		prev = ""
	}
	entries, err := os.ReadDir(filepath.Join(u.defs, releasesSubdir))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			u.log.Warn("definitions: cleanup", "err", err)
		}
		return
	}
	for _, e := range entries {
		if e.Name() == cur || e.Name() == prev {
			continue
		}
		if err := u.discard(filepath.Join(u.defs, releasesSubdir, e.Name())); err != nil {
			u.log.Warn("definitions: cleanup: deleting an old release", "release", e.Name(), "err", err)
		}
	}
}

// cleanup removes what an interrupted update left behind: staging and
// trash directories, temporary links, unreferenced releases, download
// temporaries and go-tuf's temporary metadata files. Errors are logged:
// leftovers waste space but do no harm.
func (u *Updater) cleanup() {
	if entries, err := os.ReadDir(u.defs); err == nil {
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, stagingPrefix) || strings.HasPrefix(n, tmpLinkPrefix) || strings.HasPrefix(n, trashPrefix) {
				if err := os.RemoveAll(filepath.Join(u.defs, n)); err != nil {
					u.log.Warn("definitions: cleanup", "err", err)
				}
			}
		}
	}
	u.prune()
	if entries, err := os.ReadDir(u.dlDir); err == nil {
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(u.dlDir, e.Name())); err != nil {
				u.log.Warn("definitions: cleanup", "err", err)
			}
		}
	}
	if entries, err := os.ReadDir(u.metaDir); err == nil {
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, "tuf_tmp") {
				_ = os.Remove(filepath.Join(u.metaDir, n))
				continue
			}
			u.checkStoredMetadata(n)
		}
	}
}

// checkStoredMetadata removes a stored top-level metadata file that does
// not even parse (a torn write): go-tuf would otherwise fail on it forever,
// whereas without it the file is simply fetched again. Files that parse
// are left to go-tuf, which verifies them.
func (u *Updater) checkStoredMetadata(name string) {
	var parse func([]byte) error
	switch name {
	case metadata.TIMESTAMP + ".json":
		parse = func(b []byte) error { _, err := metadata.Timestamp().FromBytes(b); return err }
	case metadata.SNAPSHOT + ".json":
		parse = func(b []byte) error { _, err := metadata.Snapshot().FromBytes(b); return err }
	case metadata.TARGETS + ".json":
		parse = func(b []byte) error { _, err := metadata.Targets().FromBytes(b); return err }
	default:
		return // root.json is checked in trustedRoot
	}
	p := filepath.Join(u.metaDir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		return
	}
	if err := parse(b); err != nil {
		u.log.Warn("definitions: removing unreadable stored metadata", "path", p, "err", err)
		_ = os.Remove(p)
	}
}

// syncPath fsyncs a file or directory.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncMetadata makes the metadata go-tuf has just stored durable. go-tuf
// renames a temporary file into place without syncing it; cleanup copes
// with a torn file, this makes one unlikely.
func syncMetadata(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			_ = syncPath(filepath.Join(dir, e.Name()))
		}
	}
	_ = syncPath(dir)
}
