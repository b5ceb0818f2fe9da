package mirror

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// localState is what the local repository holds, as far as it verifies
// from the pinned root.
type localState struct {
	// roots is the verified chain: roots[0] is the pinned root, each
	// next one signed by the one before. rootFiles tells which of them
	// exist in DIR/metadata.
	roots     [][]byte
	rootFiles []bool
	root      *metadata.Metadata[metadata.RootType] // the newest
	rootObjs  []*metadata.Metadata[metadata.RootType]

	// has reports a published state whose timestamp, snapshot and
	// targets verify (signatures, hashes and versions; expiry is not
	// checked: an expired state still tells what the mirror had).
	has                        bool
	tsRaw, snapRaw, targetsRaw []byte
	ts                         *metadata.Metadata[metadata.TimestampType]
	snap                       *metadata.Metadata[metadata.SnapshotType]
	targets                    *metadata.Metadata[metadata.TargetsType]
	missing                    []string // targets of the state whose file is absent or the wrong size
	warnings                   []string
}

func (l *localState) newestRoot() []byte { return l.roots[len(l.roots)-1] }

func (l *localState) tsVersion() int64 {
	if !l.has {
		return 0
	}
	return l.ts.Signed.Version
}

func (l *localState) snapVersion() int64 {
	if !l.has {
		return 0
	}
	return l.snap.Signed.Version
}

func (l *localState) targetsMap() map[string]*metadata.TargetFiles {
	if !l.has {
		return nil
	}
	return l.targets.Signed.Targets
}

func (l *localState) versions() StateVersions {
	v := StateVersions{Root: l.root.Signed.Version}
	if l.has {
		v.Timestamp = l.ts.Signed.Version
		v.Snapshot = l.snap.Signed.Version
		v.Targets = l.targets.Signed.Version
		v.TargetFiles = len(l.targets.Signed.Targets)
	}
	return v
}

func (m *Mirror) metaPath(name string) string {
	return filepath.Join(m.cfg.Dir, metaDir, name)
}

// loadLocal reads and verifies the local repository. A directory that
// holds another repository (its root for the pinned version differs from
// the pinned root) is an error: the mirror changes nothing then. Local
// metadata that does not verify is reported as a warning and ignored: the
// sync replaces it.
func (m *Mirror) loadLocal() (*localState, error) {
	l := &localState{roots: [][]byte{m.cfg.Root}}
	tm, err := trustedmetadata.New(m.cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	l.rootObjs = []*metadata.Metadata[metadata.RootType]{tm.Root}
	name := fmt.Sprintf("%d.root.json", m.pinnedVer)
	b, err := os.ReadFile(m.metaPath(name))
	switch {
	case err == nil && !bytes.Equal(b, m.cfg.Root):
		return nil, m.otherRepository(name)
	case err == nil:
		l.rootFiles = []bool{true}
	case errors.Is(err, fs.ErrNotExist):
		l.rootFiles = []bool{false}
	default:
		return nil, err
	}
	for v := m.pinnedVer + 1; ; v++ {
		name := fmt.Sprintf("%d.root.json", v)
		b, err := os.ReadFile(m.metaPath(name))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		r, err := tm.UpdateRoot(b)
		if err != nil {
			l.warnings = append(l.warnings, fmt.Sprintf("local %s does not verify (%v): ignored, and replaced by the next sync", name, err))
			break
		}
		l.roots = append(l.roots, b)
		l.rootFiles = append(l.rootFiles, true)
		l.rootObjs = append(l.rootObjs, r)
	}
	l.root = tm.Root

	if err := m.loadLocalState(l); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			l.warnings = append(l.warnings, fmt.Sprintf("the local state does not verify (%v): ignored, and replaced by the next sync", err))
		}
		l.has = false
		l.ts, l.snap, l.targets = nil, nil, nil
		return l, nil
	}
	l.has = true
	for p, tf := range l.targets.Signed.Targets {
		lp, err := m.targetLocalPath(p, tf)
		if err != nil {
			l.missing = append(l.missing, p)
			continue
		}
		if st, err := os.Stat(lp); err != nil || !st.Mode().IsRegular() || st.Size() != tf.Length {
			l.missing = append(l.missing, p)
		}
	}
	return l, nil
}

// verifiedByChain checks md's signatures with the roots of the chain,
// newest first: during a key rotation a state may be signed for the
// previous root only.
func verifiedByChain[T metadata.Roles](l *localState, role string, md *metadata.Metadata[T]) error {
	var first error
	for i := len(l.rootObjs) - 1; i >= 0; i-- {
		err := l.rootObjs[i].VerifyDelegate(role, md)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// loadLocalState reads timestamp.json and the snapshot and targets it
// leads to.
func (m *Mirror) loadLocalState(l *localState) error {
	var err error
	if l.tsRaw, err = os.ReadFile(m.metaPath("timestamp.json")); err != nil {
		return err
	}
	if l.ts, err = metadata.Timestamp().FromBytes(l.tsRaw); err != nil {
		return fmt.Errorf("timestamp.json: %w", err)
	}
	if err := verifiedByChain(l, metadata.TIMESTAMP, l.ts); err != nil {
		return fmt.Errorf("timestamp.json: %w", err)
	}
	sm := l.ts.Signed.Meta["snapshot.json"]
	if sm == nil {
		return errors.New("timestamp.json lists no snapshot.json")
	}
	name := fmt.Sprintf("%d.snapshot.json", sm.Version)
	if l.snapRaw, err = os.ReadFile(m.metaPath(name)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := sm.VerifyLengthHashes(l.snapRaw); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if l.snap, err = metadata.Snapshot().FromBytes(l.snapRaw); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := verifiedByChain(l, metadata.SNAPSHOT, l.snap); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if l.snap.Signed.Version != sm.Version {
		return fmt.Errorf("%s: version %d", name, l.snap.Signed.Version)
	}
	tmeta := l.snap.Signed.Meta["targets.json"]
	if tmeta == nil {
		return fmt.Errorf("%s lists no targets.json", name)
	}
	name = fmt.Sprintf("%d.targets.json", tmeta.Version)
	if l.targetsRaw, err = os.ReadFile(m.metaPath(name)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := tmeta.VerifyLengthHashes(l.targetsRaw); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if l.targets, err = metadata.Targets().FromBytes(l.targetsRaw); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := verifiedByChain(l, metadata.TARGETS, l.targets); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if l.targets.Signed.Version != tmeta.Version {
		return fmt.Errorf("%s: version %d", name, l.targets.Signed.Version)
	}
	return nil
}

// checkTargetPath refuses a target path that could name anything outside
// DIR/targets or that the LiveUpdate server would not serve.
func checkTargetPath(p string) error {
	if p == "" || len(p) > 1024 || strings.HasPrefix(p, "/") {
		return fmt.Errorf("target path %q: not a relative path", p)
	}
	for _, c := range []byte(p) {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("target path %q: control character or backslash", p)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return fmt.Errorf("target path %q: empty, dot or dot-prefixed segment", p)
		}
	}
	return nil
}

// remoteTargetPath is the path of a target under the public directory,
// as consistent snapshots name it: targets/DIR/SHA256.BASE.
func remoteTargetPath(p string, tf *metadata.TargetFiles) (string, error) {
	if err := checkTargetPath(p); err != nil {
		return "", err
	}
	sum := tf.Hashes["sha256"]
	if len(sum) != 32 {
		return "", fmt.Errorf("target %s: no SHA-256 hash", p)
	}
	dir, base := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, base = p[:i+1], p[i+1:]
	}
	return targetsDir + "/" + dir + hex.EncodeToString(sum) + "." + base, nil
}

// targetLocalPath is where target p lives in the local repository.
func (m *Mirror) targetLocalPath(p string, tf *metadata.TargetFiles) (string, error) {
	rel, err := remoteTargetPath(p, tf)
	if err != nil {
		return "", err
	}
	return filepath.Join(m.cfg.Dir, filepath.FromSlash(rel)), nil
}
