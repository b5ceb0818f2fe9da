package transport

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
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

	mu   sync.Mutex
	conn *FTPConn
	key  string // user@host:port of conn
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
func (f *FTPFetcher) retr(c *FTPConn, shown, path string, maxLength int64) (data []byte, reusable bool, err error) {
	resp, dc, err := c.Retr(path, 0)
	if err != nil {
		if te, ok := FTPReply(err); ok {
			if ftpNotFound(te) {
				return nil, true, newNotFound(shown, fmt.Sprintf("FTP %d %s", te.Code, te.Msg))
			}
			return nil, true, fmt.Errorf("RETR %s: FTP %d %s", shown, te.Code, te.Msg)
		}
		return nil, false, fmt.Errorf("RETR %s: %w", shown, f.explain(err))
	}
	// The transfer is judged from here: the data connection is open. Too
	// slow, it is closed, which ends the read in progress.
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
		if te, ok := FTPReply(err); ok {
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
func (f *FTPFetcher) connect(addr, user, pass string) (*FTPConn, error) {
	key := user + "@" + addr
	if f.conn != nil && f.key == key {
		return f.conn, nil
	}
	f.drop()
	c, err := DialFTP(f.ctx, addr, user, pass, f.timeout, nil)
	if err != nil {
		return nil, err
	}
	f.conn, f.key = c, key
	return c, nil
}

// drop abandons the connection.
func (f *FTPFetcher) drop() {
	if f.conn == nil {
		return
	}
	// Quit sends QUIT and closes; on a connection in an unknown state the
	// idle deadline bounds the wait.
	_ = f.conn.Quit()
	f.conn, f.key = nil, ""
}

// explain makes timeouts and cancellations read as such.
func (f *FTPFetcher) explain(err error) error { return explainFTP(f.ctx, f.timeout, err) }
