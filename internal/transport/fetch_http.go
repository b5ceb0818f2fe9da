package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/buildinfo"
)

// HTTPFetcher downloads TUF metadata and targets over HTTP or HTTPS for
// go-tuf's updater. It sends one GET per file, follows redirects as its
// client does, maps 404 and 410 to a not-found error (see IsNotFound),
// refuses a Content-Length over the allowed length before reading, and
// never reads more than maxLength+1 bytes of a body. A transfer slower
// than its RateLimits (the defaults unless SetRateLimits) is abandoned
// with a *SlowError.
type HTTPFetcher struct {
	ctx       context.Context
	client    *http.Client
	timeout   time.Duration
	userAgent string
	limits    RateLimits
}

// NewHTTPFetcher returns a fetcher whose requests are bound to ctx and sent
// with client (a client with sensible timeouts when nil). timeout bounds
// every wait on the server — for the response and between two reads of the
// body — not the whole transfer; zero means DefaultTimeout, negative none.
func NewHTTPFetcher(ctx context.Context, client *http.Client, timeout time.Duration) *HTTPFetcher {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if client == nil {
		client = DefaultHTTPClient(timeout)
	}
	lim, _ := RateLimits{}.WithDefaults()
	return &HTTPFetcher{ctx: ctx, client: client, timeout: timeout,
		userAgent: "vigil-agent/" + buildinfo.String(), limits: lim}
}

// SetRateLimits sets the minimum transfer rate of each file (see
// RateLimits; the zero fields take the defaults). The session part of l
// is not used by the fetcher: see BudgetFetcher.
func (f *HTTPFetcher) SetRateLimits(l RateLimits) error {
	l, err := l.WithDefaults()
	if err != nil {
		return err
	}
	f.limits = l
	return nil
}

// DefaultHTTPClient is the client used when none is given: the
// environment's proxy settings, bounded connection set-up, no overall
// deadline (the fetcher's idle watchdog handles stalled transfers).
func DefaultHTTPClient(timeout time.Duration) *http.Client {
	if timeout < 0 {
		timeout = 0
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = timeout
	tr.ResponseHeaderTimeout = timeout
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{Transport: tr}
}

// SetUserAgent replaces the User-Agent header (default
// "vigil-agent/VERSION").
func (f *HTTPFetcher) SetUserAgent(ua string) { f.userAgent = ua }

// DownloadFile implements fetcher.Fetcher. The timeout argument is
// deprecated in go-tuf and ignored.
func (f *HTTPFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	ctx, cancel := context.WithCancelCause(f.ctx)
	defer cancel(nil)
	wd := newWatchdog(f.timeout, cancel)
	defer wd.stop()
	meter := f.limits.Watch("GET "+urlPath, cancel)
	defer meter.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, err
	}
	if f.userAgent != "" {
		req.Header.Set("User-Agent", f.userAgent)
	}
	res, err := f.client.Do(req)
	if err != nil {
		return nil, f.fail(ctx, urlPath, err, meter)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		return nil, newNotFound(urlPath, "HTTP "+res.Status)
	default:
		return nil, fmt.Errorf("GET %s: HTTP %s: %w", urlPath, res.Status,
			&metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: urlPath})
	}
	if res.ContentLength > maxLength {
		return nil, tooLong(urlPath, maxLength, fmt.Sprintf("Content-Length %d", res.ContentLength))
	}
	wd.kick()
	data, err := readLimited(res.Body, urlPath, maxLength, res.ContentLength, func(n int) {
		wd.kick()
		meter.Add(n)
	})
	if err != nil {
		return nil, f.fail(ctx, urlPath, err, meter)
	}
	return data, nil
}

// fail turns a transport error into a clear one: a timeout or a transfer
// too slow says so.
func (f *HTTPFetcher) fail(ctx context.Context, urlPath string, err error, meter *Meter) error {
	var lm *metadata.ErrDownloadLengthMismatch
	if errors.As(err, &lm) {
		return err
	}
	if serr := meter.Err(); serr != nil {
		return serr
	}
	if errors.Is(context.Cause(ctx), errIdle) {
		return fmt.Errorf("GET %s: timed out: no data from the server for %v", urlPath, f.timeout)
	}
	if f.ctx.Err() != nil {
		return fmt.Errorf("GET %s: %w", urlPath, context.Cause(f.ctx))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("GET %s: timed out: %w", urlPath, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return err // already names the method and URL
	}
	return fmt.Errorf("GET %s: %w", urlPath, err)
}
