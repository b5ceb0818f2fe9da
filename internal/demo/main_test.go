package demo_test

import (
	"os"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestMain fails the package when a goroutine the demo started outlives
// its run: Run stops every part before it returns.
func TestMain(m *testing.M) { os.Exit(testenv.RunChecked(m, "vigil/internal/demo.")) }
