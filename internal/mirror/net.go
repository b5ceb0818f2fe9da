package mirror

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/vigil-fleet/vigil/internal/transport"
)

// endpoint is the upstream at one of its addresses. Every connection goes
// to addr; for HTTP(S) the URL keeps the name, so the Host header and TLS
// (SNI and certificate verification) use it.
type endpoint struct {
	scheme, name, port string
	host               string // the URL's host part: name[:port]
	addr               netip.Addr
	path               string // URL path of the public directory, no trailing slash
	tls                *tls.Config
	timeout            time.Duration
	limits             transport.RateLimits
	userAgent          string
}

// dialAddr is where connections go.
func (e *endpoint) dialAddr() string { return net.JoinHostPort(e.addr.String(), e.port) }

// baseURL is the public directory's URL as fetched from this address:
// the name for HTTP(S) (dialled at addr), the address for FTP, which has
// no use for the name.
func (e *endpoint) baseURL() string {
	host := e.host
	if e.scheme == "ftp" {
		host = e.dialAddr()
	}
	u := url.URL{Scheme: e.scheme, Host: host, Path: e.path}
	return u.String()
}

// fileURL is the URL of rel (slash-separated, under the public directory).
func (e *endpoint) fileURL(rel string) string {
	u := url.URL{Scheme: e.scheme, Host: e.host, Path: e.path + "/" + rel}
	if e.scheme == "ftp" {
		u.Host = e.dialAddr()
	}
	return u.String()
}

// httpClient returns a client whose every connection goes to addr, with
// no proxy (a proxy would resolve the name itself) and no redirect to
// another host (that would leave the address).
func (e *endpoint) httpClient(conns int) *http.Client {
	tc := &tls.Config{}
	if e.tls != nil {
		tc = e.tls.Clone()
	}
	tc.ServerName = e.name
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialTCP(ctx, e.dialAddr(), e.timeout)
		},
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   e.timeout,
		ResponseHeaderTimeout: e.timeout,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       30 * time.Second,
		DisableCompression:    true,
		ReadBufferSize:        256 << 10,
	}
	host := net.JoinHostPort(e.name, e.port)
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != e.scheme || canonicalHost(req.URL) != host {
			return fmt.Errorf("redirect to %s refused: a session stays on one address", req.URL.Redacted())
		}
		return nil
	}}
}

// canonicalHost is host:port of u, with the scheme's default port.
func canonicalHost(u *url.URL) string {
	p := u.Port()
	if p == "" {
		p = map[string]string{"http": "80", "https": "443", "ftp": "21"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), p)
}

// metaFetcher returns a go-tuf fetcher for metadata at this address
// (internal/transport's fetchers, with the minimum transfer rate), counting
// what it fetches and extending budget (nil: none) by the sizes of what
// it fetches, and a function to release it.
func (e *endpoint) metaFetcher(ctx context.Context, budget *transport.Budget) (*countingFetcher, func()) {
	switch e.scheme {
	case "ftp":
		f := transport.NewFTPFetcher(ctx, e.timeout)
		_ = f.SetRateLimits(e.limits) // checked by New
		return &countingFetcher{f: transport.BudgetFetcher(f, budget)}, func() { f.Close() }
	default:
		c := e.httpClient(2)
		f := transport.NewHTTPFetcher(ctx, c, e.timeout)
		f.SetUserAgent(e.userAgent)
		_ = f.SetRateLimits(e.limits)
		return &countingFetcher{f: transport.BudgetFetcher(f, budget)}, c.CloseIdleConnections
	}
}

// countingFetcher counts the files and bytes fetched and keeps each
// file's bytes by URL (metadata is small), so that a session can publish
// exactly the roots it verified.
type countingFetcher struct {
	f fetcher.Fetcher

	mu    sync.Mutex
	files int
	bytes int64
	got   map[string][]byte
	last  string
}

func (c *countingFetcher) DownloadFile(u string, maxLength int64, timeout time.Duration) ([]byte, error) {
	c.mu.Lock()
	c.last = u
	c.mu.Unlock()
	b, err := c.f.DownloadFile(u, maxLength, timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files++
	c.bytes += int64(len(b))
	if err == nil {
		if c.got == nil {
			c.got = map[string][]byte{}
		}
		c.got[u] = b
	}
	return b, err
}

func (c *countingFetcher) counts() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files, c.bytes
}

// targetConn fetches target files from one address, as streams that
// resume (transport.Stream). One goroutine uses it at a time.
type targetConn struct {
	e *endpoint
	s transport.Stream
}

// open returns the content of rel (under the public directory) from
// offset; start is where the returned body really starts.
func (t targetConn) open(ctx context.Context, rel string, offset int64) (body io.ReadCloser, start int64, err error) {
	return t.s.Open(ctx, t.e.fileURL(rel), offset)
}

func (t targetConn) close() { t.s.Close() }

func (e *endpoint) targetConn(ctx context.Context, client *http.Client) targetConn {
	if e.scheme == "ftp" {
		return targetConn{e: e, s: transport.NewFTPStream(ctx, e.timeout, e.limits)}
	}
	return targetConn{e: e, s: transport.NewHTTPStream(client, e.timeout, e.limits, e.userAgent)}
}
