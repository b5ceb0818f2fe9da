package liveupdate

// Tests with the clients agents and mirrors really use, from Debian's
// packages: curl, lftp and wget (apt-get install -y curl lftp wget). A
// missing client skips its test unless VIGIL_REQUIRE_TOOLS=1.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// checkFile compares a downloaded file with the repository's bytes.
func checkFile(t *testing.T, what, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: downloaded %d bytes that differ from the repository's %d", what, len(got), len(want))
	}
}

func TestCurlFTP(t *testing.T) {
	curl := testenv.NeedTool(t, "curl", "curl")
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	out := t.TempDir()
	base := "ftp://" + ts.ftp + "/"
	for _, mode := range []struct {
		name  string
		flags []string
	}{
		{"EPSV", nil},
		{"PASV", []string{"--ftp-pasv", "--disable-epsv"}},
	} {
		for _, name := range []string{"big.bin", r.hashPkg, "sub dir/file with space.txt", "timestamp.json"} {
			dst := filepath.Join(out, mode.name+"-"+filepath.Base(name))
			args := append([]string{"-sS", "--fail", "-o", dst}, mode.flags...)
			args = append(args, base+escapePath(name)[1:])
			if o, err := runTool(t, out, curl, args...); err != nil {
				t.Errorf("curl %s %s: %v\n%s", mode.name, name, err, o)
				continue
			}
			checkFile(t, "curl "+mode.name+" "+name, dst, r.files[name])
		}
		// Resume a partial download: curl -C - sends REST.
		big := r.files["big.bin"]
		dst := filepath.Join(out, mode.name+"-resumed.bin")
		os.WriteFile(dst, big[:1234567], 0o644)
		args := append([]string{"-sS", "--fail", "-C", "-", "-o", dst}, mode.flags...)
		if o, err := runTool(t, out, curl, append(args, base+"big.bin")...); err != nil {
			t.Errorf("curl -C - %s: %v\n%s", mode.name, err, o)
		}
		checkFile(t, "curl -C - "+mode.name, dst, big)
	}
	// Listing.
	o, err := runTool(t, out, curl, "-sS", "--fail", base+"targets/")
	if err != nil || !strings.Contains(o, ".defs.tar") {
		t.Errorf("curl LIST: %v\n%s", err, o)
	}
	// REST is not logged when it succeeds; the resumed RETR's byte count
	// shows the resume.
	if want := fmt.Sprintf(`"RETR /big.bin" 226 %d `, len(r.files["big.bin"])-1234567); !ts.logHas(want) {
		t.Errorf("access log lacks %s", want)
	}
}

func TestLftpFTP(t *testing.T) {
	lftp := testenv.NeedTool(t, "lftp", "lftp")
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	host, port := hostPort(t, ts.ftp)
	out := t.TempDir()
	big := r.files["big.bin"]
	for _, epsv := range []string{"no", "yes"} {
		script := fmt.Sprintf(`set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 15; set ftp:passive-mode on; set ftp:prefer-epsv %s;
open -p %s %s;
get big.bin -o epsv-%s-big.bin;
cd targets; get %s -o epsv-%s-pkg; cd ..;
get -c big.bin -o epsv-%s-resumed.bin;
bye`, epsv, port, host, epsv, filepath.Base(r.hashPkg), epsv, epsv)
		os.WriteFile(filepath.Join(out, "epsv-"+epsv+"-resumed.bin"), big[:777777], 0o644)
		if o, err := runTool(t, out, lftp, "-c", script); err != nil {
			t.Errorf("lftp prefer-epsv=%s: %v\n%s", epsv, err, o)
			continue
		}
		checkFile(t, "lftp get (prefer-epsv "+epsv+")", filepath.Join(out, "epsv-"+epsv+"-big.bin"), big)
		checkFile(t, "lftp get in a directory", filepath.Join(out, "epsv-"+epsv+"-pkg"), r.files[r.hashPkg])
		checkFile(t, "lftp get -c (prefer-epsv "+epsv+")", filepath.Join(out, "epsv-"+epsv+"-resumed.bin"), big)
	}
	if !ts.logHas(fmt.Sprintf(`"RETR /big.bin" 226 %d `, len(big)-777777)) {
		t.Errorf("no resumed RETR of %d bytes in the access log:\n%s", len(big)-777777, ts.accessLogText())
	}
}

// TestLftpMirror mirrors the whole repository over FTP and over HTTP (from
// the HTML listings) and finds exactly the served files.
func TestLftpMirror(t *testing.T) {
	lftp := testenv.NeedTool(t, "lftp", "lftp")
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	for _, proto := range []string{"ftp", "http"} {
		addr := ts.ftp
		if proto == "http" {
			addr = ts.http
		}
		out := filepath.Join(t.TempDir(), "mirror")
		script := fmt.Sprintf("set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 15; set ftp:passive-mode on; open %s://%s; mirror / %s; bye", proto, addr, out)
		if o, err := runTool(t, t.TempDir(), lftp, "-c", script); err != nil {
			t.Errorf("lftp mirror over %s: %v\n%s", proto, err, o)
			continue
		}
		got := map[string]bool{}
		filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(out, p)
				got[filepath.ToSlash(rel)] = true
			}
			return err
		})
		for name, want := range r.files {
			checkFile(t, proto+" mirror "+name, filepath.Join(out, filepath.FromSlash(name)), want)
			delete(got, name)
		}
		delete(got, "targets/link-inside-dir") // a symlink inside the root: served
		if len(got) != 0 {
			t.Errorf("%s mirror has files that are not served: %v", proto, got)
		}
	}
}

func TestCurlWgetHTTP(t *testing.T) {
	curl := testenv.NeedTool(t, "curl", "curl")
	wget := testenv.NeedTool(t, "wget", "wget")
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	out := t.TempDir()
	base := "http://" + ts.http
	big := r.files["big.bin"]
	for _, name := range []string{"big.bin", r.hashPkg, "sub dir/file with space.txt", "3.root.json"} {
		u := base + escapePath(name)
		dst := filepath.Join(out, "curl-"+filepath.Base(name))
		if o, err := runTool(t, out, curl, "-sS", "--fail", "-o", dst, u); err != nil {
			t.Errorf("curl %s: %v\n%s", name, err, o)
		}
		checkFile(t, "curl "+name, dst, r.files[name])
		dst = filepath.Join(out, "wget-"+filepath.Base(name))
		if o, err := runTool(t, out, wget, "-q", "-O", dst, u); err != nil {
			t.Errorf("wget %s: %v\n%s", name, err, o)
		}
		checkFile(t, "wget "+name, dst, r.files[name])
	}
	// Ranges.
	dst := filepath.Join(out, "range")
	if o, err := runTool(t, out, curl, "-sS", "--fail", "-r", "1000-2999", "-o", dst, base+"/big.bin"); err != nil {
		t.Errorf("curl -r: %v\n%s", err, o)
	}
	checkFile(t, "curl -r 1000-2999", dst, big[1000:3000])
	// Resume: curl -C - and wget -c send Range.
	dst = filepath.Join(out, "curl-resumed")
	os.WriteFile(dst, big[:1000001], 0o644)
	if o, err := runTool(t, out, curl, "-sS", "--fail", "-C", "-", "-o", dst, base+"/big.bin"); err != nil {
		t.Errorf("curl -C -: %v\n%s", err, o)
	}
	checkFile(t, "curl -C -", dst, big)
	dst = filepath.Join(out, "wget-resumed")
	os.WriteFile(dst, big[:2000002], 0o644)
	if o, err := runTool(t, out, wget, "-q", "-c", "-O", dst, base+"/big.bin"); err != nil {
		t.Errorf("wget -c: %v\n%s", err, o)
	}
	checkFile(t, "wget -c", dst, big)
	if !ts.logHas(fmt.Sprintf(`"GET /big.bin HTTP/1.1" 206 %d `, len(big)-2000002)) {
		t.Errorf("wget -c did not get a 206 of the rest:\n%s", ts.accessLogText())
	}
	// Conditional requests: If-None-Match with the ETag and
	// If-Modified-Since (curl -z with the file's time) get 304.
	o, err := runTool(t, out, curl, "-sS", "--fail", "-D", "-", "-o", os.DevNull, base+"/timestamp.json")
	if err != nil {
		t.Fatalf("curl -D: %v\n%s", err, o)
	}
	var etag string
	for _, line := range strings.Split(o, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "etag") {
			etag = strings.TrimSpace(v)
		}
	}
	if etag == "" {
		t.Fatalf("no ETag in\n%s", o)
	}
	code, err := runTool(t, out, curl, "-sS", "-o", os.DevNull, "-w", "%{http_code}", "-H", "If-None-Match: "+etag, base+"/timestamp.json")
	if err != nil || code != "304" {
		t.Errorf("curl If-None-Match: %q, %v; want 304", code, err)
	}
	stamp := filepath.Join(out, "stamp")
	os.WriteFile(stamp, nil, 0o644)
	fi, _ := os.Stat(filepath.Join(r.root, "timestamp.json"))
	os.Chtimes(stamp, fi.ModTime(), fi.ModTime())
	code, err = runTool(t, out, curl, "-sS", "-o", os.DevNull, "-w", "%{http_code}", "-z", stamp, base+"/timestamp.json")
	if err != nil || code != "304" {
		t.Errorf("curl -z (If-Modified-Since): %q, %v; want 304", code, err)
	}
	// wget -N: the second run finds the local copy current and does not
	// download again.
	wdir := t.TempDir()
	for i := range 2 {
		if o, err := runTool(t, wdir, wget, "-N", base+"/3.root.json"); err != nil {
			t.Errorf("wget -N run %d: %v\n%s", i, err, o)
		} else if i == 1 && !strings.Contains(o, "304 Not Modified") && !strings.Contains(o, "not retrieving") {
			t.Errorf("wget -N run 2 downloaded again:\n%s", o)
		}
	}
	checkFile(t, "wget -N", filepath.Join(wdir, "3.root.json"), r.files["3.root.json"])
}

// TestClientsCannotWrite tries every kind of write with curl, over FTP and
// HTTP, and checks that each is refused and the directory is unchanged.
func TestClientsCannotWrite(t *testing.T) {
	curl := testenv.NeedTool(t, "curl", "curl")
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	before := snapshot(t, r.dir)
	out := t.TempDir()
	upload := filepath.Join(out, "upload.txt")
	os.WriteFile(upload, []byte("overwritten by a client\n"), 0o644)
	ftpBase := "ftp://" + ts.ftp + "/"
	for _, args := range [][]string{
		{"-T", upload, ftpBase + "upload.txt"},
		{"-T", upload, ftpBase + "timestamp.json"},
		{"-T", upload, ftpBase + "targets/"},
		{"-T", upload, "--append", ftpBase + "timestamp.json"},
		{"-T", upload, "--ftp-create-dirs", ftpBase + "newdir/upload.txt"},
		{"-Q", "DELE timestamp.json", ftpBase},
		{"-Q", "MKD d", ftpBase},
		{"-Q", "RMD targets", ftpBase},
		{"-Q", "RNFR timestamp.json", "-Q", "RNTO moved.json", ftpBase},
		{"-Q", "SITE CHMOD 777 timestamp.json", ftpBase},
		{"-Q", "-DELE timestamp.json", ftpBase + "timestamp.json"},
	} {
		o, err := runTool(t, out, curl, append([]string{"-sS", "--fail"}, args...)...)
		if err == nil {
			t.Errorf("curl %q succeeded:\n%s", args, o)
		}
	}
	httpBase := "http://" + ts.http + "/"
	for _, args := range [][]string{
		{"-T", upload, httpBase + "upload.txt"},
		{"-T", upload, httpBase + "timestamp.json"},
		{"-X", "DELETE", httpBase + "timestamp.json"},
		{"-X", "MKCOL", httpBase + "newdir/"},
		{"-X", "MOVE", "-H", "Destination: " + httpBase + "moved.json", httpBase + "timestamp.json"},
		{"-d", "data", httpBase + "timestamp.json"},
	} {
		o, _ := runTool(t, out, curl, append([]string{"-sS", "-o", os.DevNull, "-w", "%{http_code}"}, args...)...)
		if o != "405" {
			t.Errorf("curl %q: %q, want 405", args, o)
		}
	}
	if after := snapshot(t, r.dir); after != before {
		t.Errorf("repository changed:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// TestClientsPathEscapes has the real clients try to leave the root.
func TestClientsPathEscapes(t *testing.T) {
	curl := testenv.NeedTool(t, "curl", "curl")
	wget := testenv.NeedTool(t, "wget", "wget")
	lftp := testenv.NeedTool(t, "lftp", "lftp")
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	out := t.TempDir()
	fb, hb := "ftp://"+ts.ftp, "http://"+ts.http
	var runs [][]string
	for _, p := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/%2Fetc/passwd", "/%2F..%2Fsecret.txt",
		"/..%5csecret.txt", "/escape-rel", "/escape-abs", "/escape-dir/secret.txt", "/targets/up/secret.txt", "/.hidden",
		"/timestamp.json%00/../secret.txt", "/../../../../etc/passwd"} {
		runs = append(runs,
			[]string{curl, "-sS", "--path-as-is", fb + p},
			[]string{curl, "-sS", "--path-as-is", "--ftp-method", "nocwd", fb + p},
			[]string{curl, "-sS", "--path-as-is", "--ftp-method", "singlecwd", fb + p},
			[]string{curl, "-sS", "--fail", "--path-as-is", hb + p},
			[]string{wget, "-q", "-O", "-", hb + p},
		)
	}
	host, port := hostPort(t, ts.ftp)
	for _, p := range []string{"../secret.txt", "/../secret.txt", "../../../../etc/passwd", "escape-rel", "escape-abs", "escape-dir/secret.txt", ".hidden"} {
		runs = append(runs, []string{lftp, "-c", fmt.Sprintf("set net:max-retries 1; set net:timeout 10; open -p %s %s; cat %s", port, host, p)})
	}
	runs = append(runs, []string{lftp, "-c", fmt.Sprintf("set net:max-retries 1; set net:timeout 10; open -p %s %s; cd ..; cd ..; ls; cat secret.txt", port, host)})
	for _, args := range runs {
		o, err := runTool(t, out, args[0], args[1:]...)
		if leakedContent([]byte(o)) {
			t.Errorf("%q leaked:\n%.300s", args, o)
		}
		if err == nil && !strings.Contains(strings.Join(args, " "), "ls;") {
			t.Errorf("%q succeeded:\n%.300s", args, o)
		}
	}
}
