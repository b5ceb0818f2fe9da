// Package repo is the vendor's publishing tool over a TUF repository
// (go-tuf v2 metadata, consistent snapshots): it creates a repository and
// its keys, stages definitions releases and Vigil releases, publishes
// them (new targets, snapshot and timestamp), re-signs the timestamp
// before it expires and re-signs root. It also holds what clients (the
// agent's updater, the mirror) share: target naming and custom metadata
// (Custom, LatestDefinitions, LatestRelease), safe extraction of a
// definitions bundle (ExtractBundle), and a go-tuf client configuration
// for the layout (ClientConfig).
//
// A repository directory DIR holds (docs/repository.md has the details):
//
//	DIR/config.json                  expiry periods (format 1)
//	DIR/.lock                        serialises commands on DIR
//	DIR/keys/                0700    private keys, never served
//	    root/root.key        0600    root key; move it offline (--root-keys)
//	    targets.key          0600    online keys: PEM PKCS #8 Ed25519
//	    snapshot.key         0600
//	    timestamp.key        0600
//	DIR/staged/              0700    added, not yet published
//	    targets.json                 unsigned targets document
//	    targets/<target path>        content
//	DIR/public/                      what servers and mirrors serve
//	    metadata/1.root.json         the root clients pin (RootPath)
//	    metadata/N.root.json         later roots, each signed by the last
//	    metadata/N.targets.json      every version stays
//	    metadata/N.snapshot.json
//	    metadata/timestamp.json      the only file replaced in place
//	    targets/definitions/<sha256>.<version>.tar
//	    targets/vigil/<version>/<os>-<arch>/<sha256>.vigil
//
// Target paths: definitions/VERSION.tar (a flat, deterministic tar of
// signature files; VERSION is 1 to 20 digits, increasing) with custom
// {"kind":"definitions","version":VERSION}, and
// vigil/vX.Y.Z/OS-ARCH/vigil with custom
// {"kind":"vigil","version":"vX.Y.Z","os":OS,"arch":ARCH}.
//
// Publish writes target content first, then the new N.targets.json, then
// N.snapshot.json, then timestamp.json, each atomically, so a reader of
// public/ sees either the old state or the complete new one; before
// writing, it checks the new metadata with go-tuf's client-side
// verification.
package repo
