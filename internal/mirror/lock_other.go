//go:build !unix

package mirror

import "errors"

var errLocked = errors.New("locked")

// lockDir is a no-op where flock is not available.
func lockDir(string) (func(), error) { return func() {}, nil }
