// Package integration holds Vigil's end-to-end tests: they build the real
// vigil binary once (TestMain runs `go build -o TMP/vigil ./cmd/vigil` from
// the module root, with -race when the tests themselves run with -race) and
// run real `vigil server` and `vigil agent` processes, driving the admin
// side through the real CLI (`vigil send`, `vigil agents`, `vigil results`).
// The package has no code of its own besides this comment.
//
// What runs where:
//
//   - TestLoopbackKill and TestForgedDatagramsOnTheWire need no privileges.
//     Every process runs on this host and everything stays on 127.0.0.1 and
//     the loopback interface: the agent API and the admin API listen on
//     127.0.0.1 ports chosen at random, and commands are multicast on lo
//     with TTL 0 to 239.255.81.92 on a random UDP port. The forged-datagram
//     test also sends datagrams itself, with package mcast, on lo with TTL 0.
//
//   - TestNetnsMultiHost runs in a netlab network-namespace lab (it skips
//     without root, ip and nft unless VIGIL_REQUIRE_NETNS=1, which makes it
//     fail instead): a server host and three agent hosts on the lab's
//     bridge. The server multicasts on its lab interface with TTL 1 and
//     serves the agent API on its lab address; its admin API listens on
//     127.0.0.1 inside the server's namespace, and every admin command runs
//     inside that namespace too. Packet loss is injected with nftables inside
//     the agents' namespaces. The test process itself, in the root namespace,
//     never sends a packet: it only starts processes in the namespaces and
//     reads their logs and state directories.
//
//   - The on-access tests (onaccess_test.go: TestOnAccessBlock,
//     TestOnAccessAgentKilled, TestOnAccessSlowFailsOpen) run a real agent
//     as root with on-access scanning on a directory of /dev/shm (a
//     filesystem of its own when it allows programs to run); they skip
//     without root unless VIGIL_REQUIRE_NETNS=1. BenchmarkOnAccess
//     (onaccess_bench_test.go) measures on-access scanning against
//     clamonacc and clamd (docs/benchmarks.md, "On-access scanning").
//
//   - TestConsoleRestoresWithRealAgent drives the console of a real server
//     in headless Chromium (Debian's chromium; it skips without it unless
//     VIGIL_REQUIRE_TOOLS=1): users made with `vigil users add`, a real
//     agent's scan quarantining EICAR, Restore pressed by an operator and
//     the file back on disk, no Restore control for a viewer.
//
//   - Several server instances over PostgreSQL (a throwaway cluster,
//     internal/store/pgtest; they skip without Debian's postgresql unless
//     VIGIL_REQUIRE_TOOLS=1): TestInstancesOverPostgres (four instances,
//     1,000 commands issued at once through all of them: dense, each run
//     once by every agent), TestConsoleFollowsOtherInstance (a browser
//     on one instance's console follows, live, a result another instance
//     received) and TestConsoleSessionAcrossInstances (a login on one
//     instance's console is a login on the other's, as behind a load
//     balancer: pages, a command form, a logout that ends it on both).
//
//   - TestRelayLab (relay_lab_test.go) runs two lab subnets joined by a
//     router namespace (no multicast routing): PostgreSQL, two server
//     instances behind nginx, a LiveUpdate server and two agents on one;
//     vigil relay and three agents on the other (docs/relay.md).
//
// The lab tests (TestNetnsMultiHost, TestRelayLab, TestMITMCannotReplayCommands and the
// two TestFirewallFromPorts tests, which take most of the package's time)
// run in parallel with each other, after the loopback tests: each lab's
// namespaces are its own, so fixed ports inside them (8080, 8081, 8192)
// cannot collide, and each lab's hosts share a runtime directory
// (VIGIL_RUNTIME_DIR) of their own, where a server publishes its settings
// for vigil ports and vigil doctor. The loopback tests share the host's
// loopback interface and run one after the other.
//
// Every test proves the delivery promises from the agents' own journals
// (agent.ExecutedSeqs): each agent started every command targeted at it
// exactly once and none other, across SIGKILLs of agents and of the server.
package integration
