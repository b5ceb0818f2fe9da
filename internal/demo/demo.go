// Package demo runs Vigil's local demonstration, `vigil demo`: a
// management server, agents, a vendor's repository, the mirror and an
// internal LiveUpdate server, all in this process, at work.
//
// The demonstration is a list of named steps (Steps), run in order; each
// prints its part of the transcript a new user reads. Its network rules are
// invariants: every packet stays on this host (HTTP and FTP on loopback
// addresses, DNS from an in-process server, multicast on the loopback
// interface with TTL 0). What the `vigil` commands it stands in for print
// (`vigil results`, `vigil agents`, `vigil ports`, …) comes from the
// Commands the caller gives it, so the transcript shows the very output of
// those commands. The walk through is README.md's "Try it"; the package
// map is docs/architecture.md.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
)

// group is the demo's multicast group; the interface is the loopback one
// and the TTL 0, so no datagram leaves this host.
const group = config.DefaultGroup

// Commands renders what the `vigil` commands the demo stands in for print.
// The command line implements it with its own renderers.
type Commands interface {
	// SendArgs formats a command's arguments as `vigil send` takes them.
	SendArgs(args map[string]string) string
	// Results is what `vigil results SEQ` prints.
	Results(res api.CommandResults) string
	// Detections is what `vigil detections` prints.
	Detections(ds []api.DetectionInfo) string
	// Agents is what `vigil agents` prints.
	Agents(list []api.AgentInfo) (string, error)
	// Ports is what `vigil ports -agent FILE` prints for the agent whose
	// preferences p were read from file.
	Ports(ctx context.Context, file string, p *prefs.Agent) (string, error)
	// Doctor is what `vigil doctor -agent FILE -wait WAIT` prints, and
	// whether a flow failed.
	Doctor(ctx context.Context, p *prefs.Agent, wait time.Duration) (out string, failed bool, err error)
}

// Config is what a demonstration needs.
type Config struct {
	// Agents is the number of agents, 1 to 50.
	Agents int
	// Port is the multicast UDP port (on the loopback interface only).
	Port int
	// Dir is an empty directory for every file of the demonstration; the
	// caller removes it.
	Dir string
	// Stdout receives the transcript.
	Stdout io.Writer
	// Logger receives the parts' logs, and the name of each step as it
	// starts; nil discards them.
	Logger *slog.Logger
	// Commands renders the output of the commands shown.
	Commands Commands
}

// Step is one named step of the demonstration.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
}

// Run runs the demonstration: its Steps in order, stopping at the first
// that fails. It stops every part it started before it returns.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Agents < 1 || cfg.Agents > 50 {
		return errors.New("agents: want 1 to 50")
	}
	if cfg.Commands == nil || cfg.Stdout == nil || cfg.Dir == "" {
		return errors.New("demo: Config needs Commands, Stdout and Dir")
	}
	ifname, err := loopbackName()
	if err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &demo{cfg: cfg, cmds: cfg.Commands, log: log, dir: cfg.Dir, ifname: ifname, port: cfg.Port, cancel: cancel}
	defer d.stop()
	for _, st := range d.Steps() {
		d.log.Info("demo step", "step", st.Name)
		if err := st.Run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Steps is the demonstration's outline: what it shows, in order.
func (d *demo) Steps() []Step {
	return []Step{
		{"start the management server", d.startServer},
		{"publish definitions, mirror them, serve them internally", d.liveUpdate},
		{"start the agents and wait for them to enroll", d.startAgents},
		{"listen on the group as an eavesdropper", d.sniff},
		{"plant an EICAR test file on demo-1", d.plant},
		{"ping every agent", d.send("ping every agent", api.SendRequest{Name: "ping", Target: all})},
		{"set the lab's check-in interval", d.send("set the check-in interval of group lab to 60s", setLab)},
		{"ask demo-1 to check in", d.sendToFirst("ask demo-1 to check in now", api.SendRequest{Name: "checkin"})},
		{"update definitions", d.send("update definitions now (odd agents over FTP, even ones over HTTP)", api.SendRequest{Name: "update", Target: all})},
		{"scan demo-1's Downloads", d.scan},
		{"show the detections", d.showDetections},
		{"ask every agent to check in", d.checkInAll},
		{"forge and replay datagrams as an attacker", d.forge},
		{"show and check demo-1's flows", d.portsAndDoctor},
		{"list the agents", d.listAgents},
		{"finish", d.finish},
	}
}

// demo is one run's state, filled in by its steps.
type demo struct {
	cfg    Config
	cmds   Commands
	log    *slog.Logger
	dir    string
	ifname string
	port   int
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the steps start

	srv     *server.Server
	nodeURL string
	admin   *api.AdminClient
	lu      *liveUpdate
	agents  []*agent.Agent
	prefs   []*prefs.Agent
	paths   []string // each agent's preference file
	planted string   // the directory with the EICAR test file

	sniffed chan []byte // the first command datagram an eavesdropper saw

	mu    sync.Mutex
	names map[string]string // agent id -> demo name
}

// stop stops every part the steps started, and waits for them.
func (d *demo) stop() {
	d.cancel()
	d.wg.Wait()
	if d.srv != nil {
		d.srv.Close()
	}
}

func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.cfg.Stdout, format, args...)
}

// loopbackName finds the loopback interface ("lo" on Linux, "lo0" on macOS).
func loopbackName() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Name, nil
		}
	}
	return "", errors.New("no loopback interface is up")
}

// indentLines indents every line by two spaces.
func indentLines(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// Outline is the names of the demonstration's steps, in order.
func Outline() []string {
	var names []string
	for _, st := range (&demo{}).Steps() {
		names = append(names, st.Name)
	}
	return names
}
