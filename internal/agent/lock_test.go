package agent_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// lockHelperEnv makes the test binary act as an agent process that opens
// the state directory it names, says "ready", and holds it until its
// standard input closes.
const lockHelperEnv = "VIGIL_AGENT_TEST_LOCK_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockHelperEnv); dir != "" {
		os.Exit(lockHelper(dir))
	}
	// After the tests, no goroutine of the agent (or of its tests) may be
	// left running: Agent.Run and Close wait for what they start.
	os.Exit(testenv.RunChecked(m, "vigil/internal/agent"))
}

func lockHelper(dir string) int {
	a, err := agent.New(agent.Config{Logger: quiet, Prefs: &prefs.Agent{
		MulticastAddress: "239.255.81.92", MulticastPort: 8192, NodeCommURL: "http://127.0.0.1:1/vigil",
		StateDirectory: dir, Hostname: "lock-helper",
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer a.Close()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestAgentStateDirectoryLock: a second agent process on a state directory
// that a first one holds exits with an error naming the first's PID; once
// the first has gone, the directory is free again.
func TestAgentStateDirectoryLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := exec.Command(os.Args[0], "-test.run=^$")
	first.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	stdin, err := first.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	first.Stderr = os.Stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("first agent: %q %v", line, err)
	}

	second := exec.Command(os.Args[0], "-test.run=^$")
	second.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	out, err := second.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("second agent: %v, output %q", err, out)
	}
	if want := "in use by the agent with PID " + strconv.Itoa(first.Process.Pid); !strings.Contains(string(out), want) {
		t.Fatalf("second agent's error %q does not say %q", out, want)
	}

	// In this process too (a lock is per open file, not per process).
	if a, err := agent.New(agent.Config{Logger: quiet, Prefs: &prefs.Agent{NodeCommURL: "http://127.0.0.1:1/vigil", StateDirectory: dir}}); err == nil {
		a.Close()
		t.Fatal("a second agent in the test process opened the locked state directory")
	}

	stdin.Close()
	if err := first.Wait(); err != nil {
		t.Fatalf("first agent: %v", err)
	}
	a, err := agent.New(agent.Config{Logger: quiet, Prefs: &prefs.Agent{NodeCommURL: "http://127.0.0.1:1/vigil", StateDirectory: dir}})
	if err != nil {
		t.Fatalf("after the first agent exited: %v", err)
	}
	a.Close()
}
