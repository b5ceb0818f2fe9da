package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/signatures"
)

// repoCommands are the subcommands of vigil repo.
var repoCommands = []struct {
	name, summary string
	run           func(env *Env, args []string) error
}{
	{"init", "create a repository and its keys", repoInit},
	{"add-definitions", "stage a definitions release: VERSION FILE... (signature files, ClamAV .cvd/.cld/.cud containers)", repoAddDefinitions},
	{"add-release", "stage a Vigil release: -os OS -arch ARCH VERSION BINARY", repoAddRelease},
	{"publish", "sign and publish what is staged (new targets, snapshot and timestamp; deltas to a new definitions release)", repoPublish},
	{"refresh-timestamp", "re-sign timestamp.json with a new expiry (run from cron)", repoRefreshTimestamp},
	{"sign-root", "re-sign root with a new expiry, optionally rotating online keys (needs the root key)", repoSignRoot},
	{"signatures", "list a definitions release's signatures not matched, lines skipped and files ignored: [-release VERSION]", repoSignatures},
	{"status", "show what is published (definitions with their full and delta sizes) and staged, and warn of coming expiries", repoStatus},
}

func repoUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: vigil repo COMMAND [flags] [arguments]\n\nThe vendor's publishing tool over a TUF repository (docs/repository.md).\n\nCommands:\n")
	for _, c := range repoCommands {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nEvery command takes -dir DIR (default $VIGIL_REPO, else the current directory).\nRun 'vigil repo COMMAND -h' for a command's flags.\n")
}

func runRepo(_ context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		repoUsage(env.Stderr)
		return usageError{errors.New("name a repo command")}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		repoUsage(env.Stderr)
		return flag.ErrHelp
	}
	for _, c := range repoCommands {
		if c.name == args[0] {
			return c.run(env, args[1:])
		}
	}
	repoUsage(env.Stderr)
	return usageError{fmt.Errorf("unknown repo command %q", args[0])}
}

// repoFlags registers -dir on a repo subcommand's flag set.
func repoFlags(env *Env, name, synopsis string) (*flag.FlagSet, *string) {
	fs := newFlags(env, "repo "+name, synopsis)
	def := env.Getenv("VIGIL_REPO")
	if def == "" {
		def = "."
	}
	dir := fs.String("dir", def, "repository directory (env VIGIL_REPO)")
	return fs, dir
}

// expiryFlags are the expiry periods a command may set; zero means the
// repository's configured period.
type expiryFlags struct {
	root, targets, snapshot, timestamp time.Duration
}

func (e *expiryFlags) register(fs *flag.FlagSet, roles string, defaults bool) {
	def := func(d time.Duration) time.Duration {
		if defaults {
			return d
		}
		return 0
	}
	help := func(role string) string {
		if defaults {
			return "validity of " + role + " metadata"
		}
		return "validity of the new " + role + " metadata (default: the repository's, in config.json)"
	}
	if strings.Contains(roles, "r") {
		fs.DurationVar(&e.root, "root-expires", def(publish.DefaultRootExpires), help("root"))
	}
	if strings.Contains(roles, "t") {
		fs.DurationVar(&e.targets, "targets-expires", def(publish.DefaultTargetsExpires), help("targets"))
	}
	if strings.Contains(roles, "s") {
		fs.DurationVar(&e.snapshot, "snapshot-expires", def(publish.DefaultSnapshotExpires), help("snapshot"))
	}
	if strings.Contains(roles, "T") {
		fs.DurationVar(&e.timestamp, "timestamp-expires", def(publish.DefaultTimestampExpires), help("timestamp"))
	}
}

// check refuses non-positive values the user gave.
func (e *expiryFlags) check(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		if d, ok := g.Get().(time.Duration); ok && d < time.Second && err == nil {
			err = usageError{fmt.Errorf("-%s %v: want a positive duration such as 24h", f.Name, d)}
		}
	})
	return err
}

// parseAndOpen parses a repo subcommand's flags (which take no
// positional arguments), checks its expiry flags if it has any, and opens
// the repository in dir.
func parseAndOpen(fs *flag.FlagSet, args []string, dir *string, ef *expiryFlags) (*publish.Repo, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if err := noArgs(fs); err != nil {
		return nil, err
	}
	if ef != nil {
		if err := ef.check(fs); err != nil {
			return nil, err
		}
	}
	return publish.Open(*dir)
}

// noArgs refuses positional arguments.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

func repoInit(env *Env, args []string) error {
	fs, dir := repoFlags(env, "init", "[-dir DIR] [-root-keys DIR] [-root-expires D] [-targets-expires D] [-snapshot-expires D] [-timestamp-expires D] [-deltas K]")
	rootKeys := fs.String("root-keys", "", "directory for the root key, e.g. on removable media (default DIR/keys/root)")
	deltas := fs.Int("deltas", publish.DefaultDeltaReleases, deltasHelp+" (stored in config.json as delta_releases)")
	var ef expiryFlags
	ef.register(fs, "rtsT", true)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := ef.check(fs); err != nil {
		return err
	}
	if err := checkDeltasFlag(*deltas); err != nil {
		return err
	}
	r, err := publish.Init(*dir, publish.Options{
		Expiries:      publish.Expiries{Root: ef.root, Targets: ef.targets, Snapshot: ef.snapshot, Timestamp: ef.timestamp},
		RootKeysDir:   *rootKeys,
		DeltaReleases: deltas,
	})
	if err != nil {
		return err
	}
	rk := *rootKeys
	if rk == "" {
		rk = r.Dir() + "/keys/root"
	}
	fmt.Fprintf(env.Stdout, "Created repository %s\n", r.Dir())
	fmt.Fprintf(env.Stdout, "  serve:        %s (metadata/ and targets/)\n", r.PublicDir())
	fmt.Fprintf(env.Stdout, "  clients pin:  %s\n", r.RootPath())
	fmt.Fprintf(env.Stdout, "  root key:     %s — move it offline; give -root-keys to sign-root\n", rk)
	fmt.Fprintf(env.Stdout, "  online keys:  %s/keys/{targets,snapshot,timestamp}.key\n", r.Dir())
	fmt.Fprintf(env.Stdout, "Re-sign the timestamp well within %v: vigil repo refresh-timestamp -dir %s\n", r.Expiries().Timestamp, r.Dir())
	return nil
}

func repoAddDefinitions(env *Env, args []string) error {
	fs, dir := repoFlags(env, "add-definitions", "[-dir DIR] [-cvd-key FILE] VERSION FILE...")
	keyFile := fs.String("cvd-key", "", "PEM RSA public key that signs the .cvd/.cld containers given (default: ClamAV's published keys)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usageError{errors.New("give a version (digits, e.g. 2026112501) and at least one signature file or ClamAV container (.cvd, .cld, .cud)")}
	}
	version := fs.Arg(0)
	if err := repo.CheckDefinitionsVersion(version); err != nil {
		return usageError{err}
	}
	keys, err := containerKeys(*keyFile)
	if err != nil {
		return err
	}
	r, err := publish.Open(*dir)
	if err != nil {
		return err
	}
	a, err := r.AddDefinitionsFrom(version, fs.Args()[1:], publish.DefinitionsOptions{Keys: keys, Keep: loadableSignatureFile})
	if err != nil {
		return err
	}
	for _, c := range a.Containers {
		fmt.Fprintf(env.Stdout, "Verified %s\n", containerText(c))
	}
	if len(a.Left) > 0 {
		fmt.Fprintf(env.Stdout, "Left out (not a database file ClamAV reads): %s\n", strings.Join(a.Left, ", "))
	}
	fmt.Fprintf(env.Stdout, "Signatures: %s\n", countText(a.Signatures))
	if n := a.Signatures; n.NotMatched+n.Skipped+n.IgnoredFiles > 0 {
		fmt.Fprintf(env.Stdout, "  vigil repo signatures -release %s lists those not matched, skipped and ignored\n", version)
	}
	fmt.Fprintf(env.Stdout, "Staged %s (%d file(s)); run vigil repo publish to publish it\n  files: %s\n", a.Path, len(a.Files), strings.Join(a.Files, ", "))
	return nil
}

// countText describes the signature counts of a definitions release.
func countText(n repo.SignatureCount) string {
	return fmt.Sprintf("%d hash, %d body, %d logical (ClamAV counts %d); %d not matched, %d lines skipped, %d files ignored",
		n.Hash, n.Body, n.Logical, n.ClamAV, n.NotMatched, n.Skipped, n.IgnoredFiles)
}

// releaseCountText is countText of a release's custom metadata; "" when
// it carries no counts (staged by an older vigil, or in memory by tests).
func releaseCountText(c repo.Custom) string {
	if c.Signatures == nil {
		return ""
	}
	return "signatures: " + countText(*c.Signatures)
}

// repoSignatures is vigil repo signatures: Set.WriteDebug of a
// definitions release, the listing vigil scan -debug prints for the same
// files.
func repoSignatures(env *Env, args []string) error {
	fs, dir := repoFlags(env, "signatures", "[-dir DIR] [-release VERSION]")
	release := fs.String("release", "", "the definitions release (default: the newest, published or staged)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *release != "" {
		if err := repo.CheckDefinitionsVersion(*release); err != nil {
			return usageError{fmt.Errorf("-release: %w", err)}
		}
	}
	r, err := publish.Open(*dir)
	if err != nil {
		return err
	}
	rs, err := r.DefinitionsSignatures(*release)
	if err != nil {
		return err
	}
	state := "published"
	if rs.Staged {
		state = "staged"
	}
	fmt.Fprintf(env.Stdout, "Definitions %s (%s, %s)\n", rs.Target.Custom.Version, rs.Target.Path, state)
	var b strings.Builder
	if err := rs.Set.WriteDebug(&b); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(env.Stdout, "%s\n", safe(line))
	}
	return nil
}

// containerKeys are the keys containers are checked against: ClamAV's
// (nil) unless a key file is given, whose key then checks both the
// header's and the .info's signatures.
func containerKeys(file string) (*cvd.Keys, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-cvd-key: %w", err)
	}
	pub, err := cvd.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("-cvd-key %s: %w", file, err)
	}
	k := cvd.KeysOf(pub)
	return &k, nil
}

// loadableSignatureFile says which files of a container go into a
// release or a scan's definitions: every database file ClamAV reads from
// a directory (the signature loader uses the kinds it matches and lists
// the others it ignores), not the container's COPYING or .info.
func loadableSignatureFile(name string) bool { return signatures.ClamAVKind(name) != "" }

// containerText describes a container a release was unpacked from.
func containerText(c repo.Container) string {
	return fmt.Sprintf("%s: version %d, functionality level %d, %d signatures, built %s",
		c.Name, c.Version, c.FLevel, c.Signatures, c.Built.UTC().Format(time.RFC3339))
}

func repoAddRelease(env *Env, args []string) error {
	fs, dir := repoFlags(env, "add-release", "[-dir DIR] -os OS -arch ARCH VERSION BINARY")
	goos := fs.String("os", "", "operating system of the binary: "+strings.Join(repo.ReleaseOSes, " or "))
	goarch := fs.String("arch", "", "architecture of the binary: "+strings.Join(repo.ReleaseArchs, " or "))
	if err := parse(fs, args); err != nil {
		return err
	}
	if *goos == "" || *goarch == "" {
		return usageError{errors.New("give -os and -arch")}
	}
	if fs.NArg() != 2 {
		return usageError{errors.New("give a version (e.g. v1.2.3) and the vigil binary")}
	}
	version, bin := fs.Arg(0), fs.Arg(1)
	if err := repo.CheckReleaseVersion(version); err != nil {
		return usageError{err}
	}
	if err := repo.CheckBinary(bin, *goos, *goarch); err != nil {
		return err
	}
	r, err := publish.Open(*dir)
	if err != nil {
		return err
	}
	if err := r.AddRelease(version, *goos, *goarch, bin); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Staged %s; run vigil repo publish to publish it\n", repo.ReleasePath(version, *goos, *goarch))
	return nil
}

// deltasHelp describes -deltas.
var deltasHelp = fmt.Sprintf("make deltas to a new definitions release from this many previous ones, 0 to %d (0: none)", publish.MaxDeltaReleases)

// checkDeltasFlag refuses a -deltas value out of range.
func checkDeltasFlag(k int) error {
	if k < 0 || k > publish.MaxDeltaReleases {
		return usageError{fmt.Errorf("-deltas %d: want 0 (no deltas) to %d previous definitions releases", k, publish.MaxDeltaReleases)}
	}
	return nil
}

func repoPublish(env *Env, args []string) error {
	fs, dir := repoFlags(env, "publish", "[-dir DIR] [-targets-expires D] [-snapshot-expires D] [-timestamp-expires D] [-deltas K]")
	var ef expiryFlags
	ef.register(fs, "tsT", false)
	deltas := fs.Int("deltas", -1, deltasHelp+" (default: the repository's, delta_releases in config.json)")
	r, err := parseAndOpen(fs, args, dir, &ef)
	if err != nil {
		return err
	}
	opts := publish.PublishOptions{TargetsExpires: ef.targets, SnapshotExpires: ef.snapshot, TimestampExpires: ef.timestamp}
	if flagSet(fs, "deltas") {
		if err := checkDeltasFlag(*deltas); err != nil {
			return err
		}
		opts.DeltaReleases = deltas
	}
	res, err := r.PublishReport(opts)
	if err != nil {
		return err
	}
	s, err := r.Status()
	if err != nil {
		return err
	}
	for _, p := range res.Targets {
		fmt.Fprintf(env.Stdout, "Published %s\n", p)
	}
	for _, d := range res.Deltas {
		fmt.Fprintf(env.Stdout, "Published %s: %s, %s of the full release (%d bytes)\n", d.Path, sizeText(d.Length), percentText(d.Length, d.FullLength), d.FullLength)
	}
	for _, d := range res.Skipped {
		fmt.Fprintf(env.Stdout, "No delta from %s to %s: %s\n", d.Base, d.Version, d.Reason)
	}
	if n := len(res.Dropped); n > 0 {
		fmt.Fprintf(env.Stdout, "Dropped %d delta(s) to older releases from the targets metadata (their files stay for clients mid-update)\n", n)
	}
	fmt.Fprintf(env.Stdout, "Published targets version %d, snapshot version %d, timestamp version %d (expires %s)\n",
		s.Targets.Version, s.Snapshot.Version, s.Timestamp.Version, s.Timestamp.Expires.Format(time.RFC3339))
	return nil
}

func repoRefreshTimestamp(env *Env, args []string) error {
	fs, dir := repoFlags(env, "refresh-timestamp", "[-dir DIR] [-timestamp-expires D]")
	var ef expiryFlags
	ef.register(fs, "T", false)
	r, err := parseAndOpen(fs, args, dir, &ef)
	if err != nil {
		return err
	}
	if err := r.RefreshTimestamp(ef.timestamp); err != nil {
		return err
	}
	s, err := r.Status()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Timestamp version %d, expires %s\n", s.Timestamp.Version, s.Timestamp.Expires.Format(time.RFC3339))
	return nil
}

func repoSignRoot(env *Env, args []string) error {
	fs, dir := repoFlags(env, "sign-root", "[-dir DIR] [-root-keys DIR] [-root-expires D] [-rotate-keys ROLE,...]")
	rootKeys := fs.String("root-keys", "", "directory holding the root key (default DIR/keys/root)")
	var rotate listFlag
	fs.Var(&rotate, "rotate-keys", "replace the keys of these roles: targets, snapshot, timestamp (comma-separated)")
	var ef expiryFlags
	ef.register(fs, "r", false)
	r, err := parseAndOpen(fs, args, dir, &ef)
	if err != nil {
		return err
	}
	if err := r.SignRoot(publish.RootOptions{KeysDir: *rootKeys, Expires: ef.root, Rotate: rotate}); err != nil {
		return err
	}
	s, err := r.Status()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Root version %d, expires %s\n", s.Root.Version, s.Root.Expires.Format(time.RFC3339))
	if len(rotate) > 0 {
		fmt.Fprintf(env.Stdout, "New keys for %s; targets version %d, snapshot version %d, timestamp version %d\n",
			strings.Join(rotate, ", "), s.Targets.Version, s.Snapshot.Version, s.Timestamp.Version)
	}
	return nil
}

func repoStatus(env *Env, args []string) error {
	fs, dir := repoFlags(env, "status", "[-dir DIR] [-json]")
	asJSON := fs.Bool("json", false, "print JSON")
	r, err := parseAndOpen(fs, args, dir, nil)
	if err != nil {
		return err
	}
	s, err := r.Status()
	if err != nil {
		return err
	}
	now := time.Now()
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else {
		printStatus(env.Stdout, r, s, now)
	}
	for _, w := range statusWarnings(s, now) {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	return nil
}

func printStatus(w io.Writer, r *publish.Repo, s *publish.Status, now time.Time) {
	fmt.Fprintf(w, "Repository %s (serving %s)\n\n", r.Dir(), r.PublicDir())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ROLE\tVERSION\tEXPIRES\n")
	for _, x := range []struct {
		name string
		rs   publish.RoleStatus
	}{{"root", s.Root}, {"targets", s.Targets}, {"snapshot", s.Snapshot}, {"timestamp", s.Timestamp}} {
		fmt.Fprintf(tw, "%s\t%d\t%s (%s)\n", x.name, x.rs.Version, x.rs.Expires.Format(time.RFC3339), untilText(x.rs.Expires, now))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nDefinitions (%d published", len(s.Definitions))
	if n := len(s.Definitions); n > 0 {
		fmt.Fprintf(w, ", latest %s", s.Definitions[n-1].Custom.Version)
	}
	fmt.Fprintf(w, "):\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	counted := false
	for _, t := range s.Definitions {
		fmt.Fprintf(tw, "  %s\t%s\t%d bytes\t%s\n", t.Custom.Version, t.Path, t.Length, releaseCountText(t.Custom))
		counted = counted || t.Custom.Signatures != nil
		for _, d := range s.Deltas {
			if d.Custom.Version == t.Custom.Version {
				fmt.Fprintf(tw, "    delta from %s\t%s\t%d bytes\t%s of the full release\n", d.Custom.Base, d.Path, d.Length, percentText(d.Length, t.Length))
			}
		}
	}
	tw.Flush()
	if counted {
		fmt.Fprintf(w, "  (vigil repo signatures -release VERSION lists the signatures not matched, lines skipped and files ignored)\n")
	}
	if n := len(s.Definitions); n > 0 && len(s.Definitions[n-1].Custom.Containers) > 0 {
		fmt.Fprintf(w, "  latest from ClamAV containers:\n")
		for _, c := range s.Definitions[n-1].Custom.Containers {
			fmt.Fprintf(w, "    %s\n", containerText(c))
		}
	}
	fmt.Fprintf(w, "\nVigil releases (%d published):\n", len(s.Releases))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, t := range s.Releases {
		fmt.Fprintf(tw, "  %s\t%s/%s\t%s\t%d bytes\n", t.Custom.Version, t.Custom.OS, t.Custom.Arch, t.Path, t.Length)
	}
	tw.Flush()
	for _, p := range s.Other {
		fmt.Fprintf(w, "  other target: %s\n", p)
	}
	if len(s.Staged) == 0 {
		fmt.Fprintf(w, "\nStaged: nothing\n")
		return
	}
	fmt.Fprintf(w, "\nStaged, not yet published (run vigil repo publish):\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, t := range s.Staged {
		fmt.Fprintf(tw, "  %s\t%d bytes\t%s\n", t.Path, t.Length, releaseCountText(t.Custom))
		for _, c := range t.Custom.Containers {
			fmt.Fprintf(tw, "    from %s\t\n", containerText(c))
		}
	}
	tw.Flush()
}

// statusWarnings lists the expiries that need action soon.
func statusWarnings(s *publish.Status, now time.Time) []string {
	var ws []string
	check := func(role string, rs publish.RoleStatus, within time.Duration, fix string) {
		switch left := rs.Expires.Sub(now); {
		case left <= 0:
			ws = append(ws, fmt.Sprintf("%s metadata (version %d) EXPIRED at %s: clients refuse the repository; run %s", role, rs.Version, rs.Expires.Format(time.RFC3339), fix))
		case left < within:
			ws = append(ws, fmt.Sprintf("%s metadata (version %d) expires in %s (at %s): run %s", role, rs.Version, left.Round(time.Minute), rs.Expires.Format(time.RFC3339), fix))
		}
	}
	check("timestamp", s.Timestamp, 24*time.Hour, "vigil repo refresh-timestamp")
	check("snapshot", s.Snapshot, 24*time.Hour, "vigil repo publish")
	check("targets", s.Targets, 24*time.Hour, "vigil repo publish")
	check("root", s.Root, 30*24*time.Hour, "vigil repo sign-root")
	return ws
}

func untilText(t, now time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "expired"
	}
	if d >= 48*time.Hour {
		return fmt.Sprintf("in %dd", int(d.Hours()/24))
	}
	return "in " + d.Round(time.Minute).String()
}

// sizeText is n bytes, in KiB or MiB when large.
func sizeText(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%d bytes (%.1f KiB)", n, float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// percentText is part as a percentage of whole.
func percentText(part, whole int64) string {
	if whole <= 0 {
		return "?%"
	}
	p := 100 * float64(part) / float64(whole)
	if p < 10 {
		return fmt.Sprintf("%.2f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}
