package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// The relay stream (GET /v1/relay/stream?after=N, docs/protocol.md §2.7):
// an enrolled node (a relay, vigil relay) receives every datagram the
// server multicasts, byte for byte, over one long HTTP response, and
// multicasts them on a subnet the server's multicast does not reach. The
// datagrams are signed: a relay can delay or drop them, never forge one.
//
// Each stream is one goroutine (its handler) reading the store: the
// commands after the stream's position, a page at a time, whenever
// commandsChanged says the latest sequence rose (a command this instance
// issued, or another instance's it heard of from the store's events) and
// at every beacon tick; then a beacon signed for it. Issuing never waits
// for a stream: it only wakes them. A stream whose reader does not take a
// batch within relayWriteTimeout is dropped; the relay opens a new one
// after the last sequence it received.

const (
	// relayPage is how many commands a stream reads from the store at
	// once.
	relayPage = 100
	// relayWriteTimeout is how long one batch of frames may take to be
	// written (a slow or gone reader): the stream is dropped after it.
	relayWriteTimeout = 10 * time.Second
	// relayKeepAlive is the longest a stream stays silent: a keep-alive
	// frame is written when nothing else was for that long.
	relayKeepAlive = 15 * time.Second
	// relayAbortGrace is how long a batch being written when its stream
	// ends (the server stops, ...) may still take.
	relayAbortGrace = 250 * time.Millisecond
	// maxRelayStreams bounds the relay streams open at once on an
	// instance (each agent holds at most one).
	maxRelayStreams = 256
)

var (
	errStreamsClosed  = errors.New("the server is stopping")
	errStreamReplaced = errors.New("the agent opened another relay stream")
	errAgentRevoked   = errors.New("the agent was revoked or removed")
)

// relayStreams tracks the open relay streams: at most one per agent (a
// new one ends the one before, which a relay that lost its connection
// without noticing may still hold), at most maxRelayStreams in all, and
// none once the server stops (closeAll ends them and waits).
type relayStreams struct {
	mu      sync.Mutex
	closed  bool
	n       int
	byAgent map[string]*relayStream
	wg      sync.WaitGroup
	// writeTimeout and max are relayWriteTimeout and maxRelayStreams
	// unless a test lowers them before the server serves.
	writeTimeout time.Duration
	max          int
}

type relayStream struct{ cancel context.CancelCauseFunc }

// open registers a stream of agent id, ended by cancel.
func (rs *relayStreams) open(id string, cancel context.CancelCauseFunc) (*relayStream, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil, errStreamsClosed
	}
	old := rs.byAgent[id]
	if max := cmp.Or(rs.max, maxRelayStreams); old == nil && rs.n >= max {
		return nil, fmt.Errorf("too many relay streams open (%d)", max)
	}
	if old != nil {
		old.cancel(errStreamReplaced)
	}
	if rs.byAgent == nil {
		rs.byAgent = make(map[string]*relayStream)
	}
	st := &relayStream{cancel: cancel}
	rs.byAgent[id] = st
	rs.n++
	rs.wg.Add(1)
	return st, nil
}

// done unregisters a stream open returned.
func (rs *relayStreams) done(id string, st *relayStream) {
	rs.mu.Lock()
	if rs.byAgent[id] == st {
		delete(rs.byAgent, id)
	}
	rs.n--
	rs.mu.Unlock()
	rs.wg.Done()
}

// end ends agent id's stream, if it has one, for cause.
func (rs *relayStreams) end(id string, cause error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if st := rs.byAgent[id]; st != nil {
		st.cancel(cause)
	}
}

// agents lists the agents with an open stream.
func (rs *relayStreams) agents() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	ids := make([]string, 0, len(rs.byAgent))
	for id := range rs.byAgent {
		ids = append(ids, id)
	}
	return ids
}

// closeAll ends every stream, refuses new ones, and waits until their
// handlers have returned. It may be called more than once.
func (rs *relayStreams) closeAll() {
	rs.mu.Lock()
	rs.closed = true
	for _, st := range rs.byAgent {
		st.cancel(errStreamsClosed)
	}
	rs.mu.Unlock()
	rs.wg.Wait()
}

// announcement is the datagram the server multicasts for a stored
// command envelope: the envelope itself, or a signed reference to it when
// it is larger than a datagram (wire.Announcement); kind says which.
func (s *Server) announcement(envelope []byte) ([]byte, wire.Kind, error) {
	d, err := wire.Announcement(s.key, envelope)
	if err != nil {
		return nil, 0, err
	}
	if len(d) != len(envelope) {
		return d, wire.KindRef, nil
	}
	return d, wire.KindCommand, nil
}

// handleRelayStream serves GET /v1/relay/stream?after=N: 400 for a bad
// after, 503 while the server stops or when too many streams are open;
// else 200 and, until the server stops, the reader is too slow or gone,
// or the agent opens another stream or is revoked, the frames of the
// datagrams: the announcement of every unexpired stored command after N
// (N beyond the latest sequence counts as the latest), a beacon, then
// each new command as it is stored and a beacon every beacon interval.
func (s *Server) handleRelayStream(w http.ResponseWriter, r *http.Request, id string) {
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "after: want a sequence number")
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	st, err := s.relays.open(id, cancel)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "relay stream: %v", err)
		return
	}
	defer s.relays.done(id, st)
	// Where the stream starts. A position beyond the latest sequence
	// (read again from a shared store) comes from commands the server no
	// longer has (its data directory was restored): the next ones it
	// issues reuse those numbers, and the relay must pass them on (agents
	// judge them, as they judge every datagram), so the stream starts at
	// the latest.
	latest, err := s.refreshLatest(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	cursor := min(after, latest)

	s.m.relayStreams.Inc()
	defer s.m.relayStreams.Dec()
	s.log.Info("relay stream opened", "agent", id, "after", after, "from", cursor, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", api.DatagramStreamType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	// The listener's WriteTimeout would end the stream: each batch sets
	// its own deadline instead (frameWriter). Its ReadTimeout does not
	// (net/http clears the read deadline once the request is read).
	fw := newFrameWriter(ctx, w, cmp.Or(s.relays.writeTimeout, relayWriteTimeout))
	stopAbort := context.AfterFunc(ctx, fw.abort)
	sent, err := s.relayLoop(ctx, fw, cursor)
	if !stopAbort() {
		<-fw.aborted
	}
	if !fw.broken {
		// The end of the body, and whatever the connection serves next,
		// are not bound by the stream's last deadline.
		fw.rc.SetWriteDeadline(time.Time{})
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		err = c
	}
	s.log.Info("relay stream ended", "agent", id, "datagrams", sent, "reason", err)
}

// relayLoop writes the stream's frames until it ends, returning the
// number of datagrams written and why it ended.
func (s *Server) relayLoop(ctx context.Context, fw *frameWriter, cursor uint64) (int, error) {
	beacons := time.NewTicker(s.cfg.BeaconInterval)
	defer beacons.Stop()
	keep := time.NewTicker(relayKeepAlive / 3)
	defer keep.Stop()
	sent, beacon := 0, true // a beacon after the first catch-up
	for {
		changed := s.commandsChanged.Changed()
		n, err := s.relayCommands(ctx, fw, &cursor)
		sent += n
		if err != nil {
			return sent, err
		}
		if beacon || time.Since(fw.last) >= relayKeepAlive {
			var d []byte // a keep-alive, unless a beacon is due
			if beacon {
				if d, err = s.signBeacon(time.Now()); err != nil {
					return sent, fmt.Errorf("signing a beacon: %w", err)
				}
			}
			if err := fw.batch(func() error { return fw.frame(d) }); err != nil {
				return sent, err
			}
			if beacon {
				s.m.relayFrames.WithLabelValues(wire.KindBeacon.String()).Inc()
				sent++
			}
			beacon = false
		}
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case <-changed:
		case <-beacons.C:
			beacon = true
		case <-keep.C:
		}
	}
}

// relayCommands writes the announcements of the unexpired stored
// commands after *cursor, a page per batch, moving *cursor on; it
// returns how many it wrote. An expired command is passed over: every
// agent would drop it.
func (s *Server) relayCommands(ctx context.Context, fw *frameWriter, cursor *uint64) (int, error) {
	sent := 0
	for {
		cs, err := s.store.CommandsAfter(ctx, *cursor, relayPage)
		if err != nil {
			return sent, fmt.Errorf("reading the commands after %d: %w", *cursor, err)
		}
		if len(cs) == 0 {
			return sent, nil
		}
		s.raiseLatest(cs[len(cs)-1].Seq) // another instance's, not heard of yet
		now := time.Now()
		err = fw.batch(func() error {
			for _, c := range cs {
				if !c.Expires.IsZero() && !now.Before(c.Expires) {
					*cursor = c.Seq
					continue
				}
				d, kind, err := s.announcement(c.Envelope)
				if err != nil {
					// Stored by the server, so signed by it: not seen.
					s.log.Error("relay stream: building the announcement of a stored command", "seq", c.Seq, "err", err)
					*cursor = c.Seq
					continue
				}
				if err := fw.frame(d); err != nil {
					return err
				}
				*cursor = c.Seq
				s.m.relayFrames.WithLabelValues(kind.String()).Inc()
				sent++
			}
			return nil
		})
		if err != nil || len(cs) < relayPage {
			return sent, err
		}
	}
}

// frameWriter writes a stream's frames in batches, each bound by a write
// timeout; abort (when the stream's context ends) cuts short a
// batch being written, so that a stream stuck on a slow reader cannot
// hold up the server's stop.
type frameWriter struct {
	ctx context.Context
	w   http.ResponseWriter
	rc  *http.ResponseController
	// timeout bounds the writing of one batch.
	timeout time.Duration

	mu      sync.Mutex
	writing bool // a batch is being written
	// broken is set when a write or flush failed (or was cut short):
	// the connection is of no more use.
	broken  bool
	aborted chan struct{} // closed once abort has run
	last    time.Time     // when the last batch was written
}

func newFrameWriter(ctx context.Context, w http.ResponseWriter, timeout time.Duration) *frameWriter {
	return &frameWriter{
		ctx: ctx, w: w, rc: http.NewResponseController(w), timeout: timeout,
		aborted: make(chan struct{}), last: time.Now(),
	}
}

// batch writes frames with write (calls of frame) and flushes them,
// within the write timeout.
func (f *frameWriter) batch(write func() error) error {
	f.mu.Lock()
	if f.ctx.Err() != nil {
		f.mu.Unlock()
		return context.Cause(f.ctx)
	}
	if err := f.rc.SetWriteDeadline(time.Now().Add(f.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		f.mu.Unlock()
		return fmt.Errorf("setting the write deadline: %w", err)
	}
	f.writing = true
	f.mu.Unlock()
	err := write()
	if err == nil {
		err = f.rc.Flush()
	}
	f.mu.Lock()
	f.writing = false
	if err != nil {
		f.broken = true
		err = fmt.Errorf("writing to the relay: %w", err)
	}
	f.mu.Unlock()
	f.last = time.Now()
	return err
}

// frame writes one frame (an empty d is a keep-alive).
func (f *frameWriter) frame(d []byte) error { return api.WriteFrame(f.w, d) }

// abort gives the batch being written, if any, relayAbortGrace more to
// finish (it may be all but done: its reader may already have it), then
// cuts it short.
func (f *frameWriter) abort() {
	f.mu.Lock()
	if f.writing {
		f.rc.SetWriteDeadline(time.Now().Add(relayAbortGrace))
	}
	f.mu.Unlock()
	close(f.aborted)
}
