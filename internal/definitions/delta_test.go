package definitions

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/delta"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// deltaRepo is a vendor repository whose releases are generated
// signature databases, each changing a few signatures of the one before,
// so that deltas between them are small.
type deltaRepo struct {
	*fixture
	db       *sigDB
	releases map[string]map[string][]byte
}

func newDeltaRepo(t *testing.T) *deltaRepo {
	return &deltaRepo{fixture: newFixture(t, publish.Options{}), db: newSigDB(20000, 7), releases: map[string]map[string][]byte{}}
}

// release publishes the next release, version, changing 0.5 % of the
// signatures.
func (r *deltaRepo) release(version string) {
	r.t.Helper()
	if len(r.releases) > 0 {
		r.db.next(0.005, uint64(len(r.releases)))
	}
	files := r.db.files()
	r.releases[version] = files
	if err := r.repo.AddDefinitionsData(version, files); err != nil {
		r.t.Fatal(err)
	}
	if err := r.repo.Publish(publish.PublishOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

// fullLength is the length of version's full bundle.
func (r *deltaRepo) fullLength(version string) int64 {
	r.t.Helper()
	b, err := repo.MakeBundle(r.releases[version])
	if err != nil {
		r.t.Fatal(err)
	}
	return int64(len(b))
}

// checkInstalled checks that version is current and byte-identical to
// what was published, and that nothing but current, previous and
// releases/ is left in the definitions directory.
func (r *deltaRepo) checkInstalled(a *agent, version string) {
	r.t.Helper()
	if v, err := a.u.Installed(); err != nil || v != version {
		r.t.Fatalf("Installed() = %q, %v; want %q", v, err, version)
	}
	dir := filepath.Join(a.cfg.DefinitionsDir, "current")
	want := r.releases[version]
	names := ls(r.t, dir)
	if len(names) != len(want) {
		r.t.Fatalf("%s holds %v, want %d files", dir, names, len(want))
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			r.t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			r.t.Fatalf("%s/%s differs from the published file", dir, name)
		}
	}
	for _, n := range ls(r.t, a.cfg.DefinitionsDir) {
		if n != "current" && n != "previous" && n != "releases" {
			r.t.Errorf("leftover in the definitions directory: %s", n)
		}
	}
}

// session is one update against a LiveUpdate server started for it: the
// server is stopped afterwards, which writes its whole access log.
type session struct {
	res  Result
	err  error
	log  string
	sent int64    // bytes of the files the server sent in full
	got  []string // the paths it sent, in order
}

// updateOnce starts a LiveUpdate server on dir, runs one Update of a
// against it over proto, and stops the server.
func updateOnce(t *testing.T, a *agent, dir, proto string) session {
	t.Helper()
	log := &testenv.Buffer{}
	srv := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: dir}, AccessLog: log})
	url := srv.HTTPURL
	if proto == "ftp" {
		url = srv.FTPURL
	}
	u := a.withServers(url)
	a.u = u
	res, err := u.Update(context.Background())
	srv.Close()
	s := session{res: res, err: err, log: log.String()}
	s.sent, s.got = sentBytes(t, s.log)
	return s
}

// accessLine is an access log line: "REQUEST" STATUS BYTES PROTO.
var accessLine = regexp.MustCompile(`"([A-Z]+) ([^ "]*)[^"]*" (\d+) (\d+) (http|ftp) `)

// sentBytes sums the bytes of the files the server sent (HTTP 200, FTP
// RETR 226) and lists their paths.
func sentBytes(t *testing.T, log string) (int64, []string) {
	t.Helper()
	var n int64
	var paths []string
	for _, line := range strings.Split(log, "\n") {
		m := accessLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if !(m[5] == "http" && m[1] == "GET" && m[3] == "200") && !(m[5] == "ftp" && m[1] == "RETR" && m[3] == "226") {
			continue
		}
		b, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		n += b
		paths = append(paths, m[2])
	}
	return n, paths
}

// fetched reports whether any path sent ends with suffix.
func (s session) fetched(suffix string) bool {
	return slices.ContainsFunc(s.got, func(p string) bool { return strings.HasSuffix(p, suffix) })
}

// checkBytes checks that the Result counts what the server's access log
// says it sent.
func (s session) checkBytes(t *testing.T) {
	t.Helper()
	if s.res.Bytes != s.sent || s.sent == 0 {
		t.Errorf("Result.Bytes = %d, the server's access log says %d bytes were sent:\n%s", s.res.Bytes, s.sent, s.log)
	}
}

// TestDeltaFromPublisher: an agent several releases behind updates
// through the deltas internal/publish made, downloading far less than the
// full release, over HTTP and FTP; the bytes it counts are those the
// server sent.
func TestDeltaFromPublisher(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			r := newDeltaRepo(t)
			r.release("2026120201")
			a := newAgent(t, r.fixture, "http://127.0.0.1:1")
			s := updateOnce(t, a, r.repo.PublicDir(), proto)
			if s.err != nil || !s.res.Changed || s.res.Deltas != 0 || s.res.FullBytes != r.fullLength("2026120201") {
				t.Fatalf("first update: %+v, %v", s.res, s.err)
			}
			s.checkBytes(t)
			r.checkInstalled(a, "2026120201")

			r.release("2026120202")
			r.release("2026120203")
			r.release("2026120204")
			s = updateOnce(t, a, r.repo.PublicDir(), proto)
			if s.err != nil || !s.res.Changed || s.res.Version != "2026120204" || s.res.Previous != "2026120201" || s.res.Fallback != "" {
				t.Fatalf("update through deltas: %+v, %v", s.res, s.err)
			}
			if s.res.Deltas < 1 || s.res.FullBytes != r.fullLength("2026120204") {
				t.Errorf("update through deltas: %d deltas, full %d bytes (want %d)", s.res.Deltas, s.res.FullBytes, r.fullLength("2026120204"))
			}
			if s.fetched(".2026120204.tar") {
				t.Errorf("the full release was downloaded: %v", s.got)
			}
			if n := countSuffix(s.got, ".delta"); n != s.res.Deltas {
				t.Errorf("%d deltas downloaded, Result says %d: %v", n, s.res.Deltas, s.got)
			}
			if s.res.Bytes*10 > s.res.FullBytes {
				t.Errorf("the update took %d bytes, the full release is %d", s.res.Bytes, s.res.FullBytes)
			}
			s.checkBytes(t)
			r.checkInstalled(a, "2026120204")
			if prev, _ := a.u.readLink(previousLink); prev != "2026120201" {
				t.Errorf("previous = %q", prev)
			}

			// Up to date: only the timestamp is fetched, and counted.
			s = updateOnce(t, a, r.repo.PublicDir(), proto)
			if s.err != nil || s.res.Changed || s.res.Deltas != 0 || s.res.FullBytes != 0 {
				t.Fatalf("update when up to date: %+v, %v", s.res, s.err)
			}
			s.checkBytes(t)
		})
	}
}

// TestDeltaChain: with only deltas from each release to the next
// signed, an agent three releases behind applies the three in a row,
// checking each hop against its signed release: a wrong one in the
// middle is refused, by name, and the full release installed.
func TestDeltaChain(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		for _, wrongMiddle := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/wrong-middle=%v", proto, wrongMiddle), func(t *testing.T) {
				r := newDeltaRepo(t)
				r.release("2026120201")
				a := newAgent(t, r.fixture, "http://127.0.0.1:1")
				if s := updateOnce(t, a, r.repo.PublicDir(), proto); s.err != nil {
					t.Fatal(s.err)
				}
				vs := []string{"2026120201", "2026120202", "2026120203", "2026120204"}
				for _, v := range vs[1:] {
					r.release(v)
				}
				resign(t, r.repo, func(targets map[string]*metadata.TargetFiles) map[string][]byte {
					for _, d := range repo.Deltas(targets) {
						delete(targets, d.Path)
					}
					content := map[string][]byte{}
					for i := 1; i < len(vs); i++ {
						result := r.releases[vs[i]]
						if wrongMiddle && i == 2 {
							result = maps.Clone(result)
							result["main.ndb"] = append(bytes.Clone(result["main.ndb"]), "Vigil.Not.Signed:0:*:41414141\n"...)
						}
						d, err := delta.Make(r.releases[vs[i-1]], result)
						if err != nil {
							t.Fatal(err)
						}
						content[addDelta(targets, vs[i-1], vs[i], d)] = d
					}
					return content
				})
				s := updateOnce(t, a, r.repo.PublicDir(), proto)
				if s.err != nil || !s.res.Changed || s.res.Version != "2026120204" {
					t.Fatalf("update: %+v, %v", s.res, s.err)
				}
				s.checkBytes(t)
				r.checkInstalled(a, "2026120204")
				if wrongMiddle {
					t.Logf("fallback: %s", s.res.Fallback)
					if s.res.Deltas != 0 || !strings.Contains(s.res.Fallback, "2026120202-2026120203.delta refused") ||
						!s.fetched(".2026120204.tar") || s.fetched("2026120203-2026120204.delta") {
						t.Errorf("a wrong delta in the chain: %+v, fetched %v", s.res, s.got)
					}
					return
				}
				if s.res.Deltas != 3 || s.res.Fallback != "" || s.fetched(".tar") || countSuffix(s.got, ".delta") != 3 {
					t.Errorf("update through a chain: %+v, fetched %v", s.res, s.got)
				}
			})
		}
	}
}

func countSuffix(paths []string, suffix string) int {
	n := 0
	for _, p := range paths {
		if strings.HasSuffix(p, suffix) {
			n++
		}
	}
	return n
}

// TestDeltaFallback: a delta changed on the server, missing from it, or
// an installed release altered locally makes the update fall back to the
// full release, says why, and counts every byte downloaded.
func TestDeltaFallback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto string
		spoil func(t *testing.T, r *deltaRepo, a *agent) string // returns the directory to serve
		why   string
	}{
		{"corrupt/http", "http", corruptDelta, "does not match its signed hash or length"},
		{"corrupt/ftp", "ftp", corruptDelta, "does not match its signed hash or length"},
		{"missing/http", "http", missingDelta, "not found"},
		{"missing/ftp", "ftp", missingDelta, "not found"},
		{"altered-installed/http", "http", alterInstalled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newDeltaRepo(t)
			r.release("2026120201")
			a := newAgent(t, r.fixture, "http://127.0.0.1:1")
			if s := updateOnce(t, a, r.repo.PublicDir(), tc.proto); s.err != nil {
				t.Fatal(s.err)
			}
			r.release("2026120202")
			dir := tc.spoil(t, r, a)
			s := updateOnce(t, a, dir, tc.proto)
			if s.err != nil || !s.res.Changed || s.res.Version != "2026120202" || s.res.Deltas != 0 {
				t.Fatalf("update: %+v, %v", s.res, s.err)
			}
			t.Logf("fallback: %s", s.res.Fallback)
			if s.res.Fallback == "" || !strings.Contains(s.res.Fallback, tc.why) {
				t.Errorf("Fallback = %q, want the reason (%q)", s.res.Fallback, tc.why)
			}
			if !strings.Contains(a.logs.String(), "delta update failed, downloading the full release") {
				t.Errorf("fallback not logged:\n%s", a.logs)
			}
			if !s.fetched(".2026120202.tar") {
				t.Errorf("the full release was not downloaded: %v", s.got)
			}
			if s.res.Bytes <= s.res.FullBytes && tc.why != "not found" {
				t.Errorf("Result.Bytes = %d: the delta's bytes are not counted (full %d)", s.res.Bytes, s.res.FullBytes)
			}
			s.checkBytes(t)
			r.checkInstalled(a, "2026120202")
		})
	}
}

// corruptDelta flips a byte of the delta on the server.
func corruptDelta(t *testing.T, r *deltaRepo, _ *agent) string {
	flipByte(t, findFile(t, filepath.Join(r.repo.PublicDir(), "targets"), ".2026120201-2026120202.delta"))
	return r.repo.PublicDir()
}

// missingDelta serves a copy of the repository without the delta.
func missingDelta(t *testing.T, r *deltaRepo, _ *agent) string {
	dir := r.snapshotPublic()
	if err := os.Remove(findFile(t, filepath.Join(dir, "targets"), ".2026120201-2026120202.delta")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// alterInstalled changes a signature in the agent's installed release.
func alterInstalled(t *testing.T, r *deltaRepo, a *agent) string {
	p := filepath.Join(a.cfg.DefinitionsDir, "current", "main.hdb")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return r.repo.PublicDir()
}

// TestDeltaWrongResultRefused: a genuinely signed delta whose result is
// not the signed full release (made from other files) is refused, and
// the full release installed, over HTTP and FTP.
func TestDeltaWrongResultRefused(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			r := newDeltaRepo(t)
			r.release("2026120201")
			a := newAgent(t, r.fixture, "http://127.0.0.1:1")
			if s := updateOnce(t, a, r.repo.PublicDir(), proto); s.err != nil {
				t.Fatal(s.err)
			}
			r.release("2026120202")
			other := maps.Clone(r.releases["2026120202"])
			hdb := bytes.Clone(other["main.hdb"])
			copy(hdb, "0000")
			other["main.hdb"] = hdb
			d, err := delta.Make(r.releases["2026120201"], other)
			if err != nil {
				t.Fatal(err)
			}
			signDelta(t, r.repo, "2026120201", "2026120202", d)

			s := updateOnce(t, a, r.repo.PublicDir(), proto)
			if s.err != nil || !s.res.Changed || s.res.Version != "2026120202" || s.res.Deltas != 0 {
				t.Fatalf("update: %+v, %v", s.res, s.err)
			}
			t.Logf("fallback: %s", s.res.Fallback)
			if !strings.Contains(s.res.Fallback, "refused") || !strings.Contains(s.res.Fallback, "is not the signed release 2026120202") {
				t.Errorf("Fallback = %q", s.res.Fallback)
			}
			if !s.fetched(".2026120201-2026120202.delta") || !s.fetched(".2026120202.tar") {
				t.Errorf("want the delta, then the full release, downloaded: %v", s.got)
			}
			s.checkBytes(t)
			r.checkInstalled(a, "2026120202")
		})
	}
}
