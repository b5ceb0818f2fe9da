package prefs

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"howett.net/plist"
)

func TestFlagKey(t *testing.T) {
	for name, want := range map[string]string{
		"listen":           "Listen",
		"admin-listen":     "AdminListen",
		"ttl":              "TTL",
		"max-conns-per-ip": "MaxConnsPerIP",
		"passive-ports":    "PassivePorts",
		"tls-cert":         "TLSCert",
		"ca-cert":          "CACert",
		"http":             "HTTP",
		"self-update":      "SelfUpdate",
	} {
		if got := FlagKey(name); got != want {
			t.Errorf("FlagKey(%q) = %q, want %q", name, got, want)
		}
	}
}

type testFlags struct {
	fs      *flag.FlagSet
	listen  *string
	ttl     *int
	every   *time.Duration
	verbose *bool
	config  *string
}

func newTestFlags(args ...string) *testFlags {
	f := &testFlags{fs: flag.NewFlagSet("t", flag.ContinueOnError)}
	f.fs.SetOutput(io.Discard)
	f.listen = f.fs.String("listen", ":8080", "")
	f.ttl = f.fs.Int("ttl", 1, "")
	f.every = f.fs.Duration("every", 0, "")
	f.verbose = f.fs.Bool("verbose", false, "")
	f.config = f.fs.String("config", "", "")
	if err := f.fs.Parse(args); err != nil {
		panic(err)
	}
	return f
}

func xmlPlist(t *testing.T, v any) []byte {
	t.Helper()
	b, err := plist.Marshal(v, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyData(t *testing.T) {
	f := newTestFlags()
	data := xmlPlist(t, map[string]any{"Listen": "127.0.0.1:9", "TTL": 4, "Every": 90, "Verbose": true})
	if err := ApplyData(f.fs, "server.plist", data, "config"); err != nil {
		t.Fatal(err)
	}
	if *f.listen != "127.0.0.1:9" || *f.ttl != 4 || *f.every != 90*time.Second || !*f.verbose {
		t.Fatalf("got listen %q ttl %d every %v verbose %v", *f.listen, *f.ttl, *f.every, *f.verbose)
	}

	// A duration may be a string; binary plists work as well.
	f = newTestFlags()
	bin, err := plist.Marshal(map[string]any{"Every": "5m"}, plist.BinaryFormat)
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyData(f.fs, "server.plist", bin); err != nil || *f.every != 5*time.Minute {
		t.Fatalf("every %v, err %v", *f.every, err)
	}

	// The command line wins over the file.
	f = newTestFlags("-ttl", "7")
	if err := ApplyData(f.fs, "server.plist", data, "config"); err != nil {
		t.Fatal(err)
	}
	if *f.ttl != 7 || *f.listen != "127.0.0.1:9" {
		t.Fatalf("ttl %d listen %q: the command line must win, the rest come from the file", *f.ttl, *f.listen)
	}
}

func TestApplyDataErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{"unknown key with suggestion", xmlPlist(t, map[string]any{"Lisen": ":1"}), []string{`f.plist: unknown key "Lisen" (did you mean "Listen"?)`}},
		{"wrong type string", xmlPlist(t, map[string]any{"TTL": "4"}), []string{`f.plist: key TTL: want an integer, got string "4"`}},
		{"wrong type int", xmlPlist(t, map[string]any{"Listen": 8080}), []string{`f.plist: key Listen: want a string, got integer 8080`}},
		{"wrong type bool", xmlPlist(t, map[string]any{"Verbose": "yes"}), []string{`key Verbose: want a boolean`}},
		{"bad duration", xmlPlist(t, map[string]any{"Every": "soon"}), []string{`key Every: time: invalid duration "soon"`}},
		{"excluded key", xmlPlist(t, map[string]any{"Config": "/x"}), []string{`key Config: cannot be set in a preference file, only as -config`}},
		{"all problems reported", xmlPlist(t, map[string]any{"TTL": "x", "Nope": 1}), []string{"key TTL", `unknown key "Nope"`}},
		{"not a plist", []byte("Listen = :1\n"), []string{"f.plist: not a property list"}},
		{"not a dictionary", xmlPlist(t, []string{"a"}), []string{"f.plist: top level is"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFlags()
			err := ApplyData(f.fs, "f.plist", tt.data, "config")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestApplyFileMissing(t *testing.T) {
	f := newTestFlags()
	path := filepath.Join(t.TempDir(), "none.plist")
	err := ApplyFile(f.fs, path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want a not-exist error naming the file", err)
	}
	good := filepath.Join(t.TempDir(), "ok.plist")
	if err := os.WriteFile(good, xmlPlist(t, map[string]any{"TTL": 3}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ApplyFile(f.fs, good); err != nil || *f.ttl != 3 {
		t.Fatalf("ttl %d err %v", *f.ttl, err)
	}
}

// FuzzApplyData checks that ApplyData never panics and that every error
// line names the file.
func FuzzApplyData(f *testing.F) {
	for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
		for _, v := range []any{
			map[string]any{"Listen": "127.0.0.1:9", "TTL": 4, "Every": 90, "Verbose": true},
			map[string]any{"Every": "5m", "TTL": "x", "Lisen": 1, "Config": "/x"},
			[]any{"a", 1.5, true},
		} {
			data, err := plist.Marshal(v, format)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, seed := range bplistSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := newTestFlags()
		err := ApplyData(fl.fs, "f.plist", data, "config")
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "f.plist: ") {
				t.Fatalf("error line does not name the file: %q", line)
			}
		}
	})
}
