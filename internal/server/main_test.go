package server_test

import (
	"os"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestMain fails the run if, once every test has passed, a goroutine of
// the server (or of servertest, or of these tests) is still running:
// Server.Serve and Close wait for what they start.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunChecked(m, "vigil/internal/server"))
}
