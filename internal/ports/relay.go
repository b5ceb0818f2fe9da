package ports

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/vigil-fleet/vigil/internal/config"
)

// relay adds a relay's flows: to the server's agent API (enrollment,
// check-in, results and the relay stream), the server's datagrams re-sent
// to its subnet's group, and, when it caches definitions, its FTP and HTTP
// listeners and the fill from its upstream; then its /metrics listener.
func (b *builder) relay(ctx context.Context, r *config.Relay) error {
	b.part(config.PartRelay)
	if err := b.agentAPI(ctx, config.PartRelay, "Server", r.Server, "/BASE (the server's agent API, as agents' NodeCommURL)",
		"enrollment, check-in, results and the long-lived stream of the server's datagrams, GET /v1/relay/stream"); err != nil {
		return err
	}

	if !r.Group.IsMulticast() {
		return fmt.Errorf("Group %v is not a multicast address", r.Group)
	}
	if r.Port < 1 || r.Port > 65535 {
		return fmt.Errorf("multicast Port %d: want 1 to 65535", r.Port)
	}
	if r.TTL < 0 || r.TTL > 255 {
		return fmt.Errorf("TTL %d: want 0 to 255", r.TTL)
	}
	b.add(Flow{
		ID: FlowCommands, Part: config.PartRelay, Direction: "out", From: "this host", To: fmt.Sprintf("group %s (agents of this subnet)", r.Group),
		Protocol: "udp", Ports: []config.PortRange{{Lo: uint16(r.Port), Hi: uint16(r.Port)}}, Dst: hostPrefixes(r.Group), Interface: r.Interface,
		Why:    fmt.Sprintf("the server's signed commands and beacons, re-sent verbatim by multicast on this subnet, TTL %d", r.TTL),
		Target: groupPort(r.Group, r.Port),
	})
	b.multicast(r.Group, r.Port, r.Interface, fmt.Sprintf("TTL %d (set on the relay)", r.TTL))
	if r.TTL == 0 {
		b.note("the relay's multicast TTL is 0: what it re-sends never leaves this host; agents of its subnet get commands only by HTTP catch-up")
	}

	if r.Caches() {
		if err := b.definitionsListeners(config.PartRelay, "agents of this subnet", "definitions from the relay's cache", r.FTPAddr, r.HTTPAddr, r.PassivePorts,
			"the relay's cache has no passive port range (PassivePorts): its FTP data connections use any free port, so all of 1024-65535 must be open; set PassivePorts, e.g. 30000-30100"); err != nil {
			return err
		}
		if err := b.cacheFill(ctx, r.Upstream); err != nil {
			return err
		}
	}

	if r.MetricsListen != "" {
		addr, port, err := listenAddr("metrics address (MetricsListen)", r.MetricsListen)
		if err != nil {
			return err
		}
		f := Flow{
			ID: FlowMetrics, Part: config.PartRelay, Direction: "in", From: "Prometheus", To: thisHost(addr),
			Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addr), LoopbackOnly: addr.IsLoopback(),
			Why:    "the relay's Prometheus /metrics (MetricsListen)",
			Target: r.MetricsListen,
		}
		if f.LoopbackOnly {
			f.From = "this host"
			f.Why += "; listens on loopback only, so no rule is needed"
		}
		b.add(f)
	}
	return nil
}

// cacheFill adds the flows from a relay's definitions cache to its
// upstream, a LiveUpdate server or mirror: as an agent's to a LiveUpdate
// server, FTP control and passive data, or HTTP(S).
func (b *builder) cacheFill(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("Upstream %q is not a URL", raw)
	}
	if u.Scheme != "ftp" && u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("Upstream %q: want ftp://, http:// or https://", raw)
	}
	port, err := urlPort(u)
	if err != nil {
		return fmt.Errorf("Upstream: %w", err)
	}
	addrs := b.resolve(ctx, u.Hostname(), "Upstream")
	f := Flow{
		ID: FlowCacheFill, Part: config.PartRelay, Direction: "out", From: "this host", To: toName(u.Hostname(), addrs),
		Protocol: "tcp", Ports: []config.PortRange{port}, Dst: hostPrefixes(addrs...), LoopbackOnly: allLoopback(addrs),
		Why:    "the cache fetches each file on its first request and the metadata it is verified against (Upstream " + redact(u) + ")",
		Target: raw,
	}
	switch u.Scheme {
	case "ftp":
		f.Step = "FTP control"
		b.add(f)
		f.Step = "FTP passive data"
		f.Ports = []config.PortRange{b.passiveFor(addrs)}
		b.add(f)
	default: // http, https
		f.Step = strings.ToUpper(u.Scheme)
		b.add(f)
	}
	return nil
}
