package testenv_test

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// helperEnv makes TestHelper run: it is the test the others run in a
// child process, to see it skip or fail.
const helperEnv = "TESTENV_HELPER"

// TestHelper does what helperEnv names, in a child process started by
// runHelper; it does nothing otherwise.
func TestHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("run by the other tests in a child process")
	case "missing-tool":
		testenv.NeedTool(t, "vigil-testenv-no-such-program", "nosuchpkg")
		t.Log("reached after NeedTool")
	case "present-tool":
		t.Log("path " + testenv.NeedTool(t, "go", "golang-go"))
	case "skip-or-fail":
		testenv.SkipOrFail(t, testenv.RequireNetns, "no namespaces here")
		t.Log("reached after SkipOrFail")
	}
}

// runHelper runs TestHelper in a child with helperEnv=what and extra
// environment, and returns its verbose output.
func runHelper(t *testing.T, what string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelper$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+what,
		testenv.RequireNetns+"=", testenv.RequireTools+"=")
	cmd.Env = append(cmd.Env, env...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func TestNeedToolSkipsOrFails(t *testing.T) {
	t.Parallel()
	out := runHelper(t, "missing-tool")
	if !strings.Contains(out, "--- SKIP: TestHelper") || !strings.Contains(out, "apt-get install -y nosuchpkg") {
		t.Errorf("without %s a missing tool should skip, naming its package:\n%s", testenv.RequireTools, out)
	}
	out = runHelper(t, "missing-tool", testenv.RequireTools+"=1")
	if !strings.Contains(out, "--- FAIL: TestHelper") || !strings.Contains(out, testenv.RequireTools+"=1") {
		t.Errorf("with %s=1 a missing tool should fail:\n%s", testenv.RequireTools, out)
	}
	if strings.Contains(out, "reached after") {
		t.Errorf("the test went on after a missing tool:\n%s", out)
	}
	// The other variable does not cover tools.
	out = runHelper(t, "missing-tool", testenv.RequireNetns+"=1")
	if !strings.Contains(out, "--- SKIP: TestHelper") {
		t.Errorf("%s=1 should not make a missing tool fail:\n%s", testenv.RequireNetns, out)
	}
	out = runHelper(t, "present-tool", testenv.RequireTools+"=1")
	if !strings.Contains(out, "--- PASS: TestHelper") || !strings.Contains(out, "path /") {
		t.Errorf("a tool in PATH should pass with its path:\n%s", out)
	}
}

func TestSkipOrFail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "--- SKIP: TestHelper"},
		{[]string{testenv.RequireNetns + "=0"}, "--- SKIP: TestHelper"},
		{[]string{testenv.RequireTools + "=1"}, "--- SKIP: TestHelper"},
		{[]string{testenv.RequireNetns + "=1"}, "--- FAIL: TestHelper"},
	} {
		out := runHelper(t, "skip-or-fail", tc.env...)
		if !strings.Contains(out, tc.want) || !strings.Contains(out, "no namespaces here") {
			t.Errorf("env %q: want %q with the reason, got:\n%s", tc.env, tc.want, out)
		}
		if strings.Contains(out, "reached after") {
			t.Errorf("env %q: the test went on:\n%s", tc.env, out)
		}
	}
}

func TestLoopback(t *testing.T) {
	t.Parallel()
	name := testenv.Loopback(t)
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if ifi.Flags&net.FlagLoopback == 0 || ifi.Flags&net.FlagUp == 0 {
		t.Errorf("%s has flags %v, want loopback and up", name, ifi.Flags)
	}
	if n2, err := testenv.LoopbackName(); err != nil || n2 != name {
		t.Errorf("LoopbackName() = %q, %v; Loopback gave %q", n2, err, name)
	}
}

// leakyWait says it started and blocks until stop closes: a goroutine
// with a name to look for.
func leakyWait(started, stop chan struct{}) {
	close(started)
	<-stop
}

func TestLeakedGoroutines(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	started := make(chan struct{})
	go leakyWait(started, stop)
	<-started
	leaked := testenv.LeakedGoroutines(0, "testenv_test.leakyWait")
	if len(leaked) != 1 || !strings.Contains(leaked[0], "testenv_test.leakyWait") {
		t.Fatalf("running goroutine not reported: %q", leaked)
	}
	if got := testenv.LeakedGoroutines(0, "testenv_test.TestLeakedGoroutines.func"+"999"); got != nil {
		t.Errorf("goroutines of a function that never ran: %q", got)
	}
	// The caller's own goroutine is never reported, though its stack
	// mentions this test.
	for _, s := range testenv.LeakedGoroutines(0, "testenv_test.TestLeakedGoroutines(") {
		if strings.Contains(s, "testenv.matchingGoroutines") {
			t.Errorf("the caller's goroutine reported:\n%s", s)
		}
	}
	close(stop)
	if got := testenv.LeakedGoroutines(5*time.Second, "testenv_test.leakyWait"); got != nil {
		t.Errorf("an ended goroutine still reported after the grace: %q", got)
	}
}
