package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// sniff listens on the group like an eavesdropper and keeps the first
// command datagram, to replay it later.
func (d *demo) sniff(ctx context.Context) error {
	r, err := mcast.NewReceiver(mcast.Config{Group: netip.MustParseAddr(group), Port: d.port, Interface: d.ifname})
	if err != nil {
		return err
	}
	d.sniffed = make(chan []byte, 1)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		<-ctx.Done()
		r.Close()
	}()
	go func() {
		defer d.wg.Done()
		defer r.Close()
		buf := make([]byte, 2048)
		for {
			n, _, err := r.Receive(buf)
			if err != nil {
				return
			}
			if e, err := wire.Decode(buf[:n]); err == nil && e.Kind == wire.KindCommand {
				d.sniffed <- append([]byte(nil), buf[:n]...)
				return
			}
		}
	}()
	return nil
}

// forge multicasts a command signed by a key the agents do not pin, and a
// replay of an old datagram, and shows the agents dropping and counting them.
func (d *demo) forge(ctx context.Context) error {
	d.printf("\n# an attacker on the network multicasts a \"ping\" signed by its own key, and replays command #1\n")
	_, evil, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	body, _ := command.Encode(command.Command{Name: "ping", Target: command.Target{All: true}})
	forged, err := wire.Sign(evil, wire.Header{Kind: wire.KindCommand, Epoch: d.srv.Epoch(), Seq: d.srv.LatestSeq() + 1, Issued: now, Expires: now.Add(time.Hour)}, body)
	if err != nil {
		return err
	}
	s, err := mcast.NewSender(mcast.Config{Group: netip.MustParseAddr(group), Port: d.port, Interface: d.ifname, TTL: 0, Loopback: true})
	if err != nil {
		return err
	}
	defer s.Close()
	before := make([][2]uint64, len(d.agents))
	for i, a := range d.agents {
		before[i] = [2]uint64{a.Counters().Get(agent.CountWrongKey), a.Counters().Get(agent.CountOld)}
	}
	var replay []byte
	select {
	case replay = <-d.sniffed:
	case <-time.After(5 * time.Second):
		return errors.New("the sniffer saw no command datagram")
	}
	if err := s.Send(forged); err != nil {
		return err
	}
	if err := s.Send(replay); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	for i, a := range d.agents {
		d.printf("  demo-%d dropped %d datagram(s) signed by another key and %d replayed; executed nothing\n", i+1,
			a.Counters().Get(agent.CountWrongKey)-before[i][0], a.Counters().Get(agent.CountOld)-before[i][1])
	}
	return nil
}
