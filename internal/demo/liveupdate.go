package demo

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/publish"
)

// liveUpdate is the demo's definitions repository and its server.
type liveUpdate struct {
	root      string // the pinned root metadata agents trust
	ftp, http string
}

// servers lists LiveUpdate servers for agent i: FTP first for even i,
// HTTP first for odd i, the other as fallback.
func (l *liveUpdate) servers(i int) []string {
	if i%2 == 0 {
		return []string{l.ftp, l.http}
	}
	return []string{l.http, l.ftp}
}

// The vendor's public LiveUpdate name in the demo, and the chain of
// aliases it resolves through, as the reference article shows for
// Symantec's.
const (
	vendorName = "liveupdate.vendor.test"
	vendorGeo  = "lu.geo.vendor.test"
	vendorPool = "lu-pool.vendor.test"
)

// liveUpdate plays the whole definitions chain on this host: the vendor
// publishes two signed releases; three public servers behind one name
// (one of them stale) serve them; the mirror resolves the name, picks the
// newest address and syncs into the internal repository; and the internal
// LiveUpdate server serves that to the agents over FTP and HTTP.
func (d *demo) liveUpdate(ctx context.Context) error {
	r, err := publish.Init(filepath.Join(d.dir, "vendor"), publish.Options{})
	if err != nil {
		return err
	}
	// The EICAR test file's MD5, size and name, in ClamAV's .hdb format.
	err = r.AddDefinitionsData("2026112501", map[string][]byte{
		"vigil-test.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	})
	if err != nil {
		return err
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		return err
	}
	// One public server was replicated before the next release.
	stale := filepath.Join(d.dir, "vendor-stale-replica")
	if err := copyTree(r.PublicDir(), stale); err != nil {
		return err
	}
	err = r.AddDefinitionsData("2026112502", map[string][]byte{
		"vigil-test.hdb": []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
		"vigil-test.ndb": []byte("Eicar-Signature:0:0:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n"),
	})
	if err != nil {
		return err
	}
	if err := r.Publish(publish.PublishOptions{}); err != nil {
		return err
	}

	// The vendor's public servers: three addresses behind one name.
	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		<-ctx.Done()
		dns.Close()
	}()
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	roots := []string{r.PublicDir(), stale, r.PublicDir()}
	port, err := d.servePublic(ctx, addrs, roots)
	if err != nil {
		// Only 127.0.0.1 is a loopback address here (macOS): one server.
		addrs, roots = addrs[:0], roots[:1]
		addrs = append(addrs, netip.MustParseAddr("127.0.0.1"))
		if port, err = d.servePublic(ctx, addrs, roots); err != nil {
			return err
		}
	}
	dns.AddCNAME(vendorName, vendorGeo)
	dns.AddCNAME(vendorGeo, vendorPool)
	dns.SetAddrs(vendorPool, addrs...)

	upstream := fmt.Sprintf("http://%s:%d/", vendorName, port)
	d.printf("  vendor    published definitions 2026112501 and 2026112502 (TUF, signed); %d public server(s) behind %s, one stale\n\n", len(addrs), vendorName)
	d.printf("$ vigil mirror -resolver %s -root vendor/public/metadata/1.root.json -dir internal %s\n", dns.Addr(), upstream)
	rootJSON, err := os.ReadFile(r.RootPath())
	if err != nil {
		return err
	}
	internal := filepath.Join(d.dir, "internal-liveupdate")
	var out bytes.Buffer
	m, err := mirror.New(mirror.Config{Upstream: upstream, Root: rootJSON, Dir: internal, Resolver: dns.Addr(), Out: &out})
	if err != nil {
		return err
	}
	_, err = m.Sync(ctx)
	d.printf("%s", indentLines(out.String()))
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	d.printf("\n")

	lu, err := liveupdate.New(liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root:     internal,
		HTTPAddr: "127.0.0.1:0",
		FTPAddr:  "127.0.0.1:0",
	},
		Logger: d.log.With("part", "liveupdate"),
	})
	if err != nil {
		return err
	}
	if err := lu.Listen(); err != nil {
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		lu.Serve(ctx)
	}()
	d.lu = &liveUpdate{
		root: r.RootPath(),
		ftp:  "ftp://" + lu.FTPAddr().String() + "/",
		http: "http://" + lu.HTTPAddr().String() + "/",
	}
	d.printf("  updates   internal LiveUpdate server %s and %s, filled by the mirror\n\n", d.lu.ftp, d.lu.http)
	return nil
}

// servePublic serves roots[i] over HTTP on addrs[i], all on one port (the
// upstream URL names one), and returns the port.
func (d *demo) servePublic(ctx context.Context, addrs []netip.Addr, roots []string) (int, error) {
	var err error
	for range 20 {
		var servers []*liveupdate.Server
		port := 0
		for i, a := range addrs {
			var lu *liveupdate.Server
			lu, err = liveupdate.New(liveupdate.Config{LiveUpdate: config.LiveUpdate{
				Root:     roots[i],
				HTTPAddr: netip.AddrPortFrom(a, uint16(port)).String(),
			},
				Logger: d.log.With("part", "vendor"),
			})
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
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
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
