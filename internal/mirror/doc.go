// Package mirror keeps a local LiveUpdate repository in step with the
// vendor's servers: it is Vigil's version of the reference's LiveUpdate
// Administration Utility (LUAU), and what `vigil mirror` runs.
//
// The upstream is a URL with a host name, ftp://NAME[:PORT]/PATH or
// http(s)://NAME[:PORT]/PATH, naming the public directory of a TUF
// repository (metadata/ and targets/, consistent snapshots; see package
// repo). The local repository is a directory with the same layout, which
// `vigil liveupdate` serves to agents. The mirror pins the repository's
// root metadata (normally 1.root.json) and trusts nothing else.
//
// # One sync
//
//  1. Resolve NAME with package dnsname, through the resolver given
//     (Config.Resolver) or the system's (/etc/resolv.conf, with
//     github.com/miekg/dns so that the CNAME chain is visible; net.Resolver
//     as a fallback), and report it as host(1) does: every alias of the
//     chain, then every A and AAAA address.
//  2. Probe every address at once, connecting by address but keeping NAME
//     for the HTTP Host header and TLS (FTP has neither). A probe follows
//     the address's root chain from the mirror's newest trusted root and
//     fetches and verifies its timestamp.json. An address that is down,
//     times out, sends slower than the minimum rate, serves metadata that
//     fails verification or has expired, or is older than what the mirror
//     already has, is reported and skipped.
//  3. Rank the rest: highest verified timestamp version first, then the
//     fastest to answer. If the best is what the mirror already has and
//     the local copy is complete, the sync ends there: nothing but the
//     probes' metadata was transferred.
//  4. Run a session on the best address. Every file of a session comes
//     from that one address and from one repository state: one go-tuf
//     refresh (root chain, timestamp, then snapshot and targets by version,
//     as consistent snapshots name them), after which the exact bytes to
//     be published are verified again as a fresh client would. Targets the
//     local copy lacks are downloaded in parallel (Config.Parallel),
//     streamed to disk while hashed (a target is never held in memory),
//     resumable (HTTP Range, FTP REST) into a partial file in DIR/.mirror,
//     and each is checked against its signed length and hashes before it
//     is moved into place; all of them are made durable (one syncfs on
//     Linux, an fsync per file elsewhere) before any metadata names them.
//     A file already in place counts by its size if the local state lists
//     it, by its hashes otherwise. If anything fails on that address — a
//     connection, a timeout, a transfer below the minimum rate or the
//     session past its deadline (the slow-retrieval defence,
//     transport.RateLimits: Config.MinRate, RateWindow, RateGrace,
//     SessionAllowance), metadata, a package that does not match its hash
//     — the session is abandoned and a fresh one starts on the next-best
//     address: nothing from two addresses is ever combined into one state
//     (a resumed partial file only ever becomes a target if the whole file
//     matches the signed hash). If every address with a newer state than
//     the local copy fails, the sync ends behind: Sync returns a
//     *BehindError (after publishing an older state from another address,
//     if there was one), never "up to date".
//  5. Publish into DIR: content first, metadata last, each file written to
//     a temporary name, synced and renamed (internal/atomicfile). Target
//     files are content-addressed (consistent snapshots), so adding them
//     changes nothing a reader sees. Then V.targets.json, V.snapshot.json
//     and timestamp.json, the one file replaced in place, whose rename
//     switches readers to the new state. New roots (N.root.json) go
//     after timestamp.json when the new state also verifies under the
//     mirror's current root — which is how the vendor's own key rotation
//     works (repo.SignRoot signs the new metadata with the old and new
//     keys, then publishes the root) — and before targets metadata
//     otherwise; see publishOrder.
//  6. Prune: keep the current state and Config.Keep previous ones
//     (timestamp → snapshot version → targets version → target files) and
//     delete snapshot and targets metadata and target files that none of
//     them references, only once the new timestamp is in place. Roots are
//     never deleted.
//  7. Self-update check: the newest Vigil release for this platform in the
//     published targets (repo.LatestRelease), compared with the running
//     version. With Config.SelfUpdateExe set, it replaces that executable
//     atomically (see SelfUpdate).
//
// A directory holding a copy of another repository is refused before
// anything is created in it.
//
// A reader of DIR at any moment, including after the mirror is killed at
// any point, sees one complete state that verifies: the previous one until
// timestamp.json is renamed, the new one afterwards. Partial downloads,
// the go-tuf session cache and the lock live in DIR/.mirror, which the
// LiveUpdate server never serves (it hides every dot-name).
package mirror
