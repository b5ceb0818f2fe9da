package repo

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type entry struct {
	hdr  tar.Header
	data string
}

func reg(name, data string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data}
}

// rawTar writes entries as given. An entry whose header claims more data
// than it has ends the archive right after its header, as a truncated or
// hostile bundle would.
func rawTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if h.Size > int64(len(e.data)) {
			return buf.Bytes()
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractBundle(t *testing.T) {
	tooMany := make([]entry, MaxBundleFiles+1)
	for i := range tooMany {
		tooMany[i] = reg(fmt.Sprintf("f%d.hdb", i), "x")
	}
	tests := []struct {
		name    string
		entries []entry
		msg     string // "" means it extracts
	}{
		{"good", []entry{reg("main.hdb", "sig"), reg("daily.ndb", "body")}, ""},
		{"empty file", []entry{reg("main.hdb", "")}, ""},
		{"dot-dot", []entry{reg("../evil", "x")}, `".." is not allowed`},
		{"deep dot-dot", []entry{reg("a/../../evil", "x")}, `".." is not allowed`},
		{"dot-dot alone", []entry{reg("..", "x")}, `".." is not allowed`},
		{"absolute", []entry{reg("/tmp/evil", "x")}, "absolute"},
		{"backslash dot-dot", []entry{reg(`..\evil`, "x")}, `".." is not allowed`},
		{"subdirectory", []entry{reg("sub/main.hdb", "x")}, "subdirectories"},
		{"dot slash", []entry{reg("./main.hdb", "x")}, "subdirectories"},
		{"dot file", []entry{reg(".hidden", "x")}, "starts with a dot"},
		{"odd character", []entry{reg("a\nb", "x")}, "not allowed"},
		{"long name", []entry{reg(strings.Repeat("a", 200), "x")}, "longer than"},
		{"directory", []entry{{tar.Header{Typeflag: tar.TypeDir, Name: "sub/", Mode: 0o755}, ""}}, "directories"},
		{"symlink", []entry{{tar.Header{Typeflag: tar.TypeSymlink, Name: "main.hdb", Linkname: "/etc/passwd"}, ""}}, "symbolic links"},
		{"hardlink", []entry{reg("a.hdb", "x"), {tar.Header{Typeflag: tar.TypeLink, Name: "main.hdb", Linkname: "/etc/passwd"}, ""}}, "hard links"},
		{"char device", []entry{{tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}, ""}}, "devices"},
		{"block device", []entry{{tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}, ""}}, "devices"},
		{"fifo", []entry{{tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}, ""}}, "FIFOs"},
		{"sparse", []entry{{tar.Header{Typeflag: tar.TypeGNUSparse, Name: "s"}, ""}}, "extract bundle"},
		{"too big", []entry{{tar.Header{Typeflag: tar.TypeReg, Name: "big.hdb", Size: MaxBundleFileSize + 1}, ""}}, "exceeds the limit"},
		{"truncated", []entry{{tar.Header{Typeflag: tar.TypeReg, Name: "cut.hdb", Size: 1000}, "x"}}, "cut.hdb"},
		{"too many", tooMany, fmt.Sprintf("more than %d files", MaxBundleFiles)},
		{"duplicate", []entry{reg("main.hdb", "one"), reg("main.hdb", "two")}, "appears twice"},
		{"empty bundle", nil, "no files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "defs")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			// BundleFiles reads what ExtractBundle extracts and refuses
			// what it refuses.
			files, ferr := BundleFiles(rawTar(t, tt.entries...))
			if tt.msg == "" {
				if ferr != nil || len(files) != len(tt.entries) {
					t.Fatalf("BundleFiles = %d files, %v", len(files), ferr)
				}
				for _, e := range tt.entries {
					if got, ok := files[e.hdr.Name]; !ok || string(got) != e.data {
						t.Errorf("BundleFiles: %s: %q", e.hdr.Name, got)
					}
				}
			} else if msg := strings.ReplaceAll(tt.msg, "extract bundle", "bundle"); ferr == nil || !strings.Contains(ferr.Error(), msg) {
				t.Errorf("BundleFiles = %v, want an error containing %q", ferr, msg)
			}
			names, err := ExtractBundle(bytes.NewReader(rawTar(t, tt.entries...)), dir)
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, e := range tt.entries {
					want = append(want, e.hdr.Name)
					if got, _ := os.ReadFile(filepath.Join(dir, e.hdr.Name)); string(got) != e.data {
						t.Errorf("%s: %q", e.hdr.Name, got)
					}
				}
				slices.Sort(want)
				if !slices.Equal(names, want) {
					t.Errorf("names %v, want %v", names, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error containing %q", err, tt.msg)
			}
			// Nothing is left behind, inside dir or next to it.
			for _, d := range []string{dir, parent} {
				ents, _ := os.ReadDir(d)
				if d == parent && len(ents) == 1 && ents[0].Name() == "defs" {
					continue
				}
				if len(ents) != 0 {
					t.Errorf("%s holds %v after a refused bundle", d, ents)
				}
			}
		})
	}
}

// TestExtractBundleNoOverwrite: a file, or a planted symbolic link, in
// the destination is never written through.
func TestExtractBundleNoOverwrite(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "defs")
	os.Mkdir(dir, 0o755)
	outside := filepath.Join(parent, "outside")
	os.WriteFile(outside, []byte("keep"), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, "main.hdb")); err != nil {
		t.Fatal(err)
	}
	b := rawTar(t, reg("a.hdb", "a"), reg("main.hdb", "evil"))
	if _, err := ExtractBundle(bytes.NewReader(b), dir); err == nil {
		t.Fatal("extracted through a symbolic link")
	}
	if got, _ := os.ReadFile(outside); string(got) != "keep" {
		t.Fatalf("outside file now %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a.hdb")); err == nil {
		t.Fatal("a.hdb left after a failed extraction")
	}
	if _, err := ExtractBundle(bytes.NewReader(b), filepath.Join(parent, "missing")); err == nil {
		t.Fatal("extracted into a missing directory")
	}
}

// TestBundleFilesRoundTrip: BundleFiles reads back what MakeBundle made.
func TestBundleFilesRoundTrip(t *testing.T) {
	files := map[string][]byte{"main.hdb": []byte("a:1:x\n"), "daily.ndb": {}, "daily.ldb": bytes.Repeat([]byte("y"), 5000)}
	b, err := MakeBundle(files)
	if err != nil {
		t.Fatal(err)
	}
	got, err := BundleFiles(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) {
		t.Fatalf("%d files, want %d", len(got), len(files))
	}
	for name, data := range files {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s differs", name)
		}
	}
	again, err := MakeBundle(got)
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("MakeBundle(BundleFiles(b)) differs from b: %v", err)
	}
	if _, err := BundleFiles(b[:700]); err == nil {
		t.Error("a truncated bundle read")
	}
}
