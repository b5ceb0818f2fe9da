// Package buildinfo holds the version of the running vigil binary.
package buildinfo

import "runtime/debug"

// Version is set at link time with -ldflags "-X .../buildinfo.Version=v1.2.3";
// otherwise it comes from the module build information.
var Version = ""

// String returns the version, "devel" when none is known.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
