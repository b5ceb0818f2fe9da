package config

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func TestServerFlags(t *testing.T) {
	t.Parallel()
	var c Server
	fs := newFlagSet()
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c != DefaultServer() {
		t.Errorf("no flags: %+v, want the defaults %+v", c, DefaultServer())
	}
	if c.Group != netip.MustParseAddr(DefaultGroup) || c.Port != DefaultPort {
		t.Errorf("protocol defaults: %v:%d", c.Group, c.Port)
	}
	if err := fs.Parse([]string{"-group", "ff15::8192", "-port", "9000", "-checkin-interval", "1m", "-tls-cert", "c.pem"}); err != nil {
		t.Fatal(err)
	}
	if c.Group != netip.MustParseAddr("ff15::8192") || c.Port != 9000 || c.CheckInInterval != time.Minute || c.TLSCert != "c.pem" {
		t.Errorf("parsed: %+v", c)
	}
	if err := fs.Parse([]string{"-group", "nope"}); err == nil || !strings.Contains(err.Error(), "-group") {
		t.Errorf("-group nope: %v", err)
	}
}

func TestLiveUpdateFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // error, or "" for none
		http string
		ftp  string
		pass PortRange
	}{
		{[]string{"-root", "/r"}, "", DefaultLiveUpdateHTTP, DefaultLiveUpdateFTP, PortRange{}},
		{[]string{"-root", "/r", "-http", "OFF", "-passive-ports", "30000-30009"}, "", "", DefaultLiveUpdateFTP, PortRange{30000, 30009}},
		{[]string{"-root", "/r", "-ftp", " off ", "-http", " 127.0.0.1:8000 "}, "", "127.0.0.1:8000", "", PortRange{}},
		{[]string{}, "-root is required", "", "", PortRange{}},
		{[]string{"-root", "/r", "-http", "off", "-ftp", ""}, "both off", "", "", PortRange{}},
		{[]string{"-root", "/r", "-read-timeout", "0s"}, "-read-timeout must be positive", "", "", PortRange{}},
		{[]string{"-root", "/r", "-max-conns", "-2"}, "-max-conns must be positive or -1", "", "", PortRange{}},
		{[]string{"-root", "/r", "-passive-ports", "9-1"}, "-passive-ports", "", "", PortRange{}},
	} {
		var c LiveUpdate
		fs := newFlagSet()
		c.RegisterFlags(fs)
		err := fs.Parse(tc.args)
		if err == nil {
			err = c.Check()
		}
		switch {
		case tc.want != "":
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case c.HTTPAddr != tc.http || c.FTPAddr != tc.ftp || c.PassivePorts != tc.pass:
			t.Errorf("%q: http %q ftp %q passive %v", tc.args, c.HTTPAddr, c.FTPAddr, c.PassivePorts)
		}
	}
}

func TestMirrorFinish(t *testing.T) {
	t.Parallel()
	base := []string{"-root", "1.root.json", "-dir", "d"}
	for _, tc := range []struct {
		args     []string
		want     string
		upstream string
		jitter   time.Duration
	}{
		{append(base, "ftp://x/r"), "", "ftp://x/r", 0},
		{append(base, "-every", "1h", "-upstream", "http://x/"), "", "http://x/", 6 * time.Minute},
		{append(base, "-every", "1h", "-jitter", "0s", "http://x/"), "", "http://x/", 0},
		{append(base, "-upstream", "http://x/", "http://y/"), "unexpected arguments", "", 0},
		{base, "give the upstream URL", "", 0},
		{[]string{"-dir", "d", "http://x/"}, "-root is required", "", 0},
		{append(base, "-parallel", "65", "http://x/"), "-parallel 65: want 1 to 64", "", 0},
		{append(base, "-every", "10ms", "http://x/"), "want at least 1s", "", 0},
		{append(base, "-progress", "fancy", "http://x/"), `-progress "fancy"`, "", 0},
		{append(base, "-min-rate", "-1", "http://x/"), "-min-rate -1", "", 0},
	} {
		var c Mirror
		fs := newFlagSet()
		c.RegisterFlags(fs)
		err := fs.Parse(tc.args)
		if err == nil {
			err = c.Finish(fs)
		}
		switch {
		case tc.want != "":
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case c.Upstream != tc.upstream || c.Jitter != tc.jitter:
			t.Errorf("%q: upstream %q jitter %v", tc.args, c.Upstream, c.Jitter)
		}
	}
}
