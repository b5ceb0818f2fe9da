package server_test

import (
	"os"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestMain runs the server of TestCheckInCrash when the test binary is
// started as its child. Otherwise it fails the run if, once every test
// has passed, a goroutine of the server (or of servertest, or of these
// tests) is still running: Server.Serve and Close wait for what they
// start.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(testenv.RunChecked(m, "vigil/internal/server"))
}
