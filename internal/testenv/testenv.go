// Package testenv is where Vigil's tests learn what this machine offers
// them, as Go's own internal/testenv does for the standard library.
//
// A test that needs something the machine may lack (root and network
// namespaces, a peer program such as curl or clamscan, the loopback
// interface) asks here. Where it is missing the test is skipped with the
// reason, unless the environment demands it: with VIGIL_REQUIRE_NETNS=1
// (namespaces, root, loopback multicast) or VIGIL_REQUIRE_TOOLS=1 (peer
// programs) the test fails instead, so a CI run meant to exercise those
// paths (.ci/run sets both) cannot pass by skipping them. This package is
// the only place that makes that decision. It also holds RunChecked, for
// a TestMain that fails a run whose tests leave goroutines of the package
// running. docs/testing.md shows how the
// test helpers (this package, servertest, liveupdatetest, netlab) fit.
//
// It imports nothing but the standard library, so that every package's
// tests, including those of the packages it could otherwise depend on,
// may use it.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// The environment variables that turn a skip into a failure.
const (
	// RequireNetns demands root, network namespaces (internal/netlab) and
	// multicast on the loopback interface.
	RequireNetns = "VIGIL_REQUIRE_NETNS"
	// RequireTools demands the peer programs tests compare against.
	RequireTools = "VIGIL_REQUIRE_TOOLS"
)

// Required reports whether env (RequireNetns or RequireTools) is set to 1:
// a test must then fail, not skip, when what env covers is missing.
func Required(env string) bool { return os.Getenv(env) == "1" }

// SkipOrFail ends tb because something it needs is missing: msg says what.
// It skips tb, or fails it when Required(env).
func SkipOrFail(tb testing.TB, env, msg string) {
	tb.Helper()
	if Required(env) {
		tb.Fatalf("%s, and %s=1 makes that a failure", msg, env)
	}
	tb.Skipf("%s (set %s=1 to fail instead of skipping)", msg, env)
}

// NeedTool returns the path of program name, or ends tb with SkipOrFail
// under RequireTools when it is not in PATH; pkg is the Debian package
// that provides it, named in the message.
func NeedTool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(tb, RequireTools, fmt.Sprintf("%s not found in PATH (Debian: apt-get install -y %s)", name, pkg))
	}
	return p
}

// LoopbackName returns the name of the loopback interface that is up ("lo"
// on Linux, "lo0" on macOS).
func LoopbackName() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Name, nil
		}
	}
	return "", errors.New("no loopback interface is up")
}

// Loopback returns the name of the loopback interface, the only interface
// tests outside a network namespace may multicast on (with TTL 0). Without
// one it ends tb with SkipOrFail under RequireNetns.
func Loopback(tb testing.TB) string {
	tb.Helper()
	name, err := LoopbackName()
	if err != nil {
		SkipOrFail(tb, RequireNetns, err.Error())
	}
	return name
}

// PostgresBin returns the directory holding PostgreSQL's server programs
// (initdb, pg_ctl, postgres), or ends tb with SkipOrFail under
// RequireTools when there is none: the directory of initdb in PATH, else
// the newest /usr/lib/postgresql/<major>/bin, where Debian's package
// postgresql puts them outside PATH.
func PostgresBin(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestMajor := "", -1.0
	for _, d := range dirs {
		major, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64) // "15", or "9.6" before 10
		if err != nil || major <= bestMajor {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			best, bestMajor = d, major
		}
	}
	if best == "" {
		SkipOrFail(tb, RequireTools, "PostgreSQL's initdb not found in PATH nor in /usr/lib/postgresql/*/bin (Debian: apt-get install -y postgresql)")
	}
	return best
}
