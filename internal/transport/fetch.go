package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// The fetchers implement go-tuf's fetcher.Fetcher.
var (
	_ fetcher.Fetcher = (*HTTPFetcher)(nil)
	_ fetcher.Fetcher = (*FTPFetcher)(nil)
)

// DefaultTimeout is the Timeout used when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// errIdle is the cause of a transfer cancelled because the server stayed
// silent for longer than the fetcher's timeout.
var errIdle = errors.New("server stopped responding")

// notFoundError reports a file the server does not have. It wraps a
// *metadata.ErrDownloadHTTP with status 404 whatever the protocol, because
// that is what go-tuf's updater looks for when it probes for newer root
// versions (N.root.json): "not found" means "no newer root".
type notFoundError struct {
	url    string
	detail string
	http   *metadata.ErrDownloadHTTP
}

func newNotFound(url, detail string) error {
	return &notFoundError{url: url, detail: detail,
		http: &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: url}}
}

func (e *notFoundError) Error() string {
	return fmt.Sprintf("%s: not found (%s)", e.url, e.detail)
}

func (e *notFoundError) Unwrap() error { return e.http }

// IsNotFound reports whether err says a fetched file does not exist on the
// server (HTTP 404 or 410, FTP 550 or 551 in reply to RETR).
func IsNotFound(err error) bool {
	var h *metadata.ErrDownloadHTTP
	return errors.As(err, &h) && h.StatusCode == http.StatusNotFound
}

// IsTooLong reports whether err says a fetched file was longer than
// allowed.
func IsTooLong(err error) bool {
	var lm *metadata.ErrDownloadLengthMismatch
	return errors.As(err, &lm)
}

// tooLong is the error for a file longer than the fetcher was allowed to
// read.
func tooLong(url string, maxLength int64, what string) error {
	return &metadata.ErrDownloadLengthMismatch{
		Msg: fmt.Sprintf("%s: %s is larger than the %d bytes allowed", url, what, maxLength)}
}

// readLimited reads r to the end, but never more than maxLength+1 bytes:
// a longer file is an error. sizeHint, when positive and within the limit,
// sizes the buffer. progress, when not nil, is called with the byte count
// of every read that returned data.
func readLimited(r io.Reader, url string, maxLength, sizeHint int64, progress func(int)) ([]byte, error) {
	if maxLength < 0 {
		maxLength = 0
	}
	capacity := int64(512)
	if sizeHint > 0 && sizeHint <= maxLength {
		capacity = sizeHint + 1 // room for the byte that would prove it too long
	}
	buf := make([]byte, 0, capacity)
	lr := io.LimitReader(r, maxLength+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 && progress != nil {
			progress(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(buf)) > maxLength {
		return nil, tooLong(url, maxLength, "the file")
	}
	return buf, nil
}

// watchdog cancels a transfer when no progress has been made for timeout.
type watchdog struct {
	t       *time.Timer
	timeout time.Duration
}

// newWatchdog arms a watchdog calling cancel(errIdle) after timeout without
// a kick. A zero timeout disables it.
func newWatchdog(timeout time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{timeout: timeout}
	if timeout > 0 {
		w.t = time.AfterFunc(timeout, func() { cancel(errIdle) })
	}
	return w
}

func (w *watchdog) kick() {
	if w.t != nil {
		w.t.Reset(w.timeout)
	}
}

func (w *watchdog) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// NewFetcher returns the go-tuf fetcher for scheme ("ftp", "http" or
// "https"), bound to ctx, with the minimum transfer rate lim, and a
// function to release it. client is used for http(s) (nil: a client with
// timeouts, see NewHTTPFetcher); timeout is as for NewFTPFetcher and
// NewHTTPFetcher.
func NewFetcher(ctx context.Context, scheme string, client *http.Client, timeout time.Duration, lim RateLimits) (fetcher.Fetcher, func()) {
	if scheme == "ftp" {
		ff := NewFTPFetcher(ctx, timeout)
		ff.limits = lim
		return ff, func() { ff.Close() }
	}
	hf := NewHTTPFetcher(ctx, client, timeout)
	hf.limits = lim
	return hf, func() {}
}
