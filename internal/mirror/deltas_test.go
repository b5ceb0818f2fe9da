package mirror

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// deltaVendor is a vendor repository written with go-tuf's metadata API,
// so that a test can sign any target it likes (a delta that does not
// yield its release, garbage), served live at repoPath under top.
type deltaVendor struct {
	t       *testing.T
	top     string // what the upstream serves
	pub     string // the public directory
	signer  signature.Signer
	root    []byte
	version int64
	targets map[string]deltaTarget
}

type deltaTarget struct {
	data   []byte
	custom string
}

func newDeltaVendor(t *testing.T) *deltaVendor {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	v := &deltaVendor{t: t, top: t.TempDir(), signer: signer, targets: map[string]deltaTarget{}}
	v.pub = filepath.Join(v.top, filepath.FromSlash(repoPath))
	root := metadata.Root(v.expiry())
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
	}
	v.root = v.sign(root)
	v.write(path.Join(metaDir, "1.root.json"), v.root)
	return v
}

func (v *deltaVendor) expiry() time.Time {
	return time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
}

func (v *deltaVendor) sign(m interface {
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(bool) ([]byte, error)
}) []byte {
	v.t.Helper()
	if _, err := m.Sign(v.signer); err != nil {
		v.t.Fatal(err)
	}
	b, err := m.ToBytes(true)
	if err != nil {
		v.t.Fatal(err)
	}
	return b
}

func (v *deltaVendor) write(rel string, b []byte) {
	v.t.Helper()
	p := filepath.Join(v.pub, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		v.t.Fatal(err)
	}
}

// release adds definitions release version with files and returns its
// bundle.
func (v *deltaVendor) release(version string, files map[string][]byte) []byte {
	v.t.Helper()
	b, err := repo.MakeBundle(files)
	if err != nil {
		v.t.Fatal(err)
	}
	v.targets[repo.DefinitionsPath(version)] = deltaTarget{data: b, custom: fmt.Sprintf(`{"kind":"definitions","version":%q}`, version)}
	return b
}

// delta adds data, signed, as the delta from base to version.
func (v *deltaVendor) delta(base, version string, data []byte) {
	v.targets[repo.DeltaPath(base, version)] = deltaTarget{data: data, custom: fmt.Sprintf(`{"kind":"delta","version":%q,"base":%q}`, version, base)}
}

// makeDelta returns the delta from files a to files b.
func (v *deltaVendor) makeDelta(a, b map[string][]byte) []byte {
	v.t.Helper()
	d, err := delta.Make(a, b)
	if err != nil {
		v.t.Fatal(err)
	}
	return d
}

// publish signs and writes the next state (consistent snapshots).
func (v *deltaVendor) publish() {
	v.t.Helper()
	v.version++
	targets := metadata.Targets(v.expiry())
	targets.Signed.Version = v.version
	for p, tg := range v.targets {
		sum := sha256.Sum256(tg.data)
		custom := json.RawMessage(tg.custom)
		targets.Signed.Targets[p] = &metadata.TargetFiles{Length: int64(len(tg.data)), Hashes: metadata.Hashes{"sha256": sum[:]}, Path: p, Custom: &custom}
		v.write(path.Join(targetsDir, path.Dir(p), hex.EncodeToString(sum[:])+"."+path.Base(p)), tg.data)
	}
	tb := v.sign(targets)
	snap := metadata.Snapshot(v.expiry())
	snap.Signed.Version = v.version
	th := sha256.Sum256(tb)
	snap.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: v.version, Length: int64(len(tb)), Hashes: metadata.Hashes{"sha256": th[:]}}
	sb := v.sign(snap)
	ts := metadata.Timestamp(v.expiry())
	ts.Signed.Version = v.version
	sh := sha256.Sum256(sb)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: v.version, Length: int64(len(sb)), Hashes: metadata.Hashes{"sha256": sh[:]}}
	v.write(path.Join(metaDir, fmt.Sprintf("%d.targets.json", v.version)), tb)
	v.write(path.Join(metaDir, fmt.Sprintf("%d.snapshot.json", v.version)), sb)
	v.write(path.Join(metaDir, "timestamp.json"), v.sign(ts))
}

// localTarget returns the content of target p in the mirror's directory.
func localTarget(t *testing.T, dir, p string, data []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(data)
	b, err := os.ReadFile(filepath.Join(dir, targetsDir, filepath.FromSlash(path.Dir(p)), hex.EncodeToString(sum[:])+"."+path.Base(p)))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return b
}

// nextFiles returns release files: base's with a changed signature line
// and a few bytes of the large file changed.
func nextFiles(base map[string][]byte, version string) map[string][]byte {
	out := maps.Clone(base)
	out["main.hdb"] = append(bytes.Clone(base["main.hdb"]), fmt.Appendf(nil, "e4968ef99266df7c9a1f0637d2389dab:68:Test-%s\n", version)...)
	blob := bytes.Clone(base["bulk.ldb"])
	for i := 1000 + len(out["main.hdb"]); i < len(blob); i += 50000 {
		blob[i] ^= 0x5a
	}
	out["bulk.ldb"] = blob
	return out
}

// TestDeltasBuilt: deltas are mirrored like every target; a new release
// whose base the mirror holds is built from the base and a chain of
// deltas, verified against its signed target and served byte for byte as
// the vendor signed it, without being downloaded; a mirror that holds no
// base downloads everything.
func TestDeltasBuilt(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newDeltaVendor(t)
			f1 := defFiles("1", 300<<10)
			v.release("1", f1)
			v.publish()
			w := newWorld(t, v.top)
			dir := filepath.Join(t.TempDir(), "mirror")
			sum := syncOK(t, w.config(proto, v.root, dir, &testenv.Buffer{}))
			if sum.Fetched.TargetFiles != 1 || sum.Fetched.Built != 0 {
				t.Fatalf("first sync: %+v", sum.Fetched)
			}

			// Release 2 and the delta 1-2: 2 is built.
			f2 := nextFiles(f1, "2")
			b2 := v.release("2", f2)
			d12 := v.makeDelta(f1, f2)
			v.delta("1", "2", d12)
			v.publish()
			out := &testenv.Buffer{}
			sum = syncOK(t, w.config(proto, v.root, dir, out))
			if sum.Fetched.Built != 1 || sum.Fetched.BuiltBytes != int64(len(b2)) || sum.Fetched.TargetFiles != 1 || sum.Fetched.TargetBytes != int64(len(d12)) {
				t.Fatalf("release 2: %+v, want 1 built (%d bytes) and only the delta (%d bytes) fetched\n%s", sum.Fetched, len(b2), len(d12), out)
			}
			if len(sum.Warnings) != 0 {
				t.Errorf("warnings: %v", sum.Warnings)
			}
			verifyState(t, dir, v.root)
			if got := localTarget(t, dir, repo.DefinitionsPath("2"), b2); !bytes.Equal(got, b2) {
				t.Fatal("release 2 as built differs from the vendor's")
			}
			if got := localTarget(t, dir, repo.DeltaPath("1", "2"), d12); !bytes.Equal(got, d12) {
				t.Fatal("the delta is not mirrored")
			}
			if !strings.Contains(out.String(), "built definitions/2.tar") {
				t.Errorf("output does not tell the release was built:\n%s", out)
			}

			// Releases 3 and 4 with deltas 2-3 and 3-4: both built, 4
			// through a chain of two deltas.
			f3 := nextFiles(f2, "3")
			f4 := nextFiles(f3, "4")
			b3, b4 := v.release("3", f3), v.release("4", f4)
			d23, d34 := v.makeDelta(f2, f3), v.makeDelta(f3, f4)
			v.delta("2", "3", d23)
			v.delta("3", "4", d34)
			v.publish()
			sum = syncOK(t, w.config(proto, v.root, dir, &testenv.Buffer{}))
			if sum.Fetched.Built != 2 || sum.Fetched.BuiltBytes != int64(len(b3)+len(b4)) || sum.Fetched.TargetFiles != 2 || sum.Fetched.TargetBytes != int64(len(d23)+len(d34)) {
				t.Fatalf("releases 3 and 4: %+v", sum.Fetched)
			}
			verifyState(t, dir, v.root)
			if got := localTarget(t, dir, repo.DefinitionsPath("4"), b4); !bytes.Equal(got, b4) {
				t.Fatal("release 4 as built differs from the vendor's")
			}

			// A mirror that holds nothing downloads every target, deltas
			// included.
			fresh := filepath.Join(t.TempDir(), "fresh")
			sum = syncOK(t, w.config(proto, v.root, fresh, &testenv.Buffer{}))
			if sum.Fetched.Built != 0 || sum.Fetched.TargetFiles != 7 {
				t.Fatalf("fresh mirror: %+v, want 7 targets downloaded", sum.Fetched)
			}
			verifyState(t, fresh, v.root)
		})
	}
}

// TestDeltasFallBack: when building a release from deltas fails — a
// signed delta that yields another release, a signed delta that is not a
// delta, a held base damaged on disk — the mirror downloads the release,
// and publishes nothing unverified. A delta chain dearer than the release
// is not used at all.
func TestDeltasFallBack(t *testing.T) {
	tests := []struct {
		name    string
		delta   func(f1, f2 map[string][]byte, v *deltaVendor) []byte
		damage  bool // the held base is damaged on disk
		warning string
	}{
		{name: "wrong result", delta: func(f1, f2 map[string][]byte, v *deltaVendor) []byte {
			return v.makeDelta(f1, nextFiles(f2, "x"))
		}, warning: "does not match the signed release"},
		{name: "garbage", delta: func(_, _ map[string][]byte, _ *deltaVendor) []byte {
			return []byte("not a delta at all")
		}, warning: "definitions/deltas/1-2.delta: delta: not a Vigil delta"},
		{name: "damaged base", delta: func(f1, f2 map[string][]byte, v *deltaVendor) []byte {
			return v.makeDelta(f1, f2)
		}, damage: true, warning: "could not be built"},
		{name: "dearer than the release", delta: func(_, _ map[string][]byte, _ *deltaVendor) []byte {
			return bytes.Repeat([]byte("x"), 400<<10)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newDeltaVendor(t)
			f1 := defFiles("1", 300<<10)
			b1 := v.release("1", f1)
			v.publish()
			w := newWorld(t, v.top)
			dir := filepath.Join(t.TempDir(), "mirror")
			syncOK(t, w.config("http", v.root, dir, &testenv.Buffer{}))
			if tt.damage {
				sum := sha256.Sum256(b1)
				p := filepath.Join(dir, targetsDir, "definitions", hex.EncodeToString(sum[:])+".1.tar")
				b := bytes.Clone(b1)
				b[len(b)/2] ^= 1
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				// The next state drops release 1: the damaged file is
				// the mirror's, not part of what it publishes.
				delete(v.targets, repo.DefinitionsPath("1"))
			}

			f2 := nextFiles(f1, "2")
			b2 := v.release("2", f2)
			d := tt.delta(f1, f2, v)
			v.delta("1", "2", d)
			v.publish()
			out := &testenv.Buffer{}
			sum := syncOK(t, w.config("http", v.root, dir, out))
			if sum.Fetched.Built != 0 || sum.Fetched.TargetFiles != 2 || sum.Fetched.TargetBytes != int64(len(b2)+len(d)) {
				t.Fatalf("%+v, want the delta and the release downloaded, nothing built\n%s", sum.Fetched, out)
			}
			switch {
			case tt.warning == "" && len(sum.Warnings) != 0:
				t.Errorf("warnings: %v", sum.Warnings)
			case tt.warning != "" && (len(sum.Warnings) != 1 || !strings.Contains(sum.Warnings[0], tt.warning)):
				t.Errorf("warnings: %v, want one containing %q", sum.Warnings, tt.warning)
			}
			verifyState(t, dir, v.root)
			if got := localTarget(t, dir, repo.DefinitionsPath("2"), b2); !bytes.Equal(got, b2) {
				t.Fatal("release 2 differs from the vendor's")
			}
			if parts, _ := os.ReadDir(filepath.Join(dir, workDir, partialDir)); len(parts) != 0 {
				t.Errorf("partial files left: %v", parts)
			}
		})
	}
}

// TestDeltasFromPublish: with a repository as `vigil repo publish` makes
// it (deltas from earlier releases to each new one), a mirror that holds
// the previous release builds each new one from the deltas, and serves
// exactly what the vendor signed.
func TestDeltasFromPublish(t *testing.T) {
	v := newVendorOpts(t, publish.Options{})
	files := defFiles("1", 300<<10)
	if err := v.r.AddDefinitionsData("1", files); err != nil {
		t.Fatal(err)
	}
	if err := v.r.Publish(publish.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, v.live())
	root := v.rootJSON()
	dir := filepath.Join(t.TempDir(), "mirror")
	syncOK(t, w.config("http", root, dir, &testenv.Buffer{}))
	for _, version := range []string{"2", "3"} {
		files = nextFiles(files, version)
		if err := v.r.AddDefinitionsData(version, files); err != nil {
			t.Fatal(err)
		}
		if err := v.r.Publish(publish.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		s, err := v.r.Status()
		if err != nil {
			t.Fatal(err)
		}
		var full, deltas int64
		for _, tg := range s.Deltas {
			if tg.Custom.Version != version {
				t.Fatalf("a delta to an older release in the new state: %+v", tg)
			}
			deltas += tg.Length
		}
		for _, tg := range s.Definitions {
			if tg.Path == repo.DefinitionsPath(version) {
				full = tg.Length
			}
		}
		if len(s.Deltas) == 0 || full == 0 {
			t.Fatalf("release %s: the vendor published %+v", version, s)
		}
		out := &testenv.Buffer{}
		sum := syncOK(t, w.config("http", root, dir, out))
		if sum.Fetched.Built != 1 || sum.Fetched.BuiltBytes != full || sum.Fetched.TargetFiles != len(s.Deltas) || sum.Fetched.TargetBytes != deltas {
			t.Fatalf("release %s: %+v, want it (%d bytes) built and only the %d deltas (%d bytes) fetched\n%s", version, sum.Fetched, full, len(s.Deltas), deltas, out)
		}
		verifyState(t, dir, root)
	}
}
