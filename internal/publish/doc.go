// Package publish is the vendor's publishing tool over a Vigil TUF
// repository (the format is internal/repo's): it creates a repository and
// its keys, stages definitions releases (loading each as agents will, to
// refuse what does not load and count its signatures, which
// DefinitionsSignatures lists) and Vigil releases, publishes them (new
// targets, snapshot and timestamp, and the deltas to a new definitions
// release from the delta_releases releases before it, internal/delta),
// re-signs the timestamp before it expires and re-signs root. Only `vigil repo` (and tests that
// need a real repository) import it; agents and mirrors do not.
//
// A repository directory DIR holds (docs/repository.md has the details):
//
//	DIR/config.json                  expiry periods, delta_releases (format 1)
//	DIR/.lock                        serialises commands on DIR
//	DIR/keys/                0700    private keys, never served
//	    root/root.key        0600    root key; move it offline (--root-keys)
//	    targets.key          0600    online keys: PEM PKCS #8 Ed25519
//	    snapshot.key         0600
//	    timestamp.key        0600
//	DIR/staged/              0700    added, not yet published
//	    targets.json                 unsigned targets document
//	    targets/<target path>        content
//	DIR/public/                      what servers and mirrors serve (see
//	                                 internal/repo; RootPath is the root
//	                                 clients pin)
//
// Publish writes target content first, then the new N.targets.json, then
// N.snapshot.json, then timestamp.json, each atomically, so a reader of
// public/ sees either the old state or the complete new one; before
// writing, it checks the new metadata with repo.VerifyChain, as a client
// would.
package publish
