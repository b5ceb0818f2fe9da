package definitions

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/transport"
	"github.com/vigil-fleet/vigil/internal/transport/trickle"
)

func TestUpdate(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			fx := newFixture(t, publish.Options{})
			fx.publish("2026112501", publish.PublishOptions{})
			s := serve(t, fx.repo.PublicDir())
			url := s.httpURL
			if proto == "ftp" {
				url = s.ftpURL
			}
			a := newAgent(t, fx, url)
			ctx := context.Background()

			if v, err := a.u.Installed(); v != "" || err != nil {
				t.Fatalf("Installed() before any update = %q, %v", v, err)
			}
			if p := a.u.Path(); p != "" {
				t.Fatalf("Path() before any update = %q", p)
			}

			res, err := a.u.Update(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Version: "2026112501", Server: url, Changed: true}
			if !sameResult(res, want) {
				t.Fatalf("first update: %+v, want %+v", res, want)
			}
			a.checkInstalled("2026112501", "")
			if proto == "ftp" {
				// One login for all the files of an update. The access
				// log is buffered (flushed every second), so wait for it.
				var log string
				var logins, retrs int
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					log = s.log.String()
					if logins, retrs = strings.Count(log, `"PASS `), strings.Count(log, `"RETR `); retrs >= 5 {
						break
					}
				}
				if logins != 1 || retrs < 5 {
					t.Errorf("%d logins for %d files:\n%s", logins, retrs, log)
				}
			}

			res, err = a.u.Update(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want = Result{Version: "2026112501", Previous: "2026112501", Server: url}
			if !sameResult(res, want) {
				t.Fatalf("second update: %+v, want %+v", res, want)
			}

			fx.publish("2026112502", publish.PublishOptions{})
			res, err = a.u.Update(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want = Result{Version: "2026112502", Previous: "2026112501", Server: url, Changed: true}
			if !sameResult(res, want) {
				t.Fatalf("update to a new release: %+v, want %+v", res, want)
			}
			a.checkInstalled("2026112502", "2026112501")

			// Two releases published at once: the newest is installed,
			// the oldest deleted.
			fx.publish("2026112503", publish.PublishOptions{})
			fx.publish("2026112504", publish.PublishOptions{})
			res, err = a.u.Update(ctx)
			if err != nil || res.Version != "2026112504" || !res.Changed {
				t.Fatalf("update: %+v, %v", res, err)
			}
			a.checkInstalled("2026112504", "2026112502")

			// A new agent process (a new Updater on the same directories)
			// sees the same state.
			u2 := a.withServers(url)
			if v, _ := u2.Installed(); v != "2026112504" {
				t.Fatalf("new Updater: Installed() = %q", v)
			}
			res, err = u2.Update(ctx)
			if err != nil || res.Changed {
				t.Fatalf("new Updater: %+v, %v", res, err)
			}
		})
	}
}

func sameResult(got, want Result) bool {
	return got.Version == want.Version && got.Previous == want.Previous &&
		got.Server == want.Server && got.Changed == want.Changed && len(got.Skipped) == len(want.Skipped)
}

// TestRootRotation publishes a new root (new timestamp key): the agent
// finds 2.root.json by probing, and stops at the missing 3.root.json,
// over both protocols.
func TestRootRotation(t *testing.T) {
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			fx := newFixture(t, publish.Options{})
			fx.publish("1", publish.PublishOptions{})
			s := serve(t, fx.repo.PublicDir())
			url := map[string]string{"http": s.httpURL, "ftp": s.ftpURL}[proto]
			a := newAgent(t, fx, url)
			if _, err := a.u.Update(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := fx.repo.SignRoot(publish.RootOptions{Rotate: []string{"timestamp"}}); err != nil {
				t.Fatal(err)
			}
			fx.publish("2", publish.PublishOptions{})
			res, err := a.u.Update(context.Background())
			if err != nil || res.Version != "2" {
				t.Fatalf("%+v, %v", res, err)
			}
			stored, err := os.ReadFile(filepath.Join(a.cfg.StateDir, "metadata", "root.json"))
			if err != nil {
				t.Fatal(err)
			}
			var root struct {
				Signed struct{ Version int } `json:"signed"`
			}
			if err := json.Unmarshal(stored, &root); err != nil || root.Signed.Version != 2 {
				t.Fatalf("stored root version %d, %v; want 2", root.Signed.Version, err)
			}
			// The next update starts from the stored root 2.
			if res, err := a.u.Update(context.Background()); err != nil || res.Changed {
				t.Fatalf("%+v, %v", res, err)
			}
		})
	}
}

func TestFallback(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("7", publish.PublishOptions{})
	s := serve(t, fx.repo.PublicDir())

	// A server that accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	// A server that answers 404 to everything (no repository there).
	empty := serve(t, t.TempDir())

	downHTTP := "http://" + closedPort(t) + "/repo"
	downFTP := "ftp://" + closedPort(t) + "/repo"
	hung := "http://" + silent.Addr().String()
	servers := []string{downFTP, downHTTP, hung, empty.httpURL, s.ftpURL, s.httpURL}
	a := newAgent(t, fx, servers...)
	a.u.timeout = 500 * time.Millisecond
	a.u.client = transport.DefaultHTTPClient(a.u.timeout)

	res, err := a.u.Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Server != s.ftpURL || res.Version != "7" || !res.Changed {
		t.Fatalf("%+v", res)
	}
	wantSkipped := []struct{ server, reason string }{
		{downFTP, "connection refused"},
		{downHTTP, "connection refused"},
		{hung, "timed out"},
		{empty.httpURL, "not found"},
	}
	if len(res.Skipped) != len(wantSkipped) {
		t.Fatalf("skipped %v", res.Skipped)
	}
	for i, w := range wantSkipped {
		got := res.Skipped[i]
		if got.Server != w.server || !strings.Contains(got.Err.Error(), w.reason) {
			t.Errorf("skipped[%d] = %v; want %s: ...%s...", i, got, w.server, w.reason)
		}
	}
	a.checkInstalled("7", "")
	if !strings.Contains(a.logs.String(), "server skipped") {
		t.Errorf("skipped servers not logged:\n%s", a.logs)
	}

	// All down: a clear error naming each server, nothing changed.
	u := a.withServers(downHTTP, downFTP)
	res, err = u.Update(context.Background())
	var all *AllServersFailedError
	if !errors.As(err, &all) || len(all.Servers) != 2 || all.Installed != "7" {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"keeping installed version 7", downHTTP, downFTP, "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if res.Version != "7" || res.Changed || len(res.Skipped) != 2 {
		t.Errorf("result %+v", res)
	}
	t.Logf("error when every server is down: %v", err)
	a.checkInstalled("7", "")
}

// TestSlowServer is TUF's slow-retrieval attack on the agents: the first
// server sends genuine files too slowly to ever finish, but never slowly
// enough for Timeout — at 512 bytes/s from the first byte, or after its
// metadata, or answering each request after a delay. The updater
// abandons it (a transfer below the minimum rate, or the session past its
// deadline) and installs from the next server.
func TestSlowServer(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, publish.Options{})
	fx.publish("1", publish.PublishOptions{})
	good := serve(t, fx.repo.PublicDir())
	rate := func(c *Config) {
		c.MinRate, c.RateWindow, c.RateGrace = 8<<10, time.Second, 500*time.Millisecond
	}
	tests := []struct {
		name   string
		shape  trickle.Settings
		limits func(*Config)
		want   []string // in the reason the slow server was skipped
	}{
		{"metadata at 512 B/s", trickle.Settings{Rate: 512}, rate,
			[]string{"timestamp.json: too slow", "below the minimum of 8.0 KiB/s"}},
		{"package at 512 B/s", trickle.Settings{Rate: 512, Burst: 32 << 10}, rate,
			[]string{"downloading definitions/1.tar", ".1.tar: too slow", "below the minimum of 8.0 KiB/s"}},
		{"answers late", trickle.Settings{Latency: 300 * time.Millisecond}, func(c *Config) {
			c.MinRate, c.RateGrace, c.SessionAllowance = 1<<20, 5*time.Second, 500*time.Millisecond
		}, []string{"session deadline passed after", "(500ms allowance + "}},
	}
	for _, tt := range tests {
		for _, proto := range []string{"http", "ftp"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				_, slowHTTP, slowFTP := trickle.LiveUpdate(t, fx.repo.PublicDir(), "127.0.0.2", "127.0.0.1", tt.shape)
				slow, fast := slowHTTP, good.httpURL
				if proto == "ftp" {
					slow, fast = slowFTP, good.ftpURL
				}
				a := newAgent(t, fx, slow, fast)
				tt.limits(&a.cfg)
				u := a.withServers(slow, fast)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				res, err := u.Update(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if res.Server != fast || res.Version != "1" || !res.Changed || len(res.Skipped) != 1 {
					t.Fatalf("result %+v, want version 1 from %s after skipping %s", res, fast, slow)
				}
				reason := res.Skipped[0].Err
				t.Logf("%s skipped: %v", slow, reason)
				if !transport.IsSlow(reason) {
					t.Errorf("skipped for %v: not the slow-retrieval defence", reason)
				}
				for _, w := range tt.want {
					if !strings.Contains(reason.Error(), w) {
						t.Errorf("skipped for %q, which lacks %q", reason, w)
					}
				}
				a.checkInstalled("1", "")
			})
		}
	}
}

// TestRefusals serves a bad repository to an agent that has installed
// release 1 and checks that it is refused with a clear reason, that the
// definitions and the trusted metadata are left as they were, and that a
// good server then works.
func TestRefusals(t *testing.T) {
	tests := []struct {
		name string
		// bad publishes what the good server will then serve and returns
		// the directory the bad server serves.
		bad        func(t *testing.T, fx *fixture, a *agent) string
		wantReason string
		// after is the version the good server then installs.
		after string
	}{
		{
			name: "tampered package",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				fx.publish("2", publish.PublishOptions{})
				dir := fx.snapshotPublic()
				flipByte(t, findFile(t, filepath.Join(dir, "targets"), ".2.tar"))
				return dir
			},
			wantReason: "definitions/2.tar refused: does not match its signed hash or length",
			after:      "2",
		},
		{
			name: "truncated package",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				fx.publish("2", publish.PublishOptions{})
				dir := fx.snapshotPublic()
				p := findFile(t, filepath.Join(dir, "targets"), ".2.tar")
				b, _ := os.ReadFile(p)
				os.WriteFile(p, b[:len(b)-1], 0o644)
				return dir
			},
			wantReason: "definitions/2.tar refused",
			after:      "2",
		},
		{
			name: "tampered targets metadata",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				fx.publish("2", publish.PublishOptions{})
				dir := fx.snapshotPublic()
				// Point release 2 at release 1's bundle: same JSON shape,
				// one field changed.
				editJSON(t, newestMetadata(t, dir, "targets"), func(m map[string]any) {
					targets := m["signed"].(map[string]any)["targets"].(map[string]any)
					targets["definitions/2.tar"] = targets["definitions/1.tar"]
				})
				return dir
			},
			wantReason: "targets.json refused: does not match its signed hash or length",
			after:      "2",
		},
		{
			name: "tampered timestamp",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				fx.publish("2", publish.PublishOptions{})
				dir := fx.snapshotPublic()
				editJSON(t, filepath.Join(dir, "metadata", "timestamp.json"), func(m map[string]any) {
					m["signed"].(map[string]any)["expires"] = "2099-01-01T00:00:00Z"
				})
				return dir
			},
			wantReason: "timestamp.json refused: bad or missing signatures",
			after:      "2",
		},
		{
			name: "expired timestamp",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				fx.repo.SetClock(func() time.Time { return time.Now().Add(-48 * time.Hour) })
				fx.publish("2", publish.PublishOptions{TimestampExpires: time.Hour})
				fx.repo.SetClock(time.Now)
				dir := fx.snapshotPublic()
				if err := fx.repo.RefreshTimestamp(0); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantReason: "timestamp.json refused: expired",
			after:      "2",
		},
		{
			name: "rolled-back repository",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				old := fx.snapshotPublic() // release 1 only
				fx.publish("2", publish.PublishOptions{})
				// The agent installs 2 from the good server first.
				if res, err := a.u.Update(context.Background()); err != nil || res.Version != "2" {
					t.Fatalf("%+v, %v", res, err)
				}
				fx.publish("3", publish.PublishOptions{})
				return old
			},
			wantReason: "rollback",
			after:      "3",
		},
		{
			name: "repository signed by other keys",
			bad: func(t *testing.T, fx *fixture, a *agent) string {
				other := newFixture(t, publish.Options{})
				other.publish("1", publish.PublishOptions{})
				other.publish("2", publish.PublishOptions{})
				other.publish("3", publish.PublishOptions{})
				fx.publish("2", publish.PublishOptions{})
				return other.repo.PublicDir()
			},
			wantReason: "timestamp.json refused: bad or missing signatures",
			after:      "2",
		},
	}
	for _, tt := range tests {
		for _, proto := range []string{"http", "ftp"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				fx := newFixture(t, publish.Options{})
				fx.publish("1", publish.PublishOptions{})
				good := serve(t, fx.repo.PublicDir())
				goodURL := map[string]string{"http": good.httpURL, "ftp": good.ftpURL}[proto]
				a := newAgent(t, fx, goodURL)
				if _, err := a.u.Update(context.Background()); err != nil {
					t.Fatal(err)
				}

				badDir := tt.bad(t, fx, a)
				installed, _ := a.u.Installed()
				prev, _ := a.u.readLink(previousLink)
				bad := serve(t, badDir)
				badURL := map[string]string{"http": bad.httpURL, "ftp": bad.ftpURL}[proto]
				before := a.readMetadataStore()

				u := a.withServers(badURL)
				res, err := u.Update(context.Background())
				var all *AllServersFailedError
				if !errors.As(err, &all) {
					t.Fatalf("bad server accepted: %+v, %v", res, err)
				}
				if !strings.Contains(err.Error(), tt.wantReason) || !strings.Contains(err.Error(), badURL) {
					t.Errorf("error %q does not say %q about %s", err, tt.wantReason, badURL)
				}
				t.Logf("refused: %v", err)
				if res.Changed || res.Version != installed {
					t.Errorf("result %+v", res)
				}
				a.checkInstalled(installed, prev)
				a.checkNotPoisoned(before, fx)

				// The bad server first, the good one second: the good one
				// is used and the bad one reported.
				u = a.withServers(badURL, goodURL)
				res, err = u.Update(context.Background())
				if err != nil {
					t.Fatalf("good server after a bad one: %v", err)
				}
				if res.Version != tt.after || res.Server != goodURL || len(res.Skipped) != 1 ||
					!strings.Contains(res.Skipped[0].Error(), tt.wantReason) {
					t.Fatalf("%+v", res)
				}
				a.checkInstalled(tt.after, installed)
			})
		}
	}
}

func editJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStaleServerIsRollback documents the shared metadata store: once the
// agent has seen a newer timestamp from one server, a legitimate server
// that has not caught up is refused as a rollback, and the next server is
// used.
func TestStaleServerIsRollback(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("1", publish.PublishOptions{})
	stale := serve(t, fx.snapshotPublic())
	fx.publish("2", publish.PublishOptions{})
	fresh := serve(t, fx.repo.PublicDir())

	a := newAgent(t, fx, fresh.httpURL)
	if res, err := a.u.Update(context.Background()); err != nil || res.Version != "2" {
		t.Fatalf("%+v, %v", res, err)
	}
	u := a.withServers(stale.ftpURL, fresh.ftpURL)
	res, err := u.Update(context.Background())
	if err != nil || res.Server != fresh.ftpURL || len(res.Skipped) != 1 ||
		!strings.Contains(res.Skipped[0].Err.Error(), "rollback") {
		t.Fatalf("%+v, %v", res, err)
	}
}

// TestTornMetadataStore: a stored metadata file that does not parse (a
// crash while go-tuf wrote it) is dropped and fetched again rather than
// failing every update.
func TestTornMetadataStore(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("1", publish.PublishOptions{})
	s := serve(t, fx.repo.PublicDir())
	a := newAgent(t, fx, s.httpURL)
	if _, err := a.u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"timestamp.json", "snapshot.json", "targets.json", "root.json"} {
		if err := os.WriteFile(filepath.Join(a.cfg.StateDir, "metadata", n), []byte(`{"sig`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fx.publish("2", publish.PublishOptions{})
	if res, err := a.u.Update(context.Background()); err != nil || res.Version != "2" {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestConfigErrors(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	os.WriteFile(garbage, []byte(`{"signed":{}}`), 0o644)
	good := Config{
		Servers:        []string{"http://127.0.0.1:1/repo"},
		TrustedRoot:    fx.repo.RootPath(),
		StateDir:       filepath.Join(dir, "state"),
		DefinitionsDir: filepath.Join(dir, "defs"),
	}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no servers", func(c *Config) { c.Servers = nil }, "no LiveUpdate servers"},
		{"bad scheme", func(c *Config) { c.Servers = []string{"gopher://x/"} }, "want an ftp://"},
		{"no host", func(c *Config) { c.Servers = []string{"http:///repo"} }, "no host"},
		{"query", func(c *Config) { c.Servers = []string{"http://x/repo?a=b"} }, "no query"},
		{"http password", func(c *Config) { c.Servers = []string{"http://u:secret@x/"} }, "ftp:// only"},
		{"no root", func(c *Config) { c.TrustedRoot = "" }, "no trusted root"},
		{"missing root", func(c *Config) { c.TrustedRoot = filepath.Join(dir, "nope") }, "no such file"},
		{"garbage root", func(c *Config) { c.TrustedRoot = garbage }, "not valid root metadata"},
		{"no state", func(c *Config) { c.StateDir = "" }, "no state directory"},
		{"no definitions", func(c *Config) { c.DefinitionsDir = "" }, "no definitions directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("password in error: %v", err)
			}
		})
	}
}

func TestBusy(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("1", publish.PublishOptions{})
	s := serve(t, fx.repo.PublicDir())
	a := newAgent(t, fx, s.httpURL)
	unlock, err := lockState(filepath.Join(a.cfg.StateDir, lockFile))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.u.Update(context.Background())
	unlock()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if _, err := a.u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// newestMetadata returns the path of the highest N.role.json in a public
// directory.
func newestMetadata(t *testing.T, public, role string) string {
	t.Helper()
	best, bestN := "", -1
	for _, n := range ls(t, filepath.Join(public, "metadata")) {
		v, ok := strings.CutSuffix(n, "."+role+".json")
		if !ok {
			continue
		}
		if k := atoiOr(v); k > bestN {
			best, bestN = n, k
		}
	}
	if best == "" {
		t.Fatalf("no %s metadata in %s", role, public)
	}
	return filepath.Join(public, "metadata", best)
}
