package publish

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// DefaultDeltaReleases is how many previous definitions releases a new
// one gets deltas from unless config.json's delta_releases says
// otherwise: 30, what covers 30 days when a release is published a day
// (ClamAV's daily cadence). An agent further behind downloads the full
// release.
const DefaultDeltaReleases = 30

// MaxDeltaReleases bounds delta_releases: each delta costs a diff of two
// releases at every publish.
const MaxDeltaReleases = 100

func checkDeltaReleases(k int) error {
	if k < 0 || k > MaxDeltaReleases {
		return fmt.Errorf("delta releases %d: want 0 (no deltas) to %d previous definitions releases", k, MaxDeltaReleases)
	}
	return nil
}

// Published is what a publish published.
type Published struct {
	Targets []string         // the staged targets, by path
	Deltas  []PublishedDelta // deltas made to the new definitions release, newest base first
	Skipped []SkippedDelta   // deltas not made, and why
	Dropped []string         // superseded deltas no longer in the targets metadata, by path
}

// PublishedDelta is a delta target a publish made.
type PublishedDelta struct {
	Path, Base, Version string
	Length              int64 // the delta's
	FullLength          int64 // the full release's (its bundle's)
}

// SkippedDelta is a delta a publish did not make.
type SkippedDelta struct {
	Base, Version, Reason string
}

// addDeltas adds to targets (published and staged, after the publish)
// the deltas to the newest definitions release among staged, if any,
// from the k definitions releases before it, with their content in
// content (public path -> data); it drops the deltas to older releases,
// which no agent needs any more (agents update to the latest release;
// the files stay under public/ for clients holding older metadata).
//
// A delta is made from the bundles of the base (read from public/ or
// staged/, checked against its signed length and SHA-256) and of the new
// release, checked by applying it and comparing the bundle made of the
// result with the new release's, and published only when smaller than
// the full release.
func (r *Repo) addDeltas(targets, staged map[string]*metadata.TargetFiles, stagedData, content map[string][]byte,
	k int, res *Published) error {
	var newest repo.Custom
	var newestPath string
	for p, tf := range staged {
		if c, ok := repo.TargetCustom(p, tf); ok && c.Kind == repo.KindDefinitions &&
			(newestPath == "" || repo.CompareDefinitionsVersions(c.Version, newest.Version) > 0) {
			newest, newestPath = c, p
		}
	}
	if newestPath == "" {
		return nil
	}
	var bases []repo.Custom
	for p, tf := range targets {
		c, ok := repo.TargetCustom(p, tf)
		switch {
		case !ok:
		case c.Kind == repo.KindDelta && c.Version != newest.Version:
			delete(targets, p)
			res.Dropped = append(res.Dropped, p)
		case c.Kind == repo.KindDefinitions && repo.CompareDefinitionsVersions(c.Version, newest.Version) < 0:
			bases = append(bases, c)
		}
	}
	slices.Sort(res.Dropped)
	slices.SortFunc(bases, func(a, b repo.Custom) int { return repo.CompareDefinitionsVersions(b.Version, a.Version) })
	if len(bases) > k {
		bases = bases[:k]
	}
	if len(bases) == 0 {
		return nil
	}
	full := stagedData[newestPath]
	result, err := repo.BundleFiles(full)
	if err != nil {
		return fmt.Errorf("definitions %s: %w", newest.Version, err)
	}
	for _, base := range bases {
		bundle, err := r.targetContent(base.TargetPath(), targets[base.TargetPath()], stagedData)
		if err != nil {
			return fmt.Errorf("delta from %s to %s: %w", base.Version, newest.Version, err)
		}
		baseFiles, err := repo.BundleFiles(bundle)
		if err != nil {
			return fmt.Errorf("delta from %s to %s: definitions %s: %w", base.Version, newest.Version, base.Version, err)
		}
		d, err := delta.Make(baseFiles, result)
		if err != nil {
			res.Skipped = append(res.Skipped, SkippedDelta{base.Version, newest.Version, err.Error()})
			continue
		}
		if len(d) >= len(full) {
			res.Skipped = append(res.Skipped, SkippedDelta{base.Version, newest.Version,
				fmt.Sprintf("%d bytes, not smaller than the full release (%d bytes)", len(d), len(full))})
			continue
		}
		// The rule every client follows, checked before anything is signed.
		got, err := delta.Apply(d, baseFiles)
		if err == nil {
			var b []byte
			if b, err = repo.MakeBundle(got); err == nil && !bytes.Equal(b, full) {
				err = fmt.Errorf("its result is not definitions %s", newest.Version)
			}
		}
		if err != nil {
			return fmt.Errorf("delta from %s to %s does not apply: %w", base.Version, newest.Version, err)
		}
		c := repo.Custom{Kind: repo.KindDelta, Version: newest.Version, Base: base.Version}
		p := c.TargetPath()
		tf, err := metadata.TargetFile().FromBytes(p, d, "sha256")
		if err != nil {
			return err
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return err
		}
		rm := json.RawMessage(raw)
		tf.Custom = &rm
		targets[p] = tf
		content[r.publicTargetPath(p, tf.Hashes["sha256"])] = d
		res.Deltas = append(res.Deltas, PublishedDelta{Path: p, Base: base.Version, Version: newest.Version,
			Length: int64(len(d)), FullLength: int64(len(full))})
	}
	return nil
}

// targetContent returns the content of target p, staged or published,
// checked against its length and hashes.
func (r *Repo) targetContent(p string, tf *metadata.TargetFiles, stagedData map[string][]byte) ([]byte, error) {
	if b, ok := stagedData[p]; ok {
		return b, nil
	}
	file := r.publicTargetPath(p, tf.Hashes["sha256"])
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := tf.VerifyLengthHashes(b); err != nil {
		return nil, fmt.Errorf("%s does not match its signed metadata: %w", file, err)
	}
	return b, nil
}
