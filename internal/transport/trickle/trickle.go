// Package trickle is a TCP proxy for tests that plays a slow server: it
// forwards each connection to a real server and passes what the server
// sends back to the client at a set rate (after an optional burst at full
// speed), optionally holding each answer back for a set latency. The
// updater's and the mirror's tests put it in front of a real LiveUpdate
// server to mount TUF's slow-retrieval attack: genuine files, sent too
// slowly to ever finish, but never slowly enough to time out.
//
// It listens on loopback addresses only (the tests' choice); for FTP,
// forward the control port and every passive port of the server, which
// must announce the proxy's address (liveupdate.Config.PublicHost).
package trickle

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
)

// Settings shape what the server sends to the client.
type Settings struct {
	// Rate is the number of bytes per second passed to the client once
	// Burst bytes have passed on the connection; 0 means no limit.
	Rate int
	// Burst is the number of bytes of each connection passed at full
	// speed before Rate applies.
	Burst int
	// Latency holds back what the server sends after each request
	// (bytes from the client) for that long.
	Latency time.Duration
}

// Proxy forwards connections. Its methods are safe for concurrent use.
type Proxy struct {
	mu       sync.Mutex
	settings Settings
	lns      []net.Listener
	conns    map[net.Conn]struct{}
	closed   bool

	done chan struct{}
	wg   sync.WaitGroup
	sent atomic.Int64
}

// New returns a proxy shaping with s; it forwards nothing until Forward.
func New(s Settings) *Proxy {
	return &Proxy{settings: s, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
}

// Set changes the settings for what is sent from now on (Burst: for the
// connections accepted from now on).
func (p *Proxy) Set(s Settings) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settings = s
}

func (p *Proxy) current() Settings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings
}

// Sent is the number of bytes passed from servers to clients so far.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Forward listens on listen ("host:port") and forwards every connection
// to target. It returns the address listened on.
func (p *Proxy) Forward(listen, target string) (net.Addr, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return nil, errors.New("trickle: proxy closed")
	}
	p.lns = append(p.lns, ln)
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c, target)
			}()
		}
	}()
	return ln.Addr(), nil
}

// track registers c for Close; it reports false if the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) serve(client net.Conn, target string) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	var req requestClock
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				req.mark()
				if _, werr := server.Write(buf[:n]); werr != nil {
					client.Close()
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					closeWrite(server)
				} else {
					server.Close()
				}
				return
			}
		}
	})
	p.down(client, server, &req)
	wg.Wait()
}

// down passes what server sends to client, shaped.
func (p *Proxy) down(client, server net.Conn, req *requestClock) {
	burst := p.current().Burst
	sent := 0
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			s := p.current()
			if t, ok := req.take(); ok && s.Latency > 0 {
				if !p.wait(time.Until(t.Add(s.Latency))) {
					return
				}
			}
			chunk := len(data)
			slow := s.Rate > 0 && sent >= burst
			switch {
			case slow:
				chunk = min(chunk, max(s.Rate/20, 1)) // a twentieth of a second's worth
			case s.Rate > 0:
				chunk = min(chunk, burst-sent)
			}
			if _, werr := client.Write(data[:chunk]); werr != nil {
				server.Close()
				return
			}
			p.sent.Add(int64(chunk))
			sent += chunk
			data = data[chunk:]
			if slow && !p.wait(time.Duration(float64(chunk)/float64(s.Rate)*float64(time.Second))) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				closeWrite(client)
			} else {
				client.Close()
			}
			return
		}
	}
}

// wait waits for d, or until the proxy closes (false).
func (p *Proxy) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	for _, ln := range p.lns {
		ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// requestClock remembers when the client last sent something that the
// server has not answered yet.
type requestClock struct {
	mu      sync.Mutex
	at      time.Time
	pending bool
}

func (r *requestClock) mark() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.pending {
		r.at, r.pending = time.Now(), true
	}
}

func (r *requestClock) take() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at, r.pending
	r.pending = false
	return t, ok
}

// LiveUpdate starts a LiveUpdate server serving root, listening on the
// loopback address back, behind a proxy shaped by s on the loopback
// address front: its HTTP port, its FTP port and its FTP passive ports
// (which it announces on front). Everything stops when the test ends.
// It returns the proxy and the base URLs on front ("http://FRONT:PORT",
// "ftp://FRONT:PORT").
func LiveUpdate(tb testing.TB, root, front, back string, s Settings) (p *Proxy, httpURL, ftpURL string) {
	tb.Helper()
	const passivePorts = 8
	var lastErr error
	for range 50 {
		pasv := 20000 + rand.IntN(40000)
		srv, err := liveupdate.New(liveupdate.Config{LiveUpdate: config.LiveUpdate{
			Root:         root,
			HTTPAddr:     net.JoinHostPort(back, "0"),
			FTPAddr:      net.JoinHostPort(back, "0"),
			PassivePorts: config.PortRange{Lo: uint16(pasv), Hi: uint16(pasv + passivePorts - 1)},
			PublicHost:   front,
		},
		})
		if err != nil {
			tb.Fatal(err)
		}
		if lastErr = srv.Listen(); lastErr != nil {
			srv.Close()
			continue
		}
		p = New(s)
		var h, f net.Addr
		h, lastErr = p.Forward(net.JoinHostPort(front, "0"), srv.HTTPAddr().String())
		if lastErr == nil {
			f, lastErr = p.Forward(net.JoinHostPort(front, "0"), srv.FTPAddr().String())
		}
		for port := pasv; lastErr == nil && port < pasv+passivePorts; port++ {
			_, lastErr = p.Forward(net.JoinHostPort(front, strconv.Itoa(port)), net.JoinHostPort(back, strconv.Itoa(port)))
		}
		if lastErr != nil {
			p.Close()
			srv.Close()
			continue
		}
		liveupdatetest.Serve(tb, srv)
		tb.Cleanup(p.Close)
		return p, "http://" + h.String(), "ftp://" + f.String()
	}
	tb.Fatalf("trickle: no free ports for a LiveUpdate server behind a proxy: %v", lastErr)
	return nil, "", ""
}
