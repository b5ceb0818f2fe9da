package mirror

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/publish"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// The test binary doubles as a mirror process: with VIGIL_MIRROR_CHILD
// set to a JSON childConfig it runs one sync and exits. Its test hook
// prints "STEP name" at every step boundary and, at the step named by
// PauseAt, prints "PAUSED name" and stops there, so that the parent can
// SIGKILL it at exactly that point.
const childEnv = "VIGIL_MIRROR_CHILD"

type childConfig struct {
	Upstream string `json:"upstream"`
	RootFile string `json:"root_file"`
	Dir      string `json:"dir"`
	Resolver string `json:"resolver"`
	Parallel int    `json:"parallel"`
	Keep     int    `json:"keep"`
	PauseAt  string `json:"pause_at"`
}

func TestMain(m *testing.M) {
	if c := os.Getenv(childEnv); c != "" {
		os.Exit(childMain(c))
	}
	os.Exit(m.Run())
}

func childMain(raw string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	root, err := os.ReadFile(cc.RootFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	testHook = func(step string) {
		fmt.Printf("STEP %s\n", step)
		if step == cc.PauseAt {
			fmt.Printf("PAUSED %s\n", step)
			select {} // until SIGKILL
		}
	}
	m, err := New(Config{Upstream: cc.Upstream, Root: root, Dir: cc.Dir, Resolver: cc.Resolver,
		Parallel: cc.Parallel, Keep: cc.Keep, Timeout: 5 * time.Second, Out: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sum, err := m.Sync(context.Background())
	b, _ := json.Marshal(sum)
	fmt.Printf("SUMMARY %s\n", b)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// runChild runs the mirror in a child process. With pauseAt set, it
// SIGKILLs the child when it reaches that step and reports whether it
// did; otherwise it waits for the sync to finish and returns its steps
// and summary.
func runChild(t *testing.T, cc childConfig) (steps []string, sum *Summary, killed bool) {
	t.Helper()
	raw, _ := json.Marshal(cc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled child would otherwise sleep a second at exit.
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw), "GORACE=atexit_sleep_ms=0")
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "STEP "):
			steps = append(steps, strings.TrimPrefix(line, "STEP "))
		case strings.HasPrefix(line, "PAUSED "):
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		case strings.HasPrefix(line, "SUMMARY "):
			sum = &Summary{}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "SUMMARY ")), sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if killed {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child was not killed by SIGKILL: %v", err)
		}
		return steps, nil, true
	}
	if cc.PauseAt != "" {
		t.Logf("step %q never reached", cc.PauseAt)
	}
	if err != nil {
		t.Fatalf("child mirror: %v\n%s", err, stderr.String())
	}
	return steps, sum, false
}

// TestKilledAtEveryStep kills the mirror (SIGKILL, in a child process) at
// every step boundary of a sync from one state to the next — through
// partial downloads, each metadata file and pruning — and checks that the
// local repository always verifies as the old state or the new one,
// complete, and that the next run finishes the job. The new state comes
// with a root that rotates the timestamp key (signed, as the vendor does,
// with the old and the new key), so the order in which roots are
// published matters.
func TestKilledAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process per kill point")
	}
	for _, proto := range []string{"http", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			v := newVendor(t)
			v.publish("1", 400<<10)
			v.publish("2", 400<<10)
			w := newWorld(t, v.live())
			root := v.rootJSON()
			rootFile := filepath.Join(t.TempDir(), "1.root.json")
			if err := os.WriteFile(rootFile, root, 0o644); err != nil {
				t.Fatal(err)
			}
			// The old state: a complete sync of definitions 1 and 2.
			template := filepath.Join(t.TempDir(), "old")
			syncOK(t, w.config(proto, root, template, &testenv.Buffer{}))
			oldState := verifyState(t, template, root)
			// The new state: definitions 3 and 4 (one of 2 MiB, so a
			// kill lands in the middle of it), then a key rotation.
			v.publish("3", 2<<20)
			v.publish("4", 300<<10)
			if err := v.r.SignRoot(publish.RootOptions{Rotate: []string{"timestamp"}}); err != nil {
				t.Fatal(err)
			}
			newState := vendorVersions(t, v)

			cc := childConfig{Upstream: w.url(proto), RootFile: rootFile, Resolver: w.dns.Addr(), Parallel: 2, Keep: 0}
			// A dry run lists the steps.
			cc.Dir = filepath.Join(t.TempDir(), "dry")
			copyDir(t, template, cc.Dir)
			steps, sum, _ := runChild(t, cc)
			if sum == nil || sum.After != newState || sum.RootsFirst {
				t.Fatalf("dry run: %+v, want %+v with roots published last", sum, newState)
			}
			if got := verifyState(t, cc.Dir, root); got != newState {
				t.Fatalf("dry run left %+v", got)
			}
			t.Logf("%d steps: %s", len(steps), strings.Join(steps, " | "))
			seen := map[string]bool{}
			var resumed, sawOld, sawNew int
			for _, step := range steps {
				if seen[step] {
					continue
				}
				seen[step] = true
				cc.Dir = filepath.Join(t.TempDir(), "m")
				copyDir(t, template, cc.Dir)
				cc.PauseAt = step
				_, _, killed := runChild(t, cc)
				got, err := Verify(cc.Dir, root)
				// A state is its timestamp, snapshot and targets; the
				// new one also verifies under the old root (it is
				// signed with the old and the new timestamp keys), which
				// is why the new root is published last.
				sameState := func(a, b StateVersions) bool {
					a.Root, b.Root = 0, 0
					return a == b
				}
				switch {
				case err != nil:
					t.Fatalf("killed at %q (killed %v): the local repository does not verify: %v", step, killed, err)
				case got == oldState:
					sawOld++
				case sameState(got, newState) && (got.Root == oldState.Root || got.Root == newState.Root):
					sawNew++
				default:
					t.Fatalf("killed at %q: state %+v is neither the old %+v nor the new %+v", step, got, oldState, newState)
				}
				// The next run finishes.
				cc.PauseAt = ""
				_, sum, _ := runChild(t, cc)
				if got := verifyState(t, cc.Dir, root); got != newState || sum.After != newState {
					t.Fatalf("after a kill at %q, the next run left %+v (summary %+v), want %+v", step, got, sum.After, newState)
				}
				resumed += sum.Fetched.Resumed
			}
			t.Logf("%d kill points: %d left the old state, %d the new; %d downloads resumed", len(seen), sawOld, sawNew, resumed)
			if sawOld == 0 || sawNew == 0 || resumed == 0 {
				t.Errorf("want kills that leave each state and downloads that resume")
			}
		})
	}
}
