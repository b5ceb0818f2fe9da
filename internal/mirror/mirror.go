package mirror

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/dnsname"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// Names inside the local repository directory.
const (
	metaDir    = "metadata"
	targetsDir = "targets"
	workDir    = ".mirror"  // never served: the LiveUpdate server hides dot-names
	partialDir = "partial"  // under workDir: downloads in progress
	sessionDir = "session"  // under workDir: go-tuf's cache for one session
	lockName   = "lock"     // under workDir
	tmpPrefix  = ".mirror-" // temporary names elsewhere
)

// Config configures a Mirror.
type Config struct {
	// Upstream is the URL of the vendor repository's public directory:
	// ftp://NAME[:PORT]/PATH, http://NAME[:PORT]/PATH or
	// https://NAME[:PORT]/PATH. Every address NAME resolves to is probed.
	Upstream string
	// Root is the pinned root metadata (the repository's 1.root.json).
	Root []byte
	// Dir is the local repository: DIR/metadata and DIR/targets, as
	// `vigil liveupdate -root DIR` serves them. Created if missing.
	Dir string
	// Resolver is a DNS server's "host:port" to resolve NAME with; empty
	// means the system's resolver (see dnsname.Resolve).
	Resolver string
	// Parallel is the number of simultaneous target downloads (default
	// 4, at most config.MaxMirrorParallel).
	Parallel int
	// Keep is the number of previous states kept besides the current one
	// (0: only the current one). Clients that are in the middle of an
	// update when the mirror publishes finish it with a kept state.
	Keep int
	// Timeout bounds every wait on an address: connecting, a reply, any
	// pause in a transfer, a DNS query (default DefaultTimeout).
	Timeout time.Duration
	// MinRate, RateWindow and RateGrace are the slow-retrieval defence
	// (transport.RateLimits): every transfer, metadata or target, must
	// average at least MinRate bytes per second over the last RateWindow,
	// from RateGrace after its request on. SessionAllowance is the fixed
	// part of the deadline of a session on one address: SessionAllowance
	// plus the signed sizes of what the session fetches at MinRate. An
	// address too slow is abandoned for the next one. Zero values take
	// the updater's defaults (config.DefaultMinRate...); a negative
	// MinRate turns the defence off.
	MinRate          int64
	RateWindow       time.Duration
	RateGrace        time.Duration
	SessionAllowance time.Duration
	// TLS is the client TLS configuration for https:// upstreams (nil:
	// the system's roots). ServerName is always the upstream's NAME.
	TLS *tls.Config
	// Out receives what the mirror finds and does, line by line (the
	// resolution as host(1) prints it, each address probed, the choice,
	// what was published and pruned). Nil: discarded.
	Out io.Writer
	// Progress, if set, is told about every target download.
	Progress Progress
	// Version, GOOS and GOARCH are what the self-update check compares
	// the newest release with (defaults: buildinfo.String(),
	// runtime.GOOS, runtime.GOARCH).
	Version, GOOS, GOARCH string
	// SelfUpdateExe, if set, is the executable replaced by the newest
	// release for GOOS/GOARCH when it is newer than Version (see
	// SelfUpdate). Empty: check and report only.
	SelfUpdateExe string
}

// Mirror syncs one upstream into one local directory.
type Mirror struct {
	cfg       Config
	scheme    string // ftp, http, https
	host      string // host part of the URL: name[:port]
	name      string // host name (or address literal) of the URL
	port      string
	path      string // URL path, no trailing slash
	shown     string // the upstream URL, for messages
	pinnedVer int64
	limits    transport.RateLimits

	outMu sync.Mutex
	mu    sync.Mutex // one Sync at a time

	fillMu      sync.Mutex
	lastAddr    netip.Addr                  // the address of the last session (FetchTarget tries it first)
	fillClients map[netip.Addr]*http.Client // FetchTarget's HTTP clients, by address
}

// New checks cfg. It contacts nothing and writes nothing.
func New(cfg Config) (*Mirror, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("mirror: no upstream URL")
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("mirror: upstream %q: %w", cfg.Upstream, err)
	}
	m := &Mirror{cfg: cfg, scheme: strings.ToLower(u.Scheme), host: u.Host, name: u.Hostname(), port: u.Port()}
	switch m.scheme {
	case "ftp":
		if m.port == "" {
			m.port = "21"
		}
	case "http":
		if m.port == "" {
			m.port = "80"
		}
	case "https":
		if m.port == "" {
			m.port = "443"
		}
	default:
		return nil, fmt.Errorf("mirror: upstream %s: want an ftp://, http:// or https:// URL", u.Redacted())
	}
	if m.name == "" {
		return nil, fmt.Errorf("mirror: upstream %s: no host name", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("mirror: upstream %s: credentials in the URL are not supported (anonymous FTP, plain HTTP)", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("mirror: upstream %s: a repository URL takes no query or fragment", u.Redacted())
	}
	m.path = strings.TrimRight(u.Path, "/")
	m.shown = u.Redacted()
	if len(cfg.Root) == 0 {
		return nil, errors.New("mirror: no pinned root metadata")
	}
	tm, err := trustedmetadata.New(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("mirror: pinned root: not valid root metadata: %w", err)
	}
	if !tm.Root.Signed.ConsistentSnapshot {
		return nil, errors.New("mirror: pinned root: the repository does not use consistent snapshots, so a mirror cannot keep states apart")
	}
	m.pinnedVer = tm.Root.Signed.Version
	if cfg.Dir == "" {
		return nil, errors.New("mirror: no local repository directory")
	}
	if m.cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	switch {
	case cfg.Parallel == 0:
		m.cfg.Parallel = config.DefaultMirrorParallel
	case cfg.Parallel < 0 || cfg.Parallel > config.MaxMirrorParallel:
		return nil, fmt.Errorf("mirror: parallel downloads %d: want 1 to %d", cfg.Parallel, config.MaxMirrorParallel)
	}
	if cfg.Keep < 0 {
		return nil, fmt.Errorf("mirror: keep %d: want 0 or more previous states", cfg.Keep)
	}
	if m.cfg.Timeout <= 0 {
		m.cfg.Timeout = config.DefaultMirrorTimeout
	}
	m.limits, err = transport.RateLimits{MinRate: cfg.MinRate, Window: cfg.RateWindow, Grace: cfg.RateGrace, Allowance: cfg.SessionAllowance}.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if m.cfg.Out == nil {
		m.cfg.Out = io.Discard
	}
	if m.cfg.Version == "" {
		m.cfg.Version = buildinfo.String()
	}
	if m.cfg.GOOS == "" {
		m.cfg.GOOS = runtime.GOOS
	}
	if m.cfg.GOARCH == "" {
		m.cfg.GOARCH = runtime.GOARCH
	}
	return m, nil
}

// Dir is the local repository directory (absolute).
func (m *Mirror) Dir() string { return m.cfg.Dir }

// printf writes one line of the report to Config.Out.
func (m *Mirror) printf(format string, args ...any) {
	m.outMu.Lock()
	defer m.outMu.Unlock()
	fmt.Fprintf(m.cfg.Out, format, args...)
}

// Summary is what one sync did; it is also the machine-readable report.
type Summary struct {
	Upstream   string              `json:"upstream"`
	Dir        string              `json:"dir"`
	Resolution *dnsname.Resolution `json:"resolution,omitempty"`
	// Probes has one entry per address, in the order resolved.
	Probes []Probe `json:"probes"`
	// Chosen is the address the published state came from ("" if none).
	Chosen string `json:"chosen,omitempty"`
	// Reason says why Chosen was chosen.
	Reason string `json:"reason,omitempty"`
	// Skipped lists the addresses not used, and why, in order.
	Skipped []Skip `json:"skipped"`
	// UpToDate reports that the local copy already had the newest state.
	UpToDate bool `json:"up_to_date"`
	// Behind is set when the sync ended with a state older than the
	// newest one an address announced (a verified timestamp) but could
	// not deliver; Sync then returns a *BehindError.
	Behind *Behind       `json:"behind,omitempty"`
	Before StateVersions `json:"before"`
	After  StateVersions `json:"after"`
	// RootsFirst reports the publication order used for new roots.
	RootsFirst bool     `json:"roots_first,omitempty"`
	Fetched    Transfer `json:"fetched"`
	Pruned     Pruned   `json:"pruned"`
	// Warnings are things the operator should know about.
	Warnings   []string         `json:"warnings,omitempty"`
	SelfUpdate *SelfUpdateCheck `json:"self_update,omitempty"`
	Started    time.Time        `json:"started"`
	Seconds    float64          `json:"seconds"`
	// Error is why the sync failed; empty on success.
	Error string `json:"error,omitempty"`

	refusals int // probes and sessions that failed on ErrRefused
}

// Refusals counts the probes and sessions of the sync that failed because
// what an address served did not verify (ErrRefused): a bad signature,
// expired or rolled-back metadata, a hash or length mismatch.
func (s *Summary) Refusals() int { return s.refusals }

// Behind says that the local copy is older than the newest state seen.
type Behind struct {
	// Have is the timestamp version of the local copy after the sync
	// (0: none).
	Have int64 `json:"have"`
	// Newest is the highest verified timestamp version an address
	// announced, and Address the address that announced it.
	Newest  int64  `json:"newest"`
	Address string `json:"address"`
	// Failed lists the sessions on the addresses that announced a newer
	// state than Have, and why each failed.
	Failed []Skip `json:"failed"`
}

// Probe is the result of probing one address.
type Probe struct {
	Address          string  `json:"address"`
	TimestampVersion int64   `json:"timestamp_version,omitempty"`
	SnapshotVersion  int64   `json:"snapshot_version,omitempty"`
	RootVersion      int64   `json:"root_version,omitempty"`
	Millis           float64 `json:"ms"`
	Error            string  `json:"error,omitempty"`
}

// Skip is an address that was not used.
type Skip struct {
	Address string `json:"address"`
	// Stage is "probe" (before any session) or "session" (a session on
	// it failed and was abandoned).
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
}

// StateVersions are the versions of a published state (zero: none).
type StateVersions struct {
	Root      int64 `json:"root"`
	Timestamp int64 `json:"timestamp"`
	Snapshot  int64 `json:"snapshot"`
	Targets   int64 `json:"targets"`
	// TargetFiles is the number of targets the state lists.
	TargetFiles int `json:"target_files"`
}

// Transfer counts what was fetched from the upstream.
type Transfer struct {
	MetadataFiles int   `json:"metadata_files"`
	MetadataBytes int64 `json:"metadata_bytes"`
	TargetFiles   int   `json:"target_files"`
	TargetBytes   int64 `json:"target_bytes"`
	// Resumed counts targets whose download continued a partial file.
	Resumed int `json:"resumed"`
	// Present counts targets of the new state the local copy already had.
	Present int `json:"present"`
	// Built counts definitions releases built from a release the local
	// copy held and deltas (and verified) instead of downloaded;
	// BuiltBytes is their length.
	Built      int   `json:"built,omitempty"`
	BuiltBytes int64 `json:"built_bytes,omitempty"`
}

// Pruned counts what pruning deleted.
type Pruned struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// BusyError is returned when another mirror process holds the local
// directory's lock.
type BusyError struct{ Dir string }

func (e *BusyError) Error() string {
	return fmt.Sprintf("another mirror is syncing %s (lock %s held)", e.Dir, filepath.Join(e.Dir, workDir, lockName))
}

// BehindError is returned by Sync when the local copy ends the sync older
// than the newest state an address announced (and proved, with a
// verified timestamp) but could not deliver: the sessions on every
// address with a newer state failed. The local copy is complete and
// verifies (the previous state, or a newer one that is not the newest).
type BehindError struct{ Behind }

func (e *BehindError) Error() string {
	var b strings.Builder
	if e.Have == 0 {
		b.WriteString("behind: the local copy has no state")
	} else {
		fmt.Fprintf(&b, "behind: the local copy has timestamp version %d", e.Have)
	}
	fmt.Fprintf(&b, ", but %s serves timestamp version %d (verified), which could not be fetched", e.Address, e.Newest)
	for i, f := range e.Failed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "session on %s: %s", f.Address, f.Reason)
	}
	return b.String()
}

// NoAddressError is returned when no address could be used.
type NoAddressError struct {
	Name    string
	Skipped []Skip
}

func (e *NoAddressError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no usable address for %s", e.Name)
	for i, s := range e.Skipped {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s): %s", s.Address, s.Stage, s.Reason)
	}
	return b.String()
}

// testHook, when set (by tests), is called at every step boundary of a
// sync; the crash tests kill the process there.
var testHook func(step string)

func hook(format string, args ...any) {
	if testHook != nil {
		testHook(fmt.Sprintf(format, args...))
	}
}

// Sync runs one sync (see the package documentation). It returns the
// summary, with Error set, also on failure; the local repository is then
// as it was or holds a newer complete state.
func (m *Mirror) Sync(ctx context.Context) (*Summary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	sum := &Summary{Upstream: m.shown, Dir: m.cfg.Dir, Started: start.UTC(), Probes: []Probe{}, Skipped: []Skip{}}
	err := m.sync(ctx, sum, false)
	sum.Seconds = time.Since(start).Seconds()
	if err != nil {
		sum.Error = err.Error()
	}
	return sum, err
}

// sync runs one sync; with metaOnly (SyncMetadata) it publishes the
// metadata of the new state without its targets.
func (m *Mirror) sync(ctx context.Context, sum *Summary, metaOnly bool) error {
	// Before anything is created: a directory holding another
	// repository is refused untouched.
	if err := m.checkPinnedRoot(); err != nil {
		return err
	}
	if err := m.prepareDir(); err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Join(m.cfg.Dir, workDir, lockName))
	if err != nil {
		if errors.Is(err, errLocked) {
			return &BusyError{Dir: m.cfg.Dir}
		}
		return err
	}
	defer unlock()

	local, err := m.loadLocal()
	if err != nil {
		return err
	}
	sum.Warnings = append(sum.Warnings, local.warnings...)
	for _, w := range local.warnings {
		m.printf("warning: %s\n", w)
	}
	sum.Before = local.versions()
	sum.After = sum.Before
	hook("loaded")

	res, err := dnsname.Resolve(ctx, m.name, m.cfg.Resolver, min(m.cfg.Timeout, 5*time.Second))
	if err != nil {
		return fmt.Errorf("resolving %s: %w", m.name, err)
	}
	sum.Resolution = res
	if res.Resolver != "none" {
		m.printf("Resolved %s with %s:\n", m.name, res.Resolver)
		m.outMu.Lock()
		res.WriteHost(m.cfg.Out)
		m.outMu.Unlock()
	}
	hook("resolved")

	probes := m.probeAll(ctx, res.Addrs, local)
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	var cands []*probeResult
	for _, p := range probes {
		sum.Probes = append(sum.Probes, p.summary())
		sum.Fetched.MetadataFiles += p.files
		sum.Fetched.MetadataBytes += p.bytes
		switch {
		case p.err != nil:
			m.printf("  %-15s skipped: %v\n", p.addr, p.err)
			if errors.Is(p.err, ErrRefused) {
				sum.refusals++
			}
			sum.Skipped = append(sum.Skipped, Skip{Address: p.addr.String(), Stage: "probe", Reason: p.err.Error()})
		default:
			m.printf("  %-15s timestamp version %d (snapshot %d, root %d), answered in %s\n",
				p.addr, p.tsVersion, p.snapVersion, p.rootVersion, roundDur(p.latency))
			cands = append(cands, p)
		}
	}
	hook("probed")
	slices.SortStableFunc(cands, func(a, b *probeResult) int {
		if a.tsVersion != b.tsVersion {
			if a.tsVersion > b.tsVersion {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.latency, b.latency)
	})
	if len(cands) == 0 {
		return &NoAddressError{Name: m.name, Skipped: sum.Skipped}
	}

	var published *newState
	type failure struct {
		Skip
		ts int64 // the timestamp version the address announced
	}
	var failed []failure // sessions that failed
	for i, c := range cands {
		reason := chooseReason(c, cands[i+1:], i > 0)
		if local.has && c.tsVersion == local.ts.Signed.Version && c.rootVersion == local.root.Signed.Version && (len(local.missing) == 0 || metaOnly) {
			sum.Chosen, sum.Reason = c.addr.String(), reason+"; the local copy already has it"
			if len(failed) == 0 {
				sum.UpToDate = true
				m.printf("Up to date: %s has timestamp version %d, which the local copy has, complete\n", c.addr, c.tsVersion)
			} else {
				m.printf("Not up to date: %s has timestamp version %d, which the local copy has, but newer states could not be fetched\n", c.addr, c.tsVersion)
			}
			break
		}
		m.printf("Session on %s: %s\n", c.addr, reason)
		hook("session %s", c.addr)
		ns, err := m.session(ctx, c.addr, local, sum, metaOnly)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			var pe *publishError
			if errors.As(err, &pe) {
				return err // the local disk, not the address
			}
			m.printf("  session on %s abandoned: %v\n", c.addr, err)
			if errors.Is(err, ErrRefused) {
				sum.refusals++
			}
			sk := Skip{Address: c.addr.String(), Stage: "session", Reason: err.Error()}
			sum.Skipped = append(sum.Skipped, sk)
			failed = append(failed, failure{sk, c.tsVersion})
			continue
		}
		sum.Chosen, sum.Reason = c.addr.String(), reason
		m.setLastAddr(c.addr)
		if ns.tsVersion() == local.tsVersion() && ns.tsVersion() != c.tsVersion {
			sum.Reason += fmt.Sprintf(" (it served timestamp version %d by the time of the session)", ns.tsVersion())
		}
		published = ns
		break
	}
	if sum.Chosen == "" {
		return &NoAddressError{Name: m.name, Skipped: sum.Skipped}
	}
	// Behind: an address proved a newer state than the one the local
	// copy ends with, and its session failed.
	var behind *BehindError
	have := local.tsVersion()
	if published != nil {
		have = published.tsVersion()
	}
	if newest := cands[0]; newest.tsVersion > have {
		behind = &BehindError{Behind{Have: have, Newest: newest.tsVersion, Address: newest.addr.String()}}
		for _, f := range failed {
			if f.ts > have {
				behind.Failed = append(behind.Failed, f.Skip)
			}
		}
		sum.Behind = &behind.Behind
	}
	targets := local.targetsMap()
	if published != nil {
		sum.After = published.versions()
		sum.RootsFirst = published.rootsFirst
		if published.warning != "" {
			sum.Warnings = append(sum.Warnings, published.warning)
		}
		targets = published.targets.Signed.Targets
		m.printf("Published timestamp version %d, snapshot %d, targets %d, root %d (%d targets)\n",
			sum.After.Timestamp, sum.After.Snapshot, sum.After.Targets, sum.After.Root, sum.After.TargetFiles)
		pr, err := m.prune(metaOnly)
		sum.Pruned = pr
		if err != nil {
			w := fmt.Sprintf("pruning: %v", err)
			sum.Warnings = append(sum.Warnings, w)
			m.printf("warning: %s\n", w)
		} else if pr.Files > 0 {
			m.printf("Pruned %d files (%s) that no kept state references\n", pr.Files, transport.HumanBytes(pr.Bytes))
		}
		hook("pruned")
	}
	if !metaOnly {
		sum.SelfUpdate = m.selfUpdateCheck(ctx, targets)
	}
	if behind != nil {
		m.printf("Behind: %s serves timestamp version %d (verified) and the local copy has %s: see the sessions abandoned above\n",
			behind.Address, behind.Newest, versionOrNone(behind.Have))
		return behind
	}
	return nil
}

// versionOrNone is "version N", or "no state" for 0.
func versionOrNone(v int64) string {
	if v == 0 {
		return "no state"
	}
	return fmt.Sprintf("version %d", v)
}

// chooseReason explains why c was chosen over the rest.
func chooseReason(c *probeResult, rest []*probeResult, fallback bool) string {
	var b strings.Builder
	if fallback {
		b.WriteString("next best after a failed session: ")
	}
	fmt.Fprintf(&b, "highest verified timestamp version (%d)", c.tsVersion)
	var ties []string
	for _, o := range rest {
		if o.tsVersion == c.tsVersion {
			ties = append(ties, fmt.Sprintf("%s in %s", o.addr, roundDur(o.latency)))
		}
	}
	if len(ties) > 0 {
		fmt.Fprintf(&b, ", fastest to answer (%s, vs %s)", roundDur(c.latency), strings.Join(ties, ", "))
	}
	return b.String()
}

// checkPinnedRoot refuses, before anything is created or changed, a
// local directory whose root metadata for the pinned version is not the
// pinned root: it holds a copy of another repository. (loadLocal checks
// again under the lock.)
func (m *Mirror) checkPinnedRoot() error {
	name := fmt.Sprintf("%d.root.json", m.pinnedVer)
	b, err := os.ReadFile(m.metaPath(name))
	switch {
	case err == nil && !bytes.Equal(b, m.cfg.Root):
		return m.otherRepository(name)
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	}
	return fmt.Errorf("local repository: %w", err)
}

// otherRepository is the error for a local directory holding another
// repository, whose root metadata file name differs from the pinned root.
func (m *Mirror) otherRepository(name string) error {
	return fmt.Errorf("%s differs from the pinned root: %s holds a copy of another repository; give another directory (nothing was changed)", m.metaPath(name), m.cfg.Dir)
}

// prepareDir creates the local directory's layout if missing.
func (m *Mirror) prepareDir() error {
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{
		{m.cfg.Dir, 0o755},
		{filepath.Join(m.cfg.Dir, metaDir), 0o755},
		{filepath.Join(m.cfg.Dir, targetsDir), 0o755},
		{filepath.Join(m.cfg.Dir, workDir), 0o700},
		{filepath.Join(m.cfg.Dir, workDir, partialDir), 0o700},
	} {
		if err := os.MkdirAll(d.p, d.mode); err != nil {
			return fmt.Errorf("local repository: %w", err)
		}
	}
	return nil
}

// endpoint returns how to reach the upstream at addr.
func (m *Mirror) endpoint(addr netip.Addr) *endpoint {
	return &endpoint{scheme: m.scheme, host: m.host, name: m.name, port: m.port, addr: addr, path: m.path,
		tls: m.cfg.TLS, timeout: m.cfg.Timeout, limits: m.limits, userAgent: "vigil-mirror/" + m.cfg.Version}
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// dialer is what every connection goes through: connect to addr, never
// to a name.
func dialTCP(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}
