package publish

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/signatures"
)

// discard is a signatures.Sink that keeps nothing: the Set LoadTo
// returns counts what it took.
type discard struct{}

func (discard) AddHash(*signatures.HashSig) error { return nil }
func (discard) AddBody(*signatures.BodySig) error { return nil }

// loadBundle loads the signatures of a definitions bundle as an agent
// that installs it loads them: extracted (repo.ExtractBundle) into a
// private temporary directory, read by signatures.LoadTo. The hash and
// body signatures are counted, not kept. The temporary directory is
// removed before returning; errors name the release as label, not it.
func loadBundle(bundle []byte, label string) (*signatures.Set, error) {
	tmp, err := os.MkdirTemp("", "vigil-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := repo.ExtractBundle(bytes.NewReader(bundle), tmp); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	set, err := signatures.LoadTo(tmp, signatures.LoadOptions{}, discard{})
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, tmp) {
			msg = strings.ReplaceAll(msg, tmp, label)
		} else {
			msg = label + ": " + msg
		}
		return nil, errors.New(msg)
	}
	return set, nil
}

// CountSignatures counts what set holds as Custom.Signatures records
// it: the figures of set.WriteDebug's summary, and as many not-matched
// signatures and skipped lines as it lists.
func CountSignatures(set *signatures.Set) repo.SignatureCount {
	return repo.SignatureCount{
		Hash:    set.HashCount(),
		Body:    set.BodyCount(),
		Logical: len(set.Logical),
		ClamAV:  set.ClamAVCount(),
		// WriteDebug lists each logical signature the engine does not
		// evaluate as not matched.
		NotMatched:   set.NotMatched(),
		Skipped:      len(set.Skipped),
		IgnoredFiles: len(set.IgnoredFiles),
	}
}

// ReleaseSignatures are the signatures of a definitions release.
type ReleaseSignatures struct {
	Target TargetStatus
	Staged bool // staged, not yet published
	// Set is what signatures.LoadTo loads from the release's files, the
	// hash and body signatures counted but not kept: Set.WriteDebug lists
	// what is skipped, ignored and not matched, as `vigil scan -debug`
	// does.
	Set *signatures.Set
}

// DefinitionsSignatures loads the signatures of definitions release
// version, published or staged (""; the newest of them), from the
// repository's copy of its bundle, checked against its length and
// SHA-256 first. A release whose signatures do not load (one staged with
// AddDefinitionsData, which does not load them) is an error naming the
// file and line.
func (r *Repo) DefinitionsSignatures(version string) (*ReleaseSignatures, error) {
	if version != "" {
		if err := repo.CheckDefinitionsVersion(version); err != nil {
			return nil, err
		}
	}
	var (
		rs     ReleaseSignatures
		bundle []byte
	)
	err := r.locked(func() error {
		st, err := r.load()
		if err != nil {
			return err
		}
		staged, err := r.loadStaged()
		if err != nil {
			return err
		}
		var found *metadata.TargetFiles
		consider := func(targets map[string]*metadata.TargetFiles, isStaged bool) {
			for p, tf := range targets {
				c, ok := repo.TargetCustom(p, tf)
				if !ok || c.Kind != repo.KindDefinitions {
					continue
				}
				if version != "" && repo.CompareDefinitionsVersions(c.Version, version) != 0 {
					continue
				}
				if found == nil || repo.CompareDefinitionsVersions(c.Version, rs.Target.Custom.Version) > 0 {
					found, rs.Target, rs.Staged = tf, targetStatus(p, c, tf), isStaged
				}
			}
		}
		consider(st.targets.Signed.Targets, false)
		consider(staged.Signed.Targets, true)
		if found == nil {
			if version == "" {
				return errors.New("no definitions release is published or staged")
			}
			return fmt.Errorf("definitions %s: not published or staged", version)
		}
		content := r.publicTargetPath(rs.Target.Path, found.Hashes["sha256"])
		if rs.Staged {
			content = r.stagedContentPath(rs.Target.Path)
		}
		if bundle, err = os.ReadFile(content); err != nil {
			return fmt.Errorf("definitions %s: %w", rs.Target.Custom.Version, err)
		}
		if err := found.VerifyLengthHashes(bundle); err != nil {
			return fmt.Errorf("definitions %s: %s does not match its metadata: %w", rs.Target.Custom.Version, content, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("signatures: %w", err)
	}
	label := fmt.Sprintf("definitions %s (%s)", rs.Target.Custom.Version, rs.Target.Path)
	if rs.Set, err = loadBundle(bundle, label); err != nil {
		return nil, fmt.Errorf("signatures: the release does not load: %w", err)
	}
	return &rs, nil
}
