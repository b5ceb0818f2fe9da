package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/doctor"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// The demo keeps every packet on this host: multicast on the loopback
// interface with TTL 0, HTTP on 127.0.0.1.
const (
	demoInterface = "lo"
	demoGroup     = config.DefaultGroup
)

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "demo", "[flags]")
	n := fs.Int("agents", 3, "number of agents to run")
	port := fs.Int("port", 8192, "multicast UDP port (on the loopback interface only)")
	keep := fs.Bool("keep", false, "keep the temporary directory and print its path")
	verbose := fs.Bool("v", false, "show the server's and agents' logs")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 50 {
		return usageError{errors.New("-agents: want 1 to 50")}
	}
	ifname, err := loopbackName()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(env.Stdout, "demo files kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logw := io.Discard
	if *verbose {
		logw = env.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d := &demo{env: env, log: log, dir: dir, ifname: ifname, port: *port, done: map[string]chan struct{}{}}
	return d.run(ctx, *n)
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

type demo struct {
	env    *Env
	log    *slog.Logger
	dir    string
	ifname string
	port   int
	admin  *api.AdminClient
	srv    *server.Server

	sniffed chan []byte // the first command datagram an eavesdropper saw

	mu    sync.Mutex
	names map[string]string // agent id -> demo name
	done  map[string]chan struct{}
}

func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.env.Stdout, format, args...)
}

func (d *demo) run(ctx context.Context, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := server.Config{
		DataDir:         filepath.Join(d.dir, "server"),
		Listen:          "127.0.0.1:0",
		AdminListen:     "127.0.0.1:0",
		Group:           netip.MustParseAddr(demoGroup),
		Port:            d.port,
		Interface:       d.ifname,
		TTL:             0,
		BeaconInterval:  2 * time.Second,
		CheckInInterval: 30 * time.Second,
		Spread:          300 * time.Millisecond,
		Logger:          d.log.With("part", "server"),
	}
	srv, err := server.New(cfg, openSQLite)
	if err != nil {
		return err
	}
	d.srv = srv
	defer srv.Close()
	agentLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ctx, agentLn, adminLn)
	}()
	defer wg.Wait()
	defer cancel()

	nodeURL := "http://" + agentLn.Addr().String() + server.DefaultConfig().BasePath
	d.admin = &api.AdminClient{Client: api.Client{Base: "http://" + adminLn.Addr().String(), Auth: srv.AdminToken(), HTTP: &http.Client{Timeout: 10 * time.Second}}}
	d.printf("Vigil demo: everything stays on this host.\n")
	d.printf("  server    agent API %s, admin API %s\n", nodeURL, d.admin.Base)
	d.printf("  commands  signed (Ed25519) datagrams to %s:%d on %s with TTL 0, beacon every %s\n", demoGroup, d.port, d.ifname, cfg.BeaconInterval)
	d.printf("  store     %s\n", filepath.Join(cfg.DataDir, server.FileDatabase))
	lu, err := d.liveUpdate(ctx, &wg)
	if err != nil {
		return err
	}
	d.printf("  updates   internal LiveUpdate server %s and %s, filled by the mirror\n\n", lu.ftp, lu.http)

	// Agents, each with its own preference file and state directory.
	agents := make([]*agent.Agent, n)
	agentPrefs := make([]*prefs.Agent, n)
	agentPaths := make([]string, n)
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
			MulticastAddress: demoGroup, MulticastPort: d.port, MulticastInterface: d.ifname,
			NodeCommURL: nodeURL, ServerPublicKey: base64.StdEncoding.EncodeToString(srv.PublicKey()),
			EnrollmentSecret: srv.EnrollSecret(), StateDirectory: filepath.Join(d.dir, name, "state"),
			Groups: groups, Hostname: name, LogLevel: "info",
			LiveUpdateServers: lu.servers(i), RepositoryRoot: lu.root,
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
		agents[i], agentPrefs[i], agentPaths[i] = a, p, path
		d.printf("agent %s: preferences %s (%s plist), groups %v\n", name, path, kind, groups)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				d.printf("agent %s stopped: %v\n", name, err)
				cancel()
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
	if err := d.sniff(ctx); err != nil {
		return err
	}

	// A directory on demo-1's machine with a planted EICAR test file.
	planted := filepath.Join(d.dir, "demo-1", "Downloads")
	os.MkdirAll(planted, 0o755)
	if err := os.WriteFile(filepath.Join(planted, "invoice.pdf.com"), []byte(eicarTestFile), 0o644); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(planted, "notes.txt"), []byte("nothing to see here\n"), 0o644)

	steps := []struct {
		what string
		req  api.SendRequest
	}{
		{"ping every agent", api.SendRequest{Name: "ping", Target: command.Target{All: true}}},
		{"set the check-in interval of group lab to 60s", api.SendRequest{Name: "set", Args: map[string]string{"checkin_interval": "60"}, Target: command.Target{Groups: []string{"lab"}}}},
		{"ask demo-1 to check in now", api.SendRequest{Name: "checkin", Target: command.Target{Agents: []string{agents[0].ID()}}}},
		{"update definitions now (odd agents over FTP, even ones over HTTP)", api.SendRequest{Name: "update", Target: command.Target{All: true}}},
		{"scan demo-1's Downloads, where an EICAR test file was planted", api.SendRequest{Name: "scan", Args: map[string]string{"paths": planted}, Target: command.Target{Agents: []string{agents[0].ID()}}}},
		{"ask every agent to check in (within the 300ms spread window)", api.SendRequest{Name: "checkin", Target: command.Target{All: true}}},
	}
	for _, st := range steps {
		if err := d.send(ctx, st.what, st.req); err != nil {
			return err
		}
		if st.req.Name == "scan" {
			if err := d.showDetections(ctx); err != nil {
				return err
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // the check-ins land within the spread window
	if err := d.forge(ctx, agents); err != nil {
		return err
	}
	if err := d.portsAndDoctor(ctx, agentPaths[0], agentPrefs[0]); err != nil {
		return err
	}
	d.printf("\n$ vigil agents\n")
	list, err := d.admin.Agents(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	printAgents(&buf, list)
	d.printf("%s", indentLines(buf.String()))
	d.printf("\nDemo finished: stopping agents and server.\n")
	return nil
}

// portsAndDoctor shows the flows an agent's firewall must allow, and checks
// them for real.
func (d *demo) portsAndDoctor(ctx context.Context, path string, p *prefs.Agent) error {
	d.printf("\n$ vigil ports -agent %s   # what demo-1's firewall must allow\n", path)
	m := &machineParts{agent: p, sources: map[string]string{config.PartAgent: path}}
	plan, err := ports.Build(ctx, m.portsConfig())
	if err != nil {
		return err
	}
	plan.Sources = m.sources
	var buf bytes.Buffer
	if err := plan.WriteTable(&buf); err != nil {
		return err
	}
	d.printf("%s", indentLines(buf.String()))
	d.printf("\n$ vigil doctor -agent %s -wait 3s   # and whether each flow works\n", path)
	rs := doctor.Agent(ctx, doctor.AgentConfig{Prefs: p, Wait: 3 * time.Second, Options: doctor.Options{Timeout: 3 * time.Second}})
	buf.Reset()
	if err := doctor.Write(&buf, rs); err != nil {
		return err
	}
	d.printf("%s", indentLines(buf.String()))
	if doctor.Failed(rs) {
		return errors.New("vigil doctor found a flow that does not work")
	}
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

// send issues a command through the admin API and waits until every
// targeted agent's result is stored at the server.
func (d *demo) send(ctx context.Context, what string, req api.SendRequest) error {
	d.printf("\n$ vigil send %s   # %s\n", demoArgs(req), what)
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
			var buf bytes.Buffer
			printResults(&Env{Stdout: &buf}, res)
			d.printf("%s", indentLines(buf.String()))
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

func demoArgs(req api.SendRequest) string {
	t := "-all"
	switch {
	case len(req.Target.Groups) > 0:
		t = "-group " + req.Target.Groups[0]
	case len(req.Target.Agents) > 0:
		t = "-agent " + req.Target.Agents[0]
	}
	s := t + " " + req.Name
	if a := formatArgs(req.Args); a != "" {
		s += " " + a
	}
	return s
}

// forge multicasts a command signed by a key the agents do not pin, and a
// replay of an old datagram, and shows the agents dropping and counting them.
func (d *demo) forge(ctx context.Context, agents []*agent.Agent) error {
	d.printf("\n# an attacker on the network multicasts a \"ping\" signed by its own key, and replays command #1\n")
	_, evil, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	body, _ := command.Encode(command.Command{Name: "ping", Target: command.Target{All: true}})
	forged, err := wire.Sign(evil, wire.Header{Kind: wire.KindCommand, Epoch: d.srv.Epoch(), Seq: d.srv.LatestSeq() + 1, Issued: now, Expires: now.Add(time.Hour)}, body)
	if err != nil {
		return err
	}
	s, err := mcast.NewSender(mcast.Config{Group: netip.MustParseAddr(demoGroup), Port: d.port, Interface: d.ifname, TTL: 0, Loopback: true})
	if err != nil {
		return err
	}
	defer s.Close()
	before := make([][2]uint64, len(agents))
	for i, a := range agents {
		before[i] = [2]uint64{a.Counters().Get(agent.CountWrongKey), a.Counters().Get(agent.CountOld)}
	}
	var replay []byte
	select {
	case replay = <-d.sniffed:
	case <-time.After(5 * time.Second):
		return errors.New("the sniffer saw no command datagram")
	}
	if err := s.Send(forged); err != nil {
		return err
	}
	if err := s.Send(replay); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	for i, a := range agents {
		d.printf("  demo-%d dropped %d datagram(s) signed by another key and %d replayed; executed nothing\n", i+1,
			a.Counters().Get(agent.CountWrongKey)-before[i][0], a.Counters().Get(agent.CountOld)-before[i][1])
	}
	return nil
}

// sniff listens on the group like an eavesdropper and keeps the first
// command datagram, to replay it later.
func (d *demo) sniff(ctx context.Context) error {
	r, err := mcast.NewReceiver(mcast.Config{Group: netip.MustParseAddr(demoGroup), Port: d.port, Interface: d.ifname})
	if err != nil {
		return err
	}
	d.sniffed = make(chan []byte, 1)
	go func() {
		<-ctx.Done()
		r.Close()
	}()
	go func() {
		defer r.Close()
		buf := make([]byte, 2048)
		for {
			n, _, err := r.Receive(buf)
			if err != nil {
				return
			}
			if e, err := wire.Decode(buf[:n]); err == nil && e.Kind == wire.KindCommand {
				d.sniffed <- append([]byte(nil), buf[:n]...)
				return
			}
		}
	}()
	return nil
}

// demoLiveUpdate is the demo's definitions repository and its server.
type demoLiveUpdate struct {
	root      string // the pinned root metadata agents trust
	ftp, http string
}

// servers lists LiveUpdate servers for agent i: FTP first for even i,
// HTTP first for odd i, the other as fallback.
func (l *demoLiveUpdate) servers(i int) []string {
	if i%2 == 0 {
		return []string{l.ftp, l.http}
	}
	return []string{l.http, l.ftp}
}

// The vendor's public LiveUpdate name in the demo, and the chain of
// aliases it resolves through, as the reference article shows for
// Symantec's.
const (
	demoVendorName = "liveupdate.vendor.test"
	demoVendorGeo  = "lu.geo.vendor.test"
	demoVendorPool = "lu-pool.vendor.test"
)

// liveUpdate plays the whole definitions chain on this host: the vendor
// publishes two signed releases; three public servers behind one name
// (one of them stale) serve them; the mirror resolves the name, picks the
// newest address and syncs into the internal repository; and the internal
// LiveUpdate server serves that to the agents over FTP and HTTP.
func (d *demo) liveUpdate(ctx context.Context, wg *sync.WaitGroup) (*demoLiveUpdate, error) {
	r, err := publish.Init(filepath.Join(d.dir, "vendor"), publish.Options{})
	if err != nil {
		return nil, err
	}
	// The EICAR test file's MD5, size and name, in ClamAV's .hdb format.
	err = r.AddDefinitionsData("2026112501", map[string][]byte{
		"vigil-test.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	})
	if err != nil {
		return nil, err
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		return nil, err
	}
	// One public server was replicated before the next release.
	stale := filepath.Join(d.dir, "vendor-stale-replica")
	if err := copyTree(r.PublicDir(), stale); err != nil {
		return nil, err
	}
	err = r.AddDefinitionsData("2026112502", map[string][]byte{
		"vigil-test.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
		"vigil-test.ndb": []byte("Eicar-Signature:0:0:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n"),
	})
	if err != nil {
		return nil, err
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		return nil, err
	}

	// The vendor's public servers: three addresses behind one name.
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		dns.Close()
	}()
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	roots := []string{r.PublicDir(), stale, r.PublicDir()}
	port, err := d.servePublic(ctx, wg, addrs, roots)
	if err != nil {
		// Only 127.0.0.1 is a loopback address here (macOS): one server.
		addrs, roots = addrs[:0], roots[:1]
		addrs = append(addrs, netip.MustParseAddr("127.0.0.1"))
		if port, err = d.servePublic(ctx, wg, addrs, roots); err != nil {
			return nil, err
		}
	}
	dns.AddCNAME(demoVendorName, demoVendorGeo)
	dns.AddCNAME(demoVendorGeo, demoVendorPool)
	dns.SetAddrs(demoVendorPool, addrs...)

	upstream := fmt.Sprintf("http://%s:%d/", demoVendorName, port)
	d.printf("  vendor    published definitions 2026112501 and 2026112502 (TUF, signed); %d public server(s) behind %s, one stale\n\n", len(addrs), demoVendorName)
	d.printf("$ vigil mirror -resolver %s -root vendor/public/metadata/1.root.json -dir internal %s\n", dns.Addr(), upstream)
	rootJSON, err := os.ReadFile(r.RootPath())
	if err != nil {
		return nil, err
	}
	internal := filepath.Join(d.dir, "internal-liveupdate")
	var out bytes.Buffer
	m, err := mirror.New(mirror.Config{Upstream: upstream, Root: rootJSON, Dir: internal, Resolver: dns.Addr(), Out: &out})
	if err != nil {
		return nil, err
	}
	_, err = m.Sync(ctx)
	d.printf("%s", indentLines(out.String()))
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	d.printf("\n")

	lu, err := liveupdate.New(liveupdate.Config{
		Root: internal, HTTPAddr: "127.0.0.1:0", FTPAddr: "127.0.0.1:0", Logger: d.log.With("part", "liveupdate"),
	})
	if err != nil {
		return nil, err
	}
	if err := lu.Listen(); err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		lu.Serve(ctx)
	}()
	return &demoLiveUpdate{
		root: r.RootPath(),
		ftp:  "ftp://" + lu.FTPAddr().String() + "/",
		http: "http://" + lu.HTTPAddr().String() + "/",
	}, nil
}

// servePublic serves roots[i] over HTTP on addrs[i], all on one port (the
// upstream URL names one), and returns the port.
func (d *demo) servePublic(ctx context.Context, wg *sync.WaitGroup, addrs []netip.Addr, roots []string) (int, error) {
	var err error
	for range 20 {
		var servers []*liveupdate.Server
		port := 0
		for i, a := range addrs {
			var lu *liveupdate.Server
			lu, err = liveupdate.New(liveupdate.Config{Root: roots[i], HTTPAddr: netip.AddrPortFrom(a, uint16(port)).String(), Logger: d.log.With("part", "vendor")})
			if err == nil {
				err = lu.Listen()
			}
			if err != nil {
				break
			}
			servers = append(servers, lu)
			port = lu.HTTPAddr().(*net.TCPAddr).Port
		}
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			continue // the port was taken on another address: try another
		}
		for _, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Serve(ctx)
			}()
		}
		return port, nil
	}
	return 0, err
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// indentLines indents every line by two spaces.
func indentLines(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// eicarTestFile is the EICAR anti-virus test file: harmless, and detected
// by every scanner (here by the demo repository's definitions).
const eicarTestFile = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

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
	var buf bytes.Buffer
	printDetections(&buf, ds)
	d.printf("$ vigil detections\n%s", indentLines(buf.String()))
	return nil
}
