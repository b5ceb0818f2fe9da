package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/packaging"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/service"
)

// linuxStateDir is the agent's default StateDirectory on Linux, which
// packages are for whatever system builds them.
const linuxStateDir = "/var/lib/vigil"

// Where an agent package puts the files its preferences name.
const (
	agentCAPath   = "/etc/vigil/server-ca.pem"
	agentRootPath = "/etc/vigil/1.root.json"
)

// runPackage is vigil package PART: a .deb, .rpm or tarball of the agent,
// the server or the LiveUpdate server with its preferences baked in.
func runPackage(_ context.Context, env *Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(env.Stderr, "Usage: vigil package agent|server|liveupdate -format deb|rpm|tar [flags]\n\n"+
			"Builds an installable package of the part with its preference file and systemd unit.\n"+
			"Run 'vigil package PART -h' for each part's flags.\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageError{errors.New("name the part to package: agent, server or liveupdate")}
	}
	switch args[0] {
	case packaging.PartAgent:
		return packageAgent(env, args[1:])
	case packaging.PartServer:
		return packagePart(env, packaging.PartServer, serverFlags, args[1:])
	case packaging.PartLiveUpdate:
		return packagePart(env, packaging.PartLiveUpdate, liveUpdateFlags, args[1:])
	}
	return usageError{fmt.Errorf("cannot package %q: want agent, server or liveupdate", args[0])}
}

// packageFlags are the flags common to every part's package.
type packageFlags struct {
	format, out, version, arch, exe, maintainer string
}

func (p *packageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.format, "format", "", "package format: deb, rpm or tar (required)")
	fs.StringVar(&p.out, "o", "", "file to write (default: the package's conventional name, in the current directory)")
	v := strings.TrimPrefix(buildinfo.String(), "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0.0.0"
	}
	fs.StringVar(&p.version, "version", v, "the package's version")
	fs.StringVar(&p.arch, "arch", runtime.GOARCH, "processor architecture of the package: amd64 or arm64")
	fs.StringVar(&p.maintainer, "maintainer", packaging.DefaultMaintainer, "the package's maintainer, \"Name <address>\"")
	fs.StringVar(&p.exe, "exe", "", "vigil executable to package, built with GOOS=linux for -arch (default: this running executable)")
}

// build packages the part with cfg (the preference file) and the files
// it names, and writes it.
func (p *packageFlags) build(env *Env, part string, cfg []byte, mode os.FileMode, stateDir string, files ...packaging.File) error {
	if p.format == "" {
		return usageError{errors.New("-format is required: deb, rpm or tar")}
	}
	exe := p.exe
	if exe == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find this executable to package (give -exe FILE): %w", err)
		}
		exe = self
	}
	l := packaging.LayoutOf(part)
	unit, err := service.Unit(part, l.Exe, l.Config)
	if err != nil {
		return fmt.Errorf("systemd unit of %s: %w", part, err)
	}
	spec := &packaging.Spec{
		Part: part, Format: p.format, Version: p.version, Arch: p.arch,
		Exe: exe, Config: cfg, ConfigMode: mode, Unit: unit, StateDir: stateDir,
		Maintainer: p.maintainer, Files: files,
	}
	if u, _ := service.User(part); u != "root" {
		// The unit runs the part as its own system user.
		if spec.Sysusers, err = service.Sysusers(part); err != nil {
			return err
		}
	}
	if err := spec.Check(); err != nil {
		return usageError{err}
	}
	out := p.out
	if out == "" {
		out = packaging.FileName(spec)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	defer os.Remove(f.Name())
	if err := packaging.Build(spec, f); err != nil {
		f.Close()
		return err
	}
	// A package whose preference file is for root only (it holds the
	// enrollment secret) is not for every local user either.
	if err := f.Chmod(0o644 & mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	fmt.Fprintln(env.Stdout, out)
	return nil
}

func packageAgent(env *Env, args []string) error {
	fs := newFlags(env, "package agent", "-server URL -server-key-file FILE -enroll-secret-file FILE -format deb|rpm|tar [flags]")
	var pf packageFlags
	pf.register(fs)
	server := fs.String("server", "", "the server's agent API URL, the agents' NodeCommURL, e.g. https://vigil.example.com:8080/vigil (required)")
	keyFile := fs.String("server-key-file", "", "file holding the server's public key, base64: the server's DATA_DIR/"+"signing.pub (required)")
	secretFile := fs.String("enroll-secret-file", "", "file holding the enrollment secret: the server's DATA_DIR/enroll.secret (required)")
	var groups listFlag
	fs.Var(&groups, "group", "group the agents ask to belong to (repeatable, or comma-separated)")
	stateDir := fs.String("state-dir", linuxStateDir, "the agents' StateDirectory")
	iface := fs.String("interface", "", "the agents' MulticastInterface (default: the system's choice)")
	port := fs.Int("port", 0, "the agents' MulticastPort (default: 8192), as the server's -port")
	group := fs.String("multicast-address", "", "the agents' MulticastAddress (default: 239.255.81.92), as the server's -group")
	caFile := fs.String("server-ca", "", "PEM file of the CA certificates an https -server's certificate chains to: packaged as "+agentCAPath+" (ServerCACertificate)")
	var lus listFlag
	fs.Var(&lus, "liveupdate", "LiveUpdate server URL the agents fetch definitions from (repeatable, or comma-separated, in order): LiveUpdateServers")
	rootFile := fs.String("repository-root", "", "the definitions repository's root metadata, 1.root.json: packaged as "+agentRootPath+" (RepositoryRoot; needed with -liveupdate)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	var missing []string
	for _, m := range []struct{ v, name string }{{*server, "-server"}, {*keyFile, "-server-key-file"}, {*secretFile, "-enroll-secret-file"}} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return usageError{fmt.Errorf("%s required", strings.Join(missing, ", "))}
	}
	key, err := readOneLine(*keyFile)
	if err != nil {
		return err
	}
	secret, err := readOneLine(*secretFile)
	if err != nil {
		return err
	}
	a := &prefs.Agent{
		NodeCommURL:        *server,
		ServerPublicKey:    key,
		EnrollmentSecret:   secret,
		Groups:             groups,
		StateDirectory:     *stateDir,
		MulticastAddress:   *group,
		MulticastInterface: *iface,
		MulticastPort:      *port,
	}
	var files []packaging.File
	for _, f := range []struct {
		src, dst string
		key      *string
	}{{*caFile, agentCAPath, &a.ServerCACertificate}, {*rootFile, agentRootPath, &a.RepositoryRoot}} {
		if f.src == "" {
			continue
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		if f.dst == agentCAPath && !x509.NewCertPool().AppendCertsFromPEM(data) {
			return fmt.Errorf("-server-ca %s: no PEM certificate in it", f.src)
		}
		if f.dst == agentRootPath && !json.Valid(data) {
			return fmt.Errorf("-repository-root %s: not JSON, so not a repository's root metadata (1.root.json)", f.src)
		}
		files = append(files, packaging.File{Path: f.dst, Data: data, Mode: 0o644})
		*f.key = f.dst
	}
	a.LiveUpdateServers = lus
	cfg, mode, err := agentPrefsFile(a)
	if err != nil {
		return err
	}
	return pf.build(env, packaging.PartAgent, cfg, mode, *stateDir, files...)
}

// agentPrefsFile writes a with internal/prefs, as an XML plist, and
// returns the file's bytes and mode after loading it back as the agent
// does.
func agentPrefsFile(a *prefs.Agent) ([]byte, os.FileMode, error) {
	dir, err := os.MkdirTemp("", "vigil-package-prefs-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "agent.plist")
	// The errors name the file by its path in the package.
	name := packaging.LayoutOf(packaging.PartAgent).Config
	if err := prefs.Write(p, a, plist.XMLFormat); err != nil {
		return nil, 0, errors.New(strings.ReplaceAll(err.Error(), p, name))
	}
	if _, err := prefs.Load(p); err != nil {
		return nil, 0, errors.New(strings.ReplaceAll(err.Error(), p, name))
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, 0, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, 0, err
	}
	return data, st.Mode().Perm(), nil
}

// readOneLine reads a file holding one value, such as the server's
// signing.pub or enroll.secret.
func readOneLine(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s: holds more than one line, want one value", path)
	}
	return s, nil
}

// recorded is a part's flag registered on vigil package's flag set: it
// keeps the text it was set with, to be written to the preference file.
type recorded struct {
	flag.Value
	text string
	set  bool
}

func (r *recorded) Set(s string) error {
	if err := r.Value.Set(s); err != nil {
		return err
	}
	r.text, r.set = s, true
	return nil
}

func (r *recorded) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// packagePart packages the server or the LiveUpdate server: its flags
// given here are baked into its preference file, which is then loaded as
// the part loads it.
func packagePart[O partOptions](env *Env, part string, flags func(*Env) (*flag.FlagSet, O), args []string) error {
	fs := newFlags(env, "package "+part, "-format deb|rpm|tar [flags] [the "+part+"'s flags, baked into its preference file]")
	var pf packageFlags
	pf.register(fs)
	partFS, _ := flags(quietEnv())
	var recs []*recorded
	var names []string
	partFS.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		r := &recorded{Value: f.Value}
		recs = append(recs, r)
		names = append(names, f.Name)
		fs.Var(r, f.Name, f.Usage+" (baked into "+packaging.LayoutOf(part).Config+")")
	})
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	dict := map[string]any{}
	for i, r := range recs {
		if !r.set {
			continue
		}
		dict[prefs.FlagKey(names[i])] = plistValue(r)
	}
	cfg, err := plist.MarshalIndent(dict, plist.XMLFormat, "\t")
	if err != nil {
		return fmt.Errorf("cannot encode the preferences: %w", err)
	}
	cfg = append(cfg, '\n')
	// Load the file as the part will, from its path in the package.
	dir, err := os.MkdirTemp("", "vigil-package-prefs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, part+".plist")
	if err := atomicfile.WriteFile(p, cfg, 0o644); err != nil {
		return err
	}
	o, err := loadPart(flags, p)
	if err != nil {
		return usageError{errors.New(strings.ReplaceAll(err.Error(), p, packaging.LayoutOf(part).Config))}
	}
	stateDir := ""
	if part == packaging.PartServer {
		// The unit lets the server write only its StateDirectory=.
		stateDir = service.StateDir(part)
		if dd := any(o).(*serverOptions).cfg.DataDir; dd != stateDir {
			return usageError{fmt.Errorf("-data-dir %s: the packaged server's unit lets it write only %s (its StateDirectory); leave -data-dir out", dd, stateDir)}
		}
	}
	return pf.build(env, part, cfg, 0o644, stateDir)
}

// plistValue is the preference-file value of a part's flag: a boolean,
// an integer, or the text it was given (durations as "90s").
func plistValue(r *recorded) any {
	if r.IsBoolFlag() {
		b, _ := strconv.ParseBool(r.text)
		return b
	}
	if g, ok := r.Value.(flag.Getter); ok {
		switch v := g.Get().(type) {
		case int:
			return int64(v)
		case int64:
			return v
		case uint:
			return uint64(v)
		case uint64:
			return v
		case time.Duration:
			return r.text
		}
	}
	return r.text
}
