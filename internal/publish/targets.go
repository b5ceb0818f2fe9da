package publish

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// AddDefinitions stages definitions release version: a bundle of the
// signature files at paths, each under its base name, and of the files
// unpacked from the ClamAV containers (.cvd, .cld, .cud) among them,
// checked against ClamAV's keys (AddDefinitionsFrom with the default
// options). The version must be greater than that of every definitions
// release published or staged. Nothing is served until Publish.
func (r *Repo) AddDefinitions(version string, paths []string) error {
	_, err := r.AddDefinitionsFrom(version, paths, DefinitionsOptions{})
	return err
}

// DefinitionsOptions say how AddDefinitionsFrom treats ClamAV containers.
type DefinitionsOptions struct {
	// Keys check the containers' signatures; nil: ClamAV's published
	// keys (cvd.ClamAVKeys).
	Keys *cvd.Keys
	// Limits bound a container; zero: cvd.DefaultLimits.
	Limits cvd.Limits
	// Keep says which files of a container go into the release (the
	// others are listed in Added.Left); nil: all of them.
	Keep func(name string) bool
}

// Added is what AddDefinitionsFrom staged.
type Added struct {
	Path       string           // the target path
	Files      []string         // the files of the release, by name
	Containers []repo.Container // the containers unpacked, in the order given
	Left       []string         // files of containers left out, as "main.cvd: main.info"
	// Signatures counts the release's signatures as the agent loads
	// them (also in the release's custom metadata).
	Signatures repo.SignatureCount
}

// AddDefinitionsFrom is AddDefinitions with options. Every container is
// read and checked in full (cvd.Open: header, MD5, signatures, .info,
// limits) before anything is staged: one bad container stages nothing.
// The release's custom metadata lists each container with its header's
// version, functionality level, signature count and build time.
//
// The release's bundle is then loaded as an agent that installs it loads
// it (signatures.LoadTo): definitions that do not load (a line ClamAV
// refuses, no database file) stage nothing, and the custom metadata
// counts the signatures loaded, not matched and skipped
// (repo.SignatureCount; DefinitionsSignatures lists them).
func (r *Repo) AddDefinitionsFrom(version string, paths []string, o DefinitionsOptions) (*Added, error) {
	if err := repo.CheckDefinitionsVersion(version); err != nil {
		return nil, fmt.Errorf("add definitions: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("add definitions: a definitions release needs at least one file")
	}
	keys := cvd.ClamAVKeys()
	if o.Keys != nil {
		keys = *o.Keys
	}
	lim := o.Limits
	if lim == (cvd.Limits{}) {
		lim = cvd.DefaultLimits
	}
	added := &Added{}
	files := map[string][]byte{}
	from := map[string]string{}
	put := func(name, src string, data []byte) error {
		if err := repo.CheckBundleName(name); err != nil {
			return fmt.Errorf("add definitions: %s: %w", src, err)
		}
		if prev, dup := from[name]; dup {
			return fmt.Errorf("add definitions: %s: a file named %s is already in the release (from %s)", src, name, prev)
		}
		if len(files) >= repo.MaxBundleFiles {
			return fmt.Errorf("add definitions: more than %d files: a bundle holds at most %d", repo.MaxBundleFiles, repo.MaxBundleFiles)
		}
		files[name], from[name] = data, src
		return nil
	}
	for _, p := range paths {
		if _, ok := cvd.KindOf(p); ok {
			c, err := cvd.Open(p, keys, lim)
			if err != nil {
				return nil, fmt.Errorf("add definitions: container refused, nothing staged: %w", err)
			}
			for _, f := range c.Files {
				if o.Keep != nil && !o.Keep(f.Name) {
					added.Left = append(added.Left, c.Name+": "+f.Name)
					continue
				}
				if err := put(f.Name, p, f.Data); err != nil {
					return nil, err
				}
			}
			h := c.Header
			added.Containers = append(added.Containers, repo.Container{Name: c.Name, Version: h.Version, FLevel: h.FLevel, Signatures: h.Signatures, Built: h.BuildTime()})
			continue
		}
		b, err := readDefinitionsFile(p)
		if err != nil {
			return nil, err
		}
		if err := put(filepath.Base(p), p, b); err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("add definitions: no signature file to publish (every file of the containers was left out: %s)", strings.Join(added.Left, ", "))
	}
	for name := range files {
		added.Files = append(added.Files, name)
	}
	slices.Sort(added.Files)
	bundle, err := repo.MakeBundle(files)
	if err != nil {
		return nil, fmt.Errorf("add definitions: %w", err)
	}
	set, err := loadBundle(bundle, "definitions "+version)
	if err != nil {
		return nil, fmt.Errorf("add definitions: the signatures do not load, nothing staged: %w", err)
	}
	added.Signatures = CountSignatures(set)
	c := repo.Custom{Kind: repo.KindDefinitions, Version: version, Containers: added.Containers, Signatures: &added.Signatures}
	if err := r.addDefinitions(c, bundle); err != nil {
		return nil, err
	}
	added.Path = repo.DefinitionsPath(version)
	return added, nil
}

// readDefinitionsFile reads a plain signature file within the bundle's
// limits.
func readDefinitionsFile(p string) ([]byte, error) {
	if err := repo.CheckBundleName(filepath.Base(p)); err != nil {
		return nil, fmt.Errorf("add definitions: %s: %w", p, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("add definitions: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("add definitions: %s: not a regular file", p)
	}
	if st.Size() > repo.MaxBundleFileSize {
		return nil, fmt.Errorf("add definitions: %s: %d bytes, more than the limit of %d", p, st.Size(), repo.MaxBundleFileSize)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("add definitions: %w", err)
	}
	return b, nil
}

// AddDefinitionsData is AddDefinitions with the files given in memory,
// by name. It does not load them (tests publish any bytes with it): the
// release carries no signature counts, and DefinitionsSignatures reports
// files that do not load.
func (r *Repo) AddDefinitionsData(version string, files map[string][]byte) error {
	if err := repo.CheckDefinitionsVersion(version); err != nil {
		return fmt.Errorf("add definitions: %w", err)
	}
	bundle, err := repo.MakeBundle(files)
	if err != nil {
		return fmt.Errorf("add definitions: %w", err)
	}
	return r.addDefinitions(repo.Custom{Kind: repo.KindDefinitions, Version: version}, bundle)
}

// addDefinitions stages bundle as the definitions release c describes.
func (r *Repo) addDefinitions(c repo.Custom, bundle []byte) error {
	version := c.Version
	err := r.stage(c, bundle, func(p, where string, other repo.Custom) error {
		if other.Kind == repo.KindDefinitions && repo.CompareDefinitionsVersions(version, other.Version) <= 0 {
			return fmt.Errorf("definitions version %s is not newer than %s (%s)", version, other.Version, where)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add definitions: %w", err)
	}
	return nil
}

// AddRelease stages the vigil executable at binaryPath as release version
// (v1.2.3) for goos/goarch. A release target, once staged or published,
// cannot be replaced. AddRelease does not look inside the file (tests use
// placeholders); the CLI checks it with repo.CheckBinary.
func (r *Repo) AddRelease(version, goos, goarch, binaryPath string) error {
	if err := repo.CheckReleaseVersion(version); err != nil {
		return fmt.Errorf("add release: %w", err)
	}
	if err := repo.CheckPlatform(goos, goarch); err != nil {
		return fmt.Errorf("add release: %w", err)
	}
	st, err := os.Stat(binaryPath)
	if err != nil {
		return fmt.Errorf("add release: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("add release: %s: not a regular file", binaryPath)
	}
	if st.Size() == 0 {
		return fmt.Errorf("add release: %s: empty file", binaryPath)
	}
	data, err := os.ReadFile(binaryPath)
	if err != nil {
		return fmt.Errorf("add release: %w", err)
	}
	c := repo.Custom{Kind: repo.KindVigil, Version: version, OS: goos, Arch: goarch}
	if err := r.stage(c, data, nil); err != nil {
		return fmt.Errorf("add release: %w", err)
	}
	return nil
}

// stage adds a target to staged/: its content, then staged/targets.json.
// check, if not nil, is called with every published and staged target.
func (r *Repo) stage(c repo.Custom, data []byte, check func(path, where string, other repo.Custom) error) error {
	p := c.TargetPath()
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return r.locked(func() error {
		st, err := r.load()
		if err != nil {
			return err
		}
		staged, err := r.loadStaged()
		if err != nil {
			return err
		}
		if _, ok := st.targets.Signed.Targets[p]; ok {
			return fmt.Errorf("%s is already published; targets cannot be replaced", p)
		}
		if _, ok := staged.Signed.Targets[p]; ok {
			return fmt.Errorf("%s is already staged; publish it, or remove %s to start over", p, filepath.Join(r.dir, stagedDir))
		}
		if check != nil {
			for _, set := range []struct {
				where   string
				targets map[string]*metadata.TargetFiles
			}{{"published", st.targets.Signed.Targets}, {"staged", staged.Signed.Targets}} {
				paths := make([]string, 0, len(set.targets))
				for q := range set.targets {
					paths = append(paths, q)
				}
				slices.Sort(paths)
				for _, q := range paths {
					if oc, ok := repo.TargetCustom(q, set.targets[q]); ok {
						if err := check(q, set.where, oc); err != nil {
							return err
						}
					}
				}
			}
		}
		tf, err := metadata.TargetFile().FromBytes(p, data, "sha256")
		if err != nil {
			return err
		}
		rm := json.RawMessage(raw)
		tf.Custom = &rm
		staged.Signed.Targets[p] = tf
		b, err := staged.ToBytes(true)
		if err != nil {
			return err
		}
		cp := r.stagedContentPath(p)
		if err := os.MkdirAll(filepath.Dir(cp), 0o700); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(cp, data, 0o600); err != nil {
			return err
		}
		return atomicfile.WriteFile(r.stagedPath(), b, 0o600)
	})
}

func (r *Repo) stagedContentPath(p string) string {
	return filepath.Join(r.stagedTargetsDir(), filepath.FromSlash(p))
}

// loadStaged reads staged/targets.json, an unsigned targets document
// listing the targets added since the last publish.
func (r *Repo) loadStaged() (*metadata.Metadata[metadata.TargetsType], error) {
	b, err := os.ReadFile(r.stagedPath())
	if errors.Is(err, fs.ErrNotExist) {
		return metadata.Targets(), nil
	}
	if err != nil {
		return nil, err
	}
	m, err := metadata.Targets().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.stagedPath(), err)
	}
	for p, tf := range m.Signed.Targets {
		if _, ok := repo.TargetCustom(p, tf); !ok || len(tf.Hashes["sha256"]) != 32 {
			return nil, fmt.Errorf("%s: target %s: bad path, custom metadata or hash", r.stagedPath(), p)
		}
	}
	return m, nil
}

func (r *Repo) clearStaged() error {
	if err := os.Remove(r.stagedPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(r.stagedTargetsDir())
}

// RoleStatus is the version and expiry of a role's current metadata.
type RoleStatus struct {
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
}

// TargetStatus describes a published or staged target.
type TargetStatus struct {
	Path   string      `json:"path"`
	Custom repo.Custom `json:"custom"`
	Length int64       `json:"length"`
	SHA256 string      `json:"sha256"` // hex
}

// Status is what a repository publishes and has staged.
type Status struct {
	Root        RoleStatus     `json:"root"`
	Targets     RoleStatus     `json:"targets"`
	Snapshot    RoleStatus     `json:"snapshot"`
	Timestamp   RoleStatus     `json:"timestamp"`
	Definitions []TargetStatus `json:"definitions"` // published, oldest first
	Deltas      []TargetStatus `json:"deltas"`      // published deltas, by version, then base, newest first
	Releases    []TargetStatus `json:"releases"`    // published, by version, then path
	Other       []string       `json:"other"`       // published targets that are neither
	Staged      []TargetStatus `json:"staged"`      // added, not yet published
}

// Status reports the published and staged state.
func (r *Repo) Status() (*Status, error) {
	var s Status
	err := r.locked(func() error {
		st, err := r.load()
		if err != nil {
			return err
		}
		staged, err := r.loadStaged()
		if err != nil {
			return err
		}
		s.Root = RoleStatus{st.root.Signed.Version, st.root.Signed.Expires}
		s.Targets = RoleStatus{st.targets.Signed.Version, st.targets.Signed.Expires}
		s.Snapshot = RoleStatus{st.snapshot.Signed.Version, st.snapshot.Signed.Expires}
		s.Timestamp = RoleStatus{st.timestamp.Signed.Version, st.timestamp.Signed.Expires}
		for p, tf := range st.targets.Signed.Targets {
			c, ok := repo.TargetCustom(p, tf)
			switch {
			case !ok:
				s.Other = append(s.Other, p)
			case c.Kind == repo.KindDefinitions:
				s.Definitions = append(s.Definitions, targetStatus(p, c, tf))
			case c.Kind == repo.KindDelta:
				s.Deltas = append(s.Deltas, targetStatus(p, c, tf))
			default:
				s.Releases = append(s.Releases, targetStatus(p, c, tf))
			}
		}
		for p, tf := range staged.Signed.Targets {
			c, _ := repo.TargetCustom(p, tf)
			s.Staged = append(s.Staged, targetStatus(p, c, tf))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(s.Definitions, func(a, b TargetStatus) int {
		return repo.CompareDefinitionsVersions(a.Custom.Version, b.Custom.Version)
	})
	slices.SortFunc(s.Deltas, func(a, b TargetStatus) int {
		if c := repo.CompareDefinitionsVersions(b.Custom.Version, a.Custom.Version); c != 0 {
			return c
		}
		return repo.CompareDefinitionsVersions(b.Custom.Base, a.Custom.Base)
	})
	slices.SortFunc(s.Releases, func(a, b TargetStatus) int {
		if c := repo.CompareReleaseVersions(a.Custom.Version, b.Custom.Version); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	slices.Sort(s.Other)
	slices.SortFunc(s.Staged, func(a, b TargetStatus) int { return strings.Compare(a.Path, b.Path) })
	return &s, nil
}

func targetStatus(p string, c repo.Custom, tf *metadata.TargetFiles) TargetStatus {
	return TargetStatus{Path: p, Custom: c, Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"])}
}
