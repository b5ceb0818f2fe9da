package liveupdate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// newRealRepo creates a repository directory as vigil repo init does
// (DIR/keys/root/root.key, DIR/keys/ROLE.key beside DIR/public/) and
// returns DIR and its key files (path relative to DIR → content).
func newRealRepo(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := r.Dir()
	keys := map[string][]byte{}
	err = filepath.WalkDir(filepath.Join(dir, "keys"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		keys[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"keys/root/root.key", "keys/targets.key", "keys/snapshot.key", "keys/timestamp.key"} {
		if !isPEMPrivateKey(keys[k]) {
			t.Fatalf("repository key %s is not a PEM private key: %q", k, keys[k])
		}
	}
	return dir, keys
}

// TestRefusesTreeWithKeys: New refuses a root that is a repository
// directory, holds one, is its keys/ directory or holds a private key
// file, with an error naming the public/ folder to serve; it serves the
// public/ folder itself.
func TestRefusesTreeWithKeys(t *testing.T) {
	t.Parallel()
	dir, keys := newRealRepo(t)
	public := filepath.Join(dir, "public")

	loose := t.TempDir() // a tree with a key under an innocent name
	must(t, os.MkdirAll(filepath.Join(loose, "metadata", "old"), 0o755))
	must(t, os.WriteFile(filepath.Join(loose, "metadata", "1.root.json"), []byte(`{"signed":{}}`), 0o644))
	must(t, os.WriteFile(filepath.Join(loose, "metadata", "old", "backup.json"), keys["keys/targets.key"], 0o600))
	named := t.TempDir() // a file named like a key, whatever it holds
	must(t, os.WriteFile(filepath.Join(named, "release.key"), []byte("not PEM at all"), 0o644))
	other := t.TempDir() // another kind of PEM private key, indented
	must(t, os.WriteFile(filepath.Join(other, "id"), []byte("\n  -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), 0o600))

	for _, tc := range []struct {
		name, root, found, public string
	}{
		{"repository directory", dir, filepath.Join(dir, "keys") + "/", public},
		{"parent of a repository", filepath.Dir(dir), filepath.Join(dir, "keys") + "/", public},
		{"keys directory", filepath.Join(dir, "keys"), filepath.Join(dir, "keys"), public},
		{"root keys directory", filepath.Join(dir, "keys", "root"), filepath.Join(dir, "keys", "root", "root.key"), ""},
		{"key with another name", loose, filepath.Join(loose, "metadata", "old", "backup.json"), ""},
		{"key file name", named, filepath.Join(named, "release.key"), ""},
		{"OpenSSH key", other, filepath.Join(other, "id"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{LiveUpdate: config.LiveUpdate{
				Root:     tc.root,
				HTTPAddr: "127.0.0.1:0",
				FTPAddr:  "127.0.0.1:0",
			},
			})
			if err == nil {
				s.Close()
				t.Fatalf("New served %s", tc.root)
			}
			var pk *PrivateKeyError
			if !errors.As(err, &pk) {
				t.Fatalf("New: %v, want a *PrivateKeyError", err)
			}
			if pk.Found != tc.found || pk.Public != tc.public || pk.Root != tc.root {
				t.Errorf("New: found %q, public %q, root %q; want %q, %q, %q", pk.Found, pk.Public, pk.Root, tc.found, tc.public, tc.root)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.found) || !strings.Contains(msg, "public/") {
				t.Errorf("message %q does not name what was found and the public/ folder", msg)
			}
			if tc.public != "" && !strings.Contains(msg, "-root "+tc.public) {
				t.Errorf("message %q does not say to serve -root %s", msg, tc.public)
			}
		})
	}
	t.Run("public folder", func(t *testing.T) {
		s, err := New(Config{LiveUpdate: config.LiveUpdate{
			Root:     public,
			HTTPAddr: "127.0.0.1:0",
		},
		})
		if err != nil {
			t.Fatalf("New refused the public folder: %v", err)
		}
		s.Close()
	})
}

// TestKeyCheckBounded: the start-up check looks at a bounded number of
// entries, breadth first, but always at the root's own keys/.
func TestKeyCheckBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := range 30 {
		must(t, os.MkdirAll(filepath.Join(dir, "a", fmt.Sprint(i)), 0o755))
	}
	must(t, os.MkdirAll(filepath.Join(dir, "z", "deep", "er"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "z", "deep", "er", "k.pem"), []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"), 0o600))
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if complete, err := checkNoKeys(r, dir, 10); complete || err != nil {
		t.Errorf("budget 10: complete %v, %v; want an incomplete check", complete, err)
	}
	var pk *PrivateKeyError
	if _, err := checkNoKeys(r, dir, 1000); !errors.As(err, &pk) || pk.Found != filepath.Join(dir, "z", "deep", "er", "k.pem") {
		t.Errorf("budget 1000: %v, want the deep key found", err)
	}
	must(t, os.Mkdir(filepath.Join(dir, "keys"), 0o700))
	if _, err := checkNoKeys(r, dir, 0); !errors.As(err, &pk) || pk.Public != filepath.Join(dir, "public") {
		t.Errorf("budget 0 with DIR/keys: %v, want the repository layout refused", err)
	}
	// Dot entries are never served, and not looked into.
	clean := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(clean, ".mirror", "keys"), 0o700))
	must(t, os.WriteFile(filepath.Join(clean, ".mirror", "x.key"), []byte("x"), 0o600))
	rc, err := os.OpenRoot(clean)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if complete, err := checkNoKeys(rc, clean, 1000); !complete || err != nil {
		t.Errorf("tree with keys only under a dot directory: complete %v, %v", complete, err)
	}
}

func TestIsPEMPrivateKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"-----BEGIN PRIVATE KEY-----\nMC4C":         true,
		"-----BEGIN RSA PRIVATE KEY-----\n":         true,
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\r\n": true,
		"-----BEGIN PGP PRIVATE KEY BLOCK-----\n":   true,
		"\n\t -----BEGIN EC PRIVATE KEY-----":       true,
		"-----BEGIN PUBLIC KEY-----\n":              false,
		"-----BEGIN CERTIFICATE-----\n":             false,
		"-----BEGIN X\nPRIVATE KEY-----":            false,
		"-----BEGIN PRIVATE KEY":                    false,
		`{"signed":"-----BEGIN PRIVATE KEY-----"}`:  false,
		"":                               false,
		"x-----BEGIN PRIVATE KEY-----\n": false,
		"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n": true,
	} {
		if got := isPEMPrivateKey([]byte(in)); got != want {
			t.Errorf("isPEMPrivateKey(%q) = %v, want %v", in, got, want)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestClientsGetNoKeys serves a repository's public/ folder and then puts
// private keys into it, as a careless copy would: a keys/ directory, a
// "*.key" file, a key under an innocent name and a symlink to a key. Real
// HTTP and FTP clients (curl, wget, lftp) fetch, list and mirror the tree:
// no key's bytes ever come back, and the names of keys/ and "*.key" files
// are not listed.
func TestClientsGetNoKeys(t *testing.T) {
	t.Parallel()
	curl := testenv.NeedTool(t, "curl", "curl")
	wget := testenv.NeedTool(t, "wget", "wget")
	lftp := testenv.NeedTool(t, "lftp", "lftp")
	dir, keys := newRealRepo(t)
	public := filepath.Join(dir, "public")
	ts := startServer(t, &testRepo{dir: dir, root: public, files: map[string][]byte{}}, nil)

	// Planted after start: the start-up check cannot have seen them.
	plant := func(rel string, data []byte) {
		p := filepath.Join(public, filepath.FromSlash(rel))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o644))
	}
	for k, b := range keys {
		plant(k, b) // keys/root/root.key, keys/targets.key, ...
	}
	plant("targets/definitions/timestamp.key", keys["keys/timestamp.key"])
	plant("metadata/9.targets.json", keys["keys/targets.key"])
	must(t, os.Symlink("../keys/snapshot.key", filepath.Join(public, "metadata", "snapshot.json")))
	paths := []string{"keys/root/root.key", "keys/targets.key", "keys/snapshot.key", "keys/timestamp.key",
		"targets/definitions/timestamp.key", "metadata/9.targets.json", "metadata/snapshot.json"}
	hidden := []string{"keys", "timestamp.key"} // names never listed

	leaks := func(b []byte) bool {
		if strings.Contains(string(b), "PRIVATE KEY") {
			return true
		}
		for _, k := range keys {
			if strings.Contains(string(b), strings.TrimSpace(string(k))) {
				return true
			}
		}
		return false
	}
	out := t.TempDir()
	hb, fb := "http://"+ts.http+"/", "ftp://"+ts.ftp+"/"

	t.Run("fetch", func(t *testing.T) {
		for _, p := range paths {
			for _, args := range [][]string{
				{curl, "-sS", "--fail", hb + p},
				{curl, "-sS", "--fail", "-r", "0-99", hb + p},
				{curl, "-sS", "--fail", "-I", hb + p},
				{wget, "-q", "-O", "-", hb + p},
				{curl, "-sS", fb + p},
				{curl, "-sS", "--ftp-method", "nocwd", fb + p},
				{curl, "-sS", "--ftp-pasv", "--disable-epsv", fb + p},
			} {
				o, err := runTool(t, out, args[0], args[1:]...)
				if err == nil {
					t.Errorf("%q succeeded:\n%.300s", args, o)
				}
				if leaks([]byte(o)) {
					t.Errorf("%q leaked a key:\n%.300s", args, o)
				}
			}
		}
		// The public metadata is still served.
		if o, err := runTool(t, out, curl, "-sS", "--fail", hb+"metadata/1.root.json"); err != nil || !strings.Contains(o, `"root"`) {
			t.Errorf("1.root.json over HTTP: %v\n%.300s", err, o)
		}
	})

	t.Run("ftp-commands", func(t *testing.T) {
		f := loginFTP(t, ts.ftp)
		for _, p := range paths {
			for _, cmd := range []string{"SIZE ", "MDTM ", "MLST "} {
				if c, msg := f.cmd(cmd + "/" + p); c/100 == 2 && (strings.Contains(p, "keys/") || strings.HasSuffix(p, ".key")) {
					t.Errorf("%s/%s: %d %s", cmd, p, c, msg)
				}
			}
			if first, data, _ := f.transfer("RETR /" + p); first == 150 || leaks(data) {
				t.Errorf("RETR /%s: %d, %d bytes", p, first, len(data))
			}
		}
		if c, msg := f.cmd("CWD /keys"); c/100 == 2 {
			t.Errorf("CWD /keys: %d %s", c, msg)
		}
		for _, cmd := range []string{"LIST /", "NLST /", "MLSD /", "LIST /targets/definitions", "MLSD /targets/definitions"} {
			first, data, _ := f.transfer(cmd)
			if first != 150 {
				t.Errorf("%s: %d", cmd, first)
			}
			for _, h := range hidden {
				if strings.Contains(string(data), h) {
					t.Errorf("%s lists %q:\n%s", cmd, h, data)
				}
			}
		}
	})

	t.Run("listings", func(t *testing.T) {
		for _, u := range []string{hb, hb + "targets/definitions/", fb, fb + "targets/definitions/"} {
			o, err := runTool(t, out, curl, "-sS", "--fail", u)
			if err != nil {
				t.Errorf("curl %s: %v\n%s", u, err, o)
			}
			for _, h := range hidden {
				if strings.Contains(o, h) {
					t.Errorf("listing of %s shows %q:\n%s", u, h, o)
				}
			}
		}
	})

	t.Run("mirror", func(t *testing.T) {
		wdir := t.TempDir()
		if o, err := runTool(t, wdir, wget, "-r", "-np", "-nH", "-q", "-e", "robots=off", hb); err != nil && !strings.Contains(o, "ERROR 404") {
			t.Logf("wget -r: %v\n%s", err, o) // 404s for the planted names are expected
		}
		host, port := hostPort(t, ts.ftp)
		mirrors := []string{wdir}
		for _, proto := range []string{"ftp", "http"} {
			m := filepath.Join(t.TempDir(), "m")
			script := fmt.Sprintf("set net:max-retries 1; set net:timeout 15; set ftp:passive-mode on; open %s://%s:%s; mirror / %s; bye", proto, host, port, m)
			if proto == "http" {
				script = fmt.Sprintf("set net:max-retries 1; set net:timeout 15; open http://%s; mirror / %s; bye", ts.http, m)
			}
			o, _ := runTool(t, t.TempDir(), lftp, "-c", script) // fails on the refused files
			if leaks([]byte(o)) {
				t.Errorf("lftp mirror over %s leaked a key in its output", proto)
			}
			mirrors = append(mirrors, m)
		}
		for _, m := range mirrors {
			var got []string
			filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(m, p)
				got = append(got, filepath.ToSlash(rel))
				if b, err := os.ReadFile(p); err == nil && leaks(b) {
					t.Errorf("mirror %s got a key in %s", m, rel)
				}
				return nil
			})
			if !strings.Contains(strings.Join(got, " "), "metadata/1.root.json") {
				t.Errorf("mirror %s lacks metadata/1.root.json: %v", m, got)
			}
			for _, g := range got {
				for _, h := range hidden {
					if strings.Contains(g, h) {
						t.Errorf("mirror %s has %s", m, g)
					}
				}
			}
		}
	})

	if !strings.Contains(ts.logs.String(), "refused to serve a private key") {
		t.Errorf("the server did not log the key it refused:\n%s", ts.logs.String())
	}
}
