package relay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-fleet/vigil/internal/statelock"
)

// FileLock is the lock file in StateDir: the running relay holds an
// exclusive flock on it and writes its PID into it, as an agent does in
// its state directory (two relays on one state directory would share one
// credential and overwrite each other's progress).
const FileLock = "relay.lock"

// lockStateDir takes the state directory's lock without waiting; when
// another process holds it, the error names that process's PID.
func lockStateDir(path string) (*os.File, error) {
	f, err := statelock.Take(path)
	var held *statelock.HeldError
	switch {
	case errors.As(err, &held):
		return nil, fmt.Errorf("-state-dir %s is in use by %s (lock file %s): only one relay may run on a state directory",
			filepath.Dir(path), held.Holder("relay"), path)
	case err != nil:
		return nil, fmt.Errorf("-state-dir lock: %w", err)
	}
	return f, nil
}
