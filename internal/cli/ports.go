package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// partFiles are the preference files of the parts on this machine, as
// vigil ports and vigil doctor find them: the path given with a flag, or
// the part's default file when it exists.
type partFiles struct {
	server, agent, liveUpdate, mirror, relay string
	// runtimeDir is where running parts publish their settings: "" for
	// $VIGIL_RUNTIME_DIR or the default, "off" for none.
	runtimeDir string
}

func (pf *partFiles) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.server, "server", "", "server preference file (default "+prefs.DefaultPartPath(config.PartServer)+", if present)")
	fs.StringVar(&pf.agent, "agent", "", "agent preference file (default "+prefs.DefaultPath()+", if present)")
	fs.StringVar(&pf.liveUpdate, "liveupdate", "", "LiveUpdate server preference file (default "+prefs.DefaultPartPath(config.PartLiveUpdate)+", if present)")
	fs.StringVar(&pf.mirror, "mirror", "", "mirror preference file (default "+prefs.DefaultPartPath(config.PartMirror)+", if present)")
	fs.StringVar(&pf.relay, "relay", "", "relay preference file (default "+prefs.DefaultPartPath(config.PartRelay)+", if present)")
	fs.StringVar(&pf.runtimeDir, "runtime-dir", "", `directory where a running server, LiveUpdate server and relay publish their settings, read in preference to their preference files ("off": none; default $`+ports.RuntimeDirEnv+" or "+ports.DefaultRuntimeDir()+")")
}

// machineParts is the configuration of the parts on this machine.
type machineParts struct {
	server     *serverOptions
	agent      *prefs.Agent
	liveUpdate *liveUpdateOptions
	mirror     *mirrorOptions
	relay      *relayOptions
	sources    map[string]string
	// running holds the PID of each part whose settings are those its
	// running process published; notes say what was ignored.
	running map[string]int
	notes   []string
}

// pick returns the file to read for a part: the one given, or the default
// when it exists; "" when the part is not on this machine.
func pick(given, def string) (string, error) {
	if given != "" {
		return given, nil
	}
	if _, err := os.Stat(def); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("%s: %w", def, err)
	}
	return def, nil
}

// load reads the settings of the parts present: for the server, the
// LiveUpdate server and the relay, those a running process published
// (unless a file is given), else their preference files.
func (pf *partFiles) load(env *Env) (*machineParts, error) {
	m := &machineParts{sources: map[string]string{}, running: map[string]int{}}
	dir := pf.runtimeDir
	if dir == "" {
		dir = runtimeDir(env)
	} else {
		dir = ports.RuntimeDir(dir)
	}
	path, err := m.chooseFile(dir, config.PartServer, pf.server, prefs.DefaultPartPath(config.PartServer))
	if err != nil {
		return nil, err
	}
	if path != "" {
		if m.server, err = loadPart(serverFlags, path); err != nil {
			return nil, err
		}
		m.sources[config.PartServer] = path
	}
	if path, err = pick(pf.agent, prefs.DefaultPath()); err != nil {
		return nil, err
	}
	if path != "" {
		if m.agent, err = prefs.Load(path); err != nil {
			return nil, err
		}
		m.sources[config.PartAgent] = path
	}
	if path, err = m.chooseFile(dir, config.PartLiveUpdate, pf.liveUpdate, prefs.DefaultPartPath(config.PartLiveUpdate)); err != nil {
		return nil, err
	}
	if path != "" {
		if m.liveUpdate, err = loadPart(liveUpdateFlags, path); err != nil {
			return nil, err
		}
		m.sources[config.PartLiveUpdate] = path
	}
	if path, err = pick(pf.mirror, prefs.DefaultPartPath(config.PartMirror)); err != nil {
		return nil, err
	}
	if path != "" {
		if m.mirror, err = loadPart(mirrorFlags, path); err != nil {
			return nil, err
		}
		m.sources[config.PartMirror] = path
	}
	if path, err = m.chooseFile(dir, config.PartRelay, pf.relay, prefs.DefaultPartPath(config.PartRelay)); err != nil {
		return nil, err
	}
	if path != "" {
		if m.relay, err = loadPart(relayFlags, path); err != nil {
			return nil, err
		}
		m.sources[config.PartRelay] = path
	}
	if len(m.sources) == 0 {
		running := "no server, LiveUpdate server or relay publishes its settings"
		if dir != "" {
			running += " in " + dir
		}
		for _, n := range m.notes {
			running += "; " + n
		}
		return nil, usageError{fmt.Errorf("no Vigil part is configured on this machine: none of %s, %s, %s, %s, %s exists and %s; give -server, -agent, -liveupdate, -mirror or -relay FILE",
			prefs.DefaultPartPath(config.PartServer), prefs.DefaultPath(), prefs.DefaultPartPath(config.PartLiveUpdate), prefs.DefaultPartPath(config.PartMirror),
			prefs.DefaultPartPath(config.PartRelay), running)}
	}
	return m, nil
}

// machinePartNames are the parts vigil ports and vigil doctor know, in the
// order they list them.
var machinePartNames = []string{config.PartServer, config.PartAgent, config.PartLiveUpdate, config.PartMirror, config.PartRelay}

// readFrom says where each part's settings were read from.
func (m *machineParts) readFrom() string {
	return ports.DescribeSources(machinePartNames, m.sources, m.running)
}

// portsConfig is what ports.Build takes: the parts' configurations.
func (m *machineParts) portsConfig() ports.Config {
	var c ports.Config
	if m.server != nil {
		c.Server = &m.server.cfg.Server
	}
	c.Agent = m.agent
	if m.liveUpdate != nil {
		c.LiveUpdate = &m.liveUpdate.cfg.LiveUpdate
	}
	if m.mirror != nil {
		c.Mirror = &m.mirror.Mirror
	}
	if m.relay != nil {
		c.Relay = &m.relay.cfg
	}
	return c
}

func runPorts(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "ports", "[-format table|json|nft|iptables|ip6tables|pf] [-allow tcp/22]… [-server FILE] [-agent FILE] [-liveupdate FILE] [-mirror FILE] [-relay FILE] [-runtime-dir DIR]")
	var pf partFiles
	pf.register(fs)
	format := fs.String("format", "table", "output: table, json, or firewall rules for this machine: nft, iptables, ip6tables, pf")
	passive := fs.String("ftp-passive-ports", "", "passive port range LOW-HIGH of the FTP servers this machine downloads from (default: unknown, so 1024-65535)")
	resolver := fs.String("resolver", "", "DNS server HOST:PORT to resolve host names in URLs with (default: the system's)")
	clients := fs.String("clients", "", "networks agents, mirrors and relays connect from, CIDR[,CIDR…]: the incoming rules of the server, the LiveUpdate server and a relay's cache accept only them (default: any address)")
	admins := fs.String("admins", "", "networks administrators connect to the admin API (and Prometheus to a relay's metrics) from, CIDR[,CIDR…] (default: any address)")
	var allow []ports.Allowed
	fs.Func("allow", "keep a port open besides Vigil's flows, e.g. SSH: [in:|out:]tcp|udp/PORT[-PORT][@ADDRESS|@NETWORK][,…], repeatable (e.g. -allow tcp/22@10.0.9.0/24); without it the rules do NOT allow SSH", func(v string) error {
		for _, item := range strings.Split(v, ",") {
			a, err := ports.ParseAllowed(item)
			if err != nil {
				return err
			}
			allow = append(allow, a)
		}
		return nil
	})
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch *format {
	case "table", "json", "nft", "iptables", "ip6tables", "pf":
	default:
		return usageError{fmt.Errorf("-format %q: want table, json, nft, iptables, ip6tables or pf", *format)}
	}
	clientNets, err := parsePrefixes(*clients)
	if err != nil {
		return usageError{fmt.Errorf("-clients: %v", err)}
	}
	adminNets, err := parsePrefixes(*admins)
	if err != nil {
		return usageError{fmt.Errorf("-admins: %v", err)}
	}
	m, err := pf.load(env)
	if err != nil {
		return err
	}
	c := m.portsConfig()
	c.Clients, c.Admins = clientNets, adminNets
	c.Allow = allow
	c.Resolver = *resolver
	c.ResolveTimeout = 3 * time.Second
	if *passive != "" {
		r, err := config.ParsePortRange(*passive)
		if err != nil {
			return usageError{fmt.Errorf("-ftp-passive-ports: %v", err)}
		}
		c.FTPPassive = r
	}
	plan, err := ports.Build(ctx, c)
	if err != nil {
		return err
	}
	plan.Sources, plan.Running = m.sources, m.running
	plan.Notes = append(m.notes, plan.Notes...)
	switch *format {
	case "json":
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	case "nft":
		return plan.WriteNft(env.Stdout)
	case "iptables":
		return plan.WriteIptables(env.Stdout, 4)
	case "ip6tables":
		return plan.WriteIptables(env.Stdout, 6)
	case "pf":
		return plan.WritePF(env.Stdout)
	}
	return plan.WriteTable(env.Stdout)
}

// parsePrefixes parses a comma-separated list of networks (CIDR) or
// addresses.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a network such as 10.0.0.0/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
