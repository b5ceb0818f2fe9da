package transport

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// FileFetcher is a go-tuf fetcher that reads file:// URLs of files under
// Dir (a repository's public/ directory, or a copy of it). A missing file
// is reported as HTTP 404, as go-tuf's updater expects when it looks for
// the next root version.
type FileFetcher struct {
	Dir string
}

// DownloadFile implements fetcher.Fetcher.
func (f FileFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	u, err := url.Parse(urlPath)
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	if u.Scheme != "file" {
		return nil, &metadata.ErrDownload{Msg: fmt.Sprintf("%s: not a file:// URL", urlPath)}
	}
	rel, err := filepath.Rel(filepath.Clean(f.Dir), filepath.Clean(u.Path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: urlPath}
	}
	root, err := os.OpenRoot(f.Dir)
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	defer root.Close()
	file, err := root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: urlPath}
	}
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxLength+1))
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: longer than %d bytes", urlPath, maxLength)}
	}
	return data, nil
}
