package mirror

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// A delta target (repo.KindDelta) turns one definitions release into
// another. The mirror mirrors deltas like every other target. When it
// lacks a definitions release R but holds an older release B and the
// signed targets have a chain of deltas from B to R whose download costs
// less than R's, it builds R from B and the deltas instead of downloading
// it, and keeps the result only if repo.MakeBundle of it has exactly the
// length and hashes that the targets metadata signs for R (bundles are
// deterministic). On any failure it downloads R.

// buildPlan is a definitions release to build from a release the mirror
// holds and a chain of deltas.
type buildPlan struct {
	it       *item
	base     string      // the base release
	baseFile string      // its local file
	chain    []deltaEdge // the deltas, in order
	cost     int64       // signed lengths of the deltas the session downloads
}

// heldRelease is a definitions release whose file the local copy has.
type heldRelease struct {
	file string
}

// deltaEdge is a delta leading to a release: from its base, its target
// path and local file, what the session downloads for it.
type deltaEdge struct {
	from, path, file string
	cost             int64
}

// planBuilds returns the items that are cheaper to build from a held
// release and deltas than to download, as plans, and the other items.
// The deltas of a plan are among the other items or already present.
func (m *Mirror) planBuilds(ns *newState, local *localState, items []*item) ([]*buildPlan, []*item) {
	targets := ns.targets.Signed.Targets
	deltas := repo.Deltas(targets)
	if len(deltas) == 0 {
		return nil, items
	}
	lacking := map[string]*item{}
	for _, it := range items {
		lacking[it.path] = it
	}
	// The releases held: in the new state and present, or in the local
	// state (not pruned yet).
	held := map[string]heldRelease{}
	addHeld := func(p string, tf *metadata.TargetFiles) {
		c, ok := repo.TargetCustom(p, tf)
		if !ok || c.Kind != repo.KindDefinitions || lacking[p] != nil {
			return
		}
		rel, err := remoteTargetPath(p, tf)
		if err != nil {
			return
		}
		f := filepath.Join(m.cfg.Dir, filepath.FromSlash(rel))
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Size() == tf.Length {
			held[c.Version] = heldRelease{file: f}
		}
	}
	for p, tf := range local.targetsMap() {
		addHeld(p, tf)
	}
	for p, tf := range targets {
		addHeld(p, tf)
	}
	if len(held) == 0 {
		return nil, items
	}
	// Each delta costs what the session downloads for it: nothing if the
	// local copy has it.
	edges := map[string][]deltaEdge{} // by result version
	for _, d := range deltas {
		tf := targets[d.Path]
		rel, err := remoteTargetPath(d.Path, tf)
		if err != nil {
			continue
		}
		var cost int64
		if lacking[d.Path] != nil {
			cost = tf.Length
		}
		edges[d.Version] = append(edges[d.Version], deltaEdge{from: d.Base, path: d.Path, file: filepath.Join(m.cfg.Dir, filepath.FromSlash(rel)), cost: cost})
	}
	var plans []*buildPlan
	var rest []*item
	for _, it := range items {
		c, ok := repo.TargetCustom(it.path, it.tf)
		if !ok || c.Kind != repo.KindDefinitions {
			rest = append(rest, it)
			continue
		}
		if p := cheapestChain(c.Version, held, edges); p != nil && p.cost < it.tf.Length {
			p.it = it
			plans = append(plans, p)
			continue
		}
		rest = append(rest, it)
	}
	return plans, rest
}

// cheapestChain finds, by Dijkstra's algorithm backwards from version,
// the chain of deltas from a held release to version that costs least,
// or nil.
func cheapestChain(version string, held map[string]heldRelease, edges map[string][]deltaEdge) *buildPlan {
	type node struct {
		cost int64
		next string    // the version this one's delta leads to
		via  deltaEdge // that delta
		done bool
	}
	nodes := map[string]*node{version: {}}
	for {
		// The cheapest version not done yet.
		var cur string
		var best *node
		for v, n := range nodes {
			if !n.done && (best == nil || n.cost < best.cost || n.cost == best.cost && v < cur) {
				cur, best = v, n
			}
		}
		if best == nil {
			return nil
		}
		best.done = true
		if h, ok := held[cur]; ok && cur != version {
			p := &buildPlan{base: cur, baseFile: h.file, cost: best.cost}
			for v := cur; v != version; v = nodes[v].next {
				p.chain = append(p.chain, nodes[v].via)
			}
			return p
		}
		for _, e := range edges[cur] {
			c := best.cost + e.cost
			if n, ok := nodes[e.from]; !ok || !n.done && c < n.cost {
				nodes[e.from] = &node{cost: c, next: cur, via: e}
			}
		}
	}
}

// build makes p's release from its base and deltas, checks it against
// the release's signed length and hashes and places it like a verified
// download. A publishError is a failure of the local file system; any
// other error means the release must be downloaded.
func (m *Mirror) build(p *buildPlan, st *dlStats) error {
	it := p.it
	b, err := os.ReadFile(p.baseFile)
	if err != nil {
		return fmt.Errorf("base %s: %w", p.base, err)
	}
	files, err := repo.BundleFiles(b)
	if err != nil {
		return fmt.Errorf("base %s: %w", p.base, err)
	}
	for _, e := range p.chain {
		d, err := os.ReadFile(e.file)
		if err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
		if files, err = delta.Apply(d, files); err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
	}
	bundle, err := repo.MakeBundle(files)
	if err != nil {
		return fmt.Errorf("result: %w", err)
	}
	if int64(len(bundle)) != it.tf.Length {
		return fmt.Errorf("the result has %d bytes, the signed release %d", len(bundle), it.tf.Length)
	}
	hs, err := repo.NewHashers(it.tf.Hashes)
	if err != nil {
		return fmt.Errorf("%s: %w", it.path, err)
	}
	hs.Write(bundle)
	if err := verifyHashes(hs, it.path, it.tf.Hashes, false); err != nil {
		return errors.New("the result does not match the signed release's hashes")
	}
	if err := writeVerified(it, bundle, st); err != nil {
		return &publishError{err}
	}
	return nil
}

// writeVerified writes verified content into it's partial file and
// renames it into place, as fetchOnce does with a download.
func writeVerified(it *item, data []byte, st *dlStats) error {
	f, err := os.OpenFile(it.part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if syncEachFile {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir := filepath.Dir(it.final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(it.part, it.final); err != nil {
		return err
	}
	st.mu.Lock()
	st.dirs[dir] = true
	st.mu.Unlock()
	return nil
}
