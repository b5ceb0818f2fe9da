// Package ports answers the administrator's question the reference
// article exists for — which addresses and ports must the firewalls
// allow? — from the live configuration of the Vigil parts on a machine.
//
// [Build] turns the configuration of the parts present (server, agent,
// LiveUpdate server, mirror, relay) into the flows of docs/ports.md as
// they are configured here: direction, the two ends, protocol, ports and why.
// [Plan.Rules] reduces the flows to firewall rules for this machine's role
// (what it must accept, what it must be allowed to send, and the ports the
// administrator keeps open besides, [Allowed]: SSH above all), which
// [Plan.WriteNft], [Plan.WriteIptables] and [Plan.WritePF] write for
// nftables, iptables/ip6tables and macOS pf; [Plan.WriteTable] and JSON
// (a Plan marshals as itself) are for people and programs.
//
// Flow ids are shared with vigil doctor, which checks each flow for real,
// so that a rule and the check that needs it carry the same name; a
// Flow's Target (the configured address or URL it comes from, not in JSON)
// is what package doctor builds the flow's check from.
//
// A server, LiveUpdate server or relay started with flags only has no
// preference file to read: while it runs it publishes its settings in the runtime
// directory ([Publish]), where [FindRunning] finds them for vigil ports and
// vigil doctor, telling a live process from the files a killed one left.
package ports

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/dnsname"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// Flow ids, shared with vigil doctor.
const (
	FlowCommands          = "commands"           // server → agents' multicast group
	FlowAgentAPI          = "agent-api"          // agent → server at NodeCommURL
	FlowDefinitions       = "definitions"        // agent → internal LiveUpdate server
	FlowDefinitionsPublic = "definitions-public" // agent → vendor's public server
	FlowMirrorSync        = "mirror-sync"        // mirror → every address of the vendor name
	FlowSelfUpdate        = "self-update"        // mirror → vendor
	FlowDNS               = "dns"                // mirror → resolver
	FlowAdmin             = "admin"              // administrator → server's admin API
	FlowStore             = "store"              // server → its PostgreSQL database (TCP)
	FlowCacheFill         = "cache-fill"         // relay's definitions cache → its upstream
	FlowMetrics           = "metrics"            // Prometheus → a relay's /metrics
)

// AnyPassive is the passive data range assumed for an FTP server whose
// range is not known here: every unprivileged port.
var AnyPassive = config.PortRange{Lo: 1024, Hi: 65535}

// Config is what Build needs: the parts present (nil = absent).
type Config struct {
	Server     *config.Server
	Agent      *prefs.Agent
	LiveUpdate *config.LiveUpdate
	Mirror     *config.Mirror
	Relay      *config.Relay

	// FTPPassive is the passive data range of the FTP servers this
	// machine downloads from (LiveUpdate servers, the vendor); zero means
	// unknown, and AnyPassive is allowed. When a LiveUpdate server runs on
	// this machine its own range is used for its URLs.
	FTPPassive config.PortRange
	// Clients, when set, are the networks agents, mirrors and relays
	// connect from: the incoming agent-api and definitions flows (a
	// relay's cache's too) accept only them. Admins likewise restricts the
	// admin flow and a relay's metrics flow. Empty: any address.
	Clients, Admins []netip.Prefix
	// Resolver is the DNS server used to turn host names of URLs into the
	// addresses rules need; "" = the system's (the mirror's own resolver
	// for its upstream). Resolution is bounded by ResolveTimeout.
	Resolver       string
	ResolveTimeout time.Duration
	// ResolvConf is the file the system resolver's servers are read from
	// (default /etc/resolv.conf), for the mirror's dns flow.
	ResolvConf string
	// Allow are ports kept open besides Vigil's flows (SSH, monitoring…),
	// each a FlowAllowed flow. When incoming TCP 22 is not among them the
	// plan warns that the rules do not allow SSH.
	Allow []Allowed
}

// Flow is one network flow as configured on this machine.
type Flow struct {
	ID        string `json:"flow"`
	Part      string `json:"part"`      // the part on this machine it belongs to
	Direction string `json:"direction"` // "in": this machine accepts it; "out": sends it
	From      string `json:"from"`
	To        string `json:"to"`
	// Protocol is "tcp", "udp", "igmp" or "mld" (ICMPv6 multicast
	// listener messages).
	Protocol string             `json:"protocol"`
	Ports    []config.PortRange `json:"ports,omitempty"`
	// Step names the part of the flow a rule serves when there are
	// several (e.g. "FTP control", "FTP passive data").
	Step string `json:"step,omitempty"`
	Why  string `json:"why"`

	// Src and Dst restrict the addresses of the packet that opens the
	// flow; empty = any.
	Src []netip.Prefix `json:"src,omitempty"`
	Dst []netip.Prefix `json:"dst,omitempty"`
	// Interface restricts the flow to one interface of this machine.
	Interface string `json:"interface,omitempty"`
	// LoopbackOnly flows stay on this machine: no rule is needed.
	LoopbackOnly bool `json:"loopback_only,omitempty"`

	// Target is the setting of the part's configuration the flow comes
	// from, as configured: a listen address (host:port), a URL (which may
	// carry credentials, so it is never printed), or the multicast group
	// and port (group:port). Flows of one part with the same Target are
	// one check of vigil doctor (package doctor builds its checks from
	// them). Not in JSON.
	Target string `json:"-"`
	// Resolver is, on the mirror's flows, the DNS server (HOST:PORT) the
	// mirror resolves its upstream's name with; "" = the system's. Not in
	// JSON.
	Resolver string `json:"-"`
}

// Plan is the flows of the parts on this machine.
type Plan struct {
	Parts []string `json:"parts"`
	// Sources names the file each part's settings were read from, when
	// the caller sets it: its preference file, or the runtime file of the
	// running part (see FindRunning).
	Sources map[string]string `json:"sources,omitempty"`
	// Running holds, for each part whose settings were those a running
	// process published, that process's PID.
	Running map[string]int `json:"running,omitempty"`
	Flows   []Flow         `json:"flows"`
	// Multicast spells out what the commands flow needs of the network.
	Multicast []string `json:"multicast,omitempty"`
	// Warnings are what loading the rules could break: that SSH is not
	// allowed, unless kept open with Config.Allow.
	Warnings []string `json:"warnings,omitempty"`
	// Notes are assumptions (a name that did not resolve, an FTP passive
	// range that is not known, …).
	Notes []string `json:"notes,omitempty"`
}

// Build works out the flows of the parts in c.
func Build(ctx context.Context, c Config) (*Plan, error) {
	b := &builder{c: c, p: &Plan{}}
	if c.ResolveTimeout <= 0 {
		b.c.ResolveTimeout = 5 * time.Second
	}
	if c.Server == nil && c.Agent == nil && c.LiveUpdate == nil && c.Mirror == nil && c.Relay == nil {
		return nil, fmt.Errorf("no Vigil part is configured on this machine")
	}
	if s := c.Server; s != nil {
		if err := b.server(ctx, s); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if a := c.Agent; a != nil {
		if err := b.agent(ctx, a); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	if l := c.LiveUpdate; l != nil {
		if err := b.liveUpdate(l); err != nil {
			return nil, fmt.Errorf("liveupdate: %w", err)
		}
	}
	if m := c.Mirror; m != nil {
		if err := b.mirror(ctx, m); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	if r := c.Relay; r != nil {
		if err := b.relay(ctx, r); err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	b.restrictSources()
	b.allowed()
	return b.p, nil
}

type builder struct {
	c Config
	p *Plan
}

func (b *builder) part(name string) {
	if !slices.Contains(b.p.Parts, name) {
		b.p.Parts = append(b.p.Parts, name)
	}
}

func (b *builder) add(f Flow) { b.p.Flows = append(b.p.Flows, f) }

func (b *builder) note(format string, args ...any) {
	b.p.Notes = append(b.p.Notes, fmt.Sprintf(format, args...))
}

// listenAddr splits a listen address: the address (invalid for a
// wildcard) and the port.
func listenAddr(what, hostport string) (netip.Addr, config.PortRange, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, config.PortRange{}, fmt.Errorf("%s %q: %v", what, hostport, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.Addr{}, config.PortRange{}, fmt.Errorf("%s %q: port must be 1 to 65535", what, hostport)
	}
	pr := config.PortRange{Lo: uint16(n), Hi: uint16(n)}
	switch host {
	case "", "0.0.0.0", "::":
		return netip.Addr{}, pr, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if host == "localhost" {
			return netip.IPv6Loopback(), pr, nil
		}
		return netip.Addr{}, config.PortRange{}, fmt.Errorf("%s %q: listen on an IP address (or none, for all)", what, hostport)
	}
	return a.Unmap(), pr, nil
}

func hostPrefixes(addrs ...netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func thisHost(a netip.Addr) string {
	if a.IsValid() {
		return "this host (" + a.String() + ")"
	}
	return "this host"
}

func (b *builder) server(ctx context.Context, s *config.Server) error {
	b.part(config.PartServer)
	addr, port, err := listenAddr("agent API address", s.Listen)
	if err != nil {
		return err
	}
	scheme := "HTTP"
	if s.TLSCert != "" {
		scheme = "HTTPS"
	}
	b.add(Flow{
		ID: FlowAgentAPI, Part: config.PartServer, Direction: "in", From: "agents", To: thisHost(addr),
		Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addr), LoopbackOnly: addr.IsLoopback(),
		Why:    "enrollment, check-in, results and missed commands, " + scheme + " (agents' NodeCommURL)",
		Target: s.Listen,
	})
	addr, port, err = listenAddr("admin API address", s.AdminListen)
	if err != nil {
		return err
	}
	f := Flow{
		ID: FlowAdmin, Part: config.PartServer, Direction: "in", From: "administrators", To: thisHost(addr),
		Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addr), LoopbackOnly: addr.IsLoopback(),
		Why:    "admin API (vigil send, agents, results) and Prometheus /metrics",
		Target: s.AdminListen,
	}
	if f.LoopbackOnly {
		f.From = "this host"
		f.Why += "; listens on loopback only, so no rule is needed"
	}
	b.add(f)
	if !s.Group.IsMulticast() {
		return fmt.Errorf("group %v is not a multicast address", s.Group)
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("multicast port %d: want 1 to 65535", s.Port)
	}
	b.add(Flow{
		ID: FlowCommands, Part: config.PartServer, Direction: "out", From: "this host", To: fmt.Sprintf("group %s (agents)", s.Group),
		Protocol: "udp", Ports: []config.PortRange{{Lo: uint16(s.Port), Hi: uint16(s.Port)}}, Dst: hostPrefixes(s.Group), Interface: s.Interface,
		Why:    fmt.Sprintf("signed commands and beacons by multicast, TTL %d", s.TTL),
		Target: groupPort(s.Group, s.Port),
	})
	b.multicast(s.Group, s.Port, s.Interface, fmt.Sprintf("TTL %d (set on the server)", s.TTL))
	if err := b.store(ctx, s.Store); err != nil {
		return err
	}
	if s.TTL == 0 {
		b.note("the server's multicast TTL is 0: commands never leave this host; agents elsewhere get them only by HTTP catch-up")
	}
	return nil
}

// store adds the server's flows to its PostgreSQL database: one per TCP
// host of the Store URL, none for a Unix socket (nor for SQLite). The
// flow's Target is the database's host:port, never the URL (which may
// hold a password).
func (b *builder) store(ctx context.Context, dsn config.StoreDSN) error {
	if err := dsn.Check(); err != nil {
		return fmt.Errorf("Store: %w", err)
	}
	for _, hp := range dsn.TCPEndpoints() {
		host, p, _ := net.SplitHostPort(hp)
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("Store: port %q of host %s: want 1 to 65535", p, host)
		}
		addrs := b.resolve(ctx, host, "Store")
		b.add(Flow{
			ID: FlowStore, Part: config.PartServer, Direction: "out", From: "this host", To: toName(host, addrs),
			Protocol: "tcp", Ports: []config.PortRange{{Lo: uint16(n), Hi: uint16(n)}}, Dst: hostPrefixes(addrs...), LoopbackOnly: allLoopback(addrs),
			Why:    "the server's PostgreSQL store (" + dsn.Where() + ")",
			Target: hp,
		})
	}
	return nil
}

// restrictSources limits the incoming flows of the server, the
// LiveUpdate server and the relay to Config.Clients and Config.Admins
// (the admin API and a relay's metrics).
func (b *builder) restrictSources() {
	for i := range b.p.Flows {
		f := &b.p.Flows[i]
		if f.Direction != "in" || f.LoopbackOnly || (f.Part != config.PartServer && f.Part != config.PartLiveUpdate && f.Part != config.PartRelay) {
			continue
		}
		nets := b.c.Clients
		if f.ID == FlowAdmin || f.ID == FlowMetrics {
			nets = b.c.Admins
		}
		if len(nets) == 0 {
			continue
		}
		f.Src = slices.Clone(nets)
		names := make([]string, len(nets))
		for j, n := range nets {
			names[j] = n.String()
		}
		f.From += " in " + strings.Join(names, ", ")
	}
}

func (b *builder) multicast(group netip.Addr, port int, iface, ttl string) {
	on := "the interface the system routes multicast through"
	if iface != "" {
		on = "interface " + iface
	}
	mem := "IGMP (IPv4 protocol 2, with the Router Alert option)"
	if group.Is6() {
		mem = "MLD (ICMPv6 types 130, 131, 132 and 143, link-local, with a hop-by-hop Router Alert)"
	}
	lines := []string{
		fmt.Sprintf("group %s, UDP port %d, %s, on %s", group, port, ttl, on),
		"agents join the group with " + mem + ": it must pass between agents and switches/routers, or snooping switches stop forwarding the group",
		"the group does not cross a router without multicast routing (PIM) and a TTL above the number of routers; otherwise run a server instance or relay in each subnet (agents still catch up over HTTP)",
	}
	for i, l := range lines {
		if i == 0 && slices.ContainsFunc(b.p.Multicast, func(m string) bool {
			return strings.HasPrefix(m, fmt.Sprintf("group %s, UDP port %d,", group, port))
		}) {
			continue // the server's line, with its TTL, is already there
		}
		if !slices.Contains(b.p.Multicast, l) {
			b.p.Multicast = append(b.p.Multicast, l)
		}
	}
}

// agentAPI adds part's flow to the server's agent API at raw, the
// setting key (NodeCommURL, Server) names; what is the traffic, for Why.
func (b *builder) agentAPI(ctx context.Context, part, key, raw, pathForm, what string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want http(s)://HOST[:PORT]%s", key, raw, pathForm)
	}
	port, err := urlPort(u)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	addrs := b.resolve(ctx, u.Hostname(), key)
	b.add(Flow{
		ID: FlowAgentAPI, Part: part, Direction: "out", From: "this host", To: toName(u.Hostname(), addrs),
		Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addrs...), LoopbackOnly: allLoopback(addrs),
		Why:    what + " (" + key + " " + redact(u) + ")",
		Target: raw,
	})
	return nil
}

func (b *builder) agent(ctx context.Context, a *prefs.Agent) error {
	b.part(config.PartAgent)
	group, err := netip.ParseAddr(a.MulticastAddress)
	if err != nil {
		return fmt.Errorf("MulticastAddress %q: %v", a.MulticastAddress, err)
	}
	if err := b.agentAPI(ctx, config.PartAgent, "NodeCommURL", a.NodeCommURL, "/PATH", "enrollment, check-in, results and missed commands"); err != nil {
		return err
	}
	if !group.IsMulticast() {
		return fmt.Errorf("MulticastAddress %v is not a multicast address", group)
	}
	mp := config.PortRange{Lo: uint16(a.MulticastPort), Hi: uint16(a.MulticastPort)}
	b.add(Flow{
		ID: FlowCommands, Part: config.PartAgent, Direction: "in", From: "the server", To: fmt.Sprintf("group %s", group),
		Protocol: "udp", Ports: []config.PortRange{mp}, Dst: hostPrefixes(group), Interface: a.MulticastInterface,
		Why:    "signed commands and beacons by multicast (MulticastAddress, MulticastPort)",
		Target: groupPort(group, a.MulticastPort),
	})
	proto, mwhy := "igmp", "IGMP membership reports and queries for the group"
	if group.Is6() {
		proto, mwhy = "mld", "MLD listener reports and queries for the group"
	}
	for _, dir := range []string{"out", "in"} {
		from, to := "this host", "multicast routers and snooping switches"
		if dir == "in" {
			from, to = to, from
		}
		b.add(Flow{
			ID: FlowCommands, Part: config.PartAgent, Direction: dir, From: from, To: to, Protocol: proto,
			Step: "membership", Interface: a.MulticastInterface, Why: mwhy, Target: groupPort(group, a.MulticastPort),
		})
	}
	b.multicast(group, a.MulticastPort, a.MulticastInterface, "TTL set on the server")
	for _, raw := range a.LiveUpdateServers {
		if err := b.liveUpdateServer(ctx, raw); err != nil {
			return err
		}
	}
	return nil
}

// liveUpdateServer adds the flows to one of the agent's LiveUpdate servers.
func (b *builder) liveUpdateServer(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("LiveUpdateServers: %q is not a URL", raw)
	}
	port, err := urlPort(u)
	if err != nil {
		return fmt.Errorf("LiveUpdateServers %q: %w", raw, err)
	}
	addrs := b.resolve(ctx, u.Hostname(), "LiveUpdateServers")
	id, why := FlowDefinitions, "definitions from the internal LiveUpdate server"
	if Public(addrs) {
		id, why = FlowDefinitionsPublic, "definitions from the vendor's public server"
	}
	base := Flow{
		ID: id, Part: config.PartAgent, Direction: "out", From: "this host", To: toName(u.Hostname(), addrs),
		Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addrs...), LoopbackOnly: allLoopback(addrs),
		Why:    why + " (" + redact(u) + ")",
		Target: raw,
	}
	switch u.Scheme {
	case "ftp":
		base.Step = "FTP control"
		b.add(base)
		data := base
		data.Step = "FTP passive data"
		data.Ports = []config.PortRange{b.passiveFor(addrs)}
		b.add(data)
	case "http":
		base.Step = "HTTP"
		b.add(base)
	case "https":
		base.Step = "HTTPS"
		b.add(base)
	default:
		return fmt.Errorf("LiveUpdateServers %q: want ftp://, http:// or https://", raw)
	}
	return nil
}

// passiveFor is the passive range of an FTP server at addrs: the local
// LiveUpdate server's when it is this machine, the configured one, or
// AnyPassive with a note.
func (b *builder) passiveFor(addrs []netip.Addr) config.PortRange {
	if l := b.c.LiveUpdate; l != nil && !l.PassivePorts.IsZero() && allLoopback(addrs) {
		return l.PassivePorts
	}
	if !b.c.FTPPassive.IsZero() {
		return b.c.FTPPassive
	}
	const n = "the FTP passive data range of a server downloaded from is not known here, so every unprivileged port (1024-65535) to it is allowed; give the server's range (its PassivePorts) with -ftp-passive-ports to narrow the rule"
	if !slices.Contains(b.p.Notes, n) {
		b.note("%s", n)
	}
	return AnyPassive
}

func (b *builder) liveUpdate(l *config.LiveUpdate) error {
	b.part(config.PartLiveUpdate)
	return b.definitionsListeners(config.PartLiveUpdate, "agents and mirrors", "definitions", l.FTPAddr, l.HTTPAddr, l.PassivePorts,
		"the LiveUpdate server has no passive port range (PassivePorts): its FTP data connections use any free port, so all of 1024-65535 must be open; set PassivePorts, e.g. 30000-30100")
}

// definitionsListeners adds the incoming definitions flows of a part that
// serves a repository as a LiveUpdate server does (the LiveUpdate server,
// a relay's cache): FTP control and passive data on ftpAddr, HTTP on
// httpAddr, each "" when off. what names what is served; noPassive is
// the note when the passive range is not set.
func (b *builder) definitionsListeners(part, from, what, ftpAddr, httpAddr string, passive config.PortRange, noPassive string) error {
	if ftpAddr != "" {
		addr, port, err := listenAddr("FTP address", ftpAddr)
		if err != nil {
			return err
		}
		f := Flow{
			ID: FlowDefinitions, Part: part, Direction: "in", From: from, To: thisHost(addr),
			Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addr), LoopbackOnly: addr.IsLoopback(),
			Step: "FTP control", Why: what + " over anonymous read-only FTP", Target: ftpAddr,
		}
		b.add(f)
		f.Step = "FTP passive data"
		pr := passive
		if pr.IsZero() {
			pr = AnyPassive
			b.note("%s", noPassive)
		}
		f.Ports = []config.PortRange{pr}
		f.Why = "FTP passive (PASV/EPSV) data connections"
		b.add(f)
	}
	if httpAddr != "" {
		addr, port, err := listenAddr("HTTP address", httpAddr)
		if err != nil {
			return err
		}
		b.add(Flow{
			ID: FlowDefinitions, Part: part, Direction: "in", From: from, To: thisHost(addr),
			Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addr), LoopbackOnly: addr.IsLoopback(),
			Step: "HTTP", Why: what + " over HTTP", Target: httpAddr,
		})
	}
	return nil
}

func (b *builder) mirror(ctx context.Context, m *config.Mirror) error {
	b.part(config.PartMirror)
	u, err := url.Parse(m.Upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("upstream %q is not a URL", m.Upstream)
	}
	port, err := urlPort(u)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	// Name resolution first: the mirror asks its resolver (or the
	// system's) for the vendor name's CNAME chain and every address.
	var servers []string
	who := "the resolver given to the mirror"
	if m.Resolver != "" {
		servers = []string{m.Resolver}
	} else {
		who = "the system's resolvers (" + b.resolvConf() + ")"
		cc, err := dns.ClientConfigFromFile(b.resolvConf())
		if err != nil {
			b.note("cannot read %s (%v): the resolvers the mirror uses are unknown, so DNS to any address is allowed", b.resolvConf(), err)
		} else {
			for _, s := range cc.Servers {
				servers = append(servers, net.JoinHostPort(s, cc.Port))
			}
		}
	}
	var dnsAddrs []netip.Addr
	dnsPorts := map[uint16]bool{}
	for _, s := range servers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			if a, err2 := netip.ParseAddr(strings.Trim(s, "[]")); err2 == nil {
				ap = netip.AddrPortFrom(a, 53)
			} else {
				return fmt.Errorf("resolver %q: want IP:PORT", s)
			}
		}
		dnsAddrs = append(dnsAddrs, ap.Addr().Unmap())
		dnsPorts[ap.Port()] = true
	}
	var dp []config.PortRange
	for p := range dnsPorts {
		dp = append(dp, config.PortRange{Lo: p, Hi: p})
	}
	if len(dp) == 0 {
		dp = []config.PortRange{{Lo: 53, Hi: 53}}
	}
	slices.SortFunc(dp, func(a, b config.PortRange) int { return int(a.Lo) - int(b.Lo) })
	for _, proto := range []string{"udp", "tcp"} {
		b.add(Flow{
			ID: FlowDNS, Part: config.PartMirror, Direction: "out", From: "this host", To: toName("", dnsAddrs),
			Protocol: proto, Ports: dp, Dst: hostPrefixes(dnsAddrs...), LoopbackOnly: len(dnsAddrs) > 0 && allLoopback(dnsAddrs),
			Why:    "resolving " + u.Hostname() + " (CNAME chain, every A and AAAA) with " + who,
			Target: m.Upstream, Resolver: m.Resolver,
		})
	}
	res, err := dnsname.Resolve(ctx, u.Hostname(), m.Resolver, b.c.ResolveTimeout)
	var addrs []netip.Addr
	if err != nil {
		b.note("cannot resolve the upstream %s now (%v): mirror-sync rules allow any address", u.Hostname(), err)
	} else {
		addrs = res.Addrs
		if len(res.Aliases) > 0 || len(addrs) > 1 {
			b.note("the upstream %s resolves to %d addresses now; they change as the vendor moves servers: regenerate the rules, or allow the vendor's published ranges", u.Hostname(), len(addrs))
		}
	}
	to := toName(u.Hostname(), addrs)
	if len(addrs) > 1 {
		to = fmt.Sprintf("every address of %s: %s", u.Hostname(), joinAddrs(addrs))
	}
	base := Flow{
		Part: config.PartMirror, Direction: "out", From: "this host", To: to, Protocol: "tcp",
		Ports: []config.PortRange{port}, Dst: hostPrefixes(addrs...), LoopbackOnly: len(addrs) > 0 && allLoopback(addrs),
		Target: m.Upstream, Resolver: m.Resolver,
	}
	for _, id := range []string{FlowMirrorSync, FlowSelfUpdate} {
		f := base
		f.ID = id
		f.Why = "asks each address for its repository state and downloads a whole session from the newest"
		if id == FlowSelfUpdate {
			f.Why = "checks the repository for a newer Vigil release (same servers as the sync)"
		}
		switch u.Scheme {
		case "ftp":
			f.Step = "FTP control"
			b.add(f)
			f.Step = "FTP passive data"
			f.Ports = []config.PortRange{b.passiveFor(addrs)}
			b.add(f)
		case "http", "https":
			f.Step = strings.ToUpper(u.Scheme)
			b.add(f)
		default:
			return fmt.Errorf("upstream %q: want ftp://, http:// or https://", m.Upstream)
		}
	}
	return nil
}

func (b *builder) resolvConf() string {
	if b.c.ResolvConf != "" {
		return b.c.ResolvConf
	}
	return dnsname.ResolvConf
}

// resolve turns a URL's host into addresses, noting a failure: the rule
// then allows any address.
func (b *builder) resolve(ctx context.Context, host, key string) []netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	res, err := dnsname.Resolve(ctx, host, b.c.Resolver, b.c.ResolveTimeout)
	if err != nil {
		b.note("cannot resolve %s (%s) now: %v; its rules allow any address", host, key, err)
		return nil
	}
	return res.Addrs
}

// groupPort is a multicast group and port as a flow's Target: 239.255.81.92:8192, [ff15::8192]:8192.
func groupPort(group netip.Addr, port int) string {
	return net.JoinHostPort(group.String(), strconv.Itoa(port))
}

func urlPort(u *url.URL) (config.PortRange, error) {
	p := u.Port()
	if p == "" {
		switch u.Scheme {
		case "http":
			return config.PortRange{Lo: 80, Hi: 80}, nil
		case "https":
			return config.PortRange{Lo: 443, Hi: 443}, nil
		case "ftp":
			return config.PortRange{Lo: 21, Hi: 21}, nil
		}
		return config.PortRange{}, fmt.Errorf("unknown scheme %q: want ftp://, http:// or https://", u.Scheme)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return config.PortRange{}, fmt.Errorf("port %q: want 1 to 65535", p)
	}
	return config.PortRange{Lo: uint16(n), Hi: uint16(n)}, nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func toName(host string, addrs []netip.Addr) string {
	switch {
	case len(addrs) == 0 && host == "":
		return "any"
	case len(addrs) == 0:
		return host + " (unresolved: any address)"
	case host == "" || addrs[0].String() == host:
		return joinAddrs(addrs)
	}
	return host + " (" + joinAddrs(addrs) + ")"
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func allLoopback(addrs []netip.Addr) bool {
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !a.IsLoopback() {
			return false
		}
	}
	return true
}

// Public reports whether addrs are all global unicast addresses outside
// private ranges: the vendor's public server rather than an internal one.
// vigil ports and vigil doctor tell the two definitions flows apart by it.
func Public(addrs []netip.Addr) bool {
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if a = a.Unmap(); !a.IsGlobalUnicast() || a.IsPrivate() {
			return false
		}
	}
	return true
}
