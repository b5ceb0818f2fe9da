// Package lucache is a caching LiveUpdate server: what a relay (vigil
// relay) serves its subnet definitions with. It serves a directory over
// HTTP and FTP exactly as package liveupdate does, and fills that
// directory lazily from an upstream repository (a LiveUpdate server or a
// mirror), verifying everything against the repository's signed metadata
// (TUF, from a pinned root) before it serves or keeps it.
//
// # Metadata
//
// A client's request for metadata/timestamp.json (HTTP GET or HEAD, FTP
// RETR or SIZE) refreshes the cache's view of the upstream when that view
// is older than Config.MetadataMaxAge (0: on every such request). One
// refresh runs at a time and the requests that arrive meanwhile wait for
// it. A refresh is the mirror's metadata-only sync (mirror.SyncMetadata):
// probe the upstream's addresses, fetch and verify one state (go-tuf, then
// repo.VerifyChain on the exact bytes), publish its metadata into
// Config.Dir — versioned files first, timestamp.json renamed into place
// last — and prune what neither it nor the Config.Keep previous states
// name. A refresh that fails (the upstream down, or serving metadata that
// does not verify) is logged and counted, and the last verified state is
// served: a failure counts as a look at the upstream for MetadataMaxAge,
// so a dead upstream is not asked on every request. Before the first
// verified state the answer is "try later" (HTTP 503, FTP 450).
//
// # Targets
//
// A request for a file under targets/ that is not in the directory is
// filled only if a kept state (the current one or one of the Config.Keep
// previous ones, which mirror.LocalStates reads and verifies) names it
// under its consistent-snapshot name, SHA256.NAME. The file is streamed
// from the upstream into a partial file (mirror.FetchTarget: resumed once
// if the transfer breaks, under the slow-retrieval defence), and renamed
// into place, synced, only once it has its signed length and hashes;
// then it is served. Requests for the same file while it is being fetched
// wait for that one download. A file that does not verify is deleted,
// counted and logged, and the request is answered "try later"; a name no
// kept state names is not found and the upstream is never asked about it
// (the cache is no open proxy). Later requests for a file in the
// directory are hits, served by package liveupdate's fast path.
//
// # One state at a time
//
// timestamp.json is replaced atomically only after the snapshot and
// targets metadata it leads to are in place, and versioned metadata and
// targets never change once written, so a client reading the directory
// sees one complete verified state's metadata at any moment; a client in
// the middle of an update when a refresh lands finds its state's
// snapshot, targets metadata and target files as long as that state is
// kept.
//
// The design is documented in docs/relay.md ("The definitions cache").
package lucache
