package mirror

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	tufupdater "github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// Verify checks the repository in dir as a client that pins root does,
// with go-tuf's updater reading the files directly (file://): the root
// chain, timestamp, snapshot and targets, expiry included, then every
// target file, streamed against its signed length and hashes. It returns
// the versions of the one state it found.
func Verify(dir string, root []byte) (StateVersions, error) {
	var v StateVersions
	abs, err := filepath.Abs(dir)
	if err != nil {
		return v, err
	}
	cfg, err := repo.ClientConfig("file://"+filepath.ToSlash(abs), root)
	if err != nil {
		return v, err
	}
	cfg.DisableLocalCache = true
	cfg.Fetcher = transport.FileFetcher{Dir: abs}
	up, err := tufupdater.New(cfg)
	if err != nil {
		return v, err
	}
	if err := up.Refresh(); err != nil {
		return v, fmt.Errorf("metadata: %w", err)
	}
	tm := up.GetTrustedMetadataSet()
	targets := tm.Targets[metadata.TARGETS]
	v = StateVersions{Root: tm.Root.Signed.Version, Timestamp: tm.Timestamp.Signed.Version,
		Snapshot: tm.Snapshot.Signed.Version, Targets: targets.Signed.Version, TargetFiles: len(targets.Signed.Targets)}
	paths := make([]string, 0, len(targets.Signed.Targets))
	for p := range targets.Signed.Targets {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	buf := make([]byte, copyBufferSize)
	for _, p := range paths {
		tf := targets.Signed.Targets[p]
		rel, err := remoteTargetPath(p, tf)
		if err != nil {
			return v, err
		}
		if err := verifyFile(filepath.Join(abs, filepath.FromSlash(rel)), p, tf, buf); err != nil {
			return v, err
		}
	}
	return v, nil
}

// verifyFile streams the file at path against tf.
func verifyFile(path, target string, tf *metadata.TargetFiles, buf []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	defer f.Close()
	hs, err := repo.NewHashers(tf.Hashes)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	n, err := io.CopyBuffer(hs, io.LimitReader(f, tf.Length+1), buf)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	if n != tf.Length {
		return fmt.Errorf("target %s: %d bytes, signed as %d", target, n, tf.Length)
	}
	return verifyHashes(hs, target, tf.Hashes, false)
}
