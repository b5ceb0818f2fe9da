package testenv

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// LeakGrace is how long RunChecked lets goroutines that are ending (a
// server's connections closing, a timer's last callback) finish before it
// calls them leaked.
const LeakGrace = 5 * time.Second

// RunChecked runs m and returns its exit code, for a TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunChecked(m, "vigil/internal/server")) }
//
// When every test passed, it then fails (exit code 1, the stacks on
// standard error) if goroutines whose stack mentions any of substrs are
// still running after LeakGrace: goroutines the package under test, or
// its tests, started and never stopped. This is the check net/http's
// tests make after m.Run.
func RunChecked(m *testing.M, substrs ...string) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if leaked := LeakedGoroutines(LeakGrace, substrs...); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "%d goroutine(s) still running after the tests:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
		return 1
	}
	return 0
}

// LeakedGoroutines returns the stacks of the goroutines other than the
// caller's whose stack (or the "created by" line) mentions any of substrs,
// waiting up to grace for them to end; nil when none is left.
func LeakedGoroutines(grace time.Duration, substrs ...string) []string {
	deadline := time.Now().Add(grace)
	for {
		leaked := matchingGoroutines(substrs)
		if len(leaked) == 0 || !time.Now().Before(deadline) {
			return leaked
		}
		// There is no event for a goroutine's end: poll, as net/http does.
		time.Sleep(20 * time.Millisecond)
	}
}

func matchingGoroutines(substrs []string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// The first stack is the caller's own goroutine.
	stacks := bytes.Split(buf, []byte("\n\n"))[1:]
	var out []string
	for _, s := range stacks {
		for _, sub := range substrs {
			if bytes.Contains(s, []byte(sub)) {
				out = append(out, strings.TrimSpace(string(s)))
				break
			}
		}
	}
	return out
}
