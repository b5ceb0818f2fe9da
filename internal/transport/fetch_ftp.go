package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/vigil-fleet/vigil/internal/idleconn"
)

// FTPFetcher downloads TUF metadata and targets over FTP for go-tuf's
// updater: it logs in (anonymously unless the URL carries a user), uses
// passive mode (EPSV, falling back to PASV), binary transfers, and RETR.
// One control connection is kept and reused for every file from the same
// server until Close, and dropped (then re-established on the next file)
// whenever its state is in doubt. A file the server refuses to send (550
// or 551 in reply to RETR) is reported as not found (see IsNotFound), and
// no more than maxLength+1 bytes of a file are ever read.
//
// A transfer slower than its RateLimits (the defaults unless
// SetRateLimits) is abandoned with a *SlowError.
//
// An FTPFetcher is safe for concurrent use, but transfers are serialised
// on its one connection.
type FTPFetcher struct {
	ctx     context.Context
	timeout time.Duration
	limits  RateLimits

	mu     sync.Mutex
	conn   *ftp.ServerConn
	key    string                        // user@host:port of conn
	dialed atomic.Pointer[idleconn.Conn] // the connection dialled last: a transfer's data connection
}

// NewFTPFetcher returns a fetcher whose connections are bound to ctx:
// cancelling it closes them. timeout bounds connection set-up and every
// wait on the server (a reply, or the next bytes of a file), not the whole
// transfer; zero means DefaultTimeout, negative none.
func NewFTPFetcher(ctx context.Context, timeout time.Duration) *FTPFetcher {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		timeout = 0
	}
	lim, _ := RateLimits{}.WithDefaults()
	return &FTPFetcher{ctx: ctx, timeout: timeout, limits: lim}
}

// SetRateLimits sets the minimum transfer rate of each file (see
// RateLimits; the zero fields take the defaults). The session part of l
// is not used by the fetcher: see BudgetFetcher.
func (f *FTPFetcher) SetRateLimits(l RateLimits) error {
	l, err := l.WithDefaults()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = l
	return nil
}

// Close ends the control connection, if any.
func (f *FTPFetcher) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil
	}
	err := f.conn.Quit()
	f.conn, f.key = nil, ""
	return err
}

// DownloadFile implements fetcher.Fetcher for ftp:// URLs. The timeout
// argument is deprecated in go-tuf and ignored.
func (f *FTPFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	u, err := url.Parse(urlPath)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ftp" || u.Host == "" {
		return nil, fmt.Errorf("%s: not an ftp://host/path URL", urlPath)
	}
	if u.Path == "" || u.Path == "/" {
		return nil, fmt.Errorf("%s: no file in the URL", urlPath)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "21")
	}
	user, pass := "anonymous", "anonymous"
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	shown := u.Redacted()

	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ctx.Err(); err != nil {
		return nil, fmt.Errorf("RETR %s: %w", shown, context.Cause(f.ctx))
	}
	c, err := f.connect(addr, user, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shown, f.explain(err))
	}
	data, reusable, err := f.retr(c, shown, u.Path, maxLength)
	if !reusable {
		f.drop()
	}
	return data, err
}

// retr fetches one file on c. reusable reports whether c is still in a
// known state.
func (f *FTPFetcher) retr(c *ftp.ServerConn, shown, path string, maxLength int64) (data []byte, reusable bool, err error) {
	f.dialed.Store(nil)
	resp, err := c.Retr(path)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			if te.Code == ftp.StatusFileUnavailable || te.Code == ftp.StatusPageTypeUnknown {
				return nil, true, newNotFound(shown, fmt.Sprintf("FTP %d %s", te.Code, te.Msg))
			}
			return nil, true, fmt.Errorf("RETR %s: FTP %d %s", shown, te.Code, te.Msg)
		}
		return nil, false, fmt.Errorf("RETR %s: %w", shown, f.explain(err))
	}
	// The transfer is judged from here: the data connection is open. Too
	// slow, it is closed, which ends the read in progress.
	dc := f.dialed.Load()
	meter := f.limits.Watch("RETR "+shown, func(error) {
		if dc != nil {
			_ = dc.Close()
		}
	})
	data, err = readLimited(resp, shown, maxLength, -1, meter.Add)
	if serr := meter.Stop(); serr != nil && err != nil {
		// Not resp.Close: it would wait for the server's verdict, which
		// a slow server may be slow to give. The connection is dropped.
		return nil, false, serr
	}
	if err != nil {
		_ = resp.Close()
		var te *textproto.Error
		if errors.As(err, &te) {
			return nil, false, fmt.Errorf("RETR %s: FTP %d %s", shown, te.Code, te.Msg)
		}
		if IsTooLong(err) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("RETR %s: %w", shown, f.explain(err))
	}
	// Close reads the server's verdict on the transfer (226): a transfer
	// it aborted is not a complete file.
	if err := resp.Close(); err != nil {
		return nil, false, fmt.Errorf("RETR %s: transfer not confirmed: %w", shown, f.explain(err))
	}
	return data, true, nil
}

// connect returns the open connection for user@addr, or dials and logs in.
func (f *FTPFetcher) connect(addr, user, pass string) (*ftp.ServerConn, error) {
	key := user + "@" + addr
	if f.conn != nil && f.key == key {
		return f.conn, nil
	}
	f.drop()
	c, err := ftp.Dial(addr, ftp.DialWithDialFunc(f.dial))
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass); err != nil {
		_ = c.Quit()
		return nil, fmt.Errorf("login as %s: %w", user, err)
	}
	f.conn, f.key = c, key
	return c, nil
}

// drop abandons the connection without a QUIT exchange.
func (f *FTPFetcher) drop() {
	if f.conn == nil {
		return
	}
	// Quit sends QUIT and closes; on a connection in an unknown state the
	// idle deadline bounds the wait.
	_ = f.conn.Quit()
	f.conn, f.key = nil, ""
}

// dial opens the control and data connections: bounded by the timeout,
// closed when ctx is cancelled, and with an idle deadline on every read
// and write.
func (f *FTPFetcher) dial(network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: f.timeout}
	c, err := d.DialContext(f.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ic := idleconn.New(f.ctx, c, f.timeout)
	f.dialed.Store(ic)
	return ic, nil
}

// explain makes timeouts and cancellations read as such.
func (f *FTPFetcher) explain(err error) error {
	if f.ctx.Err() != nil {
		return context.Cause(f.ctx)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("timed out: no data from the server for %v", f.timeout)
	}
	return err
}
