package definitions

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	tufupdater "github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// MaxDeltaChain bounds the deltas an update applies in a row: a longer
// chain, however small, is not tried (the full release is downloaded).
const MaxDeltaChain = 32

// planDeltas returns the cheapest chain of signed deltas from release from
// to release to, by total signed length, and that total; nil when there
// is none, when it is longer than MaxDeltaChain, or when it would
// download at least full bytes (the full release's signed length). Only
// deltas that move forward (base older than result) and do not go past to
// are considered; between chains of equal length the one with fewer
// deltas wins.
func planDeltas(targets map[string]*metadata.TargetFiles, from, to string, full int64) ([]repo.DeltaTarget, int64) {
	if from == "" || from == to {
		return nil, 0
	}
	out := map[string][]repo.DeltaTarget{} // by base
	for _, d := range repo.Deltas(targets) {
		if d.Length <= 0 || repo.CompareDefinitionsVersions(d.Base, d.Version) >= 0 ||
			repo.CompareDefinitionsVersions(d.Version, to) > 0 || repo.CompareDefinitionsVersions(d.Base, from) < 0 {
			continue
		}
		out[d.Base] = append(out[d.Base], d)
	}
	type best struct {
		cost, hops int64
		via        *repo.DeltaTarget
	}
	dist := map[string]best{from: {}}
	done := map[string]bool{}
	q := &costQueue{{version: from}}
	for q.Len() > 0 {
		n := heap.Pop(q).(costItem)
		if done[n.version] {
			continue
		}
		done[n.version] = true
		if n.version == to {
			break
		}
		for i := range out[n.version] {
			d := &out[n.version][i]
			c, h := n.cost+d.Length, n.hops+1
			if b, ok := dist[d.Version]; ok && (b.cost < c || b.cost == c && b.hops <= h) {
				continue
			}
			dist[d.Version] = best{cost: c, hops: h, via: d}
			heap.Push(q, costItem{version: d.Version, cost: c, hops: h})
		}
	}
	b, ok := dist[to]
	if !ok || b.hops > MaxDeltaChain || b.cost >= full {
		return nil, 0
	}
	chain := make([]repo.DeltaTarget, b.hops)
	for v, i := to, b.hops-1; i >= 0; i-- {
		d := dist[v].via
		chain[i] = *d
		v = d.Base
	}
	return chain, b.cost
}

type costItem struct {
	version    string
	cost, hops int64
}

// costQueue is a min-heap of versions by cost, then hops.
type costQueue []costItem

func (q costQueue) Len() int { return len(q) }
func (q costQueue) Less(i, j int) bool {
	return q[i].cost < q[j].cost || q[i].cost == q[j].cost && q[i].hops < q[j].hops
}
func (q costQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *costQueue) Push(x any)   { *q = append(*q, x.(costItem)) }
func (q *costQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// viaDeltas downloads the deltas of chain through up (each checked against
// its signed length and hashes), applies them in memory to the files of
// the installed release from, and returns the bundle of the result, release
// to, which
// it has checked against the signed full target of its release: at each
// hop whose full release the targets metadata lists, and always at the
// last. Any failure is an error (the caller falls back to the full
// release); nothing is written to the definitions directory.
func (u *Updater) viaDeltas(ctx context.Context, up *tufupdater.Updater, targets map[string]*metadata.TargetFiles, chain []repo.DeltaTarget, from, to string) ([]byte, error) {
	if len(chain) == 0 || chain[0].Base != from || chain[len(chain)-1].Version != to {
		return nil, fmt.Errorf("no chain of deltas from %s to %s", from, to)
	}
	files, err := readRelease(filepath.Join(u.defs, releasesSubdir, from))
	if err != nil {
		return nil, fmt.Errorf("reading the installed release %s: %w", from, err)
	}
	var bundle []byte
	for i, d := range chain {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		tf, ok := targets[d.Path]
		if !ok {
			return nil, fmt.Errorf("delta %s: not in the targets metadata", d.Path)
		}
		tmp := filepath.Join(u.dlDir, "delta-"+d.Base+"-"+d.Version)
		_, data, err := up.DownloadTarget(tf, tmp, "")
		os.Remove(tmp)
		if err != nil {
			return nil, explainTarget(d.Path, err)
		}
		u.hook("delta-downloaded")
		files, err = delta.Apply(data, files)
		if err != nil {
			return nil, fmt.Errorf("applying delta %s: %w", d.Path, err)
		}
		full, listed := targets[repo.DefinitionsPath(d.Version)]
		if !listed {
			if i == len(chain)-1 {
				return nil, fmt.Errorf("delta %s: the targets metadata lists no full release %s to check its result against", d.Path, d.Version)
			}
			bundle = nil
			continue
		}
		if bundle, err = checkResult(files, d, full); err != nil {
			return nil, err
		}
	}
	return bundle, nil
}

// checkResult makes the bundle of files, the result of delta d, and checks
// it against full, the signed target of d's release.
func checkResult(files map[string][]byte, d repo.DeltaTarget, full *metadata.TargetFiles) ([]byte, error) {
	bundle, err := repo.MakeBundle(files)
	if err != nil {
		return nil, fmt.Errorf("delta %s: its result is not a definitions release: %w", d.Path, err)
	}
	if err := full.VerifyLengthHashes(bundle); err != nil {
		return nil, fmt.Errorf("delta %s refused: its result (%d bytes) is not the signed release %s (%d bytes): %w",
			d.Path, len(bundle), d.Version, full.Length, err)
	}
	return bundle, nil
}

// readRelease reads the files of an installed release directory, with the
// bundle limits: regular files with names a bundle allows, no
// subdirectory or link.
func readRelease(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New(dir + " is empty")
	}
	if len(entries) > repo.MaxBundleFiles {
		return nil, fmt.Errorf("%s holds %d entries, more than a release's %d files", dir, len(entries), repo.MaxBundleFiles)
	}
	files := make(map[string][]byte, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", filepath.Join(dir, e.Name()))
		}
		if err := repo.CheckBundleName(e.Name()); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
		b, err := readBounded(filepath.Join(dir, e.Name()), repo.MaxBundleFileSize)
		if err != nil {
			return nil, err
		}
		files[e.Name()] = b
	}
	return files, nil
}

// readBounded reads a file of at most max bytes.
func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than the limit of %d", p, fi.Size(), max)
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}
