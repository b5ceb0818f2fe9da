package definitions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// Release is a Vigil release fetched and verified by FetchRelease.
type Release struct {
	Version string
	// Path is the verified file, in the updater's download directory; the
	// caller removes it. "" when nothing was downloaded (Current).
	Path string
	// Target is the release's signed target (length, hashes, custom),
	// to verify the file again when it is copied (selfupdate.Replace).
	Target *metadata.TargetFiles
	// Server is the server (password redacted) that served it.
	Server string
	// Current is set when the release asked for is the running version
	// (or, with no version asked for, when the newest is not newer than
	// it): nothing was downloaded.
	Current bool
	// Avoided is set when no version was asked for and the newest is the
	// one to avoid: nothing was downloaded.
	Avoided bool
	// Skipped lists the servers tried before Server and why each failed.
	Skipped []ServerError
}

// FetchRelease fetches the Vigil release version (the newest for
// goos/goarch when version is "") from the LiveUpdate servers, in order,
// with the same TUF verification as Update (the same trusted metadata
// store and rules), and verifies the downloaded file against its signed
// length and hashes. running is the version of the running executable:
// when the release is that version, or version is "" and the newest is
// not newer, nothing is downloaded and Release.Current is set; likewise,
// with Release.Avoided, when version is "" and the newest is avoid (a
// release that failed before). A server
// whose metadata or file fails verification is skipped for the next one;
// when every server fails, the error names each server and why. It shares Update's lock.
func (u *Updater) FetchRelease(ctx context.Context, version, goos, goarch, running, avoid string) (Release, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	unlock, err := lockState(filepath.Join(u.stateDir, lockFile))
	if err != nil {
		return Release{}, err
	}
	defer unlock()
	var skipped []ServerError
	for _, s := range u.servers {
		if err := ctx.Err(); err != nil {
			return Release{Skipped: skipped}, fmt.Errorf("release fetch: %w", context.Cause(ctx))
		}
		rel, err := u.releaseFromServer(ctx, s, version, goos, goarch, running, avoid)
		if err != nil {
			if ctx.Err() != nil {
				return Release{Skipped: skipped}, fmt.Errorf("release fetch: %s: %w", s.shown, context.Cause(ctx))
			}
			u.log.Warn("release: server skipped", "server", s.shown, "err", err)
			skipped = append(skipped, ServerError{Server: s.shown, Err: err})
			continue
		}
		rel.Server, rel.Skipped = s.shown, skipped
		return rel, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fetching the release failed on every server, keeping version %s", running)
	for i, s := range skipped {
		fmt.Fprintf(&b, "%s[%d] %s", map[bool]string{true: ": ", false: "; "}[i == 0], i+1, s.Error())
	}
	return Release{Skipped: skipped}, errors.New(b.String())
}

func (u *Updater) releaseFromServer(ctx context.Context, s server, version, goos, goarch, running, avoid string) (Release, error) {
	up, _, end, err := u.refresh(ctx, s, nil)
	if err != nil {
		return Release{}, err
	}
	defer end()
	targets := up.GetTopLevelTargets()
	var path string
	if version == "" {
		var ok bool
		path, version, ok = repo.LatestRelease(targets, goos, goarch)
		if !ok {
			return Release{}, fmt.Errorf("the repository lists no release for %s/%s", goos, goarch)
		}
		if repo.CompareReleaseVersions(version, running) <= 0 {
			return Release{Version: version, Current: true}, nil
		}
		if version == avoid {
			return Release{Version: version, Avoided: true}, nil
		}
	} else {
		if version == running {
			return Release{Version: version, Current: true}, nil
		}
		path = repo.ReleasePath(version, goos, goarch)
		if _, ok := targets[path]; !ok {
			return Release{}, fmt.Errorf("the repository lists no release %s for %s/%s (no target %s)", version, goos, goarch, path)
		}
	}
	tf := targets[path]
	tmp, err := os.CreateTemp(u.dlDir, "release-*")
	if err != nil {
		return Release{}, err
	}
	tmp.Close()
	name, _, err := up.DownloadTarget(tf, tmp.Name(), "")
	if err != nil {
		os.Remove(tmp.Name())
		return Release{}, explainTarget(path, err)
	}
	if name != tmp.Name() {
		os.Remove(tmp.Name())
		return Release{}, errors.New("release download: go-tuf wrote the target elsewhere: " + name)
	}
	return Release{Version: version, Path: name, Target: tf}, nil
}
