package publish

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// sigFiles is a definitions release of three signature files of n lines
// each, and evolve its next release: a few lines of each file added,
// removed and changed.
func sigFiles(rng *rand.Rand, n int) map[string][]byte {
	files := map[string][]byte{}
	for _, name := range []string{"daily.hdb", "daily.ndb", "main.hsb"} {
		var b bytes.Buffer
		for range n {
			b.WriteString(sigLine(rng, name))
		}
		files[name] = b.Bytes()
	}
	return files
}

func sigLine(rng *rand.Rand, file string) string {
	id := rng.Uint64()
	if strings.HasSuffix(file, ".ndb") {
		return fmt.Sprintf("Win.Trojan.Agent-%d-0:0:*:%016x%08x\n", id%1e7, id, rng.Uint32())
	}
	return fmt.Sprintf("%016x%016x:%d:Win.Trojan.Agent-%d-0\n", id, rng.Uint64(), rng.IntN(1e6), id%1e7)
}

func evolve(rng *rand.Rand, files map[string][]byte) map[string][]byte {
	next := map[string][]byte{}
	for name, data := range files {
		lines := strings.SplitAfter(string(data), "\n")
		lines = lines[:len(lines)-1]
		for range 5 {
			k := rng.IntN(len(lines))
			lines[k] = sigLine(rng, name)
			lines = slices.Delete(lines, k/2, k/2+1)
			lines = slices.Insert(lines, rng.IntN(len(lines)), sigLine(rng, name))
		}
		next[name] = []byte(strings.Join(lines, ""))
	}
	return next
}

// checkDeltas checks, as a client following the rule of
// docs/repository.md, that the signed targets hold exactly the deltas
// to version from bases, and that each, applied to its base's files,
// yields exactly the signed full release.
func checkDeltas(t *testing.T, up *updater.Updater, version string, bases []string) {
	t.Helper()
	targets := up.GetTopLevelTargets()
	var got []string
	for _, d := range repo.Deltas(targets) {
		if d.Version != version {
			t.Errorf("delta %s: to %s, want only deltas to the latest release %s", d.Path, d.Version, version)
			continue
		}
		got = append(got, d.Base)
		if d.Path != repo.DeltaPath(d.Base, d.Version) {
			t.Errorf("delta %s: path, want %s", d.Path, repo.DeltaPath(d.Base, d.Version))
		}
		baseFiles, err := repo.BundleFiles(download(t, up, repo.DefinitionsPath(d.Base)))
		if err != nil {
			t.Fatal(err)
		}
		data := download(t, up, d.Path)
		if int64(len(data)) != d.Length {
			t.Errorf("delta %s: %d bytes, signed length %d", d.Path, len(data), d.Length)
		}
		files, err := delta.Apply(data, baseFiles)
		if err != nil {
			t.Fatalf("delta %s: %v", d.Path, err)
		}
		bundle, err := repo.MakeBundle(files)
		if err != nil {
			t.Fatal(err)
		}
		full := targets[repo.DefinitionsPath(version)]
		sum := sha256.Sum256(bundle)
		if int64(len(bundle)) != full.Length || !bytes.Equal(sum[:], full.Hashes["sha256"]) {
			t.Errorf("delta %s applied to %s: not the signed %s", d.Path, d.Base, repo.DefinitionsPath(version))
		}
		if d.Length >= full.Length {
			t.Errorf("delta %s: %d bytes, not smaller than the full release (%d)", d.Path, d.Length, full.Length)
		}
	}
	if !slices.Equal(got, bases) {
		t.Errorf("deltas to %s from %v, want from %v", version, got, bases)
	}
}

func TestPublishDeltas(t *testing.T) {
	k := 3
	r, err := Init(filepath.Join(t.TempDir(), "repo"), Options{DeltaReleases: &k})
	if err != nil {
		t.Fatal(err)
	}
	if r.DeltaReleases() != 3 {
		t.Fatalf("DeltaReleases = %d", r.DeltaReleases())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	files := sigFiles(rng, 2000)
	cache := t.TempDir()
	var publicDeltas []string // every delta file ever published
	publishDefs := func(version string, opts PublishOptions) *Published {
		t.Helper()
		files = evolve(rng, files)
		if err := r.AddDefinitionsData(version, files); err != nil {
			t.Fatal(err)
		}
		res, err := r.PublishReport(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range res.Deltas {
			publicDeltas = append(publicDeltas, d.Path)
		}
		return res
	}

	res := publishDefs("1", PublishOptions{})
	if len(res.Deltas)+len(res.Skipped)+len(res.Dropped) != 0 || !slices.Equal(res.Targets, []string{"definitions/1.tar"}) {
		t.Fatalf("first release: %+v", res)
	}
	checkDeltas(t, mustClient(t, r, cache), "1", nil)

	res = publishDefs("2", PublishOptions{})
	checkDeltas(t, mustClient(t, r, cache), "2", []string{"1"})
	if len(res.Deltas) != 1 || res.Deltas[0].Base != "1" || res.Deltas[0].FullLength == 0 || res.Deltas[0].Length*10 > res.Deltas[0].FullLength {
		t.Errorf("publish 2: %+v", res)
	}
	publishDefs("3", PublishOptions{})
	checkDeltas(t, mustClient(t, r, cache), "3", []string{"2", "1"})
	publishDefs("4", PublishOptions{})
	publishDefs("5", PublishOptions{})
	res = publishDefs("7", PublishOptions{})
	// K = 3: from 5, 4 and 3; the deltas to 5 are dropped.
	checkDeltas(t, mustClient(t, r, cache), "7", []string{"5", "4", "3"})
	if want := []string{"definitions/deltas/2-5.delta", "definitions/deltas/3-5.delta", "definitions/deltas/4-5.delta"}; !slices.Equal(res.Dropped, want) {
		t.Errorf("dropped %v, want %v", res.Dropped, want)
	}

	// A Vigil release changes no delta.
	bin := writeFile(t, t.TempDir(), "vigil", []byte("\x7fELF pretend"))
	if err := r.AddRelease("v1.0.0", "linux", "amd64", bin); err != nil {
		t.Fatal(err)
	}
	res, err = r.PublishReport(PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deltas)+len(res.Skipped)+len(res.Dropped) != 0 {
		t.Errorf("publishing a Vigil release: %+v", res)
	}
	up := mustClient(t, r, cache)
	checkDeltas(t, up, "7", []string{"5", "4", "3"})
	if got := download(t, up, "vigil/v1.0.0/linux-amd64/vigil"); string(got) != "\x7fELF pretend" {
		t.Errorf("release %q", got)
	}

	// The publish flag overrides config.json; 0 makes none.
	one, zero := 1, 0
	publishDefs("8", PublishOptions{DeltaReleases: &one})
	checkDeltas(t, mustClient(t, r, cache), "8", []string{"7"})
	publishDefs("9", PublishOptions{DeltaReleases: &zero})
	checkDeltas(t, mustClient(t, r, cache), "9", nil)

	// Status lists the deltas; a superseded delta's file stays for
	// clients holding older metadata.
	publishDefs("10", PublishOptions{})
	s, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range s.Deltas {
		got = append(got, d.Custom.Base+"-"+d.Custom.Version)
	}
	if !slices.Equal(got, []string{"9-10", "8-10", "7-10"}) || len(s.Releases) != 1 || len(s.Definitions) != 9 {
		t.Errorf("status: deltas %v, %d releases, %d definitions", got, len(s.Releases), len(s.Definitions))
	}
	for _, p := range publicDeltas {
		dir, base := filepath.Split(p)
		m, _ := filepath.Glob(filepath.Join(r.PublicDir(), "targets", dir, "*."+base))
		if len(m) != 1 {
			t.Errorf("%s: public files %v", p, m)
		}
	}
}

// TestPublishDeltasSkipped: a delta that Make refuses (here, a body that
// compresses beyond what Apply accepts) is skipped, and the release is
// published whole.
func TestPublishDeltasSkipped(t *testing.T) {
	r := newRepo(t)
	if err := r.AddDefinitionsData("1", defs1); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("2", map[string][]byte{"zeros.hdb": make([]byte, 4<<20)}); err != nil {
		t.Fatal(err)
	}
	res, err := r.PublishReport(PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deltas) != 0 || len(res.Skipped) != 1 || res.Skipped[0].Base != "1" || !strings.Contains(res.Skipped[0].Reason, "publish the full release") {
		t.Fatalf("%+v", res)
	}
	up := mustClient(t, r, "")
	checkDeltas(t, up, "2", nil)
	if _, v, _ := repo.LatestDefinitions(up.GetTopLevelTargets()); v != "2" {
		t.Fatalf("latest %s", v)
	}
}

// TestPublishDeltasRefused: a bad delta count, in a publish or in
// config.json, and a base bundle that does not match its signed
// metadata are refused, and nothing changes.
func TestPublishDeltasRefused(t *testing.T) {
	r := newRepo(t)
	if r.DeltaReleases() != DefaultDeltaReleases {
		t.Fatalf("default delta releases %d", r.DeltaReleases())
	}
	rng := rand.New(rand.NewPCG(3, 4))
	files := sigFiles(rng, 100)
	if err := r.AddDefinitionsData("1", files); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("2", evolve(rng, files)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{-1, MaxDeltaReleases + 1} {
		before := tree(t, r.Dir())
		_, err := r.PublishReport(PublishOptions{DeltaReleases: &k})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("delta releases %d: want 0 (no deltas) to %d", k, MaxDeltaReleases)) {
			t.Errorf("publish with %d delta releases: %v", k, err)
		}
		sameTree(t, before, tree(t, r.Dir()))
		if _, err := Init(filepath.Join(t.TempDir(), "x"), Options{DeltaReleases: &k}); err == nil {
			t.Errorf("init with %d delta releases", k)
		}
	}

	// config.json's delta_releases is checked when the repository opens.
	cfgPath := filepath.Join(r.Dir(), "config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cfg, []byte(`"delta_releases": 30`)) {
		t.Fatalf("config.json: %s", cfg)
	}
	bad := bytes.Replace(cfg, []byte(`"delta_releases": 30`), []byte(`"delta_releases": 500`), 1)
	if err := os.WriteFile(cfgPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(r.Dir()); err == nil || !strings.Contains(err.Error(), "delta_releases: delta releases 500") {
		t.Errorf("open with delta_releases 500: %v", err)
	}
	// A repository made before deltas (no delta_releases) takes the default.
	old := bytes.Replace(cfg, []byte(`,
  "delta_releases": 30`), nil, 1)
	if err := os.WriteFile(cfgPath, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := Open(r.Dir()); err != nil || o.DeltaReleases() != DefaultDeltaReleases {
		t.Fatalf("open without delta_releases: %v (%s)", err, old)
	}

	// The base's public bundle no longer matches its signed metadata.
	m, _ := filepath.Glob(filepath.Join(r.PublicDir(), "targets", "definitions", "*.1.tar"))
	if len(m) != 1 {
		t.Fatalf("public bundle of 1: %v", m)
	}
	b, _ := os.ReadFile(m[0])
	b[600] ^= 1
	if err := os.WriteFile(m[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, r.Dir())
	if _, err := r.PublishReport(PublishOptions{}); err == nil || !strings.Contains(err.Error(), "delta from 1 to 2") || !strings.Contains(err.Error(), "does not match its signed metadata") {
		t.Errorf("publish over a corrupt base: %v", err)
	}
	sameTree(t, before, tree(t, r.Dir()))
}

// BenchmarkUpdateMetadata measures the metadata an agent downloads at
// each update besides the delta: timestamp.json, the snapshot and the
// targets metadata, in a repository of daily definitions releases
// (loaded and counted, as add-definitions stages them) with the default
// 30 deltas, after a month and after a year. Run with
//
//	go test ./internal/publish -run '^$' -bench UpdateMetadata -benchtime 1x
func BenchmarkUpdateMetadata(b *testing.B) {
	for _, releases := range []int{31, 365} {
		b.Run(fmt.Sprintf("releases=%d", releases), func(b *testing.B) {
			for b.Loop() {
				r, err := Init(filepath.Join(b.TempDir(), "repo"), Options{})
				if err != nil {
					b.Fatal(err)
				}
				src := b.TempDir()
				rng := rand.New(rand.NewPCG(5, 6))
				files := sigFiles(rng, 20)
				delete(files, "daily.ndb")
				for v := range releases {
					files = evolve(rng, files)
					var paths []string
					for name, data := range files {
						paths = append(paths, writeFile(b, src, name, data))
					}
					if err := r.AddDefinitions(fmt.Sprint(2026010101+v), paths); err != nil {
						b.Fatal(err)
					}
					if err := r.Publish(PublishOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				s, err := r.Status()
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Deltas) != min(releases-1, DefaultDeltaReleases) {
					b.Fatalf("%d deltas", len(s.Deltas))
				}
				var n int64
				for _, name := range []string{"timestamp.json", fmt.Sprintf("%d.snapshot.json", s.Snapshot.Version), fmt.Sprintf("%d.targets.json", s.Targets.Version)} {
					st, err := os.Stat(filepath.Join(r.PublicDir(), "metadata", name))
					if err != nil {
						b.Fatal(err)
					}
					n += st.Size()
				}
				b.ReportMetric(float64(n), "metadata-B")
			}
		})
	}
}
