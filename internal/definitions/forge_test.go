package definitions

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// signDelta publishes d as the delta target from base to version of r,
// genuinely signed with r's keys whatever d yields, as a vendor whose
// delta maker went wrong would.
func signDelta(t *testing.T, r *publish.Repo, base, version string, d []byte) {
	t.Helper()
	resign(t, r, func(targets map[string]*metadata.TargetFiles) map[string][]byte {
		return map[string][]byte{addDelta(targets, base, version, d): d}
	})
}

// addDelta adds to targets the delta target from base to version, d, and
// returns where its content is served (its path under targets/).
func addDelta(targets map[string]*metadata.TargetFiles, base, version string, d []byte) string {
	p := repo.DeltaPath(base, version)
	sum := sha256.Sum256(d)
	custom := json.RawMessage(fmt.Sprintf(`{"kind":%q,"version":%q,"base":%q}`, repo.KindDelta, version, base))
	targets[p] = &metadata.TargetFiles{Length: int64(len(d)), Hashes: metadata.Hashes{"sha256": sum[:]}, Path: p, Custom: &custom}
	return fmt.Sprintf("definitions/deltas/%x.%s-%s.delta", sum, base, version)
}

// resign publishes a new version of r's targets metadata, edited by edit,
// with new snapshot and timestamp metadata, genuinely signed with r's
// keys (keys/ROLE.key), and the target content edit returns (path under
// targets/ -> data). It writes public/ only.
func resign(t *testing.T, r *publish.Repo, edit func(targets map[string]*metadata.TargetFiles) map[string][]byte) {
	t.Helper()
	pub := r.PublicDir()
	meta := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(pub, "metadata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key := func(role string) signature.Signer {
		b, err := os.ReadFile(filepath.Join(r.Dir(), "keys", role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s key: no PEM block", role)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		s, err := signature.LoadSigner(k.(ed25519.PrivateKey), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	write := func(name string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	metaFile := func(version int64, b []byte) *metadata.MetaFiles {
		h := sha256.Sum256(b)
		return &metadata.MetaFiles{Version: version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": h[:]}}
	}

	ts, err := metadata.Timestamp().FromBytes(meta("timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := metadata.Snapshot().FromBytes(meta(fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version)))
	if err != nil {
		t.Fatal(err)
	}
	targets, err := metadata.Targets().FromBytes(meta(fmt.Sprintf("%d.targets.json", snap.Signed.Meta["targets.json"].Version)))
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range edit(targets.Signed.Targets) {
		write(filepath.Join(pub, "targets", filepath.FromSlash(p)), data)
	}

	targets.Signed.Version++
	targets.ClearSignatures()
	if _, err := targets.Sign(key(metadata.TARGETS)); err != nil {
		t.Fatal(err)
	}
	tb, err := targets.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(pub, "metadata", fmt.Sprintf("%d.targets.json", targets.Signed.Version)), tb)

	snap.Signed.Version++
	snap.Signed.Meta["targets.json"] = metaFile(targets.Signed.Version, tb)
	snap.ClearSignatures()
	if _, err := snap.Sign(key(metadata.SNAPSHOT)); err != nil {
		t.Fatal(err)
	}
	sb, err := snap.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(pub, "metadata", fmt.Sprintf("%d.snapshot.json", snap.Signed.Version)), sb)

	ts.Signed.Version++
	ts.Signed.Meta["snapshot.json"] = metaFile(snap.Signed.Version, sb)
	ts.ClearSignatures()
	if _, err := ts.Sign(key(metadata.TIMESTAMP)); err != nil {
		t.Fatal(err)
	}
	tsb, err := ts.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(pub, "metadata", "timestamp.json"), tsb)
}
