package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	tufupdater "github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// newState is one verified repository state from one address, ready to
// be published.
type newState struct {
	// roots are the roots after the local copy's newest, in order;
	// rootObjs are all the roots of the chain from the pinned one.
	roots    [][]byte
	rootObjs []*metadata.Metadata[metadata.RootType]
	firstNew int64 // version of roots[0]

	tsRaw, snapRaw, targetsRaw []byte
	ts                         *metadata.Metadata[metadata.TimestampType]
	snap                       *metadata.Metadata[metadata.SnapshotType]
	targets                    *metadata.Metadata[metadata.TargetsType]

	rootsFirst bool
	warning    string
}

func (n *newState) tsVersion() int64 { return n.ts.Signed.Version }

func (n *newState) versions() StateVersions {
	return StateVersions{
		Root:        n.rootObjs[len(n.rootObjs)-1].Signed.Version,
		Timestamp:   n.ts.Signed.Version,
		Snapshot:    n.snap.Signed.Version,
		Targets:     n.targets.Signed.Version,
		TargetFiles: len(n.targets.Signed.Targets),
	}
}

// publishError is a failure to write the local repository: not the
// address's fault, so no other address is tried.
type publishError struct{ err error }

func (e *publishError) Error() string {
	return "publishing into the local repository: " + e.err.Error()
}
func (e *publishError) Unwrap() error { return e.err }

// session fetches one state from addr, downloads the targets the local
// copy lacks and publishes the state. Any failure before publishing
// leaves the local repository as it was (downloaded targets and partial
// files stay, unreferenced, for the next session to reuse once verified).
//
// The session ends at its deadline (transport.RateLimits): the allowance,
// plus the signed sizes of the metadata and targets it fetches at the
// minimum rate.
//
// With metaOnly (SyncMetadata) no target is downloaded: the state's
// metadata is published alone.
func (m *Mirror) session(ctx context.Context, addr netip.Addr, local *localState, sum *Summary, metaOnly bool) (*newState, error) {
	e := m.endpoint(addr)
	ctx, budget, end := m.limits.Session(ctx)
	defer end()
	f, release := e.metaFetcher(ctx, budget)
	defer release()
	ns, err := m.refresh(e, f, local)
	files, n := f.counts()
	sum.Fetched.MetadataFiles += files
	sum.Fetched.MetadataBytes += n
	if err != nil {
		return nil, err
	}
	hook("refreshed %s", addr)
	if !metaOnly {
		if err := m.downloadTargets(ctx, e, budget, ns, local, sum); err != nil {
			return nil, err
		}
	}
	// Publishing is local work: the deadline no longer applies.
	end()
	if err := m.publish(local, ns); err != nil {
		return nil, &publishError{err}
	}
	return ns, nil
}

// refresh runs one go-tuf refresh against the address, starting from the
// local copy's newest root and state (so go-tuf refuses a rollback and
// does not fetch a snapshot or targets the local copy already has), then
// verifies the exact bytes to publish once more as a fresh client of the
// local repository will: pinned root, every later root, timestamp,
// snapshot, targets.
func (m *Mirror) refresh(e *endpoint, f *countingFetcher, local *localState) (*newState, error) {
	cache := filepath.Join(m.cfg.Dir, workDir, sessionDir)
	if err := os.RemoveAll(cache); err != nil {
		return nil, &publishError{err}
	}
	if err := os.MkdirAll(filepath.Join(cache, "targets"), 0o700); err != nil {
		return nil, &publishError{err}
	}
	defer os.RemoveAll(cache)
	seed := map[string][]byte{"root.json": local.newestRoot()}
	if local.has {
		seed["timestamp.json"], seed["snapshot.json"], seed["targets.json"] = local.tsRaw, local.snapRaw, local.targetsRaw
	}
	for name, b := range seed {
		if err := os.WriteFile(filepath.Join(cache, name), b, 0o600); err != nil {
			return nil, &publishError{err}
		}
	}
	cfg, err := repo.ClientConfig(e.baseURL(), local.newestRoot())
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir = cache
	cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	cfg.Fetcher = f
	up, err := tufupdater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("go-tuf: %w", err)
	}
	if err := up.Refresh(); err != nil {
		f.mu.Lock()
		last := f.last
		f.mu.Unlock()
		return nil, refused(last[strings.LastIndexByte(last, '/')+1:], err)
	}
	ns := &newState{}
	read := func(name string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = os.ReadFile(filepath.Join(cache, name))
		return b
	}
	rootRaw := read("root.json")
	ns.tsRaw, ns.snapRaw, ns.targetsRaw = read("timestamp.json"), read("snapshot.json"), read("targets.json")
	if err != nil {
		return nil, fmt.Errorf("go-tuf's verified metadata: %w", err)
	}
	final, err := metadata.Root().FromBytes(rootRaw)
	if err != nil {
		return nil, err
	}
	ns.firstNew = local.root.Signed.Version + 1
	base := e.baseURL() + "/" + metaDir + "/"
	f.mu.Lock()
	for v := ns.firstNew; v <= final.Signed.Version; v++ {
		b, ok := f.got[fmt.Sprintf("%s%d.root.json", base, v)]
		if !ok {
			f.mu.Unlock()
			return nil, fmt.Errorf("go-tuf trusted root version %d, which this session did not fetch", v)
		}
		ns.roots = append(ns.roots, b)
	}
	f.mu.Unlock()
	chain := append(append([][]byte(nil), local.roots...), ns.roots...)
	tm, rootObjs, err := repo.VerifyChain(time.Now(), chain, ns.tsRaw, ns.snapRaw, ns.targetsRaw)
	if err != nil {
		return nil, refusedError{fmt.Errorf("the state to publish does not verify: %w", err)}
	}
	ns.rootObjs, ns.ts, ns.snap, ns.targets = rootObjs, tm.Timestamp, tm.Snapshot, tm.Targets[metadata.TARGETS]
	if local.has {
		switch {
		case ns.ts.Signed.Version < local.ts.Signed.Version:
			return nil, refusedError{fmt.Errorf("rollback: timestamp version %d < %d", ns.ts.Signed.Version, local.ts.Signed.Version)}
		case ns.snap.Signed.Version < local.snap.Signed.Version:
			return nil, refusedError{fmt.Errorf("rollback: snapshot version %d < %d", ns.snap.Signed.Version, local.snap.Signed.Version)}
		case ns.targets.Signed.Version < local.targets.Signed.Version:
			return nil, refusedError{fmt.Errorf("rollback: targets version %d < %d", ns.targets.Signed.Version, local.targets.Signed.Version)}
		}
	}
	if d := ns.targets.Signed.Delegations; d != nil && (len(d.Roles) > 0 || d.SuccinctRoles != nil) {
		return nil, errors.New("targets.json delegates to other roles, which the mirror does not support")
	}
	if len(ns.snap.Signed.Meta) != 1 {
		return nil, fmt.Errorf("snapshot version %d lists %d metadata files; the mirror supports top-level targets only", ns.snap.Signed.Version, len(ns.snap.Signed.Meta))
	}
	for p, tf := range ns.targets.Signed.Targets {
		if _, err := remoteTargetPath(p, tf); err != nil {
			return nil, fmt.Errorf("targets version %d: %w", ns.targets.Signed.Version, err)
		}
	}
	return ns, nil
}
