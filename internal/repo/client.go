package repo

import (
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
)

// Names inside a repository's public directory.
const (
	MetadataDir = "metadata" // the metadata files
	TargetsDir  = "targets"  // the target files, under hash-prefixed names
)

// ClientConfig returns the go-tuf updater configuration for a repository
// served at baseURL (the URL of public/): metadata from baseURL/metadata,
// targets from baseURL/targets with hash-prefixed names, trusting
// rootJSON (the pinned 1.root.json, or a later root the client has
// verified). For a file:// baseURL, set Fetcher to a
// transport.FileFetcher.
// The caller sets LocalMetadataDir and LocalTargetsDir (or
// DisableLocalCache) before definitions.New.
func ClientConfig(baseURL string, rootJSON []byte) (*config.UpdaterConfig, error) {
	baseURL = strings.TrimSuffix(baseURL, "/")
	cfg, err := config.New(baseURL+"/"+MetadataDir, rootJSON)
	if err != nil {
		return nil, err
	}
	cfg.RemoteTargetsURL = baseURL + "/" + TargetsDir
	cfg.PrefixTargetsWithHash = true
	return cfg, nil
}
