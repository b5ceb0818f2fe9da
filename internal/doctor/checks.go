package doctor

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// Check is the check of one or more flows of a plan: the flows of one
// part that come from the same configured setting (a listen address, a
// URL, the multicast group) are checked together, as the part uses them.
// A Check either runs (Run) or says why its flows are not checked from
// this machine (NotChecked).
type Check struct {
	// Flow is the id of the first flow it covers; its results may name
	// others (the mirror's upstream check gives dns, mirror-sync and
	// self-update results).
	Flow string
	// Part is the part on this machine the flows belong to.
	Part string
	// Target is the setting checked, as configured, with any password
	// in a URL redacted.
	Target string
	// Flows are the flows of the plan this check covers, in plan order.
	Flows []ports.Flow
	// NotChecked, when set, says why these flows are not checked from this
	// machine; such a check gives no result.
	NotChecked string

	run func(ctx context.Context) []Result
}

// Config is what the checks act with, besides the plan's flows.
type Config struct {
	// Agent are the agent's preferences: its StateDirectory (credential),
	// ServerCACertificate, ServerPublicKey (the pinned key beacons must be
	// signed with) and RepositoryRoot. Required when the plan has the
	// agent's flows.
	Agent *prefs.Agent
	// Wait is how long the agent's and the relay's commands checks listen
	// for a signed datagram (DefaultMulticastWait when zero).
	Wait time.Duration
	// MirrorRoot is the mirror's pinned root metadata (the content of its
	// -root file). Required when the plan has the mirror's flows.
	MirrorRoot []byte
	// RelayTLS is the client TLS configuration for the relay's https://
	// upstream (its UpstreamCA); nil: the system's roots.
	RelayTLS *tls.Config
	// MirrorTLS is the client TLS configuration for the mirror's https://
	// upstream (nil: the system's roots).
	MirrorTLS *tls.Config
	// Relay is the relay's configuration: its ServerCA (pinned for an
	// https:// Server), ServerKey (the key the datagrams it re-sends are
	// signed with) and RootFile (the pinned root its upstream's metadata
	// must verify from). Required when the plan has the relay's flows.
	Relay *config.Relay
	// Options tune the checks; the mirror's use MirrorTLS instead of
	// Options.TLS.
	Options
}

// Reasons a flow is not checked from the machine it is configured on.
const (
	// NotCheckedServerCommands: the server sends its commands; whether
	// they arrive is only seen where they arrive.
	NotCheckedServerCommands = "sending to the group is not checked here: vigil doctor on an agent checks that this server's signed beacons arrive"
	// NotCheckedPassiveData: a LiveUpdate server opens its passive data
	// ports for each transfer, to a client.
	NotCheckedPassiveData = "the passive data ports are opened by the server for each transfer: vigil doctor on an agent checks them with a passive data connection"
	// NotCheckedAllowed: a port kept open with -allow is not Vigil's.
	NotCheckedAllowed = "kept open with -allow besides Vigil's flows: not a Vigil flow, so not checked"
)

// Checks builds the checks of every flow of plan, in the plan's order:
//
//   - server, agent-api and admin: the listener accepts connections
//     (Listening); commands: not checked (NotCheckedServerCommands);
//   - agent, agent-api: AgentAPI at NodeCommURL with the agent's
//     credential; commands, and the IGMP/MLD membership flows with it:
//     Multicast on the group, port and interface, waiting for a datagram
//     signed by ServerPublicKey (receiving one needs the membership to
//     pass); definitions and definitions-public: LiveUpdate, one check
//     per server URL (FTP control and passive data, or HTTP, then the
//     metadata verified against RepositoryRoot);
//   - LiveUpdate server, definitions: FTP control and HTTP listeners
//     accept connections (Listening); FTP passive data: not checked
//     (NotCheckedPassiveData);
//   - mirror, dns, mirror-sync and self-update: Upstream, one check of
//     its upstream URL with its resolver and MirrorRoot;
//   - relay, agent-api: AgentAPI at its Server URL without a credential
//     (the server must answer as a Vigil agent API, with ServerCA for an
//     https:// URL); commands: RelayMulticast on its group, port and
//     interface, waiting for a datagram it re-sends signed by ServerKey;
//     definitions: its cache's FTP control and HTTP listeners accept
//     connections (Listening), FTP passive data not checked
//     (NotCheckedPassiveData), as a LiveUpdate server's; cache-fill:
//     LiveUpdate on its Upstream (FTP control and passive data, or HTTP,
//     then the metadata verified against RootFile), as an agent checks its
//     LiveUpdate server; metrics: the listener accepts connections;
//   - allowed: not checked (NotCheckedAllowed).
//
// A flow Checks knows no check for is an error, as are missing agent
// preferences, mirror root or relay configuration for a plan with those
// parts' flows.
func Checks(plan *ports.Plan, c Config) ([]Check, error) {
	if plan == nil {
		return nil, errors.New("doctor: no plan")
	}
	var root []byte
	var rootErr error
	if a := c.Agent; a != nil && a.RepositoryRoot != "" {
		root, rootErr = os.ReadFile(a.RepositoryRoot)
	}
	mirrorOpts := c.Options
	mirrorOpts.TLS, mirrorOpts.CAKey = c.MirrorTLS, "the mirror's CAFile (-ca-cert)"

	var checks []Check
	index := map[string]int{} // check key → position in checks
	for _, f := range plan.Flows {
		var key string
		var ck Check
		var err error
		if f.Part == config.PartRelay {
			key, ck, err = c.relayCheckOf(f)
		} else {
			key, ck, err = c.checkOf(f, root, rootErr, mirrorOpts)
		}
		if err != nil {
			return nil, err
		}
		if i, ok := index[key]; ok {
			checks[i].Flows = append(checks[i].Flows, f)
			continue
		}
		ck.Flow, ck.Part, ck.Target, ck.Flows = f.ID, f.Part, redacted(f.Target), []ports.Flow{f}
		index[key] = len(checks)
		checks = append(checks, ck)
	}
	return checks, nil
}

// checkOf returns the check of flow f and the key of the flows it
// covers: flows with the same key are one check.
func (c Config) checkOf(f ports.Flow, root []byte, rootErr error, mirrorOpts Options) (string, Check, error) {
	key := f.Part + "\x00" + f.ID + "\x00" + f.Target
	target := f.Target
	unknown := fmt.Errorf("doctor: no check for flow %s of part %s (%s)", f.ID, f.Part, f.Why)
	switch f.Part {
	case ports.PartAllow:
		return key + "\x00" + f.Step, Check{NotChecked: NotCheckedAllowed}, nil

	case config.PartServer:
		switch f.ID {
		case ports.FlowAgentAPI, ports.FlowAdmin:
			id := f.ID
			return key, Check{run: func(ctx context.Context) []Result { return []Result{Listening(ctx, id, target)} }}, nil
		case ports.FlowStore:
			// The database's host:port (never the URL) accepts TCP.
			return key, Check{run: func(ctx context.Context) []Result { return []Result{Listening(ctx, ports.FlowStore, target)} }}, nil
		case ports.FlowCommands:
			return key, Check{NotChecked: NotCheckedServerCommands}, nil
		}

	case config.PartLiveUpdate:
		if f.ID != ports.FlowDefinitions {
			break
		}
		if f.Step == "FTP passive data" {
			return key + "\x00" + f.Step, Check{NotChecked: NotCheckedPassiveData}, nil
		}
		return key + "\x00" + f.Step, Check{run: func(ctx context.Context) []Result {
			return []Result{Listening(ctx, ports.FlowDefinitions, target)}
		}}, nil

	case config.PartAgent:
		a := c.Agent
		if a == nil {
			return "", Check{}, fmt.Errorf("doctor: the plan has the agent's flows but no agent preferences")
		}
		switch f.ID {
		case ports.FlowAgentAPI:
			cfg := AgentAPIConfig{NodeCommURL: target, CACertFile: a.ServerCACertificate, StateDir: a.StateDirectory, Timeout: c.Timeout}
			return key, Check{run: func(ctx context.Context) []Result { return []Result{AgentAPI(ctx, cfg)} }}, nil
		case ports.FlowCommands:
			wait := c.Wait
			if wait <= 0 {
				wait = DefaultMulticastWait
			}
			iface, key2 := f.Interface, a.ServerKey()
			return key, Check{run: func(ctx context.Context) []Result {
				t := startTimer()
				gp, err := netip.ParseAddrPort(target)
				if err != nil {
					return []Result{t.result(ports.FlowCommands, target, false, "multicast group and port %q: %v", target, err)}
				}
				return []Result{Multicast(ctx, gp.Addr(), int(gp.Port()), iface, key2, wait)}
			}}, nil
		case ports.FlowDefinitions, ports.FlowDefinitionsPublic:
			id, opts := f.ID, c.Options
			return key, Check{run: func(ctx context.Context) []Result {
				if rootErr != nil {
					t := startTimer()
					return []Result{t.result(id, redacted(target), false, "RepositoryRoot: %v", rootErr)}
				}
				return LiveUpdate(ctx, id, target, root, opts)
			}}, nil
		}

	case config.PartMirror:
		switch f.ID {
		case ports.FlowDNS, ports.FlowMirrorSync, ports.FlowSelfUpdate:
			if len(c.MirrorRoot) == 0 {
				return "", Check{}, fmt.Errorf("doctor: the plan has the mirror's flows but no mirror root")
			}
			// One check of the upstream: the resolution, every address and
			// the self-update check on the best one depend on each other.
			resolver, root := f.Resolver, c.MirrorRoot
			return f.Part + "\x00" + f.Target, Check{run: func(ctx context.Context) []Result {
				return Upstream(ctx, target, resolver, root, mirrorOpts)
			}}, nil
		}
	}
	return "", Check{}, unknown
}

// relayCheckOf returns the check of flow f of the relay and its key, as
// checkOf does.
func (c Config) relayCheckOf(f ports.Flow) (string, Check, error) {
	r := c.Relay
	if r == nil {
		return "", Check{}, fmt.Errorf("doctor: the plan has the relay's flows but no relay configuration")
	}
	key := f.Part + "\x00" + f.ID + "\x00" + f.Target
	target := f.Target
	switch f.ID {
	case ports.FlowAgentAPI:
		cfg := AgentAPIConfig{NodeCommURL: target, CACertFile: r.ServerCA, Timeout: c.Timeout, URLKey: "the relay's Server (-server)", CAKey: "the relay's ServerCA (-server-ca)",
			NoCredential: "without the relay's own credential (kept in its state directory)"}
		return key, Check{run: func(ctx context.Context) []Result { return []Result{AgentAPI(ctx, cfg)} }}, nil
	case ports.FlowCommands:
		wait := c.Wait
		if wait <= 0 {
			wait = DefaultMulticastWait
		}
		iface, serverKey := f.Interface, r.ServerKey
		return key, Check{run: func(ctx context.Context) []Result {
			t := startTimer()
			gp, err := netip.ParseAddrPort(target)
			if err != nil {
				return []Result{t.result(ports.FlowCommands, target, false, "multicast group and port %q: %v", target, err)}
			}
			if serverKey == "" {
				return []Result{t.result(ports.FlowCommands, target, false, "the relay's ServerKey (-server-key) is not set here, so what it re-sends cannot be verified: give the relay's preference file, holding ServerKey, with -relay FILE")}
			}
			k, err := base64.StdEncoding.DecodeString(serverKey)
			if err != nil || len(k) != ed25519.PublicKeySize {
				return []Result{t.result(ports.FlowCommands, target, false, "the relay's ServerKey (-server-key) is not a base64 Ed25519 public key (32 bytes)")}
			}
			return []Result{RelayMulticast(ctx, gp.Addr(), int(gp.Port()), iface, ed25519.PublicKey(k), wait)}
		}}, nil
	case ports.FlowDefinitions:
		if f.Step == "FTP passive data" {
			return key + "\x00" + f.Step, Check{NotChecked: NotCheckedPassiveData}, nil
		}
		return key + "\x00" + f.Step, Check{run: func(ctx context.Context) []Result {
			return []Result{Listening(ctx, ports.FlowDefinitions, target)}
		}}, nil
	case ports.FlowCacheFill:
		// One check of the upstream: the FTP control and passive data
		// steps, then the metadata, depend on each other.
		rootFile, opts := r.RootFile, c.Options
		opts.TLS, opts.CAKey = c.RelayTLS, "the relay's UpstreamCA (-upstream-ca)"
		return key, Check{run: func(ctx context.Context) []Result {
			if rootFile == "" {
				t := startTimer()
				return []Result{t.result(ports.FlowCacheFill, redacted(target), false, "the relay's RootFile (-root) is not set: the upstream's metadata cannot be verified")}
			}
			root, err := os.ReadFile(rootFile)
			if err != nil {
				t := startTimer()
				return []Result{t.result(ports.FlowCacheFill, redacted(target), false, "the relay's RootFile (-root): %v", err)}
			}
			return LiveUpdate(ctx, ports.FlowCacheFill, target, root, opts)
		}}, nil
	case ports.FlowMetrics:
		return key, Check{run: func(ctx context.Context) []Result { return []Result{Listening(ctx, ports.FlowMetrics, target)} }}, nil
	}
	return "", Check{}, fmt.Errorf("doctor: no check for flow %s of part %s (%s)", f.ID, f.Part, f.Why)
}

// Run runs the checks that run, all at once, and returns their results
// in the checks' order (each check's own results in their order), however
// long each took. Checks that are not checked give no result.
func Run(ctx context.Context, checks []Check) []Result {
	groups := make([][]Result, len(checks))
	var wg sync.WaitGroup
	for i, ck := range checks {
		if ck.run == nil {
			continue
		}
		wg.Go(func() { groups[i] = ck.run(ctx) })
	}
	wg.Wait()
	var out []Result
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}
