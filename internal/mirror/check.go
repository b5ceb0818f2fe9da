package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// checker returns a Mirror for the read-only checks below, which use no
// local repository: cfg.Dir is ignored, and scratch files go to the
// system's temporary directory.
func checker(cfg Config) (*Mirror, error) {
	cfg.Dir = os.TempDir()
	return New(cfg)
}

// ProbeAddress probes the upstream of cfg at one of its addresses the way
// Sync does before choosing one — follow the address's root chain from
// cfg.Root, then fetch and verify timestamp.json — without a local
// repository: cfg.Dir is not used. The Probe holds the versions found (or
// the error's text); the error is non-nil when the address cannot be used.
func ProbeAddress(ctx context.Context, cfg Config, addr netip.Addr) (Probe, error) {
	m, err := checker(cfg)
	if err != nil {
		return Probe{Address: addr.String(), Error: err.Error()}, err
	}
	tm, err := metadata.Root().FromBytes(cfg.Root)
	if err != nil {
		return Probe{Address: addr.String(), Error: err.Error()}, err
	}
	p := m.probe(ctx, addr, &localState{roots: [][]byte{cfg.Root}, root: tm})
	return p.summary(), p.err
}

// CheckRelease runs the self-update check against the upstream of cfg at
// one address without a local repository: one metadata refresh from the
// pinned root (as a session does, into a temporary directory removed
// afterwards; cfg.Dir is not used and no target is downloaded), then the newest Vigil release for
// cfg.GOOS/cfg.GOARCH it lists, compared with cfg.Version. Nothing is
// installed. A repository without a release is not an error (Latest "").
func CheckRelease(ctx context.Context, cfg Config, addr netip.Addr) (*SelfUpdateCheck, error) {
	m, err := checker(cfg)
	if err != nil {
		return nil, err
	}
	root, err := metadata.Root().FromBytes(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	scratch, err := os.MkdirTemp(m.cfg.Dir, tmpPrefix+"check-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	m.cfg.Dir = scratch
	e := m.endpoint(addr)
	ctx, cancel := context.WithTimeout(ctx, 4*m.cfg.Timeout)
	defer cancel()
	ctx, budget, end := m.limits.Session(ctx)
	defer end()
	f, release := e.metaFetcher(ctx, budget)
	defer release()
	ns, err := m.refresh(e, f, &localState{roots: [][]byte{cfg.Root}, rootFiles: []bool{false}, root: root})
	if err != nil {
		var pe *publishError
		if errors.As(err, &pe) {
			return nil, pe.err
		}
		return nil, err
	}
	c := &SelfUpdateCheck{Running: m.cfg.Version}
	path, latest, ok := repo.LatestRelease(ns.targets.Signed.Targets, m.cfg.GOOS, m.cfg.GOARCH)
	if ok {
		c.Latest, c.Target = latest, path
		c.Available = repo.CompareReleaseVersions(latest, m.cfg.Version) > 0
	}
	return c, nil
}
