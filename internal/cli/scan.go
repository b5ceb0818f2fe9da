package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/scan"
	"github.com/vigil-fleet/vigil/internal/signatures"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// agentDefinitions is where the agent configured by the preference file at
// path keeps the definitions in use (the current link of its definitions
// directory: DefinitionsDirectory, or StateDirectory/definitions); with
// no file at path, where an agent with the default state directory keeps
// them. A preference file that does not load is an error.
func agentDefinitions(path string) (string, error) {
	p, err := prefs.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return definitions.CurrentLink(definitions.Dir(prefs.DefaultStateDir(), "")), nil
	}
	if err != nil {
		return "", fmt.Errorf("finding the agent's definitions: %w (or give -d)", err)
	}
	return definitions.CurrentLink(definitions.Dir(p.StateDirectory, p.DefinitionsDirectory)), nil
}

// repeatFlag is a repeatable string flag.
type repeatFlag []string

func (l *repeatFlag) String() string     { return strings.Join(*l, ",") }
func (l *repeatFlag) Set(v string) error { *l = append(*l, v); return nil }

// sizeFlag is clamscan's --max-filesize or --max-scansize: a number with
// an optional K, M or G suffix (powers of 1024), read as clamscan reads
// it (unpack.ParseSize: 0 means 4 GiB - 1, a leading 0 octal).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	n, err := unpack.ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// yesNoFlag is a clamscan option taking yes or no (--heuristic-alerts);
// given alone, it means yes.
type yesNoFlag bool

func (y *yesNoFlag) String() string {
	if *y {
		return "yes"
	}
	return "no"
}
func (y *yesNoFlag) IsBoolFlag() bool { return true }
func (y *yesNoFlag) Set(v string) error {
	switch strings.ToLower(v) {
	case "yes", "true":
		*y = true
	case "no", "false":
		*y = false
	default:
		return fmt.Errorf("want yes or no, got %q", v)
	}
	return nil
}

// countFlag is clamscan's --max-files, --max-recursion or
// --max-dir-recursion: a number of 0 or more.
type countFlag int

func (c *countFlag) String() string { return strconv.Itoa(int(*c)) }
func (c *countFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("want a number of 0 or more, got %q", v)
	}
	*c = countFlag(n)
	return nil
}

// scanReport is vigil scan -json's output.
type scanReport struct {
	Definitions     string           `json:"definitions"`
	Containers      []repo.Container `json:"containers,omitempty"`
	KnownSignatures int              `json:"known_signatures"`
	Files           int64            `json:"files"`
	Dirs            int64            `json:"dirs"`
	Bytes           int64            `json:"bytes"`
	InfectedFiles   int              `json:"infected_files"`
	Detections      []scan.Detection `json:"detections"`
	Skipped         []scan.Skipped   `json:"skipped"`
	Seconds         float64          `json:"seconds"`
}

// runScan is vigil scan: clamscan's manner on Vigil's engine. Exit code 0:
// nothing found; 1: something found; 2: an error (definitions that do not
// load, a path given that cannot be scanned, usage).
func runScan(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "scan", "[flags] PATH...")
	defs := fs.String("d", "", "definitions: a directory of signature files and ClamAV containers (.cvd, .cld, .cud), or one container (default: the definitions the agent configured by -agent-config has installed)")
	keyFile := fs.String("cvd-key", "", "PEM RSA public key that signs the .cvd/.cld containers loaded (default: ClamAV's published keys)")
	debug := fs.Bool("debug", false, "print what was not loaded: files of containers left out, files ignored and signature lines skipped, with the reason")
	agentConfig := fs.String("agent-config", prefs.DefaultPath(), "the agent's preference file, whose StateDirectory or DefinitionsDirectory locate the default definitions (absent: the default state directory)")
	var exclude, patterns repeatFlag
	fs.Var(&exclude, "exclude", "do not scan this path or anything under it (repeatable)")
	fs.Var(&patterns, "exclude-pattern", "do not scan names matching this glob; a glob with / matches whole absolute paths (repeatable)")
	maxSize, maxScan := sizeFlag(unpack.DefaultMaxFileSize), sizeFlag(unpack.DefaultMaxScanSize)
	fs.Var(&maxSize, "max-filesize", "as clamscan's: files larger than this are not scanned (and are OK), nor larger archive members (e.g. 100M; 0: 4 GiB - 1)")
	fs.Var(&maxScan, "max-scansize", "as clamscan's: the most data scanned in one file, its archive members included (0: 4 GiB - 1)")
	maxFiles, maxRec := countFlag(unpack.DefaultMaxFiles), countFlag(unpack.DefaultMaxRecursion)
	fs.Var(&maxFiles, "max-files", "as clamscan's: the most objects scanned in one file, its archive members included (0: no limit)")
	fs.Var(&maxRec, "max-recursion", "as clamscan's: how deep nested archives are opened (0: the default, 17)")
	maxDirRec := countFlag(scan.DefaultMaxDirRecursion)
	fs.Var(&maxDirRec, "max-dir-recursion", "as clamscan's: how many levels of directories are entered, the one given being the first (0: none)")
	allMatch := fs.Bool("allmatch", false, "as clamscan's: report every signature that matches, in every archive member, not only the first per file")
	fs.BoolVar(allMatch, "z", false, "same as -allmatch")
	alertMax := fs.Bool("alert-exceeds-max", false, "as clamscan's: report a file in which a limit stopped the scan as Heuristics.Limits.Exceeded.*")
	alertEnc := fs.Bool("alert-encrypted", false, "as clamscan's: report an encrypted zip entry as Heuristics.Encrypted.Zip")
	fs.BoolVar(alertEnc, "alert-encrypted-archive", false, "same as -alert-encrypted (for archives)")
	heuristics := yesNoFlag(true)
	fs.Var(&heuristics, "heuristic-alerts", "as clamscan's: yes or no; no leaves out the heuristic alerts raised by default (overlapping zip entries)")
	infected := fs.Bool("infected", false, "print infected files only, not clean ones")
	fs.BoolVar(infected, "i", false, "same as -infected")
	asJSON := fs.Bool("json", false, "print one JSON report instead of lines and the summary")
	noSummary := fs.Bool("no-summary", false, "do not print the summary")
	follow := fs.Bool("follow-symlinks", false, "follow symbolic links inside the trees scanned (never out of them)")
	oneFS := fs.Bool("one-file-system", false, "do not enter other file systems")
	if err := parse(fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		return usageError{errors.New("no PATH to scan")}
	}
	if *defs == "" {
		d, err := agentDefinitions(*agentConfig)
		if err != nil {
			return exitError{code: 2, err: err}
		}
		*defs = d
	}
	keys, err := containerKeys(*keyFile)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	builder := scan.NewBuilder()
	restoreGC := scan.BuildGC()
	set, containers, err := loadDefinitions(*defs, keys, builder, func(c *cvd.Container, left []string) {
		if *debug {
			fmt.Fprintf(env.Stderr, "debug: %s: not loaded (not a database file ClamAV reads): %s\n", safe(c.Name), safe(strings.Join(left, ", ")))
		}
	}, func(msg string) {
		fmt.Fprintf(env.Stderr, "WARNING: %s\n", safe(msg))
	})
	eng := builder.Engine()
	restoreGC()
	if err != nil {
		return exitError{code: 2, err: err}
	}
	if *debug {
		for _, c := range containers {
			fmt.Fprintf(env.Stderr, "debug: loaded %s\n", safe(containerText(c)))
		}
		var b strings.Builder
		set.WriteDebug(&b)
		for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			fmt.Fprintf(env.Stderr, "debug: %s\n", safe(line))
		}
	}
	opts := scan.Options{
		Exclude: exclude, ExcludePatterns: patterns,
		FollowSymlinks: *follow, OneFileSystem: *oneFS,
		Limits: unpack.Limits{
			MaxFileSize: int64(maxSize), MaxScanSize: int64(maxScan),
			MaxFiles: int(maxFiles), MaxRecursion: int(maxRec),
		},
		MaxDirRecursion: int(maxDirRec),
		AllMatch:        *allMatch, AlertExceedsMax: *alertMax, AlertEncrypted: *alertEnc,
		NoHeuristicAlerts: !bool(heuristics),
	}
	if maxDirRec == 0 {
		opts.MaxDirRecursion = -1 // clamscan's 0: no directory entered
	}

	onEvent := func(ev scan.Event) {
		if *debug {
			for _, l := range ev.Limits {
				fmt.Fprintf(env.Stderr, "debug: %s: %s reached at %s: %s\n", safe(ev.Path), safe(l.Name), safe(l.Path), safe(l.Detail))
			}
		}
		switch ev.Kind {
		case scan.EventSkipped:
			fmt.Fprintf(env.Stderr, "WARNING: %s: %s\n", safe(ev.Path), safe(ev.Reason))
		case scan.EventInfected:
			if !*asJSON {
				for _, d := range ev.Detections {
					fmt.Fprintf(env.Stdout, "%s: %s FOUND\n", safe(d.Path), safe(d.Signature))
				}
			}
		case scan.EventClean:
			if !*asJSON && !*infected {
				fmt.Fprintf(env.Stdout, "%s: OK\n", safe(ev.Path))
			}
		}
	}
	sum, err := eng.ScanPaths(ctx, paths, opts, onEvent)
	if err != nil && ctx.Err() == nil {
		return exitError{code: 2, err: err}
	}
	if *asJSON {
		rep := scanReport{
			Definitions: *defs, Containers: containers, KnownSignatures: eng.Signatures(),
			Files: sum.Files, Dirs: sum.Dirs, Bytes: sum.Bytes, InfectedFiles: sum.InfectedFiles(),
			Detections: sum.Detections, Skipped: sum.Skipped, Seconds: sum.Duration.Seconds(),
		}
		if rep.Detections == nil {
			rep.Detections = []scan.Detection{}
		}
		if rep.Skipped == nil {
			rep.Skipped = []scan.Skipped{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return exitError{code: 2, err: err}
		}
	} else if !*noSummary {
		printSummary(env, eng.Signatures(), *defs, sum)
	}
	if ctx.Err() != nil {
		return exitError{code: 2, err: fmt.Errorf("interrupted: %w", ctx.Err())}
	}
	if len(sum.Detections) > 0 {
		return exitError{code: 1}
	}
	for _, s := range sum.Skipped {
		// A path given that could not be scanned is an error.
		if slices.Contains(paths, s.Path) {
			return exitError{code: 2, err: fmt.Errorf("%s: %s", s.Path, s.Reason)}
		}
	}
	return nil
}

// loadDefinitions loads the signatures at defs: a directory, or one
// ClamAV container. The containers (the one given, or those in the
// directory) are checked against keys (nil: ClamAV's) and unpacked into a
// private temporary directory with the directory's other files (linked),
// keeping only the files the signature loader reads. The hash and body
// signatures go to sink (the Set returned counts them); left is told, for
// each container, what was not kept. Of a NAME.cvd and a NAME.cld side by
// side, only the newer is loaded, the .cld if both have the same version
// (as ClamAV loads them); warn is told of the other. The temporary directory is removed
// before returning.
func loadDefinitions(defs string, keys *cvd.Keys, sink signatures.Sink, left func(c *cvd.Container, names []string), warn func(msg string)) (*signatures.Set, []repo.Container, error) {
	st, err := os.Stat(defs)
	if err != nil {
		return nil, nil, fmt.Errorf("loading signatures: %w", err)
	}
	var containers, others []string
	if st.IsDir() {
		entries, err := os.ReadDir(defs)
		if err != nil {
			return nil, nil, fmt.Errorf("loading signatures: %w", err)
		}
		for _, e := range entries {
			if _, ok := cvd.KindOf(e.Name()); ok && !e.IsDir() {
				containers = append(containers, filepath.Join(defs, e.Name()))
			} else {
				others = append(others, e.Name())
			}
		}
		if len(containers) == 0 {
			set, err := signatures.LoadTo(defs, signatures.LoadOptions{}, sink)
			return set, nil, err
		}
	} else if _, ok := cvd.KindOf(defs); ok {
		containers = []string{defs}
	} else {
		return nil, nil, fmt.Errorf("loading signatures: %s: not a directory or a ClamAV container (.cvd, .cld, .cud)", defs)
	}
	k := cvd.ClamAVKeys()
	if keys != nil {
		k = *keys
	}
	tmp, err := os.MkdirTemp("", "vigil-definitions-")
	if err != nil {
		return nil, nil, fmt.Errorf("loading signatures: %w", err)
	}
	defer os.RemoveAll(tmp)
	abs, err := filepath.Abs(defs)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range others {
		if err := os.Symlink(filepath.Join(abs, name), filepath.Join(tmp, name)); err != nil {
			return nil, nil, fmt.Errorf("loading signatures: %w", err)
		}
	}
	var opened []*cvd.Container
	for _, p := range containers {
		c, err := cvd.Open(p, k, cvd.DefaultLimits)
		if err != nil {
			return nil, nil, fmt.Errorf("loading signatures: container refused: %w", err)
		}
		opened = append(opened, c)
	}
	var info []repo.Container
	for _, c := range opened {
		if newer := newerDuplicate(c, opened); newer != nil {
			warn(fmt.Sprintf("%s: not loaded: %s (version %d) is the same database, version %d; remove one of them", c.Name, newer.Name, newer.Header.Version, c.Header.Version))
			continue
		}
		var dropped []string
		if _, err := c.WriteDir(tmp, func(name string) bool {
			if loadableSignatureFile(name) {
				return true
			}
			dropped = append(dropped, name)
			return false
		}); err != nil {
			return nil, nil, fmt.Errorf("loading signatures: %w", err)
		}
		if len(dropped) > 0 {
			left(c, dropped)
		}
		h := c.Header
		info = append(info, repo.Container{Name: c.Name, Version: h.Version, FLevel: h.FLevel, Signatures: h.Signatures, Built: h.BuildTime()})
	}
	set, err := signatures.LoadTo(tmp, signatures.LoadOptions{}, sink)
	if err != nil {
		// Name the definitions given, not the temporary directory.
		return nil, nil, errors.New(strings.ReplaceAll(err.Error(), tmp, defs))
	}
	return set, info, nil
}

// newerDuplicate is, for a .cvd or .cld, the other of the pair NAME.cvd
// and NAME.cld among all that ClamAV loads instead of c: the one of a
// higher version, or the .cld when the versions are equal.
func newerDuplicate(c *cvd.Container, all []*cvd.Container) *cvd.Container {
	if c.Kind != cvd.CVD && c.Kind != cvd.CLD {
		return nil
	}
	stem := strings.TrimSuffix(c.Name, filepath.Ext(c.Name))
	for _, o := range all {
		if o == c || (o.Kind != cvd.CVD && o.Kind != cvd.CLD) || o.Kind == c.Kind || strings.TrimSuffix(o.Name, filepath.Ext(o.Name)) != stem {
			continue
		}
		if o.Header.Version > c.Header.Version || (o.Header.Version == c.Header.Version && o.Kind == cvd.CLD) {
			return o
		}
	}
	return nil
}

func printSummary(env *Env, known int, defs string, s scan.Summary) {
	w := env.Stdout
	secs := s.Duration.Seconds()
	d := s.Duration.Truncate(time.Second)
	fmt.Fprintf(w, "\n----------- SCAN SUMMARY -----------\n")
	fmt.Fprintf(w, "Known signatures: %d\n", known)
	fmt.Fprintf(w, "Definitions: %s\n", defs)
	fmt.Fprintf(w, "Scanned directories: %d\n", s.Dirs)
	fmt.Fprintf(w, "Scanned files: %d\n", s.Files)
	fmt.Fprintf(w, "Infected files: %d\n", s.InfectedFiles())
	fmt.Fprintf(w, "Skipped: %d\n", len(s.Skipped))
	fmt.Fprintf(w, "Data scanned: %.2f MB\n", float64(s.Bytes)/(1<<20))
	fmt.Fprintf(w, "Time: %.3f sec (%d m %d s)\n", secs, int(d.Minutes()), int(d.Seconds())%60)
}
