package packaging_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/packaging"
	"github.com/vigil-fleet/vigil/internal/service"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// otherArch is an architecture this test binary is not built for.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// spec is a LiveUpdate server package of this test binary (an ELF
// executable of this machine's architecture) with its real unit.
func spec(t *testing.T, format string) *packaging.Spec {
	t.Helper()
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("packages are for linux/amd64 and linux/arm64; this test binary is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l := packaging.LayoutOf(packaging.PartLiveUpdate)
	unit, err := service.Unit(packaging.PartLiveUpdate, l.Exe, l.Config)
	if err != nil {
		t.Fatal(err)
	}
	users, err := service.Sysusers(packaging.PartLiveUpdate)
	if err != nil {
		t.Fatal(err)
	}
	return &packaging.Spec{
		Part: packaging.PartLiveUpdate, Format: format, Version: "v2.0.1", Arch: runtime.GOARCH,
		Exe: exe, Config: []byte("<plist><dict><key>Root</key><string>/srv/vigil</string></dict></plist>\n"),
		ConfigMode: 0o644, Unit: unit, Sysusers: users,
	}
}

func TestCheckELF(t *testing.T) {
	s := spec(t, "tar")
	if err := packaging.CheckELF(s.Exe, runtime.GOARCH); err != nil {
		t.Errorf("this test binary: %v", err)
	}
	err := packaging.CheckELF(s.Exe, otherArch())
	if err == nil || !strings.Contains(err.Error(), "is built for "+runtime.GOARCH) || !strings.Contains(err.Error(), "GOARCH="+otherArch()) {
		t.Errorf("CheckELF(%s, %s) = %v, want it refused as built for %s", s.Exe, otherArch(), err, runtime.GOARCH)
	}
	text := filepath.Join(t.TempDir(), "vigil")
	os.WriteFile(text, []byte("#!/bin/sh\necho not vigil\n"), 0o755)
	if err := packaging.CheckELF(text, "amd64"); err == nil || !strings.Contains(err.Error(), "not an ELF file") {
		t.Errorf("CheckELF of a script = %v, want not an ELF file", err)
	}
	if err := packaging.CheckELF(filepath.Join(t.TempDir(), "none"), "amd64"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckELF of a missing file = %v, want not exist", err)
	}
}

func TestSpecCheck(t *testing.T) {
	s := spec(t, "deb")
	if err := s.Check(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for name, c := range map[string]struct {
		change func(s *packaging.Spec)
		want   string
	}{
		"part":      {func(s *packaging.Spec) { s.Part = "mirror" }, `part "mirror"`},
		"format":    {func(s *packaging.Spec) { s.Format = "apk" }, `format "apk"`},
		"arch":      {func(s *packaging.Spec) { s.Arch = "386" }, `arch "386"`},
		"otherarch": {func(s *packaging.Spec) { s.Arch = otherArch() }, "is built for " + runtime.GOARCH},
		"version":   {func(s *packaging.Spec) { s.Version = "one" }, `version "one"`},
		"config":    {func(s *packaging.Spec) { s.Config = nil }, "no preference file"},
		"mode":      {func(s *packaging.Spec) { s.ConfigMode = 0o666 }, "mode 0666"},
		"unit":      {func(s *packaging.Spec) { s.Unit = nil }, "no systemd unit"},
		"state":     {func(s *packaging.Spec) { s.StateDir = "/var/lib/$x" }, "state directory"},
		"file": {func(s *packaging.Spec) {
			s.Files = []packaging.File{{Path: "/usr/bin/x", Data: []byte("x"), Mode: 0o644}}
		}, `file "/usr/bin/x"`},
		"twice": {func(s *packaging.Spec) {
			s.Files = []packaging.File{{Path: "/etc/vigil/liveupdate.plist", Mode: 0o644}}
		}, "given twice"},
	} {
		s := spec(t, "deb")
		c.change(s)
		err := s.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check() = %v, want %q", name, err, c.want)
		}
		if err := packaging.Build(s, io.Discard); err == nil {
			t.Errorf("%s: Build accepted it", name)
		}
	}
}

// TestTar checks the tarball's layout: the package's files at their
// paths with their modes, owned by root, and the maintainer scripts.
func TestTar(t *testing.T) {
	s := spec(t, "tar")
	var buf bytes.Buffer
	if err := packaging.Build(s, &buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]*tar.Header{}
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uname != "root" || h.Gname != "root" || h.Uid != 0 {
			t.Errorf("%s owned by %s:%s (%d)", h.Name, h.Uname, h.Gname, h.Uid)
		}
		got[h.Name] = h
		data[h.Name], _ = io.ReadAll(tr)
	}
	l := packaging.LayoutOf(packaging.PartLiveUpdate)
	for path, mode := range map[string]int64{
		l.Exe: 0o755, l.Config: 0o644, l.Unit: 0o644, l.Sysusers: 0o644, l.DocDir + "/copyright": 0o644,
		"/usr/lib/vigil-liveupdate/scripts/postinst": 0o755,
		"/usr/lib/vigil-liveupdate/scripts/prerm":    0o755,
		"/usr/lib/vigil-liveupdate/scripts/postrm":   0o755,
	} {
		h := got["."+path]
		if h == nil {
			t.Errorf("tarball lacks %s", path)
			continue
		}
		if h.Mode != mode || h.Typeflag != tar.TypeReg {
			t.Errorf("%s: mode %o type %c, want a file of mode %o", path, h.Mode, h.Typeflag, mode)
		}
	}
	if !bytes.Equal(data["."+l.Config], s.Config) || !bytes.Equal(data["."+l.Unit], s.Unit) {
		t.Error("tarball's preference file or unit differ from the spec's")
	}
	if !strings.Contains(string(data["./usr/lib/vigil-liveupdate/scripts/postinst"]), "systemctl enable --now vigil-liveupdate.service") {
		t.Errorf("postinst:\n%s", data["./usr/lib/vigil-liveupdate/scripts/postinst"])
	}
	if _, ok := got["./usr/bin/vigil"]; ok {
		t.Error("the LiveUpdate tarball claims /usr/bin/vigil, which only the server package links")
	}
}

// TestRPM builds the .rpm and inspects it with rpm: files, config files,
// scriptlets.
func TestRPM(t *testing.T) {
	rpm := testenv.NeedTool(t, "rpm", "rpm")
	s := spec(t, "rpm")
	p := filepath.Join(t.TempDir(), packaging.FileName(s))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := packaging.Build(s, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	query := func(args ...string) string {
		out, err := exec.Command(rpm, append(append([]string{"-qp"}, args...), p)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qp %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	l := packaging.LayoutOf(packaging.PartLiveUpdate)
	files := query("-l")
	for _, want := range []string{l.Exe, l.Config, l.Unit, l.Sysusers} {
		if !strings.Contains(files, want+"\n") {
			t.Errorf("rpm -qpl lacks %s:\n%s", want, files)
		}
	}
	if cfg := query("-c"); strings.TrimSpace(cfg) != l.Config {
		t.Errorf("rpm -qpc = %q, want %s", cfg, l.Config)
	}
	if got := query("--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}"); got != "vigil-liveupdate 2.0.1 1 "+map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH] {
		t.Errorf("rpm name, version, release, arch: %q", got)
	}
	// %config(noreplace): flags bit 4 (RPMFILE_NOREPLACE = 1<<4) and 1 (config).
	if got := query("--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"); !strings.Contains(got, l.Config+" cn") {
		t.Errorf("%s is not %%config(noreplace):\n%s", l.Config, got)
	}
	scripts := query("--scripts")
	for _, want := range []string{"postinstall scriptlet", "systemctl enable --now vigil-liveupdate.service",
		"preuninstall scriptlet", `if [ "$1" = 0 ] && [ -d /run/systemd/system ]`, "systemctl disable --now vigil-liveupdate.service",
		"systemd-sysusers \"/usr/lib/sysusers.d/vigil-liveupdate.conf\""} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm --scripts lacks %q:\n%s", want, scripts)
		}
	}
}

// TestScriptsWithoutState: a part without a state directory or system user
// has valid scripts that make and remove none.
func TestScriptsWithoutState(t *testing.T) {
	sh := testenv.NeedTool(t, "sh", "dash")
	for _, format := range []string{"deb", "rpm"} {
		sc := packaging.Scripts(packaging.PartLiveUpdate, format, "", false)
		for name, text := range sc {
			p := filepath.Join(t.TempDir(), name)
			os.WriteFile(p, []byte(text), 0o755)
			if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
				t.Errorf("%s %s: sh -n: %v %s\n%s", format, name, err, out, text)
			}
			if strings.Contains(text, "/var/lib") || strings.Contains(text, "rm -rf") || strings.Contains(text, "sysusers") {
				t.Errorf("%s %s touches a state directory or user it has not:\n%s", format, name, text)
			}
		}
	}
	sc := packaging.Scripts(packaging.PartAgent, "deb", "/var/lib/vigil", false)
	// A removal leaves a mark for the next install to enable the service
	// again; a purge removes it.
	if !strings.Contains(sc["prerm"], `touch "/etc/vigil/.vigil-agent.removed"`) ||
		!strings.Contains(sc["postinst"], `[ -e "/etc/vigil/.vigil-agent.removed" ]`) ||
		!strings.Contains(sc["postrm"], `rm -f "$root/etc/vigil/.vigil-agent.removed"`) {
		t.Errorf("agent scripts do not keep the removal mark:\n%s\n%s\n%s", sc["prerm"], sc["postinst"], sc["postrm"])
	}
	if !strings.Contains(sc["postrm"], `purge`) || !strings.Contains(sc["postrm"], `rm -rf "$root/var/lib/vigil"`) {
		t.Errorf("agent postrm does not remove the state directory on purge:\n%s", sc["postrm"])
	}
}
