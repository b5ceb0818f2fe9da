package publish

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/repo"
)

var (
	vendorOnce sync.Once
	vendorKey  *rsa.PrivateKey
)

// testVendorKey is a 2048-bit key that signs the tests' containers.
func testVendorKey(t *testing.T) *rsa.PrivateKey {
	vendorOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		vendorKey = k
	})
	return vendorKey
}

func container(t *testing.T, dir, name string, version uint32, key *rsa.PrivateKey, files ...cvd.File) string {
	t.Helper()
	kind, _ := cvd.KindOf(name)
	b, err := cvd.Write(cvd.Build{Kind: kind, Database: cvd.DatabaseName(name), Version: version, FLevel: 90, Builder: "tests",
		Time: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC), Files: files, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, b)
}

func TestAddDefinitionsFromContainers(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	key := testVendorKey(t)
	src := t.TempDir()
	main := container(t, src, "main.cvd", 62, key, cvd.File{Name: "main.hdb", Data: defs1["main.hdb"]})
	daily := container(t, src, "daily.cld", 27480, key, cvd.File{Name: "daily.ndb", Data: defs1["daily.ndb"]}, cvd.File{Name: "daily.cfg", Data: []byte("DOCUMENT:0x1:17:0\n")})
	extra := writeFile(t, src, "local.ndb", []byte("Local.Body:0:*:41424344\n"))
	keys := cvd.KeysOf(&key.PublicKey)
	keep := func(n string) bool { return strings.HasSuffix(n, ".hdb") || strings.HasSuffix(n, ".ndb") }

	// ClamAV's keys refuse the tests' containers: nothing staged.
	before := tree(t, r.Dir())
	if _, err := r.AddDefinitionsFrom("2026120201", []string{main, daily}, DefinitionsOptions{Keep: keep}); err == nil || !strings.Contains(err.Error(), "digital signature does not match") {
		t.Fatalf("ClamAV's keys: %v", err)
	}
	sameTree(t, before, tree(t, r.Dir()))

	a, err := r.AddDefinitionsFrom("2026120201", []string{main, daily, extra}, DefinitionsOptions{Keys: &keys, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Files, []string{"daily.ndb", "local.ndb", "main.hdb"}) {
		t.Errorf("files %v", a.Files)
	}
	if !slices.Equal(a.Left, []string{"main.cvd: COPYING", "main.cvd: main.info", "daily.cld: COPYING", "daily.cld: daily.info", "daily.cld: daily.cfg"}) {
		t.Errorf("left %v", a.Left)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}

	// A client sees the release, its files and its containers' headers.
	srv := httptest.NewServer(http.FileServer(http.Dir(r.PublicDir())))
	defer srv.Close()
	up, err := clientAt(t, srv.URL, r.RootPath(), "")
	if err != nil {
		t.Fatal(err)
	}
	targets := up.GetTopLevelTargets()
	c, err := repo.ParseCustom(*targets[a.Path].Custom)
	if err != nil {
		t.Fatal(err)
	}
	built := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	want := []repo.Container{{Name: "main.cvd", Version: 62, FLevel: 90, Signatures: 1, Built: built}, {Name: "daily.cld", Version: 27480, FLevel: 90, Signatures: 2, Built: built}}
	if len(c.Containers) != 2 || c.Containers[0] != want[0] || c.Containers[1] != want[1] {
		t.Errorf("containers %+v, want %+v", c.Containers, want)
	}
	out := t.TempDir()
	names, err := repo.ExtractBundle(bytes.NewReader(download(t, up, a.Path)), out)
	if err != nil || !slices.Equal(names, a.Files) {
		t.Fatalf("bundle %v %v", names, err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "main.hdb")); !bytes.Equal(got, defs1["main.hdb"]) {
		t.Errorf("main.hdb %q", got)
	}
	s, err := r.Status()
	if err != nil || len(s.Definitions) != 1 || len(s.Definitions[0].Custom.Containers) != 2 {
		t.Fatalf("status %+v %v", s, err)
	}
}

func TestBadContainerStagesNothing(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	key := testVendorKey(t)
	keys := cvd.KeysOf(&key.PublicKey)
	src := t.TempDir()
	good := container(t, src, "main.cvd", 1, key, cvd.File{Name: "main.hdb", Data: defs1["main.hdb"]})
	b, _ := os.ReadFile(good)
	b[len(b)-10] ^= 1
	corrupt := writeFile(t, src, "daily.cvd", b)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged := container(t, filepath.Join(src), "bytecode.cvd", 1, otherKey, cvd.File{Name: "bytecode.hdb", Data: defs1["main.hdb"]})
	dup := container(t, src, "dup.cud", 1, nil, cvd.File{Name: "main.hdb", Data: defs1["main.hdb"]})
	empty := container(t, src, "empty.cud", 1, nil, cvd.File{Name: "empty.cfg", Data: []byte("x\n")})
	keep := func(n string) bool { return strings.HasSuffix(n, ".hdb") }
	before := tree(t, r.Dir())
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{good, corrupt}, "MD5"},
		{[]string{good, forged}, "digital signature does not match"},
		{[]string{good, dup}, "already in the release"},
		{[]string{empty}, "no signature file"},
	} {
		if _, err := r.AddDefinitionsFrom("7", tc.paths, DefinitionsOptions{Keys: &keys, Keep: keep}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.paths, err, tc.want)
		}
		sameTree(t, before, tree(t, r.Dir()))
	}
}
