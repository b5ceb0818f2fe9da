package mirror

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/transport/trickle"
)

func goosOrLinux() string {
	if slices.Contains(repo.ReleaseOSes, runtime.GOOS) {
		return runtime.GOOS
	}
	return "linux"
}

func goarchOrAmd64() string {
	if slices.Contains(repo.ReleaseArchs, runtime.GOARCH) {
		return runtime.GOARCH
	}
	return "amd64"
}

// TestPicksNewestConsistent is the reference's scenario: three addresses
// behind one name, holding different states — the vendor's current one,
// a stale copy, and a newer copy with a corrupted package. The mirror
// tries the newest, refuses its package, starts again on the next best,
// and publishes a state that verifies, but says it is behind the newest
// (and fails with a BehindError) as long as the corrupted address
// announces a newer state; later syncs report the stale address as older
// than the mirror and catch up with the vendor.
func TestPicksNewestConsistent(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 64<<10)
			v.publish("2", 64<<10)
			stale := v.snapshot() // definitions 2
			v.publish("3", 300<<10)
			fork := v.fork()
			fork.publish("4", 300<<10) // a version the vendor has not published
			bad := fork.snapshot()
			corruptTarget(t, bad, ".4.tar")
			good := v.live() // definitions 3, and whatever the vendor publishes next
			w := newWorld(t, good, stale, bad)
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "mirror")
			out := &testenv.Buffer{}

			sum := syncBehind(t, w.config(proto, root, dir, out))
			t.Logf("first sync:\n%s", out)
			if b := sum.Behind; b.Have != 4 || b.Newest != 5 || b.Address != "127.0.0.4" || len(b.Failed) != 1 || b.Failed[0].Address != "127.0.0.4" {
				t.Errorf("behind %+v, want version 4 of 5 (127.0.0.4, whose session failed)", b)
			}
			if sum.Chosen != "127.0.0.2" {
				t.Errorf("chose %q, want 127.0.0.2 (the newest consistent)", sum.Chosen)
			}
			if len(sum.Probes) != 3 {
				t.Fatalf("probes %+v", sum.Probes)
			}
			wantTS := map[string]int64{"127.0.0.2": 4, "127.0.0.3": 3, "127.0.0.4": 5}
			for _, p := range sum.Probes {
				if p.Error != "" || p.TimestampVersion != wantTS[p.Address] {
					t.Errorf("probe %+v, want timestamp version %d", p, wantTS[p.Address])
				}
			}
			if len(sum.Skipped) != 1 || sum.Skipped[0].Address != "127.0.0.4" || sum.Skipped[0].Stage != "session" ||
				!strings.Contains(sum.Skipped[0].Reason, "definitions/4.tar refused: does not match its signed sha256 hash") {
				t.Errorf("skipped %+v, want 127.0.0.4's session refused for definitions/4.tar", sum.Skipped)
			}
			got := verifyState(t, dir, root)
			if want := vendorVersions(t, v); got != want || sum.After != want {
				t.Errorf("local state %+v (summary %+v), want the vendor's %+v", got, sum.After, want)
			}
			for _, s := range []string{"liveupdate.vendor.test is an alias for lu.geo.vendor.test.", "lu-pool.vendor.test has address 127.0.0.4",
				"Session on 127.0.0.4", "Session on 127.0.0.2: next best after a failed session"} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q", s)
				}
			}
			// Nothing of the corrupted package was kept.
			if _, err := os.Stat(filepath.Join(dir, workDir, partialDir)); err != nil {
				t.Fatal(err)
			}
			if parts, _ := os.ReadDir(filepath.Join(dir, workDir, partialDir)); len(parts) != 0 {
				t.Errorf("partial files left: %v", parts)
			}

			// Second sync: the stale address is older than the mirror, the
			// corrupted one still fails, the good one has nothing new: the
			// mirror is behind, not up to date.
			out.Reset()
			sum = syncBehind(t, w.config(proto, root, dir, out))
			t.Logf("second sync:\n%s", out)
			if sum.UpToDate || sum.Chosen != "127.0.0.2" || sum.Fetched.TargetFiles != 0 || sum.Behind.Have != 4 || sum.Behind.Newest != 5 {
				t.Errorf("second sync: %+v", sum)
			}
			if strings.Contains(out.String(), "Up to date") || !strings.Contains(out.String(), "Behind: 127.0.0.4 serves timestamp version 5 (verified) and the local copy has version 4") {
				t.Errorf("second sync's report does not say it is behind:\n%s", out)
			}
			if !slices.ContainsFunc(sum.Skipped, func(s Skip) bool {
				return s.Address == "127.0.0.3" && s.Stage == "probe" && strings.Contains(s.Reason, "older than this mirror: timestamp version 3 < 4")
			}) {
				t.Errorf("skipped %+v: want 127.0.0.3 as older than the mirror", sum.Skipped)
			}

			// The vendor publishes 4 (its own): the good address and the
			// corrupted fork now tie; either way the vendor's state wins.
			v.publish("4", 300<<10)
			v.publish("5", 100<<10)
			out.Reset()
			sum = syncOK(t, w.config(proto, root, dir, out))
			t.Logf("third sync:\n%s", out)
			got = verifyState(t, dir, root)
			if want := vendorVersions(t, v); got != want || sum.Chosen != "127.0.0.2" {
				t.Errorf("local state %+v from %s, want the vendor's %+v from 127.0.0.2", got, sum.Chosen, want)
			}
			if sum.Pruned.Files == 0 {
				t.Errorf("nothing pruned")
			}
		})
	}
}

// TestNothingNewTransfersOnlyMetadata: a sync when the upstream has
// nothing new asks each address for the next root and timestamp.json,
// nothing else, and takes well under a second.
func TestNothingNewTransfersOnlyMetadata(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			for i := 1; i <= 5; i++ {
				v.publish(strconv.Itoa(i), 128<<10)
			}
			w := newWorld(t, v.live(), v.live(), v.live())
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "mirror")
			out := &testenv.Buffer{}
			sum := syncOK(t, w.config(proto, root, dir, out))
			if sum.Fetched.TargetFiles != 5 {
				t.Fatalf("first sync fetched %+v", sum.Fetched)
			}
			w.resetLogs()
			out.Reset()
			start := time.Now()
			sum = syncOK(t, w.config(proto, root, dir, out))
			took := time.Since(start)
			if !sum.UpToDate || sum.Fetched.TargetFiles != 0 || sum.Fetched.TargetBytes != 0 {
				t.Errorf("second sync: %+v", sum)
			}
			w.flushLogs()
			for _, u := range w.upstreams {
				reqs := u.requests()
				want := []string{repoPath + "/metadata/2.root.json", repoPath + "/metadata/timestamp.json"}
				slices.Sort(reqs)
				if !slices.Equal(reqs, want) {
					t.Errorf("%s was asked for %v, want only %v", u.addr, reqs, want)
				}
			}
			if sum.Fetched.MetadataFiles != 6 {
				t.Errorf("fetched %+v, want 6 metadata files (two per address)", sum.Fetched)
			}
			if took > time.Second {
				t.Errorf("a sync with nothing new took %v, want at most 1s", took)
			}
			t.Logf("nothing new: %v, %d metadata files, %d bytes", took, sum.Fetched.MetadataFiles, sum.Fetched.MetadataBytes)
		})
	}
}

// TestProbeSkipsBadAddresses: an address that is down, one that accepts
// connections but never answers, one whose timestamp is signed by another
// key and one whose timestamp has expired are all reported and skipped.
func TestProbeSkipsBadAddresses(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 32<<10)
			good := v.snapshot()
			// Another repository's timestamp: a bad signature.
			other := newVendor(t)
			other.publish("1", 32<<10)
			other.publish("2", 32<<10)
			other.publish("3", 32<<10)
			forged := v.snapshot()
			copyFile(t, filepath.Join(other.r.PublicDir(), "metadata", "timestamp.json"),
				filepath.Join(forged, filepath.FromSlash(repoPath), "metadata", "timestamp.json"))
			// An expired timestamp, with a higher version.
			old := v.fork()
			old.r.SetClock(func() time.Time { return time.Now().Add(-48 * time.Hour) })
			if err := old.r.RefreshTimestamp(time.Hour); err != nil {
				t.Fatal(err)
			}
			expired := old.snapshot()
			w := newWorld(t, good, "", forged, expired, "")
			// 127.0.0.6 accepts connections and says nothing.
			for _, p := range []int{w.httpPort, w.ftpPort} {
				l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.6", strconv.Itoa(p)))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						defer c.Close()
					}
				}()
			}
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "mirror")
			out := &testenv.Buffer{}
			cfg := w.config(proto, root, dir, out)
			cfg.Timeout = 500 * time.Millisecond
			sum := syncOK(t, cfg)
			t.Logf("%s", out)
			if sum.Chosen != "127.0.0.2" {
				t.Errorf("chose %q", sum.Chosen)
			}
			want := map[string]string{
				"127.0.0.3": "connection refused",
				"127.0.0.4": "bad signature",
				"127.0.0.5": "expired",
				"127.0.0.6": "timed out",
			}
			for _, s := range sum.Skipped {
				if !strings.Contains(s.Reason, want[s.Address]) || s.Stage != "probe" {
					t.Errorf("skipped %s: %q, want %q", s.Address, s.Reason, want[s.Address])
				}
				delete(want, s.Address)
			}
			if len(want) != 0 {
				t.Errorf("not skipped: %v", want)
			}
			verifyState(t, dir, root)
		})
	}
}

// TestNoUsableAddress: when every address fails, the sync fails with
// every reason and the local repository is unchanged.
func TestNoUsableAddress(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 32<<10)
	w := newWorld(t, "", "")
	dir := filepath.Join(t.TempDir(), "mirror")
	m, err := New(w.config("http", v.rootJSON(), dir, &testenv.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := m.Sync(context.Background())
	var na *NoAddressError
	if !errors.As(err, &na) || len(na.Skipped) != 2 || sum.Error == "" {
		t.Fatalf("err %v, summary %+v", err, sum)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "metadata")); len(entries) != 0 {
		t.Errorf("metadata written: %v", entries)
	}
}

// TestRefusesAnotherRepository: a directory holding a copy of another
// repository is refused and left alone: a mirror's copy, and a
// repository's public directory, where not even the mirror's work
// directory is created.
func TestRefusesAnotherRepository(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 32<<10)
	other := newVendor(t)
	other.publish("1", 32<<10)
	w := newWorld(t, v.live())
	dir := filepath.Join(t.TempDir(), "mirror")
	syncOK(t, w.config("http", v.rootJSON(), dir, &testenv.Buffer{}))
	m, err := New(w.config("http", other.rootJSON(), dir, &testenv.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "differs from the pinned root") {
		t.Fatalf("err %v", err)
	}
	verifyState(t, dir, v.rootJSON())

	pub := filepath.Join(t.TempDir(), "public")
	copyDir(t, other.r.PublicDir(), pub)
	before := listTree(t, pub)
	m, err = New(w.config("http", v.rootJSON(), pub, &testenv.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "differs from the pinned root") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err %v", err)
	}
	if after := listTree(t, pub); !slices.Equal(after, before) {
		t.Errorf("the refused directory changed:\nbefore %v\nafter  %v", before, after)
	}
	verifyState(t, pub, other.rootJSON())
}

// listTree lists everything under dir: each path with its mode and size.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestResume: a partial file left by an interrupted download is resumed
// (HTTP Range, FTP REST), not fetched again, and a partial file with
// wrong bytes is detected and the target fetched whole.
func TestResume(t *testing.T) {
	for _, mode := range []string{"direct", "buffered"} {
		t.Run(mode, func(t *testing.T) {
			defer func(d bool) { directIO = d }(directIO)
			directIO = mode == "direct"
			testResume(t)
		})
	}
}

func testResume(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 1<<20)
			v.publish("2", 1<<20)
			w := newWorld(t, v.live())
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "mirror")
			m, err := New(w.config(proto, root, dir, &testenv.Buffer{}))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.prepareDir(); err != nil {
				t.Fatal(err)
			}
			// Half of each target, the second one with a wrong byte.
			s, _ := v.r.Status()
			for i, d := range s.Definitions {
				tf := &metadata.TargetFiles{Length: d.Length, Hashes: metadata.Hashes{"sha256": mustHex(t, d.SHA256)}}
				rel, err := remoteTargetPath(d.Path, tf)
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(v.r.PublicDir(), filepath.FromSlash(rel)))
				if err != nil {
					t.Fatal(err)
				}
				b = b[:len(b)/2]
				if i == 1 {
					b[100] ^= 1
				}
				if err := os.WriteFile(filepath.Join(dir, workDir, partialDir, url.PathEscape(rel)+".part"), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			sum := syncOK(t, w.config(proto, root, dir, &testenv.Buffer{}))
			if sum.Fetched.TargetFiles != 2 || sum.Fetched.Resumed != 1 {
				t.Errorf("fetched %+v, want 2 files, 1 resumed", sum.Fetched)
			}
			total := s.Definitions[0].Length + s.Definitions[1].Length
			wantBytes := total - s.Definitions[0].Length/2 - s.Definitions[1].Length/2 + s.Definitions[1].Length
			if sum.Fetched.TargetBytes != wantBytes {
				t.Errorf("fetched %d target bytes, want %d (half of one, half then all of the other)", sum.Fetched.TargetBytes, wantBytes)
			}
			verifyState(t, dir, root)
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedAndRepaired: cancelling a sync in the middle of a
// download (SIGINT in the command) returns at once and leaves the local
// repository as it was; the next sync resumes. A target file deleted from
// the local copy by hand is fetched again, alone.
func TestInterruptedAndRepaired(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 1<<20)
	w := newWorld(t, v.live())
	root := v.rootJSON()
	dir := filepath.Join(t.TempDir(), "mirror")
	syncOK(t, w.config("http", root, dir, &testenv.Buffer{}))
	before := verifyState(t, dir, root)
	v.publish("2", 4<<20)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	testHook = func(step string) {
		if step == "target definitions/2.tar partial" {
			cancel()
		}
	}
	defer func() { testHook = nil }()
	m, err := New(w.config("http", root, dir, &testenv.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Sync(ctx)
	testHook = nil
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted sync: %v", err)
	}
	if got := verifyState(t, dir, root); got != before {
		t.Fatalf("after an interrupted sync: %+v, want %+v", got, before)
	}
	sum := syncOK(t, w.config("http", root, dir, &testenv.Buffer{}))
	if sum.Fetched.Resumed != 1 || sum.Fetched.TargetFiles != 1 || sum.Fetched.Present != 1 {
		t.Errorf("after the interruption: %+v", sum.Fetched)
	}
	want := verifyState(t, dir, root)

	// Delete a target by hand: the next sync notices and fetches it.
	var victim string
	filepath.WalkDir(filepath.Join(dir, targetsDir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".1.tar") {
			victim = p
		}
		return nil
	})
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	sum = syncOK(t, w.config("http", root, dir, &testenv.Buffer{}))
	if sum.UpToDate || sum.Fetched.TargetFiles != 1 || sum.After != want {
		t.Errorf("repair: %+v", sum)
	}
	verifyState(t, dir, root)
}

// TestRootOrder: new roots are published after the metadata when the new
// state is also signed with the old keys (the vendor's key rotation),
// and before it, with a warning, when the upstream has moved on to a
// state signed with the new keys only.
func TestRootOrder(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 16<<10)
	w := newWorld(t, v.live())
	root := v.rootJSON()
	a := filepath.Join(t.TempDir(), "a")
	syncOK(t, w.config("http", root, a, &testenv.Buffer{}))
	b := filepath.Join(t.TempDir(), "b")
	copyDir(t, a, b)

	if err := v.r.SignRoot(publish.RootOptions{Rotate: []string{"timestamp", "snapshot"}}); err != nil {
		t.Fatal(err)
	}
	sum := syncOK(t, w.config("http", root, a, &testenv.Buffer{}))
	if sum.RootsFirst || len(sum.Warnings) != 0 || sum.After.Root != 2 {
		t.Errorf("overlapping rotation: %+v", sum)
	}
	verifyState(t, a, root)

	v.publish("2", 16<<10) // signed with the new keys only
	out := &testenv.Buffer{}
	sum = syncOK(t, w.config("http", root, b, out))
	if !sum.RootsFirst || len(sum.Warnings) != 1 || !strings.Contains(sum.Warnings[0], "changed keys") {
		t.Errorf("rotation without overlap: %+v", sum)
	}
	if got, want := verifyState(t, b, root), vendorVersions(t, v); got != want {
		t.Errorf("state %+v, want %+v", got, want)
	}
	// The mirror that followed the rotation takes the new state too.
	sum = syncOK(t, w.config("http", root, a, &testenv.Buffer{}))
	if sum.RootsFirst || len(sum.Warnings) != 0 {
		t.Errorf("after the rotation: %+v", sum)
	}
	verifyState(t, a, root)
}

// TestEvery: the schedule syncs at once, then again after each interval,
// picks up what the vendor publishes in between, and stops cleanly when
// its context ends.
func TestEvery(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 16<<10)
	w := newWorld(t, v.live())
	root := v.rootJSON()
	dir := filepath.Join(t.TempDir(), "mirror")
	m, err := New(w.config("ftp", root, dir, &testenv.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var sums []*Summary
	done := make(chan error, 1)
	go func() {
		done <- m.Every(ctx, 100*time.Millisecond, 50*time.Millisecond, func(s *Summary, err error) {
			if err != nil {
				t.Errorf("sync %d: %v", len(sums)+1, err)
			}
			sums = append(sums, s)
			switch len(sums) {
			case 1:
				v.publish("2", 16<<10)
			case 3:
				cancel()
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Every did not stop")
	}
	if len(sums) != 3 || sums[0].After.Timestamp != 2 || sums[1].After.Timestamp != 3 || !sums[2].UpToDate {
		for _, s := range sums {
			t.Logf("%+v", s)
		}
		t.Fatalf("%d syncs", len(sums))
	}
	if gap := sums[1].Started.Sub(sums[0].Started); gap < 100*time.Millisecond {
		t.Errorf("second sync %v after the first", gap)
	}
}

// TestBusy: a second mirror on the same directory fails at once.
func TestBusy(t *testing.T) {
	v := newVendor(t)
	w := newWorld(t, v.live())
	dir := filepath.Join(t.TempDir(), "mirror")
	m, err := New(w.config("http", v.rootJSON(), dir, &testenv.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.prepareDir(); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockDir(filepath.Join(dir, workDir, lockName))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Sync(context.Background())
	unlock()
	var be *BusyError
	if !errors.As(err, &be) {
		t.Fatalf("err %v, want a BusyError", err)
	}
	syncOK(t, w.config("http", v.rootJSON(), dir, &testenv.Buffer{}))
}

// slowConfig is w.config with a slow-retrieval defence sized for tests:
// at least 8 KiB/s over 1s, judged after 0.5s (an address at full speed
// sends each test file well within the grace period).
func slowConfig(w *world, proto string, root []byte, dir string, out *testenv.Buffer) Config {
	cfg := w.config(proto, root, dir, out)
	cfg.MinRate = 8 << 10
	cfg.RateWindow = time.Second
	cfg.RateGrace = 500 * time.Millisecond
	return cfg
}

// TestSlowAddress is TUF's slow-retrieval attack: the address with the
// newest state serves it genuinely, metadata at full speed, but its
// packages at 512 bytes/s — never slow enough for -timeout. The session
// there is abandoned as too slow and the next address, with an older
// state, is used; the mirror reports that it is behind. The next sync,
// where the other address holds only what the mirror has, says it is
// behind too (not "Up to date"); once the address serves at full speed,
// the mirror catches up, resuming what it had fetched.
func TestSlowAddress(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 64<<10)
			older := v.snapshot()
			olderVersions := vendorVersions(t, v)
			v.publish("2", 300<<10)
			w := newSlowWorld(t, map[int]trickle.Settings{0: {Rate: 512, Burst: 24 << 10}}, v.live(), older)
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "mirror")
			out := &testenv.Buffer{}

			sum := syncBehind(t, slowConfig(w, proto, root, dir, out))
			t.Logf("first sync:\n%s", out)
			newest := vendorVersions(t, v)
			if sum.Chosen != "127.0.0.3" || sum.After != olderVersions {
				t.Errorf("published %+v from %s, want the older state %+v from 127.0.0.3", sum.After, sum.Chosen, olderVersions)
			}
			b := sum.Behind
			if b.Newest != newest.Timestamp || b.Address != "127.0.0.2" || len(b.Failed) != 1 ||
				!strings.Contains(b.Failed[0].Reason, "too slow") || !strings.Contains(b.Failed[0].Reason, "below the minimum of 8.0 KiB/s") {
				t.Errorf("behind %+v, want 127.0.0.2's version %d, its session too slow", b, newest.Timestamp)
			}

			out.Reset()
			sum = syncBehind(t, slowConfig(w, proto, root, dir, out))
			t.Logf("second sync:\n%s", out)
			if sum.UpToDate || sum.After != olderVersions || sum.Behind.Newest != newest.Timestamp || !strings.Contains(sum.Behind.Failed[0].Reason, "too slow") {
				t.Errorf("second sync: %+v, behind %+v", sum, sum.Behind)
			}
			for _, s := range []string{
				"Not up to date: 127.0.0.3 has timestamp version " + strconv.FormatInt(olderVersions.Timestamp, 10),
				"Behind: 127.0.0.2 serves timestamp version " + strconv.FormatInt(newest.Timestamp, 10) + " (verified) and the local copy has version " + strconv.FormatInt(olderVersions.Timestamp, 10),
			} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("second sync's report lacks %q", s)
				}
			}
			if strings.Contains(out.String(), "Up to date") {
				t.Errorf("second sync's report says up to date")
			}
			var text strings.Builder
			sum.WriteText(&text)
			if !strings.Contains(text.String(), "BEHIND: unchanged") {
				t.Errorf("summary:\n%s", text.String())
			}

			w.upstreams[0].proxy.Set(trickle.Settings{})
			out.Reset()
			sum = syncOK(t, slowConfig(w, proto, root, dir, out))
			t.Logf("third sync, at full speed:\n%s", out)
			if sum.Behind != nil || sum.Chosen != "127.0.0.2" || sum.After != newest || sum.Fetched.Resumed != 1 {
				t.Errorf("third sync: %+v, fetched %+v", sum, sum.Fetched)
			}
			verifyState(t, dir, root)
		})
	}
}

// TestSlowAddressSessionDeadline: an address that answers each request
// after a delay sends every file within the grace period of the rate
// check, but its session, which must end within the allowance plus its
// signed bytes at the minimum rate, does not: it is abandoned for the
// next address.
func TestSlowAddressSessionDeadline(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 16<<10)
			older := v.snapshot()
			olderVersions := vendorVersions(t, v)
			v.publish("2", 16<<10)
			v.publish("3", 16<<10)
			w := newSlowWorld(t, map[int]trickle.Settings{0: {Latency: 400 * time.Millisecond}}, v.live(), older)
			root := v.rootJSON()
			dir := filepath.Join(t.TempDir(), "mirror")
			out := &testenv.Buffer{}
			cfg := w.config(proto, root, dir, out)
			cfg.Parallel = 1
			cfg.MinRate = 1 << 20
			cfg.RateGrace = 5 * time.Second // never reached: no file is judged
			cfg.SessionAllowance = time.Second
			sum := syncBehind(t, cfg)
			t.Logf("%s", out)
			if sum.Chosen != "127.0.0.3" || sum.After != olderVersions {
				t.Errorf("published %+v from %s, want %+v from 127.0.0.3", sum.After, sum.Chosen, olderVersions)
			}
			if f := sum.Behind.Failed; len(f) != 1 || f[0].Address != "127.0.0.2" || !strings.Contains(f[0].Reason, "(1s allowance + ") {
				t.Errorf("failed sessions %+v, want 127.0.0.2's past its deadline", f)
			}
		})
	}
}
