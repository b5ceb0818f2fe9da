package liveupdate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// Server serves one repository over HTTP and FTP.
type Server struct {
	cfg      Config
	repo     *repo
	alog     *accessLog
	log      *slog.Logger
	publicIP netip.Addr
	httpSrv  *httpServer
	ftp      *ftpServer

	mu       sync.Mutex
	httpLn   *limitListener
	ftpLn    *limitListener
	served   bool
	shutdown bool
}

// New checks cfg, opens the repository root and prepares both protocols.
// It does not listen yet: see Listen and Serve.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pub, err := resolvePublicHost(cfg.PublicHost)
	if err != nil {
		return nil, err
	}
	r, err := openRepo(cfg.Root, cfg.Logger)
	if err != nil {
		return nil, err
	}
	r.fill, r.hit = cfg.Fill, cfg.Hit
	s := &Server{cfg: cfg, repo: r, alog: newAccessLog(cfg.AccessLog), log: cfg.Logger, publicIP: pub}
	if cfg.HTTPAddr != "" {
		s.httpSrv = &httpServer{
			handler: &httpHandler{repo: r, alog: s.alog, log: cfg.Logger},
			cfg:     cfg, log: cfg.Logger, alog: s.alog, noFastPath: cfg.noFastPath,
		}
	}
	if cfg.FTPAddr != "" {
		s.ftp, err = newFTPServer(cfg, r, pub, s.alog)
		if err != nil {
			r.close()
			return nil, err
		}
	}
	return s, nil
}

// Listen binds the configured addresses. Serve calls it if needed; tests
// call it first to learn the addresses of ":0" ports.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return errors.New("liveupdate: server closed")
	}
	if s.httpSrv != nil && s.httpLn == nil {
		l, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("liveupdate: HTTP: %w", err)
		}
		s.httpLn = newLimitListener(l, "http", s.cfg.MaxConns, s.cfg.MaxConnsPerIP, s.cfg.WriteTimeout,
			"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many connections\n",
			s.log, s.alog)
		s.httpLn.drainIdle = true
		s.httpSrv.ln = s.httpLn
	}
	if s.ftp != nil && s.ftpLn == nil {
		l, err := net.Listen("tcp", s.cfg.FTPAddr)
		if err != nil {
			return fmt.Errorf("liveupdate: FTP: %w", err)
		}
		s.ftpLn = newLimitListener(l, "ftp", s.cfg.MaxConns, s.cfg.MaxConnsPerIP, s.cfg.WriteTimeout,
			"421 Too many connections, try again later.\r\n", s.log, s.alog)
		s.ftp.ln = s.ftpLn
	}
	return nil
}

// HTTPAddr is the HTTP listening address, nil before Listen or when HTTP
// is off.
func (s *Server) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// FTPAddr is the FTP control listening address, nil before Listen or when
// FTP is off.
func (s *Server) FTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ftpLn == nil {
		return nil
	}
	return s.ftpLn.Addr()
}

// ListenAndServe is Listen followed by Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve serves both protocols until ctx is done, then shuts down
// gracefully: it stops accepting, closes idle connections, lets transfers
// in progress finish for up to Config.ShutdownTimeout, closes the rest and
// the repository, and returns nil. It returns early with an error if a
// listener fails. A Server serves once.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("liveupdate: Serve called twice")
	}
	s.served = true
	httpLn, ftpLn := s.httpLn, s.ftpLn
	s.mu.Unlock()

	s.alog.start()
	errc := make(chan error, 2)
	n := 0
	if httpLn != nil {
		n++
		s.log.Info("serving HTTP", "addr", httpLn.Addr().String(), "root", s.cfg.Root)
		go func() { errc <- s.httpSrv.serve(httpLn) }()
	}
	if ftpLn != nil {
		n++
		s.log.Info("serving FTP", "addr", ftpLn.Addr().String(), "root", s.cfg.Root,
			"passive_ports", s.cfg.PassivePorts.String())
		go func() { errc <- s.ftp.serve(ftpLn) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		n--
		if err != nil {
			err = fmt.Errorf("liveupdate: %w", err)
		}
	}
	s.stop()
	for ; n > 0; n-- {
		<-errc
	}
	return err
}

// stop shuts both protocols down within ShutdownTimeout.
func (s *Server) stop() {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	if s.httpSrv != nil {
		wg.Go(func() { s.httpSrv.shutdown(ctx.Done()) })
	}
	if s.ftp != nil {
		wg.Go(func() { s.ftp.shutdown(ctx.Done()) })
	}
	wg.Wait()
	s.alog.close()
	s.repo.close()
	s.log.Info("stopped")
}

// Close stops a server that was never served; a served one stops when
// Serve's context is done.
func (s *Server) Close() error {
	s.mu.Lock()
	served := s.served
	s.shutdown = true
	hl, fl := s.httpLn, s.ftpLn
	s.mu.Unlock()
	if served {
		return nil
	}
	if hl != nil {
		hl.Close()
	}
	if fl != nil {
		fl.Close()
	}
	s.alog.close()
	return s.repo.close()
}

// connCounts reports the open connections of each protocol (for tests).
func (s *Server) connCounts() (httpConns, ftpConns int) {
	s.mu.Lock()
	hl, fl := s.httpLn, s.ftpLn
	s.mu.Unlock()
	if hl != nil {
		httpConns = hl.count()
	}
	if fl != nil {
		ftpConns = fl.count()
	}
	return
}
