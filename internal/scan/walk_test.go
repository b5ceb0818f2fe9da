package scan

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vigil-fleet/vigil/internal/unpack"
)

// testEngine detects EICAR (by hash and body) and the string "MALWARE!".
func testEngine(t *testing.T) *Engine {
	return New(mustSet(t, map[string]string{
		"t.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
		"t.ndb": "Test.Malware:0:*:" + hx("MALWARE!") + "\n",
	}))
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func scanPaths(t *testing.T, e *Engine, opts Options, paths ...string) Summary {
	t.Helper()
	var events []Event
	sum, err := e.ScanPaths(context.Background(), paths, opts, func(ev Event) { events = append(events, ev) })
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, ev := range events {
		if ev.Kind != EventSkipped {
			files++
		}
	}
	if int64(files) != sum.Files {
		t.Errorf("%d file events, summary says %d files", files, sum.Files)
	}
	return sum
}

func detected(s Summary) []string {
	var l []string
	for _, d := range s.Detections {
		l = append(l, filepath.Base(d.Path)+":"+d.Signature)
	}
	return l
}

func skippedReasons(s Summary) map[string]string {
	m := map[string]string{}
	for _, k := range s.Skipped {
		m[filepath.Base(k.Path)] = k.Reason
	}
	return m
}

func TestScanTree(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "eicar.com"), eicar)
	write(t, filepath.Join(dir, "sub", "bad.bin"), "xxxx MALWARE! xxxx")
	write(t, filepath.Join(dir, "sub", "clean.txt"), "nothing to see here")
	write(t, filepath.Join(dir, "sub", "deeper", "clean2.txt"), "nor here")
	e := testEngine(t)
	sum := scanPaths(t, e, Options{}, dir)
	want := []string{"eicar.com:Eicar-Test-Signature", "bad.bin:Test.Malware"}
	slices.Sort(want)
	got := detected(sum)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("detections %q, want %q", got, want)
	}
	if sum.Files != 4 || sum.Dirs != 3 || sum.InfectedFiles() != 2 || len(sum.Skipped) != 0 {
		t.Errorf("summary %+v", sum)
	}
	for _, d := range sum.Detections {
		if filepath.Base(d.Path) == "eicar.com" && (d.SHA256 != "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f" || d.Size != 68) {
			t.Errorf("detection %+v", d)
		}
		if len(d.SHA256) != 64 {
			t.Errorf("detection %+v: no SHA-256", d)
		}
	}
}

func TestExclude(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a", "bad.bin"), "MALWARE!")
	write(t, filepath.Join(dir, "ab", "bad.bin"), "MALWARE!")
	write(t, filepath.Join(dir, "c", "bad.iso"), "MALWARE!")
	write(t, filepath.Join(dir, "d", "skipme", "bad.bin"), "MALWARE!")
	write(t, filepath.Join(dir, "e", "bad.bin"), "MALWARE!")
	e := testEngine(t)
	sum := scanPaths(t, e, Options{
		Exclude:         []string{filepath.Join(dir, "a")},
		ExcludePatterns: []string{"*.iso", "skipme", filepath.Join(dir, "e") + "/*"},
	}, dir)
	var got []string
	for _, d := range sum.Detections {
		rel, _ := filepath.Rel(dir, d.Path)
		got = append(got, rel)
	}
	if !slices.Equal(got, []string{"ab/bad.bin"}) {
		t.Errorf("detections in %q, want only ab/bad.bin", got)
	}
	if _, err := e.ScanPaths(context.Background(), []string{dir}, Options{ExcludePatterns: []string{"["}}, nil); err == nil {
		t.Error("bad pattern accepted")
	}
}

func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.bin"), "MALWARE!")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if os.Geteuid() == 0 {
		if err := syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, int(mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	big := write(t, filepath.Join(dir, "big.bin"), strings.Repeat("x", 5000)+"MALWARE!")
	e := testEngine(t)
	lim := unpack.DefaultLimits()
	lim.MaxFileSize = 4096
	sum := scanPaths(t, e, Options{Limits: lim}, dir, filepath.Join(dir, "fifo"))
	r := skippedReasons(sum)
	if !strings.Contains(r["fifo"], "FIFO") || !strings.Contains(r["sock"], "socket") {
		t.Errorf("skipped %q", r)
	}
	if os.Geteuid() == 0 && !strings.Contains(r["null"], "character device") {
		t.Errorf("skipped %q", r)
	}
	// A file over max-filesize is not read, and clean, as clamscan says.
	if _, ok := r["big.bin"]; ok || sum.Files != 2 {
		t.Errorf("skipped %q, %d files", r, sum.Files)
	}
	if got := detected(sum); !slices.Equal(got, []string{"bad.bin:Test.Malware"}) {
		t.Errorf("detections %q", got)
	}
	// The FIFO given twice (in the tree and as a path) is skipped twice.
	n := 0
	for _, s := range sum.Skipped {
		if filepath.Base(s.Path) == "fifo" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("fifo skipped %d times, want 2", n)
	}
	// A symbolic link given as a path is followed: to a device.
	link := filepath.Join(t.TempDir(), "devnull")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	sum = scanPaths(t, e, Options{}, link, big)
	r = skippedReasons(sum)
	if !strings.Contains(r["devnull"], "character device") || sum.Files != 1 || len(sum.Detections) != 1 {
		t.Errorf("summary %+v", sum)
	}
}

func mkdev(major, minor uint32) uint64 {
	return uint64(major)<<8 | uint64(minor)
}

func TestSymlinks(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "bad.bin"), "MALWARE!")
	dir := t.TempDir()
	write(t, filepath.Join(dir, "real", "inner.bin"), "MALWARE!")
	links := map[string]string{
		"out":      filepath.Join(outside, "bad.bin"),
		"outdir":   outside,
		"dangling": filepath.Join(dir, "nowhere"),
		"loop":     ".",
		"inside":   filepath.Join(dir, "real", "inner.bin"),
		"cyc1":     "cyc2",
		"cyc2":     "cyc1",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	e := testEngine(t)

	// Not following: links are ignored, like clamscan does.
	sum := scanPaths(t, e, Options{}, dir)
	if got := detected(sum); !slices.Equal(got, []string{"inner.bin:Test.Malware"}) || len(sum.Skipped) != 0 {
		t.Errorf("not following: detections %q, skipped %q", got, sum.Skipped)
	}

	// Following: only inside the tree; loops and dangling links reported.
	sum = scanPaths(t, e, Options{FollowSymlinks: true}, dir)
	got := detected(sum)
	slices.Sort(got)
	if !slices.Equal(got, []string{"inner.bin:Test.Malware", "inside:Test.Malware"}) {
		t.Errorf("following: detections %q", got)
	}
	r := skippedReasons(sum)
	for name, want := range map[string]string{
		"out":      "outside the scanned tree",
		"outdir":   "outside the scanned tree",
		"dangling": "no such file",
		"loop":     "already scanned",
		"cyc1":     "symbolic link",
		"cyc2":     "symbolic link",
	} {
		if !strings.Contains(r[name], want) {
			t.Errorf("%s: skipped for %q, want %q", name, r[name], want)
		}
	}

	// A dangling link given as a path.
	sum = scanPaths(t, e, Options{}, filepath.Join(dir, "dangling"))
	if r := skippedReasons(sum); !strings.Contains(r["dangling"], "no such file") {
		t.Errorf("skipped %q", r)
	}
	// A path that does not exist.
	sum = scanPaths(t, e, Options{}, filepath.Join(dir, "absent"))
	if r := skippedReasons(sum); r["absent"] != "no such file or directory" {
		t.Errorf("skipped %q", r)
	}
}

func TestCancel(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.bin"), "MALWARE!")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sum, err := testEngine(t).ScanPaths(ctx, []string{dir}, Options{}, nil)
	if err != context.Canceled || sum.Files != 0 {
		t.Errorf("ScanPaths = %+v, %v", sum, err)
	}
}

// TestShrinkingFile: a file shorter than its stat size (it shrank) is
// matched as far as it goes, and never read past the size from stat.
func TestShrinkingFile(t *testing.T) {
	e := testEngine(t)
	data := "...MALWARE!..."
	res, err := e.ScanReader(context.Background(), strings.NewReader(data), 100)
	if err != nil || !slices.Equal(res.Signatures, []string{"Test.Malware"}) {
		t.Errorf("ScanReader = %+v, %v", res, err)
	}
	res, err = e.ScanReader(context.Background(), strings.NewReader(data+"MALWARE!"), int64(len(data)-5))
	if err != nil || len(res.Signatures) != 0 || res.Bytes != int64(len(data)-5) {
		t.Errorf("ScanReader = %+v, %v", res, err)
	}
}
