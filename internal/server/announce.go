package server

import (
	"time"

	"github.com/vigil-fleet/vigil/internal/wire"
)

// announce multicasts a stored command envelope (or, when it is larger
// than a datagram, a signed reference to it) Repeat times. Repeats after the
// first are sent in the background so that Issue returns at once.
func (s *Server) announce(envelope []byte) {
	d, err := wire.Announcement(s.key, envelope)
	if err != nil {
		s.log.Error("building announcement", "err", err)
		return
	}
	kind := wire.KindCommand
	if len(d) != len(envelope) {
		kind = wire.KindRef
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

// beacon sends one signed beacon with the latest sequence number; it
// expires after three beacon intervals.
func (s *Server) beacon() {
	now := time.Now()
	body := wire.EncodeBeacon(wire.Beacon{
		IntervalMillis: uint32(s.cfg.BeaconInterval / time.Millisecond),
		SpreadMillis:   uint32(s.cfg.Spread / time.Millisecond),
	})
	// Not while the server moves to a new epoch: no beacon is signed in
	// an epoch it has left.
	s.epochMu.RLock()
	d, err := wire.Sign(s.key, wire.Header{
		Kind: wire.KindBeacon, Epoch: s.Epoch(), Seq: s.latest.Load(), Issued: now,
		Expires: now.Add(3 * s.cfg.BeaconInterval),
	}, body)
	s.epochMu.RUnlock()
	if err != nil {
		s.log.Error("signing beacon", "err", err)
		return
	}
	s.sendDatagram(wire.KindBeacon, d)
}

func (s *Server) beaconLoop() {
	defer s.wg.Done()
	s.beacon()
	t := time.NewTicker(s.cfg.BeaconInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.beacon()
		}
	}
}
