//go:build linux

package integration

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// capture records every datagram sent to a group on this host.
type capture struct {
	mu   sync.Mutex
	seen [][]byte
}

func startCapture(t *testing.T, port int, ifname string) *capture {
	t.Helper()
	rcv, err := mcast.NewReceiver(mcast.Config{Group: netip.MustParseAddr(testGroup), Port: port, Interface: ifname})
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, _, err := rcv.Receive(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("capture: %v", err)
				}
				return
			}
			c.mu.Lock()
			c.seen = append(c.seen, bytes.Clone(buf[:n]))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		rcv.Close()
		<-done
	})
	return c
}

// command waits for the server's datagram announcing command seq.
func (c *capture) command(t *testing.T, seq uint64) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		for _, b := range c.seen {
			if e, err := wire.Decode(b); err == nil && e.Kind == wire.KindCommand && e.Seq == seq {
				c.mu.Unlock()
				return b
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no datagram for command %d seen on the group", seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForgedDatagramsOnTheWire runs a server and an agent as processes on
// loopback and puts hostile datagrams on the group next to the server's:
// forged (another key, or another key's signature under the server's key
// id), tampered (bytes of a real captured datagram flipped), replayed (a
// real earlier datagram, also after the agent restarts), expired, from
// another epoch, malformed, and aimed at another agent or group (validly
// signed with the server's own key, read from its data directory). None may
// run — the agent's journal shows only the server's commands for it — and
// the agent's drop counters, reported at check-in and shown by
// `vigil agents -json`, must count each by its reason.
func TestForgedDatagramsOnTheWire(t *testing.T) {
	srv := newLoopbackServer(t, "-repeat", "1")
	f := srv.fleet(t)
	m := srv.addAgent(f, "forge-a0", "g1")
	// No check-in of the agent's own during the test (its first one is
	// waited for): the forged datagram aimed at another agent below moves
	// the agent past the server's latest until the server issues that
	// command, and a check-in in between would rightly make the server
	// start a new epoch. The test's own "checkin" command has the agent
	// report its counters.
	setCheckInInterval(t, m, time.Hour)
	capt := startCapture(t, srv.port, srv.ifname)
	snd, err := mcast.NewSender(mcast.Config{Group: netip.MustParseAddr(testGroup), Port: srv.port, Interface: srv.ifname, TTL: 0, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	send := func(what string, b []byte) {
		t.Helper()
		if err := snd.Send(b); err != nil {
			t.Fatalf("sending %s: %v", what, err)
		}
	}

	f.startAgent(m)
	f.learnIDs()

	// A real command, captured on the wire and executed.
	c1 := f.send(command.Target{All: true}, "ping")
	raw1 := capt.command(t, c1.Seq)
	f.waitResults(20 * time.Second)
	// The agent's first check-in (within the spread window of its start)
	// must be behind us too: see setCheckInInterval below.
	waitFirstCheckIn(t, f, m, 20*time.Second)
	e1, err := wire.Decode(raw1)
	if err != nil {
		t.Fatal(err)
	}
	epoch := e1.Epoch

	key, err := server.DataDir{Path: srv.dataDir}.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	next := c1.Seq + 1
	now := time.Now()
	hdr := wire.Header{Kind: wire.KindCommand, Epoch: epoch, Seq: next, Issued: now, Expires: now.Add(time.Hour)}
	ping := mustEncode(t, command.Command{Name: "ping", Target: command.Target{All: true}})
	sign := func(k ed25519.PrivateKey, h wire.Header, body []byte) []byte {
		t.Helper()
		b, err := wire.Sign(k, h, body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 0x01
		return b
	}

	// Forged: signed with another key; a forged beacon announcing a far
	// sequence; another key's signature under the server's key id.
	send("forged command", sign(otherKey, hdr, ping))
	send("forged beacon", sign(otherKey, wire.Header{Kind: wire.KindBeacon, Epoch: epoch, Seq: next + 1000, Issued: now, Expires: now.Add(time.Hour)}, wire.EncodeBeacon(wire.Beacon{IntervalMillis: 500})))
	impostor := sign(otherKey, hdr, ping)
	kid := wire.KeyID(key.Public().(ed25519.PublicKey))
	copy(impostor[6:14], kid[:])
	send("forged command under the server's key id", impostor)
	// Tampered: the real datagram with its sequence number made the next
	// one, and that with one bit flipped in its body and in its signature.
	// (A tampered copy of an old datagram is dropped as old before its
	// signature is checked.)
	renumbered := bytes.Clone(raw1)
	binary.BigEndian.PutUint64(renumbered[22:30], next)
	send("tampered sequence", renumbered)
	send("tampered body", flip(renumbered, wire.HeaderSize+3))
	send("tampered signature", flip(renumbered, len(renumbered)-1))
	// Replayed: the real datagram again, twice.
	send("replay", raw1)
	send("replay", raw1)
	// Signed with the server's own key but expired, or of another epoch.
	send("expired", sign(key, wire.Header{Kind: wire.KindCommand, Epoch: epoch, Seq: next, Issued: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}, ping))
	// Malformed: garbage, and the real datagram cut short.
	send("garbage", []byte("VGL1 not an envelope"))
	send("truncated", raw1[:len(raw1)-1])

	// Aimed at another agent, validly signed at the next sequence; the
	// server then issues that very command (for the same other agent), so
	// the agent's view of the log stays the server's.
	other := "0123456789abcdef"
	if other == m.id {
		other = "fedcba9876543210"
	}
	send("aimed at another agent", sign(key, hdr, mustEncode(t, command.Command{Name: "ping", Target: command.Target{Agents: []string{other}}})))
	time.Sleep(150 * time.Millisecond)
	if c := f.send(command.Target{Agents: []string{other}}, "ping"); c.Seq != next {
		t.Fatalf("server issued %d, want %d", c.Seq, next)
	}
	// Signed with the server's own key, of another epoch: sent only now,
	// since it makes the agent check in at once (to learn of a new
	// epoch), and an agent that had passed over the datagram above before
	// the server issued it would rightly be ahead of the server.
	h2 := hdr
	h2.Epoch = epoch + 1
	send("other epoch", sign(key, h2, ping))
	// Aimed at a group the agent is not in (a real command).
	f.send(command.Target{Groups: []string{"nobody"}}, "ping")
	// And a real command for the agent: it still works, and checks in.
	f.send(command.Target{All: true}, "checkin")
	f.waitResults(30 * time.Second)

	exact := map[string]uint64{
		agent.CountWrongKey:    2,
		agent.CountBadSig:      4,
		agent.CountExpired:     1,
		agent.CountWrongEpoch:  1,
		agent.CountMalformed:   2,
		agent.CountNotTargeted: 2,
		agent.CountExecuted:    2,
	}
	const minOld = 3 // two replays, and the server's copy of the command aimed at another agent
	got := f.waitCounters(30*time.Second, func(_ *member, c map[string]uint64) bool {
		for k, v := range exact {
			if c[k] < v {
				return false
			}
		}
		return c[agent.CountOld] >= minOld
	})[m.name]
	for k, v := range exact {
		if got[k] != v {
			t.Errorf("agent counter %s = %d, want %d (counters %v)", k, got[k], v, got)
		}
	}
	f.logf("agent's counters after the hostile datagrams: %v", got)

	// Replays after a restart: the journal remembers. Meanwhile a command
	// expires before the agent can get it: it is reported, never run.
	rawCheckin := capt.command(t, f.lastSeq())
	f.killAgent(m)
	f.sendWant(command.StatusExpired, "1s", command.Target{All: true}, "ping")
	time.Sleep(1200 * time.Millisecond)
	f.startAgent(m)
	send("replay after restart", raw1)
	send("replay after restart", rawCheckin)
	f.send(command.Target{All: true}, "checkin")
	f.waitResults(30 * time.Second)
	got = f.waitCounters(30*time.Second, func(_ *member, c map[string]uint64) bool {
		return c[agent.CountExecuted] >= 1 && c[agent.CountOld] >= 2
	})[m.name]
	if got[agent.CountExecuted] != 1 {
		t.Errorf("restarted agent executed %d commands, want 1 (counters %v)", got[agent.CountExecuted], got)
	}
	f.logf("restarted agent's counters: %v", got)

	f.stopAgents()
	f.checkJournals()
	seqs, _ := agent.ExecutedSeqs(m.state)
	var mine []uint64
	for _, c := range f.cmds {
		if m.targets(c) && c.want == command.StatusOK {
			mine = append(mine, c.Seq)
		}
	}
	if !slices.Equal(seqs, mine) {
		t.Errorf("agent started %v, want exactly the server's commands for it, %v", seqs, mine)
	}
}

func mustEncode(t *testing.T, c command.Command) []byte {
	t.Helper()
	b, err := command.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// setCheckInInterval rewrites an agent's preference file with interval.
func setCheckInInterval(t *testing.T, m *member, interval time.Duration) {
	t.Helper()
	p, err := prefs.Load(m.plist)
	if err != nil {
		t.Fatal(err)
	}
	p.CheckInInterval = interval
	if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
}

// waitFirstCheckIn waits until the server has had m's first check-in.
func waitFirstCheckIn(t *testing.T, f *fleet, m *member, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, a := range f.agentInfo() {
			if a.ID == m.id && !a.LastCheckIn.IsZero() {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s did not check in within %v", m.name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
