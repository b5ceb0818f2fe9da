package definitions

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/publish"
)

// childEnv, when set, makes the test binary run one Update as a child
// process (see childMain) instead of the tests.
const childEnv = "VIGIL_UPDATER_TEST_CHILD"

type childConfig struct {
	Config
	Stage string // block at this install stage, after saying so on stdout
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec))
	}
	os.Exit(m.Run())
}

// childMain runs Update in this process. At the install stage named in
// the spec it prints "STAGE name" and waits to be killed.
func childMain(spec string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(spec), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	testHook = func(stage string) {
		if stage == cc.Stage {
			fmt.Printf("STAGE %s\n", stage)
			time.Sleep(time.Hour)
		}
	}
	cc.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	u, err := New(cc.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	res, err := u.Update(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	fmt.Printf("DONE %s\n", res.Version)
	return 0
}

// trickleServer serves a public directory over HTTP; while trickling, a
// target file is sent only in part, then the handler reports on started
// and holds the connection until the client goes away.
type trickleServer struct {
	*httptest.Server
	trickle atomic.Bool
	started chan string
}

func newTrickleServer(t *testing.T, dir string) *trickleServer {
	ts := &trickleServer{started: make(chan string, 10)}
	files := http.FileServer(http.Dir(dir))
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ts.trickle.Load() || !strings.HasPrefix(r.URL.Path, "/targets/") {
			files.ServeHTTP(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:len(b)/4])
		w.(http.Flusher).Flush()
		ts.started <- r.URL.Path
		<-r.Context().Done()
	}))
	t.Cleanup(ts.Close)
	return ts
}

// TestInterruptedUpdate kills (SIGKILL) an agent process in the middle of
// an update — during the download, and at each step of the installation —
// and checks that current still points at a complete release and that the
// next update completes.
func TestInterruptedUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	tests := []struct {
		name    string
		trickle bool   // kill while the package is being downloaded
		stage   string // or kill at this stage
		current string // the release current must be after the kill
		deltas  bool   // release 2 is published with a delta from 1
		check   func(t *testing.T, defs string)
	}{
		{name: "mid-download", trickle: true, current: "1"},
		{name: "downloaded", stage: "downloaded", current: "1"},
		{name: "delta downloaded", stage: "delta-downloaded", current: "1", deltas: true},
		{name: "extracted", stage: "extracted", current: "1", check: func(t *testing.T, defs string) {
			if m, _ := filepath.Glob(filepath.Join(defs, stagingPrefix+"*")); len(m) != 1 {
				t.Errorf("no staging directory after a kill at extraction: %v", m)
			}
		}},
		{name: "renamed", stage: "renamed", current: "1", check: func(t *testing.T, defs string) {
			checkRelease(t, filepath.Join(defs, "releases", "2"), "2")
		}},
		{name: "previous swapped", stage: "previous", current: "1"},
		{name: "switched", stage: "switched", current: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, publish.Options{})
			fx.publish("1", publish.PublishOptions{})
			srv := newTrickleServer(t, fx.repo.PublicDir())
			a := newAgent(t, fx, srv.URL)
			if _, err := a.u.Update(context.Background()); err != nil {
				t.Fatal(err)
			}
			opts := publish.PublishOptions{}
			if tt.deltas {
				one := 1
				opts.DeltaReleases = &one
			}
			fx.publish("2", opts)
			srv.trickle.Store(tt.trickle)

			spec, _ := json.Marshal(childConfig{Config: Config{
				Servers:        a.cfg.Servers,
				TrustedRoot:    a.cfg.TrustedRoot,
				StateDir:       a.cfg.StateDir,
				DefinitionsDir: a.cfg.DefinitionsDir,
				Timeout:        time.Minute,
			}, Stage: tt.stage})
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 10)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()

			select {
			case p := <-srv.started:
				if !tt.trickle {
					t.Fatalf("unexpected trickle of %s", p)
				}
			case line, ok := <-lines:
				if !ok || line != "STAGE "+tt.stage {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child said %q (%v), want STAGE %s; stderr:\n%s", line, ok, tt.stage, stderr.String())
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child did not reach the kill point; stderr:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, stdout)
			err = cmd.Wait()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child was not killed by SIGKILL: %v", err)
			}

			// After the kill: current is a complete release.
			got, err := a.u.Installed()
			if err != nil || got != tt.current {
				t.Fatalf("after the kill: Installed() = %q, %v; want %q", got, err, tt.current)
			}
			checkRelease(t, filepath.Join(a.cfg.DefinitionsDir, "current"), tt.current)
			if tt.check != nil {
				tt.check(t, a.cfg.DefinitionsDir)
			}

			// The next update completes and cleans up.
			srv.trickle.Store(false)
			u := a.withServers(srv.URL)
			res, err := u.Update(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Version != "2" || res.Changed != (tt.current == "1") || tt.deltas && res.Deltas != 1 {
				t.Fatalf("update after the kill: %+v", res)
			}
			a.checkInstalled("2", "1")
			if left := ls(t, filepath.Join(a.cfg.StateDir, "download")); len(left) != 0 {
				t.Errorf("download leftovers: %v", left)
			}
		})
	}
}

// TestUpdateCancelled cancels an update during the download: Update
// returns the context's error (no server is blamed), and nothing changes.
func TestUpdateCancelled(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("1", publish.PublishOptions{})
	srv := newTrickleServer(t, fx.repo.PublicDir())
	other := serve(t, fx.repo.PublicDir())
	a := newAgent(t, fx, srv.URL, other.httpURL)
	if _, err := a.u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	fx.publish("2", publish.PublishOptions{})
	srv.trickle.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-srv.started
		cancel()
	}()
	res, err := a.u.Update(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.Changed || res.Version != "1" || len(res.Skipped) != 0 {
		t.Fatalf("%+v", res)
	}
	a.checkInstalled("1", "")
}

// TestBrokenCurrent: a current link to a missing release is repaired by
// the next update.
func TestBrokenCurrent(t *testing.T) {
	fx := newFixture(t, publish.Options{})
	fx.publish("1", publish.PublishOptions{})
	s := serve(t, fx.repo.PublicDir())
	a := newAgent(t, fx, s.httpURL)
	if _, err := a.u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(a.cfg.DefinitionsDir, "releases", "1")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.u.Installed(); err == nil || !strings.Contains(err.Error(), "missing release") {
		t.Fatalf("Installed() error = %v", err)
	}
	if p := a.u.Path(); p != "" {
		t.Fatalf("Path() = %q", p)
	}
	res, err := a.u.Update(context.Background())
	if err != nil || !res.Changed || res.Version != "1" || res.Previous != "" {
		t.Fatalf("%+v, %v", res, err)
	}
	a.checkInstalled("1", "")
}
