package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/vigil-fleet/vigil/internal/idleconn"
)

// FTPConn is Vigil's FTP client: one control connection to one server,
// logged in, in passive mode (EPSV, falling back to PASV) with binary
// transfers. Its control and data connections are dialled with a timeout,
// closed when its context is cancelled, and carry an idle deadline on
// every read and write. The fetchers, the mirror's streaming reads and
// `vigil doctor` all use it. One goroutine uses an FTPConn at a time.
type FTPConn struct {
	ctx     context.Context
	timeout time.Duration
	trace   *FTPTrace
	c       *ftp.ServerConn
	dialed  atomic.Pointer[idleconn.Conn] // the connection dialled last: a transfer's data connection
}

// FTPTrace records what an FTPConn did, for `vigil doctor`'s diagnosis:
// where its connections went, whether the last dial failed, and the
// control connection's conversation (to tell EPSV from PASV). The zero
// value is ready to use; pass it to DialFTP.
type FTPTrace struct {
	mu     sync.Mutex
	addrs  []string
	conns  []net.Conn
	failed bool
	talk   strings.Builder
}

// DialFTP connects to the FTP server at addr (host:port) and logs in as
// user. timeout bounds connecting and every later wait on the server
// (zero: none); cancelling ctx closes every connection. trace, when not
// nil, records the connections and the conversation. A failed login is
// an *FTPLoginError. Errors are as the network returned them: see
// ExplainFTP.
func DialFTP(ctx context.Context, addr, user, pass string, timeout time.Duration, trace *FTPTrace) (*FTPConn, error) {
	fc := &FTPConn{ctx: ctx, timeout: timeout, trace: trace}
	opts := []ftp.DialOption{ftp.DialWithDialFunc(fc.dial)}
	if trace != nil {
		opts = append(opts, ftp.DialWithDebugOutput(trace))
	}
	c, err := ftp.Dial(addr, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass); err != nil {
		_ = c.Quit()
		return nil, &FTPLoginError{User: user, Err: err}
	}
	fc.c = c
	return fc, nil
}

// FTPLoginError is a server that accepted the connection but not the
// login.
type FTPLoginError struct {
	User string
	Err  error
}

func (e *FTPLoginError) Error() string { return fmt.Sprintf("login as %s: %v", e.User, e.Err) }

func (e *FTPLoginError) Unwrap() error { return e.Err }

// dial opens the control and data connections.
func (fc *FTPConn) dial(network, addr string) (net.Conn, error) {
	fc.trace.dialing(addr)
	d := net.Dialer{Timeout: fc.timeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(fc.ctx, network, addr)
	fc.trace.dialed(c, err)
	if err != nil {
		return nil, err
	}
	ic := idleconn.New(fc.ctx, c, fc.timeout)
	fc.dialed.Store(ic)
	return ic, nil
}

// Retr starts the transfer of path from offset (0: the whole file). The
// returned response is the file's content; closing it reads the server's
// verdict on the transfer (226). data is the transfer's data connection
// (nil if unknown): closing it ends a read in progress, which is how a
// transfer too slow is abandoned.
func (fc *FTPConn) Retr(path string, offset int64) (resp *ftp.Response, data *idleconn.Conn, err error) {
	fc.dialed.Store(nil)
	if offset > 0 {
		resp, err = fc.c.RetrFrom(path, uint64(offset))
	} else {
		resp, err = fc.c.Retr(path)
	}
	if err != nil {
		return nil, nil, err
	}
	return resp, fc.dialed.Load(), nil
}

// Quit ends the session (QUIT, then close); on a connection in an unknown
// state the idle deadline bounds the wait.
func (fc *FTPConn) Quit() error { return fc.c.Quit() }

// Explain makes an error of this connection read clearly: a cancelled
// context as its cause, an idle deadline as a timeout naming its length.
func (fc *FTPConn) Explain(err error) error { return explainFTP(fc.ctx, fc.timeout, err) }

func explainFTP(ctx context.Context, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("timed out: no data from the server for %v", timeout)
	}
	return err
}

// FTPReply returns the FTP reply in err, if the server answered with an
// error reply.
func FTPReply(err error) (*textproto.Error, bool) {
	var te *textproto.Error
	ok := errors.As(err, &te)
	return te, ok
}

// ftpNotFound reports whether an error reply to RETR means the file does
// not exist (550, 551).
func ftpNotFound(te *textproto.Error) bool {
	return te.Code == ftp.StatusFileUnavailable || te.Code == ftp.StatusPageTypeUnknown
}

func (t *FTPTrace) dialing(addr string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addrs = append(t.addrs, addr)
}

func (t *FTPTrace) dialed(c net.Conn, err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = err != nil
	if c != nil {
		t.conns = append(t.conns, c)
	}
}

// Write records the control connection's conversation (jlaffaye/ftp's
// debug output; the first 64 KiB).
func (t *FTPTrace) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.talk.Len() < 64<<10 {
		t.talk.Write(p)
	}
	return len(p), nil
}

// Control is the control connection's address ("" if none was dialled).
func (t *FTPTrace) Control() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.addrs) == 0 {
		return ""
	}
	return t.addrs[0]
}

// Data is the last data connection's address ("" if none was dialled).
func (t *FTPTrace) Data() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.addrs) < 2 {
		return ""
	}
	return t.addrs[len(t.addrs)-1]
}

// LastFailed reports whether the last connection could not be made.
func (t *FTPTrace) LastFailed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Mode is the passive mode the server granted last: "EPSV", "PASV", or
// "passive" when unknown.
func (t *FTPTrace) Mode() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	mode := "passive"
	for _, line := range strings.Split(t.talk.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "229 "):
			mode = "EPSV"
		case strings.HasPrefix(line, "227 "):
			mode = "PASV"
		}
	}
	return mode
}

// CloseAll closes every connection made.
func (t *FTPTrace) CloseAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		_ = c.Close()
	}
}
