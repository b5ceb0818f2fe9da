package repo

import "github.com/vigil-fleet/vigil/internal/semver"

// CheckReleaseVersion reports whether v is a Vigil release version: a
// semantic version with a leading v, such as v1.2.3 or v1.3.0-rc.1. Build
// metadata (+...) is refused: two versions differing only in it would
// have the same precedence (internal/semver).
func CheckReleaseVersion(v string) error { return semver.Check(v) }

// CompareReleaseVersions compares two release versions by semantic
// version precedence, returning -1, 0 or +1. An invalid version sorts
// before every valid one.
func CompareReleaseVersions(a, b string) int { return semver.Compare(a, b) }
