// Package dnsname resolves a host name the way host(1) shows it: the CNAME
// chain, in order, then every A and every AAAA address of the canonical
// name, asked of one resolver (or of the system's: the servers of
// /etc/resolv.conf, with Go's resolver as a fallback). Resolve does it,
// Resolution.WriteHost prints it as host(1) would, and NotFoundError tells
// "the resolver answered: no such name or no address" from a resolver that
// could not be reached.
//
// The mirror resolves its upstream's name with it (docs/mirror.md), `vigil
// ports` the names in its rules and `vigil doctor` the names it checks
// (docs/ports.md). It depends on github.com/miekg/dns and the standard
// library only, so that those who resolve need not link the mirror.
package dnsname

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ResolvConf is the file the system resolver's servers are read from.
const ResolvConf = "/etc/resolv.conf"

// Alias is one link of a CNAME chain: Name is an alias for Target.
type Alias struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

// Resolution is what a name resolved to.
type Resolution struct {
	// Name is the name asked for.
	Name string `json:"name"`
	// Resolver describes who answered: "ADDR" for a resolver given on the
	// command line, "system (ADDR)" for one from /etc/resolv.conf,
	// "system (Go resolver)" for the fallback, "none" for an address
	// literal.
	Resolver string `json:"resolver"`
	// Aliases is the CNAME chain, in order.
	Aliases []Alias `json:"aliases"`
	// Canonical is the name the addresses belong to.
	Canonical string `json:"canonical"`
	// Addrs are the IPv4 addresses, then the IPv6 ones, in the order
	// answered.
	Addrs []netip.Addr `json:"addresses"`
}

// WriteHost writes the resolution the way host(1) prints it:
//
//	liveupdate.vendor.test is an alias for lu.geo.vendor.test.
//	lu.geo.vendor.test is an alias for lu-pool.vendor.test.
//	lu-pool.vendor.test has address 127.0.0.2
//	lu-pool.vendor.test has IPv6 address ::1
func (r *Resolution) WriteHost(w io.Writer) {
	for _, a := range r.Aliases {
		fmt.Fprintf(w, "%s is an alias for %s\n", strings.TrimSuffix(a.Name, "."), dns.Fqdn(a.Target))
	}
	owner := strings.TrimSuffix(r.Canonical, ".")
	for _, a := range r.Addrs {
		if a.Is4() {
			fmt.Fprintf(w, "%s has address %s\n", owner, a)
		}
	}
	for _, a := range r.Addrs {
		if !a.Is4() {
			fmt.Fprintf(w, "%s has IPv6 address %s\n", owner, a)
		}
	}
}

// NotFoundError is a name that does not exist or has no address.
type NotFoundError struct {
	Name  string
	Rcode int // DNS response code; NOERROR with no address is "no address"
}

func (e *NotFoundError) Error() string {
	if e.Rcode == dns.RcodeSuccess {
		return fmt.Sprintf("host %s has no A or AAAA record", strings.TrimSuffix(e.Name, "."))
	}
	return fmt.Sprintf("host %s not found: %d(%s)", strings.TrimSuffix(e.Name, "."), e.Rcode, dns.RcodeToString[e.Rcode])
}

// Resolve resolves name to its CNAME chain and every A and AAAA address.
// server is a resolver's "host:port" (port 53 if omitted); "" means the
// system's: the servers of /etc/resolv.conf, asked with miekg/dns so the
// CNAME chain is visible, and if none of them answers, Go's resolver
// (which also reads /etc/hosts, but shows at most one alias). An IP
// address literal resolves to itself without a query. timeout bounds each
// query.
func Resolve(ctx context.Context, name, server string, timeout time.Duration) (*Resolution, error) {
	if a, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return &Resolution{Name: name, Resolver: "none", Canonical: a.String(), Addrs: []netip.Addr{a.Unmap()}}, nil
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if server != "" {
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
		}
		r, err := resolveWith(ctx, name, []string{server}, timeout)
		if r != nil {
			r.Resolver = server
		}
		return r, err
	}
	cc, err := dns.ClientConfigFromFile(ResolvConf)
	if err == nil && len(cc.Servers) > 0 {
		var servers []string
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		r, err := resolveWith(ctx, name, servers, timeout)
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		// A name only /etc/hosts knows, or resolvers we cannot reach:
		// ask Go's resolver, which also reads /etc/hosts.
		if r2, err2 := resolveGo(ctx, name); err2 == nil {
			return r2, nil
		}
		return nil, err
	}
	return resolveGo(ctx, name)
}

// resolveWith asks servers in turn (the first that answers decides) for
// A, then AAAA records of name.
func resolveWith(ctx context.Context, name string, servers []string, timeout time.Duration) (*Resolution, error) {
	var lastErr error
	for _, s := range servers {
		r, err := resolveAt(ctx, name, s, timeout)
		if err == nil {
			r.Resolver = "system (" + s + ")"
			return r, nil
		}
		var nf *NotFoundError
		if errors.As(err, &nf) || ctx.Err() != nil {
			return nil, err // an answer, not a failure to get one
		}
		lastErr = err
	}
	return nil, lastErr
}

// resolveAt resolves name at one server.
func resolveAt(ctx context.Context, name, server string, timeout time.Duration) (*Resolution, error) {
	fqdn := dns.Fqdn(name)
	res := &Resolution{Name: name, Canonical: fqdn}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		chain, addrs, rcode, err := query(ctx, fqdn, qtype, server, timeout)
		if err != nil {
			return nil, err
		}
		if rcode == dns.RcodeNameError {
			return nil, &NotFoundError{Name: name, Rcode: rcode}
		}
		if rcode != dns.RcodeSuccess {
			return nil, fmt.Errorf("%s: %s query for %s: %s", server, dns.TypeToString[qtype], fqdn, dns.RcodeToString[rcode])
		}
		if qtype == dns.TypeA || len(res.Aliases) == 0 {
			res.Aliases = chain
			res.Canonical = fqdn
			if len(chain) > 0 {
				res.Canonical = chain[len(chain)-1].Target
			}
		}
		res.Addrs = append(res.Addrs, addrs...)
	}
	if len(res.Addrs) == 0 {
		return nil, &NotFoundError{Name: name, Rcode: dns.RcodeSuccess}
	}
	return res, nil
}

// query asks server for qtype records of name and follows the CNAME chain
// in the answer; if the answer stops at an alias without its records (as
// some resolvers answer), it asks again for the alias's target.
func query(ctx context.Context, name string, qtype uint16, server string, timeout time.Duration) (chain []Alias, addrs []netip.Addr, rcode int, err error) {
	const maxHops = 16
	owner := name
	for hop := 0; hop < maxHops; hop++ {
		m := new(dns.Msg)
		m.SetQuestion(owner, qtype)
		m.RecursionDesired = true
		c := &dns.Client{Net: "udp", Timeout: timeout}
		r, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil && r.Truncated {
			c.Net = "tcp"
			r, _, err = c.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("resolver %s: %w", server, err)
		}
		if r.Rcode != dns.RcodeSuccess {
			if hop == 0 {
				return nil, nil, r.Rcode, nil
			}
			return chain, nil, dns.RcodeSuccess, nil // a dangling alias: no address
		}
		// Follow the chain through the answer, whatever the order of
		// its records.
		cnames := map[string]string{}
		for _, rr := range r.Answer {
			if c, ok := rr.(*dns.CNAME); ok {
				cnames[strings.ToLower(c.Hdr.Name)] = c.Target
			}
		}
		start := owner
		for {
			t, ok := cnames[strings.ToLower(owner)]
			if !ok {
				break
			}
			if len(chain) >= maxHops || slices.ContainsFunc(chain, func(a Alias) bool { return strings.EqualFold(a.Name, owner) }) {
				return nil, nil, 0, fmt.Errorf("resolver %s: CNAME loop or chain too long at %s", server, owner)
			}
			chain = append(chain, Alias{Name: owner, Target: t})
			owner = t
		}
		for _, rr := range r.Answer {
			if !strings.EqualFold(rr.Header().Name, owner) {
				continue
			}
			switch rr := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok && qtype == dns.TypeA {
					addrs = append(addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok && qtype == dns.TypeAAAA {
					addrs = append(addrs, a)
				}
			}
		}
		if len(addrs) > 0 || strings.EqualFold(start, owner) {
			return chain, addrs, dns.RcodeSuccess, nil
		}
	}
	return chain, addrs, dns.RcodeSuccess, nil
}

// resolveGo resolves with Go's resolver: one alias at most (the canonical
// name), then the addresses.
func resolveGo(ctx context.Context, name string) (*Resolution, error) {
	var r net.Resolver
	res := &Resolution{Name: name, Resolver: "system (Go resolver)", Canonical: dns.Fqdn(name)}
	if cname, err := r.LookupCNAME(ctx, name); err == nil && !strings.EqualFold(dns.Fqdn(cname), dns.Fqdn(name)) {
		res.Aliases = []Alias{{Name: dns.Fqdn(name), Target: dns.Fqdn(cname)}}
		res.Canonical = dns.Fqdn(cname)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, &NotFoundError{Name: name, Rcode: dns.RcodeNameError}
		}
		return nil, err
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			res.Addrs = append(res.Addrs, a.Unmap())
		}
	}
	for _, a := range addrs {
		if !a.Unmap().Is4() {
			res.Addrs = append(res.Addrs, a)
		}
	}
	if len(res.Addrs) == 0 {
		return nil, &NotFoundError{Name: name, Rcode: dns.RcodeSuccess}
	}
	return res, nil
}
