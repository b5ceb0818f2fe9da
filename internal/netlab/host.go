package netlab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runTimeout bounds Host.Run and Host.Nft.
const runTimeout = 2 * time.Minute

// lossTable is the nftables table DropMulticast manages.
const lossTable = "vigil_loss"

// String returns the host's name and namespace.
func (h *Host) String() string { return h.Name + "(" + h.NS + ")" }

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Command returns a command that runs prog inside the host's namespace, as
// `ip netns exec NS prog args...`. ip execs prog, so the command's process is
// prog itself. The process gets SIGKILL if the thread that started it dies,
// so it does not outlive a crashed test binary. Note that ip netns exec
// resolves /proc/self/exe as ip itself: to run the test binary, pass the
// path from os.Executable.
func (h *Host) Command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", h.execArgs(prog, args)...)
	cmd.Env = h.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// CommandContext is like Command but the process is killed when ctx is done.
func (h *Host) CommandContext(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", h.execArgs(prog, args)...)
	cmd.Env = h.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (h *Host) execArgs(prog string, args []string) []string {
	return append([]string{"netns", "exec", h.NS, prog}, args...)
}

// Run runs prog inside the host's namespace and returns its combined output.
// It fails the test, showing the output, if the command fails or runs longer
// than two minutes.
func (h *Host) Run(t testing.TB, prog string, args ...string) string {
	t.Helper()
	out, err := h.run("", prog, args...)
	if err != nil {
		t.Fatalf("netlab: %s: %v", h, err)
	}
	return out
}

func (h *Host) run(stdin, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := h.CommandContext(ctx, prog, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %v)", err, runTimeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Nft loads an nftables ruleset, the text given to `nft -f -`, inside the
// host's namespace, failing the test if nft is missing or rejects it.
func (h *Host) Nft(t testing.TB, ruleset string) {
	t.Helper()
	if err := h.nft(ruleset); err != nil {
		t.Fatalf("netlab: %s: %v", h, err)
	}
}

func (h *Host) nft(ruleset string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return errors.New("nft not found in PATH (apt-get install nftables)")
	}
	if strings.TrimSpace(ruleset) == "" {
		return errors.New("empty nftables ruleset")
	}
	_, err := h.run(ruleset, "nft", "-f", "-")
	return err
}

// DropMulticast makes the host drop, at random, percent (0-100) of the
// incoming multicast UDP datagrams (IPv4 224.0.0.0/4 and IPv6 ff00::/8) to
// the port, replacing any previous loss rule; 0 removes the rule. Unicast
// datagrams to the same port are not affected. The rule is `numgen random
// mod 100 < percent drop` in the input chain of the inet table vigil_loss.
func (h *Host) DropMulticast(t testing.TB, port int, percent int) {
	t.Helper()
	rs, err := lossRuleset(port, percent)
	if err != nil {
		t.Fatalf("netlab: %s: DropMulticast: %v", h, err)
	}
	if err := h.nft(rs); err != nil {
		t.Fatalf("netlab: %s: DropMulticast: %v", h, err)
	}
}

// lossRuleset renders DropMulticast's ruleset. Declaring and then deleting
// the table first makes the load replace the table whether or not it exists,
// in one transaction.
func lossRuleset(port, percent int) (string, error) {
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("port %d out of range 1-65535", port)
	}
	if percent < 0 || percent > 100 {
		return "", fmt.Errorf("percent %d out of range 0-100", percent)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", lossTable, lossTable)
	if percent == 0 {
		return b.String(), nil
	}
	verdict := "drop"
	if percent < 100 {
		verdict = fmt.Sprintf("numgen random mod 100 < %d drop", percent)
	}
	fmt.Fprintf(&b, "table inet %s {\n", lossTable)
	b.WriteString("\tchain input {\n")
	b.WriteString("\t\ttype filter hook input priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\tip daddr 224.0.0.0/4 udp dport %d %s\n", port, verdict)
	fmt.Fprintf(&b, "\t\tip6 daddr ff00::/8 udp dport %d %s\n", port, verdict)
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}
