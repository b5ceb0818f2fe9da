package onaccess

import (
	"os"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunChecked(m, "vigil/internal/onaccess.")) }
