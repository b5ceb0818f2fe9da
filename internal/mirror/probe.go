package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/vigil-fleet/vigil/internal/transport"
)

// Length limits of metadata fetched outside go-tuf's updater (go-tuf's
// defaults).
const (
	rootMaxLength      = 512000
	timestampMaxLength = 16384
	maxRootRotations   = 256
)

// probeResult is what probing one address found.
type probeResult struct {
	addr                                netip.Addr
	tsVersion, snapVersion, rootVersion int64
	latency                             time.Duration
	err                                 error
	files                               int
	bytes                               int64
}

func (p *probeResult) summary() Probe {
	s := Probe{Address: p.addr.String(), Millis: float64(p.latency.Microseconds()) / 1000}
	if p.err != nil {
		s.Error = p.err.Error()
	} else {
		s.TimestampVersion, s.SnapshotVersion, s.RootVersion = p.tsVersion, p.snapVersion, p.rootVersion
	}
	return s
}

// probeAll probes every address at once; the results are in the order of
// addrs.
func (m *Mirror) probeAll(ctx context.Context, addrs []netip.Addr, local *localState) []*probeResult {
	res := make([]*probeResult, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			hook("probe %s", a)
			res[i] = m.probe(ctx, a, local)
		})
	}
	wg.Wait()
	return res
}

// probe follows the address's root chain from the mirror's newest trusted
// root, then fetches and verifies its timestamp, and compares it with the
// local copy's.
func (m *Mirror) probe(ctx context.Context, addr netip.Addr, local *localState) (p *probeResult) {
	p = &probeResult{addr: addr}
	e := m.endpoint(addr)
	// Bound the whole probe: an address that trickles bytes forever
	// must not hold the sync up.
	ctx, cancel := context.WithTimeout(ctx, 4*m.cfg.Timeout)
	defer cancel()
	f, release := e.metaFetcher(ctx, nil)
	defer release()
	defer func() { p.files, p.bytes = f.counts() }()
	start := time.Now()
	tm, err := trustedmetadata.New(local.newestRoot())
	if err != nil {
		p.err = err
		return p
	}
	base := e.baseURL() + "/" + metaDir + "/"
	for v := tm.Root.Signed.Version + 1; v < tm.Root.Signed.Version+maxRootRotations; v++ {
		name := fmt.Sprintf("%d.root.json", v)
		b, err := f.DownloadFile(base+name, rootMaxLength, 0)
		if err != nil {
			if transport.IsNotFound(err) {
				break
			}
			p.err = fmt.Errorf("fetching %s: %w", name, err)
			return p
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			p.err = refused(name, err)
			return p
		}
	}
	b, err := f.DownloadFile(base+"timestamp.json", timestampMaxLength, 0)
	if err != nil {
		p.err = fmt.Errorf("fetching timestamp.json: %w", err)
		return p
	}
	ts, err := tm.UpdateTimestamp(b)
	if err != nil {
		p.err = refused("timestamp.json", err)
		return p
	}
	p.latency = time.Since(start)
	p.rootVersion = tm.Root.Signed.Version
	p.tsVersion = ts.Signed.Version
	if sm := ts.Signed.Meta["snapshot.json"]; sm != nil {
		p.snapVersion = sm.Version
	} else {
		p.err = errors.New("timestamp.json lists no snapshot.json")
		return p
	}
	if local.has {
		if p.tsVersion < local.tsVersion() {
			p.err = fmt.Errorf("older than this mirror: timestamp version %d < %d", p.tsVersion, local.tsVersion())
			return p
		}
		if p.snapVersion < local.snapVersion() {
			p.err = fmt.Errorf("older than this mirror: snapshot version %d < %d", p.snapVersion, local.snapVersion())
			return p
		}
	}
	return p
}

// refused explains why metadata was refused.
func refused(name string, err error) error {
	switch {
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return refusedError{fmt.Errorf("%s refused: bad signature (tampered, or signed by keys the pinned root does not trust): %w", name, err)}
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return refusedError{fmt.Errorf("%s refused: expired: %w", name, err)}
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return refusedError{fmt.Errorf("%s refused: older than metadata already trusted (rollback) or inconsistent versions: %w", name, err)}
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return refusedError{fmt.Errorf("%s refused: does not match its signed hash or length: %w", name, err)}
	case errors.Is(err, &metadata.ErrRepository{}), transport.IsTooLong(err):
		return refusedError{fmt.Errorf("%s refused: %w", name, err)}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// refusedError is metadata refused by verification: it reads as the error
// it holds, and is ErrRefused.
type refusedError struct{ err error }

func (e refusedError) Error() string        { return e.err.Error() }
func (e refusedError) Unwrap() error        { return e.err }
func (e refusedError) Is(target error) bool { return target == ErrRefused }
