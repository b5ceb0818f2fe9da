package mcast

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// netnsChildEnv marks the copy of the test binary running inside the private
// network namespace.
const netnsChildEnv = "VIGIL_MCAST_NETNS_CHILD"

// runIsolated re-executes the test binary in a new network namespace that
// holds nothing but its own loopback interface, so no test datagram can
// possibly reach a real network and the host's interfaces and routes are
// left untouched. Without root it adds a user namespace. It returns
// handled=true with the child's exit code once the child has run; it
// returns handled=false in the child itself, and when no namespace can be
// created, in which case the tests run on the host's loopback interface.
func runIsolated() (code int, handled bool) {
	if os.Getenv(netnsChildEnv) != "" {
		if err := run("ip", "link", "set", "lo", "up"); err != nil {
			fmt.Fprintf(os.Stderr, "mcast tests: bring up lo in network namespace: %v\n", err)
			return 1, true
		}
		return 0, false
	}
	err := startIsolated()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &exit):
		return exit.ExitCode(), true
	case requireIsolation():
		fmt.Fprintf(os.Stderr, "mcast tests: VIGIL_REQUIRE_NETNS=1 but no network namespace: %v\n", err)
		return 1, true
	default:
		fmt.Fprintf(os.Stderr, "mcast tests: no private network namespace (%v); using the host's loopback interface\n", err)
		return 0, false
	}
}

func startIsolated() error {
	if _, err := exec.LookPath("ip"); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if uid, gid := os.Getuid(), os.Getgid(); uid != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	cmd.SysProcAttr = attr
	return cmd.Run()
}

// loopbackFixes lists the commands that make multicast work on the loopback
// interface lo, tried in order until a probe succeeds (see the package
// documentation for why IPv6 needs a route).
func loopbackFixes(lo string, v6 bool) [][]string {
	var fixes [][]string
	if v6 {
		fixes = append(fixes, []string{"ip", "-6", "route", "add", "ff11::/16", "dev", lo, "table", "local"})
	}
	return append(fixes, []string{"ip", "link", "set", lo, "multicast", "on"})
}

// TestInterfaceFilter checks that a receiver configured for one interface
// drops its group's datagrams arriving on another. Linux filters IPv4 by
// interface itself (with IP_MULTICAST_ALL off) but matches IPv6 memberships
// by address only, so for IPv6 the receiver's own check does the work. The
// second interface is one end of a veth pair, which the test creates only
// inside the private network namespace.
func TestInterfaceFilter(t *testing.T) {
	if os.Getenv(netnsChildEnv) == "" || !onlyLoopbackInterfaces() {
		msg := "needs the private network namespace, to create a veth pair"
		if requireIsolation() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	const veth, peer = "vmcast0", "vmcast1"
	if err := run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer); err != nil {
		t.Skipf("cannot create veth pair: %v", err)
	}
	t.Cleanup(func() { run("ip", "link", "del", veth) })
	for _, args := range [][]string{
		{"sysctl", "-qw", "net.ipv6.conf." + veth + ".accept_dad=0"},
		{"ip", "link", "set", veth, "up"},
		{"ip", "link", "set", peer, "up"},
	} {
		if err := run(args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			// Carrier changes reach IPv6 (which then adds the veth's
			// multicast route) through the kernel's rate-limited link
			// watcher, up to a second after the link came up.
			for deadline := time.Now().Add(5 * time.Second); ; {
				err := probe(veth, f.v6)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("multicast on %s: %v", veth, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			onLo := loConfig(t, f.v6, 11)
			onVeth := onLo
			onVeth.Interface = veth
			a, b := newReceiver(t, onLo), newReceiver(t, onVeth)

			// TTL 0 with Loopback: the copy looped back to this host
			// arrives "on" the veth; the original is discarded unsent.
			send(t, newSender(t, onVeth), "via veth")
			if got := receive(t, b, 1)[0].data; got != "via veth" {
				t.Fatalf("veth receiver got %q, want \"via veth\"", got)
			}
			send(t, newSender(t, onLo), "via lo")
			if got := receive(t, a, 1)[0].data; got != "via lo" {
				t.Fatalf("lo receiver got %q, want \"via lo\"", got)
			}
			t.Logf("dropped by the interface check: %d on lo, %d on veth", a.Stats().Foreign, b.Stats().Foreign)
		})
	}
}

// onlyLoopbackInterfaces reports whether the network namespace has no
// interface but loopback, i.e. is the private one runIsolated made.
func onlyLoopbackInterfaces() bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}
