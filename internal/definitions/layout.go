package definitions

import (
	"path/filepath"
)

// The on-disk layout of a definitions directory, which this package owns
// (the agent installs into it, `vigil scan` reads from it):
//
//	DIR/releases/VERSION/   an installed release (the bundle's files)
//	DIR/current             symbolic link to releases/VERSION, the one in use
//	DIR/previous            symbolic link to the release before it
//
// DIR is the agent's DefinitionsDirectory preference, or
// StateDirectory/definitions (Dir).

// Dir is the definitions directory of an agent whose StateDirectory and
// DefinitionsDirectory preferences are stateDirectory and
// definitionsDirectory: definitionsDirectory when set, else
// stateDirectory/definitions.
func Dir(stateDirectory, definitionsDirectory string) string {
	if definitionsDirectory != "" {
		return definitionsDirectory
	}
	return filepath.Join(stateDirectory, "definitions")
}

// UpdateStateDir is where an agent with StateDirectory stateDirectory
// keeps the repository's trusted metadata (Config.StateDir).
func UpdateStateDir(stateDirectory string) string {
	return filepath.Join(stateDirectory, "update")
}

// CurrentLink is the path of dir's current link, the definitions in use.
func CurrentLink(dir string) string { return filepath.Join(dir, currentLink) }

// Current returns the release dir's current link points to, resolved
// (DIR/releases/VERSION), for definitions installed by any means in this
// layout; an error when none is installed.
func Current(dir string) (string, error) {
	return filepath.EvalSymlinks(CurrentLink(dir))
}
