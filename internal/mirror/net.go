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
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/vigil-fleet/vigil/internal/idleconn"
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

// metaFetcher returns a go-tuf fetcher for metadata at this address (the
// updater package's fetchers, with the minimum transfer rate), counting
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

// errIdle is the cause of a transfer cancelled because the server stayed
// silent too long.
var errIdle = errors.New("server stopped sending")

// errRangeNotSatisfiable says a resumed download asked for an offset at or
// past the end of the file.
var errRangeNotSatisfiable = errors.New("range not satisfiable")

// notFoundError is a file the address does not have.
type notFoundError struct{ what string }

func (e *notFoundError) Error() string { return e.what + ": not found" }

// targetConn fetches target files from one address. One goroutine uses
// it at a time.
type targetConn interface {
	// open returns the content of rel from offset; start is where the
	// returned body really starts (0 if the server ignored the offset).
	// Closing the body reports whether the server completed the transfer.
	open(ctx context.Context, rel string, offset int64) (body io.ReadCloser, start int64, err error)
	close()
}

func (e *endpoint) targetConn(ctx context.Context, client *http.Client) targetConn {
	if e.scheme == "ftp" {
		return &ftpTargets{e: e, ctx: ctx}
	}
	return &httpTargets{e: e, client: client}
}

type httpTargets struct {
	e      *endpoint
	client *http.Client
}

func (h *httpTargets) close() {}

func (h *httpTargets) open(ctx context.Context, rel string, offset int64) (io.ReadCloser, int64, error) {
	u := h.e.fileURL(rel)
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(h.e.timeout, func() { cancel(errIdle) })
	// The transfer's rate is judged from the request on.
	meter := h.e.limits.Watch("GET "+u, cancel)
	fail := func(err error) (io.ReadCloser, int64, error) {
		timer.Stop()
		if serr := meter.Stop(); serr != nil {
			err = serr
		} else if errors.Is(context.Cause(ctx), errIdle) {
			err = fmt.Errorf("GET %s: timed out: nothing from the server for %v", u, h.e.timeout)
		}
		cancel(nil)
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("User-Agent", h.e.userAgent)
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	res, err := h.client.Do(req)
	if err != nil {
		return fail(err)
	}
	start := int64(0)
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusPartialContent:
		s, ok := contentRangeStart(res.Header.Get("Content-Range"))
		if !ok || s != offset {
			res.Body.Close()
			return fail(fmt.Errorf("GET %s: Content-Range %q does not start at %d", u, res.Header.Get("Content-Range"), offset))
		}
		start = offset
	case http.StatusRequestedRangeNotSatisfiable:
		res.Body.Close()
		return fail(errRangeNotSatisfiable)
	case http.StatusNotFound, http.StatusGone:
		res.Body.Close()
		return fail(&notFoundError{what: "GET " + u + ": HTTP " + res.Status})
	default:
		res.Body.Close()
		return fail(fmt.Errorf("GET %s: HTTP %s", u, res.Status))
	}
	return &idleBody{rc: res.Body, timer: timer, meter: meter, timeout: h.e.timeout, cancel: cancel, ctx: ctx, what: "GET " + u}, start, nil
}

// contentRangeStart parses the first byte position of "bytes A-B/N".
func contentRangeStart(v string) (int64, bool) {
	v, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(v, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}

// idleBody is a response body whose reads must make progress within
// timeout, and at the minimum rate.
type idleBody struct {
	rc      io.ReadCloser
	timer   *time.Timer
	meter   *transport.Meter
	timeout time.Duration
	cancel  context.CancelCauseFunc
	ctx     context.Context
	what    string
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.timeout)
		b.meter.Add(n)
	}
	if err != nil && err != io.EOF {
		if serr := b.meter.Err(); serr != nil {
			err = serr
		} else if errors.Is(context.Cause(b.ctx), errIdle) {
			err = fmt.Errorf("%s: timed out: nothing from the server for %v", b.what, b.timeout)
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	b.meter.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// ftpTargets keeps one FTP control connection to the address.
type ftpTargets struct {
	e      *endpoint
	ctx    context.Context
	conn   *ftp.ServerConn
	dialed atomic.Pointer[idleconn.Conn] // the connection dialled last: a transfer's data connection
}

func (f *ftpTargets) close() {
	if f.conn != nil {
		_ = f.conn.Quit()
		f.conn = nil
	}
}

func (f *ftpTargets) dial(network, addr string) (net.Conn, error) {
	c, err := dialTCP(f.ctx, addr, f.e.timeout)
	if err != nil {
		return nil, err
	}
	ic := idleconn.New(f.ctx, c, f.e.timeout)
	f.dialed.Store(ic)
	return ic, nil
}

func (f *ftpTargets) open(ctx context.Context, rel string, offset int64) (io.ReadCloser, int64, error) {
	shown := f.e.fileURL(rel)
	if f.conn == nil {
		c, err := ftp.Dial(f.e.dialAddr(), ftp.DialWithDialFunc(f.dial), ftp.DialWithTimeout(f.e.timeout))
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", shown, f.explain(err))
		}
		if err := c.Login("anonymous", "anonymous"); err != nil {
			_ = c.Quit()
			return nil, 0, fmt.Errorf("%s: login: %w", shown, f.explain(err))
		}
		f.conn = c
	}
	f.dialed.Store(nil)
	resp, err := f.conn.RetrFrom(f.e.path+"/"+rel, uint64(offset))
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			if te.Code == ftp.StatusFileUnavailable || te.Code == ftp.StatusPageTypeUnknown {
				return nil, 0, &notFoundError{what: fmt.Sprintf("RETR %s: FTP %d %s", shown, te.Code, te.Msg)}
			}
			return nil, 0, fmt.Errorf("RETR %s: FTP %d %s", shown, te.Code, te.Msg)
		}
		f.close()
		return nil, 0, fmt.Errorf("RETR %s: %w", shown, f.explain(err))
	}
	// The transfer is judged from here: the data connection is open. Too
	// slow, it is closed, which ends the read in progress.
	dc := f.dialed.Load()
	meter := f.e.limits.Watch("RETR "+shown, func(error) {
		if dc != nil {
			_ = dc.Close()
		}
	})
	return &ftpBody{resp: resp, f: f, meter: meter, what: "RETR " + shown}, offset, nil
}

func (f *ftpTargets) explain(err error) error {
	if f.ctx.Err() != nil {
		return context.Cause(f.ctx)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("timed out: nothing from the server for %v", f.e.timeout)
	}
	return err
}

// ftpBody is an FTP transfer; Close reads the server's verdict (226).
type ftpBody struct {
	resp  *ftp.Response
	f     *ftpTargets
	meter *transport.Meter
	what  string
}

func (b *ftpBody) Read(p []byte) (int, error) {
	n, err := b.resp.Read(p)
	b.meter.Add(n)
	if err != nil && err != io.EOF {
		if serr := b.meter.Err(); serr != nil {
			return n, serr
		}
		err = fmt.Errorf("%s: %w", b.what, b.f.explain(err))
	}
	return n, err
}

func (b *ftpBody) Close() error {
	if serr := b.meter.Stop(); serr != nil {
		// Abandoned as too slow: the server's verdict is not waited
		// for (a slow server may be slow to give it); the control
		// connection is dropped.
		b.f.close()
		return serr
	}
	if err := b.resp.Close(); err != nil {
		b.f.close()
		return fmt.Errorf("%s: transfer not confirmed: %w", b.what, b.f.explain(err))
	}
	return nil
}
