// Package definitions installs antivirus definitions releases and owns
// their on-disk layout, current/previous/releases (Dir, Current), which
// the agent installs into and `vigil scan` reads from. Its Updater is the
// agent's definitions updater: it fetches the newest definitions release
// from an ordered list of LiveUpdate servers (over internal/transport),
// verifies it with TUF (go-tuf v2) against a pinned root, and installs it
// atomically, keeping the previous release. FetchRelease fetches a Vigil
// release (the agent's executable) the same way, for the agent's
// self-update (docs/selfupdate.md). The repository it reads is
// specified in docs/repository.md.
//
// # Servers
//
// Each server is the URL of a repository's public directory — metadata at
// URL/metadata/, targets at URL/targets/ — over ftp://, http:// or
// https://. Update tries them in order and uses the first one that yields
// verified metadata; a server that is down, times out, or serves anything
// that fails verification — metadata or the definitions package — is
// skipped (and reported in Result.Skipped) for the next one. Only when
// every server fails does Update return an error (*AllServersFailedError),
// which names each server and why; the installed definitions are then
// untouched. The first server that verifies decides: if its newest release
// is not newer than the installed one, nothing changes and the later
// servers are not asked.
//
// A server too slow counts as failing (TUF's slow-retrieval attack: genuine
// files sent so slowly that the agent never finishes nor tries another
// server, though no single wait times out): every transfer must average
// Config.MinRate bytes per second over Config.RateWindow once
// Config.RateGrace has passed, and the session with one server must end
// within Config.SessionAllowance plus the signed sizes of what it fetches
// at MinRate (see transport.RateLimits).
//
// The fetchers (internal/transport's HTTPFetcher and FTPFetcher)
// implement go-tuf's fetcher.Fetcher. Every length is bounded (go-tuf's
// limits for root and timestamp, the signed lengths for the rest) and
// enforced while reading.
// go-tuf's interface returns whole files, so a definitions package is held
// in memory while it is verified and extracted.
//
// # Trust
//
// The agent ships with the repository's root metadata (Config.TrustedRoot,
// normally 1.root.json). Trusted metadata lives in one store,
// StateDir/metadata, shared by all servers, seeded from TrustedRoot on first
// use and afterwards from the newest root verified since (when it is at
// least as new as the pinned one). go-tuf writes a metadata file to the
// store only after verifying it, so bad metadata never reaches the store:
// at most, the genuine files verified before a bad one (a new timestamp,
// say, before a tampered targets file) are kept, which is harmless. A stored
// file that does not even parse (torn by a crash) is removed and fetched
// again.
//
// Because the store is shared, servers are compared with each other: once
// the agent has seen timestamp (or snapshot) version N from one server, a
// server still serving an older version is a rollback and is skipped, even
// if it is a legitimate mirror that has not synced yet. The agent then
// uses the next server; it does not fall back to older definitions. A
// server whose timestamp has expired is likewise skipped, so a stale mirror
// is never used past its timestamp's expiry.
//
// # Deltas
//
// Besides full releases, the repository may sign deltas (docs/repository.md):
// a delta target turns the files of one release (its base) into those of
// a later one. Once the metadata is verified, Update plans the cheapest way
// from the installed release to the newest: the chain of signed deltas
// with the fewest bytes (planDeltas: forward deltas only, at most
// MaxDeltaChain of them) when it totals less than the full release's
// signed length, else the full release. A chain is applied in memory to
// the files of the installed release directory: each delta is downloaded
// through go-tuf like any target (signed length and hashes checked), given
// to delta.Apply (which checks every base file it reads), and the result's
// bundle (repo.MakeBundle, deterministic) must have exactly the signed
// length and hashes of that release's full target — at every hop whose
// full release is listed, and always at the last. Only that verified
// bundle is installed, exactly as a downloaded one. Any failure — a delta
// missing on the server (404, FTP 550), a download error, a delta that
// fails its hash, does not apply (an installed release altered locally,
// say) or whose result is not the signed release — is logged, reported in
// Result.Fallback, and the full release is downloaded from the same server
// instead; nothing unverified is installed.
//
// Result.Bytes counts what the update downloaded from every server it
// tried (metadata and targets, fallbacks included: the bytes of each file
// received in full, as counted by the fetcher), Result.FullBytes the full
// release's signed length and Result.Deltas the deltas applied; the agent
// reports them at check-in (api.UpdateState).
//
// # Installation
//
// DefinitionsDir holds:
//
//	releases/VERSION/   one directory per installed release
//	current  -> releases/VERSION   the definitions in use
//	previous -> releases/VERSION   the release before it (absent at first)
//
// A verified release is extracted into a staging directory inside
// DefinitionsDir (.staging-*), synced to disk, renamed into releases/, and
// then the symbolic links are replaced atomically: a new link is created
// under a temporary name and renamed over the old one (previous first, then
// current). Older releases are deleted afterwards. Killing the process at
// any moment leaves current pointing at a complete release, old or new;
// the next Update removes leftovers (staging and trash directories,
// temporary links, unreferenced releases, download temporaries) and
// completes the job.
//
// Only one Update runs at a time on a StateDir: calls on one Updater are
// serialised, and a lock file (StateDir/update.lock) makes an Update in
// another process fail fast.
package definitions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	tufupdater "github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// Config configures an Updater.
type Config struct {
	// Servers lists the LiveUpdate servers in the order they are tried:
	// ftp://host[:port]/path, http://host[:port]/path or https://....
	// Each URL is a repository's public directory: metadata at
	// URL/metadata/, targets at URL/targets/. An ftp:// URL may carry a user
	// and password; the login is anonymous otherwise.
	Servers []string
	// TrustedRoot is the path of the pinned root metadata file (1.root.json)
	// shipped with the agent. It is read by New.
	TrustedRoot string
	// StateDir keeps the trusted TUF metadata (one store for all servers)
	// and download temporaries. Created (0700) if missing. It belongs to
	// one repository: a stored root at least as new as TrustedRoot is
	// preferred to it, so clear StateDir when pinning another repository.
	StateDir string
	// DefinitionsDir is where releases are installed. Created (0755) if
	// missing.
	DefinitionsDir string
	// HTTPClient is used for http:// and https:// servers; nil means a
	// client with connection timeouts and the environment's proxy.
	HTTPClient *http.Client
	// Timeout bounds each wait on a server: connecting, a reply, and any
	// pause in a transfer (a transfer that keeps making progress is not cut
	// short; bound the whole Update with its context). Zero means
	// transport.DefaultTimeout, negative no timeout.
	Timeout time.Duration
	// MinRate, RateWindow and RateGrace are the slow-retrieval defence
	// (see transport.RateLimits): every transfer must average at least
	// MinRate bytes per second over the last RateWindow, from RateGrace
	// after its request on. SessionAllowance is the fixed part of the
	// deadline of the session with each server (SessionAllowance plus the
	// signed sizes of what it fetches at MinRate). A server too slow is
	// skipped for the next one. Zero values take the defaults
	// of package config (config.DefaultMinRate, DefaultRateWindow,
	// DefaultRateGrace, DefaultSessionAllowance); a negative MinRate turns the defence off.
	MinRate          int64
	RateWindow       time.Duration
	RateGrace        time.Duration
	SessionAllowance time.Duration
	// Logger receives progress and skipped servers; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Result describes what an Update did.
type Result struct {
	// Version is the definitions version installed after the update.
	Version string
	// Previous is the version installed before it ("" for none); equal to
	// Version when nothing changed.
	Previous string
	// Server is the server (password redacted) whose verified metadata
	// decided the update; "" when every server failed.
	Server string
	// Changed reports whether a new release was installed.
	Changed bool
	// Skipped lists, in order, the servers tried before Server and why each
	// failed.
	Skipped []ServerError
	// Bytes is what the update downloaded from every server it tried:
	// metadata and targets (deltas, full releases), a fallback's included.
	Bytes int64
	// FullBytes is the signed length of the installed release's full
	// bundle, what the update would have downloaded without deltas; 0
	// when nothing was installed.
	FullBytes int64
	// Deltas is the number of deltas applied to install Version; 0 when
	// the full release was downloaded (or nothing was installed).
	Deltas int
	// Fallback, when not "", is why the deltas planned from the
	// installed release were given up for the full release (a delta
	// missing, corrupt, not applying, or whose result is not the signed
	// release).
	Fallback string
}

// ServerError is why a server was skipped.
type ServerError struct {
	Server string // the URL, password redacted
	Err    error
}

func (e ServerError) Error() string { return e.Server + ": " + e.Err.Error() }

func (e ServerError) Unwrap() error { return e.Err }

// AllServersFailedError is returned by Update when no server could be
// used. The installed definitions are unchanged.
type AllServersFailedError struct {
	Installed string // the version still installed, "" for none
	Servers   []ServerError
}

func (e *AllServersFailedError) Error() string {
	var b strings.Builder
	b.WriteString("definitions update failed on every server, ")
	if e.Installed == "" {
		b.WriteString("no definitions installed")
	} else {
		b.WriteString("keeping installed version " + e.Installed)
	}
	for i, s := range e.Servers {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "[%d] %s", i+1, s.Error())
	}
	return b.String()
}

func (e *AllServersFailedError) Unwrap() []error {
	errs := make([]error, len(e.Servers))
	for i, s := range e.Servers {
		errs[i] = s
	}
	return errs
}

// ErrBusy is returned by Update when another process holds the StateDir's
// update lock.
var ErrBusy = errors.New("another definitions update is running on this state directory")

// Updater updates definitions. Its methods are safe for concurrent use.
type Updater struct {
	servers   []server
	pinned    []byte // the pinned root metadata
	pinnedVer int64
	stateDir  string
	metaDir   string
	dlDir     string
	defs      string
	client    *http.Client
	timeout   time.Duration
	limits    transport.RateLimits
	log       *slog.Logger
	// noDeltas makes Update always download the full release (the
	// benchmark's baseline).
	noDeltas bool

	mu sync.Mutex // serialises Update
}

// server is one parsed entry of Config.Servers.
type server struct {
	scheme string
	shown  string // for messages: password redacted
	base   string // the public directory: metadata at base/metadata, targets at base/targets
}

// Directories inside StateDir.
const (
	metadataSubdir = "metadata"
	downloadSubdir = "download"
	lockFile       = "update.lock"
)

// New checks cfg, reads the pinned root and creates the state and
// definitions directories. It does not contact any server.
func New(cfg Config) (*Updater, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("updater: no LiveUpdate servers configured")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("updater: no state directory configured")
	}
	if cfg.DefinitionsDir == "" {
		return nil, errors.New("updater: no definitions directory configured")
	}
	if cfg.TrustedRoot == "" {
		return nil, errors.New("updater: no trusted root metadata configured")
	}
	u := &Updater{
		stateDir: cfg.StateDir,
		metaDir:  filepath.Join(cfg.StateDir, metadataSubdir),
		dlDir:    filepath.Join(cfg.StateDir, downloadSubdir),
		defs:     cfg.DefinitionsDir,
		client:   cfg.HTTPClient,
		timeout:  cfg.Timeout,
		log:      cfg.Logger,
	}
	if u.timeout == 0 {
		u.timeout = transport.DefaultTimeout
	}
	var err error
	u.limits, err = transport.RateLimits{MinRate: cfg.MinRate, Window: cfg.RateWindow, Grace: cfg.RateGrace, Allowance: cfg.SessionAllowance}.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	if u.client == nil {
		u.client = transport.DefaultHTTPClient(u.timeout)
	}
	for _, raw := range cfg.Servers {
		s, err := parseServer(raw)
		if err != nil {
			return nil, err
		}
		u.servers = append(u.servers, s)
	}
	root, err := os.ReadFile(cfg.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("updater: trusted root: %w", err)
	}
	trusted, err := trustedmetadata.New(root)
	if err != nil {
		return nil, fmt.Errorf("updater: trusted root %s: not valid root metadata: %w", cfg.TrustedRoot, err)
	}
	u.pinned, u.pinnedVer = root, trusted.Root.Signed.Version
	for _, d := range []string{u.stateDir, u.metaDir, u.dlDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("updater: state directory: %w", err)
		}
	}
	if err := os.MkdirAll(u.defs, 0o755); err != nil {
		return nil, fmt.Errorf("updater: definitions directory: %w", err)
	}
	return u, nil
}

func parseServer(raw string) (server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return server{}, fmt.Errorf("updater: server %q: %w", raw, err)
	}
	shown := u.Redacted()
	switch u.Scheme {
	case "ftp", "http", "https":
	default:
		return server{}, fmt.Errorf("updater: server %s: want an ftp://, http:// or https:// URL", shown)
	}
	if u.Host == "" || u.Hostname() == "" {
		return server{}, fmt.Errorf("updater: server %s: no host", shown)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return server{}, fmt.Errorf("updater: server %s: a server URL takes no query or fragment", shown)
	}
	if u.User != nil && u.Scheme != "ftp" {
		return server{}, fmt.Errorf("updater: server %s: credentials in a URL are for ftp:// only", shown)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return server{scheme: u.Scheme, shown: shown, base: u.String()}, nil
}

// Installed returns the version that DefinitionsDir/current points to, ""
// when nothing is installed yet. It is an error for current to be
// something other than a link to an existing release.
func (u *Updater) Installed() (string, error) {
	return u.readLink(currentLink)
}

// Path returns the directory of the definitions in use,
// DefinitionsDir/releases/VERSION, or "" when none is installed. The
// directory does not change while it is in use: an update installs a new
// one, and a release is deleted only once two newer ones have been
// installed. Load definitions from Path() once per scan rather than
// through the current link, which may switch mid-scan.
func (u *Updater) Path() string {
	v, err := u.Installed()
	if err != nil || v == "" {
		return ""
	}
	return filepath.Join(u.defs, releasesSubdir, v)
}

// Update checks the servers in order for a newer definitions release and
// installs it; see the package documentation. On failure of every server
// it returns an *AllServersFailedError (and the Result with Skipped
// filled); if ctx ends first it returns ctx's error.
func (u *Updater) Update(ctx context.Context) (Result, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	unlock, err := lockState(filepath.Join(u.stateDir, lockFile))
	if err != nil {
		return Result{}, err
	}
	defer unlock()

	u.cleanup()
	installed, err := u.Installed()
	if err != nil {
		u.log.Warn("definitions: installed release unusable, reinstalling", "err", err)
		installed = ""
	}
	res := Result{Version: installed, Previous: installed}
	for _, s := range u.servers {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("definitions update: %w", context.Cause(ctx))
		}
		out, err := u.fromServer(ctx, s, installed, &res.Bytes)
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("definitions update: %s: %w", s.shown, context.Cause(ctx))
			}
			u.log.Warn("definitions: server skipped", "server", s.shown, "err", err)
			res.Skipped = append(res.Skipped, ServerError{Server: s.shown, Err: err})
			continue
		}
		res.Server, res.Version, res.Changed = s.shown, out.version, out.changed
		res.FullBytes, res.Deltas, res.Fallback = out.fullBytes, out.deltas, out.fallback
		if out.changed {
			u.log.Info("definitions: installed", "version", out.version, "previous", installed, "server", s.shown,
				"deltas", out.deltas, "bytes", res.Bytes, "full_bytes", out.fullBytes)
		} else {
			u.log.Debug("definitions: up to date", "version", out.version, "server", s.shown, "bytes", res.Bytes)
		}
		return res, nil
	}
	return res, &AllServersFailedError{Installed: installed, Servers: res.Skipped}
}

// fromOutcome is what fromServer did.
type fromOutcome struct {
	version   string // installed afterwards
	changed   bool
	fullBytes int64  // the signed length of version's full release, when changed
	deltas    int    // deltas applied
	fallback  string // why the planned deltas were given up, "" if they were not
}

// fromServer refreshes the trusted metadata from s and, if it lists a
// definitions release newer than installed, installs it: through the
// cheapest chain of signed deltas from installed when one costs less than
// the full release, else (or when the chain fails) from the full release.
// It adds the bytes it downloads to *bytes. The session with s ends at its
// deadline (see transport.RateLimits).
func (u *Updater) fromServer(ctx context.Context, s server, installed string, bytes *int64) (fromOutcome, error) {
	up, ctx, end, err := u.refresh(ctx, s, bytes)
	if err != nil {
		return fromOutcome{}, err
	}
	defer end()

	targets := up.GetTopLevelTargets()
	path, latest, ok := repo.LatestDefinitions(targets)
	if !ok {
		return fromOutcome{}, errors.New("the repository lists no definitions release")
	}
	if installed != "" && repo.CompareDefinitionsVersions(latest, installed) <= 0 {
		if latest != installed {
			u.log.Warn("definitions: server's newest release is older than the installed one",
				"server", s.shown, "server_version", latest, "installed", installed)
		}
		return fromOutcome{version: installed}, nil
	}

	tf := targets[path]
	out := fromOutcome{version: latest, changed: true, fullBytes: tf.Length}
	if chain, cost := u.plan(targets, installed, latest, tf.Length); chain != nil {
		u.log.Debug("definitions: updating through deltas", "from", installed, "to", latest, "deltas", len(chain),
			"delta_bytes", cost, "full_bytes", tf.Length, "server", s.shown)
		bundle, err := u.viaDeltas(ctx, up, targets, chain, installed, latest)
		if err == nil {
			if err := u.install(latest, bundle); err != nil {
				return fromOutcome{}, err
			}
			out.deltas = len(chain)
			return out, nil
		}
		if ctx.Err() != nil {
			return fromOutcome{}, err
		}
		u.log.Warn("definitions: delta update failed, downloading the full release", "from", installed, "to", latest,
			"server", s.shown, "err", err)
		out.fallback = err.Error()
	}

	tmp := filepath.Join(u.dlDir, latest+".tar")
	defer os.Remove(tmp)
	_, data, err := up.DownloadTarget(tf, tmp, "")
	if err != nil {
		return fromOutcome{}, explainTarget(path, err)
	}
	u.hook("downloaded")
	if err := u.install(latest, data); err != nil {
		return fromOutcome{}, err
	}
	return out, nil
}

// refresh opens a session with s (its deadline and byte budget: see
// transport.RateLimits) and refreshes the trusted metadata from it with
// go-tuf. It returns go-tuf's updater, the session's context and the
// function that ends the session; the bytes downloaded are added to
// *bytes unless bytes is nil.
func (u *Updater) refresh(ctx context.Context, s server, bytes *int64) (*tufupdater.Updater, context.Context, func(), error) {
	ctx, budget, endSession := u.limits.Session(ctx)
	base, release := transport.NewFetcher(ctx, s.scheme, u.client, u.timeout, u.limits)
	end := func() { release(); endSession() }
	f := &recordingFetcher{f: transport.BudgetFetcher(base, budget), bytes: bytes}
	cfg, err := repo.ClientConfig(s.base, u.trustedRoot())
	if err != nil {
		end()
		return nil, nil, nil, err
	}
	cfg.LocalMetadataDir = u.metaDir
	cfg.LocalTargetsDir = u.dlDir
	cfg.PrefixTargetsWithHash = true
	cfg.Fetcher = f
	up, err := tufupdater.New(cfg)
	if err != nil {
		end()
		return nil, nil, nil, fmt.Errorf("loading trusted metadata: %w", err)
	}
	if err := up.Refresh(); err != nil {
		end()
		return nil, nil, nil, explainRefresh(f.last, err)
	}
	syncMetadata(u.metaDir)
	return up, ctx, end, nil
}

// plan is planDeltas, unless deltas are turned off (noDeltas).
func (u *Updater) plan(targets map[string]*metadata.TargetFiles, from, to string, full int64) ([]repo.DeltaTarget, int64) {
	if u.noDeltas {
		return nil, 0
	}
	return planDeltas(targets, from, to, full)
}

// trustedRoot returns the root to start from: the newest root already
// verified (StateDir/metadata/root.json) if it is valid and at least as new
// as the pinned one, else the pinned root.
func (u *Updater) trustedRoot() []byte {
	p := filepath.Join(u.metaDir, metadata.ROOT+".json")
	local, err := os.ReadFile(p)
	if err != nil {
		return u.pinned
	}
	t, err := trustedmetadata.New(local)
	if err != nil {
		u.log.Warn("definitions: ignoring unusable stored root metadata", "path", p, "err", err)
		return u.pinned
	}
	if t.Root.Signed.Version < u.pinnedVer {
		return u.pinned
	}
	return local
}

// explainRefresh turns a metadata refresh failure into a clear error.
// last is the URL of the last file fetched, the one being checked.
func explainRefresh(last string, err error) error {
	what := "metadata"
	if i := strings.LastIndexByte(last, '/'); i >= 0 {
		what = "metadata " + last[i+1:]
	}
	switch {
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return fmt.Errorf("%s refused: bad or missing signatures (tampered, or signed by keys the agent does not trust): %w", what, err)
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return fmt.Errorf("%s refused: expired: %w", what, err)
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return fmt.Errorf("%s refused: older than metadata already trusted (rollback) or inconsistent versions: %w", what, err)
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return fmt.Errorf("%s refused: does not match its signed hash or length (tampered?): %w", what, err)
	case errors.Is(err, &metadata.ErrRepository{}), transport.IsTooLong(err):
		return fmt.Errorf("%s refused: %w", what, err)
	}
	return fmt.Errorf("fetching metadata: %w", err)
}

// recordingFetcher remembers the last URL it was asked for, to name the
// file in errors, and, when bytes is not nil, adds to it the length of
// every file it fetches (whether or not it then verifies).
type recordingFetcher struct {
	f     fetcher.Fetcher
	last  string
	bytes *int64
}

func (r *recordingFetcher) DownloadFile(url string, maxLength int64, timeout time.Duration) ([]byte, error) {
	r.last = url
	data, err := r.f.DownloadFile(url, maxLength, timeout)
	if r.bytes != nil {
		*r.bytes += int64(len(data))
	}
	return data, err
}

// explainTarget turns a target download failure into a clear error.
func explainTarget(path string, err error) error {
	switch {
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return fmt.Errorf("%s refused: does not match its signed hash or length (tampered?): %w", path, err)
	case transport.IsTooLong(err):
		return fmt.Errorf("%s refused: larger than its signed length: %w", path, err)
	}
	return fmt.Errorf("downloading %s: %w", path, err)
}

// hook, when set, is called at each stage of an installation (tests kill
// the process there).
var testHook func(stage string)

func (u *Updater) hook(stage string) {
	if testHook != nil {
		testHook(stage)
	}
}
