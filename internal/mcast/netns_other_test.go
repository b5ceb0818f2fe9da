//go:build !linux

package mcast

import (
	"fmt"
	"os"
)

// runIsolated does nothing where network namespaces do not exist; the tests
// use the host's loopback interface. VIGIL_REQUIRE_NETNS=1 makes that fatal.
func runIsolated() (code int, handled bool) {
	if requireIsolation() {
		fmt.Fprintln(os.Stderr, "mcast tests: VIGIL_REQUIRE_NETNS=1 but network namespaces are Linux-only")
		return 1, true
	}
	return 0, false
}

// loopbackFixes knows no remedies outside Linux.
func loopbackFixes(string, bool) [][]string { return nil }
