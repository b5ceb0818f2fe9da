package repo

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/semver"
)

// Kinds of target, the "kind" field of a target's custom metadata.
const (
	KindDefinitions = "definitions"
	KindVigil       = "vigil"
	KindDelta       = "delta" // a delta between two definitions releases (internal/delta)
)

// Operating systems and architectures a Vigil release is published for.
var (
	ReleaseOSes  = []string{"linux", "darwin"}
	ReleaseArchs = []string{"amd64", "arm64"}
)

// ReleaseExe is the file name of the vigil executable in a release target
// path.
const ReleaseExe = "vigil"

// Custom is the custom metadata of a target, as published in targets.json:
//
//	{"kind":"definitions","version":"2026112501"}
//	{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64"}
//
// A definitions release unpacked from ClamAV containers (.cvd, .cld,
// .cud) lists them, with their headers' version and functionality level:
//
//	{"kind":"definitions","version":"2026120201",
//	 "containers":[{"name":"main.cvd","version":62,"functionality_level":90,"signatures":6647427,"built":"2021-09-16T16:52:00Z"}]}
//
// A definitions release staged by `vigil repo add-definitions` carries
// the counts of its signatures as the agent loads them (Signatures):
//
//	"signatures":{"hash":2,"body":1,"logical":1,"clamav":4,"not_matched":1,"skipped":1,"ignored_files":0}
//
// A delta (internal/delta) turning definitions release Base into release
// Version:
//
//	{"kind":"delta","version":"2026120202","base":"2026120201"}
type Custom struct {
	Kind       string          `json:"kind"`
	Version    string          `json:"version"`
	Base       string          `json:"base,omitempty"` // a delta's base release; Version is its result
	OS         string          `json:"os,omitempty"`
	Arch       string          `json:"arch,omitempty"`
	Containers []Container     `json:"containers,omitempty"`
	Signatures *SignatureCount `json:"signatures,omitempty"`
}

// SignatureCount counts the signatures of a definitions release as
// signatures.LoadTo loads its files (what `vigil scan -debug` reports
// for them): informational, so that what the engine does not match is
// never dropped silently. The lines themselves are listed by `vigil repo
// signatures`.
type SignatureCount struct {
	Hash    int `json:"hash"`    // hash signatures the engine matches
	Body    int `json:"body"`    // body signatures the engine matches
	Logical int `json:"logical"` // logical signatures loaded as ClamAV loads them
	ClamAV  int `json:"clamav"`  // what ClamAV counts as loaded for the same files
	// NotMatched are the signatures loaded that the engine does not
	// match (listed as "not matched"); Skipped the signature lines not
	// loaded (listed as "skipped"); IgnoredFiles the files not read.
	NotMatched   int `json:"not_matched"`
	Skipped      int `json:"skipped"`
	IgnoredFiles int `json:"ignored_files"`
}

// Container is a ClamAV container a definitions release was unpacked
// from: its file name and its header's fields.
type Container struct {
	Name       string    `json:"name"`
	Version    uint32    `json:"version"`
	FLevel     uint32    `json:"functionality_level"`
	Signatures uint32    `json:"signatures"`
	Built      time.Time `json:"built"`
}

// ParseCustom decodes and validates a target's custom metadata: the kind
// must be known and the version (and, for releases, the OS and
// architecture) well formed.
func ParseCustom(raw json.RawMessage) (Custom, error) {
	var c Custom
	if len(raw) == 0 {
		return c, fmt.Errorf("no custom metadata")
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return Custom{}, fmt.Errorf("custom metadata: %w", err)
	}
	if err := c.validate(); err != nil {
		return Custom{}, fmt.Errorf("custom metadata: %w", err)
	}
	return c, nil
}

func (c Custom) validate() error {
	if c.Base != "" && c.Kind != KindDelta {
		return fmt.Errorf("only a delta has a base")
	}
	switch c.Kind {
	case KindDelta:
		if c.OS != "" || c.Arch != "" || len(c.Containers) > 0 || c.Signatures != nil {
			return fmt.Errorf("a delta carries no os, arch, containers or signature counts")
		}
		if c.Base == "" {
			return fmt.Errorf("a delta without a base")
		}
		if err := CheckDefinitionsVersion(c.Base); err != nil {
			return fmt.Errorf("base: %w", err)
		}
		if err := CheckDefinitionsVersion(c.Version); err != nil {
			return err
		}
		if CompareDefinitionsVersions(c.Base, c.Version) >= 0 {
			return fmt.Errorf("delta from %s to %s: the base must be older than the version", c.Base, c.Version)
		}
		return nil
	case KindDefinitions:
		if c.OS != "" || c.Arch != "" {
			return fmt.Errorf("definitions carry no os or arch")
		}
		for _, ct := range c.Containers {
			if err := CheckBundleName(ct.Name); err != nil {
				return fmt.Errorf("container: %w", err)
			}
		}
		if n := c.Signatures; n != nil && min(n.Hash, n.Body, n.Logical, n.ClamAV, n.NotMatched, n.Skipped, n.IgnoredFiles) < 0 {
			return fmt.Errorf("signatures: a negative count")
		}
		return CheckDefinitionsVersion(c.Version)
	case KindVigil:
		if len(c.Containers) > 0 || c.Signatures != nil {
			return fmt.Errorf("a release carries no containers or signature counts")
		}
		if err := CheckReleaseVersion(c.Version); err != nil {
			return err
		}
		return CheckPlatform(c.OS, c.Arch)
	case "":
		return fmt.Errorf("no kind")
	}
	return fmt.Errorf("unknown kind %q", c.Kind)
}

// TargetPath returns the target path that custom metadata c belongs at:
// definitions/VERSION.tar, definitions/deltas/BASE-VERSION.delta or
// vigil/VERSION/OS-ARCH/vigil.
func (c Custom) TargetPath() string {
	switch c.Kind {
	case KindVigil:
		return ReleasePath(c.Version, c.OS, c.Arch)
	case KindDelta:
		return DeltaPath(c.Base, c.Version)
	}
	return DefinitionsPath(c.Version)
}

// DeltaPath is the target path of the delta turning definitions release
// base into release version.
func DeltaPath(base, version string) string {
	return "definitions/deltas/" + base + "-" + version + ".delta"
}

// DeltaTarget is a delta target: its path, the releases it turns Base
// into Version, and its signed length.
type DeltaTarget struct {
	Path, Base, Version string
	Length              int64
}

// Deltas returns the delta targets among targets (the top-level targets
// of a verified targets.json), sorted by version, then base, newest
// first. Targets whose custom metadata is missing, malformed or
// inconsistent with their path are ignored.
//
// A delta is only a way to fetch its result: a client accepts what it
// yields only when repo.MakeBundle of the result's files has exactly the
// length and SHA-256 that targets gives DefinitionsPath(Version).
func Deltas(targets map[string]*metadata.TargetFiles) []DeltaTarget {
	var out []DeltaTarget
	for p, tf := range targets {
		c, ok := TargetCustom(p, tf)
		if !ok || c.Kind != KindDelta {
			continue
		}
		out = append(out, DeltaTarget{Path: p, Base: c.Base, Version: c.Version, Length: tf.Length})
	}
	slices.SortFunc(out, func(a, b DeltaTarget) int {
		if c := CompareDefinitionsVersions(b.Version, a.Version); c != 0 {
			return c
		}
		if c := CompareDefinitionsVersions(b.Base, a.Base); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

// DefinitionsPath is the target path of definitions release version.
func DefinitionsPath(version string) string {
	return "definitions/" + version + ".tar"
}

// ReleasePath is the target path of the vigil executable of a release.
func ReleasePath(version, goos, goarch string) string {
	return path.Join("vigil", version, goos+"-"+goarch, ReleaseExe)
}

// TargetCustom returns the validated custom metadata of a target whose
// path is consistent with it, or false.
func TargetCustom(p string, tf *metadata.TargetFiles) (Custom, bool) {
	if tf == nil || tf.Custom == nil {
		return Custom{}, false
	}
	c, err := ParseCustom(*tf.Custom)
	if err != nil || c.TargetPath() != p {
		return Custom{}, false
	}
	return c, true
}

// CheckDefinitionsVersion reports whether v is a definitions version:
// 1 to 20 decimal digits, such as 2026112501.
func CheckDefinitionsVersion(v string) error {
	if len(v) == 0 || len(v) > 20 {
		return fmt.Errorf("definitions version %q: want 1 to 20 digits", v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return fmt.Errorf("definitions version %q: want digits only", v)
		}
	}
	return nil
}

// CompareDefinitionsVersions compares two definitions versions
// numerically, returning -1, 0 or +1. Both are assumed valid (see
// CheckDefinitionsVersion).
func CompareDefinitionsVersions(a, b string) int { return semver.CompareNumbers(a, b) }

// LatestDefinitions returns the target path and version of the newest
// definitions release among targets (the top-level targets of a verified
// targets.json). Targets whose custom metadata is missing, malformed or
// inconsistent with their path are ignored.
func LatestDefinitions(targets map[string]*metadata.TargetFiles) (path string, version string, ok bool) {
	for p, tf := range targets {
		c, good := TargetCustom(p, tf)
		if !good || c.Kind != KindDefinitions {
			continue
		}
		cmp := CompareDefinitionsVersions(c.Version, version)
		if !ok || cmp > 0 || (cmp == 0 && p > path) {
			path, version, ok = p, c.Version, true
		}
	}
	return path, version, ok
}

// LatestRelease returns the target path and version of the newest Vigil
// release for goos/goarch among targets. Pre-releases (v1.3.0-rc.1) are
// never "latest": they are published for those who fetch them by path.
func LatestRelease(targets map[string]*metadata.TargetFiles, goos, goarch string) (path string, version string, ok bool) {
	for p, tf := range targets {
		c, good := TargetCustom(p, tf)
		if !good || c.Kind != KindVigil || c.OS != goos || c.Arch != goarch {
			continue
		}
		if semver.Prerelease(c.Version) {
			continue
		}
		if !ok || CompareReleaseVersions(c.Version, version) > 0 {
			path, version, ok = p, c.Version, true
		}
	}
	return path, version, ok
}

func CheckPlatform(goos, goarch string) error {
	if !slices.Contains(ReleaseOSes, goos) {
		return fmt.Errorf("os %q: want one of %s", goos, strings.Join(ReleaseOSes, ", "))
	}
	if !slices.Contains(ReleaseArchs, goarch) {
		return fmt.Errorf("arch %q: want one of %s", goarch, strings.Join(ReleaseArchs, ", "))
	}
	return nil
}
