package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
)

// publishOrder decides where new roots go in the publication, so that
// every intermediate view of the local repository verifies:
//
//   - roots last (after timestamp.json) when the new state verifies under
//     the local copy's current root and every new root but the last:
//     readers that have not seen the new roots yet verify the new state
//     with the old keys. This is the vendor's own order for a key
//     rotation (repo.SignRoot signs the new state with the old and the new
//     keys, then publishes the root), and the only safe one for it: with
//     roots first, a reader would see the new root next to a timestamp
//     signed by the old key only.
//   - roots first otherwise (the new state is signed by new keys only):
//     safe when the old state still verifies under the new roots; if it
//     does not either, no order is safe (the upstream rotated keys without
//     an overlap) and a warning says so: a reader between the two renames
//     fails once and succeeds when it retries.
func publishOrder(local *localState, ns *newState) (rootsFirst bool, warning string) {
	if len(ns.roots) == 0 {
		return false, ""
	}
	nOld := len(local.rootObjs) // roots before the new ones
	underAll := func(roots []*metadata.Metadata[metadata.RootType], ts *metadata.Metadata[metadata.TimestampType],
		snap *metadata.Metadata[metadata.SnapshotType], targets *metadata.Metadata[metadata.TargetsType]) bool {
		for _, r := range roots {
			if r.VerifyDelegate(metadata.TIMESTAMP, ts) != nil || r.VerifyDelegate(metadata.SNAPSHOT, snap) != nil ||
				r.VerifyDelegate(metadata.TARGETS, targets) != nil {
				return false
			}
		}
		return true
	}
	// Views with roots last: the local root, then each new root but the
	// last, each next to the new state.
	if underAll(ns.rootObjs[nOld-1:len(ns.rootObjs)-1], ns.ts, ns.snap, ns.targets) {
		return false, ""
	}
	if !local.has || underAll(ns.rootObjs[nOld:], local.ts, local.snap, local.targets) {
		return true, ""
	}
	return true, fmt.Sprintf("root version %d changed keys without the new state being signed with the old ones: a client reading this mirror between the publication of the new root and of timestamp.json may fail once to verify", ns.rootObjs[len(ns.rootObjs)-1].Signed.Version)
}

// publish writes a verified state whose targets are all in place: new
// roots and targets, snapshot and timestamp metadata, each atomically,
// in an order that keeps every intermediate view complete and verifiable
// (see publishOrder). timestamp.json, the only file replaced in place, is
// what switches readers to the new state.
func (m *Mirror) publish(local *localState, ns *newState) error {
	ns.rootsFirst, ns.warning = publishOrder(local, ns)
	if ns.warning != "" {
		m.printf("warning: %s\n", ns.warning)
	}
	// The pinned root first, if the directory lacks it: that changes
	// nothing for readers (it is the root they pin).
	if !local.rootFiles[0] {
		if err := m.writeMeta(fmt.Sprintf("%d.root.json", m.pinnedVer), m.cfg.Root, 0, 0); err != nil {
			return err
		}
	}
	// Roots of the local chain that are missing from the directory
	// (removed by hand) are restored before anything refers to them.
	for i, ok := range local.rootFiles {
		if !ok && i > 0 {
			if err := m.writeMeta(fmt.Sprintf("%d.root.json", m.pinnedVer+int64(i)), local.roots[i], 0, 0); err != nil {
				return err
			}
		}
	}
	writeRoots := func() error {
		for i, b := range ns.roots {
			if err := m.writeMeta(fmt.Sprintf("%d.root.json", ns.firstNew+int64(i)), b, 0, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if ns.rootsFirst {
		if err := writeRoots(); err != nil {
			return err
		}
	}
	var localTargets, localSnap int64
	if local.has {
		localTargets, localSnap = local.targets.Signed.Version, local.snap.Signed.Version
	}
	if err := m.writeMeta(fmt.Sprintf("%d.targets.json", ns.targets.Signed.Version), ns.targetsRaw, ns.targets.Signed.Version, localTargets); err != nil {
		return err
	}
	if err := m.writeMeta(fmt.Sprintf("%d.snapshot.json", ns.snap.Signed.Version), ns.snapRaw, ns.snap.Signed.Version, localSnap); err != nil {
		return err
	}
	if err := m.writeMeta("timestamp.json", ns.tsRaw, 0, 0); err != nil {
		return err
	}
	if !ns.rootsFirst {
		if err := writeRoots(); err != nil {
			return err
		}
	}
	return nil
}

// writeMeta writes DIR/metadata/name atomically, unless it already holds
// exactly data. A versioned file that holds something else is replaced
// only if it is newer than the local state (left by an interrupted
// sync); replacing a file the local state refers to would change a state
// readers may be using, so that is refused.
func (m *Mirror) writeMeta(name string, data []byte, version, localVersion int64) error {
	p := m.metaPath(name)
	old, err := os.ReadFile(p)
	switch {
	case err == nil && bytes.Equal(old, data):
		return nil
	case err == nil && version != 0 && version <= localVersion:
		return fmt.Errorf("%s holds other content than the upstream's %s of the same version: refusing to change a published file", p, name)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	hook("publish %s", name)
	if err := atomicfile.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	hook("published %s", name)
	return nil
}

// versioned parses "N.ROLE.json".
func versioned(name, role string) (int64, bool) {
	s, ok := strings.CutSuffix(name, "."+role+".json")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 || strconv.FormatInt(v, 10) != s {
		return 0, false
	}
	return v, true
}

// prune deletes what neither the current state nor the Keep previous ones
// refer to: snapshot and targets metadata, target files, leftovers of
// interrupted writes, and every partial download. Roots stay. It runs
// after timestamp.json names the new state, and deletes entry points
// first (snapshots, then targets metadata, then target files), so a
// reader never finds a kept file missing.
//
// With metaOnly (SyncMetadata, whose states are complete in metadata but
// whose targets come one by one through FetchTarget) a previous state is
// kept whatever target files it has, and the partial downloads kept are
// FetchTarget's of the targets of kept states.
func (m *Mirror) prune(metaOnly bool) (Pruned, error) {
	var pr Pruned
	md := filepath.Join(m.cfg.Dir, metaDir)
	tsRaw, err := os.ReadFile(filepath.Join(md, "timestamp.json"))
	if err != nil {
		return pr, err
	}
	ts, err := metadata.Timestamp().FromBytes(tsRaw)
	if err != nil {
		return pr, err
	}
	sm := ts.Signed.Meta["snapshot.json"]
	if sm == nil {
		return pr, errors.New("timestamp.json lists no snapshot.json")
	}
	entries, err := os.ReadDir(md)
	if err != nil {
		return pr, err
	}
	var snaps []int64
	for _, e := range entries {
		if v, ok := versioned(e.Name(), metadata.SNAPSHOT); ok && v < sm.Version {
			snaps = append(snaps, v)
		}
	}
	slices.Sort(snaps)
	slices.Reverse(snaps)
	keepSnaps := map[int64]bool{}
	keepTargetsMeta := map[int64]bool{}
	keepFiles := map[string]bool{}
	// keepState records a state's files, or reports false if it is not a
	// complete state (then it does not count as kept).
	keepState := func(v int64, must bool) (bool, error) {
		b, err := os.ReadFile(filepath.Join(md, fmt.Sprintf("%d.snapshot.json", v)))
		if err != nil {
			return false, err
		}
		snap, err := metadata.Snapshot().FromBytes(b)
		if err != nil {
			return false, err
		}
		tm := snap.Signed.Meta["targets.json"]
		if tm == nil {
			return false, fmt.Errorf("%d.snapshot.json lists no targets.json", v)
		}
		b, err = os.ReadFile(filepath.Join(md, fmt.Sprintf("%d.targets.json", tm.Version)))
		if err != nil {
			return false, err
		}
		targets, err := metadata.Targets().FromBytes(b)
		if err != nil {
			return false, err
		}
		files := map[string]bool{}
		for p, tf := range targets.Signed.Targets {
			rel, err := remoteTargetPath(p, tf)
			if err != nil {
				return false, err
			}
			lp := filepath.Join(m.cfg.Dir, filepath.FromSlash(rel))
			if st, err := os.Stat(lp); !must && !metaOnly && (err != nil || st.Size() != tf.Length) {
				return false, nil // an incomplete old state: not worth keeping
			}
			files[lp] = true
		}
		keepSnaps[v] = true
		keepTargetsMeta[tm.Version] = true
		for f := range files {
			keepFiles[f] = true
		}
		return true, nil
	}
	if _, err := keepState(sm.Version, true); err != nil {
		return pr, fmt.Errorf("current state: %w", err)
	}
	for _, v := range snaps {
		if len(keepSnaps) > m.cfg.Keep {
			break
		}
		_, _ = keepState(v, false) // a damaged old state is simply not kept
	}

	remove := func(p string) {
		st, err := os.Lstat(p)
		if err != nil {
			return
		}
		hook("prune %s", strings.TrimPrefix(p, m.cfg.Dir+string(filepath.Separator)))
		if os.Remove(p) == nil {
			pr.Files++
			pr.Bytes += st.Size()
		}
	}
	var snapDel, targetsDel, tmpDel []string
	for _, e := range entries {
		name := e.Name()
		if v, ok := versioned(name, metadata.SNAPSHOT); ok && !keepSnaps[v] {
			snapDel = append(snapDel, name)
		} else if v, ok := versioned(name, metadata.TARGETS); ok && !keepTargetsMeta[v] {
			targetsDel = append(targetsDel, name)
		} else if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp") && e.Type().IsRegular() {
			tmpDel = append(tmpDel, name) // atomicfile's temporary, left by a kill
		}
	}
	for _, group := range [][]string{snapDel, targetsDel, tmpDel} {
		for _, name := range group {
			remove(filepath.Join(md, name))
		}
	}
	// Target files, then the directories they leave empty.
	td := filepath.Join(m.cfg.Dir, targetsDir)
	var dirs []string
	err = filepath.WalkDir(td, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != td {
				if strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				dirs = append(dirs, p)
			}
			return nil
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") && !keepFiles[p] {
			remove(p)
		}
		return nil
	})
	if err != nil {
		return pr, err
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		os.Remove(d) // only if empty
	}
	if metaOnly {
		m.pruneFillPartials(keepFiles)
		return pr, nil
	}
	// Partial downloads: the state is complete, nothing needs them.
	pd := filepath.Join(m.cfg.Dir, workDir, partialDir)
	if parts, err := os.ReadDir(pd); err == nil {
		for _, e := range parts {
			os.Remove(filepath.Join(pd, e.Name()))
		}
	}
	return pr, nil
}
