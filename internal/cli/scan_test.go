package cli

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

const testEICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

func runScanCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	env := &Env{Stdout: &o, Stderr: &e, Getenv: func(string) string { return "" }}
	code = Run(context.Background(), env, append([]string{"scan"}, args...))
	return code, o.String(), e.String()
}

func TestScanCommand(t *testing.T) {
	defs := "../scan/testdata/definitions"
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.txt")
	infected := filepath.Join(dir, "sub", "eicar.com")
	if err := os.MkdirAll(filepath.Dir(infected), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clean, []byte("hello, world"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(infected, []byte(testEICAR), 0o644); err != nil {
		t.Fatal(err)
	}

	// Clean: exit 0, "OK" lines and the summary.
	code, out, errOut := runScanCmd(t, "-d", defs, clean)
	if code != 0 || out[:len(clean)+5] != clean+": OK\n" || errOut != "" {
		t.Errorf("clean: %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"----------- SCAN SUMMARY -----------", "Known signatures: 2\n", "Scanned files: 1\n",
		"Infected files: 0\n", "Data scanned: 0.00 MB\n", "Time: "} {
		if !strings.Contains(out, want) {
			t.Errorf("clean: summary lacks %q:\n%s", want, out)
		}
	}

	// Found: exit 1, FOUND lines, no error message.
	// One detection per file, as clamscan prints; every one with -z.
	code, out, errOut = runScanCmd(t, "-d", defs, "-infected", dir)
	wantFound := infected + ": Eicar-Signature FOUND\n\n"
	if code != 1 || !strings.HasPrefix(out, wantFound) || strings.Contains(out, ": OK") || errOut != "" {
		t.Errorf("infected: %d\n%s\n%s", code, out, errOut)
	}
	for _, flag := range []string{"-z", "-allmatch", "--allmatch"} {
		code, out, errOut = runScanCmd(t, "-d", defs, "-infected", flag, dir)
		wantFound = infected + ": Eicar-Signature FOUND\n" + infected + ": Eicar-Test-Signature FOUND\n\n"
		if code != 1 || !strings.HasPrefix(out, wantFound) || errOut != "" {
			t.Errorf("infected %s: %d\n%s\n%s", flag, code, out, errOut)
		}
	}
	if !strings.Contains(out, "Scanned directories: 2\n") || !strings.Contains(out, "Infected files: 1\n") {
		t.Errorf("infected: summary:\n%s", out)
	}

	// Excluded: clean again.
	code, out, _ = runScanCmd(t, "-d", defs, "-exclude", filepath.Join(dir, "sub"), "-no-summary", dir)
	if code != 0 || out != clean+": OK\n" {
		t.Errorf("exclude: %d\n%s", code, out)
	}
	code, _, _ = runScanCmd(t, "-d", defs, "-exclude-pattern", "*.com", dir)
	if code != 0 {
		t.Errorf("exclude-pattern: %d", code)
	}

	// Too large: not scanned, OK, as clamscan says; with
	// -alert-exceeds-max, the limit's alert.
	code, out, errOut = runScanCmd(t, "-d", defs, "-max-filesize", "10", "-no-summary", infected)
	if code != 0 || out != infected+": OK\n" || errOut != "" {
		t.Errorf("max-filesize: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runScanCmd(t, "-d", defs, "--max-filesize=10", "--alert-exceeds-max", "-no-summary", infected)
	if code != 1 || out != infected+": Heuristics.Limits.Exceeded.MaxFileSize FOUND\n" {
		t.Errorf("max-filesize, alert-exceeds-max: %d\n%s", code, out)
	}
	// Directories deeper than -max-dir-recursion are not entered.
	code, out, _ = runScanCmd(t, "-d", defs, "-max-dir-recursion", "1", "-no-summary", dir)
	if code != 0 || out != clean+": OK\n" {
		t.Errorf("max-dir-recursion 1: %d\n%s", code, out)
	}

	// JSON.
	code, out, _ = runScanCmd(t, "-d", defs, "-json", "-z", dir)
	var rep scanReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
		t.Fatalf("json: %d, %v\n%s", code, err, out)
	}
	if rep.InfectedFiles != 1 || len(rep.Detections) != 2 || rep.Detections[0].SHA256 != "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f" ||
		rep.KnownSignatures != 2 || rep.Files != 2 {
		t.Errorf("json: %+v", rep)
	}

	// Errors: exit 2.
	code, _, errOut = runScanCmd(t, "-d", defs, filepath.Join(dir, "absent"))
	if code != 2 || !strings.Contains(errOut, "no such file or directory") {
		t.Errorf("absent path: %d\n%s", code, errOut)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "daily.ndb"), []byte("A:0:*:4142\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runScanCmd(t, "-d", bad, clean)
	if code != 2 || !strings.Contains(errOut, "daily.ndb:1: hex signature:") {
		t.Errorf("bad definitions: %d\n%s", code, errOut)
	}
	if code, _, _ = runScanCmd(t, "-d", defs); code != 2 {
		t.Errorf("no path: %d", code)
	}
	if code, _, _ = runScanCmd(t, "-d", defs, "-max-filesize", "lots", clean); code != 2 {
		t.Errorf("bad size: %d", code)
	}
	// Infected beats errors: 1.
	if code, _, _ = runScanCmd(t, "-d", defs, infected, filepath.Join(dir, "absent")); code != 1 {
		t.Errorf("infected and absent: %d", code)
	}
}

// TestScanLimitFlags: clamscan's limit flags, read as clamscan reads
// them, and refused when malformed.
func TestScanLimitFlags(t *testing.T) {
	t.Parallel()
	defs := "../scan/testdata/definitions"
	f := filepath.Join(t.TempDir(), "eicar.com")
	if err := os.WriteFile(f, []byte(testEICAR), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"-max-filesize", "68"}, 1},
		{[]string{"-max-filesize", "67"}, 0},
		{[]string{"-max-filesize", "0104"}, 1}, // octal 68, as strtoll reads it
		{[]string{"-max-filesize", "0"}, 1},    // 4 GiB - 1
		{[]string{"-max-filesize", "1k"}, 1},
		{[]string{"-max-scansize", "67"}, 0},
		{[]string{"-max-files", "0"}, 1},
		{[]string{"-max-recursion", "0"}, 1},
		{[]string{"-max-filesize", "lots"}, 2},
		{[]string{"-max-filesize", "09"}, 2},
		{[]string{"-max-files", "-1"}, 2},
		{[]string{"-max-dir-recursion", "x"}, 2},
		{[]string{"-heuristic-alerts=no"}, 1},
		{[]string{"--heuristic-alerts"}, 1},
		{[]string{"-heuristic-alerts=maybe"}, 2},
	} {
		code, out, errOut := runScanCmd(t, append(append([]string{"-d", defs, "-no-summary"}, c.args...), f)...)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d\n%s%s", c.args, code, c.code, out, errOut)
		}
	}
}

// A file name is the scanning user's to choose: its control characters
// reach the terminal escaped, one line per file.
func TestScanEscapesNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "x\x1b]0;pwned\x07\nfake: OK")
	if err := os.WriteFile(name, []byte(testEICAR), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runScanCmd(t, "-d", "../scan/testdata/definitions", "-no-summary", "-z", dir)
	want := safe(name) + ": Eicar-Signature FOUND\n" + safe(name) + ": Eicar-Test-Signature FOUND\n"
	if code != 1 || out != want || strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("exit %d, output %q; want %q", code, out, want)
	}
}

// installDefinitions installs the test definitions in dir as the agent
// does: dir/releases/VERSION and a current link to it.
func installDefinitions(t *testing.T, dir, version string) {
	t.Helper()
	rel := filepath.Join(dir, "releases", version)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vigil-test.hdb", "vigil-test.ndb"} {
		b, err := os.ReadFile(filepath.Join("../scan/testdata/definitions", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rel, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join("releases", version), filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
}

// TestScanFollowsAgentPreferences: without -d, vigil scan loads the
// definitions the agent configured by -agent-config has installed, under
// its StateDirectory or its DefinitionsDirectory.
func TestScanFollowsAgentPreferences(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	infected := filepath.Join(dir, "eicar.com")
	if err := os.WriteFile(infected, []byte(testEICAR), 0o644); err != nil {
		t.Fatal(err)
	}

	// StateDirectory: StateDirectory/definitions/current.
	byState := t.TempDir()
	installDefinitions(t, filepath.Join(byState, "state", "definitions"), "1.0.0")
	agent := agentPlist(t, byState, nil)
	code, out, errOut := runScanCmd(t, "-agent-config", agent, "-no-summary", infected)
	if code != 1 || !strings.Contains(out, infected+": ") || !strings.Contains(out, " FOUND") {
		t.Errorf("StateDirectory: exit %d\n%s\n%s", code, out, errOut)
	}

	// DefinitionsDirectory wins over StateDirectory.
	byDefs := t.TempDir()
	installDefinitions(t, filepath.Join(byDefs, "defs"), "2.0.0")
	agent = agentPlist(t, byDefs, map[string]any{"DefinitionsDirectory": filepath.Join(byDefs, "defs")})
	code, out, errOut = runScanCmd(t, "-agent-config", agent, "-no-summary", infected)
	if code != 1 || !strings.Contains(out, " FOUND") {
		t.Errorf("DefinitionsDirectory: exit %d\n%s\n%s", code, out, errOut)
	}

	// A preference file that does not load is an error naming it; -d
	// does without it.
	bad := filepath.Join(dir, "bad.plist")
	if err := os.WriteFile(bad, []byte("not a plist"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runScanCmd(t, "-agent-config", bad, infected)
	if code != 2 || !strings.Contains(errOut, "bad.plist") || !strings.Contains(errOut, "-d") {
		t.Errorf("bad preference file: exit %d\n%s", code, errOut)
	}
	if code, out, errOut = runScanCmd(t, "-agent-config", bad, "-d", "../scan/testdata/definitions", "-no-summary", infected); code != 1 {
		t.Errorf("bad preference file with -d: exit %d\n%s\n%s", code, out, errOut)
	}

	// No preference file: the default state directory's definitions.
	code, _, errOut = runScanCmd(t, "-agent-config", filepath.Join(dir, "none.plist"), infected)
	want := filepath.Join(prefs.DefaultStateDir(), "definitions", "current")
	if _, err := os.Stat(want); err == nil {
		t.Skipf("%s exists on this machine", want)
	}
	if code != 2 || !strings.Contains(errOut, want) {
		t.Errorf("no preference file: exit %d, want 2 naming %s\n%s", code, want, errOut)
	}
}

// vigil scan -json carries a file name that is not UTF-8 exactly, as
// path_bytes beside the displayable path.
func TestScanJSONNonUTF8Name(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "caf\xe9.com")
	if err := os.WriteFile(name, []byte(testEICAR), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runScanCmd(t, "-d", "../scan/testdata/definitions", "-json", dir)
	var rep struct {
		Detections []struct {
			Path      string `json:"path"`
			PathBytes []byte `json:"path_bytes"`
		} `json:"detections"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || len(rep.Detections) == 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	for _, d := range rep.Detections {
		if string(d.PathBytes) != name || d.Path != strings.ToValidUTF8(name, "\uFFFD") {
			t.Fatalf("path %q, path_bytes %q; want the bytes of %q", d.Path, d.PathBytes, name)
		}
	}
}

var (
	cvdKeyOnce sync.Once
	cvdKey     *rsa.PrivateKey
)

// testContainerKey is the tests' vendor key (2048 bits) and the path of
// its public key in PEM, written into dir.
func testContainerKey(t *testing.T, dir string) (*rsa.PrivateKey, string) {
	t.Helper()
	cvdKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		cvdKey = k
	})
	pemKey, err := cvd.MarshalPublicKey(&cvdKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "vendor.pem")
	if err := os.WriteFile(p, pemKey, 0o644); err != nil {
		t.Fatal(err)
	}
	return cvdKey, p
}

// writeContainer writes a container named name (its extension is its
// kind) holding files into dir.
func writeContainer(t *testing.T, dir, name string, version uint32, key *rsa.PrivateKey, files ...cvd.File) string {
	t.Helper()
	kind, _ := cvd.KindOf(name)
	b, err := cvd.Write(cvd.Build{Kind: kind, Database: cvd.DatabaseName(name), Version: version, FLevel: 90, Builder: "cli-tests",
		Time: time.Date(2026, 12, 2, 8, 30, 0, 0, time.UTC), Files: files, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestScanContainers runs vigil scan -d on ClamAV containers: one file,
// and a directory holding containers and a loose signature file. The
// containers are checked (the tests' key given with -cvd-key; ClamAV's
// keys refuse them), unpacked into a private temporary directory that is
// gone afterwards, and what the loader does not read is listed by -debug.
func TestScanContainers(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	src := t.TempDir()
	key, pub := testContainerKey(t, src)
	hashed := []byte("found by its MD5\n")
	sum := md5.Sum(hashed)
	mainCVD := writeContainer(t, src, "main.cvd", 62, key,
		cvd.File{Name: "main.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Test.Hash\n", sum, len(hashed)))},
		cvd.File{Name: "main.ldb", Data: []byte("Vigil.Test.Logical;Engine:51-255,Target:0;0;41424344\n")})
	files := t.TempDir()
	eicar := filepath.Join(files, "eicar.com")
	hashedFile := filepath.Join(files, "hashed.txt")
	os.WriteFile(eicar, []byte(testEICAR), 0o644)
	os.WriteFile(hashedFile, hashed, 0o644)

	code, out, errOut := runScanCmd(t, "-d", mainCVD, "-cvd-key", pub, "-debug", "-no-summary", "-infected", files)
	if code != 1 || out != hashedFile+": Vigil.Test.Hash FOUND\n" {
		t.Errorf("-d main.cvd: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"debug: main.cvd: not loaded (not a database file ClamAV reads): COPYING, main.info",
		"debug: loaded main.cvd: version 62, functionality level 90, 2 signatures, built 2026-12-02T08:30:00Z"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("-debug: no %q in\n%s", want, errOut)
		}
	}

	// ClamAV's keys (the default) refuse the tests' container.
	code, _, errOut = runScanCmd(t, "-d", mainCVD, files)
	if code != 2 || !strings.Contains(errOut, "container refused") || !strings.Contains(errOut, "digital signature does not match") {
		t.Errorf("ClamAV's keys: exit %d\n%s", code, errOut)
	}

	// A directory: a .cld, a .cud and a loose .ndb, all loaded.
	defs := t.TempDir()
	writeContainer(t, defs, "daily.cld", 27480, key, cvd.File{Name: "daily.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Daily.Hash\n", sum, len(hashed)))})
	writeContainer(t, defs, "local.cud", 3, nil, cvd.File{Name: "local.ndb", Data: []byte("Vigil.Local.Body:0:*:" + hex.EncodeToString([]byte("EICAR-STANDARD")) + "\n")})
	os.WriteFile(filepath.Join(defs, "loose.hdb"), []byte(fmt.Sprintf("%x:%d:Vigil.Loose.Hash\n", md5.Sum([]byte(testEICAR)), len(testEICAR))), 0o644)
	code, out, errOut = runScanCmd(t, "-d", defs, "-cvd-key", pub, "-json", "-z", files)
	var rep scanReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
		t.Fatalf("-d dir: exit %d %v\n%s\n%s", code, err, out, errOut)
	}
	var got []string
	for _, d := range rep.Detections {
		got = append(got, filepath.Base(d.Path)+" "+d.Signature)
	}
	if strings.Join(got, ",") != "eicar.com Vigil.Local.Body,eicar.com Vigil.Loose.Hash,hashed.txt Vigil.Daily.Hash" || rep.KnownSignatures != 3 {
		t.Errorf("-d dir: detections %v, %d signatures", got, rep.KnownSignatures)
	}
	if len(rep.Containers) != 2 || rep.Containers[0].Name != "daily.cld" || rep.Containers[0].Version != 27480 || rep.Containers[1].Name != "local.cud" {
		t.Errorf("-d dir: containers %+v", rep.Containers)
	}

	// A corrupt container: refused, the scan does not run.
	b, _ := os.ReadFile(mainCVD)
	b[len(b)-5] ^= 1
	bad := filepath.Join(t.TempDir(), "main.cvd")
	os.WriteFile(bad, b, 0o644)
	code, out, errOut = runScanCmd(t, "-d", bad, "-cvd-key", pub, files)
	if code != 2 || out != "" || !strings.Contains(errOut, "MD5 of the body") {
		t.Errorf("corrupt: exit %d\n%s\n%s", code, out, errOut)
	}
	// Not a container, not a directory.
	code, _, errOut = runScanCmd(t, "-d", hashedFile, files)
	if code != 2 || !strings.Contains(errOut, "not a directory or a ClamAV container") {
		t.Errorf("-d FILE: exit %d\n%s", code, errOut)
	}

	// A NAME.cvd and a NAME.cld: ClamAV loads the newer, the .cld on a
	// tie, and warns of the other.
	for _, tc := range []struct {
		cvdVersion, cldVersion uint32
		want, skipped          string
	}{{7, 8, "Vigil.Cld.Hash", "daily.cvd"}, {9, 8, "Vigil.Cvd.Hash", "daily.cld"}, {8, 8, "Vigil.Cld.Hash", "daily.cvd"}} {
		pair := t.TempDir()
		writeContainer(t, pair, "daily.cvd", tc.cvdVersion, key, cvd.File{Name: "daily.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Cvd.Hash\n", sum, len(hashed)))})
		writeContainer(t, pair, "daily.cld", tc.cldVersion, key, cvd.File{Name: "daily.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Cld.Hash\n", sum, len(hashed)))})
		code, out, errOut = runScanCmd(t, "-d", pair, "-cvd-key", pub, "-no-summary", hashedFile)
		if code != 1 || out != hashedFile+": "+tc.want+" FOUND\n" || !strings.Contains(errOut, "WARNING: "+tc.skipped+": not loaded: ") {
			t.Errorf("cvd %d, cld %d: exit %d\n%s\n%s", tc.cvdVersion, tc.cldVersion, code, out, errOut)
		}
	}

	// Every private directory is gone.
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in TMPDIR: %v", ents)
	}
}

// TestScanContainerSameAsClamAV scans with a directory holding a .cud
// (the kind of container ClamAV loads without its own keys) and a loose
// .ndb, in vigil scan and in clamscan: the same (file, name) pairs, less
// ClamAV's .UNOFFICIAL suffix.
func TestScanContainerSameAsClamAV(t *testing.T) {
	t.Parallel()
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	defs, files := t.TempDir(), t.TempDir()
	a := []byte("first test file, found by its MD5\n")
	b := []byte("second file: xx VIGIL-CUD-BODY yy\n")
	c := []byte("third file, found by the loose signature LOOSE-MARKER\n")
	for name, data := range map[string][]byte{"a.txt": a, "b.txt": b, "c.txt": c, "clean.txt": []byte("clean file here\n")} {
		os.WriteFile(filepath.Join(files, name), data, 0o644)
	}
	writeContainer(t, defs, "vigil.cud", 4, nil,
		cvd.File{Name: "vigil.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Cud.Hash\n", md5.Sum(a), len(a)))},
		cvd.File{Name: "vigil.ndb", Data: []byte("Vigil.Cud.Body:0:*:" + hex.EncodeToString([]byte("VIGIL-CUD-BODY")) + "\n")})
	os.WriteFile(filepath.Join(defs, "loose.ndb"), []byte("Vigil.Loose.Body:0:*:"+hex.EncodeToString([]byte("LOOSE-MARKER"))+"\n"), 0o644)

	pairs := func(out string) []string {
		var ps []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasSuffix(l, " FOUND") {
				ps = append(ps, strings.Replace(strings.TrimSuffix(l, " FOUND"), ".UNOFFICIAL", "", 1))
			}
		}
		slices.Sort(ps)
		return ps
	}
	code, out, errOut := runScanCmd(t, "-d", defs, "-no-summary", "-infected", files)
	if code != 1 {
		t.Fatalf("vigil scan: exit %d\n%s\n%s", code, out, errOut)
	}
	cmd := exec.Command(clamscan, "--no-summary", "-i", "-d", defs, files)
	cout, _ := cmd.Output()
	got, want := pairs(out), pairs(string(cout))
	if len(want) != 3 || !slices.Equal(got, want) {
		t.Errorf("vigil scan:\n%s\nclamscan:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestScanDebugListsWhatWasNotLoaded: -debug names each signature line
// skipped and each database file ignored, so that nothing is dropped
// silently; without -debug they are not listed.
func TestScanDebugListsWhatWasNotLoaded(t *testing.T) {
	t.Parallel()
	defs := t.TempDir()
	files := map[string]string{
		"daily.ndb": "Internal-Only:13:*:4142434445\nAny-File:0:*:5a51584a4b56\n",
		"daily.ldb": "Logical;Engine:51-255,Target:0;0&1;414243;0/a[bc]d/\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(defs, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(target, []byte("xxZQXJKVxx"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runScanCmd(t, "-debug", "-d", defs, target)
	if code != 1 || !strings.Contains(out, "Any-File FOUND") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{"debug: skipped: daily.ndb:1: Internal-Only:", "debug: not matched: daily.ldb:1: Logical: subsignature 1: PCRE subsignatures are not supported"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, _, errOut := runScanCmd(t, "-d", defs, target); strings.Contains(errOut, "debug:") {
		t.Errorf("without -debug: %s", errOut)
	}
}

// TestScanArchives: vigil scan finds EICAR in a zip inside a gzip,
// reports it on the file, and with -debug lists the limits a file
// reached; -max-files and -alert-exceeds-max as clamscan's.
func TestScanArchives(t *testing.T) {
	t.Parallel()
	defs := "../scan/testdata/definitions"
	dir := t.TempDir()
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for i := range 5 {
		w, _ := zw.Create(fmt.Sprintf("clean%d.txt", i))
		fmt.Fprintf(w, "nothing to see in file %d\n", i)
	}
	w, _ := zw.Create("eicar.com")
	w.Write([]byte(testEICAR))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write(zb.Bytes())
	gw.Close()
	p := filepath.Join(dir, "bundle.zip.gz")
	if err := os.WriteFile(p, gb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runScanCmd(t, "-d", defs, "-no-summary", p)
	if code != 1 || out != p+": Eicar-Signature FOUND\n" {
		t.Errorf("archive: %d\n%s", code, out)
	}
	code, out, errOut := runScanCmd(t, "-d", defs, "-no-summary", "-debug", "-max-files", "4", p)
	if code != 0 || out != p+": OK\n" || !strings.Contains(errOut, "debug: "+p+": Heuristics.Limits.Exceeded.MaxFiles reached at "+p) {
		t.Errorf("max-files 4: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runScanCmd(t, "-d", defs, "-no-summary", "-max-files", "4", "-alert-exceeds-max", p)
	if code != 1 || out != p+": Heuristics.Limits.Exceeded.MaxFiles FOUND\n" {
		t.Errorf("max-files 4, alert: %d\n%s", code, out)
	}
}
