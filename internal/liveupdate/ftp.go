package liveupdate

// FTP on goftp.io/server/v2.
//
// goftp parses the control connection, keeps the login state and the
// current directory, and runs the commands of Options.Commands. What it
// lacks, and this file adds:
//
//   - Timeouts and limits. goftp reads commands with no deadline and no
//     length limit (a client could hold a session forever or grow a line
//     without bound), and has no connection limits. The control connection
//     handed to goftp is an *ftpConn: it sets an idle deadline before each
//     command, a ReadTimeout deadline once a command line has started, caps
//     a line at 4 KiB, and answers 421 before a timeout closes it; the
//     listener under goftp is a limitListener.
//   - A safe data path. goftp's passive listener binds every interface,
//     picks ports at random with ten tries (never the top of the range),
//     accepts the first connection from anyone, holds a lock and a port for
//     60 s when the client never connects, and copies through a rate
//     limiter that defeats sendfile. Its LIST, MDTM and MLSD use local time
//     and LF line ends, and its SIZE logs through the standard logger. So
//     PASV, EPSV, REST, RETR, LIST, NLST, MLSD, MLST, SIZE, MDTM, FEAT,
//     OPTS, STAT and ABOR are implemented here, on a data path owned by the
//     *ftpConn: one passive listener at a time, on the control
//     connection's local address, a port scanned over the whole configured
//     range, a connection accepted only from the client's address, and
//     files sent with sendfile under per-chunk write deadlines.
//   - Refusals. Every command that writes (STOR, STOU, APPE, DELE, RNFR,
//     RNTO, MKD, XMKD, RMD, XRMD, SITE, MFMT, MFF) is answered 550 without
//     touching the driver or a data connection; active mode (PORT, EPRT,
//     LPRT) is refused.
//   - The session ID goftp gives its logger is the same for every session,
//     so the access log is written by a wrapper around each command, which
//     reads the reply code from the control connection.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ftpserver "goftp.io/server/v2"
)

// maxCommandLine caps an FTP command line, in bytes.
const maxCommandLine = 4096

// passiveReplyPause delays PASV and EPSV replies. curl 7.88 (Debian 12)
// stalls for one second before opening the data connection when the 227
// or 229 reply is already readable right after it sent PASV or EPSV, that
// is, when the server answers within some tens of microseconds, as it does
// on loopback or a very fast LAN. On any real network the round trip is
// longer than this pause, so it costs nothing there; on loopback it turns
// frequent 1 s stalls into none (see docs/liveupdate.md).
const passiveReplyPause = 300 * time.Microsecond

// ftpServer is the FTP half of a Server.
type ftpServer struct {
	cfg      Config
	repo     *repo
	publicIP netip.Addr
	alog     *accessLog
	log      *slog.Logger
	srv      *ftpserver.Server
	ln       *limitListener

	closing  atomic.Bool
	mu       sync.Mutex
	sessions map[*ftpConn]struct{}
	byRemote map[string]*ftpConn
	gone     chan struct{} // signalled when a session ends
}

func newFTPServer(cfg Config, r *repo, publicIP netip.Addr, alog *accessLog) (*ftpServer, error) {
	f := &ftpServer{
		cfg: cfg, repo: r, publicIP: publicIP, alog: alog, log: cfg.Logger,
		sessions: map[*ftpConn]struct{}{}, byRemote: map[string]*ftpConn{},
		gone: make(chan struct{}, 1),
	}
	srv, err := ftpserver.NewServer(&ftpserver.Options{
		Driver:         roDriver{r},
		Auth:           anonymousAuth{},
		Perm:           ftpserver.NewSimplePerm("ftp", "ftp"),
		Name:           "vigil LiveUpdate",
		WelcomeMessage: "vigil LiveUpdate server: anonymous and read-only.",
		Logger:         goftpLogger{cfg.Logger},
		Commands:       f.commands(),
	})
	if err != nil {
		return nil, err
	}
	f.srv = srv
	return f, nil
}

// serve runs goftp on the limited listener until it is closed.
func (f *ftpServer) serve(ln *limitListener) error {
	err := f.srv.Serve(ftpListener{ln, f})
	if f.closing.Load() {
		return nil
	}
	return err
}

// shutdown closes the listener and the sessions waiting for a command,
// waits for the others to finish their command, and closes whatever is
// left when ctx is done.
func (f *ftpServer) shutdown(ctxDone <-chan struct{}) {
	f.closing.Store(true)
	if f.ln != nil {
		f.ln.Close()
	}
	for {
		f.mu.Lock()
		cs := make([]*ftpConn, 0, len(f.sessions))
		for c := range f.sessions {
			cs = append(cs, c)
		}
		f.mu.Unlock()
		if len(cs) == 0 {
			return
		}
		for _, c := range cs {
			if c.waiting.Load() {
				// The session's goroutine is blocked reading: write
				// under it, straight to the socket.
				c.conn.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				c.conn.Conn.Write([]byte("421 Server shutting down.\r\n"))
				c.Close()
			}
		}
		select {
		case <-f.gone:
		case <-time.After(50 * time.Millisecond):
		case <-ctxDone:
			for _, c := range cs {
				c.Close()
			}
			return
		}
	}
}

// ftpListener turns accepted connections into registered *ftpConn.
type ftpListener struct {
	*limitListener
	f *ftpServer
}

func (l ftpListener) Accept() (net.Conn, error) {
	nc, err := l.limitListener.Accept()
	if err != nil {
		return nil, err
	}
	c := &ftpConn{conn: nc.(*conn), f: l.f}
	l.f.mu.Lock()
	l.f.sessions[c] = struct{}{}
	l.f.byRemote[c.RemoteAddr().String()] = c
	l.f.mu.Unlock()
	return c, nil
}

// ftpConn is an FTP control connection and its session state. The fields
// after mu are guarded by it; the ones before are used by the session's
// goroutine only.
type ftpConn struct {
	*conn
	f *ftpServer

	lineLen   int
	lineStart time.Time
	reqUser   string
	rest      int64
	bytes     int64
	epsvAll   bool

	waiting   atomic.Bool  // blocked reading the next command
	lastCode  atomic.Int32 // code of the last complete reply written
	closeOnce sync.Once

	mu   sync.Mutex
	pasv *net.TCPListener // pending passive listener
	data *conn            // data connection in use
}

var errLineTooLong = errors.New("ftp: command line too long")

func (c *ftpConn) Read(p []byte) (int, error) {
	if c.lineLen == 0 {
		c.waiting.Store(true)
		if c.f.closing.Load() {
			c.waiting.Store(false)
			c.reply(421, "Server shutting down.")
			return 0, io.EOF
		}
		c.conn.SetReadDeadline(time.Now().Add(c.f.cfg.IdleTimeout))
	} else {
		c.conn.SetReadDeadline(c.lineStart.Add(c.f.cfg.ReadTimeout))
	}
	n, err := c.conn.Read(p)
	c.waiting.Store(false)
	for _, b := range p[:n] {
		if b == '\n' {
			c.lineLen = 0
			continue
		}
		if c.lineLen == 0 {
			c.lineStart = time.Now()
		}
		if c.lineLen++; c.lineLen > maxCommandLine {
			c.reply(500, "Command line too long.")
			return 0, errLineTooLong
		}
	}
	if err != nil && isTimeout(err) {
		if c.lineLen == 0 {
			c.reply(421, "Idle timeout: closing control connection.")
		} else {
			c.reply(421, "Timeout reading command: closing control connection.")
		}
	}
	return n, err
}

// Write notes the code of the last complete reply line in p.
func (c *ftpConn) Write(p []byte) (int, error) {
	for i := 0; i+3 < len(p); {
		if p[i+3] == ' ' && isDigit(p[i]) && isDigit(p[i+1]) && isDigit(p[i+2]) {
			c.lastCode.Store(int32(p[i]-'0')*100 + int32(p[i+1]-'0')*10 + int32(p[i+2]-'0'))
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return c.conn.Write(p)
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// reply writes one reply line. goftp flushes its own replies as it writes
// them, so replies written here never interleave with a partial one.
func (c *ftpConn) reply(code int, msg string) {
	c.Write([]byte(strconv.Itoa(code) + " " + msg + "\r\n"))
}

// replyLines writes a multi-line reply: "code-first", the lines (each
// starting with a space), "code last".
func (c *ftpConn) replyLines(code int, first string, lines []string, last string) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d-%s\r\n", code, first)
	for _, l := range lines {
		b.WriteString(" " + l + "\r\n")
	}
	fmt.Fprintf(&b, "%d %s\r\n", code, last)
	c.Write(b.Bytes())
}

func (c *ftpConn) Close() error {
	err := c.conn.Close()
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.pasv != nil {
			c.pasv.Close()
			c.pasv = nil
		}
		if c.data != nil {
			c.data.Close()
		}
		c.mu.Unlock()
		f := c.f
		f.mu.Lock()
		delete(f.sessions, c)
		if f.byRemote[c.RemoteAddr().String()] == c {
			delete(f.byRemote, c.RemoteAddr().String())
		}
		f.mu.Unlock()
		select {
		case f.gone <- struct{}{}:
		default:
		}
	})
	return err
}

// session returns the *ftpConn under a goftp session.
func (f *ftpServer) session(sess *ftpserver.Session) *ftpConn {
	if c, ok := sess.Data["vigil.conn"].(*ftpConn); ok {
		return c
	}
	f.mu.Lock()
	c := f.byRemote[sess.RemoteAddr().String()]
	f.mu.Unlock()
	if c != nil {
		sess.Data["vigil.conn"] = c
	}
	return c
}

// Passive mode.

var errNoPassive = errors.New("no passive listener")

// listenPassive replaces the pending passive listener with a new one on
// ip and a port of the configured range, and returns the port.
func (c *ftpConn) listenPassive(ip net.IP) (int, error) {
	c.closePassive()
	lo, hi := int(c.f.cfg.PassivePorts.Lo), int(c.f.cfg.PassivePorts.Hi)
	var l *net.TCPListener
	var err error
	if lo == 0 {
		l, err = net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
	} else {
		n := hi - lo + 1
		start := rand.IntN(n)
		for i := 0; i < n; i++ {
			l, err = net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: lo + (start+i)%n})
			if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
		}
	}
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.pasv = l
	c.mu.Unlock()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *ftpConn) hasPassive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pasv != nil
}

func (c *ftpConn) closePassive() {
	c.mu.Lock()
	if c.pasv != nil {
		c.pasv.Close()
		c.pasv = nil
	}
	c.mu.Unlock()
}

// acceptData waits ReadTimeout for the client to open the data connection
// to the pending passive listener, and accepts it only from the client's
// own address.
func (c *ftpConn) acceptData() (*conn, error) {
	c.mu.Lock()
	l := c.pasv
	c.pasv = nil
	c.mu.Unlock()
	if l == nil {
		return nil, errNoPassive
	}
	defer l.Close()
	l.SetDeadline(time.Now().Add(c.f.cfg.ReadTimeout))
	for {
		tc, err := l.AcceptTCP()
		if err != nil {
			return nil, err
		}
		if ip := remoteIP(tc); ip != c.ip {
			c.f.log.Warn("ftp: passive data connection from another address refused",
				"client", c.RemoteAddr().String(), "from", tc.RemoteAddr().String())
			tc.Close()
			continue
		}
		dc := newConn(tc, c.f.cfg.WriteTimeout)
		c.mu.Lock()
		c.data = dc
		c.mu.Unlock()
		return dc, nil
	}
}

func (c *ftpConn) closeData(dc *conn) {
	dc.Close()
	c.mu.Lock()
	if c.data == dc {
		c.data = nil
	}
	c.mu.Unlock()
}

// The command table.

// logWhen says when a command gets an access log line.
type logWhen int

const (
	logOnError logWhen = iota // reply code 400 or more
	logAlways
)

// ftpCmd wraps every command: it checks the argument and the login itself
// (so that those refusals are logged too), forgets REST after any other
// command, and writes the access log line.
type ftpCmd struct {
	f       *ftpServer
	name    string
	run     func(c *ftpConn, sess *ftpserver.Session, param string)
	auth    bool    // needs a login
	param   bool    // needs an argument
	pathArg bool    // the argument is a path: log it resolved
	when    logWhen // when to log
}

func (ftpCmd) IsExtend() bool     { return false }
func (ftpCmd) RequireParam() bool { return false }
func (ftpCmd) RequireAuth() bool  { return false }

func (x ftpCmd) Execute(sess *ftpserver.Session, param string) {
	c := x.f.session(sess)
	if c == nil { // cannot happen: every session comes from ftpListener
		sess.WriteMessage(421, "Internal error.")
		return
	}
	start := time.Now()
	c.bytes = 0
	c.lastCode.Store(0)
	arg := param
	switch {
	case x.name == "PASS":
		arg = "***"
	case x.pathArg:
		arg = sess.BuildPath(listPath(param))
	}
	user := sess.LoginUser()
	switch {
	case x.param && param == "":
		c.reply(501, x.name+" needs an argument.")
	case x.auth && !sess.IsLogin():
		c.reply(530, "Please log in with USER and PASS.")
	default:
		x.run(c, sess, param)
	}
	if x.name != "REST" {
		c.rest = 0
	}
	code := int(c.lastCode.Load())
	if x.when == logAlways || code >= 400 {
		if x.name == "PASS" || user == "" {
			user = c.reqUser
		}
		x.f.alog.log(logEntry{proto: "ftp", host: hostOf(c.RemoteAddr()), user: user, request: [3]string{x.name, arg},
			status: code, bytes: c.bytes, dur: time.Since(start)})
	}
}

func (f *ftpServer) commands() map[string]ftpserver.Command {
	def := ftpserver.DefaultCommands()
	goftp := func(name string) func(*ftpConn, *ftpserver.Session, string) {
		cmd := def[name]
		return func(_ *ftpConn, sess *ftpserver.Session, param string) { cmd.Execute(sess, param) }
	}
	m := map[string]ftpserver.Command{}
	add := func(x ftpCmd, aliases ...string) {
		x.f = f
		for _, n := range append([]string{x.name}, aliases...) {
			m[n] = x
		}
	}
	// Login, navigation and session settings: goftp's, except USER,
	// which turns away other users before asking for a password.
	add(ftpCmd{name: "USER", run: userCmd(goftp("USER")), param: true})
	add(ftpCmd{name: "PASS", run: goftp("PASS"), when: logAlways})
	add(ftpCmd{name: "CWD", run: goftp("CWD"), auth: true, param: true, pathArg: true}, "XCWD")
	add(ftpCmd{name: "CDUP", run: goftp("CDUP"), auth: true}, "XCUP")
	add(ftpCmd{name: "PWD", run: goftp("PWD"), auth: true}, "XPWD")
	add(ftpCmd{name: "TYPE", run: goftp("TYPE"), auth: true, param: true})
	add(ftpCmd{name: "MODE", run: goftp("MODE"), auth: true, param: true})
	add(ftpCmd{name: "STRU", run: goftp("STRU"), auth: true, param: true})
	add(ftpCmd{name: "SYST", run: goftp("SYST")})
	add(ftpCmd{name: "NOOP", run: goftp("NOOP")})
	add(ftpCmd{name: "QUIT", run: goftp("QUIT")})
	add(ftpCmd{name: "CLNT", run: goftp("CLNT")})
	add(ftpCmd{name: "ALLO", run: goftp("ALLO")})
	// This package's commands.
	add(ftpCmd{name: "FEAT", run: (*ftpConn).cmdFeat})
	add(ftpCmd{name: "OPTS", run: (*ftpConn).cmdOpts, param: true})
	add(ftpCmd{name: "HELP", run: (*ftpConn).cmdHelp})
	add(ftpCmd{name: "STAT", run: (*ftpConn).cmdStat, auth: true})
	add(ftpCmd{name: "PASV", run: (*ftpConn).cmdPasv, auth: true})
	add(ftpCmd{name: "EPSV", run: (*ftpConn).cmdEpsv, auth: true})
	add(ftpCmd{name: "REST", run: (*ftpConn).cmdRest, auth: true, param: true})
	add(ftpCmd{name: "RETR", run: (*ftpConn).cmdRetr, auth: true, param: true, pathArg: true, when: logAlways})
	add(ftpCmd{name: "SIZE", run: (*ftpConn).cmdSize, auth: true, param: true, pathArg: true})
	add(ftpCmd{name: "MDTM", run: (*ftpConn).cmdMdtm, auth: true, param: true, pathArg: true})
	add(ftpCmd{name: "MLST", run: (*ftpConn).cmdMlst, auth: true, pathArg: true})
	add(ftpCmd{name: "LIST", run: listCmd(listLong), auth: true, pathArg: true, when: logAlways})
	add(ftpCmd{name: "NLST", run: listCmd(listNames), auth: true, pathArg: true, when: logAlways})
	add(ftpCmd{name: "MLSD", run: listCmd(listMachine), auth: true, pathArg: true, when: logAlways})
	add(ftpCmd{name: "ABOR", run: (*ftpConn).cmdAbor, auth: true})
	// Refused.
	for _, n := range []string{"STOR", "STOU", "APPE", "DELE", "RNFR", "RNTO", "MKD", "XMKD", "RMD", "XRMD"} {
		add(ftpCmd{name: n, run: (*ftpConn).cmdRefuseWrite, auth: true, pathArg: true, when: logAlways})
	}
	for _, n := range []string{"SITE", "MFMT", "MFF", "MFCT"} {
		add(ftpCmd{name: n, run: (*ftpConn).cmdRefuseWrite, auth: true, when: logAlways})
	}
	for _, n := range []string{"PORT", "EPRT", "LPRT"} {
		add(ftpCmd{name: n, run: (*ftpConn).cmdRefuseActive, auth: true, when: logAlways})
	}
	for _, n := range []string{"AUTH", "PBSZ", "PROT", "CCC", "ADAT", "MIC", "CONF", "ENC"} {
		add(ftpCmd{name: n, run: func(c *ftpConn, _ *ftpserver.Session, _ string) {
			c.reply(502, "TLS is not supported.")
		}})
	}
	return m
}

func anonymousName(u string) bool {
	return strings.EqualFold(u, "anonymous") || strings.EqualFold(u, "ftp")
}

func userCmd(inner func(*ftpConn, *ftpserver.Session, string)) func(*ftpConn, *ftpserver.Session, string) {
	return func(c *ftpConn, sess *ftpserver.Session, param string) {
		c.reqUser = param
		if !anonymousName(param) {
			c.reply(530, "This server accepts anonymous logins only.")
			return
		}
		inner(c, sess, param)
	}
}

func (c *ftpConn) cmdFeat(*ftpserver.Session, string) {
	c.replyLines(211, "Features:", []string{
		"EPSV", "MDTM", "MLST type*;size*;modify*;perm*;", "PASV", "REST STREAM", "SIZE", "TVFS", "UTF8",
	}, "End")
}

func (c *ftpConn) cmdOpts(_ *ftpserver.Session, param string) {
	opt, arg, _ := strings.Cut(param, " ")
	switch strings.ToUpper(opt) {
	case "UTF8", "UTF-8":
		if strings.EqualFold(strings.TrimSpace(arg), "OFF") {
			c.reply(504, "Names are always UTF-8.")
			return
		}
		c.reply(200, "Always in UTF-8 mode.")
	case "MLST":
		c.reply(200, "MLST OPTS type;size;modify;perm;")
	default:
		c.reply(501, "Option not understood.")
	}
}

func (c *ftpConn) cmdHelp(*ftpserver.Session, string) {
	c.replyLines(214, "Commands (read-only, passive mode only):", []string{
		"USER PASS QUIT NOOP SYST FEAT OPTS HELP STAT", "CWD CDUP PWD TYPE MODE STRU", "PASV EPSV REST RETR SIZE MDTM", "LIST NLST MLSD MLST ABOR",
	}, "Help OK.")
}

func (c *ftpConn) cmdStat(sess *ftpserver.Session, param string) {
	if param != "" {
		c.reply(504, "STAT with an argument is not supported: use LIST.")
		return
	}
	c.replyLines(211, "FTP server status:", []string{
		"Connected from " + hostOf(c.RemoteAddr()),
		"Logged in as " + sess.LoginUser(),
		"Read-only, passive mode only",
	}, "End of status.")
}

func (c *ftpConn) cmdPasv(*ftpserver.Session, string) {
	if c.epsvAll {
		c.closePassive()
		c.reply(503, "EPSV ALL in effect: use EPSV.")
		return
	}
	local := c.LocalAddr().(*net.TCPAddr).IP
	announce := local.To4()
	if c.f.publicIP.IsValid() {
		announce = net.IP(c.f.publicIP.AsSlice())
	}
	if announce == nil {
		c.closePassive()
		c.reply(522, "PASV needs IPv4: use EPSV.")
		return
	}
	port, err := c.listenPassive(local)
	if err != nil {
		c.f.log.Warn("ftp: no passive port", "err", err)
		c.reply(425, "Cannot open a passive data port.")
		return
	}
	time.Sleep(passiveReplyPause)
	c.reply(227, fmt.Sprintf("Entering Passive Mode (%d,%d,%d,%d,%d,%d).",
		announce[0], announce[1], announce[2], announce[3], port>>8, port&0xff))
}

func (c *ftpConn) cmdEpsv(_ *ftpserver.Session, param string) {
	local := c.LocalAddr().(*net.TCPAddr).IP
	family := "2"
	if local.To4() != nil {
		family = "1"
	}
	switch p := strings.ToUpper(strings.TrimSpace(param)); p {
	case "":
	case "ALL":
		c.epsvAll = true
		c.reply(200, "EPSV ALL ok.")
		return
	case "1", "2":
		if p != family {
			c.reply(522, "Network protocol not supported, use ("+family+").")
			return
		}
	default:
		c.reply(501, "Bad EPSV argument.")
		return
	}
	port, err := c.listenPassive(local)
	if err != nil {
		c.f.log.Warn("ftp: no passive port", "err", err)
		c.reply(425, "Cannot open a passive data port.")
		return
	}
	time.Sleep(passiveReplyPause)
	c.reply(229, fmt.Sprintf("Entering Extended Passive Mode (|||%d|).", port))
}

func (c *ftpConn) cmdRest(_ *ftpserver.Session, param string) {
	n, err := strconv.ParseInt(param, 10, 64)
	if err != nil || n < 0 {
		c.reply(501, "Bad REST offset.")
		return
	}
	c.rest = n
	c.reply(350, "Restarting at "+strconv.FormatInt(n, 10)+". Send RETR.")
}

func (c *ftpConn) cmdRetr(sess *ftpserver.Session, param string) {
	if !c.hasPassive() {
		c.reply(425, "Use PASV or EPSV first.")
		return
	}
	f, fi, err := c.f.repo.openFill(sess.BuildPath(param))
	if err != nil || !fi.Mode().IsRegular() {
		if f != nil {
			f.Close()
		}
		c.closePassive()
		if errors.Is(err, ErrUnavailable) {
			c.reply(450, "File unavailable for now, try again later.")
			return
		}
		c.reply(550, "Failed to open file.")
		return
	}
	defer f.Close()
	off := c.rest
	if off > fi.Size() {
		c.closePassive()
		c.reply(554, "Restart offset is beyond the end of the file.")
		return
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			c.closePassive()
			c.reply(551, "Cannot seek to the restart offset.")
			return
		}
	}
	c.reply(150, fmt.Sprintf("Opening BINARY mode data connection (%d bytes).", fi.Size()-off))
	dc, err := c.acceptData()
	if err != nil {
		c.reply(425, "Failed to establish the data connection.")
		return
	}
	n, err := dc.ReadFrom(&io.LimitedReader{R: f, N: fi.Size() - off})
	c.bytes = n
	c.closeData(dc)
	if err != nil {
		c.f.log.Debug("ftp: transfer failed", "remote", c.RemoteAddr().String(), "err", err)
		c.reply(426, "Transfer aborted: data connection failed.")
		return
	}
	c.reply(226, "Transfer complete.")
}

func (c *ftpConn) cmdSize(sess *ftpserver.Session, param string) {
	fi, err := c.f.repo.statFill(sess.BuildPath(param))
	if err != nil || !fi.Mode().IsRegular() {
		c.reply(550, "Could not get file size.")
		return
	}
	c.reply(213, strconv.FormatInt(fi.Size(), 10))
}

func (c *ftpConn) cmdMdtm(sess *ftpserver.Session, param string) {
	fi, err := c.f.repo.statFill(sess.BuildPath(param))
	if err != nil || !fi.Mode().IsRegular() {
		c.reply(550, "Could not get file modification time.")
		return
	}
	c.reply(213, fi.ModTime().UTC().Format("20060102150405"))
}

func (c *ftpConn) cmdMlst(sess *ftpserver.Session, param string) {
	p := sess.BuildPath(param)
	fi, err := c.f.repo.statFill(p)
	if err != nil {
		c.reply(550, "No such file or directory.")
		return
	}
	c.replyLines(250, "Listing "+p, []string{mlsxFacts(fi) + " " + p}, "End.")
}

func (c *ftpConn) cmdAbor(*ftpserver.Session, string) {
	c.closePassive()
	c.reply(225, "No transfer to abort.")
}

func (c *ftpConn) cmdRefuseWrite(*ftpserver.Session, string) {
	c.closePassive()
	c.reply(550, "Permission denied: this server is read-only.")
}

func (c *ftpConn) cmdRefuseActive(*ftpserver.Session, string) {
	c.reply(502, "Active mode is not supported: use PASV or EPSV.")
}

// Listings.

type listKind int

const (
	listLong    listKind = iota // LIST: ls -l lines
	listNames                   // NLST: names
	listMachine                 // MLSD: RFC 3659 facts
)

// listPath drops ls-style options ("-la") from a LIST or NLST argument.
func listPath(param string) string {
	for {
		param = strings.TrimLeft(param, " ")
		if !strings.HasPrefix(param, "-") {
			return param
		}
		i := strings.IndexByte(param, ' ')
		if i < 0 {
			return ""
		}
		param = param[i:]
	}
}

func listCmd(kind listKind) func(*ftpConn, *ftpserver.Session, string) {
	return func(c *ftpConn, sess *ftpserver.Session, param string) {
		if !c.hasPassive() {
			c.reply(425, "Use PASV or EPSV first.")
			return
		}
		p := sess.BuildPath(listPath(param))
		fi, err := c.f.repo.stat(p)
		var entries []entry
		switch {
		case err != nil:
		case fi.IsDir():
			entries, err = c.f.repo.list(p)
		case kind == listMachine:
			err = errNotDir
		default:
			entries = []entry{{path.Base(p), fi}}
		}
		if err != nil {
			c.closePassive()
			if errors.Is(err, errNotDir) {
				c.reply(501, "Not a directory.")
			} else {
				c.reply(550, "No such file or directory.")
			}
			return
		}
		var b bytes.Buffer
		now := time.Now()
		for _, e := range entries {
			switch kind {
			case listLong:
				b.WriteString(lsLine(e, now))
			case listNames:
				b.WriteString(e.name)
			case listMachine:
				b.WriteString(mlsxFacts(e.info) + " " + e.name)
			}
			b.WriteString("\r\n")
		}
		c.reply(150, "Here comes the directory listing.")
		dc, err := c.acceptData()
		if err != nil {
			c.reply(425, "Failed to establish the data connection.")
			return
		}
		n, err := dc.Write(b.Bytes())
		c.bytes = int64(n)
		c.closeData(dc)
		if err != nil {
			c.reply(426, "Transfer aborted: data connection failed.")
			return
		}
		c.reply(226, "Directory send OK.")
	}
}

func lsLine(e entry, now time.Time) string {
	mode, size := "-r--r--r--", e.info.Size()
	if e.info.IsDir() {
		mode, size = "dr-xr-xr-x", 0
	}
	t := e.info.ModTime().UTC()
	stamp := t.Format("Jan _2 15:04")
	if t.Before(now.AddDate(0, -6, 0)) || t.After(now.Add(24*time.Hour)) {
		stamp = t.Format("Jan _2  2006")
	}
	return fmt.Sprintf("%s    1 ftp      ftp      %12d %s %s", mode, size, stamp, e.name)
}

func mlsxFacts(fi os.FileInfo) string {
	mod := fi.ModTime().UTC().Format("20060102150405")
	if fi.IsDir() {
		return "type=dir;modify=" + mod + ";perm=el;"
	}
	return "type=file;size=" + strconv.FormatInt(fi.Size(), 10) + ";modify=" + mod + ";perm=r;"
}

// goftp collaborators.

// roDriver is the goftp driver: reads go through the repository, writes
// fail. goftp itself only calls Stat and ListDir (for CWD); the rest is a
// second line of defence behind the command table.
type roDriver struct{ repo *repo }

func (d roDriver) Stat(_ *ftpserver.Context, p string) (os.FileInfo, error) { return d.repo.stat(p) }

func (d roDriver) ListDir(_ *ftpserver.Context, p string, fn func(os.FileInfo) error) error {
	es, err := d.repo.list(p)
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := fn(e.info); err != nil {
			return err
		}
	}
	return nil
}

func (roDriver) DeleteDir(*ftpserver.Context, string) error      { return errReadOnly }
func (roDriver) DeleteFile(*ftpserver.Context, string) error     { return errReadOnly }
func (roDriver) Rename(*ftpserver.Context, string, string) error { return errReadOnly }
func (roDriver) MakeDir(*ftpserver.Context, string) error        { return errReadOnly }
func (roDriver) PutFile(*ftpserver.Context, string, io.Reader, int64) (int64, error) {
	return 0, errReadOnly
}

func (d roDriver) GetFile(_ *ftpserver.Context, p string, off int64) (int64, io.ReadCloser, error) {
	f, fi, err := d.repo.openFill(p)
	if err != nil {
		return 0, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return 0, nil, errNotFound
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return 0, nil, err
	}
	return fi.Size() - off, f, nil
}

// anonymousAuth accepts the anonymous users with any password.
type anonymousAuth struct{}

func (anonymousAuth) CheckPasswd(_ *ftpserver.Context, user, _ string) (bool, error) {
	return anonymousName(user), nil
}

// goftpLogger sends goftp's messages to the operational log at debug
// level, except reports of a crashed command handler.
type goftpLogger struct{ log *slog.Logger }

func (l goftpLogger) Print(_ string, msg any) { l.Printf("", "%v", msg) }

func (l goftpLogger) Printf(_ string, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "crashed") {
		l.log.Error("ftp: " + msg)
		return
	}
	l.log.Debug("ftp: " + msg)
}

func (goftpLogger) PrintCommand(string, string, string) {}
func (goftpLogger) PrintResponse(string, int, string)   {}
