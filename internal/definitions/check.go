package definitions

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	tufupdater "github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// MetadataInfo describes the metadata a server serves, as verified by
// CheckMetadata.
type MetadataInfo struct {
	// Root, Timestamp, Snapshot and Targets are the versions of the
	// verified metadata.
	Root, Timestamp, Snapshot, Targets int64
	// Expires is when the timestamp metadata expires (the earliest expiry
	// of the state, normally).
	Expires time.Time
	// Definitions is the newest definitions release listed, "" for none.
	Definitions string
}

// CheckMetadata refreshes the TUF metadata of the repository at server (an
// ftp://, http:// or https:// URL, as in Config.Servers) from the pinned
// root, exactly as Update does, but in memory only: nothing is written to
// disk, no state directory is used and no target is downloaded. It reports
// what verified, or the same explained error Update would skip the server
// with (tampered, expired, rollback within the chain...). client is used
// for http(s) servers (nil: a client with timeouts); timeout bounds each
// wait on the server (zero: transport.DefaultTimeout). The default
// transport.RateLimits apply (a server too slow fails the check).
func CheckMetadata(ctx context.Context, server string, root []byte, client *http.Client, timeout time.Duration) (MetadataInfo, error) {
	var info MetadataInfo
	s, err := parseServer(server)
	if err != nil {
		return info, err
	}
	if timeout == 0 {
		timeout = transport.DefaultTimeout
	}
	if client == nil && s.scheme != "ftp" {
		client = transport.DefaultHTTPClient(timeout)
		defer client.CloseIdleConnections()
	}
	lim, _ := transport.RateLimits{}.WithDefaults()
	sctx, budget, end := lim.Session(ctx)
	defer end()
	base, release := transport.NewFetcher(sctx, s.scheme, client, timeout, lim)
	defer release()
	f := &recordingFetcher{f: transport.BudgetFetcher(base, budget)}
	cfg, err := repo.ClientConfig(s.base, root)
	if err != nil {
		return info, fmt.Errorf("pinned root: %w", err)
	}
	cfg.DisableLocalCache = true
	cfg.PrefixTargetsWithHash = true
	cfg.Fetcher = f
	up, err := tufupdater.New(cfg)
	if err != nil {
		return info, fmt.Errorf("pinned root: %w", err)
	}
	if err := up.Refresh(); err != nil {
		if ctx.Err() != nil {
			return info, fmt.Errorf("fetching metadata: %w", context.Cause(ctx))
		}
		return info, explainRefresh(f.last, err)
	}
	tm := up.GetTrustedMetadataSet()
	info.Root = tm.Root.Signed.Version
	info.Timestamp, info.Expires = tm.Timestamp.Signed.Version, tm.Timestamp.Signed.Expires
	info.Snapshot = tm.Snapshot.Signed.Version
	if t := tm.Targets[metadata.TARGETS]; t != nil {
		info.Targets = t.Signed.Version
	}
	if _, v, ok := repo.LatestDefinitions(up.GetTopLevelTargets()); ok {
		info.Definitions = v
	}
	return info, nil
}
