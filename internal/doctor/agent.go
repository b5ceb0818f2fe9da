package doctor

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// DefaultMulticastWait is how long Agent listens for a signed datagram
// when AgentConfig.Wait is zero: the server's default beacon interval
// (30 s) and a margin.
const DefaultMulticastWait = 35 * time.Second

// AgentConfig configures Agent.
type AgentConfig struct {
	// Prefs are the agent's preferences (as prefs.Load returns them).
	Prefs *prefs.Agent
	// Wait is how long to listen for a signed datagram from the server
	// (DefaultMulticastWait when zero): longer than the server's beacon
	// interval.
	Wait time.Duration
	// Public reports whether a LiveUpdate server URL is the vendor's public
	// server (ports.FlowDefinitionsPublic) rather than an internal one
	// (ports.FlowDefinitions). Nil: public when the URL's host is, or resolves
	// only to, global unicast addresses outside private ranges (the rule
	// `vigil ports` uses).
	Public func(rawURL string) bool
	// Options tune the LiveUpdate checks (Timeout also bounds each step of
	// the agent API check).
	Options
}

// Agent runs every check of the flows of an agent on this machine, at
// once, from its preferences: AgentAPI (NodeCommURL, ServerCACertificate,
// StateDirectory), Multicast (MulticastAddress, MulticastPort,
// MulticastInterface, ServerPublicKey) and LiveUpdate for each of
// LiveUpdateServers (with RepositoryRoot). The results are in that order.
// It takes about cfg.Wait when no signed datagram arrives, less otherwise.
// It is for callers with an agent's preferences and no plan (the demo);
// vigil doctor builds the same checks from the agent's flows with Checks.
func Agent(ctx context.Context, cfg AgentConfig) []Result {
	p := cfg.Prefs
	wait := cfg.Wait
	if wait <= 0 {
		wait = DefaultMulticastWait
	}
	public := cfg.Public
	if public == nil {
		public = func(raw string) bool { return publicURL(ctx, raw, cfg.timeout()) }
	}
	var root []byte
	var rootErr error
	if p.RepositoryRoot != "" {
		root, rootErr = os.ReadFile(p.RepositoryRoot)
	}

	groups := make([][]Result, 2+len(p.LiveUpdateServers))
	var wg sync.WaitGroup
	wg.Go(func() {
		groups[0] = []Result{AgentAPI(ctx, AgentAPIConfig{
			NodeCommURL: p.NodeCommURL, CACertFile: p.ServerCACertificate, StateDir: p.StateDirectory, Timeout: cfg.Timeout,
		})}
	})
	wg.Go(func() {
		t := startTimer()
		group, err := netip.ParseAddr(p.MulticastAddress)
		if err != nil {
			groups[1] = []Result{t.result(ports.FlowCommands, p.MulticastAddress, false, "MulticastAddress %q: %v", p.MulticastAddress, err)}
			return
		}
		groups[1] = []Result{Multicast(ctx, group, p.MulticastPort, p.MulticastInterface, p.ServerKey(), wait)}
	})
	for i, raw := range p.LiveUpdateServers {
		wg.Go(func() {
			flow := ports.FlowDefinitions
			if public(raw) {
				flow = ports.FlowDefinitionsPublic
			}
			if rootErr != nil {
				t := startTimer()
				groups[2+i] = []Result{t.result(flow, redacted(raw), false, "RepositoryRoot: %v", rootErr)}
				return
			}
			groups[2+i] = LiveUpdate(ctx, flow, raw, root, cfg.Options)
		})
	}
	wg.Wait()
	var out []Result
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// publicURL reports whether the host of raw is, or resolves only to,
// global unicast addresses outside private ranges.
func publicURL(ctx context.Context, raw string, step time.Duration) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return false
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, step)
		defer cancel()
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname()); err != nil {
			return false
		}
	}
	return ports.Public(addrs)
}
