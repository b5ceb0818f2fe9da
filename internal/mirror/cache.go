package mirror

// What a caching LiveUpdate server (package lucache) needs from the
// mirror: a sync of the metadata alone, the states the local directory
// keeps, and the download of one target of one of them.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/dnsname"
)

// fillDir, under workDir, holds FetchTarget's partial downloads (apart
// from Sync's, which a sync removes once its state is complete).
const fillDir = "fill"

// ErrRefused is what every refusal by verification is (errors.Is): a
// target that does not match its signed hashes or is longer than its
// signed length, metadata with a bad signature, expired, rolled back or
// not matching its signed hash or length.
var ErrRefused = errors.New("refused: does not verify against the signed metadata")

// SyncMetadata is Sync without the targets, for a caching LiveUpdate
// server that fetches each target when a client first asks for it
// (FetchTarget): it resolves the upstream, probes every address, and on
// the best one fetches and verifies one state exactly as Sync does (one
// go-tuf refresh, then the exact bytes checked again with
// repo.VerifyChain), then publishes that state's metadata into Config.Dir
// in the same order as Sync — new roots where publishOrder puts them,
// V.targets.json and V.snapshot.json, then timestamp.json, renamed into
// place last — and prunes: the current state and Config.Keep previous
// ones are kept (their metadata, and those of their target files that
// are there), whatever targets they have.
//
// A reader of the directory therefore always finds one verified state's
// metadata; the targets it names are present or not (FetchTarget brings
// them). No self-update check is made. The same directory lock as Sync's
// is taken for the sync.
func (m *Mirror) SyncMetadata(ctx context.Context) (*Summary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	sum := &Summary{Upstream: m.shown, Dir: m.cfg.Dir, Started: start.UTC(), Probes: []Probe{}, Skipped: []Skip{}}
	err := m.sync(ctx, sum, true)
	sum.Seconds = time.Since(start).Seconds()
	if err != nil {
		sum.Error = err.Error()
	}
	return sum, err
}

// Target is one target of a local state: its target path and what the
// targets metadata signs for it (length and hashes).
type Target struct {
	// Path is the target path, "definitions/2026120201.tar".
	Path string
	// Served is its path under the public directory, as consistent
	// snapshots name it: "targets/definitions/SHA256.2026120201.tar".
	Served string
	// File is its signed length, hashes and custom metadata.
	File *metadata.TargetFiles
}

// LocalState is one repository state of the local directory: the current
// one, or a previous one it keeps.
type LocalState struct {
	// Current reports the state timestamp.json names; Timestamp is its
	// version (0 for a previous state, whose timestamp was replaced).
	Current   bool
	Timestamp int64
	// Snapshot and Targets are the versions of its metadata.
	Snapshot, Targets int64
	// Files are its targets, by served path (Target.Served).
	Files map[string]Target
}

// LocalStates returns the states of the local directory, the current one
// first, then at most Config.Keep previous ones whose metadata is there,
// newest first; none when the directory has no state yet. The current
// state is verified as Sync's start verifies it (from the pinned root,
// through every root in the directory: signatures, versions, the lengths
// and hashes timestamp and snapshot give); a previous one by the
// signatures of its snapshot and targets metadata under the same roots
// and the length and hashes its snapshot gives for its targets metadata
// (its timestamp is gone). A previous state that does not verify is
// left out. A directory holding another repository is an error.
func (m *Mirror) LocalStates() ([]*LocalState, error) {
	local, err := m.loadLocal()
	if err != nil {
		return nil, err
	}
	if !local.has {
		return nil, nil
	}
	cur, err := newLocalState(local.snap, local.targets)
	if err != nil {
		return nil, err
	}
	cur.Current, cur.Timestamp = true, local.ts.Signed.Version
	states := []*LocalState{cur}
	entries, err := os.ReadDir(filepath.Join(m.cfg.Dir, metaDir))
	if err != nil {
		return nil, err
	}
	var snaps []int64
	for _, e := range entries {
		if v, ok := versioned(e.Name(), metadata.SNAPSHOT); ok && v < cur.Snapshot {
			snaps = append(snaps, v)
		}
	}
	slices.Sort(snaps)
	slices.Reverse(snaps)
	for _, v := range snaps {
		if len(states) > m.cfg.Keep {
			break
		}
		if s, err := m.previousState(local, v); err == nil {
			states = append(states, s)
		}
	}
	return states, nil
}

// previousState reads and verifies the state of V.snapshot.json.
func (m *Mirror) previousState(local *localState, v int64) (*LocalState, error) {
	name := fmt.Sprintf("%d.snapshot.json", v)
	b, err := os.ReadFile(m.metaPath(name))
	if err != nil {
		return nil, err
	}
	snap, err := metadata.Snapshot().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := verifiedByChain(local, metadata.SNAPSHOT, snap); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if snap.Signed.Version != v {
		return nil, fmt.Errorf("%s: version %d", name, snap.Signed.Version)
	}
	tm := snap.Signed.Meta["targets.json"]
	if tm == nil {
		return nil, fmt.Errorf("%s lists no targets.json", name)
	}
	name = fmt.Sprintf("%d.targets.json", tm.Version)
	b, err = os.ReadFile(m.metaPath(name))
	if err != nil {
		return nil, err
	}
	if err := tm.VerifyLengthHashes(b); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	targets, err := metadata.Targets().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := verifiedByChain(local, metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if targets.Signed.Version != tm.Version {
		return nil, fmt.Errorf("%s: version %d", name, targets.Signed.Version)
	}
	return newLocalState(snap, targets)
}

func newLocalState(snap *metadata.Metadata[metadata.SnapshotType], targets *metadata.Metadata[metadata.TargetsType]) (*LocalState, error) {
	s := &LocalState{Snapshot: snap.Signed.Version, Targets: targets.Signed.Version,
		Files: make(map[string]Target, len(targets.Signed.Targets))}
	for p, tf := range targets.Signed.Targets {
		rel, err := remoteTargetPath(p, tf)
		if err != nil {
			return nil, fmt.Errorf("targets version %d: %w", s.Targets, err)
		}
		s.Files[rel] = Target{Path: p, Served: rel, File: tf}
	}
	return s, nil
}

// FetchResult is what FetchTarget did.
type FetchResult struct {
	// Present reports that the target was already in place: nothing was
	// fetched.
	Present bool
	// Address is where it was fetched from; Bytes the bytes received
	// (less than its length when a partial file was resumed).
	Address string
	Bytes   int64
	Resumed bool
}

// FetchTarget brings one target of a local state (LocalStates) into the
// local directory, at its served path, unless it is there already (a
// regular file of its signed length: FetchTarget places nothing else).
// The target is streamed from the upstream (transport.Stream: HTTP Range
// or FTP REST resume a transfer that broke, once) into a partial file in
// DIR/.mirror/fill, hashed as it arrives, and renamed into place only
// once the whole file has its signed length and hashes; it is synced to
// disk there. A file that does not verify is deleted and the error is
// ErrRefused (errors.Is). The address of the last sync is tried first,
// then the others the upstream's name resolves to, each under the
// slow-retrieval defence (Config.MinRate…) and a deadline of
// Config.SessionAllowance plus the target's length at Config.MinRate.
//
// FetchTarget may run concurrently with itself (for other targets: the
// caller makes sure one target is fetched once at a time) and with
// SyncMetadata, whose pruning may delete a target of a state it no
// longer keeps.
func (m *Mirror) FetchTarget(ctx context.Context, t Target) (FetchResult, error) {
	rel, err := remoteTargetPath(t.Path, t.File)
	if err != nil {
		return FetchResult{}, err
	}
	final := filepath.Join(m.cfg.Dir, filepath.FromSlash(rel))
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == t.File.Length {
		return FetchResult{Present: true}, nil
	}
	pd := filepath.Join(m.cfg.Dir, workDir, fillDir)
	if err := os.MkdirAll(pd, 0o700); err != nil {
		return FetchResult{}, &publishError{err}
	}
	it := &item{path: t.Path, tf: t.File, remote: rel, final: final, part: filepath.Join(pd, url.PathEscape(rel)+".part")}
	addrs, err := m.fetchAddrs(ctx)
	if err != nil {
		return FetchResult{}, err
	}
	var errs []error
	for _, a := range addrs {
		res, err := m.fetchTargetFrom(ctx, a, it)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		var pe *publishError
		if errors.As(err, &pe) {
			return res, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	if len(errs) == 1 {
		return FetchResult{}, errs[0]
	}
	return FetchResult{}, errors.Join(errs...)
}

// fetchAddrs returns the addresses to fetch a target from: the last
// sync's first, then the others of the upstream's name.
func (m *Mirror) fetchAddrs(ctx context.Context) ([]netip.Addr, error) {
	m.fillMu.Lock()
	last := m.lastAddr
	m.fillMu.Unlock()
	var addrs []netip.Addr
	if last.IsValid() {
		addrs = append(addrs, last)
	}
	res, err := dnsname.Resolve(ctx, m.name, m.cfg.Resolver, min(m.cfg.Timeout, 5*time.Second))
	if err != nil {
		if len(addrs) > 0 {
			return addrs, nil
		}
		return nil, fmt.Errorf("resolving %s: %w", m.name, err)
	}
	for _, a := range res.Addrs {
		if a != last {
			addrs = append(addrs, a)
		}
	}
	return addrs, nil
}

func (m *Mirror) setLastAddr(a netip.Addr) {
	m.fillMu.Lock()
	m.lastAddr = a
	m.fillMu.Unlock()
}

// fillClient returns FetchTarget's HTTP client for addr, kept between
// fetches so that its connections are reused.
func (m *Mirror) fillClient(e *endpoint) *http.Client {
	m.fillMu.Lock()
	defer m.fillMu.Unlock()
	if c := m.fillClients[e.addr]; c != nil {
		return c
	}
	if m.fillClients == nil {
		m.fillClients = map[netip.Addr]*http.Client{}
	}
	c := e.httpClient(m.cfg.Parallel)
	m.fillClients[e.addr] = c
	return c
}

// CloseIdleConnections closes the idle connections FetchTarget keeps.
func (m *Mirror) CloseIdleConnections() {
	m.fillMu.Lock()
	defer m.fillMu.Unlock()
	for _, c := range m.fillClients {
		c.CloseIdleConnections()
	}
}

// fetchTargetFrom fetches it from addr (see FetchTarget).
func (m *Mirror) fetchTargetFrom(ctx context.Context, addr netip.Addr, it *item) (FetchResult, error) {
	e := m.endpoint(addr)
	ctx, budget, end := m.limits.Session(ctx)
	defer end()
	budget.Add(it.tf.Length)
	var client *http.Client
	if e.scheme != "ftp" {
		client = m.fillClient(e)
	}
	tc := e.targetConn(ctx, client)
	defer tc.close()
	st := &dlStats{dirs: map[string]bool{}}
	res := FetchResult{Address: addr.String()}
	bufs := newDLBuffers()
	defer bufs.close()
	err := m.fetchItem(ctx, tc, it, bufs, st, nopProgress{})
	res.Bytes, res.Resumed = st.bytes.Load(), st.resumed.Load() > 0
	if err != nil {
		return res, err
	}
	// Durable before anyone relies on it: the file, then its name.
	f, err := os.Open(it.final)
	if err != nil {
		return res, &publishError{err}
	}
	serr := f.Sync()
	f.Close()
	if serr != nil {
		return res, &publishError{serr}
	}
	if err := syncDir(filepath.Dir(it.final)); err != nil {
		return res, &publishError{err}
	}
	return res, nil
}

// pruneFillPartials removes FetchTarget's partial files of targets that
// no kept state names (keep holds the local paths of the kept targets).
func (m *Mirror) pruneFillPartials(keep map[string]bool) {
	pd := filepath.Join(m.cfg.Dir, workDir, fillDir)
	parts, err := os.ReadDir(pd)
	if err != nil {
		return
	}
	kept := map[string]bool{}
	for lp := range keep {
		rel, err := filepath.Rel(m.cfg.Dir, lp)
		if err == nil {
			kept[url.PathEscape(filepath.ToSlash(rel))+".part"] = true
		}
	}
	for _, e := range parts {
		if !kept[e.Name()] {
			os.Remove(filepath.Join(pd, e.Name()))
		}
	}
}
