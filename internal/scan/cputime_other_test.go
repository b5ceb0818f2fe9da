//go:build !unix

package scan

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
