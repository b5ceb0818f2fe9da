package server

import (
	"time"

	"github.com/vigil-fleet/vigil/internal/wire"
)

// announce multicasts a stored command envelope (or, when it is larger
// than a datagram, a signed reference to it) Repeat times. Repeats after the
// first are sent in the background so that Issue returns at once.
func (s *Server) announce(envelope []byte) {
	d, kind, err := s.announcement(envelope)
	if err != nil {
		s.log.Error("building announcement", "err", err)
		return
	}
	s.sendDatagram(kind, d)
	if s.cfg.Repeat <= 1 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.RepeatGap)
		defer t.Stop()
		for range s.cfg.Repeat - 1 {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sendDatagram(kind, d)
			}
		}
	}()
}

func (s *Server) sendDatagram(kind wire.Kind, d []byte) {
	s.annMu.Lock()
	err := s.sender.Send(d)
	s.annMu.Unlock()
	if err != nil {
		s.m.sendErrors.Inc()
		s.log.Warn("multicast send failed", "kind", kind, "err", err)
		return
	}
	s.m.datagrams.WithLabelValues(kind.String()).Inc()
}

// signBeacon signs a beacon with the latest sequence number, issued at
// now; it expires after three beacon intervals. The multicast beacon and
// the relay streams' beacons are both signed here.
func (s *Server) signBeacon(now time.Time) ([]byte, error) {
	body := wire.EncodeBeacon(wire.Beacon{
		IntervalMillis: uint32(s.cfg.BeaconInterval / time.Millisecond),
		SpreadMillis:   uint32(s.cfg.Spread / time.Millisecond),
	})
	// Not while the server moves to a new epoch: no beacon is signed in
	// an epoch it has left.
	s.epochMu.RLock()
	defer s.epochMu.RUnlock()
	return wire.Sign(s.key, wire.Header{
		Kind: wire.KindBeacon, Epoch: s.Epoch(), Seq: s.latest.Load(), Issued: now,
		Expires: now.Add(3 * s.cfg.BeaconInterval),
	}, body)
}

// beacon multicasts one signed beacon.
func (s *Server) beacon() {
	d, err := s.signBeacon(time.Now())
	if err != nil {
		s.log.Error("signing beacon", "err", err)
		return
	}
	s.sendDatagram(wire.KindBeacon, d)
}

func (s *Server) beaconLoop() {
	s.beacon()
	s.every(s.cfg.BeaconInterval, s.beacon)
}

// every runs fn every d until the server stops; it is one of the
// server's goroutines (s.wg).
func (s *Server) every(d time.Duration, fn func()) {
	defer s.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			fn()
		}
	}
}
