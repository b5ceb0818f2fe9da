package console

import (
	"os"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestMain fails the run if, once every test has passed, a goroutine of
// the console is still running: an event stream ends with its request,
// and a command's watch with its last stream. It removes the benchmarks'
// store afterwards.
func TestMain(m *testing.M) {
	code := testenv.RunChecked(m, "vigil/internal/console.(*Console)", "vigil/internal/console.(*watches)")
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}
