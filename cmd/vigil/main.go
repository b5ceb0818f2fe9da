// Command vigil is Vigil's single binary: the management server, the agent,
// the admin commands and a local demonstration. See 'vigil help'.
package main

import (
	"os"

	"github.com/vigil-fleet/vigil/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
