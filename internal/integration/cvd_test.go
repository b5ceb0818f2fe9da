//go:build linux

package integration

import (
	"archive/zip"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/cvd"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// runVigil runs a vigil command to completion and returns its exit code,
// standard output and standard error.
func runVigil(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vigilBin, args...)
	cmd.Env = cleanEnv()
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return code, out.String(), errOut.String()
}

// fileTree maps every file under dir to the SHA-256 of its content (and
// every directory to "dir"), to show that a refused command wrote nothing.
func fileTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			m[p] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		m[p] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestClamAVContainerToAgentScan takes a ClamAV container from the vendor
// to an agent's detections, every part a real vigil process on this host:
// a .cvd built by the test (header, MD5, a signature by the test's own
// RSA key, the tar.gz with a .info signed by it too) holding a hash
// signature and a body signature for two test files is added with vigil
// repo add-definitions (trusting the test's key with -cvd-key), published,
// served by vigil liveupdate over HTTP on 127.0.0.1, installed by an agent
// on an update command, and detects both files in the agent's scan. Before
// that, a copy with a wrong MD5 and one signed by another key are refused
// and leave the repository exactly as it was.
func TestClamAVContainerToAgentScan(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := cvd.MarshalPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "vendor.pem")
	os.WriteFile(keyFile, pemKey, 0o644)

	// Two EICAR-style test files: one found by its MD5, one by a body
	// signature in the middle of other bytes.
	samples := filepath.Join(dir, "samples")
	os.MkdirAll(samples, 0o755)
	hashed := []byte("VIGIL-CVD-HASH-TEST-FILE: not a virus, found by its MD5\n")
	marker := "VIGIL-CVD-BODY-TEST-MARKER"
	body := []byte("some text before " + marker + " and after\n")
	hashedPath, bodyPath, cleanPath := filepath.Join(samples, "hashed.com"), filepath.Join(samples, "body.txt"), filepath.Join(samples, "clean.txt")
	os.WriteFile(hashedPath, hashed, 0o644)
	os.WriteFile(bodyPath, body, 0o644)
	os.WriteFile(cleanPath, []byte("nothing to see\n"), 0o644)
	// And a zip holding a member with two words, the second in any
	// case: found by a logical signature for files in zips only.
	logicPath := filepath.Join(samples, "logic.zip")
	os.WriteFile(logicPath, unpacktest.Zip(t, unpacktest.ZipEntry{Name: "note.bin", Method: zip.Deflate,
		Data: []byte("\x00\x01 first VIGILWORDONE then vigilWordTwo \x00")}), 0o644)
	files := []cvd.File{
		{Name: "main.hdb", Data: []byte(fmt.Sprintf("%x:%d:Vigil.Test.CVD-Hash\n", md5.Sum(hashed), len(hashed)))},
		{Name: "main.ldb", Data: []byte("Vigil.Test.CVD-Logic;Engine:51-255,Target:0,Container:CL_TYPE_ZIP;0&1;" +
			hex.EncodeToString([]byte("VIGILWORDONE")) + ";" + hex.EncodeToString([]byte("VIGILWORDTWO")) + "::i\n")},
		{Name: "main.ndb", Data: []byte("Vigil.Test.CVD-Body:0:*:" + hex.EncodeToString([]byte(marker)) + "\n")},
	}
	build := func(sub string, k *rsa.PrivateKey) string {
		b, err := cvd.Write(cvd.Build{Kind: cvd.CVD, Database: "main", Version: 62, FLevel: 90, Builder: "vigil-e2e",
			Time: time.Now().Truncate(time.Minute), Files: files, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, sub, "main.cvd")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := build("good", key)
	forged := build("forged", otherKey)
	b, _ := os.ReadFile(good)
	b[len(b)-40] ^= 0x20 // the gzip trailer: the body's MD5 no longer matches
	corrupt := filepath.Join(dir, "corrupt", "main.cvd")
	os.MkdirAll(filepath.Dir(corrupt), 0o755)
	os.WriteFile(corrupt, b, 0o644)

	// The vendor's repository.
	repoDir := filepath.Join(dir, "vendor")
	if code, out, errOut := runVigil(t, "repo", "init", "-dir", repoDir); code != 0 {
		t.Fatalf("repo init: exit %d\n%s%s", code, out, errOut)
	}
	const version = "2026120201"
	before := fileTree(t, repoDir)
	for _, bad := range []struct{ path, want string }{
		{corrupt, "MD5 of the body"},
		{forged, "digital signature does not match"},
	} {
		code, out, errOut := runVigil(t, "repo", "add-definitions", "-dir", repoDir, "-cvd-key", keyFile, version, bad.path)
		if code == 0 || !strings.Contains(errOut, "container refused, nothing staged") || !strings.Contains(errOut, bad.want) {
			t.Errorf("add-definitions of %s: exit %d\n%s%s", bad.path, code, out, errOut)
		}
		if after := fileTree(t, repoDir); !sameFiles(before, after) {
			t.Errorf("refusing %s changed the repository", bad.path)
		}
	}
	// Without -cvd-key, ClamAV's published keys refuse the test's .cvd.
	if code, _, errOut := runVigil(t, "repo", "add-definitions", "-dir", repoDir, version, good); code == 0 || !strings.Contains(errOut, "digital signature does not match") {
		t.Errorf("add-definitions checked with ClamAV's keys: exit %d %s", code, errOut)
	}
	code, out, errOut := runVigil(t, "repo", "add-definitions", "-dir", repoDir, "-cvd-key", keyFile, version, good)
	if code != 0 || !strings.Contains(out, "Verified main.cvd: version 62, functionality level 90, 3 signatures") || !strings.Contains(out, "files: main.hdb, main.ldb, main.ndb") {
		t.Fatalf("add-definitions: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runVigil(t, "repo", "publish", "-dir", repoDir); code != 0 {
		t.Fatalf("publish: exit %d\n%s%s", code, out, errOut)
	}
	if _, out, _ := runVigil(t, "repo", "status", "-dir", repoDir); !strings.Contains(out, "latest from ClamAV containers:\n    main.cvd: version 62, functionality level 90") {
		t.Errorf("repo status:\n%s", out)
	}
	r, err := publish.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}

	// vigil liveupdate serves it over HTTP on 127.0.0.1.
	luAddr := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	luPlist, err := plist.Marshal(map[string]any{"Root": r.PublicDir(), "HTTP": luAddr, "FTP": "off"}, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "liveupdate.plist"), luPlist, 0o644)
	lu := startLocal(t, "liveupdate", "liveupdate", "-config", filepath.Join(dir, "liveupdate.plist"))
	lu.WaitLog(t, "serving HTTP", 30*time.Second)

	// A server and an agent that updates from it.
	srv := newLoopbackServer(t)
	f := srv.fleet(t)
	m := srv.addAgent(f, "cvd-agent")
	p, err := prefs.Load(m.plist)
	if err != nil {
		t.Fatal(err)
	}
	p.LiveUpdateServers = []string{"http://" + luAddr + "/"}
	p.RepositoryRoot = r.RootPath()
	p.DefinitionsDirectory = filepath.Join(filepath.Dir(m.plist), "definitions")
	if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	f.startAgent(m)
	f.learnIDs()

	f.send(command.Target{All: true}, "update")
	f.waitResults(60 * time.Second)
	installed := definitions.CurrentLink(p.DefinitionsDirectory)
	ents, err := os.ReadDir(installed)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"main.hdb", "main.ldb", "main.ndb"}) {
		t.Errorf("installed definitions: %v", names)
	}

	f.send(command.Target{All: true}, "scan", "paths="+samples, "quarantine=no")
	f.waitResults(60 * time.Second)
	var ds []api.DetectionInfo
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := f.vigil("detections", "-json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &ds); err != nil {
			t.Fatalf("detections -json: %v\n%s", err, out)
		}
		if len(ds) >= 3 || time.Now().After(deadline) {
			break
		}
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.Path+" "+d.Signature+" "+d.DefsVer)
	}
	slices.Sort(got)
	want := []string{bodyPath + " Vigil.Test.CVD-Body " + version, hashedPath + " Vigil.Test.CVD-Hash " + version,
		logicPath + " Vigil.Test.CVD-Logic " + version}
	if !slices.Equal(got, want) {
		t.Errorf("detections:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.stopAgents()
	f.checkJournals()
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
