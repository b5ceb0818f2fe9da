// Package fakedns is a small authoritative DNS server for tests and the
// demo. It listens on a loopback address, UDP and TCP on the same port,
// and answers from a table of CNAME, A and AAAA records that the caller
// fills in, presenting a CNAME chain the way a recursive resolver does:
// the aliases in order, then the addresses of the canonical name.
//
// It never forwards, recurses or looks anything up: a name that is not in
// its table gets NXDOMAIN, a name that is but has no record of the asked
// type gets an empty answer, and every other query type is answered
// empty too. Start refuses any address that is not a loopback address,
// so a test or the demo cannot expose it.
//
//	s, _ := fakedns.Start("127.0.0.1:0")
//	s.AddCNAME("liveupdate.vendor.test", "lu.geo.vendor.test")
//	s.AddCNAME("lu.geo.vendor.test", "lu-pool.vendor.test")
//	s.SetAddrs("lu-pool.vendor.test", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"))
//	// resolver address: s.Addr()
package fakedns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// TTL is the time to live of every record served, in seconds.
const TTL = 60

// maxChain bounds the CNAME chain followed for one answer.
const maxChain = 16

// Server is a running fake DNS server.
type Server struct {
	addr     string
	udp, tcp *dns.Server
	queries  atomic.Int64

	mu     sync.RWMutex
	cnames map[string]string
	addrs  map[string][]netip.Addr
}

// Start listens on addr ("127.0.0.1:0" picks a free port; the TCP
// listener takes the port the UDP one got) and serves until Close.
func Start(addr string) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("fakedns: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("fakedns: %q is not a loopback address: the fake server listens on loopback only", host)
	}
	s := &Server{cnames: map[string]string{}, addrs: map[string][]netip.Addr{}}
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, fmt.Errorf("fakedns: %w", err)
		}
		udpAddr := pc.LocalAddr().(*net.UDPAddr)
		ln, err = net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(udpAddr.Port)))
		if err == nil {
			break
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			return nil, fmt.Errorf("fakedns: %w", err)
		}
	}
	s.addr = ln.Addr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go srv.ActivateAndServe()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			s.Close()
			return nil, errors.New("fakedns: server did not start")
		}
	}
	return s, nil
}

// Addr is the "host:port" the server answers on, over UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Queries is the number of queries answered so far.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Close stops the server.
func (s *Server) Close() error {
	err1 := s.udp.Shutdown()
	err2 := s.tcp.Shutdown()
	return errors.Join(err1, err2)
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// AddCNAME makes name an alias for target (replacing any alias name had).
func (s *Server) AddCNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cnames[key(name)] = dns.Fqdn(target)
}

// SetAddrs replaces the A and AAAA records of name; IPv4 addresses
// become A records, IPv6 addresses AAAA records, answered in the order
// given. No addresses removes them.
func (s *Server) SetAddrs(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(addrs) == 0 {
		delete(s.addrs, key(name))
		return
	}
	s.addrs[key(name)] = append([]netip.Addr(nil), addrs...)
}

// Remove deletes every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cnames, key(name))
	delete(s.addrs, key(name))
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	name := q.Name
	hdr := func(owner string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
	}
	known := false
	for i := 0; i <= maxChain; i++ {
		target, isAlias := s.cnames[key(name)]
		addrs, hasAddrs := s.addrs[key(name)]
		if !isAlias && !hasAddrs {
			break
		}
		known = true
		if isAlias {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: target})
			if q.Qtype == dns.TypeCNAME {
				break
			}
			name = target
			continue
		}
		for _, a := range addrs {
			switch {
			case a.Is4() && q.Qtype == dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(name, dns.TypeA), A: a.AsSlice()})
			case a.Is6() && q.Qtype == dns.TypeAAAA:
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
		break
	}
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}
