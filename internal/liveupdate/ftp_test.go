package liveupdate

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/vigil-fleet/vigil/internal/config"
)

func ftpClient(t *testing.T, ts *testServer, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(ts.ftp, append([]ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login("anonymous", "guest@example.com"); err != nil {
		t.Fatal(err)
	}
	return c
}

func ftpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func retr(t *testing.T, c *ftp.ServerConn, p string, off uint64) []byte {
	t.Helper()
	resp, err := c.RetrFrom(p, off)
	if err != nil {
		t.Fatalf("RETR %s from %d: %v", p, off, err)
	}
	data, err := io.ReadAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Close(); err != nil {
		t.Fatalf("RETR %s: %v", p, err)
	}
	return data
}

func TestFTPDownloads(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	for _, mode := range []struct {
		name string
		opts []ftp.DialOption
	}{{"EPSV", nil}, {"PASV", []ftp.DialOption{ftp.DialWithDisabledEPSV(true)}}} {
		t.Run(mode.name, func(t *testing.T) {
			c := ftpClient(t, ts, mode.opts...)
			for name, want := range r.files {
				if got := retr(t, c, "/"+name, 0); !bytes.Equal(got, want) {
					t.Errorf("RETR %s: %d bytes differ from the repository's %d", name, len(got), len(want))
				}
				size, err := c.FileSize("/" + name)
				if err != nil || size != int64(len(want)) {
					t.Errorf("SIZE %s = %d, %v; want %d", name, size, err, len(want))
				}
			}
			// Resume: REST then RETR.
			big := r.files["big.bin"]
			for _, off := range []uint64{1, 65536, uint64(len(big)) - 1, uint64(len(big))} {
				if got := retr(t, c, "big.bin", off); !bytes.Equal(got, big[off:]) {
					t.Errorf("RETR big.bin from %d: %d bytes, want %d", off, len(got), len(big)-int(off))
				}
			}
			// A relative path after CWD.
			if err := c.ChangeDir("sub dir"); err != nil {
				t.Fatal(err)
			}
			if got := retr(t, c, "file with space.txt", 0); !bytes.Equal(got, r.files["sub dir/file with space.txt"]) {
				t.Errorf("RETR after CWD: %q", got)
			}
			if dir, _ := c.CurrentDir(); dir != "/sub dir" {
				t.Errorf("PWD = %q", dir)
			}
			c.ChangeDirToParent()
		})
	}
}

func TestFTPMetadataAndListings(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	c := ftpClient(t, ts)
	fi, _ := os.Stat(filepath.Join(r.root, "timestamp.json"))
	mt, err := c.GetTime("timestamp.json")
	if err != nil || !mt.Equal(fi.ModTime().UTC().Truncate(time.Second)) {
		t.Errorf("MDTM = %v, %v; want %v (UTC)", mt, err, fi.ModTime().UTC().Truncate(time.Second))
	}
	entries, err := c.List("/") // MLSD: the server announces MLST
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Name == "big.bin" && (e.Type != ftp.EntryTypeFile || e.Size != uint64(len(r.files["big.bin"]))) {
			t.Errorf("big.bin entry %+v", e)
		}
		if e.Name == "targets" && e.Type != ftp.EntryTypeFolder {
			t.Errorf("targets entry %+v", e)
		}
	}
	slices.Sort(names)
	want := []string{"3.root.json", "big.bin", "link-inside", "root.json", "sub dir", "targets", "timestamp.json"}
	if !slices.Equal(names, want) {
		t.Errorf("MLSD / = %q, want %q (no dotfiles, escaping links or FIFOs)", names, want)
	}
	nl, err := c.NameList("/targets")
	if err != nil || len(nl) != 2 {
		t.Errorf("NLST /targets = %q, %v", nl, err)
	}
	// LIST with the Unix format, through a client without MLSD.
	c2 := ftpClient(t, ts, ftp.DialWithDisabledMLSD(true))
	entries, err = c2.List("/targets")
	if err != nil || len(entries) != 2 {
		t.Fatalf("LIST /targets = %v, %v", entries, err)
	}
	for _, e := range entries {
		if e.Type != ftp.EntryTypeFile || e.Size != uint64(len(r.files[r.hashPkg])) {
			t.Errorf("LIST entry %+v", e)
		}
	}
	// MLST over the control connection.
	f := loginFTP(t, ts.ftp)
	msg := f.expect(250, "MLST /big.bin")
	if !strings.Contains(msg, "type=file;size="+strconv.Itoa(len(r.files["big.bin"]))+";") {
		t.Errorf("MLST: %q", msg)
	}
	f.expect(550, "SIZE /targets")
	f.expect(550, "SIZE /nope")
	f.expect(550, "MDTM /.hidden")
	f.epsv()
	f.expect(501, "MLSD /big.bin")
	msg = f.expect(211, "FEAT")
	for _, feat := range []string{"EPSV", "PASV", "REST STREAM", "SIZE", "MDTM", "MLST"} {
		if !strings.Contains(msg, feat) {
			t.Errorf("FEAT lacks %s: %q", feat, msg)
		}
	}
}

func TestFTPLogin(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	for _, u := range []string{"anonymous", "ftp", "ANONYMOUS"} {
		f := dialFTP(t, ts.ftp)
		f.expect(331, "USER "+u)
		f.expect(230, "PASS whatever")
	}
	for _, u := range []string{"root", "admin", "anonymous2"} {
		f := dialFTP(t, ts.ftp)
		f.expect(530, "USER "+u)
		f.expect(530, "PASS secret")
		f.expect(530, "RETR timestamp.json")
		f.expect(530, "EPSV")
	}
	f := dialFTP(t, ts.ftp)
	f.expect(530, "LIST")
	f.expect(530, "STOR x")
}

func TestFTPRefusesWrites(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	before := snapshot(t, r.dir)
	c := ftpClient(t, ts)
	for name, err := range map[string]error{
		"STOR new":       c.Stor("new.txt", strings.NewReader("x")),
		"STOR existing":  c.Stor("timestamp.json", strings.NewReader("x")),
		"APPE":           c.Append("timestamp.json", strings.NewReader("x")),
		"DELE":           c.Delete("timestamp.json"),
		"RNFR/RNTO":      c.Rename("timestamp.json", "moved.json"),
		"MKD":            c.MakeDir("newdir"),
		"RMD":            c.RemoveDir("sub dir"),
		"STOR traversal": c.Stor("../outside.txt", strings.NewReader("x")),
	} {
		if code := ftpCode(err); code != 550 {
			t.Errorf("%s: %v (code %d), want 550", name, err, code)
		}
	}
	f := loginFTP(t, ts.ftp)
	for _, line := range []string{"SITE CHMOD 777 timestamp.json", "XMKD d", "XRMD targets", "STOU", "MFMT 20200101000000 timestamp.json"} {
		f.expect(550, line)
	}
	for _, line := range []string{"PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|51210|"} {
		f.expect(502, line)
	}
	// The session still works after the refusals.
	if got := retr(t, c, "timestamp.json", 0); !bytes.Equal(got, r.files["timestamp.json"]) {
		t.Error("RETR after refusals")
	}
	if after := snapshot(t, r.dir); after != before {
		t.Errorf("repository changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	for _, want := range []string{`"STOR /new.txt" 550`, `"DELE /timestamp.json" 550`, `"MKD /newdir" 550`, `"SITE CHMOD 777 timestamp.json" 550`} {
		if !ts.logHas(want) {
			t.Errorf("access log lacks %s:\n%s", want, ts.accessLogText())
		}
	}
}

func TestFTPPassiveMode(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	lo, hi := int(ts.cfg.PassivePorts.Lo), int(ts.cfg.PassivePorts.Hi)
	f := loginFTP(t, ts.ftp)
	for range 5 {
		msg := f.expect(229, "EPSV")
		port, _ := strconv.Atoi(msg[strings.Index(msg, "(|||")+4 : strings.LastIndex(msg, "|)")])
		if port < lo || port > hi {
			t.Errorf("EPSV port %d outside %d-%d", port, lo, hi)
		}
		msg = f.expect(227, "PASV")
		var h [6]int
		fields := strings.Split(msg[strings.Index(msg, "(")+1:strings.Index(msg, ")")], ",")
		for i := range h {
			h[i], _ = strconv.Atoi(fields[i])
		}
		if h[0] != 127 || h[1] != 0 || h[2] != 0 || h[3] != 1 || h[4]*256+h[5] < lo || h[4]*256+h[5] > hi {
			t.Errorf("PASV reply %q", msg)
		}
	}
	f.expect(522, "EPSV 2")
}

func TestFTPPublicHost(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, func(c *Config) { c.PublicHost = "192.0.2.7" })
	f := loginFTP(t, ts.ftp)
	if msg := f.expect(227, "PASV"); !strings.Contains(msg, "(192,0,2,7,") {
		t.Errorf("PASV with PublicHost: %q", msg)
	}
	if _, err := New(Config{LiveUpdate: config.LiveUpdate{
		Root:       r.root,
		FTPAddr:    ":0",
		PublicHost: "2001:db8::1",
	},
	}); err == nil {
		t.Error("an IPv6 PublicHost was accepted")
	}
}

// TestFTPDataConnectionFromAnotherAddress: a passive port is for the
// client that asked for it; a connection from another address (here
// 127.0.0.2) is closed and the client's own connection still works.
func TestFTPDataConnectionFromAnotherAddress(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	f := loginFTP(t, ts.ftp)
	msg := f.expect(229, "EPSV")
	port := msg[strings.Index(msg, "(|||")+4 : strings.LastIndex(msg, "|)")]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	thief, err := d.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	defer thief.Close()
	own, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if code, _ := f.cmd("RETR timestamp.json"); code != 150 {
		t.Fatalf("RETR: %d", code)
	}
	own.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(own)
	if code, _ := f.read(); code != 226 || !bytes.Equal(got, r.files["timestamp.json"]) {
		t.Errorf("own data connection: %d, %q", code, got)
	}
	thief.SetReadDeadline(time.Now().Add(10 * time.Second))
	if stolen, _ := io.ReadAll(thief); len(stolen) != 0 {
		t.Errorf("a connection from another address received %q", stolen)
	}
}

func TestFTPNoPassiveNoTransfer(t *testing.T) {
	r := newTestRepo(t)
	ts := startServer(t, r, nil)
	f := loginFTP(t, ts.ftp)
	f.expect(425, "RETR timestamp.json")
	f.expect(425, "LIST")
	// A failed RETR drops the pending passive listener.
	f.expect(229, "EPSV")
	f.expect(550, "RETR nope")
	f.expect(425, "RETR timestamp.json")
	// REST beyond the end.
	f.epsv()
	f.expect(350, "REST 999999999")
	f.expect(554, "RETR timestamp.json")
	f.expect(501, "REST -5")
	f.expect(501, "REST abc")
	// REST applies to the next command only.
	dc := f.epsv()
	f.expect(350, "REST 5")
	f.expect(200, "NOOP")
	f.expect(150, "RETR timestamp.json")
	dc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(dc)
	f.read()
	if !bytes.Equal(got, r.files["timestamp.json"]) {
		t.Errorf("REST leaked past NOOP: %q", got)
	}
}
