package demo

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

// The targets of the demo's commands.
var (
	all    = command.Target{All: true}
	setLab = api.SendRequest{Name: "set", Args: map[string]string{"checkin_interval": "60"}, Target: command.Target{Groups: []string{"lab"}}}
)

// startServer starts the management server on loopback addresses, its
// multicast on the loopback interface with TTL 0.
func (d *demo) startServer(ctx context.Context) error {
	cfg := server.Config{Server: config.Server{
		DataDir:         filepath.Join(d.dir, "server"),
		Listen:          "127.0.0.1:0",
		AdminListen:     "127.0.0.1:0",
		Group:           netip.MustParseAddr(group),
		Port:            d.port,
		Interface:       d.ifname,
		TTL:             0,
		BeaconInterval:  2 * time.Second,
		CheckInInterval: 30 * time.Second,
		Spread:          300 * time.Millisecond,
	},
		Logger: d.log.With("part", "server"),
	}
	srv, err := server.New(cfg, func(path string) (store.Store, error) { return sqlite.Open(path) })
	if err != nil {
		return err
	}
	d.srv = srv
	agentLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		agentLn.Close()
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		srv.Serve(ctx, agentLn, adminLn)
	}()
	d.nodeURL = "http://" + agentLn.Addr().String() + server.DefaultConfig().BasePath
	d.admin = &api.AdminClient{Client: api.Client{Base: "http://" + adminLn.Addr().String(), Auth: srv.AdminToken(), HTTP: &http.Client{Timeout: 10 * time.Second}}}
	d.printf("Vigil demo: everything stays on this host.\n")
	d.printf("  server    agent API %s, admin API %s\n", d.nodeURL, d.admin.Base)
	d.printf("  commands  signed (Ed25519) datagrams to %s:%d on %s with TTL 0, beacon every %s\n", group, d.port, d.ifname, cfg.BeaconInterval)
	d.printf("  store     %s\n", filepath.Join(cfg.DataDir, server.FileDatabase))
	return nil
}

// startAgents writes each agent's preference file (XML and binary plists
// in turn), starts the agents and waits until every one has enrolled.
func (d *demo) startAgents(ctx context.Context) error {
	n := d.cfg.Agents
	d.agents = make([]*agent.Agent, n)
	d.prefs = make([]*prefs.Agent, n)
	d.paths = make([]string, n)
	d.names = map[string]string{}
	enrolled := make(chan struct{}, n)
	for i := range n {
		name := fmt.Sprintf("demo-%d", i+1)
		groups := []string{"office"}
		if i%2 == 0 {
			groups = []string{"lab"}
		}
		format := plist.XMLFormat
		if i%2 == 1 {
			format = plist.BinaryFormat
		}
		path := filepath.Join(d.dir, name, "agent.plist")
		os.MkdirAll(filepath.Dir(path), 0o700)
		err := prefs.Write(path, &prefs.Agent{
			MulticastAddress: group, MulticastPort: d.port, MulticastInterface: d.ifname,
			NodeCommURL: d.nodeURL, ServerPublicKey: base64.StdEncoding.EncodeToString(d.srv.PublicKey()),
			EnrollmentSecret: d.srv.EnrollSecret(), StateDirectory: filepath.Join(d.dir, name, "state"),
			Groups: groups, Hostname: name, LogLevel: "info",
			LiveUpdateServers: d.lu.servers(i), RepositoryRoot: d.lu.root,
		}, format)
		if err != nil {
			return err
		}
		p, err := prefs.Load(path)
		if err != nil {
			return err
		}
		kind := "XML"
		if format == plist.BinaryFormat {
			kind = "binary"
		}
		a, err := agent.New(agent.Config{Prefs: p, Logger: d.log.With("part", name), OnEvent: d.onEvent(name, enrolled)})
		if err != nil {
			return err
		}
		d.agents[i], d.prefs[i], d.paths[i] = a, p, path
		d.printf("agent %s: preferences %s (%s plist), groups %v\n", name, path, kind, groups)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				d.printf("agent %s stopped: %v\n", name, err)
				d.cancel()
			}
		}()
	}
	for range n {
		select {
		case <-enrolled:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(15 * time.Second):
			return errors.New("agents did not enroll within 15s")
		}
	}
	time.Sleep(200 * time.Millisecond) // let every agent join the group
	return nil
}

func (d *demo) onEvent(name string, enrolled chan<- struct{}) func(agent.Event) {
	return func(ev agent.Event) {
		switch ev.Kind {
		case agent.EventEnrolled:
			d.mu.Lock()
			d.names[ev.Agent] = name
			d.mu.Unlock()
			d.printf("agent %s: enrolled as %s\n", name, ev.Agent)
			enrolled <- struct{}{}
		case agent.EventExecuted:
			d.printf("  %s executed #%d %s (received by %s): %s %q\n", name, ev.Seq, ev.Name, ev.Via, ev.Status, ev.Output)
		case agent.EventStarted:
			d.printf("  %s started #%d %s (received by %s)\n", name, ev.Seq, ev.Name, ev.Via)
		case agent.EventScanned:
			d.printf("  %s %s\n", name, ev.Output)
		case agent.EventUpdated:
			d.printf("  %s verified the repository: %s\n", name, ev.Output)
		case agent.EventSkipped:
			d.printf("  %s passed over #%d %s: not addressed to it\n", name, ev.Seq, ev.Name)
		}
	}
}

// eicarTestFile is the EICAR anti-virus test file: harmless, and detected
// by every scanner (here by the demo repository's definitions).
const eicarTestFile = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// plant makes a directory on demo-1's machine with an EICAR test file.
func (d *demo) plant(ctx context.Context) error {
	d.planted = filepath.Join(d.dir, "demo-1", "Downloads")
	os.MkdirAll(d.planted, 0o755)
	if err := os.WriteFile(filepath.Join(d.planted, "invoice.pdf.com"), []byte(eicarTestFile), 0o644); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(d.planted, "notes.txt"), []byte("nothing to see here\n"), 0o644)
	return nil
}

// send is a step that issues req, saying what it is for.
func (d *demo) send(what string, req api.SendRequest) func(context.Context) error {
	return func(ctx context.Context) error { return d.issue(ctx, what, req) }
}

// sendToFirst is a step that issues req to demo-1, known only once it has
// enrolled.
func (d *demo) sendToFirst(what string, req api.SendRequest) func(context.Context) error {
	return func(ctx context.Context) error {
		req.Target = command.Target{Agents: []string{d.agents[0].ID()}}
		return d.issue(ctx, what, req)
	}
}

// scan asks demo-1 to scan the directory where the EICAR test file was
// planted.
func (d *demo) scan(ctx context.Context) error {
	return d.sendToFirst("scan demo-1's Downloads, where an EICAR test file was planted",
		api.SendRequest{Name: "scan", Args: map[string]string{"paths": d.planted}})(ctx)
}

// checkInAll asks every agent to check in, and lets the check-ins land
// within the spread window.
func (d *demo) checkInAll(ctx context.Context) error {
	if err := d.issue(ctx, "ask every agent to check in (within the 300ms spread window)", api.SendRequest{Name: "checkin", Target: all}); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // the check-ins land within the spread window
	return nil
}

// issue issues a command through the admin API and waits until every
// targeted agent's result is stored at the server.
func (d *demo) issue(ctx context.Context, what string, req api.SendRequest) error {
	d.printf("\n$ vigil send %s   # %s\n", d.sendArgs(req), what)
	info, err := d.admin.Send(ctx, req)
	if err != nil {
		return err
	}
	d.printf("  issued as #%d (%d-byte signed datagram)\n", info.Seq, info.Bytes)
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := d.admin.CommandResults(ctx, info.Seq)
		if err != nil {
			return err
		}
		pending := 0
		for _, r := range res.Results {
			if r.Status == "pending" {
				pending++
			}
		}
		if pending == 0 && len(res.Results) > 0 {
			d.printf("$ vigil results %d\n", info.Seq)
			d.printf("%s", indentLines(d.cmds.Results(res)))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("command %d: %d results still pending after 15s", info.Seq, pending)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sendArgs is the `vigil send` command line of req.
func (d *demo) sendArgs(req api.SendRequest) string {
	t := "-all"
	switch {
	case len(req.Target.Groups) > 0:
		t = "-group " + req.Target.Groups[0]
	case len(req.Target.Agents) > 0:
		t = "-agent " + req.Target.Agents[0]
	}
	s := t + " " + req.Name
	if a := d.cmds.SendArgs(req.Args); a != "" {
		s += " " + a
	}
	return s
}

// showDetections waits for the scan report to reach the server and lists
// the detections as "vigil detections" does.
func (d *demo) showDetections(ctx context.Context) error {
	var ds []api.DetectionInfo
	deadline := time.Now().Add(10 * time.Second)
	for len(ds) == 0 {
		if time.Now().After(deadline) {
			return errors.New("no detection reached the server within 10s")
		}
		time.Sleep(100 * time.Millisecond)
		var err error
		if ds, err = d.admin.Detections(ctx, "", 0); err != nil {
			return err
		}
	}
	d.printf("$ vigil detections\n%s", indentLines(d.cmds.Detections(ds)))
	return nil
}

// portsAndDoctor shows the flows demo-1's firewall must allow, and checks
// them for real.
func (d *demo) portsAndDoctor(ctx context.Context) error {
	path, p := d.paths[0], d.prefs[0]
	d.printf("\n$ vigil ports -agent %s   # what demo-1's firewall must allow\n", path)
	out, err := d.cmds.Ports(ctx, path, p)
	if err != nil {
		return err
	}
	d.printf("%s", indentLines(out))
	d.printf("\n$ vigil doctor -agent %s -wait 3s   # and whether each flow works\n", path)
	out, failed, err := d.cmds.Doctor(ctx, p, 3*time.Second)
	if err != nil {
		return err
	}
	d.printf("%s", indentLines(out))
	if failed {
		return errors.New("vigil doctor found a flow that does not work")
	}
	return nil
}

// listAgents shows `vigil agents`.
func (d *demo) listAgents(ctx context.Context) error {
	d.printf("\n$ vigil agents\n")
	list, err := d.admin.Agents(ctx)
	if err != nil {
		return err
	}
	out, err := d.cmds.Agents(list)
	if err != nil {
		return err
	}
	d.printf("%s", indentLines(out))
	return nil
}

func (d *demo) finish(context.Context) error {
	d.printf("\nDemo finished: stopping agents and server.\n")
	return nil
}
