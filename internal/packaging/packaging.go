// Package packaging builds the installable packages of Vigil's long-running
// parts — the agent, the management server and the LiveUpdate server — as
// Debian packages (.deb), RPM packages (.rpm) and plain tarballs, so that
// installing one puts the vigil executable, the part's preference file and
// its systemd unit in place, and starts the service.
//
// The .deb and .rpm are written by github.com/goreleaser/nfpm/v2, used as a
// library; the tarball, which nfpm does not make, has the same files at
// the same paths with the same modes, plus the maintainer scripts.
//
// Every package of a part has the same layout ([LayoutOf]):
//
//	/usr/lib/vigil-PART/vigil            the executable (0755)
//	/etc/vigil/PART.plist                the preference file (conffile; 0600 for the agent)
//	/etc/vigil/…                         files it names, if any ([Spec.Files]; conffiles)
//	/lib/systemd/system/vigil-PART.service  the systemd unit
//	/usr/lib/sysusers.d/vigil-PART.conf  its system user (not for the agent, which runs as root)
//	/usr/share/doc/vigil-PART/copyright  (and changelog.Debian.gz in a .deb)
//
// Each part's executable lives in a directory of its own, so that the
// agent, server and LiveUpdate packages can be installed on one machine
// without claiming the same file; the server package also links
// /usr/bin/vigil to its executable, for the admin commands.
//
// The maintainer scripts ([Scripts]) create the state directory, and
// enable and start the service when systemd is running
// ([ -d /run/systemd/system ]), so that installing is all there is to do;
// before removal they stop and disable it; purging a .deb removes the state
// directory, removing leaves it. Under dpkg --root with
// --force-script-chrootless (DPKG_ROOT set) they work on the paths under
// that root and never touch the running system's services.
//
// This package does not write preference files or units: it is given
// their bytes, written by internal/prefs and internal/service.
package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// The parts that have packages.
const (
	PartAgent      = "agent"
	PartServer     = "server"
	PartLiveUpdate = "liveupdate"
)

// Formats are the package formats Build writes.
var Formats = []string{"deb", "rpm", "tar"}

// Arches are the processor architectures packages are built for, as Go
// names them (GOARCH).
var Arches = []string{"amd64", "arm64"}

// Layout is where a part's package puts its files.
type Layout struct {
	Name     string // package name: vigil-PART
	Exe      string // the vigil executable the unit runs
	Config   string // the part's preference file
	Unit     string // the systemd unit file
	UnitName string // the unit's name: vigil-PART.service
	Sysusers string // the sysusers.d file creating the part's system user
	DocDir   string // /usr/share/doc/vigil-PART
	Link     string // /usr/bin/vigil → Exe, in the server package only
}

// LayoutOf returns the layout of part's packages.
func LayoutOf(part string) Layout {
	name := "vigil-" + part
	l := Layout{
		Name:     name,
		Exe:      "/usr/lib/" + name + "/vigil",
		Config:   "/etc/vigil/" + part + ".plist",
		Unit:     "/lib/systemd/system/" + name + ".service",
		UnitName: name + ".service",
		Sysusers: "/usr/lib/sysusers.d/" + name + ".conf",
		DocDir:   "/usr/share/doc/" + name,
	}
	if part == PartServer {
		l.Link = "/usr/bin/vigil"
	}
	return l
}

// Spec is what Build packages.
type Spec struct {
	Part    string // PartAgent, PartServer or PartLiveUpdate
	Format  string // "deb", "rpm" or "tar"
	Version string // the package's version, e.g. 1.4.0 (a leading v is dropped)
	Arch    string // GOARCH of Exe: amd64 or arm64

	Exe    string // path of the vigil executable to package (built for Arch)
	Config []byte // the part's preference file, as the part reads it
	// ConfigMode is the preference file's mode: 0600 when it holds a
	// secret (the agent's EnrollmentSecret), else 0644.
	ConfigMode os.FileMode
	Unit       []byte // the systemd unit, whose ExecStart runs LayoutOf(Part).Exe
	// Sysusers is the sysusers.d file creating the system user the unit
	// runs as; nil for a part that runs as root (the agent).
	Sysusers []byte
	// StateDir is the part's state directory, made (mode 0700) on install
	// and removed when a .deb is purged; "" for none.
	StateDir string

	// Files are further files the preference file names (a CA
	// certificate, a repository's root metadata), installed as
	// configuration files.
	Files []File
	// Maintainer is the package's maintainer, "Name <address>";
	// "" means DefaultMaintainer.
	Maintainer string
	// MTime is the time stamped on the files; zero means now.
	MTime time.Time
}

// File is a further file of a package.
type File struct {
	Path string // where it is installed: an absolute path under /etc/vigil
	Data []byte
	Mode os.FileMode // 0644 or 0600
}

func (s *Spec) maintainer() string {
	if s.Maintainer != "" {
		return s.Maintainer
	}
	return DefaultMaintainer
}

// lintianOverrides are the lintian tags a package of part is known to
// raise, each for its reason; a .deb carries them in
// /usr/share/lintian/overrides.
func lintianOverrides(part string) string {
	l := LayoutOf(part)
	exe := strings.TrimPrefix(l.Exe, "/")
	var b strings.Builder
	fmt.Fprintf(&b, "# Go executables are statically linked, and vigil is packaged byte for byte\n")
	fmt.Fprintf(&b, "# as built (the executable given to vigil package, or the one running it).\n")
	fmt.Fprintf(&b, "%s: statically-linked-binary [%s]\n", l.Name, exe)
	fmt.Fprintf(&b, "%s: unstripped-binary-or-object [%s]\n", l.Name, exe)
	fmt.Fprintf(&b, "# The scripts run systemctl themselves, only when systemd runs: the package\n")
	fmt.Fprintf(&b, "# is built without debhelper and must install where init-system-helpers is not.\n")
	fmt.Fprintf(&b, "%s: maintainer-script-calls-systemctl\n", l.Name)
	fmt.Fprintf(&b, "# Built by vigil package, not uploaded to Debian.\n")
	fmt.Fprintf(&b, "%s: initial-upload-closes-no-bugs\n", l.Name)
	if l.Link != "" {
		fmt.Fprintf(&b, "# vigil has no manual page: vigil -h and vigil COMMAND -h document it.\n")
		fmt.Fprintf(&b, "%s: no-manual-page [%s]\n", l.Name, strings.TrimPrefix(l.Link, "/"))
	}
	if part == PartAgent {
		fmt.Fprintf(&b, "# The agent's preference file holds its enrollment secret.\n")
		fmt.Fprintf(&b, "%s: non-standard-file-perm 0600 != 0644 [%s]\n", l.Name, strings.TrimPrefix(l.Config, "/"))
	}
	return b.String()
}

// Descriptions of the packages, by part.
var descriptions = map[string]string{
	PartAgent: "Vigil agent: signed multicast commands and definitions updates\n" +
		"The Vigil agent receives its management server's signed commands by\n" +
		"multicast, checks in over HTTP, and scans with definitions it fetches\n" +
		"from LiveUpdate servers. This package holds its preferences: installing\n" +
		"it enrolls the agent and starts it as the vigil-agent service.",
	PartServer: "Vigil management server\n" +
		"The Vigil management server enrolls agents, multicasts signed commands\n" +
		"to them and collects their results. Installing this package starts it\n" +
		"as the vigil-server service.",
	PartLiveUpdate: "Vigil LiveUpdate server\n" +
		"The Vigil LiveUpdate server serves a signed definitions repository to\n" +
		"agents over FTP and HTTP, read-only. Installing this package starts it\n" +
		"as the vigil-liveupdate service.",
}

const (
	// DefaultMaintainer is the Maintainer of a package unless Spec says.
	DefaultMaintainer = "Vigil packagers <packages@vigil-fleet.example.com>"
	homepage          = "https://github.com/vigil-fleet/vigil"
)

// copyright is the package's /usr/share/doc/NAME/copyright, in Debian's
// machine-readable format.
const copyright = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vigil
Source: https://github.com/vigil-fleet/vigil

Files: *
Copyright: 2024-2026 The Vigil authors
License: Proprietary
 Built from the Vigil source tree; distribution terms are those of that tree.
`

// Check reports what is wrong with s, naming the field at fault.
func (s *Spec) Check() error {
	var errs []error
	if descriptions[s.Part] == "" {
		errs = append(errs, fmt.Errorf("part %q: want %s, %s or %s", s.Part, PartAgent, PartServer, PartLiveUpdate))
	}
	if !contains(Formats, s.Format) {
		errs = append(errs, fmt.Errorf("format %q: want one of %s", s.Format, strings.Join(Formats, ", ")))
	}
	if !contains(Arches, s.Arch) {
		errs = append(errs, fmt.Errorf("arch %q: want one of %s", s.Arch, strings.Join(Arches, ", ")))
	}
	if err := checkVersion(s.Version); err != nil {
		errs = append(errs, err)
	}
	if len(s.Config) == 0 {
		errs = append(errs, errors.New("no preference file given"))
	}
	if s.ConfigMode != 0o600 && s.ConfigMode != 0o644 {
		errs = append(errs, fmt.Errorf("preference file mode %#o: want 0600 or 0644", s.ConfigMode))
	}
	if len(s.Unit) == 0 {
		errs = append(errs, errors.New("no systemd unit given"))
	}
	if s.StateDir != "" && (!path.IsAbs(s.StateDir) || path.Clean(s.StateDir) != s.StateDir || s.StateDir == "/" ||
		strings.ContainsAny(s.StateDir, "'\"\\$`\n ")) {
		errs = append(errs, fmt.Errorf("state directory %q: want a clean absolute path other than / without quotes, spaces or $", s.StateDir))
	}
	seen := map[string]bool{LayoutOf(s.Part).Config: true}
	for _, f := range s.Files {
		switch {
		case !strings.HasPrefix(f.Path, "/etc/vigil/") || path.Clean(f.Path) != f.Path:
			errs = append(errs, fmt.Errorf("file %q: want a clean path under /etc/vigil", f.Path))
		case seen[f.Path]:
			errs = append(errs, fmt.Errorf("file %q: given twice", f.Path))
		case f.Mode != 0o600 && f.Mode != 0o644:
			errs = append(errs, fmt.Errorf("file %s: mode %#o: want 0600 or 0644", f.Path, f.Mode))
		}
		seen[f.Path] = true
	}
	if s.Exe == "" {
		errs = append(errs, errors.New("no executable given"))
	} else if contains(Arches, s.Arch) {
		if err := CheckELF(s.Exe, s.Arch); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func checkVersion(v string) error {
	v = strings.TrimPrefix(v, "v")
	if v == "" {
		return errors.New("no version given")
	}
	if v[0] < '0' || v[0] > '9' {
		return fmt.Errorf("version %q: must start with a digit", v)
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '+' || r == '~') {
			return fmt.Errorf("version %q: only letters, digits, '.', '+' and '~' are allowed", v)
		}
	}
	return nil
}

// elfMachines maps a GOARCH to the ELF machine of its executables.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// CheckELF checks that the file at exe is a Linux ELF executable for arch
// (a GOARCH), and says what it is otherwise.
func CheckELF(exe, arch string) error {
	want, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("arch %q: want one of %s", arch, strings.Join(Arches, ", "))
	}
	f, err := elf.Open(exe)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return fmt.Errorf("executable %s: not an ELF file (%v): packages are for Linux; build it with GOOS=linux GOARCH=%s", exe, err, arch)
		}
		return fmt.Errorf("executable %s: %w", exe, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("executable %s: an ELF %s, not an executable", exe, f.Type)
	}
	if f.Machine != want {
		got := f.Machine.String()
		for a, m := range elfMachines {
			if m == f.Machine {
				got = a + " (" + got + ")"
			}
		}
		return fmt.Errorf("executable %s is built for %s, not %s (%s): build it with GOOS=linux GOARCH=%s, or give -arch to match it",
			exe, got, arch, want, arch)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("executable %s: built for %s, not Linux", exe, f.OSABI)
	}
	return nil
}

// FileName returns the conventional file name of s's package:
// vigil-agent_1.4.0_amd64.deb, vigil-agent-1.4.0-1.x86_64.rpm,
// vigil-agent-1.4.0-linux-amd64.tar.gz.
func FileName(s *Spec) string {
	l := LayoutOf(s.Part)
	v := strings.TrimPrefix(s.Version, "v")
	switch s.Format {
	case "deb":
		return fmt.Sprintf("%s_%s-1_%s.deb", l.Name, v, s.Arch)
	case "rpm":
		a := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[s.Arch]
		return fmt.Sprintf("%s-%s-1.%s.rpm", l.Name, v, a)
	}
	return fmt.Sprintf("%s-%s-linux-%s.tar.gz", l.Name, v, s.Arch)
}

// Build writes s's package to w.
func Build(s *Spec, w io.Writer) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("cannot package: %w", err)
	}
	stage, err := os.MkdirTemp("", "vigil-package-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	mtime := s.MTime
	if mtime.IsZero() {
		mtime = time.Now()
	}
	mtime = mtime.UTC().Truncate(time.Second)
	items, err := stageFiles(s, stage)
	if err != nil {
		return err
	}
	scripts := Scripts(s.Part, s.Format, s.StateDir, s.Sysusers != nil)
	if s.Format == "tar" {
		return writeTar(w, items, scripts, LayoutOf(s.Part), mtime)
	}
	info := &nfpm.Info{
		Name:        LayoutOf(s.Part).Name,
		Arch:        s.Arch,
		Platform:    "linux",
		Version:     strings.TrimPrefix(s.Version, "v"),
		Release:     "1",
		Section:     "net",
		Priority:    "optional",
		Maintainer:  s.maintainer(),
		Vendor:      "Vigil",
		Homepage:    homepage,
		License:     "Proprietary",
		Description: descriptions[s.Part],
		MTime:       mtime,
		// The version is Debian's and RPM's, as given: not parsed as semver.
		VersionSchema: "none",
	}
	info.RPM.Summary = strings.SplitN(descriptions[s.Part], "\n", 2)[0]
	info.RPM.Group = "System Environment/Daemons"
	for _, it := range items {
		if it.rpmOnly && s.Format != "rpm" || it.debOnly && s.Format != "deb" {
			continue
		}
		c := &files.Content{
			Source:      it.src,
			Destination: it.dst,
			FileInfo:    &files.ContentFileInfo{Mode: it.mode, Owner: "root", Group: "root", MTime: mtime},
		}
		switch {
		case it.link:
			c.Type = files.TypeSymlink
			c.FileInfo.Mode = 0
		case it.config:
			c.Type = files.TypeConfigNoReplace // conffile in a .deb, %config(noreplace) in an .rpm
		}
		info.Contents = append(info.Contents, c)
	}
	for name, text := range scripts {
		p := filepath.Join(stage, "script-"+name)
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			return err
		}
		switch name {
		case "postinst":
			info.Scripts.PostInstall = p
		case "prerm":
			info.Scripts.PreRemove = p
		case "postrm":
			info.Scripts.PostRemove = p
		}
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return fmt.Errorf("cannot package: %w", err)
	}
	pkgr, err := nfpm.Get(s.Format)
	if err != nil {
		return err
	}
	if err := pkgr.Package(info, w); err != nil {
		return fmt.Errorf("cannot write the %s package: %w", s.Format, err)
	}
	return nil
}

// item is one file of a package.
type item struct {
	src, dst string
	mode     os.FileMode
	config   bool
	link     bool // a symbolic link to src
	debOnly  bool
	rpmOnly  bool
}

// stageFiles writes the package's generated files into stage and returns
// every file of the package.
func stageFiles(s *Spec, stage string) ([]item, error) {
	l := LayoutOf(s.Part)
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(stage, name)
		return p, os.WriteFile(p, data, 0o644)
	}
	conf, err := write("config.plist", s.Config)
	if err != nil {
		return nil, err
	}
	unit, err := write("unit", s.Unit)
	if err != nil {
		return nil, err
	}
	cp, err := write("copyright", []byte(copyright))
	if err != nil {
		return nil, err
	}
	var cl bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&cl, gzip.BestCompression)
	fmt.Fprintf(zw, "%s (%s-1) unstable; urgency=medium\n\n  * Built by vigil package %s.\n\n -- %s  %s\n",
		l.Name, strings.TrimPrefix(s.Version, "v"), s.Part, s.maintainer(), time.Now().UTC().Format(time.RFC1123Z))
	if err := zw.Close(); err != nil {
		return nil, err
	}
	changelog, err := write("changelog.Debian.gz", cl.Bytes())
	if err != nil {
		return nil, err
	}
	overrides, err := write("lintian-overrides", []byte(lintianOverrides(s.Part)))
	if err != nil {
		return nil, err
	}
	items := []item{
		{src: s.Exe, dst: l.Exe, mode: 0o755},
		{src: conf, dst: l.Config, mode: s.ConfigMode, config: true},
		{src: unit, dst: l.Unit, mode: 0o644},
		{src: cp, dst: l.DocDir + "/copyright", mode: 0o644},
		{src: changelog, dst: l.DocDir + "/changelog.Debian.gz", mode: 0o644, debOnly: true},
		{src: overrides, dst: "/usr/share/lintian/overrides/" + l.Name, mode: 0o644, debOnly: true},
	}
	for i, f := range s.Files {
		p, err := write(fmt.Sprintf("file%d", i), f.Data)
		if err != nil {
			return nil, err
		}
		items = append(items, item{src: p, dst: f.Path, mode: f.Mode, config: true})
	}
	if s.Sysusers != nil {
		su, err := write("sysusers", s.Sysusers)
		if err != nil {
			return nil, err
		}
		items = append(items, item{src: su, dst: l.Sysusers, mode: 0o644})
	}
	if l.Link != "" {
		// Relative, so that it points into a root the package is unpacked in.
		items = append(items, item{src: "../lib/" + l.Name + "/vigil", dst: l.Link, link: true})
	}
	return items, nil
}

// writeTar writes the tarball: the package's files at their paths, and its
// maintainer scripts in /usr/lib/vigil-PART/scripts, all owned by root.
func writeTar(w io.Writer, items []item, scripts map[string]string, l Layout, mtime time.Time) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	type entry struct {
		hdr  *tar.Header
		data []byte
		src  string
	}
	var entries []entry
	addDirs := func(p string) {
		for d := path.Dir(p); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			entries = append(entries, entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: "." + d + "/", Mode: 0o755}})
		}
	}
	for _, it := range items {
		if it.debOnly || it.rpmOnly {
			continue
		}
		addDirs(it.dst)
		if it.link {
			entries = append(entries, entry{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: "." + it.dst, Linkname: it.src, Mode: 0o777}})
			continue
		}
		entries = append(entries, entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "." + it.dst, Mode: int64(it.mode)}, src: it.src})
	}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := path.Dir(l.Exe) + "/scripts/" + n
		addDirs(p)
		entries = append(entries, entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "." + p, Mode: 0o755}, data: []byte(scripts[n])})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })
	for _, e := range entries {
		h := e.hdr
		h.Uname, h.Gname, h.ModTime, h.Format = "root", "root", mtime, tar.FormatPAX
		data := e.data
		if e.src != "" {
			var err error
			if data, err = os.ReadFile(e.src); err != nil {
				return err
			}
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
