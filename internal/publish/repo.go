package publish

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/repo"
)

// Default expiry periods of the metadata, from the moment it is signed.
const (
	DefaultRootExpires      = 8760 * time.Hour // a year
	DefaultTargetsExpires   = 2160 * time.Hour // 90 days
	DefaultSnapshotExpires  = 168 * time.Hour  // a week
	DefaultTimestampExpires = 24 * time.Hour   // a day
)

// Names inside a repository directory.
const (
	configFile  = "config.json"
	lockName    = ".lock"
	keysDir     = "keys"
	rootKeyDir  = "root" // under keys/, unless moved offline
	rootKeyFile = "root.key"
	stagedDir   = "staged" // staged/targets.json + staged/targets/<target path>
	publicDir   = "public"
	metaDir     = repo.MetadataDir // under public/
	targetsDir  = repo.TargetsDir  // under public/ and staged/
	configVer   = 1
)

// Expiries are the validity periods of the four roles' metadata.
type Expiries struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiries returns the default expiry periods.
func DefaultExpiries() Expiries {
	return Expiries{DefaultRootExpires, DefaultTargetsExpires, DefaultSnapshotExpires, DefaultTimestampExpires}
}

// orDefault returns e with zero fields taken from d.
func (e Expiries) orDefault(d Expiries) Expiries {
	if e.Root == 0 {
		e.Root = d.Root
	}
	if e.Targets == 0 {
		e.Targets = d.Targets
	}
	if e.Snapshot == 0 {
		e.Snapshot = d.Snapshot
	}
	if e.Timestamp == 0 {
		e.Timestamp = d.Timestamp
	}
	return e
}

func (e Expiries) check() error {
	for _, x := range []struct {
		name string
		d    time.Duration
	}{{"root", e.Root}, {"targets", e.Targets}, {"snapshot", e.Snapshot}, {"timestamp", e.Timestamp}} {
		if err := checkExpiry(x.name, x.d); err != nil {
			return err
		}
	}
	return nil
}

func checkExpiry(role string, d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("%s expiry %v: want at least 1s", role, d)
	}
	return nil
}

// Options configure a new repository.
type Options struct {
	// Expiries are stored in DIR/config.json and used by every later
	// command unless overridden; zero fields take the defaults.
	Expiries Expiries
	// RootKeysDir is where the root key is written; default DIR/keys/root.
	// Give a directory on removable media to keep the root key apart.
	RootKeysDir string
	// Clock, if set, replaces time.Now (for tests). SetClock changes it.
	Clock func() time.Time
	// DeltaReleases, stored in DIR/config.json as delta_releases, is how
	// many previous definitions releases Publish makes deltas from to a
	// new one; nil takes DefaultDeltaReleases, 0 makes none.
	DeltaReleases *int
}

// PublishOptions override the repository's expiry periods for one publish;
// zero fields take the periods of DIR/config.json.
type PublishOptions struct {
	TargetsExpires, SnapshotExpires, TimestampExpires time.Duration
	// DeltaReleases, if not nil, overrides config.json's delta_releases
	// for this publish: deltas to a new definitions release are made
	// from this many previous releases (0: none; at most
	// MaxDeltaReleases).
	DeltaReleases *int
}

// RootOptions configure SignRoot.
type RootOptions struct {
	// KeysDir holds the root key(s): *.key files; default DIR/keys/root.
	KeysDir string
	// Expires is the validity of the new root; zero takes config.json's.
	Expires time.Duration
	// Rotate names online roles ("targets", "snapshot", "timestamp") whose
	// key SignRoot replaces by a new one.
	Rotate []string
}

// repoConfig is DIR/config.json.
type repoConfig struct {
	Format           int    `json:"format"`
	RootExpires      string `json:"root_expires"`
	TargetsExpires   string `json:"targets_expires"`
	SnapshotExpires  string `json:"snapshot_expires"`
	TimestampExpires string `json:"timestamp_expires"`
	// DeltaReleases: see Options.DeltaReleases; absent (a repository made
	// before deltas) means DefaultDeltaReleases.
	DeltaReleases *int `json:"delta_releases,omitempty"`
}

// Repo is a repository directory. Its methods lock the directory, so
// separate processes (a publish and a cron job re-signing the timestamp)
// take turns; a Repo may be used from several goroutines.
type Repo struct {
	dir    string
	exp    Expiries
	deltas int // delta_releases
	clock  func() time.Time
	// afterWrite, if set, is called after each file Publish,
	// RefreshTimestamp or SignRoot writes under public/ (tests).
	afterWrite func(path string)
}

// Init creates a repository in dir (created if missing; it must not hold
// a repository already): new Ed25519 keys for the four roles, version 1
// of root, targets (no targets), snapshot and timestamp under public/, and
// config.json. Clients can refresh from it at once.
func Init(dir string, opts Options) (*Repo, error) {
	exp := opts.Expiries.orDefault(DefaultExpiries())
	if err := exp.check(); err != nil {
		return nil, err
	}
	deltas := DefaultDeltaReleases
	if opts.DeltaReleases != nil {
		deltas = *opts.DeltaReleases
	}
	if err := checkDeltaReleases(deltas); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if dir == "" {
		return nil, fmt.Errorf("init: no repository directory")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	r := &Repo{dir: dir, exp: exp, deltas: deltas, clock: opts.Clock}
	rootDir := opts.RootKeysDir
	if rootDir == "" {
		rootDir = r.defaultRootKeysDir()
	}
	for _, p := range []string{configFile, keysDir, stagedDir, publicDir} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			return nil, fmt.Errorf("init: %s already exists: %s holds a repository (or part of one)", filepath.Join(dir, p), dir)
		}
	}
	if _, err := os.Lstat(filepath.Join(rootDir, rootKeyFile)); err == nil {
		return nil, fmt.Errorf("init: %s already exists; not replacing a root key", filepath.Join(rootDir, rootKeyFile))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	// From here on, undo what was created if anything fails.
	var created []string
	mkdir := func(p string, mode os.FileMode) error {
		if _, err := os.Lstat(p); err == nil {
			return os.Chmod(p, mode)
		}
		if err := os.MkdirAll(p, mode); err != nil {
			return err
		}
		created = append(created, p)
		return nil
	}
	ok := false
	defer func() {
		if !ok {
			for i := len(created) - 1; i >= 0; i-- {
				os.RemoveAll(created[i])
			}
		}
	}()
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(dir, keysDir), 0o700},
		{rootDir, 0o700},
		{filepath.Join(dir, stagedDir), 0o700},
		{r.PublicDir(), 0o755},
		{r.metadataDir(), 0o755},
		{r.publicTargetsDir(), 0o755},
	} {
		if err := mkdir(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	if err := r.initMetadata(rootDir, &created); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	cfg, _ := json.MarshalIndent(repoConfig{
		Format:           configVer,
		RootExpires:      exp.Root.String(),
		TargetsExpires:   exp.Targets.String(),
		SnapshotExpires:  exp.Snapshot.String(),
		TimestampExpires: exp.Timestamp.String(),
		DeltaReleases:    &deltas,
	}, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, configFile), append(cfg, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	created = append(created, filepath.Join(dir, configFile))
	if err := os.WriteFile(filepath.Join(dir, lockName), nil, 0o600); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	created = append(created, filepath.Join(dir, lockName))
	if _, err := r.load(); err != nil { // check what was written
		return nil, fmt.Errorf("init: %w", err)
	}
	ok = true
	return r, nil
}

func (r *Repo) initMetadata(rootDir string, created *[]string) error {
	keys := map[string]ed25519.PrivateKey{}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		k, err := generateKey()
		if err != nil {
			return err
		}
		keys[role] = k
	}
	now := r.now()
	root := metadata.Root(expiry(now, r.exp.Root))
	for role, k := range keys {
		pub, _, err := tufKey(k)
		if err != nil {
			return err
		}
		if err := root.Signed.AddKey(pub, role); err != nil {
			return err
		}
	}
	rootKey := filepath.Join(rootDir, rootKeyFile)
	if err := writeKey(rootKey, keys[metadata.ROOT]); err != nil {
		return err
	}
	*created = append(*created, rootKey)
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := writeKey(r.keyPath(role), keys[role]); err != nil {
			return err
		}
	}
	rootBytes, err := sign(root, keys[metadata.ROOT])
	if err != nil {
		return err
	}
	targets := metadata.Targets(expiry(now, r.exp.Targets))
	nt, err := r.next(now, PublishOptions{}, &state{roots: [][]byte{rootBytes}, root: root}, targets, keys[metadata.TARGETS], keys[metadata.SNAPSHOT], keys[metadata.TIMESTAMP], nil, nil)
	if err != nil {
		return err
	}
	// Nothing is served yet, but keep the order anyway.
	if err := r.writePublic(r.metaPath("1.root.json"), rootBytes); err != nil {
		return err
	}
	return r.writeNext(nt)
}

// Open opens the repository in dir and checks its published metadata.
func Open(dir string) (*Repo, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a repository (no %s; create one with init)", dir, configFile)
	}
	if err != nil {
		return nil, err
	}
	var cfg repoConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	if cfg.Format != configVer {
		return nil, fmt.Errorf("%s: format %d, want %d", filepath.Join(dir, configFile), cfg.Format, configVer)
	}
	var exp Expiries
	for _, x := range []struct {
		name string
		s    string
		d    *time.Duration
	}{{"root_expires", cfg.RootExpires, &exp.Root}, {"targets_expires", cfg.TargetsExpires, &exp.Targets},
		{"snapshot_expires", cfg.SnapshotExpires, &exp.Snapshot}, {"timestamp_expires", cfg.TimestampExpires, &exp.Timestamp}} {
		d, err := time.ParseDuration(x.s)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", filepath.Join(dir, configFile), x.name, err)
		}
		*x.d = d
	}
	if err := exp.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	deltas := DefaultDeltaReleases
	if cfg.DeltaReleases != nil {
		deltas = *cfg.DeltaReleases
	}
	if err := checkDeltaReleases(deltas); err != nil {
		return nil, fmt.Errorf("%s: delta_releases: %w", filepath.Join(dir, configFile), err)
	}
	r := &Repo{dir: dir, exp: exp, deltas: deltas}
	if err := r.locked(func() error { _, err := r.load(); return err }); err != nil {
		return nil, err
	}
	return r, nil
}

// SetClock replaces time.Now for this Repo (nil restores it): tests use a
// clock in the past to publish metadata that has already expired.
func (r *Repo) SetClock(now func() time.Time) { r.clock = now }

// Dir is the repository directory (absolute).
func (r *Repo) Dir() string { return r.dir }

// PublicDir is the directory that LiveUpdate servers and mirrors serve:
// metadata/ and targets/.
func (r *Repo) PublicDir() string { return filepath.Join(r.dir, publicDir) }

// RootPath is the path of the root metadata that clients pin (ship with
// the agent): public/metadata/1.root.json.
func (r *Repo) RootPath() string { return r.metaPath("1.root.json") }

// Expiries returns the repository's configured expiry periods.
func (r *Repo) Expiries() Expiries { return r.exp }

// DeltaReleases returns the repository's configured delta_releases.
func (r *Repo) DeltaReleases() int { return r.deltas }

func (r *Repo) defaultRootKeysDir() string { return filepath.Join(r.dir, keysDir, rootKeyDir) }
func (r *Repo) keyPath(role string) string { return filepath.Join(r.dir, keysDir, role+".key") }
func (r *Repo) metadataDir() string        { return filepath.Join(r.PublicDir(), metaDir) }
func (r *Repo) metaPath(name string) string {
	return filepath.Join(r.metadataDir(), name)
}
func (r *Repo) publicTargetsDir() string { return filepath.Join(r.PublicDir(), targetsDir) }
func (r *Repo) stagedPath() string       { return filepath.Join(r.dir, stagedDir, "targets.json") }
func (r *Repo) stagedTargetsDir() string { return filepath.Join(r.dir, stagedDir, targetsDir) }

func (r *Repo) now() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return time.Now()
}

// expiry is now+d in UTC, whole seconds (TUF's date format has none).
func expiry(now time.Time, d time.Duration) time.Time {
	return now.Add(d).UTC().Truncate(time.Second)
}

// locked runs fn holding the repository's lock.
func (r *Repo) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(r.dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.Open(filepath.Join(r.dir, lockName)) // status of a repository others own
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	defer unlockFile(f)
	return fn()
}

// state is the published state of the repository: the root chain and the
// metadata that timestamp.json leads to.
type state struct {
	roots     [][]byte // 1.root.json ... N.root.json
	root      *metadata.Metadata[metadata.RootType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   *metadata.Metadata[metadata.TargetsType]
	// raw files of timestamp, snapshot and targets
	timestampRaw, snapshotRaw, targetsRaw []byte
}

// load reads and verifies the published state: each root signed by its
// predecessor and itself, timestamp, snapshot and targets signed by the
// keys of the newest root, snapshot and targets matching the versions
// and hashes that lead to them. Expiry is not checked: an expired
// repository must still be re-signed.
func (r *Repo) load() (*state, error) {
	st := &state{}
	for v := int64(1); ; v++ {
		name := fmt.Sprintf("%d.root.json", v)
		b, err := os.ReadFile(r.metaPath(name))
		if errors.Is(err, fs.ErrNotExist) && v > 1 {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", r.dir, err)
		}
		m, err := metadata.Root().FromBytes(b)
		if err == nil && m.Signed.Version != v {
			err = fmt.Errorf("version %d", m.Signed.Version)
		}
		if err == nil && st.root != nil {
			err = st.root.VerifyDelegate(metadata.ROOT, m)
		}
		if err == nil {
			err = m.VerifyDelegate(metadata.ROOT, m)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.metaPath(name), err)
		}
		st.root = m
		st.roots = append(st.roots, b)
	}
	if !st.root.Signed.ConsistentSnapshot {
		return nil, fmt.Errorf("%s: consistent_snapshot is false", r.metaPath(fmt.Sprintf("%d.root.json", st.root.Signed.Version)))
	}
	var err error
	name := "timestamp.json"
	if st.timestampRaw, err = os.ReadFile(r.metaPath(name)); err == nil {
		st.timestamp, err = metadata.Timestamp().FromBytes(st.timestampRaw)
	}
	if err == nil {
		err = st.root.VerifyDelegate(metadata.TIMESTAMP, st.timestamp)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.metaPath(name), err)
	}
	sm := st.timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, fmt.Errorf("%s: no snapshot.json", r.metaPath(name))
	}
	name = fmt.Sprintf("%d.snapshot.json", sm.Version)
	if st.snapshotRaw, err = os.ReadFile(r.metaPath(name)); err == nil {
		err = sm.VerifyLengthHashes(st.snapshotRaw)
	}
	if err == nil {
		st.snapshot, err = metadata.Snapshot().FromBytes(st.snapshotRaw)
	}
	if err == nil {
		err = st.root.VerifyDelegate(metadata.SNAPSHOT, st.snapshot)
	}
	if err == nil && st.snapshot.Signed.Version != sm.Version {
		err = fmt.Errorf("version %d", st.snapshot.Signed.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.metaPath(name), err)
	}
	tm := st.snapshot.Signed.Meta["targets.json"]
	if tm == nil {
		return nil, fmt.Errorf("%s: no targets.json", r.metaPath(name))
	}
	name = fmt.Sprintf("%d.targets.json", tm.Version)
	if st.targetsRaw, err = os.ReadFile(r.metaPath(name)); err == nil {
		err = tm.VerifyLengthHashes(st.targetsRaw)
	}
	if err == nil {
		st.targets, err = metadata.Targets().FromBytes(st.targetsRaw)
	}
	if err == nil {
		err = st.root.VerifyDelegate(metadata.TARGETS, st.targets)
	}
	if err == nil && st.targets.Signed.Version != tm.Version {
		err = fmt.Errorf("version %d", st.targets.Signed.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.metaPath(name), err)
	}
	return st, nil
}

// metaFile describes a metadata file in snapshot or timestamp: version,
// length and SHA-256.
func metaFile(version int64, data []byte) *metadata.MetaFiles {
	h := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

// nextState is a signed new state, ready to be written.
type nextState struct {
	content                      map[string][]byte // public path -> target content
	targetsName, snapshotName    string
	targets, snapshot, timestamp []byte
}

// next signs a new targets (the given one, with the version after the
// current one), snapshot and timestamp. Extra keys, if any, sign too
// (during a key rotation). It checks the result as go-tuf's client will.
func (r *Repo) next(now time.Time, opts PublishOptions, st *state, targets *metadata.Metadata[metadata.TargetsType],
	tkey, skey, tskey ed25519.PrivateKey, extra map[string]ed25519.PrivateKey, content map[string][]byte) (*nextState, error) {
	exp := Expiries{Targets: opts.TargetsExpires, Snapshot: opts.SnapshotExpires, Timestamp: opts.TimestampExpires}.orDefault(r.exp)
	targets.Signed.Version = 1
	snapshot := metadata.Snapshot(expiry(now, exp.Snapshot))
	timestamp := metadata.Timestamp(expiry(now, exp.Timestamp))
	if st.targets != nil {
		targets.Signed.Version = st.targets.Signed.Version + 1
		snapshot.Signed.Version = st.snapshot.Signed.Version + 1
		timestamp.Signed.Version = st.timestamp.Signed.Version + 1
		for name, m := range st.snapshot.Signed.Meta {
			snapshot.Signed.Meta[name] = m
		}
	}
	targets.Signed.Expires = expiry(now, exp.Targets)
	with := func(role string, k ed25519.PrivateKey) []ed25519.PrivateKey {
		if x := extra[role]; x != nil {
			return []ed25519.PrivateKey{k, x}
		}
		return []ed25519.PrivateKey{k}
	}
	n := &nextState{content: content}
	var err error
	if n.targets, err = sign(targets, with(metadata.TARGETS, tkey)...); err != nil {
		return nil, err
	}
	snapshot.Signed.Meta["targets.json"] = metaFile(targets.Signed.Version, n.targets)
	if n.snapshot, err = sign(snapshot, with(metadata.SNAPSHOT, skey)...); err != nil {
		return nil, err
	}
	timestamp.Signed.Meta["snapshot.json"] = metaFile(snapshot.Signed.Version, n.snapshot)
	if n.timestamp, err = sign(timestamp, with(metadata.TIMESTAMP, tskey)...); err != nil {
		return nil, err
	}
	n.targetsName = fmt.Sprintf("%d.targets.json", targets.Signed.Version)
	n.snapshotName = fmt.Sprintf("%d.snapshot.json", snapshot.Signed.Version)
	if _, _, err := repo.VerifyChain(now, st.roots, n.timestamp, n.snapshot, n.targets); err != nil {
		return nil, fmt.Errorf("the new metadata does not verify: %w", err)
	}
	return n, nil
}

// writePublic writes one file under public/ atomically.
func (r *Repo) writePublic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	if r.afterWrite != nil {
		r.afterWrite(path)
	}
	return nil
}

// writeNext writes a new state in the order that keeps public/ consistent
// for readers: target content, then targets, then snapshot, then
// timestamp, which is what makes the new state visible.
func (r *Repo) writeNext(n *nextState) error {
	paths := make([]string, 0, len(n.content))
	for p := range n.content {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		if old, err := os.ReadFile(p); err == nil && string(old) == string(n.content[p]) {
			continue // content-addressed: already there
		}
		if err := r.writePublic(p, n.content[p]); err != nil {
			return err
		}
	}
	if err := r.writePublic(r.metaPath(n.targetsName), n.targets); err != nil {
		return err
	}
	if err := r.writePublic(r.metaPath(n.snapshotName), n.snapshot); err != nil {
		return err
	}
	return r.writePublic(r.metaPath("timestamp.json"), n.timestamp)
}

// publicTargetPath is where the content of target path p with SHA-256 sum
// is served: targets/DIR/SUM.BASE, as go-tuf's client fetches it with
// consistent snapshots and PrefixTargetsWithHash.
func (r *Repo) publicTargetPath(p string, sum []byte) string {
	dir, base := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, base = p[:i], p[i+1:]
	}
	return filepath.Join(r.publicTargetsDir(), filepath.FromSlash(dir), fmt.Sprintf("%x.%s", sum, base))
}

// Publish signs and publishes what was added since the last publish (or
// nothing new, renewing the expiry of targets, snapshot and timestamp):
// new versions of targets and snapshot and a new timestamp. It writes the
// target content first, then N.targets.json, then N.snapshot.json, then
// timestamp.json, each atomically, and keeps every older file, so a
// reader of public/ sees the old state or the new, complete, one.
//
// When it publishes a new definitions release, it also publishes the
// deltas to it from the previous delta_releases definitions releases
// (PublishReport says which), in the same state.
func (r *Repo) Publish(opts PublishOptions) error {
	_, err := r.PublishReport(opts)
	return err
}

// PublishReport is Publish, saying what it published.
func (r *Repo) PublishReport(opts PublishOptions) (*Published, error) {
	for _, x := range []struct {
		name string
		d    time.Duration
	}{{"targets", opts.TargetsExpires}, {"snapshot", opts.SnapshotExpires}, {"timestamp", opts.TimestampExpires}} {
		if x.d != 0 {
			if err := checkExpiry(x.name, x.d); err != nil {
				return nil, fmt.Errorf("publish: %w", err)
			}
		}
	}
	k := r.deltas
	if opts.DeltaReleases != nil {
		k = *opts.DeltaReleases
	}
	if err := checkDeltaReleases(k); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	res := &Published{}
	err := r.locked(func() error {
		st, err := r.load()
		if err != nil {
			return err
		}
		staged, err := r.loadStaged()
		if err != nil {
			return err
		}
		tkey, err := r.roleKey(st.root, metadata.TARGETS)
		if err != nil {
			return err
		}
		skey, err := r.roleKey(st.root, metadata.SNAPSHOT)
		if err != nil {
			return err
		}
		tskey, err := r.roleKey(st.root, metadata.TIMESTAMP)
		if err != nil {
			return err
		}
		targets := metadata.Targets()
		for p, tf := range st.targets.Signed.Targets {
			targets.Signed.Targets[p] = tf
		}
		content := map[string][]byte{}
		stagedData := map[string][]byte{}
		for p, tf := range staged.Signed.Targets {
			if old, ok := targets.Signed.Targets[p]; ok && !old.Equal(*tf) {
				return fmt.Errorf("staged %s differs from the published target of that path", p)
			}
			data, err := os.ReadFile(r.stagedContentPath(p))
			if err != nil {
				return fmt.Errorf("staged %s: %w", p, err)
			}
			if err := tf.VerifyLengthHashes(data); err != nil {
				return fmt.Errorf("staged %s changed since it was added: %w", r.stagedContentPath(p), err)
			}
			targets.Signed.Targets[p] = tf
			content[r.publicTargetPath(p, tf.Hashes["sha256"])] = data
			stagedData[p] = data
			res.Targets = append(res.Targets, p)
		}
		slices.Sort(res.Targets)
		if err := r.addDeltas(targets.Signed.Targets, staged.Signed.Targets, stagedData, content, k, res); err != nil {
			return err
		}
		n, err := r.next(r.now(), opts, st, targets, tkey, skey, tskey, nil, content)
		if err != nil {
			return err
		}
		if err := r.writeNext(n); err != nil {
			return err
		}
		return r.clearStaged()
	})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return res, nil
}

// RefreshTimestamp re-signs timestamp.json with the next version and an
// expiry of expires from now (zero: config.json's), pointing at the same
// snapshot. Run it well within the timestamp's expiry (from cron). It
// refuses when the snapshot or targets have expired: publish then.
func (r *Repo) RefreshTimestamp(expires time.Duration) error {
	if expires == 0 {
		expires = r.exp.Timestamp
	}
	if err := checkExpiry("timestamp", expires); err != nil {
		return fmt.Errorf("refresh timestamp: %w", err)
	}
	err := r.locked(func() error {
		st, err := r.load()
		if err != nil {
			return err
		}
		now := r.now()
		if st.snapshot.Signed.IsExpired(now) {
			return fmt.Errorf("snapshot version %d expired at %s: run publish", st.snapshot.Signed.Version, st.snapshot.Signed.Expires.Format(time.RFC3339))
		}
		if st.targets.Signed.IsExpired(now) {
			return fmt.Errorf("targets version %d expired at %s: run publish", st.targets.Signed.Version, st.targets.Signed.Expires.Format(time.RFC3339))
		}
		key, err := r.roleKey(st.root, metadata.TIMESTAMP)
		if err != nil {
			return err
		}
		ts := metadata.Timestamp(expiry(now, expires))
		ts.Signed.Version = st.timestamp.Signed.Version + 1
		ts.Signed.Meta = st.timestamp.Signed.Meta
		b, err := sign(ts, key)
		if err != nil {
			return err
		}
		if _, _, err := repo.VerifyChain(now, st.roots, b, st.snapshotRaw, st.targetsRaw); err != nil {
			return fmt.Errorf("the new timestamp does not verify: %w", err)
		}
		return r.writePublic(r.metaPath("timestamp.json"), b)
	})
	if err != nil {
		return fmt.Errorf("refresh timestamp: %w", err)
	}
	return nil
}

// SignRoot signs and publishes the next version of root, with a new
// expiry and, if asked, new keys for online roles. It needs the root
// key(s), from opts.KeysDir. When keys are rotated it also publishes new
// targets, snapshot and timestamp signed by the old and the new keys, and
// only then the new root, so that clients that have not yet seen the new
// root and clients that have both verify every state; afterwards
// DIR/keys/ROLE.key is the new key.
func (r *Repo) SignRoot(opts RootOptions) error {
	expires := opts.Expires
	if expires == 0 {
		expires = r.exp.Root
	}
	if err := checkExpiry("root", expires); err != nil {
		return fmt.Errorf("sign root: %w", err)
	}
	rotate := map[string]bool{}
	for _, role := range opts.Rotate {
		switch role {
		case metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP:
			rotate[role] = true
		default:
			return fmt.Errorf("sign root: cannot rotate the key of %q: want targets, snapshot or timestamp", role)
		}
	}
	keysDir := opts.KeysDir
	if keysDir == "" {
		keysDir = r.defaultRootKeysDir()
	}
	err := r.locked(func() error {
		st, err := r.load()
		if err != nil {
			return err
		}
		rkeys, err := rootKeys(keysDir, st.root)
		if err != nil {
			return err
		}
		now := r.now()
		root, err := metadata.Root().FromBytes(st.roots[len(st.roots)-1])
		if err != nil {
			return err
		}
		root.Signed.Version++
		root.Signed.Expires = expiry(now, expires)
		current := map[string]ed25519.PrivateKey{}
		fresh := map[string]ed25519.PrivateKey{}
		for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
			if len(rotate) == 0 {
				break // a plain re-sign needs only the root key(s)
			}
			if current[role], err = r.roleKey(st.root, role); err != nil {
				return err
			}
			if !rotate[role] {
				continue
			}
			if fresh[role], err = generateKey(); err != nil {
				return err
			}
			for _, id := range append([]string(nil), root.Signed.Roles[role].KeyIDs...) {
				if err := root.Signed.RevokeKey(id, role); err != nil {
					return err
				}
			}
			pub, _, err := tufKey(fresh[role])
			if err != nil {
				return err
			}
			if err := root.Signed.AddKey(pub, role); err != nil {
				return err
			}
		}
		rootBytes, err := sign(root, rkeys...)
		if err != nil {
			return err
		}
		roots := append(append([][]byte(nil), st.roots...), rootBytes)
		rootName := fmt.Sprintf("%d.root.json", root.Signed.Version)
		if len(fresh) == 0 {
			if _, _, err := repo.VerifyChain(now, roots, nil, nil, nil); err != nil {
				return fmt.Errorf("the new root does not verify: %w", err)
			}
			return r.writePublic(r.metaPath(rootName), rootBytes)
		}
		// Re-sign the current targets with the current and new keys.
		targets, err := metadata.Targets().FromBytes(st.targetsRaw)
		if err != nil {
			return err
		}
		n, err := r.next(now, PublishOptions{}, st, targets, current[metadata.TARGETS], current[metadata.SNAPSHOT], current[metadata.TIMESTAMP], fresh, nil)
		if err != nil {
			return err
		}
		if _, _, err := repo.VerifyChain(now, roots, n.timestamp, n.snapshot, n.targets); err != nil {
			return fmt.Errorf("the new root does not verify: %w", err)
		}
		for role, k := range fresh {
			p := r.keyPath(role) + ".next"
			os.Remove(p) // left by an interrupted rotation, never published in a root
			if err := writeKey(p, k); err != nil {
				return err
			}
		}
		if err := r.writeNext(n); err != nil {
			return err
		}
		if err := r.writePublic(r.metaPath(rootName), rootBytes); err != nil {
			return err
		}
		for role := range fresh {
			if err := os.Rename(r.keyPath(role)+".next", r.keyPath(role)); err != nil {
				return fmt.Errorf("root version %d is published but the new %s key is still in %s.next: %w", root.Signed.Version, role, r.keyPath(role), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sign root: %w", err)
	}
	return nil
}
