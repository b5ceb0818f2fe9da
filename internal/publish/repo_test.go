package publish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// newRepo creates a repository in a temporary directory.
func newRepo(t *testing.T) *Repo {
	t.Helper()
	r, err := Init(filepath.Join(t.TempDir(), "repo"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// client is a go-tuf updater for r's public/ (read from disk), pinned to
// r's 1.root.json, caching in cache (a new directory if empty).
func client(t *testing.T, r *Repo, cache string) (*updater.Updater, error) {
	t.Helper()
	return clientAt(t, "file://"+r.PublicDir(), r.RootPath(), cache)
}

func clientAt(t *testing.T, baseURL, rootPath, cache string) (*updater.Updater, error) {
	t.Helper()
	root, err := os.ReadFile(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	if cache == "" {
		cache = t.TempDir()
	}
	cfg, err := repo.ClientConfig(baseURL, root)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := url.Parse(baseURL); err == nil && u.Scheme == "file" {
		cfg.Fetcher = transport.FileFetcher{Dir: u.Path}
	}
	cfg.LocalMetadataDir = filepath.Join(cache, "metadata")
	cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	up, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, err
	}
	return up, nil
}

func mustClient(t *testing.T, r *Repo, cache string) *updater.Updater {
	t.Helper()
	up, err := client(t, r, cache)
	if err != nil {
		t.Fatalf("client refresh: %v", err)
	}
	return up
}

// download fetches and verifies a target with the client.
func download(t *testing.T, up *updater.Updater, path string) []byte {
	t.Helper()
	ti, err := up.GetTargetInfo(path)
	if err != nil {
		t.Fatalf("target %s: %v", path, err)
	}
	_, data, err := up.DownloadTarget(ti, filepath.Join(t.TempDir(), "dl"), "")
	if err != nil {
		t.Fatalf("download %s: %v", path, err)
	}
	return data
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tree returns every file under dir with its mode and content hash, to
// check that a refused command changed nothing.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		m[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed: %q -> %q", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

var defs1 = map[string][]byte{
	"main.hdb":  []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	"daily.ndb": []byte("Test.Body:0:*:4556494c\n"),
}

func TestInitIsUsableAtOnce(t *testing.T) {
	r := newRepo(t)
	up := mustClient(t, r, "")
	if n := len(up.GetTopLevelTargets()); n != 0 {
		t.Fatalf("new repository has %d targets", n)
	}
	for _, name := range []string{"1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"} {
		if _, err := os.Stat(filepath.Join(r.PublicDir(), "metadata", name)); err != nil {
			t.Error(err)
		}
	}
	for p, want := range map[string]os.FileMode{
		filepath.Join(r.Dir(), "keys"):                     0o700 | fs.ModeDir,
		filepath.Join(r.Dir(), "keys", "root"):             0o700 | fs.ModeDir,
		filepath.Join(r.Dir(), "keys", "root", "root.key"): 0o600,
		filepath.Join(r.Dir(), "keys", "targets.key"):      0o600,
		filepath.Join(r.Dir(), "keys", "snapshot.key"):     0o600,
		filepath.Join(r.Dir(), "keys", "timestamp.key"):    0o600,
		filepath.Join(r.Dir(), "staged"):                   0o700 | fs.ModeDir,
	} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
		}
	}
	// config.json holds the defaults.
	b, _ := os.ReadFile(filepath.Join(r.Dir(), "config.json"))
	for _, want := range []string{`"root_expires": "8760h0m0s"`, `"targets_expires": "2160h0m0s"`, `"snapshot_expires": "168h0m0s"`, `"timestamp_expires": "24h0m0s"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("config.json lacks %s:\n%s", want, b)
		}
	}
	// Init refuses to overwrite it.
	before := tree(t, r.Dir())
	if _, err := Init(r.Dir(), Options{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: %v", err)
	}
	sameTree(t, before, tree(t, r.Dir()))
}

// TestPublishAndDownload publishes a definitions release and a Vigil
// release and fetches them with go-tuf's client over HTTP, as agents and
// mirrors will.
func TestPublishAndDownload(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	bin := writeFile(t, src, "vigil-linux-amd64", []byte("\x7fELF pretend vigil v1.2.3"))
	if err := r.AddDefinitionsData("2026112501", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRelease("v1.2.3", "linux", "amd64", bin); err != nil {
		t.Fatal(err)
	}
	// Staged is not published.
	if up := mustClient(t, r, ""); len(up.GetTopLevelTargets()) != 0 {
		t.Fatal("staged targets are visible before publish")
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir(), "staged", "targets.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("staged/targets.json left after publish: %v", err)
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(r.PublicDir())))
	defer srv.Close()
	up, err := clientAt(t, srv.URL, r.RootPath(), "")
	if err != nil {
		t.Fatal(err)
	}
	targets := up.GetTopLevelTargets()

	path, version, ok := repo.LatestDefinitions(targets)
	if !ok || path != "definitions/2026112501.tar" || version != "2026112501" {
		t.Fatalf("LatestDefinitions = %q %q %v", path, version, ok)
	}
	c, err := repo.ParseCustom(*targets[path].Custom)
	if err != nil || c.Kind != "definitions" || c.Version != "2026112501" || c.Containers != nil {
		t.Fatalf("definitions custom = %+v, %v", c, err)
	}
	bundle := download(t, up, path)
	out := t.TempDir()
	names, err := repo.ExtractBundle(bytes.NewReader(bundle), out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"daily.ndb", "main.hdb"}) {
		t.Fatalf("bundle names %v", names)
	}
	for name, want := range defs1 {
		if got, _ := os.ReadFile(filepath.Join(out, name)); !bytes.Equal(got, want) {
			t.Errorf("%s: got %q want %q", name, got, want)
		}
	}

	rpath, rversion, ok := repo.LatestRelease(targets, "linux", "amd64")
	if !ok || rpath != "vigil/v1.2.3/linux-amd64/vigil" || rversion != "v1.2.3" {
		t.Fatalf("LatestRelease = %q %q %v", rpath, rversion, ok)
	}
	if _, _, ok := repo.LatestRelease(targets, "darwin", "arm64"); ok {
		t.Fatal("repo.LatestRelease found a darwin/arm64 release")
	}
	raw, _ := json.Marshal(targets[rpath].Custom)
	if string(raw) != `{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64"}` {
		t.Fatalf("release custom %s", raw)
	}
	if got, want := download(t, up, rpath), []byte("\x7fELF pretend vigil v1.2.3"); !bytes.Equal(got, want) {
		t.Fatalf("release content %q", got)
	}

	// The files are where go-tuf's client fetched them: hash-prefixed.
	sum := sha256.Sum256(bundle)
	if _, err := os.Stat(filepath.Join(r.PublicDir(), "targets", "definitions", hex.EncodeToString(sum[:])+".2026112501.tar")); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"2.targets.json", "2.snapshot.json"} {
		if _, err := os.Stat(filepath.Join(r.PublicDir(), "metadata", name)); err != nil {
			t.Error(err)
		}
	}

	// A tampered target is refused by the client.
	tp := filepath.Join(r.PublicDir(), "targets", "definitions", hex.EncodeToString(sum[:])+".2026112501.tar")
	if err := os.WriteFile(tp, append(bundle[:len(bundle)-1:len(bundle)-1], 'x'), 0o644); err != nil {
		t.Fatal(err)
	}
	ti, _ := up.GetTargetInfo(path)
	if _, _, err := up.DownloadTarget(ti, filepath.Join(t.TempDir(), "x"), ""); !errors.Is(err, &metadata.ErrLengthOrHashMismatch{}) {
		t.Fatalf("tampered target: %v", err)
	}

	// Status reports it.
	s, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Definitions) != 1 || len(s.Releases) != 1 || len(s.Staged) != 0 || s.Targets.Version != 2 || s.Timestamp.Version != 2 {
		t.Fatalf("status %+v", s)
	}
}

func TestDefinitionsVersionsIncrease(t *testing.T) {
	r := newRepo(t)
	if err := r.AddDefinitionsData("10", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("11", defs1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ version, msg string }{
		{"9", "not newer than 10 (published)"},
		{"10", "already published"},
		{"010", "not newer than 10 (published)"},
		{"11", "already staged"},
		{"0011", "not newer than 11 (staged)"},
		{"2", "not newer than 10"}, // numeric, not lexical
	} {
		before := tree(t, r.Dir())
		err := r.AddDefinitionsData(tt.version, defs1)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("add %s: %v, want %q", tt.version, err, tt.msg)
		}
		sameTree(t, before, tree(t, r.Dir()))
	}
	if err := r.AddDefinitionsData("100", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	up := mustClient(t, r, "")
	if p, v, ok := repo.LatestDefinitions(up.GetTopLevelTargets()); !ok || v != "100" || p != "definitions/100.tar" {
		t.Fatalf("latest %q %q %v", p, v, ok)
	}
	if n := len(up.GetTopLevelTargets()); n != 5 {
		t.Fatalf("%d targets, want 5 (old releases stay, and the deltas to 100 from 11 and 10)", n)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	good := writeFile(t, src, "main.hdb", defs1["main.hdb"])
	refused := writeFile(t, src, "daily.ndb", []byte("Bad.Body:0:*:4g\n")) // not hex: ClamAV refuses the file
	noDatabase := writeFile(t, src, "notes.txt", []byte("no signatures\n"))
	dot := writeFile(t, src, ".hidden", []byte("x"))
	space := writeFile(t, src, "a b.hdb", []byte("x"))
	bin := writeFile(t, src, "vigil", []byte("binary"))
	empty := writeFile(t, src, "empty", nil)
	os.Mkdir(filepath.Join(src, "sub"), 0o755)
	dup := writeFile(t, filepath.Join(src, "sub"), "main.hdb", []byte("y"))
	if err := r.AddRelease("v1.0.0", "linux", "amd64", bin); err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("5", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func() error
		msg  string
	}{
		{"empty version", func() error { return r.AddDefinitions("", []string{good}) }, "want 1 to 20 digits"},
		{"letters", func() error { return r.AddDefinitions("12a", []string{good}) }, "want digits only"},
		{"dotted", func() error { return r.AddDefinitions("1.0", []string{good}) }, "want digits only"},
		{"negative", func() error { return r.AddDefinitions("-1", []string{good}) }, "want digits only"},
		{"21 digits", func() error { return r.AddDefinitions("123456789012345678901", []string{good}) }, "want 1 to 20 digits"},
		{"no files", func() error { return r.AddDefinitions("6", nil) }, "at least one file"},
		{"missing file", func() error { return r.AddDefinitions("6", []string{filepath.Join(src, "nope.hdb")}) }, "nope.hdb"},
		{"directory", func() error { return r.AddDefinitions("6", []string{filepath.Join(src, "sub")}) }, "not a regular file"},
		{"dot file", func() error { return r.AddDefinitions("6", []string{dot}) }, "starts with a dot"},
		{"space", func() error { return r.AddDefinitions("6", []string{space}) }, "not allowed"},
		{"duplicate name", func() error { return r.AddDefinitions("6", []string{good, dup}) }, "already in the release"},
		{"slash in name", func() error { return r.AddDefinitionsData("6", map[string][]byte{"a/b.hdb": nil}) }, "path separator"},
		{"dot-dot name", func() error { return r.AddDefinitionsData("6", map[string][]byte{"..": nil}) }, "starts with a dot"},
		{"backslash", func() error { return r.AddDefinitionsData("6", map[string][]byte{`a\b`: nil}) }, "path separator"},
		{"empty data set", func() error { return r.AddDefinitionsData("6", map[string][]byte{}) }, "at least one file"},
		{"long name", func() error { return r.AddDefinitionsData("6", map[string][]byte{strings.Repeat("a", 101): nil}) }, "longer than 100"},
		{"old version", func() error { return r.AddDefinitions("4", []string{good}) }, "not newer than 5"},
		{"signatures refused", func() error { return r.AddDefinitions("6", []string{good, refused}) }, "the signatures do not load, nothing staged: loading signatures from definitions 6: daily.ndb:1: "},
		{"no database file", func() error { return r.AddDefinitions("6", []string{noDatabase}) }, "definitions 6: no database file"},
		{"no v", func() error { return r.AddRelease("1.2.3", "linux", "amd64", bin) }, "no leading v"},
		{"two numbers", func() error { return r.AddRelease("v1.2", "linux", "amd64", bin) }, "three numbers"},
		{"build metadata", func() error { return r.AddRelease("v1.2.3+b1", "linux", "amd64", bin) }, "build metadata"},
		{"leading zero", func() error { return r.AddRelease("v01.2.3", "linux", "amd64", bin) }, "bad number"},
		{"slash in version", func() error { return r.AddRelease("v1.2.3-a/b", "linux", "amd64", bin) }, "pre-release"},
		{"windows", func() error { return r.AddRelease("v1.2.3", "windows", "amd64", bin) }, `os "windows"`},
		{"386", func() error { return r.AddRelease("v1.2.3", "linux", "386", bin) }, `arch "386"`},
		{"missing binary", func() error { return r.AddRelease("v1.2.3", "linux", "amd64", filepath.Join(src, "nope")) }, "nope"},
		{"empty binary", func() error { return r.AddRelease("v1.2.3", "linux", "amd64", empty) }, "empty file"},
		{"binary is a directory", func() error { return r.AddRelease("v1.2.3", "linux", "amd64", src) }, "not a regular file"},
		{"republish release", func() error { return r.AddRelease("v1.0.0", "linux", "amd64", bin) }, "already published"},
		{"zero publish expiry", func() error { return r.Publish(PublishOptions{TimestampExpires: -time.Hour}) }, "want at least 1s"},
		{"bad refresh expiry", func() error { return r.RefreshTimestamp(time.Millisecond) }, "want at least 1s"},
		{"bad rotate", func() error { return r.SignRoot(RootOptions{Rotate: []string{"root"}}) }, "cannot rotate"},
		{"no root keys", func() error { return r.SignRoot(RootOptions{KeysDir: filepath.Join(src, "none")}) }, "does not exist"},
		{"wrong root keys", func() error { return r.SignRoot(RootOptions{KeysDir: src}) }, "holds 0 key(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tree(t, r.Dir())
			err := tt.fn()
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error containing %q", err, tt.msg)
			}
			sameTree(t, before, tree(t, r.Dir()))
		})
	}
	if _, err := Init(filepath.Join(t.TempDir(), "x"), Options{Expiries: Expiries{Timestamp: -time.Hour}}); err == nil {
		t.Error("init accepted a negative expiry")
	}
	if _, err := Open(src); err == nil || !strings.Contains(err.Error(), "not a repository") {
		t.Errorf("open of a non-repository: %v", err)
	}
}

// TestStagedTamperingRefused: content changed in staged/ after it was
// added is not published.
func TestStagedTamperingRefused(t *testing.T) {
	r := newRepo(t)
	if err := r.AddDefinitionsData("1", defs1); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(r.Dir(), "staged", "targets", "definitions", "1.tar")
	if err := os.WriteFile(p, []byte("evil"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := tree(t, r.PublicDir())
	if err := r.Publish(PublishOptions{}); err == nil || !strings.Contains(err.Error(), "changed since it was added") {
		t.Fatalf("publish: %v", err)
	}
	sameTree(t, before, tree(t, r.PublicDir()))
}

func TestRefreshTimestamp(t *testing.T) {
	r := newRepo(t)
	if err := r.AddDefinitionsData("1", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	up := mustClient(t, r, cache)
	ts0 := up.GetTrustedMetadataSet().Timestamp.Signed

	others := tree(t, r.PublicDir())
	delete(others, filepath.Join(r.PublicDir(), "metadata", "timestamp.json"))
	if err := r.RefreshTimestamp(48 * time.Hour); err != nil {
		t.Fatal(err)
	}
	after := tree(t, r.PublicDir())
	delete(after, filepath.Join(r.PublicDir(), "metadata", "timestamp.json"))
	sameTree(t, others, after) // only timestamp.json changed

	up = mustClient(t, r, cache) // a client that had the old timestamp
	ts1 := up.GetTrustedMetadataSet().Timestamp.Signed
	if ts1.Version != ts0.Version+1 {
		t.Fatalf("timestamp version %d -> %d", ts0.Version, ts1.Version)
	}
	if d := time.Until(ts1.Expires); d < 47*time.Hour || d > 48*time.Hour {
		t.Fatalf("timestamp expires in %v, want 48h", d)
	}
	if ts1.Meta["snapshot.json"].Version != ts0.Meta["snapshot.json"].Version {
		t.Fatal("refresh changed the snapshot")
	}
	if p, _, ok := repo.LatestDefinitions(up.GetTopLevelTargets()); !ok || p != "definitions/1.tar" {
		t.Fatal("targets lost")
	}
}

// TestExpiredTimestamp builds an expired timestamp with a clock in the
// past, sees the client refuse it, and re-signs it.
func TestExpiredTimestamp(t *testing.T) {
	r := newRepo(t)
	if err := r.AddDefinitionsData("1", defs1); err != nil {
		t.Fatal(err)
	}
	r.SetClock(func() time.Time { return time.Now().Add(-48 * time.Hour) })
	if err := r.Publish(PublishOptions{TimestampExpires: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, r, ""); !errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		t.Fatalf("client accepted an expired timestamp: %v", err)
	}
	r.SetClock(nil)
	if err := r.RefreshTimestamp(0); err != nil {
		t.Fatal(err)
	}
	up := mustClient(t, r, "")
	if _, _, ok := repo.LatestDefinitions(up.GetTopLevelTargets()); !ok {
		t.Fatal("no definitions after refresh")
	}

	// An expired snapshot cannot be saved by a new timestamp: publish.
	r.SetClock(func() time.Time { return time.Now().Add(-200 * time.Hour) })
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	r.SetClock(nil)
	if err := r.RefreshTimestamp(0); err == nil || !strings.Contains(err.Error(), "run publish") {
		t.Fatalf("refresh over an expired snapshot: %v", err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	mustClient(t, r, "")
}

// TestPublishOrder checks, after every file Publish writes, that go-tuf's
// client verifies public/ as either the old or the new state, and that
// the writes come in the order content, targets, snapshot, timestamp.
func TestPublishOrder(t *testing.T) {
	r := newRepo(t)
	if err := r.AddDefinitionsData("1", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := r.AddDefinitionsData("2", map[string][]byte{"main.hdb": []byte("new")}); err != nil {
		t.Fatal(err)
	}
	for _, pl := range []string{"linux-amd64", "linux-arm64", "darwin-arm64"} {
		goos, goarch, _ := strings.Cut(pl, "-")
		if err := r.AddRelease("v2.0.0", goos, goarch, writeFile(t, src, pl, []byte(pl))); err != nil {
			t.Fatal(err)
		}
	}
	oldSet := []string{"definitions/1.tar"}
	newSet := []string{"definitions/1.tar", "definitions/2.tar", "definitions/deltas/1-2.delta", "vigil/v2.0.0/darwin-arm64/vigil", "vigil/v2.0.0/linux-amd64/vigil", "vigil/v2.0.0/linux-arm64/vigil"}
	cache := t.TempDir() // a client that follows every step
	var writes []string
	r.afterWrite = func(path string) {
		rel, _ := filepath.Rel(r.PublicDir(), path)
		writes = append(writes, filepath.ToSlash(rel))
		for _, c := range []string{"", cache} {
			up, err := client(t, r, c)
			if err != nil {
				t.Errorf("after writing %s: client refresh: %v", rel, err)
				continue
			}
			var got []string
			for p := range up.GetTopLevelTargets() {
				got = append(got, p)
			}
			slices.Sort(got)
			if !slices.Equal(got, oldSet) && !slices.Equal(got, newSet) {
				t.Errorf("after writing %s: client sees %v", rel, got)
			}
			if slices.Equal(got, newSet) {
				for _, p := range got {
					download(t, up, p) // every target of the new state is there
				}
			}
		}
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	r.afterWrite = nil
	if len(writes) != 8 {
		t.Fatalf("writes %v", writes)
	}
	for i, w := range writes[:5] {
		if !strings.HasPrefix(w, "targets/") {
			t.Errorf("write %d is %s, want target content first", i, w)
		}
	}
	if want := []string{"metadata/3.targets.json", "metadata/3.snapshot.json", "metadata/timestamp.json"}; !slices.Equal(writes[5:], want) {
		t.Errorf("metadata writes %v, want %v", writes[5:], want)
	}
	up := mustClient(t, r, cache)
	if _, v, _ := repo.LatestDefinitions(up.GetTopLevelTargets()); v != "2" {
		t.Fatalf("latest definitions %q", v)
	}
	// The old state's files stay, for mirrors and agents mid-update.
	for _, name := range []string{"2.targets.json", "2.snapshot.json", "1.targets.json"} {
		if _, err := os.Stat(filepath.Join(r.PublicDir(), "metadata", name)); err != nil {
			t.Error(err)
		}
	}
}

// TestOtherKeys: a client pinned to one repository's root refuses
// another repository.
func TestOtherKeys(t *testing.T) {
	a, b := newRepo(t), newRepo(t)
	if _, err := clientAt(t, "file://"+b.PublicDir(), a.RootPath(), ""); !errors.Is(err, &metadata.ErrUnsignedMetadata{}) {
		t.Fatalf("client pinned to a accepted b: %v", err)
	}
	// b's timestamp copied into a is refused as well.
	ts, _ := os.ReadFile(filepath.Join(b.PublicDir(), "metadata", "timestamp.json"))
	os.WriteFile(filepath.Join(a.PublicDir(), "metadata", "timestamp.json"), ts, 0o644)
	if _, err := client(t, a, ""); err == nil {
		t.Fatal("client accepted a timestamp signed by other keys")
	}
	if _, err := Open(a.Dir()); err == nil {
		t.Fatal("Open accepted a timestamp signed by other keys")
	}
}

func TestSignRoot(t *testing.T) {
	rootDir := filepath.Join(t.TempDir(), "offline")
	r, err := Init(filepath.Join(t.TempDir(), "repo"), Options{RootKeysDir: rootDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir(), "keys", "root")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("keys/root exists with the root key elsewhere: %v", err)
	}
	if err := r.AddDefinitionsData("1", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	mustClient(t, r, cache)

	if err := r.SignRoot(RootOptions{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("sign root without the offline keys: %v", err)
	}
	if err := r.SignRoot(RootOptions{KeysDir: rootDir, Expires: 100 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	up := mustClient(t, r, cache)
	if v := up.GetTrustedMetadataSet().Root.Signed.Version; v != 2 {
		t.Fatalf("client root version %d, want 2", v)
	}

	// Rotate every online key; every intermediate state verifies for a
	// client still on root 2 and for a new one.
	oldTS, _ := os.ReadFile(filepath.Join(r.Dir(), "keys", "timestamp.key"))
	var writes []string
	r.afterWrite = func(path string) {
		writes = append(writes, filepath.Base(path))
		for _, c := range []string{"", cache} {
			if _, err := client(t, r, c); err != nil {
				t.Errorf("after writing %s: %v", filepath.Base(path), err)
			}
		}
	}
	if err := r.SignRoot(RootOptions{KeysDir: rootDir, Rotate: []string{"timestamp", "snapshot", "targets"}}); err != nil {
		t.Fatal(err)
	}
	r.afterWrite = nil
	if want := []string{"3.targets.json", "3.snapshot.json", "timestamp.json", "3.root.json"}; !slices.Equal(writes, want) {
		t.Errorf("writes %v, want %v", writes, want)
	}
	newTS, _ := os.ReadFile(filepath.Join(r.Dir(), "keys", "timestamp.key"))
	if bytes.Equal(oldTS, newTS) {
		t.Fatal("timestamp key not replaced")
	}
	if m, _ := filepath.Glob(filepath.Join(r.Dir(), "keys", "*.next")); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
	// The new keys work; the old ones no longer verify.
	if err := r.AddDefinitionsData("2", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.RefreshTimestamp(0); err != nil {
		t.Fatal(err)
	}
	up = mustClient(t, r, cache)
	if v := up.GetTrustedMetadataSet().Root.Signed.Version; v != 3 {
		t.Fatalf("client root version %d, want 3", v)
	}
	if _, v, _ := repo.LatestDefinitions(up.GetTopLevelTargets()); v != "2" {
		t.Fatalf("latest %q", v)
	}
	if err := os.WriteFile(filepath.Join(r.Dir(), "keys", "timestamp.key"), oldTS, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.RefreshTimestamp(0); err == nil || !strings.Contains(err.Error(), "is not a timestamp key of root version 3") {
		t.Fatalf("refresh with a retired key: %v", err)
	}
}

func TestKeyFileTooOpen(t *testing.T) {
	r := newRepo(t)
	p := filepath.Join(r.Dir(), "keys", "timestamp.key")
	os.Chmod(p, 0o644)
	if err := r.RefreshTimestamp(0); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("refresh with a world-readable key: %v", err)
	}
}

// TestConcurrent runs publishes and timestamp refreshes at once (the
// directory lock serialises them) and checks the result.
func TestConcurrent(t *testing.T) {
	r := newRepo(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	bins := map[int]string{}
	for i := 1; i <= 5; i++ {
		bins[i] = writeFile(t, t.TempDir(), "vigil", []byte{byte(i)})
	}
	for i := 1; i <= 5; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- r.RefreshTimestamp(0)
		}()
		go func() {
			defer wg.Done()
			r2, err := Open(r.Dir())
			if err == nil {
				err = r2.AddRelease(fmt.Sprintf("v1.0.%d", i), "linux", "amd64", bins[i])
			}
			if err == nil {
				err = r2.Publish(PublishOptions{})
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	up := mustClient(t, r, "")
	if _, v, ok := repo.LatestRelease(up.GetTopLevelTargets(), "linux", "amd64"); !ok || v != "v1.0.5" {
		t.Fatalf("latest release %q", v)
	}
	if n := up.GetTrustedMetadataSet().Timestamp.Signed.Version; n < 6 {
		t.Fatalf("timestamp version %d", n)
	}
}

func TestBundleIsDeterministic(t *testing.T) {
	a, err := repo.MakeBundle(defs1)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	var paths []string
	for name, data := range defs1 {
		p := writeFile(t, src, name, data)
		os.Chtimes(p, time.Now(), time.Now().Add(-time.Hour))
		os.Chmod(p, 0o600)
		paths = append(paths, p)
	}
	r1, r2 := newRepo(t), newRepo(t)
	if err := r1.AddDefinitionsData("7", defs1); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(paths)
	if err := r2.AddDefinitions("7", paths); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(filepath.Join(r1.Dir(), "staged", "targets", "definitions", "7.tar"))
	b2, _ := os.ReadFile(filepath.Join(r2.Dir(), "staged", "targets", "definitions", "7.tar"))
	if !bytes.Equal(a, b1) || !bytes.Equal(a, b2) {
		t.Fatal("the same files made different bundles")
	}
	// repo.ExtractBundle accepts what repo.MakeBundle makes, at the limits too.
	many := map[string][]byte{}
	for i := range repo.MaxBundleFiles {
		many[fmt.Sprintf("f%04d.hdb", i)] = []byte{byte(i)}
	}
	many[strings.Repeat("n", repo.MaxBundleNameLen)] = nil
	delete(many, "f0000.hdb")
	b, err := repo.MakeBundle(many)
	if err != nil {
		t.Fatal(err)
	}
	names, err := repo.ExtractBundle(bytes.NewReader(b), t.TempDir())
	if err != nil || len(names) != repo.MaxBundleFiles {
		t.Fatalf("%d names, %v", len(names), err)
	}
	many["f0000.hdb"] = nil
	if _, err := repo.MakeBundle(many); err == nil {
		t.Fatal("MakeBundle accepted too many files")
	}
}
