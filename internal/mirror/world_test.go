package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/transport/trickle"
)

// The name the test upstream is published under, and its CNAME chain.
const (
	upstreamName = "liveupdate.vendor.test"
	geoName      = "lu.geo.vendor.test"
	poolName     = "lu-pool.vendor.test"
	repoPath     = "/pub/vigil" // where the repository is on the upstream servers
)

// testAddrs are the upstream's addresses: all of 127.0.0.0/8 is local on
// Linux.
var testAddrs = []netip.Addr{
	netip.MustParseAddr("127.0.0.2"),
	netip.MustParseAddr("127.0.0.3"),
	netip.MustParseAddr("127.0.0.4"),
}

// defFiles returns the files of definitions release version: a small
// signature file and a pseudo-random one of about size bytes.
func defFiles(version string, size int) map[string][]byte {
	n := 0
	fmt.Sscan(version, &n)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	return map[string][]byte{
		"main.hdb": fmt.Appendf(nil, "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature-%s\n", version),
		"bulk.ldb": blob,
	}
}

// vendor is the vendor's repository.
type vendor struct {
	t       *testing.T
	r       *publish.Repo
	liveDir string
}

func newVendor(t *testing.T) *vendor {
	t.Helper()
	none := 0
	return newVendorOpts(t, publish.Options{DeltaReleases: &none})
}

// newVendorOpts is newVendor with options (newVendor publishes no deltas:
// the tests that count targets count releases).
func newVendorOpts(t *testing.T, opts publish.Options) *vendor {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return &vendor{t: t, r: r}
}

// publish adds definitions release version (about size bytes) and
// publishes it.
func (v *vendor) publish(version string, size int) {
	v.t.Helper()
	if err := v.r.AddDefinitionsData(version, defFiles(version, size)); err != nil {
		v.t.Fatal(err)
	}
	if err := v.r.Publish(publish.PublishOptions{}); err != nil {
		v.t.Fatal(err)
	}
}

// release publishes binary as Vigil release version for this platform.
func (v *vendor) release(version, binary string) {
	v.t.Helper()
	if err := v.r.AddRelease(version, goosOrLinux(), goarchOrAmd64(), binary); err != nil {
		v.t.Fatal(err)
	}
	if err := v.r.Publish(publish.PublishOptions{}); err != nil {
		v.t.Fatal(err)
	}
}

// fork copies the whole repository, keys included: a second vendor that
// can publish versions the first one also publishes, differently.
func (v *vendor) fork() *vendor {
	v.t.Helper()
	dst := filepath.Join(v.t.TempDir(), "repo")
	copyDir(v.t, v.r.Dir(), dst)
	r, err := publish.Open(dst)
	if err != nil {
		v.t.Fatal(err)
	}
	return &vendor{t: v.t, r: r}
}

// snapshot copies the public directory as it is now, under a directory
// that serves it at repoPath.
func (v *vendor) snapshot() string {
	v.t.Helper()
	top := v.t.TempDir()
	copyDir(v.t, v.r.PublicDir(), filepath.Join(top, filepath.FromSlash(repoPath)))
	return top
}

// live returns a directory serving the live public directory at
// repoPath (through a symbolic link, which the LiveUpdate server
// follows inside its root).
func (v *vendor) live() string {
	v.t.Helper()
	if v.liveDir != "" {
		return v.liveDir
	}
	top := v.t.TempDir()
	v.liveDir = top
	p := filepath.Join(top, filepath.FromSlash(repoPath))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		v.t.Fatal(err)
	}
	// A symlink to outside the root is refused by os.Root; bind the
	// public directory by moving it under top and linking back.
	pub := v.r.PublicDir()
	if err := os.Rename(pub, p); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Symlink(p, pub); err != nil {
		v.t.Fatal(err)
	}
	return top
}

func (v *vendor) rootJSON() []byte {
	v.t.Helper()
	b, err := os.ReadFile(v.r.RootPath())
	if err != nil {
		v.t.Fatal(err)
	}
	return b
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm()|0o700)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// corruptTarget flips a byte of the one target file under top whose name
// ends with suffix.
func corruptTarget(t *testing.T, top, suffix string) {
	t.Helper()
	var found []string
	filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, suffix) && strings.Contains(p, "/targets/") {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("targets ending in %s under %s: %v", suffix, top, found)
	}
	b, err := os.ReadFile(found[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(found[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// upstream is one LiveUpdate server of the test world.
type upstream struct {
	addr  netip.Addr
	dir   string
	log   *testenv.Buffer
	proxy *trickle.Proxy // the slow server's proxy; nil for the others
}

// world is the upstream on this host: a fake DNS server answering
// upstreamName → geoName → poolName → the addresses, and a LiveUpdate
// server on each address, all on the same HTTP and FTP ports (the URL
// names one port).
type world struct {
	t         *testing.T
	dns       *fakedns.Server
	httpPort  int
	ftpPort   int
	upstreams []*upstream
	// slow maps the index of an address to the settings of the trickle
	// proxy that serves it (see newSlowWorld).
	slow map[int]trickle.Settings
}

// newWorld serves dirs[i] (a directory holding the repository at
// repoPath) at testAddrs[i]. An empty dir leaves the address resolvable
// but with nothing listening.
func newWorld(t *testing.T, dirs ...string) *world {
	t.Helper()
	return newSlowWorld(t, nil, dirs...)
}

// slowPorts is the number of FTP passive ports of a slow address.
const slowPorts = 8

// newSlowWorld is newWorld with the addresses of slow served slowly: the
// LiveUpdate server of such an address listens on another loopback
// address (its HTTP, FTP and passive ports), behind a trickle proxy on
// the address itself shaped by slow[i] (change it with the upstream's
// proxy). Its FTP server announces the address for passive transfers.
func newSlowWorld(t *testing.T, slow map[int]trickle.Settings, dirs ...string) *world {
	t.Helper()
	w := &world{t: t, slow: slow}
	var err error
	w.dns, err = fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.dns.Close() })
	w.dns.AddCNAME(upstreamName, geoName)
	w.dns.AddCNAME(geoName, poolName)
	var addrs []netip.Addr
	for i := range dirs {
		addrs = append(addrs, extraAddr(i))
	}
	w.dns.SetAddrs(poolName, addrs...)

	for attempt := 0; ; attempt++ {
		w.httpPort, w.ftpPort = 20000+rand.IntN(40000), 20000+rand.IntN(40000)
		if w.httpPort == w.ftpPort {
			continue
		}
		servers, ups, err := w.listen(dirs)
		if err == nil {
			w.upstreams = ups
			for _, s := range servers {
				liveupdatetest.Serve(t, s)
			}
			for _, u := range ups {
				if u.proxy != nil {
					t.Cleanup(u.proxy.Close)
				}
			}
			return w
		}
		for _, s := range servers {
			s.Close()
		}
		for _, u := range ups {
			if u.proxy != nil {
				u.proxy.Close()
			}
		}
		if attempt > 50 {
			t.Fatalf("no free port pair on the test addresses: %v", err)
		}
	}
}

// extraAddr is the i-th upstream address: 127.0.0.2, .3, .4, then .5...
func extraAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
}

func (w *world) listen(dirs []string) ([]*liveupdate.Server, []*upstream, error) {
	var servers []*liveupdate.Server
	var ups []*upstream
	for i, d := range dirs {
		a := extraAddr(i)
		u := &upstream{addr: a, dir: d, log: &testenv.Buffer{}}
		ups = append(ups, u)
		if s, ok := w.slow[i]; ok {
			srv, err := w.listenSlow(u, s)
			if srv != nil {
				servers = append(servers, srv)
			}
			if err != nil {
				return servers, ups, err
			}
			continue
		}
		if d == "" {
			// Nothing listens: make sure the ports are free there.
			for _, p := range []int{w.httpPort, w.ftpPort} {
				l, err := net.Listen("tcp", net.JoinHostPort(a.String(), fmt.Sprint(p)))
				if err != nil {
					return servers, ups, err
				}
				l.Close()
			}
			continue
		}
		s, err := liveupdate.New(liveupdate.Config{LiveUpdate: config.LiveUpdate{
			Root:     d,
			HTTPAddr: net.JoinHostPort(a.String(), fmt.Sprint(w.httpPort)),
			FTPAddr:  net.JoinHostPort(a.String(), fmt.Sprint(w.ftpPort)),
		},
			AccessLog: u.log,
		})
		if err != nil {
			w.t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			s.Close()
			return servers, ups, err
		}
		servers = append(servers, s)
	}
	return servers, ups, nil
}

// listenSlow starts u's LiveUpdate server on the loopback address 100
// above u's, and a trickle proxy on u's address forwarding its HTTP, FTP
// and passive ports there.
func (w *world) listenSlow(u *upstream, set trickle.Settings) (*liveupdate.Server, error) {
	a4 := u.addr.As4()
	back := netip.AddrFrom4([4]byte{127, 0, 0, a4[3] + 100}).String()
	pasv := 20000 + rand.IntN(40000)
	s, err := liveupdate.New(liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root:         u.dir,
		HTTPAddr:     net.JoinHostPort(back, fmt.Sprint(w.httpPort)),
		FTPAddr:      net.JoinHostPort(back, fmt.Sprint(w.ftpPort)),
		PassivePorts: config.PortRange{Lo: uint16(pasv), Hi: uint16(pasv + slowPorts - 1)},
		PublicHost:   u.addr.String(),
	},
		AccessLog: u.log,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		return nil, err
	}
	u.proxy = trickle.New(set)
	ports := []int{w.httpPort, w.ftpPort}
	for p := pasv; p < pasv+slowPorts; p++ {
		ports = append(ports, p)
	}
	for _, p := range ports {
		if _, err := u.proxy.Forward(net.JoinHostPort(u.addr.String(), fmt.Sprint(p)), net.JoinHostPort(back, fmt.Sprint(p))); err != nil {
			return s, err
		}
	}
	return s, nil
}

// url is the upstream URL for proto ("http" or "ftp").
func (w *world) url(proto string) string {
	port := w.httpPort
	if proto == "ftp" {
		port = w.ftpPort
	}
	return fmt.Sprintf("%s://%s:%d%s", proto, upstreamName, port, repoPath)
}

// config is a mirror configuration for this world, resolving with the
// fake DNS server (never the system's).
func (w *world) config(proto string, root []byte, dir string, out *testenv.Buffer) Config {
	return Config{
		Upstream: w.url(proto),
		Root:     root,
		Dir:      dir,
		Resolver: w.dns.Addr(),
		Timeout:  5 * time.Second,
		Out:      out,
		Progress: &lineProgress{w: out},
		Version:  "v1.0.0",
		GOOS:     goosOrLinux(),
		GOARCH:   goarchOrAmd64(),
	}
}

// accessLogDelay is how long the LiveUpdate server may hold access log
// lines before writing them.
const accessLogDelay = 1500 * time.Millisecond

// flushLogs waits until the servers have written their access logs.
func (w *world) flushLogs() { time.Sleep(accessLogDelay) }

// resetLogs waits for pending access log lines, then clears the logs.
func (w *world) resetLogs() {
	w.flushLogs()
	for _, u := range w.upstreams {
		u.log.Reset()
	}
}

// requests returns the paths requested from u since the last reset, from
// its access log.
func (u *upstream) requests() []string {
	var out []string
	for _, line := range strings.Split(u.log.String(), "\n") {
		i := strings.IndexByte(line, '"')
		if i < 0 {
			continue
		}
		j := strings.IndexByte(line[i+1:], '"')
		if j < 0 {
			continue
		}
		f := strings.Fields(line[i+1 : i+1+j])
		if len(f) >= 2 && (f[0] == "GET" || f[0] == "RETR" || f[0] == "HEAD") {
			out = append(out, f[1])
		}
	}
	return out
}

// sync runs one sync and fails the test on error.
func syncOK(t *testing.T, cfg Config) *Summary {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sum, err := m.Sync(ctx)
	if err != nil {
		t.Fatalf("sync: %v\noutput:\n%s", err, cfg.Out)
	}
	return sum
}

// syncBehind runs one sync that must end with a BehindError, and checks
// that the local repository verifies as the state the summary reports.
func syncBehind(t *testing.T, cfg Config) *Summary {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sum, err := m.Sync(ctx)
	var be *BehindError
	if !errors.As(err, &be) || sum.Behind == nil || !reflect.DeepEqual(*sum.Behind, be.Behind) {
		t.Fatalf("sync: %v (behind %+v), want a BehindError\noutput:\n%s", err, sum.Behind, cfg.Out)
	}
	if got := verifyState(t, cfg.Dir, cfg.Root); got != sum.After || got.Timestamp != be.Have {
		t.Fatalf("local state %+v, summary %+v, behind %+v", got, sum.After, be.Behind)
	}
	return sum
}

// verifyState checks that dir verifies as one complete state and returns
// its versions.
func verifyState(t *testing.T, dir string, root []byte) StateVersions {
	t.Helper()
	v, err := Verify(dir, root)
	if err != nil {
		t.Fatalf("the local repository does not verify: %v", err)
	}
	return v
}

func vendorVersions(t *testing.T, v *vendor) StateVersions {
	t.Helper()
	s, err := v.r.Status()
	if err != nil {
		t.Fatal(err)
	}
	return StateVersions{Root: s.Root.Version, Timestamp: s.Timestamp.Version, Snapshot: s.Snapshot.Version,
		Targets: s.Targets.Version, TargetFiles: len(s.Definitions) + len(s.Releases) + len(s.Other)}
}
