package prefs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"howett.net/plist"
)

// FuzzParse checks that Parse never panics, that every error it returns
// names the file on each line, and that whatever it accepts survives being
// written in either format and read back.
func FuzzParse(f *testing.F) {
	fixtures, err := filepath.Glob(filepath.Join("testdata", "*.plist"))
	if err != nil || len(fixtures) == 0 {
		f.Fatalf("no fixtures in testdata: %v", err)
	}
	for _, path := range fixtures {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
		for _, v := range []any{
			minimal(),
			with("MulticastAddress", "ff15::8192", "Groups", []any{"a", 1}, "CheckInInterval", 4),
			with("MulticastPort", "abc", "Colour", "blue", "ServerPublicKey", []byte{1, 2}),
			[]any{"a", 1.5, true, map[string]any{"k": "v"}},
		} {
			data, err := plist.Marshal(v, format)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
		agent, err := encode("seed", sampleAgent(), format)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(agent)
	}
	f.Add([]byte("bplist00"))
	// The size check before decoding: shared references within and beyond
	// the limits, a cycle, nesting beyond maxDepth in both formats.
	for _, seed := range bplistSeeds() {
		f.Add(seed)
	}
	f.Add([]byte(`<?xml version="1.0"?><plist>` + strings.Repeat("<array>", maxDepth+1)))
	f.Add([]byte(`{ NodeCommURL = "http://x/"; }`))
	f.Add([]byte("<?xml version=\"1.0\"?><plist><dict><key>NodeCommURL</key><date>2024-01-01T00:00:00Z</date></dict></plist>"))

	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse("fuzz.plist", data)
		if err != nil {
			if a != nil {
				t.Errorf("Parse returned both an Agent and %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.plist: ") {
					t.Errorf("error line does not name the file: %q", line)
				}
			}
			return
		}
		if len(a.ServerKey()) != 32 {
			t.Errorf("accepted a ServerPublicKey that is not a key: %q", a.ServerPublicKey)
		}
		for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
			out, err := encode("fuzz.plist", a, format)
			if err != nil {
				t.Fatalf("cannot encode an accepted Agent as %s: %v", plist.FormatNames[format], err)
			}
			if err := checkReadsBack("fuzz.plist", a, out, format); err != nil {
				t.Fatalf("accepted Agent does not survive %s: %v", plist.FormatNames[format], err)
			}
			b, err := Parse("fuzz.plist", out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s round trip changed the Agent:\n%+v\n%+v", plist.FormatNames[format], a, b)
			}
		}
	})
}

// bplistSeeds are binary plists aimed at the size check: an attack, a
// shared string within the limits, a cycle and deep nesting.
func bplistSeeds() [][]byte {
	seeds := [][]byte{dagPlist(40, 2), dagPlist(2, 3)}
	w := &bplistWriter{}
	lab := w.ascii("lab")
	seeds = append(seeds, w.bytes(w.dict(
		w.ascii("NodeCommURL"), w.ascii("https://vigil.example.com/agent/"),
		w.ascii("ServerPublicKey"), w.ascii(testKey),
		w.ascii("Groups"), w.array(lab),
		w.ascii("Hostname"), lab)))
	w = &bplistWriter{}
	seeds = append(seeds, w.bytes(w.dict(w.ascii("Groups"), w.array(1))))
	w = &bplistWriter{}
	node := w.ascii("lab")
	for range maxDepth {
		node = w.array(node)
	}
	return append(seeds, w.bytes(w.dict(w.ascii("Groups"), node)))
}
