package repo

import (
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// VerifyChain checks metadata as a client that pins roots[0] does, at
// time now, with go-tuf's client-side trusted metadata set: each later
// root an update of the one before, then, when timestamp is not nil,
// timestamp, snapshot and targets (expiry included). With no timestamp,
// the last root must not have expired. It returns the trusted set and
// every root, in order. The publisher checks what it is about to publish
// with it, and the mirror what it is about to serve.
func VerifyChain(now time.Time, roots [][]byte, timestamp, snapshot, targets []byte) (*trustedmetadata.TrustedMetadata, []*metadata.Metadata[metadata.RootType], error) {
	tm, err := trustedmetadata.New(roots[0])
	if err != nil {
		return nil, nil, fmt.Errorf("pinned root: %w", err)
	}
	tm.RefTime = now.UTC()
	objs := []*metadata.Metadata[metadata.RootType]{tm.Root}
	for _, b := range roots[1:] {
		r, err := tm.UpdateRoot(b)
		if err != nil {
			return nil, nil, fmt.Errorf("root version %d: %w", tm.Root.Signed.Version+1, err)
		}
		objs = append(objs, r)
	}
	if timestamp == nil {
		if tm.Root.Signed.IsExpired(tm.RefTime) {
			return nil, nil, fmt.Errorf("root %d is expired", tm.Root.Signed.Version)
		}
		return tm, objs, nil
	}
	if _, err := tm.UpdateTimestamp(timestamp); err != nil {
		return nil, nil, fmt.Errorf("timestamp: %w", err)
	}
	if _, err := tm.UpdateSnapshot(snapshot, false); err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := tm.UpdateTargets(targets); err != nil {
		return nil, nil, fmt.Errorf("targets: %w", err)
	}
	return tm, objs, nil
}
