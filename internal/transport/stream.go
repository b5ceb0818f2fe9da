package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jlaffaye/ftp"
)

// ErrRangeNotSatisfiable says a resumed read asked for an offset at or
// past the end of the file.
var ErrRangeNotSatisfiable = errors.New("range not satisfiable")

// errSilent is the cause of a streaming read cancelled because the server
// stayed silent too long.
var errSilent = errors.New("server stopped sending")

// Stream reads files of one server as streams that can resume where an
// earlier read stopped: the mirror's targets, too large to hold in memory
// as go-tuf's Fetcher would. Every read of a body must make progress
// within the stream's timeout and at its minimum rate (RateLimits). One
// goroutine uses a Stream at a time.
type Stream interface {
	// Open returns the content of the file at fileURL from offset; start
	// is where the returned body really starts (0 if the server ignored
	// the offset). A file the server does not have is IsNotFound, an
	// offset past its end ErrRangeNotSatisfiable. Closing the body
	// reports whether the server completed the transfer.
	Open(ctx context.Context, fileURL string, offset int64) (body io.ReadCloser, start int64, err error)
	// Close ends the connections the stream keeps.
	Close()
}

// NewHTTPStream returns a Stream over HTTP(S) sending its requests with
// client (with a Range header to resume) and userAgent.
func NewHTTPStream(client *http.Client, timeout time.Duration, limits RateLimits, userAgent string) Stream {
	return &httpStream{client: client, timeout: timeout, limits: limits, userAgent: userAgent}
}

// NewFTPStream returns a Stream over FTP (REST then RETR to resume),
// keeping one control connection, bound to ctx, to the server of the URLs
// it opens.
func NewFTPStream(ctx context.Context, timeout time.Duration, limits RateLimits) Stream {
	return &ftpStream{ctx: ctx, timeout: timeout, limits: limits}
}

type httpStream struct {
	client    *http.Client
	timeout   time.Duration
	limits    RateLimits
	userAgent string
}

func (h *httpStream) Close() {}

func (h *httpStream) Open(ctx context.Context, u string, offset int64) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(h.timeout, func() { cancel(errSilent) })
	// The transfer's rate is judged from the request on.
	meter := h.limits.Watch("GET "+u, cancel)
	fail := func(err error) (io.ReadCloser, int64, error) {
		timer.Stop()
		if serr := meter.Stop(); serr != nil {
			err = serr
		} else if errors.Is(context.Cause(ctx), errSilent) {
			err = fmt.Errorf("GET %s: timed out: nothing from the server for %v", u, h.timeout)
		}
		cancel(nil)
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("User-Agent", h.userAgent)
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
		return fail(ErrRangeNotSatisfiable)
	case http.StatusNotFound, http.StatusGone:
		res.Body.Close()
		return fail(newNotFound("GET "+u, "HTTP "+res.Status))
	default:
		res.Body.Close()
		return fail(fmt.Errorf("GET %s: HTTP %s", u, res.Status))
	}
	return &idleBody{rc: res.Body, timer: timer, meter: meter, timeout: h.timeout, cancel: cancel, ctx: ctx, what: "GET " + u}, start, nil
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
	meter   *Meter
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
		} else if errors.Is(context.Cause(b.ctx), errSilent) {
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

// ftpStream keeps one FTP control connection.
type ftpStream struct {
	ctx     context.Context
	timeout time.Duration
	limits  RateLimits
	conn    *FTPConn
	key     string // user@host:port of conn
}

func (f *ftpStream) Close() {
	if f.conn != nil {
		_ = f.conn.Quit()
		f.conn, f.key = nil, ""
	}
}

func (f *ftpStream) Open(_ context.Context, fileURL string, offset int64) (io.ReadCloser, int64, error) {
	u, err := url.Parse(fileURL)
	if err != nil {
		return nil, 0, err
	}
	if u.Scheme != "ftp" || u.Host == "" {
		return nil, 0, fmt.Errorf("%s: not an ftp://host/path URL", fileURL)
	}
	shown := u.Redacted()
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "21")
	}
	user, pass := "anonymous", "anonymous"
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	if key := user + "@" + addr; f.conn == nil || f.key != key {
		f.Close()
		c, err := DialFTP(f.ctx, addr, user, pass, f.timeout, nil)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", shown, f.explain(err))
		}
		f.conn, f.key = c, key
	}
	resp, dc, err := f.conn.Retr(u.Path, offset)
	if err != nil {
		if te, ok := FTPReply(err); ok {
			if ftpNotFound(te) {
				return nil, 0, newNotFound("RETR "+shown, fmt.Sprintf("FTP %d %s", te.Code, te.Msg))
			}
			return nil, 0, fmt.Errorf("RETR %s: FTP %d %s", shown, te.Code, te.Msg)
		}
		f.Close()
		return nil, 0, fmt.Errorf("RETR %s: %w", shown, f.explain(err))
	}
	// The transfer is judged from here: the data connection is open. Too
	// slow, it is closed, which ends the read in progress.
	meter := f.limits.Watch("RETR "+shown, func(error) {
		if dc != nil {
			_ = dc.Close()
		}
	})
	return &ftpBody{resp: resp, f: f, meter: meter, what: "RETR " + shown}, offset, nil
}

func (f *ftpStream) explain(err error) error { return explainFTP(f.ctx, f.timeout, err) }

// ftpBody is an FTP transfer; Close reads the server's verdict (226).
type ftpBody struct {
	resp  *ftp.Response
	f     *ftpStream
	meter *Meter
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
		b.f.Close()
		return serr
	}
	if err := b.resp.Close(); err != nil {
		b.f.Close()
		return fmt.Errorf("%s: transfer not confirmed: %w", b.what, b.f.explain(err))
	}
	return nil
}
