//go:build !linux

package loadgen

import "os/exec"

// KillWithParent does nothing where the kernel cannot kill a child with
// its parent; the benchmarks that start processes run on Linux only.
func KillWithParent(cmd *exec.Cmd) {}
