package mcast

import (
	"encoding/binary"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFanout1000 measures how long one datagram takes to reach 1,000
// receivers, each with its own socket, sharing one group and port on the
// loopback interface: one op is one Send plus the wait until every receiver
// has returned it from Receive.
func BenchmarkFanout1000(b *testing.B) {
	const receivers = 1000
	raiseNoFile(b, 2*receivers+64)
	cfg := loConfig(b, false, 10)

	start := time.Now()
	rs := make([]*Receiver, receivers)
	for i := range rs {
		rs[i] = newReceiver(b, cfg)
	}
	setup := time.Since(start)
	s := newSender(b, cfg)

	var (
		seq       atomic.Uint64 // sequence number of the datagram in flight
		remaining atomic.Int64  // receivers still to get it
		wrong     atomic.Int64  // datagrams with another sequence number
		done      = make(chan struct{}, 1)
	)
	for _, r := range rs {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, _, err := r.Receive(buf)
				if err != nil {
					return
				}
				if n < 8 || binary.BigEndian.Uint64(buf) != seq.Load() {
					wrong.Add(1)
					continue
				}
				if remaining.Add(-1) == 0 {
					done <- struct{}{}
				}
			}
		}()
	}

	payload := make([]byte, 512) // about a signed command envelope
	ops := 0
	for b.Loop() {
		ops++
		binary.BigEndian.PutUint64(payload, seq.Add(1))
		remaining.Store(receivers)
		if err := s.Send(payload); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("datagram %d reached %d of %d receivers in 10s", seq.Load(), receivers-remaining.Load(), receivers)
		}
	}
	if n := wrong.Load(); n > 0 {
		b.Fatalf("%d datagrams arrived out of turn", n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops)/receivers, "ns/delivery")
	b.ReportMetric(float64(setup.Milliseconds()), "ms-setup")
}

// raiseNoFile makes sure the process may open n files, raising the soft
// limit towards the hard one (and the hard one, if privileged) or skipping.
func raiseNoFile(b *testing.B, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	want := lim
	want.Cur = n
	if want.Max < n {
		want.Max = n
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		b.Skipf("need %d open files, limit is %d (hard %d): %v", n, lim.Cur, lim.Max, err)
	}
}
