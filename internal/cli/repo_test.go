package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/transport"
)

func TestRepoCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	offline := filepath.Join(t.TempDir(), "usb")
	src := t.TempDir()
	must := func(args ...string) string {
		t.Helper()
		code, out, stderr := run(t, nil, args...)
		if code != 0 {
			t.Fatalf("vigil %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, stderr)
		}
		return out
	}

	out := must("repo", "init", "-dir", dir, "-root-keys", offline, "-timestamp-expires", "2h")
	if !strings.Contains(out, "Created repository "+dir) || !strings.Contains(out, filepath.Join(dir, "public", "metadata", "1.root.json")) {
		t.Fatalf("init output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(offline, "root.key")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, nil, "repo", "status", "-dir", dir)
	if code != 0 || !strings.Contains(stderr, "warning: timestamp metadata (version 1) expires in") {
		t.Fatalf("status of a timestamp expiring in 2h: exit %d, stderr %q", code, stderr)
	}

	main := filepath.Join(src, "main.hdb")
	daily := filepath.Join(src, "daily.ndb")
	os.WriteFile(main, []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"), 0o644)
	os.WriteFile(daily, []byte("Test.Body:0:*:4556494c\n"), 0o644)
	out = must("repo", "add-definitions", "-dir", dir, "2026112501", main, daily)
	if !strings.Contains(out, "Staged definitions/2026112501.tar (2 file(s))") {
		t.Fatalf("add-definitions output:\n%s", out)
	}
	withRelease := false
	if exe, err := os.Executable(); err == nil && repo.CheckBinary(exe, runtime.GOOS, runtime.GOARCH) == nil {
		withRelease = true
		must("repo", "add-release", "-dir", dir, "-os", runtime.GOOS, "-arch", runtime.GOARCH, "v1.2.3", exe)
		other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
		code, _, stderr := run(t, nil, "repo", "add-release", "-dir", dir, "-os", runtime.GOOS, "-arch", other, "v1.2.3", exe)
		if code != 1 || !strings.Contains(stderr, "is not a "+runtime.GOOS+"/"+other+" executable") {
			t.Fatalf("add-release of the wrong architecture: exit %d, %q", code, stderr)
		}
	}
	code, out, _ = run(t, nil, "repo", "status", "-dir", dir)
	if code != 0 || !strings.Contains(out, "Staged, not yet published") || !strings.Contains(out, "definitions/2026112501.tar") {
		t.Fatalf("status with staged targets:\n%s", out)
	}

	out = must("repo", "publish", "-dir", dir, "-timestamp-expires", "30h")
	if !strings.Contains(out, "Published definitions/2026112501.tar") || !strings.Contains(out, "Published targets version 2, snapshot version 2, timestamp version 2") {
		t.Fatalf("publish output:\n%s", out)
	}
	code, out, stderr = run(t, map[string]string{"VIGIL_REPO": dir}, "repo", "status") // -dir from the environment
	if code != 0 || stderr != "" || !strings.Contains(out, "latest 2026112501") || !strings.Contains(out, "Staged: nothing") {
		t.Fatalf("status after publish: exit %d\n%s\nstderr %q", code, out, stderr)
	}
	if withRelease && !strings.Contains(out, "v1.2.3") {
		t.Fatalf("status lacks the release:\n%s", out)
	}
	var s publish.Status
	if err := json.Unmarshal([]byte(must("repo", "status", "-dir", dir, "-json")), &s); err != nil || len(s.Definitions) != 1 || s.Timestamp.Version != 2 {
		t.Fatalf("status -json: %+v %v", s, err)
	}

	out = must("repo", "refresh-timestamp", "-dir", dir)
	if !strings.Contains(out, "Timestamp version 3") {
		t.Fatalf("refresh-timestamp output:\n%s", out)
	}
	code, _, stderr = run(t, nil, "repo", "sign-root", "-dir", dir)
	if code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("sign-root without the offline key: exit %d %q", code, stderr)
	}
	out = must("repo", "sign-root", "-dir", dir, "-root-keys", offline, "-rotate-keys", "timestamp")
	if !strings.Contains(out, "Root version 2") || !strings.Contains(out, "New keys for timestamp") {
		t.Fatalf("sign-root output:\n%s", out)
	}

	// What the commands made verifies with go-tuf's client.
	r, err := publish.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := os.ReadFile(r.RootPath())
	cfg, err := repo.ClientConfig("file://"+r.PublicDir(), root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fetcher = transport.FileFetcher{Dir: r.PublicDir()}
	cfg.DisableLocalCache = true
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, v, ok := repo.LatestDefinitions(up.GetTopLevelTargets()); !ok || v != "2026112501" {
		t.Fatalf("latest definitions %q", v)
	}
	if _, v, ok := repo.LatestRelease(up.GetTopLevelTargets(), runtime.GOOS, runtime.GOARCH); withRelease && (!ok || v != "v1.2.3") {
		t.Fatalf("latest release %q", v)
	}
}

func TestRepoUsageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if code, _, stderr := run(t, nil, "repo", "init", "-dir", dir); code != 0 {
		t.Fatal(stderr)
	}
	f := filepath.Join(t.TempDir(), "main.hdb")
	os.WriteFile(f, []byte("x"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no command", []string{"repo"}, 2, "name a repo command"},
		{"unknown command", []string{"repo", "frob"}, 2, `unknown repo command "frob"`},
		{"help", []string{"repo", "-h"}, 0, "refresh-timestamp"},
		{"init again", []string{"repo", "init", "-dir", dir}, 1, "already exists"},
		{"init bad expiry", []string{"repo", "init", "-dir", dir + "2", "-timestamp-expires", "0s"}, 2, "-timestamp-expires 0s"},
		{"init stray argument", []string{"repo", "init", "-dir", dir, "x"}, 2, "unexpected arguments"},
		{"not a repository", []string{"repo", "status", "-dir", t.TempDir()}, 1, "not a repository"},
		{"definitions no files", []string{"repo", "add-definitions", "-dir", dir, "1"}, 2, "at least one signature file"},
		{"definitions bad version", []string{"repo", "add-definitions", "-dir", dir, "v1", f}, 2, "digits only"},
		{"definitions missing file", []string{"repo", "add-definitions", "-dir", dir, "1", f + ".nope"}, 1, "main.hdb.nope"},
		{"release no os", []string{"repo", "add-release", "-dir", dir, "-arch", "amd64", "v1.2.3", f}, 2, "give -os and -arch"},
		{"release bad version", []string{"repo", "add-release", "-dir", dir, "-os", "linux", "-arch", "amd64", "1.2.3", f}, 2, "no leading v"},
		{"release bad os", []string{"repo", "add-release", "-dir", dir, "-os", "windows", "-arch", "amd64", "v1.2.3", f}, 1, `os "windows"`},
		{"release not a binary", []string{"repo", "add-release", "-dir", dir, "-os", "linux", "-arch", "amd64", "v1.2.3", f}, 1, "not a linux/amd64 executable"},
		{"publish bad expiry", []string{"repo", "publish", "-dir", dir, "-snapshot-expires", "-1h"}, 2, "want a positive duration"},
		{"publish negative deltas", []string{"repo", "publish", "-dir", dir, "-deltas", "-1"}, 2, "-deltas -1: want 0 (no deltas) to 100"},
		{"publish too many deltas", []string{"repo", "publish", "-dir", dir, "-deltas", "101"}, 2, "-deltas 101: want 0 (no deltas) to 100"},
		{"init bad deltas", []string{"repo", "init", "-dir", dir + "3", "-deltas", "-5"}, 2, "-deltas -5"},
		{"refresh bad flag", []string{"repo", "refresh-timestamp", "-dir", dir, "-nope"}, 2, "flag provided but not defined"},
		{"sign-root bad role", []string{"repo", "sign-root", "-dir", dir, "-rotate-keys", "root"}, 1, "cannot rotate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d containing %q", code, stderr, tt.code, tt.msg)
			}
		})
	}
}

// TestRepoAddDefinitionsContainers stages a release from ClamAV
// containers: each verified before anything is staged (a corrupt one, or
// one the trusted key did not sign, stages nothing), its signature files
// in the release, its header's version and functionality level shown by
// vigil repo status and kept in the release.
func TestRepoAddDefinitionsContainers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	src := t.TempDir()
	key, pub := testContainerKey(t, src)
	if code, out, errOut := run(t, nil, "repo", "init", "-dir", dir); code != 0 {
		t.Fatalf("init: %d\n%s\n%s", code, out, errOut)
	}
	mainCVD := writeContainer(t, src, "main.cvd", 62, key, cvd.File{Name: "main.hdb", Data: []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")})
	dailyCLD := writeContainer(t, src, "daily.cld", 27480, key, cvd.File{Name: "daily.ndb", Data: []byte("Test.Body:0:*:4556494c\n")})
	b, _ := os.ReadFile(dailyCLD)
	b[bytes.Index(b, []byte("Test.Body"))] ^= 1 // inside daily.ndb (a .cld's tar is plain)
	corrupt := filepath.Join(t.TempDir(), "daily.cld")
	os.WriteFile(corrupt, b, 0o644)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{mainCVD, dailyCLD}, "digital signature does not match"}, // ClamAV's keys
		{[]string{"-cvd-key", pub, mainCVD, corrupt}, "differs from daily.info"},
		{[]string{"-cvd-key", filepath.Join(src, "nope.pem"), mainCVD}, "-cvd-key"},
	} {
		var args []string
		if strings.HasPrefix(tc.args[0], "-") {
			args = append([]string{"repo", "add-definitions", "-dir", dir, tc.args[0], tc.args[1], "2026120201"}, tc.args[2:]...)
		} else {
			args = append([]string{"repo", "add-definitions", "-dir", dir, "2026120201"}, tc.args...)
		}
		code, _, errOut := run(t, nil, args...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want %q", tc.args, code, errOut, tc.want)
		}
		if _, out, _ := run(t, nil, "repo", "status", "-dir", dir); !strings.Contains(out, "Staged: nothing") {
			t.Errorf("%v staged something:\n%s", tc.args, out)
		}
	}

	code, out, errOut := run(t, nil, "repo", "add-definitions", "-dir", dir, "-cvd-key", pub, "2026120201", mainCVD, dailyCLD)
	if code != 0 {
		t.Fatalf("add-definitions: %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"Verified main.cvd: version 62, functionality level 90, 1 signatures, built 2026-12-02T08:30:00Z",
		"Verified daily.cld: version 27480, functionality level 90, 1 signatures",
		"Left out (not a database file ClamAV reads): main.cvd: COPYING, main.cvd: main.info, daily.cld: COPYING, daily.cld: daily.info",
		"Staged definitions/2026120201.tar (2 file(s))", "files: daily.ndb, main.hdb",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("add-definitions: no %q in\n%s", want, out)
		}
	}
	if _, out, _ = run(t, nil, "repo", "status", "-dir", dir); !strings.Contains(out, "from main.cvd: version 62, functionality level 90") {
		t.Errorf("status of staged containers:\n%s", out)
	}
	if code, out, errOut = run(t, nil, "repo", "publish", "-dir", dir); code != 0 {
		t.Fatalf("publish: %d\n%s\n%s", code, out, errOut)
	}
	_, out, _ = run(t, nil, "repo", "status", "-dir", dir)
	if !strings.Contains(out, "latest from ClamAV containers:\n    main.cvd: version 62, functionality level 90, 1 signatures, built 2026-12-02T08:30:00Z\n    daily.cld: version 27480, functionality level 90") {
		t.Errorf("status:\n%s", out)
	}
	_, out, _ = run(t, nil, "repo", "status", "-dir", dir, "-json")
	var s publish.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s.Definitions) != 1 || len(s.Definitions[0].Custom.Containers) != 2 ||
		s.Definitions[0].Custom.Containers[1].Version != 27480 || s.Definitions[0].Custom.Containers[1].FLevel != 90 {
		t.Errorf("status -json: %v\n%s", err, out)
	}
}

// TestRepoSignatures stages and publishes, with vigil repo commands,
// definitions holding signatures the engine matches, a logical signature
// with a PCRE subsignature (loaded, not matched), a line ClamAV skips too
// (functionality level) and one whose name holds a terminal escape:
// add-definitions and status show the counts, vigil repo signatures lists
// each line not matched or skipped with its file, line and reason,
// escaped, exactly as vigil scan -debug lists them for the same files;
// definitions that do not load are refused, or reported, with the file
// and line.
func TestRepoSignatures(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "repo")
	src := t.TempDir()
	must := func(args ...string) string {
		t.Helper()
		code, out, stderr := run(t, nil, args...)
		if code != 0 {
			t.Fatalf("vigil %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, stderr)
		}
		return out
	}
	must("repo", "init", "-dir", dir)
	if code, _, stderr := run(t, nil, "repo", "signatures", "-dir", dir); code != 1 || !strings.Contains(stderr, "no definitions release is published or staged") {
		t.Errorf("signatures of an empty repository: exit %d, %q", code, stderr)
	}
	var paths []string
	for name, data := range map[string]string{
		"main.hdb":  "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
		"daily.ndb": "Vigil.Test.Body:0:*:4556494c\nVigil.Test.Future:0:*:41424344:250\nVigil.Test.\x1b[2JClear:0:*:5a5a5a5a\n",
		"daily.ldb": "Vigil.Test.PCRE;Engine:81-255,Target:0;0&1;68656c6c6f20;0/hello [a-z]+/i\n",
	} {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	const counts = "1 hash, 1 body, 1 logical (ClamAV counts 4); 1 not matched, 2 lines skipped, 0 files ignored"

	out := must(append([]string{"repo", "add-definitions", "-dir", dir, "2026120201"}, paths...)...)
	for _, want := range []string{"Signatures: " + counts + "\n", "vigil repo signatures -release 2026120201 lists"} {
		if !strings.Contains(out, want) {
			t.Errorf("add-definitions: no %q in\n%s", want, out)
		}
	}
	out = must("repo", "status", "-dir", dir)
	if !regexp.MustCompile(`\n  definitions/2026120201\.tar +\d+ bytes +signatures: ` + regexp.QuoteMeta(counts) + "\n").MatchString(out) {
		t.Errorf("status of the staged release:\n%s", out)
	}
	listing := func(out string) []string {
		var l []string
		for _, line := range strings.Split(out, "\n") {
			line = strings.TrimPrefix(line, "debug: ")
			if strings.HasPrefix(line, "not matched: ") || strings.HasPrefix(line, "skipped: ") {
				l = append(l, line)
			}
		}
		return l
	}
	out = must("repo", "signatures", "-dir", dir)
	if !strings.HasPrefix(out, "Definitions 2026120201 (definitions/2026120201.tar, staged)\n") {
		t.Errorf("signatures of the staged release:\n%s", out)
	}
	staged := listing(out)

	must("repo", "publish", "-dir", dir)
	out = must("repo", "status", "-dir", dir)
	if !regexp.MustCompile(`\n  2026120201 +definitions/2026120201\.tar +\d+ bytes +signatures: ` + regexp.QuoteMeta(counts) + "\n  \\(vigil repo signatures -release VERSION lists").MatchString(out) {
		t.Errorf("status of the published release:\n%s", out)
	}
	out = must("repo", "signatures", "-dir", dir, "-release", "2026120201")
	if !strings.HasPrefix(out, "Definitions 2026120201 (definitions/2026120201.tar, published)\n") || strings.Contains(out, "\x1b") {
		t.Errorf("signatures of the published release:\n%q", out)
	}
	got := listing(out)
	want := []string{
		"not matched: daily.ldb:1: Vigil.Test.PCRE: subsignature 1: ",
		"skipped: daily.ndb:2: Vigil.Test.Future: minimum functionality level 250 is above 216 (ClamAV skips it too)",
		`skipped: daily.ndb:3: Vigil.Test.\x1b[2JClear: `,
	}
	if len(got) != len(want) || !slices.Equal(got, staged) {
		t.Fatalf("listing %q, staged %q; want %q", got, staged, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %q, want %q...", i, got[i], want[i])
		}
	}
	if !strings.Contains(strings.TrimPrefix(got[0], want[0]), "PCRE") {
		t.Errorf("the reason does not name the PCRE subsignature: %q", got[0])
	}
	// The same listing as vigil scan -debug's for the files given.
	sample := filepath.Join(t.TempDir(), "sample")
	os.WriteFile(sample, []byte("nothing to find\n"), 0o644)
	code, _, stderr := run(t, nil, "scan", "-debug", "-d", src, sample)
	if code != 0 || !slices.Equal(listing(stderr), got) {
		t.Errorf("scan -debug: exit %d, listing %q; repo signatures %q", code, listing(stderr), got)
	}

	// Bad input.
	bad := filepath.Join(src, "bad", "extra.ndb")
	os.MkdirAll(filepath.Dir(bad), 0o755)
	os.WriteFile(bad, []byte("Bad.Body:0:*:4g\n"), 0o644)
	code, _, stderr = run(t, nil, append([]string{"repo", "add-definitions", "-dir", dir, "2026120202", bad}, paths...)...)
	if code != 1 || !strings.Contains(stderr, "the signatures do not load, nothing staged: loading signatures from definitions 2026120202: extra.ndb:1: ") {
		t.Errorf("add-definitions of a file ClamAV refuses: exit %d, %q", code, stderr)
	}
	r, err := publish.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("2026120203", map[string][]byte{"main.hdb": []byte("not a hash line\n")}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, nil, "repo", "signatures", "-dir", dir)
	if code != 1 || !strings.Contains(stderr, "the release does not load: loading signatures from definitions 2026120203 (definitions/2026120203.tar): main.hdb:1: ") {
		t.Errorf("signatures of a release that does not load: exit %d, %q", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-release", "v1"}, 2, "-release: definitions version"},
		{[]string{"-release", "2026120209"}, 1, "definitions 2026120209: not published or staged"},
		{[]string{"extra"}, 2, "unexpected arguments"},
	} {
		code, _, stderr := run(t, nil, append([]string{"repo", "signatures", "-dir", dir}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("signatures %v: exit %d, %q; want %d, %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// TestRepoDeltas: publish makes deltas to a new definitions release from
// the previous -deltas (or config.json's) releases and says so; status
// shows each release's full size and its deltas' sizes; a bad -deltas
// changes nothing.
func TestRepoDeltas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	src := t.TempDir()
	must := func(args ...string) string {
		t.Helper()
		code, out, stderr := run(t, nil, args...)
		if code != 0 {
			t.Fatalf("vigil %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, stderr)
		}
		return out
	}
	must("repo", "init", "-dir", dir, "-deltas", "2")
	// Hash signatures: "MD5:SIZE:NAME", one line each; each release
	// changes a few.
	lines := make([]string, 3000)
	for i := range lines {
		lines[i] = fmt.Sprintf("%032x:%d:Test.Sig-%d\n", uint64(i)*0x9e3779b97f4a7c15, 100+i, i)
	}
	add := func(version string) {
		t.Helper()
		for i := range 10 {
			k := (len(version)*7919 + i*613) % len(lines)
			lines[k] = fmt.Sprintf("%032x:%d:Test.Sig-%s-%d\n", uint64(k+1)*0xbf58476d1ce4e5b9, 200+k, version, i)
		}
		f := filepath.Join(src, "daily.hdb")
		if err := os.WriteFile(f, []byte(strings.Join(lines, "")), 0o644); err != nil {
			t.Fatal(err)
		}
		must("repo", "add-definitions", "-dir", dir, version, f)
	}
	add("1")
	out := must("repo", "publish", "-dir", dir)
	if strings.Contains(out, "delta") {
		t.Fatalf("first publish made a delta:\n%s", out)
	}
	add("22")
	out = must("repo", "publish", "-dir", dir)
	if !regexp.MustCompile(`Published definitions/deltas/1-22\.delta: \d+ bytes, \d\.\d\d% of the full release \(\d+ bytes\)`).MatchString(out) {
		t.Fatalf("publish output:\n%s", out)
	}
	add("333")
	must("repo", "publish", "-dir", dir)
	add("4444")
	out = must("repo", "publish", "-dir", dir)
	if !strings.Contains(out, "Published definitions/deltas/333-4444.delta") || !strings.Contains(out, "Published definitions/deltas/22-4444.delta") ||
		strings.Contains(out, "1-4444") || !strings.Contains(out, "Dropped 2 delta(s)") {
		t.Fatalf("publish with config.json's 2 deltas:\n%s", out)
	}

	// Status: each release's full size, and under the latest its deltas.
	out = must("repo", "status", "-dir", dir)
	full := regexp.MustCompile(`(?m)^  4444 +definitions/4444\.tar +(\d+) bytes`).FindStringSubmatch(out)
	if full == nil {
		t.Fatalf("status lacks 4444's full size:\n%s", out)
	}
	for _, base := range []string{"333", "22"} {
		re := regexp.MustCompile(`(?m)^    delta from ` + base + ` +definitions/deltas/` + base + `-4444\.delta +(\d+) bytes +(\d+\.\d+)% of the full release$`)
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("status lacks the delta from %s:\n%s", base, out)
		}
		var n, f int64
		var pct float64
		fmt.Sscan(m[1], &n)
		fmt.Sscan(full[1], &f)
		fmt.Sscan(m[2], &pct)
		if n <= 0 || n >= f/5 || pct < 100*float64(n)/float64(f)-0.01 || pct > 100*float64(n)/float64(f)+0.01 {
			t.Errorf("delta from %s: %d bytes, %.2f%% of %d", base, n, pct, f)
		}
	}
	var s publish.Status
	if err := json.Unmarshal([]byte(must("repo", "status", "-dir", dir, "-json")), &s); err != nil || len(s.Deltas) != 2 || s.Deltas[0].Custom.Base != "333" {
		t.Fatalf("status -json: %+v %v", s.Deltas, err)
	}

	// -deltas overrides config.json; a bad value changes nothing.
	add("55555")
	before := dirTree(t, dir)
	if code, _, stderr := run(t, nil, "repo", "publish", "-dir", dir, "-deltas", "101"); code != 2 || !strings.Contains(stderr, "-deltas 101") {
		t.Fatalf("publish -deltas 101: exit %d %q", code, stderr)
	}
	if after := dirTree(t, dir); !maps.Equal(before, after) {
		t.Fatal("a refused publish changed the repository")
	}
	out = must("repo", "publish", "-dir", dir, "-deltas", "3")
	for _, base := range []string{"4444", "333", "22"} {
		if !strings.Contains(out, "Published definitions/deltas/"+base+"-55555.delta") {
			t.Errorf("publish -deltas 3 lacks the delta from %s:\n%s", base, out)
		}
	}
}

// dirTree maps every file under dir to its content.
func dirTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
