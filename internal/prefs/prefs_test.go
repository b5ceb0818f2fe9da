package prefs

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// testKey is the public key written in testdata/*.plist: the Ed25519 key
// whose seed is SHA-256("vigil prefs testdata server key").
const testKey = "JIYPYK/Co7uQROVpVcO5PLEevV2eR+QCplWAbpvePsU="

func testPublicKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	seed := sha256.Sum256([]byte("vigil prefs testdata server key"))
	pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
	if got := base64.StdEncoding.EncodeToString(pub); got != testKey {
		t.Fatalf("testKey is stale: the seed gives %s", got)
	}
	return pub
}

var formats = []struct {
	name   string
	format int
}{
	{"xml", plist.XMLFormat},
	{"binary", plist.BinaryFormat},
}

// writePlist encodes v with howett.net/plist in format and writes it to a
// new file in dir.
func writePlist(t *testing.T, dir, name string, v any, format int) string {
	t.Helper()
	var buf bytes.Buffer
	enc := plist.NewEncoderForFormat(&buf, format)
	enc.Indent("\t")
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encoding %s: %v", name, err)
	}
	return writeFile(t, dir, name, buf.Bytes())
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// minimal returns the two required keys, valid.
func minimal() map[string]any {
	return map[string]any{
		"NodeCommURL":     "https://vigil.example.com/agent/",
		"ServerPublicKey": testKey,
	}
}

func with(kv ...any) map[string]any {
	m := minimal()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

func TestDefaultPaths(t *testing.T) {
	wantPath, wantState := "/etc/vigil/agent.plist", "/var/lib/vigil"
	if runtime.GOOS == "darwin" {
		wantPath, wantState = "/Library/Preferences/com.vigil.agent.plist", "/Library/Application Support/Vigil"
	}
	if got := DefaultPath(); got != wantPath {
		t.Errorf("DefaultPath() = %q, want %q", got, wantPath)
	}
	if got := DefaultStateDir(); got != wantState {
		t.Errorf("DefaultStateDir() = %q, want %q", got, wantState)
	}
}

// TestLoadAdminFixture reads the hand-written XML file in testdata, with
// comments and blank lines as an administrator would leave them.
func TestLoadAdminFixture(t *testing.T) {
	a, err := Load(filepath.Join("testdata", "admin.plist"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Agent{
		MulticastAddress:    "239.255.81.92",
		MulticastPort:       8192,
		MulticastInterface:  "en0",
		NodeCommURL:         "https://vigil.lab.example.com:8443/agent/",
		ServerPublicKey:     testKey,
		EnrollmentSecret:    "lab-enrol-2024",
		ServerCACertificate: "/Library/Application Support/Vigil/server-ca.pem",
		StateDirectory:      DefaultStateDir(),
		Groups:              []string{"lab", "building-7", "macos_14.x"},
		CheckInInterval:     5 * time.Minute,
		MetricsAddress:      "127.0.0.1:9464",
		LogLevel:            "debug",
		Hostname:            "lab-mac-12",
		MaxScanFileSize:     defaultMaxScanFileSize,
	}
	onAccessDefaults(want)
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Load(admin.plist) =\n%+v\nwant\n%+v", a, want)
	}
	if !a.ServerKey().Equal(testPublicKey(t)) {
		t.Errorf("ServerKey() = %x, want %x", a.ServerKey(), testPublicKey(t))
	}
}

func TestLoadAppliesDefaults(t *testing.T) {
	a, err := Load(filepath.Join("testdata", "minimal.plist"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Agent{
		MulticastAddress: "239.255.81.92",
		MulticastPort:    8192,
		NodeCommURL:      "http://vigil.example.net:8080/api",
		ServerPublicKey:  testKey,
		StateDirectory:   DefaultStateDir(),
		LogLevel:         "info",
		MaxScanFileSize:  defaultMaxScanFileSize,
	}
	onAccessDefaults(want)
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Load(minimal.plist) =\n%+v\nwant\n%+v", a, want)
	}
	if len(a.ServerKey()) != ed25519.PublicKeySize {
		t.Errorf("ServerKey() has %d bytes", len(a.ServerKey()))
	}

	// Empty strings and a zero interval count as absent.
	dir := t.TempDir()
	for _, f := range formats {
		path := writePlist(t, dir, "empty-"+f.name+".plist", with(
			"MulticastAddress", "", "MulticastInterface", "", "StateDirectory", "",
			"LogLevel", "", "CheckInInterval", 0, "Groups", []string{}, "EnrollmentSecret", ""), f.format)
		got, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		want.NodeCommURL = "https://vigil.example.com/agent/"
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: empty values: got\n%+v\nwant\n%+v", f.name, got, want)
		}
	}
}

// TestLoadEncodedFiles writes every key with howett.net/plist's encoders,
// in both formats, and reads the files back.
func TestLoadEncodedFiles(t *testing.T) {
	dir := t.TempDir()
	m := map[string]any{
		"MulticastAddress":    "ff15::8192",
		"MulticastPort":       9000,
		"MulticastInterface":  "lo",
		"NodeCommURL":         "http://127.0.0.1:8080/api/v1/",
		"ServerPublicKey":     testKey,
		"EnrollmentSecret":    "s3cret",
		"StateDirectory":      "/srv/vigil/state",
		"Groups":              []string{"web", "db.primary"},
		"CheckInInterval":     uint64(86400),
		"MetricsAddress":      "[::1]:9464",
		"LogLevel":            "warn",
		"Hostname":            "web-01.example.com",
		"ServerCACertificate": nil,
	}
	delete(m, "ServerCACertificate")
	want := &Agent{
		MulticastAddress:   "ff15::8192",
		MulticastPort:      9000,
		MulticastInterface: "lo",
		NodeCommURL:        "http://127.0.0.1:8080/api/v1/",
		ServerPublicKey:    testKey,
		EnrollmentSecret:   "s3cret",
		StateDirectory:     "/srv/vigil/state",
		Groups:             []string{"web", "db.primary"},
		CheckInInterval:    24 * time.Hour,
		MetricsAddress:     "[::1]:9464",
		LogLevel:           "warn",
		MaxScanFileSize:    defaultMaxScanFileSize,
		Hostname:           "web-01.example.com",
	}
	onAccessDefaults(want)
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			path := writePlist(t, dir, "agent-"+f.name+".plist", m, f.format)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if isBinary := bytes.HasPrefix(data, []byte("bplist00")); isBinary != (f.format == plist.BinaryFormat) {
				t.Fatalf("encoder wrote the wrong format: %q...", data[:min(len(data), 16)])
			}
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestIPv6AndIPv4Groups(t *testing.T) {
	dir := t.TempDir()
	for _, group := range []string{"ff15::8192", "ff02::1", "FF05::1:3", "ff3e:40:2001:db8::8192", "239.255.81.92", "224.0.0.251"} {
		path := writePlist(t, dir, "group.plist", with("MulticastAddress", group), plist.BinaryFormat)
		a, err := Load(path)
		if err != nil {
			t.Errorf("group %s: %v", group, err)
			continue
		}
		if a.MulticastAddress != group {
			t.Errorf("MulticastAddress = %q, want %q", a.MulticastAddress, group)
		}
	}
}

func sampleAgent() *Agent {
	return &Agent{
		MulticastAddress:     "ff15::8192",
		MulticastPort:        8193,
		MulticastInterface:   "eth0",
		NodeCommURL:          "https://vigil.example.com:8443/agent/",
		ServerPublicKey:      testKey,
		EnrollmentSecret:     "enrol me",
		ServerCACertificate:  "/etc/vigil/ca.pem",
		StateDirectory:       "/var/lib/vigil-test",
		Groups:               []string{"a", "b-2"},
		CheckInInterval:      90 * time.Second,
		MetricsAddress:       ":9464",
		LogLevel:             "error",
		Hostname:             "host ünïcode",
		LiveUpdateServers:    []string{"ftp://lu.example.com/vigil", "https://liveupdate.example.com/"},
		RepositoryRoot:       "/etc/vigil/root.json",
		DefinitionsDirectory: "/var/lib/vigil-test/defs",
		UpdateInterval:       3600 * time.Second,
		UpgradeInterval:      7 * 86400 * time.Second,
		ScanPaths:            []string{"/Users", "/Applications"},
		ScanExclude:          []string{"/Users/Shared/big", "*.iso"},
		ScanInterval:         86400 * time.Second,
		MaxScanFileSize:      50 << 20,
		QuarantineDirectory:  "/var/lib/vigil-test/quarantine",

		OnAccess:                 true,
		OnAccessPaths:            []string{"/home", "/srv/share"},
		OnAccessMode:             "block",
		OnAccessExcludePaths:     []string{"/home/build"},
		OnAccessExcludeProcesses: []string{"/usr/bin/rsync"},
		OnAccessEvents:           []string{"exec", "open"},
		OnAccessMaxFileSize:      1 << 20,
		OnAccessVerdictTimeout:   500 * time.Millisecond,
	}
}

// onAccessDefaults sets a's on-access keys to their defaults.
func onAccessDefaults(a *Agent) {
	a.OnAccessMode = "notify"
	a.OnAccessEvents = []string{"open", "exec", "close_write"}
	a.OnAccessMaxFileSize = 5 << 20
	a.OnAccessVerdictTimeout = 2 * time.Second
}

func TestWriteRoundTrip(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "agent.plist")
			a := sampleAgent()
			if err := Write(path, a, f.format); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			switch f.format {
			case plist.BinaryFormat:
				if !bytes.HasPrefix(data, []byte("bplist00")) {
					t.Errorf("binary file starts %q", data[:8])
				}
			case plist.XMLFormat:
				if !bytes.HasPrefix(data, []byte("<?xml")) || !bytes.HasSuffix(data, []byte("</plist>\n")) {
					t.Errorf("XML file:\n%s", data)
				}
				for _, k := range Keys() {
					if !bytes.Contains(data, []byte("<key>"+k.Name+"</key>")) {
						t.Errorf("key %s not written", k.Name)
					}
				}
			}
			// The same Agent always gives the same bytes.
			again := filepath.Join(t.TempDir(), "again.plist")
			if err := Write(again, a, f.format); err != nil {
				t.Fatal(err)
			}
			if data2, err := os.ReadFile(again); err != nil || !bytes.Equal(data, data2) {
				t.Errorf("writing the same Agent twice gave different files (%v)", err)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, a) {
				t.Errorf("Load(Write(a)) =\n%+v\nwant\n%+v", got, a)
			}
			assertMode(t, path, 0o600) // it holds an EnrollmentSecret
			assertOnlyFile(t, dir, "agent.plist")

			// Writing again replaces the file, and again leaves no temporary file.
			b := &Agent{NodeCommURL: "http://vigil.example.com/", ServerPublicKey: testKey}
			if err := Write(path, b, f.format); err != nil {
				t.Fatal(err)
			}
			got, err = Load(path)
			if err != nil {
				t.Fatal(err)
			}
			want := &Agent{
				MulticastAddress: "239.255.81.92", MulticastPort: 8192,
				NodeCommURL: "http://vigil.example.com/", ServerPublicKey: testKey,
				StateDirectory: DefaultStateDir(), LogLevel: "info", MaxScanFileSize: defaultMaxScanFileSize,
			}
			onAccessDefaults(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("after rewrite: got\n%+v\nwant\n%+v", got, want)
			}
			assertMode(t, path, 0o644)
			assertOnlyFile(t, dir, "agent.plist")

			// Zero-valued optional keys are not written.
			var m map[string]any
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := plist.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			if keys := slices.Sorted(mapKeys(m)); !slices.Equal(keys, []string{"NodeCommURL", "ServerPublicKey"}) {
				t.Errorf("written keys = %v, want only the required ones", keys)
			}
		})
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{name}) {
		t.Errorf("directory holds %v, want only %s", names, name)
	}
}

// TestWriteWritesEveryKey guards the key table against drift: every Agent
// field has a key, in field order, and Write encodes every key.
func TestWriteWritesEveryKey(t *testing.T) {
	typ := reflect.TypeFor[Agent]()
	var fields []string
	for f := range typ.Fields() {
		fields = append(fields, f.Name)
	}
	var names []string
	for _, k := range Keys() {
		names = append(names, k.Name)
		if k.Doc == "" || k.Type == "" {
			t.Errorf("key %s is not documented: %+v", k.Name, k)
		}
	}
	if !slices.Equal(fields, names) {
		t.Errorf("Agent fields %v\nKeys()       %v", fields, names)
	}

	path := filepath.Join(t.TempDir(), "all.plist")
	if err := Write(path, sampleAgent(), plist.BinaryFormat); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if _, err := plist.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := m[name]; !ok {
			t.Errorf("Write did not write key %s", name)
		}
	}
	if len(m) != len(names) {
		t.Errorf("Write wrote %d keys, want %d", len(m), len(names))
	}

	// Defaults documented by Keys() are the ones Load applies.
	a, err := Parse("defaults.plist", mustEncode(t, minimal(), plist.XMLFormat))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if k.Required {
			if k.Default != "" {
				t.Errorf("required key %s documents default %q", k.Name, k.Default)
			}
			continue
		}
		got := ""
		if v, _ := lookupKey(k.Name).get(a); v != nil {
			got = fmt.Sprint(v)
		}
		switch k.Name {
		case "StateDirectory":
			if got != DefaultStateDir() || !strings.Contains(k.Default, DefaultStateDir()) {
				t.Errorf("StateDirectory: default %q, documented %q", got, k.Default)
			}
		case "CheckInInterval", "UpdateInterval", "UpgradeInterval":
			if got != "" || !strings.HasPrefix(k.Default, "0 ") {
				t.Errorf("%s: default %q, documented %q", k.Name, got, k.Default)
			}
		case "ScanInterval":
			if got != "" || !strings.HasPrefix(k.Default, "0 ") {
				t.Errorf("%s: default %q, documented %q", k.Name, got, k.Default)
			}
		case "OnAccess":
			if got != "" || k.Default != "false" {
				t.Errorf("OnAccess: default %q, documented %q", got, k.Default)
			}
		case "OnAccessEvents":
			if got != "["+strings.ReplaceAll(k.Default, ", ", " ")+"]" {
				t.Errorf("OnAccessEvents: default %q, documented %q", got, k.Default)
			}
		case "DefinitionsDirectory":
			// Empty: the agent uses StateDirectory/definitions.
			if got != "" || k.Default != "StateDirectory/definitions" {
				t.Errorf("DefinitionsDirectory: default %q, documented %q", got, k.Default)
			}
		default:
			if got != k.Default {
				t.Errorf("key %s: Load's default %q, Keys() documents %q", k.Name, got, k.Default)
			}
		}
	}
}

func mustEncode(t *testing.T, v any, format int) []byte {
	t.Helper()
	data, err := plist.Marshal(v, format)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWriteRefusesInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.plist")
	bad := func(mut func(a *Agent)) *Agent {
		a := sampleAgent()
		mut(a)
		return a
	}
	cases := []struct {
		name   string
		a      *Agent
		format int
		want   []string
	}{
		{"not multicast", bad(func(a *Agent) { a.MulticastAddress = "192.0.2.1" }), plist.XMLFormat,
			[]string{"key MulticastAddress", "not a multicast address"}},
		{"port", bad(func(a *Agent) { a.MulticastPort = 70000 }), plist.BinaryFormat,
			[]string{"key MulticastPort", "got integer 70000"}},
		{"missing required", bad(func(a *Agent) { a.ServerPublicKey = "" }), plist.XMLFormat,
			[]string{"key ServerPublicKey", "required"}},
		{"sub-second interval", bad(func(a *Agent) { a.CheckInInterval = 1500 * time.Millisecond }), plist.XMLFormat,
			[]string{"key CheckInInterval", "whole number of seconds"}},
		{"negative interval", bad(func(a *Agent) { a.CheckInInterval = -time.Minute }), plist.BinaryFormat,
			[]string{"key CheckInInterval", "got integer -60"}},
		{"text format", sampleAgent(), plist.OpenStepFormat,
			[]string{"cannot write plist format 3"}},
		{"nil", nil, plist.XMLFormat, []string{"nil"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Write(path, c.a, c.format)
			if err == nil {
				t.Fatal("Write succeeded")
			}
			checkErr(t, err, append([]string{path + ": "}, c.want...)...)
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a file was left behind: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("directory not empty: %v", entries)
			}
		})
	}

	missingDir := filepath.Join(dir, "no", "such", "dir", "agent.plist")
	err := Write(missingDir, sampleAgent(), plist.XMLFormat)
	if err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
	checkErr(t, err, missingDir, "cannot write")
}

func checkErr(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
}

// TestMalformedKeys writes each bad value into a real file in both formats
// and checks that Load names the file, the key and the problem.
func TestMalformedKeys(t *testing.T) {
	longGroup := strings.Repeat("g", 65)
	cases := []struct {
		name string
		m    map[string]any
		key  string // "key X" must appear
		want string
	}{
		{"port string", with("MulticastPort", "abc"), "MulticastPort", `want an integer from 1 to 65535, got string "abc"`},
		{"port zero", with("MulticastPort", 0), "MulticastPort", "got integer 0"},
		{"port too big", with("MulticastPort", 65536), "MulticastPort", "got integer 65536"},
		{"port huge", with("MulticastPort", uint64(1)<<63), "MulticastPort", "got integer 9223372036854775808"},
		{"port negative", with("MulticastPort", -1), "MulticastPort", "got integer -1"},
		{"port real", with("MulticastPort", 8192.5), "MulticastPort", "got real 8192.5"},
		{"port boolean", with("MulticastPort", true), "MulticastPort", "got boolean true"},
		{"group unicast", with("MulticastAddress", "10.1.2.3"), "MulticastAddress", "10.1.2.3 is not a multicast address"},
		{"group unicast v6", with("MulticastAddress", "fe80::1"), "MulticastAddress", "not a multicast address"},
		{"group hostname", with("MulticastAddress", "mcast.example.com"), "MulticastAddress", "not an IP address"},
		{"group with zone", with("MulticastAddress", "ff02::1%en0"), "MulticastAddress", "not an IP address"},
		{"group integer", with("MulticastAddress", 239), "MulticastAddress", "want a string, got integer 239"},
		{"group array", with("MulticastAddress", []string{"239.1.1.1"}), "MulticastAddress", "want a string, got array of 1 items"},
		{"interface space", with("MulticastInterface", "en 0"), "MulticastInterface", "not a network interface name"},
		{"interface newline", with("MulticastInterface", "en0\n"), "MulticastInterface", "control character"},
		{"url missing", with("NodeCommURL", nil), "NodeCommURL", "missing; this key is required"},
		{"url empty", with("NodeCommURL", ""), "NodeCommURL", "is empty; this key is required"},
		{"url ftp", with("NodeCommURL", "ftp://vigil.example.com/"), "NodeCommURL", `scheme "ftp" is not supported`},
		{"url no scheme", with("NodeCommURL", "vigil.example.com/agent"), "NodeCommURL", "has no scheme"},
		{"url no host", with("NodeCommURL", "https:///agent"), "NodeCommURL", "has no host"},
		{"url opaque", with("NodeCommURL", "http:vigil.example.com"), "NodeCommURL", "has no host"},
		{"url bad port", with("NodeCommURL", "http://vigil.example.com:99999/"), "NodeCommURL", `port "99999"`},
		{"url query", with("NodeCommURL", "http://vigil.example.com/a?x=1"), "NodeCommURL", "has a query"},
		{"url fragment", with("NodeCommURL", "http://vigil.example.com/a#top"), "NodeCommURL", "has a fragment"},
		{"url user", with("NodeCommURL", "https://admin:hunter2@vigil.example.com/"), "NodeCommURL", "user info"},
		{"url unparsable", with("NodeCommURL", "http://[::1/"), "NodeCommURL", "not a URL"},
		{"url integer", with("NodeCommURL", 80), "NodeCommURL", "want a string, got integer 80"},
		{"key missing", with("ServerPublicKey", nil), "ServerPublicKey", "required"},
		{"key not base64", with("ServerPublicKey", "not base64!"), "ServerPublicKey", "not valid base64"},
		{"key short", with("ServerPublicKey", base64.StdEncoding.EncodeToString(make([]byte, 31))), "ServerPublicKey", "decodes to 31 bytes"},
		{"key raw data", with("ServerPublicKey", make([]byte, 32)), "ServerPublicKey", "want a string, got data of 32 bytes"},
		{"secret boolean", with("EnrollmentSecret", true), "EnrollmentSecret", "want a string, got boolean true"},
		{"ca relative", with("ServerCACertificate", "ca.pem"), "ServerCACertificate", "not an absolute path"},
		{"ca with http", with("NodeCommURL", "http://vigil.example.com/", "ServerCACertificate", "/etc/vigil/ca.pem"),
			"ServerCACertificate", "is not https"},
		{"state relative", with("StateDirectory", "var/lib/vigil"), "StateDirectory", "not an absolute path"},
		{"groups string", with("Groups", "lab"), "Groups", `want an array of strings, got string "lab"`},
		{"groups dict", with("Groups", map[string]any{"a": "b"}), "Groups", "got dictionary of 1 keys"},
		{"groups integer item", with("Groups", []any{"lab", 7}), "Groups", "item 2: want a string, got integer 7"},
		{"groups bad name", with("Groups", []string{"lab", "has space"}), "Groups", `item 2: "has space" is not a group name`},
		{"groups empty name", with("Groups", []string{""}), "Groups", "item 1"},
		{"groups too long", with("Groups", []string{longGroup}), "Groups", "is not a group name"},
		{"groups duplicate", with("Groups", []string{"a", "b", "a"}), "Groups", `item 3: group "a" is already item 1`},
		{"interval short", with("CheckInInterval", 4), "CheckInInterval", "from 5 to 86400, or 0 for the server's interval, got integer 4"},
		{"interval long", with("CheckInInterval", 86401), "CheckInInterval", "got integer 86401"},
		{"interval string", with("CheckInInterval", "300"), "CheckInInterval", `got string "300"`},
		{"interval date", with("CheckInInterval", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)), "CheckInInterval", "got date 2024-01-02T03:04:05Z"},
		{"metrics no port", with("MetricsAddress", "127.0.0.1"), "MetricsAddress", "want host:port"},
		{"metrics named port", with("MetricsAddress", "localhost:http"), "MetricsAddress", `port "http"`},
		{"metrics port zero", with("MetricsAddress", "localhost:0"), "MetricsAddress", `port "0"`},
		{"log level", with("LogLevel", "verbose"), "LogLevel", `want one of debug, info, warn, error, got "verbose"`},
		{"log level case", with("LogLevel", "INFO"), "LogLevel", `got "INFO"`},
		{"hostname newline", with("Hostname", "a\nb"), "Hostname", "control character"},
		{"hostname too long", with("Hostname", strings.Repeat("h", 256)), "Hostname", "256 bytes long"},
		{"liveupdate scheme", with("LiveUpdateServers", []string{"ftp://lu/", "gopher://lu/"}), "LiveUpdateServers", `item 2: "gopher://lu/": want an ftp://, http:// or https:// URL`},
		{"liveupdate no host", with("LiveUpdateServers", []string{"http:///x"}), "LiveUpdateServers", "item 1"},
		{"liveupdate not array", with("LiveUpdateServers", "http://lu/"), "LiveUpdateServers", "got string"},
		{"liveupdate without root", with("LiveUpdateServers", []string{"http://lu/"}), "RepositoryRoot", "missing: LiveUpdateServers are set"},
		{"root relative", with("RepositoryRoot", "root.json"), "RepositoryRoot", "absolute"},
		{"update interval short", with("UpdateInterval", 60), "UpdateInterval", "from 300 to 604800"},
		{"upgrade interval short", with("UpgradeInterval", 600), "UpgradeInterval", "from 3600 to 2592000"},
		{"upgrade interval not integer", with("UpgradeInterval", "weekly"), "UpgradeInterval", "got string"},
		{"scan path relative", with("ScanPaths", []string{"/ok", "home"}), "ScanPaths", "item 2"},
		{"scan exclude bad pattern", with("ScanExclude", []string{"[abc"}), "ScanExclude", `item 1: "[abc" is not a valid pattern`},
		{"scan interval short", with("ScanInterval", 60), "ScanInterval", "from 3600 to 2592000"},
		{"max scan size zero", with("MaxScanFileSize", 0), "MaxScanFileSize", "got integer 0"},
		{"on-access not boolean", with("OnAccess", "yes"), "OnAccess", "want a boolean"},
		{"on-access without paths", with("OnAccess", true), "OnAccessPaths", "missing: OnAccess is true"},
		{"on-access path relative", with("OnAccessPaths", []string{"/home", "srv"}), "OnAccessPaths", "item 2"},
		{"on-access too many paths", with("OnAccessPaths", slices.Repeat([]string{"/p"}, 65)), "OnAccessPaths", "65 paths: at most 64"},
		{"on-access mode", with("OnAccessMode", "deny"), "OnAccessMode", `want notify or block, got "deny"`},
		{"on-access exclude pattern", with("OnAccessExcludePaths", []string{"*.iso"}), "OnAccessExcludePaths", "item 1"},
		{"on-access exclude process relative", with("OnAccessExcludeProcesses", []string{"rsync"}), "OnAccessExcludeProcesses", "item 1"},
		{"on-access events empty", with("OnAccessEvents", []string{}), "OnAccessEvents", "is empty"},
		{"on-access event unknown", with("OnAccessEvents", []string{"open", "read"}), "OnAccessEvents", `item 2: "read" is not an event`},
		{"on-access event twice", with("OnAccessEvents", []string{"exec", "exec"}), "OnAccessEvents", `item 2: "exec" is already item 1`},
		{"on-access max size zero", with("OnAccessMaxFileSize", 0), "OnAccessMaxFileSize", "got integer 0"},
		{"on-access timeout short", with("OnAccessVerdictTimeout", 5), "OnAccessVerdictTimeout", "from 10 to 60000"},
		{"on-access timeout long", with("OnAccessVerdictTimeout", 120000), "OnAccessVerdictTimeout", "from 10 to 60000"},
	}
	dir := t.TempDir()
	for _, f := range formats {
		for i, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				path := writePlist(t, dir, "case"+strconv.Itoa(i)+"."+f.name+".plist", c.m, f.format)
				a, err := Load(path)
				if err == nil {
					t.Fatalf("Load succeeded: %+v", a)
				}
				if a != nil {
					t.Errorf("Load returned an Agent with its error")
				}
				checkErr(t, err, path+": key "+c.key+": ", c.want)
				if strings.Count(err.Error(), "\n") != 0 {
					t.Errorf("one problem, several lines: %q", err)
				}
			})
		}
	}
}

func TestExactMessages(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		m    map[string]any
		want string
	}{
		{with("MulticastPort", "abc"), `: key MulticastPort: want an integer from 1 to 65535, got string "abc"`},
		{with("MulticastAdress", "239.1.2.3"), `: unknown key "MulticastAdress" (did you mean "MulticastAddress"?)`},
		{with("nodecommurl", "http://x/"), `: unknown key "nodecommurl" (did you mean "NodeCommURL"?)`},
		{with("Colour", "blue"), `: unknown key "Colour"`},
	}
	for _, c := range cases {
		path := writePlist(t, dir, "exact.plist", c.m, plist.XMLFormat)
		_, err := Load(path)
		if err == nil {
			t.Fatalf("%v: Load succeeded", c.m)
		}
		if want := path + c.want; err.Error() != want {
			t.Errorf("error\n%s\nwant\n%s", err, want)
		}
	}
}

func TestSuggestKey(t *testing.T) {
	for unknown, want := range map[string]string{
		"MulticastAdress":         "MulticastAddress",
		"MulticastAddresses":      "MulticastAddress",
		"multicastport":           "MulticastPort",
		"Multicast_Port":          "MulticastPort",
		"NodeCommUrl":             "NodeCommURL",
		"NodeComURL":              "NodeCommURL",
		"Group":                   "Groups",
		"LogLvl":                  "LogLevel",
		"CheckinInterval":         "CheckInInterval",
		"HostName":                "Hostname",
		"ServerCACert":            "",
		"Port":                    "",
		"Colour":                  "",
		"":                        "",
		strings.Repeat("x", 1000): "",
	} {
		if got := suggestKey(unknown); got != want {
			t.Errorf("suggestKey(%.20q) = %q, want %q", unknown, got, want)
		}
	}
}

func TestSeveralProblemsAllReported(t *testing.T) {
	path := writePlist(t, t.TempDir(), "many.plist", map[string]any{
		"MulticastPort":   "8192",
		"ServerPublicKey": testKey,
		"LogLevl":         "debug",
		"Groups":          []string{"ok", "not ok"},
	}, plist.XMLFormat)
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		path + ": key MulticastPort: ",
		path + ": key NodeCommURL: missing",
		path + ": key Groups: item 2",
		path + `: unknown key "LogLevl" (did you mean "LogLevel"?)`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want prefix %q", i+1, lines[i], w)
		}
	}
}

// TestNotAPreferenceFile covers files that are not plists at all, or whose
// top level is not a dictionary.
func TestNotAPreferenceFile(t *testing.T) {
	dir := t.TempDir()
	binary := mustEncode(t, minimal(), plist.BinaryFormat)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"text", []byte("NodeCommURL=https://vigil.example.com/\n"), "not a property list (XML or binary): neither"},
		{"empty", nil, "not a property list (XML or binary): file is empty"},
		{"blank", []byte(" \n\t\n"), "not a property list (XML or binary): file is empty"},
		{"json", []byte(`{"NodeCommURL": "https://vigil.example.com/"}`), "not a property list (XML or binary)"},
		{"openstep", []byte(`{ NodeCommURL = "https://vigil.example.com/"; ServerPublicKey = "` + testKey + `"; }`),
			"not a property list (XML or binary)"},
		{"truncated binary", binary[:len(binary)/2], "not a property list (XML or binary): "},
		{"bad binary trailer", append(bytes.Clone(binary[:len(binary)-8]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
			"not a property list (XML or binary): "},
		{"unclosed xml", []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>NodeCommURL</key><string>x</string>`),
			"not a property list (XML or binary): "},
		{"xml not plist", []byte(`<?xml version="1.0"?><html><body>hi</body></html>`), "not a property list (XML or binary): "},
		{"too large", append([]byte("<?xml version=\"1.0\"?>"), bytes.Repeat([]byte(" "), maxFileSize)...),
			"larger than 1048576 bytes"},
		{"top array", mustEncode(t, []string{"a", "b"}, plist.XMLFormat), "top level is array of 2 items, want a dictionary"},
		{"top string binary", mustEncode(t, "hello", plist.BinaryFormat), `top level is string "hello", want a dictionary`},
		{"top integer", mustEncode(t, 8192, plist.XMLFormat), "top level is integer 8192, want a dictionary"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(c.name, " ", "-")+".plist", c.data)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			checkErr(t, err, path+": ", c.want)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.plist")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if want := path + ": cannot read preference file: "; !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), path) != 1 {
		t.Errorf("error %q, want it to start %q and name the file once", err, want)
	}
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.HasPrefix(err.Error(), dir+": ") {
		t.Errorf("Load(directory) = %v", err)
	}
}

func TestServerKeyWithoutLoad(t *testing.T) {
	a := &Agent{ServerPublicKey: testKey}
	if !a.ServerKey().Equal(testPublicKey(t)) {
		t.Errorf("ServerKey() = %x", a.ServerKey())
	}
	a.ServerKey()[0] ^= 0xff // a copy: must not change the Agent
	if a.ServerPublicKey != testKey || !a.ServerKey().Equal(testPublicKey(t)) {
		t.Error("modifying ServerKey's result changed the Agent")
	}
	if k := (&Agent{ServerPublicKey: "AAAA"}).ServerKey(); k != nil {
		t.Errorf("ServerKey() of a 3-byte key = %x, want nil", k)
	}
}

// TestPlistutil has libplist's plistutil, an independent implementation,
// convert files to binary and back, and Load reads each result.
func TestPlistutil(t *testing.T) {
	tool := testenv.NeedTool(t, "plistutil", "libplist-utils")
	dir := t.TempDir()
	written := filepath.Join(dir, "written.plist")
	a := sampleAgent()
	if err := Write(written, a, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	admin, err := Load(filepath.Join("testdata", "admin.plist"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		path string
		want *Agent
	}{
		{written, a},
		{filepath.Join("testdata", "admin.plist"), admin},
	} {
		base := strings.TrimSuffix(filepath.Base(src.path), ".plist")
		bin := filepath.Join(dir, base+".bin.plist")
		xml := filepath.Join(dir, base+".xml.plist")
		for _, step := range [][]string{
			{"-i", src.path, "-o", bin, "-f", "bin"},
			{"-i", bin, "-o", xml, "-f", "xml"},
		} {
			if out, err := exec.Command(tool, step...).CombinedOutput(); err != nil {
				t.Fatalf("plistutil %s: %v\n%s", strings.Join(step, " "), err, out)
			}
		}
		for path, magic := range map[string]string{bin: "bplist00", xml: "<?xml"} {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte(magic)) {
				t.Errorf("%s does not start with %q", path, magic)
			}
			got, err := Load(path)
			if err != nil {
				t.Errorf("Load(%s): %v", path, err)
				continue
			}
			if !reflect.DeepEqual(got, src.want) {
				t.Errorf("Load(%s) =\n%+v\nwant\n%+v", path, got, src.want)
			}
		}
	}
}
