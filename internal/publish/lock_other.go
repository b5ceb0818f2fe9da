//go:build !unix

package publish

import "os"

// Vigil's publishing tool runs on Linux and macOS; elsewhere commands on
// one repository must not run concurrently.
func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
