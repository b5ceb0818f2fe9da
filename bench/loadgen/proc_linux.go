package loadgen

import (
	"os/exec"
	"syscall"
)

// KillWithParent makes the kernel kill cmd's process (SIGKILL) when the
// thread that started it exits, so that a server or agent started by a
// benchmark that is itself killed (a timeout) does not outlive it. It must
// be called before cmd.Start.
func KillWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
