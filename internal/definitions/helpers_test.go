package definitions

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// defFiles returns the signature files of definitions release version:
// small text files and a larger pseudo-random one, all depending on the
// version.
func defFiles(version string) map[string][]byte {
	rng := rand.New(rand.NewPCG(uint64(len(version)), uint64(atoiOr(version))))
	blob := make([]byte, 256<<10)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	return map[string][]byte{
		"main.hdb":  fmt.Appendf(nil, "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature-%s\n", version),
		"daily.ndb": fmt.Appendf(nil, "Vigil.Test.%s:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d\n", version),
		"bulk.ldb":  blob,
	}
}

func atoiOr(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

// fixture is a vendor repository.
type fixture struct {
	t    *testing.T
	repo *publish.Repo
}

func newFixture(t *testing.T, opts publish.Options) *fixture {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, repo: r}
}

// publish adds definitions release version and publishes it, with no
// deltas unless opts asks for them: these tests are about the full
// release (delta_test.go's are about deltas).
func (fx *fixture) publish(version string, opts publish.PublishOptions) {
	fx.t.Helper()
	if opts.DeltaReleases == nil {
		none := 0
		opts.DeltaReleases = &none
	}
	if err := fx.repo.AddDefinitionsData(version, defFiles(version)); err != nil {
		fx.t.Fatal(err)
	}
	if err := fx.repo.Publish(opts); err != nil {
		fx.t.Fatal(err)
	}
}

// snapshotPublic copies the public directory as it is now.
func (fx *fixture) snapshotPublic() string {
	fx.t.Helper()
	dst := filepath.Join(fx.t.TempDir(), "public")
	copyDir(fx.t, fx.repo.PublicDir(), dst)
	return dst
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// agent is an agent's updater with its directories.
type agent struct {
	t    *testing.T
	dir  string
	cfg  Config
	u    *Updater
	logs *bytes.Buffer
}

// newAgent pins the root of fx (copied, as shipped with the agent) and
// uses servers in order.
func newAgent(t *testing.T, fx *fixture, servers ...string) *agent {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "1.root.json")
	b, err := os.ReadFile(fx.repo.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, b, 0o644); err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, dir: dir, logs: &bytes.Buffer{}}
	a.cfg = Config{
		Servers:        servers,
		TrustedRoot:    root,
		StateDir:       filepath.Join(dir, "state"),
		DefinitionsDir: filepath.Join(dir, "definitions"),
		Timeout:        2 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	a.u, err = New(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// withServers returns an updater on the same directories using servers.
func (a *agent) withServers(servers ...string) *Updater {
	a.t.Helper()
	cfg := a.cfg
	cfg.Servers = servers
	u, err := New(cfg)
	if err != nil {
		a.t.Fatal(err)
	}
	return u
}

// checkInstalled checks that version is current, byte-identical to what
// was published, and that DefinitionsDir holds nothing else than the
// current and previous releases (previous "" for none).
func (a *agent) checkInstalled(version, previous string) {
	a.t.Helper()
	got, err := a.u.Installed()
	if err != nil || got != version {
		a.t.Fatalf("Installed() = %q, %v; want %q", got, err, version)
	}
	want := filepath.Join(a.cfg.DefinitionsDir, "releases", version)
	if p := a.u.Path(); p != want {
		a.t.Fatalf("Path() = %q, want %q", p, want)
	}
	checkRelease(a.t, filepath.Join(a.cfg.DefinitionsDir, "current"), version)
	prev, err := a.u.readLink(previousLink)
	if err != nil || prev != previous {
		a.t.Fatalf("previous = %q, %v; want %q", prev, err, previous)
	}
	if previous != "" {
		checkRelease(a.t, filepath.Join(a.cfg.DefinitionsDir, "previous"), previous)
	}
	wantReleases := []string{version}
	if previous != "" {
		wantReleases = append(wantReleases, previous)
	}
	slices.Sort(wantReleases)
	if rels := ls(a.t, filepath.Join(a.cfg.DefinitionsDir, "releases")); !slices.Equal(rels, wantReleases) {
		a.t.Errorf("releases %v, want %v", rels, wantReleases)
	}
	top := ls(a.t, a.cfg.DefinitionsDir)
	for _, n := range top {
		if n != "current" && n != "previous" && n != "releases" {
			a.t.Errorf("leftover in the definitions directory: %s (%v)", n, top)
		}
	}
}

// checkRelease checks that dir holds exactly the files of version.
func checkRelease(t *testing.T, dir, version string) {
	t.Helper()
	want := defFiles(version)
	names := ls(t, dir)
	if len(names) != len(want) {
		t.Fatalf("%s holds %v, want %d files", dir, names, len(want))
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s/%s differs from the published file (%d bytes, want %d)", dir, name, len(got), len(data))
		}
	}
}

func ls(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// readMetadataStore returns the agent's trusted metadata files.
func (a *agent) readMetadataStore() map[string][]byte {
	a.t.Helper()
	out := map[string][]byte{}
	dir := filepath.Join(a.cfg.StateDir, "metadata")
	for _, n := range ls(a.t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			a.t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// checkNotPoisoned checks that every file in the agent's metadata store is
// either as it was (before) or a genuine file of fx's repository.
func (a *agent) checkNotPoisoned(before map[string][]byte, fx *fixture) {
	a.t.Helper()
	genuine := map[string]bool{}
	mdir := filepath.Join(fx.repo.PublicDir(), "metadata")
	for _, n := range ls(a.t, mdir) {
		b, err := os.ReadFile(filepath.Join(mdir, n))
		if err != nil {
			a.t.Fatal(err)
		}
		genuine[string(b)] = true
	}
	for n, b := range a.readMetadataStore() {
		if bytes.Equal(before[n], b) || genuine[string(b)] {
			continue
		}
		a.t.Errorf("metadata store: %s was replaced by metadata that is not the genuine repository's", n)
	}
}

// site is a directory served over HTTP and FTP on 127.0.0.1.
type site struct {
	dir     string
	httpURL string
	ftpURL  string
	log     *testenv.Buffer // the server's access log
}

// serve serves dir with the LiveUpdate server, over HTTP and FTP on
// 127.0.0.1, until the test ends.
func serve(t *testing.T, dir string) site {
	t.Helper()
	log := &testenv.Buffer{}
	srv := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{
		Root: dir,
	},
		AccessLog: log,
	})
	return site{dir: dir, httpURL: srv.HTTPURL, ftpURL: srv.FTPURL, log: log}
}

// flipByte flips one byte in the middle of a file.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// findFile returns the one file under dir whose name ends with suffix.
func findFile(t *testing.T, dir, suffix string) string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, suffix) {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("files ending in %s under %s: %v", suffix, dir, found)
	}
	return found[0]
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
