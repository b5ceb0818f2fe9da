package mcast

// The tests use real sockets, but only ever on the loopback interface and
// with TTL / hop limit 0, so no datagram can leave the host. On Linux they
// go further and run in a private network namespace that holds nothing but
// its own loopback interface (see runIsolated). No test uses
// Interface: "", which would join groups on, and send to, the default
// interface.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

func TestMain(m *testing.M) {
	if code, handled := runIsolated(); handled {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// requireIsolation reports whether VIGIL_REQUIRE_NETNS=1 demands that the
// tests run in a private network namespace with working loopback multicast,
// turning every skip for want of one into a failure.
func requireIsolation() bool { return testenv.Required(testenv.RequireNetns) }

// run runs a command, folding its output into the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	if msg := strings.TrimSpace(string(out)); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
}

type family struct {
	name string
	v6   bool
}

var families = []family{{"IPv4", false}, {"IPv6", true}}

// testGroup returns test group i: 239.255.81.i or ff11::8192:i
// (interface-local scope, which is what works on lo; see the package doc).
func testGroup(v6 bool, i int) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("ff11::8192:%x", i))
	}
	return netip.AddrFrom4([4]byte{239, 255, 81, byte(i)})
}

// probeGroup is the group index the readiness probe uses.
const probeGroup = 250

type loopbackState struct {
	once    sync.Once
	name    string
	applied []string
	err     error
}

var loopbackReady [2]loopbackState

// needLoopback returns the loopback interface's name once multicast of the
// family works on it, applying loopbackFixes if needed, or skips tb (fails
// it under VIGIL_REQUIRE_NETNS=1) if it cannot be made to work.
func needLoopback(tb testing.TB, v6 bool) string {
	tb.Helper()
	st, fam := &loopbackReady[0], "IPv4"
	if v6 {
		st, fam = &loopbackReady[1], "IPv6"
	}
	st.once.Do(func() {
		st.name, st.applied, st.err = prepareLoopback(v6)
		if len(st.applied) > 0 {
			tb.Logf("%s multicast on %s needed: %s", fam, st.name, strings.Join(st.applied, "; "))
		}
	})
	if st.err != nil {
		msg := fmt.Sprintf("%s multicast on the loopback interface does not work: %v", fam, st.err)
		if requireIsolation() {
			tb.Fatal(msg)
		}
		tb.Skip(msg + " (fixing it needs root; set VIGIL_REQUIRE_NETNS=1 to fail instead of skipping)")
	}
	return st.name
}

func prepareLoopback(v6 bool) (lo string, applied []string, err error) {
	lo, err = testenv.LoopbackName()
	if err != nil {
		return "", nil, err
	}
	perr := probe(lo, v6)
	if perr == nil {
		return lo, nil, nil
	}
	problems := []string{perr.Error()}
	for _, fix := range loopbackFixes(lo, v6) {
		if err := run(fix[0], fix[1:]...); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		applied = append(applied, strings.Join(fix, " "))
		if perr = probe(lo, v6); perr == nil {
			return lo, applied, nil
		}
		problems = append(problems, "after "+strings.Join(fix, " ")+": "+perr.Error())
	}
	return lo, applied, errors.New(strings.Join(problems, "; "))
}

// probe checks that a datagram sent with TTL 0 on the interface reaches a
// receiver joined there.
func probe(ifname string, v6 bool) error {
	port, err := unusedPort()
	if err != nil {
		return err
	}
	cfg := Config{Group: testGroup(v6, probeGroup), Port: port, Interface: ifname, TTL: 0, Loopback: true}
	r, err := NewReceiver(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := NewSender(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	got := make(chan error, 1)
	go func() {
		_, _, err := r.Receive(make([]byte, 64))
		got <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Second)
	for {
		if err := s.Send([]byte("probe")); err != nil {
			return err
		}
		select {
		case err := <-got:
			return err
		case <-tick.C:
		case <-deadline:
			return errors.New("probe datagram not received within 2s")
		}
	}
}

// unusedPort returns a UDP port no socket was bound to a moment ago.
func unusedPort() (int, error) {
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port, nil
}

// loConfig returns a config for test group i on the loopback interface with
// TTL 0 and an unused port.
func loConfig(tb testing.TB, v6 bool, i int) Config {
	tb.Helper()
	lo := needLoopback(tb, v6)
	port, err := unusedPort()
	if err != nil {
		tb.Fatal(err)
	}
	return Config{Group: testGroup(v6, i), Port: port, Interface: lo, TTL: 0, Loopback: true}
}

func newReceiver(tb testing.TB, cfg Config) *Receiver {
	tb.Helper()
	r, err := NewReceiver(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func newSender(tb testing.TB, cfg Config) *Sender {
	tb.Helper()
	if cfg.TTL != 0 || cfg.Interface == "" {
		tb.Fatalf("refusing to send with TTL %d on interface %q: tests use the loopback interface and TTL 0", cfg.TTL, cfg.Interface)
	}
	s, err := NewSender(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func send(tb testing.TB, s *Sender, payloads ...string) {
	tb.Helper()
	for _, p := range payloads {
		if err := s.Send([]byte(p)); err != nil {
			tb.Fatal(err)
		}
	}
}

type datagram struct {
	data string
	src  netip.AddrPort
	err  error
}

// readAsync reads n datagrams from r in a goroutine, stopping at the first
// error. Closing r (the test cleanup does) ends the goroutine early.
func readAsync(r *Receiver, n, bufSize int) <-chan datagram {
	ch := make(chan datagram, n)
	go func() {
		buf := make([]byte, bufSize)
		for range n {
			k, src, err := r.Receive(buf)
			ch <- datagram{string(buf[:k]), src, err}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// await collects n datagrams from ch, failing tb on a receive error or when
// deadline passes first.
func await(tb testing.TB, ch <-chan datagram, n int, deadline <-chan time.Time) []datagram {
	tb.Helper()
	var got []datagram
	for len(got) < n {
		select {
		case d := <-ch:
			if d.err != nil {
				tb.Fatalf("Receive after %d datagrams: %v", len(got), d.err)
			}
			got = append(got, d)
		case <-deadline:
			tb.Fatalf("timed out with %d of %d datagrams", len(got), n)
		}
	}
	return got
}

func receive(tb testing.TB, r *Receiver, n int) []datagram {
	tb.Helper()
	return await(tb, readAsync(r, n, 65535), n, time.After(5*time.Second))
}

func payloads(ds []datagram) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.data)
	}
	return out
}

func TestSendReceive(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			cfg := loConfig(t, f.v6, 1)
			r := newReceiver(t, cfg)
			s := newSender(t, cfg)
			want := []string{"first", "second", strings.Repeat("x", 1200)}
			send(t, s, want...)
			got := receive(t, r, len(want))
			if g := payloads(got); !slices.Equal(g, want) {
				t.Fatalf("received %q, want %q", g, want)
			}
			for _, d := range got {
				if !d.src.IsValid() || d.src.Port() == 0 || d.src.Addr().Is6() != f.v6 {
					t.Errorf("source %v is not a %s address with a port", d.src, f.name)
				}
			}
			wantStats := Stats{Received: uint64(len(want)), KernelDropsCounted: runtime.GOOS == "linux"}
			if st := r.Stats(); st != wantStats {
				t.Errorf("Stats() = %+v, want %+v", st, wantStats)
			}
		})
	}
}

// TestGroupsShareAPort is why net.ListenMulticastUDP is not used: two
// receivers on one port, each joined to a different group, must each see
// only their own group's datagrams.
func TestGroupsShareAPort(t *testing.T) {
	for _, f := range families {
		for _, kernel := range []bool{true, false} {
			name := f.name + "/destination-check"
			if kernel {
				name = f.name + "/kernel-filter"
			}
			t.Run(name, func(t *testing.T) {
				testGroupsShareAPort(t, f.v6, kernel)
			})
		}
	}
}

func testGroupsShareAPort(t *testing.T, v6, kernel bool) {
	saved := kernelGroupFilter
	kernelGroupFilter = kernel
	t.Cleanup(func() { kernelGroupFilter = saved })

	cfgA := loConfig(t, v6, 2)
	cfgB := cfgA
	cfgB.Group = testGroup(v6, 3)
	a, b := newReceiver(t, cfgA), newReceiver(t, cfgB)
	toA, toB := newSender(t, cfgA), newSender(t, cfgB)

	// B's datagram is queued on every socket the kernel hands it to before
	// B can read it, so once B has it, A has either dropped it or holds it
	// ahead of "A1".
	send(t, toB, "B1")
	if got := payloads(receive(t, b, 1)); got[0] != "B1" {
		t.Fatalf("B received %q, want B1", got[0])
	}
	send(t, toA, "A1")
	if got := payloads(receive(t, a, 1)); got[0] != "A1" {
		t.Fatalf("A received %q, want A1", got[0])
	}
	send(t, toB, "B2")
	if got := payloads(receive(t, b, 1)); got[0] != "B2" {
		t.Fatalf("B received %q, want B2", got[0])
	}

	// Linux delivers other groups' datagrams unless IP_MULTICAST_ALL is off;
	// then the destination check drops each one. BSD kernels never do.
	var want uint64
	if runtime.GOOS == "linux" && !kernel {
		want = 1
	}
	if a.Stats().Foreign != want || b.Stats().Foreign != want {
		t.Errorf("Stats().Foreign = %d (A), %d (B), want %d", a.Stats().Foreign, b.Stats().Foreign, want)
	}
	if a.Stats().Unicast != 0 || b.Stats().Unicast != 0 {
		t.Errorf("Stats().Unicast = %d (A), %d (B), want 0", a.Stats().Unicast, b.Stats().Unicast)
	}
}

func TestManyReceivers(t *testing.T) {
	const receivers = 200
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			cfg := loConfig(t, f.v6, 4)
			want := []string{"one", "two", "three"}
			chans := make([]<-chan datagram, receivers)
			for i := range chans {
				chans[i] = readAsync(newReceiver(t, cfg), len(want), 1500)
			}
			send(t, newSender(t, cfg), want...)
			deadline := time.After(10 * time.Second)
			for i, ch := range chans {
				if got := payloads(await(t, ch, len(want), deadline)); !slices.Equal(got, want) {
					t.Fatalf("receiver %d got %q, want %q", i, got, want)
				}
			}
		})
	}
}

// TestUnicastCounted sends unicast datagrams, one of them larger than the
// buffer, to the receiver's port on the loopback address: they reach the
// wildcard-bound socket but must not be returned, and are counted as
// Unicast, not Foreign or Truncated.
func TestUnicastCounted(t *testing.T) {
	t.Parallel()
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			cfg := loConfig(t, f.v6, 5)
			r := newReceiver(t, cfg)
			s := newSender(t, cfg)
			local := netip.MustParseAddr("127.0.0.1")
			if f.v6 {
				local = netip.IPv6Loopback()
			}
			uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, uint16(cfg.Port))))
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			unicast := []string{"unicast", strings.Repeat("u", 3000), "unicast again"}
			for _, p := range unicast {
				if _, err := uc.Write([]byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			// The unicast datagrams were sent first but from another
			// socket; keep sending multicast until all have been seen
			// (counted, whichever count).
			seen := func() uint64 { st := r.Stats(); return st.Unicast + st.Foreign + st.Truncated }
			deadline := time.Now().Add(5 * time.Second)
			for seen() < uint64(len(unicast)) && time.Now().Before(deadline) {
				send(t, s, "multicast")
				if got := await(t, readAsync(r, 1, 1500), 1, time.After(5*time.Second))[0].data; got != "multicast" {
					t.Fatalf("received %q, want multicast", got)
				}
			}
			st := r.Stats()
			if st.Unicast != uint64(len(unicast)) || st.Foreign != 0 || st.Truncated != 0 || st.KernelDrops != 0 {
				t.Fatalf("Stats() = %+v, want Unicast %d and no Foreign, Truncated or KernelDrops", st, len(unicast))
			}
		})
	}
}

func TestTruncatedDropped(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			cfg := loConfig(t, f.v6, 6)
			r := newReceiver(t, cfg)
			s := newSender(t, cfg)
			send(t, s, strings.Repeat("long", 100), "short")
			got := await(t, readAsync(r, 1, 16), 1, time.After(5*time.Second))
			if got[0].data != "short" {
				t.Fatalf("received %q, want short", got[0].data)
			}
			st := r.Stats()
			if st.Truncated != 1 || st.Foreign != 0 || st.Unicast != 0 || st.Received != 1 {
				t.Fatalf("Stats() = %+v, want Truncated 1, Received 1", st)
			}
		})
	}
}

// accountFor starts reading r (with a buffer of bufSize) after sent
// datagrams were sent to it through s, and sends small marker datagrams
// until every datagram sent is accounted for in r's Stats: returned,
// skipped, or dropped by the kernel, whose count of drops arrives with the
// next datagram it queues. A marker can itself be dropped while the receive
// buffer is still full, so another is sent whenever nothing has arrived for
// 50 ms. It returns the final Stats, the datagrams returned and the number
// of markers sent.
func accountFor(t *testing.T, r *Receiver, s *Sender, sent, bufSize int) (Stats, []string, int) {
	t.Helper()
	got := make(chan datagram, 1024)
	go func() {
		buf := make([]byte, bufSize)
		for {
			n, _, err := r.Receive(buf)
			got <- datagram{data: string(buf[:n]), err: err}
			if err != nil {
				return
			}
		}
	}()
	var returned []string
	markers := 0
	sendMarker := func() {
		markers++
		send(t, s, fmt.Sprintf("marker %d", markers))
	}
	deadline := time.After(10 * time.Second)
	quiet := time.NewTicker(50 * time.Millisecond)
	defer quiet.Stop()
	idle := true
	sendMarker()
	for {
		select {
		case d := <-got:
			if d.err != nil {
				t.Fatalf("Receive: %v", d.err)
			}
			returned = append(returned, d.data)
			idle = false
		case <-quiet.C:
			if idle {
				sendMarker()
			}
			idle = true
		case <-deadline:
			t.Fatalf("after 10s, %d sent and %d markers; Stats() = %+v", sent, markers, r.Stats())
		}
		// Received counts a datagram before Receive hands it over.
		st := r.Stats()
		if st.Received == uint64(len(returned)) &&
			st.Received+st.Unicast+st.Foreign+st.Truncated+st.KernelDrops == uint64(sent+markers) {
			return st, returned, markers
		}
	}
}

// TestKernelDropsCounted floods a receiver whose receive buffer is small
// and which is not reading: the kernel drops most datagrams, and
// Stats().KernelDrops must say how many, so that every datagram sent is
// either returned or counted as dropped.
func TestKernelDropsCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux reports a socket's drops (SO_RXQ_OVFL); see the package documentation")
	}
	t.Parallel()
	const flood = 2000
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			cfg := loConfig(t, f.v6, 10)
			r := newReceiver(t, cfg)
			if err := r.conn.SetReadBuffer(4096); err != nil {
				t.Fatal(err)
			}
			s := newSender(t, cfg)
			for i := range flood {
				send(t, s, fmt.Sprintf("flood %d %s", i, strings.Repeat("x", 200)))
			}
			st, returned, markers := accountFor(t, r, s, flood, 65535)
			t.Logf("%d sent, %d markers: %+v", flood, markers, st)
			if !st.KernelDropsCounted || st.KernelDrops == 0 {
				t.Fatalf("Stats() = %+v: the flood overflowed a 4 KB buffer, yet no kernel drops", st)
			}
			if st.Unicast+st.Foreign+st.Truncated != 0 || st.Received != uint64(len(returned)) {
				t.Fatalf("Stats() = %+v with %d datagrams returned", st, len(returned))
			}
			if st.Received+st.KernelDrops != uint64(flood+markers) {
				t.Fatalf("Received %d + KernelDrops %d != %d sent", st.Received, st.KernelDrops, flood+markers)
			}
		})
	}
}

// TestOversizedFloodCounted sends a burst of datagrams larger than the
// receiver's buffer (as an agent's 2 KB buffer meets 9 KB datagrams):
// those the socket reads are Truncated, those that overflow its receive
// buffer are KernelDrops, and together they are all that was sent.
func TestOversizedFloodCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux reports a socket's drops (SO_RXQ_OVFL); see the package documentation")
	}
	t.Parallel()
	const flood = 300
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			cfg := loConfig(t, f.v6, 11)
			r := newReceiver(t, cfg)
			if err := r.conn.SetReadBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
			s := newSender(t, cfg)
			big := strings.Repeat("9", 9000)
			for range flood {
				send(t, s, big)
			}
			st, returned, markers := accountFor(t, r, s, flood, 2048)
			t.Logf("%d sent, %d markers: %+v", flood, markers, st)
			for _, d := range returned {
				if !strings.HasPrefix(d, "marker ") {
					t.Fatalf("Receive returned a %d-byte datagram from the flood", len(d))
				}
			}
			if st.Truncated == 0 || st.KernelDrops == 0 || st.Unicast+st.Foreign != 0 {
				t.Fatalf("Stats() = %+v, want both Truncated and KernelDrops", st)
			}
			if st.Received+st.Truncated+st.KernelDrops != uint64(flood+markers) {
				t.Fatalf("Received %d + Truncated %d + KernelDrops %d != %d sent", st.Received, st.Truncated, st.KernelDrops, flood+markers)
			}
		})
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			cfg := loConfig(t, f.v6, 7)
			r, err := NewReceiver(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ch := readAsync(r, 1, 1500)
			time.Sleep(50 * time.Millisecond) // let Receive block
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case d := <-ch:
				if d.err != net.ErrClosed {
					t.Fatalf("Receive returned %q, %v; want net.ErrClosed", d.data, d.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Receive still blocked 5s after Close")
			}
			if _, _, err := r.Receive(make([]byte, 10)); err != net.ErrClosed {
				t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
			}
			if err := r.Close(); err != net.ErrClosed {
				t.Errorf("second Close: %v, want net.ErrClosed", err)
			}

			s, err := NewSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Sender.Close: %v", err)
			}
			if err := s.Send([]byte("late")); err != net.ErrClosed {
				t.Errorf("Send after Close: %v, want net.ErrClosed", err)
			}
			if err := s.Close(); err != net.ErrClosed {
				t.Errorf("second Sender.Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	g4 := testGroup(false, 8)
	g6 := testGroup(true, 8)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no group", Config{Port: 8192}, "group not set"},
		{"IPv4 unicast group", Config{Group: netip.MustParseAddr("10.0.0.1"), Port: 8192}, "10.0.0.1 is not a multicast address"},
		{"IPv4 broadcast group", Config{Group: netip.MustParseAddr("255.255.255.255"), Port: 8192}, "is not a multicast address"},
		{"IPv6 unicast group", Config{Group: netip.MustParseAddr("2001:db8::1"), Port: 8192}, "2001:db8::1 is not a multicast address"},
		{"IPv6 loopback group", Config{Group: netip.IPv6Loopback(), Port: 8192}, "is not a multicast address"},
		{"zoned group", Config{Group: netip.MustParseAddr("ff02::8192%lo"), Port: 8192}, "has a zone"},
		{"port 0", Config{Group: g4, Port: 0}, "port 0 out of range 1-65535"},
		{"negative port", Config{Group: g6, Port: -1}, "port -1 out of range"},
		{"port 65536", Config{Group: g4, Port: 65536}, "port 65536 out of range"},
		{"negative TTL", Config{Group: g4, Port: 8192, TTL: -1}, "TTL -1 out of range 0-255"},
		{"TTL 256", Config{Group: g6, Port: 8192, TTL: 256}, "TTL 256 out of range 0-255"},
		{"unknown interface", Config{Group: g4, Port: 8192, Interface: "vigil-nosuch0"}, `interface "vigil-nosuch0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, serr := NewSender(tt.cfg)
			r, rerr := NewReceiver(tt.cfg)
			for _, c := range []struct {
				what string
				ok   bool
				err  error
			}{{"NewSender", s != nil, serr}, {"NewReceiver", r != nil, rerr}} {
				if c.ok || !errors.Is(c.err, ErrInvalidConfig) || !strings.Contains(c.err.Error(), tt.want) {
					t.Errorf("%s(%+v) = %v; want ErrInvalidConfig containing %q", c.what, tt.cfg, c.err, tt.want)
				}
			}
		})
	}
}

// TestConfigAccepted checks the boundary values that must pass validation,
// using the sender only: creating it configures a socket but sends nothing.
func TestConfigAccepted(t *testing.T) {
	lo := needLoopback(t, false)
	for _, cfg := range []Config{
		{Group: testGroup(false, 9), Port: 1, Interface: lo, TTL: 255},
		{Group: testGroup(false, 9), Port: 65535, Interface: lo},
		{Group: netip.MustParseAddr("::ffff:239.255.81.9"), Port: 8192, Interface: lo},
	} {
		s, err := NewSender(cfg)
		if err != nil {
			t.Errorf("NewSender(%+v): %v", cfg, err)
			continue
		}
		if !s.dst.Addr().Is4() {
			t.Errorf("NewSender(%+v) sends to %v, want an IPv4 address", cfg, s.dst)
		}
		s.Close()
	}
}
