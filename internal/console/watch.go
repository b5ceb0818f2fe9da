package console

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// watches shares the following of a command among the event streams that
// follow it: one goroutine per command followed reads its results when
// the Notifier says results were recorded (and at the latest every
// PollInterval), tallies them, and encodes each result that changed, and
// the progress when it changed, as Server-Sent Events once; every stream
// following the command writes those bytes. A hundred consoles watching
// one command cost one read, one tally and one encoding per change, not a
// hundred.
type watches struct {
	c  *Console
	mu sync.Mutex
	m  map[uint64]*watch
}

// watch is one command followed: the events of its results so far.
type watch struct {
	seq    uint64
	refs   int // streams following it; guarded by watches.mu
	cancel context.CancelFunc

	mu sync.Mutex
	// results are the encoded "result" events, in the order the results
	// changed; only ever appended to, so a stream may read a prefix of
	// it without the lock.
	results [][]byte
	// progress is the encoded "progress" event of the latest tally, pgen
	// counts its changes (0: no tally yet).
	progress []byte
	pgen     uint64
	changed  chan struct{} // closed when results or progress change
}

// follow returns the watch of command seq, starting it if no stream
// follows it yet, and the function that stops following it (the last
// stream to stop ends the watch's goroutine).
func (ws *watches) follow(seq uint64) (*watch, func()) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = map[uint64]*watch{}
	}
	w := ws.m[seq]
	if w == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w = &watch{seq: seq, cancel: cancel, changed: make(chan struct{})}
		ws.m[seq] = w
		go ws.run(ctx, w)
	}
	w.refs++
	var once sync.Once
	return w, func() {
		once.Do(func() {
			ws.mu.Lock()
			defer ws.mu.Unlock()
			if w.refs--; w.refs == 0 {
				w.cancel()
				delete(ws.m, seq)
			}
		})
	}
}

// run follows the command until the watch is cancelled: it reads the
// agents the command waits for once, then its results at each change.
func (ws *watches) run(ctx context.Context, w *watch) {
	c := ws.c
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	var (
		tg   map[string]string
		sent = map[string]resultEvent{}
		last = progress{Targeted: -1}
	)
	for {
		var wake <-chan struct{} // nil without a Notifier: never ready
		if c.cfg.Notifier != nil {
			wake = c.cfg.Notifier.Changed() // before the read: a change after it wakes
		}
		err := func() error {
			if tg == nil {
				_, _, t, err := c.loadCommand(ctx, w.seq)
				if err != nil {
					return err
				}
				tg = t
			}
			rs, err := c.cfg.Store.Results(ctx, w.seq)
			if err != nil {
				return err
			}
			p, rows := tally(tg, rs)
			var evs [][]byte
			for _, row := range rows {
				ev := resultEvent{Agent: row.AgentID, Hostname: row.Hostname, Status: row.Status, Output: row.Output, Executed: when(row.Executed)}
				if !row.Received.IsZero() {
					ev.Received = row.Received.UTC().Format(time.RFC3339Nano)
				}
				old, ok := sent[row.AgentID]
				if ok && old == ev {
					continue
				}
				sent[row.AgentID] = ev
				if !ok && row.Status == "pending" {
					continue // the page shows every targeted agent pending
				}
				b, err := encodeEvent("result", ev)
				if err != nil {
					return err
				}
				evs = append(evs, b)
			}
			var pb []byte
			if p != last {
				last = p
				if pb, err = encodeEvent("progress", p); err != nil {
					return err
				}
			}
			if len(evs) == 0 && pb == nil {
				return nil
			}
			w.mu.Lock()
			w.results = append(w.results, evs...)
			if pb != nil {
				w.progress, w.pgen = pb, w.pgen+1
			}
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			return nil
		}()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Error("console: following a command", "seq", w.seq, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
	}
}

// since returns the result events after the first n, the progress event
// if its count is past pgen (else nil), the new counts, and a channel
// closed at the next change.
func (w *watch) since(n int, pgen uint64) (results [][]byte, prog []byte, n2 int, pgen2 uint64, next <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pgen > pgen {
		prog = w.progress
	}
	return w.results[n:], prog, len(w.results), w.pgen, w.changed
}

// encodeEvent is one Server-Sent Event of name with v as JSON.
func encodeEvent(name string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "event: %s\ndata: %s\n\n", name, b), nil
}
