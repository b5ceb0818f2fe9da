//go:build !unix

package definitions

// lockState is a no-op where flock is unavailable; Updater's mutex still
// serialises updates within the process.
func lockState(string) (func(), error) { return func() {}, nil }
