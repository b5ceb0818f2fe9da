// Package repo is the format of Vigil's TUF repository (go-tuf v2
// metadata, consistent snapshots): what every client of a repository
// needs, and nothing that writes one. It holds target naming and custom
// metadata (Custom, DefinitionsPath, ReleasePath, LatestDefinitions,
// LatestRelease), the order of versions (CompareDefinitionsVersions,
// CompareReleaseVersions), definitions bundles (MakeBundle, and their
// safe extraction, ExtractBundle), release binaries (CheckBinary), the
// go-tuf client configuration for the layout (ClientConfig), and the one
// chain verification (VerifyChain) that the publisher and the mirror both
// run. Fetching is internal/transport's; publishing (keys, staging,
// signing) is internal/publish's.
//
// A repository's public directory, which servers and mirrors serve:
//
//	metadata/1.root.json         the root clients pin
//	metadata/N.root.json         later roots, each signed by the last
//	metadata/N.targets.json      every version stays
//	metadata/N.snapshot.json
//	metadata/timestamp.json      the only file replaced in place
//	targets/definitions/<sha256>.<version>.tar
//	targets/definitions/deltas/<sha256>.<base>-<version>.delta
//	targets/vigil/<version>/<os>-<arch>/<sha256>.vigil
//
// Target paths: definitions/VERSION.tar (a flat, deterministic tar of
// signature files; VERSION is 1 to 20 digits, increasing) with custom
// {"kind":"definitions","version":VERSION}, and
// vigil/vX.Y.Z/OS-ARCH/vigil with custom
// {"kind":"vigil","version":"vX.Y.Z","os":OS,"arch":ARCH}, and the
// deltas between definitions releases (internal/delta),
// definitions/deltas/BASE-VERSION.delta with custom
// {"kind":"delta","version":VERSION,"base":BASE} (DeltaPath, Deltas,
// and BundleFiles to read a bundle's files in memory). A client accepts
// what a delta yields only when the bundle made of it (MakeBundle) has
// the signed length and SHA-256 of definitions/VERSION.tar.
//
// docs/repository.md specifies the repository in full.
package repo
