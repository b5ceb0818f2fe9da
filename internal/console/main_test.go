package console

import (
	"os"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestMain fails the run if, once every test has passed, a goroutine of
// the console is still running: an event stream ends with its request.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunChecked(m, "vigil/internal/console.(*Console)"))
}
