package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/wire"
)

type testServer struct {
	priv  ed25519.PrivateKey
	epoch uint64
	now   time.Time
}

func newTestServer(t *testing.T) *testServer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{priv: priv, epoch: 99, now: time.Now()}
}

func (s *testServer) pub() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

func (s *testServer) cmd(t *testing.T, seq uint64, c command.Command) []byte {
	t.Helper()
	body, err := command.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.Sign(s.priv, wire.Header{Kind: wire.KindCommand, Epoch: s.epoch, Seq: seq, Issued: s.now, Expires: s.now.Add(time.Hour)}, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ping(seq uint64) command.Command {
	return command.Command{Name: "ping", Target: command.Target{All: true}}
}

type recJournal struct {
	started []uint64
	results []api.Result
}

func (j *recJournal) Start(seq uint64) error    { j.started = append(j.started, seq); return nil }
func (j *recJournal) Skip(uint64) error         { return nil }
func (j *recJournal) Result(r api.Result) error { j.results = append(j.results, r); return nil }
func (j *recJournal) Acked([]uint64) error      { return nil }

func newTestCore(s *testServer, lastSeq uint64) (*Core, *recJournal, *[]string) {
	j := &recJournal{}
	var ran []string
	c := NewCore(s.pub(), "agent1", []string{"lab"}, s.epoch, lastSeq, j, func(cmd command.Command) (string, string) {
		ran = append(ran, cmd.Name)
		return command.StatusOK, "done"
	})
	c.Now = func() time.Time { return s.now.Add(time.Minute) }
	return c, j, &ran
}

func TestCoreExecutesInOrderOnce(t *testing.T) {
	s := newTestServer(t)
	c, j, _ := newTestCore(s, 10)
	d11, d12, d13 := s.cmd(t, 11, ping(11)), s.cmd(t, 12, ping(12)), s.cmd(t, 13, ping(13))
	for _, d := range [][]byte{d11, d11, d13, d12, d13, d12} {
		c.HandleDatagram(d)
	}
	if got := j.started; len(got) != 3 || got[0] != 11 || got[1] != 12 || got[2] != 13 {
		t.Fatalf("started %v, want [11 12 13]", got)
	}
	if c.Count.Get(CountOld) != 3 {
		t.Fatalf("old = %d, want 3", c.Count.Get(CountOld))
	}
}

func TestCoreDropsBadDatagrams(t *testing.T) {
	s := newTestServer(t)
	other := newTestServer(t)
	other.epoch = s.epoch
	good := s.cmd(t, 6, ping(6))
	tampered := bytes.Clone(good)
	tampered[wire.HeaderSize+2] ^= 1
	// Same key id but signed by another key.
	forged := bytes.Clone(good)
	copy(forged[len(forged)-wire.SigSize:], ed25519.Sign(other.priv, forged[:len(forged)-wire.SigSize]))
	expiredSrv := *s
	expiredSrv.now = s.now.Add(-2 * time.Hour)
	wrongEpoch := *s
	wrongEpoch.epoch = 5

	tests := []struct {
		name    string
		d       []byte
		counter string
	}{
		{"garbage", []byte("hello"), CountMalformed},
		{"tampered", tampered, CountBadSig},
		{"forged signature", forged, CountBadSig},
		{"other key", other.cmd(t, 6, ping(6)), CountWrongKey},
		{"expired", expiredSrv.cmd(t, 6, ping(6)), CountExpired},
		{"replayed", s.cmd(t, 5, ping(5)), CountOld},
		{"wrong epoch", wrongEpoch.cmd(t, 6, ping(6)), CountWrongEpoch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, j, ran := newTestCore(s, 5)
			if _, err := c.HandleDatagram(tt.d); err == nil {
				t.Fatal("datagram accepted")
			}
			if len(j.started) != 0 || len(*ran) != 0 {
				t.Fatal("a bad datagram was executed")
			}
			if c.Count.Get(tt.counter) != 1 {
				t.Fatalf("counter %s = %d, counters %v", tt.counter, c.Count.Get(tt.counter), c.Count.Snapshot())
			}
			if c.LastSeq() != 5 {
				t.Fatalf("last seq moved to %d", c.LastSeq())
			}
		})
	}
}

func TestCoreTargets(t *testing.T) {
	s := newTestServer(t)
	c, j, _ := newTestCore(s, 0)
	cmds := []command.Command{
		{Name: "ping", Target: command.Target{Agents: []string{"agent2"}}},
		{Name: "ping", Target: command.Target{Groups: []string{"office"}}},
		{Name: "ping", Target: command.Target{Groups: []string{"office", "lab"}}},
		{Name: "ping", Target: command.Target{Agents: []string{"agent1"}}},
	}
	for i, cmd := range cmds {
		if _, err := c.HandleDatagram(s.cmd(t, uint64(i+1), cmd)); err != nil {
			t.Fatal(err)
		}
	}
	if got := j.started; len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("started %v, want [3 4]", got)
	}
	if c.LastSeq() != 4 || c.Count.Get(CountNotTargeted) != 2 {
		t.Fatalf("last seq %d, not targeted %d", c.LastSeq(), c.Count.Get(CountNotTargeted))
	}
}

func TestCoreGapFilledOverHTTP(t *testing.T) {
	s := newTestServer(t)
	c, j, _ := newTestCore(s, 0)
	// 1 arrives, 2 and 3 are lost, 4 arrives and waits.
	c.HandleDatagram(s.cmd(t, 1, ping(1)))
	c.HandleDatagram(s.cmd(t, 4, ping(4)))
	after, behind := c.Behind()
	if !behind || after != 1 {
		t.Fatalf("Behind = %d, %v", after, behind)
	}
	// Expired over HTTP: passed over with an "expired" result, not run.
	old := *s
	old.now = s.now.Add(-2 * time.Hour)
	rs, err := c.HandleFetched([][]byte{s.cmd(t, 2, ping(2)), old.cmd(t, 3, ping(3)), s.cmd(t, 4, ping(4))})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[1].Status != command.StatusExpired {
		t.Fatalf("results %+v", rs)
	}
	if got := j.started; len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 4 {
		t.Fatalf("started %v, want [1 2 4]", got)
	}
	if _, behind := c.Behind(); behind {
		t.Fatal("still behind")
	}
	// A beacon with a newer sequence makes the agent behind again.
	bc, _ := wire.Sign(s.priv, wire.Header{Kind: wire.KindBeacon, Epoch: s.epoch, Seq: 9, Issued: s.now, Expires: s.now.Add(time.Hour)}, wire.EncodeBeacon(wire.Beacon{}))
	if _, err := c.HandleDatagram(bc); err != nil {
		t.Fatal(err)
	}
	if after, behind := c.Behind(); !behind || after != 4 {
		t.Fatalf("after beacon: Behind = %d, %v", after, behind)
	}
}

func TestCoreFetchedTampered(t *testing.T) {
	s := newTestServer(t)
	c, j, _ := newTestCore(s, 0)
	bad := s.cmd(t, 1, ping(1))
	bad[30] ^= 1
	if _, err := c.HandleFetched([][]byte{bad}); !errors.Is(err, wire.ErrSignature) {
		t.Fatalf("err = %v", err)
	}
	if len(j.started) != 0 || c.LastSeq() != 0 {
		t.Fatal("tampered fetched command executed")
	}
	// Out of order from the server is refused too.
	if _, err := c.HandleFetched([][]byte{s.cmd(t, 2, ping(2))}); err == nil {
		t.Fatal("fetched command 2 accepted after 0")
	}
}

func TestCoreRefDigest(t *testing.T) {
	s := newTestServer(t)
	c, j, _ := newTestCore(s, 0)
	real := s.cmd(t, 1, ping(1))
	other := s.cmd(t, 1, command.Command{Name: "checkin", Target: command.Target{All: true}})
	d := wire.Digest(real)
	ref, _ := wire.Sign(s.priv, wire.Header{Kind: wire.KindRef, Epoch: s.epoch, Seq: 1, Issued: s.now, Expires: s.now.Add(time.Hour)}, d[:])
	if _, err := c.HandleDatagram(ref); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleFetched([][]byte{other}); err == nil || c.Count.Get(CountRefMismatch) != 1 {
		t.Fatalf("mismatching command accepted: %v", err)
	}
	if _, err := c.HandleFetched([][]byte{real}); err != nil {
		t.Fatal(err)
	}
	if len(j.started) != 1 {
		t.Fatal("referenced command not executed")
	}
}

// TestCoreOldDroppedBeforeVerify: a tampered copy of an already handled
// command is dropped as old, without a signature check.
func TestCoreOldDroppedBeforeVerify(t *testing.T) {
	s := newTestServer(t)
	c, j, _ := newTestCore(s, 0)
	d1 := s.cmd(t, 1, ping(1))
	if _, err := c.HandleDatagram(d1); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(d1)
	bad[len(bad)-1] ^= 1
	if _, err := c.HandleDatagram(bad); !errors.Is(err, errOld) {
		t.Fatalf("err = %v", err)
	}
	if c.Count.Get(CountOld) != 1 || c.Count.Get(CountBadSig) != 0 || len(j.started) != 1 {
		t.Fatalf("counters %v, started %v", c.Count.Snapshot(), j.started)
	}
}
