package console

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// watches shares the reading of a command's results among the event
// streams that follow it: one goroutine per command followed reads its
// results when the Notifier says results were recorded (and at the
// latest every PollInterval), and every stream following the command
// takes that snapshot. A hundred consoles watching one command cost one
// read per change, not a hundred.
type watches struct {
	c  *Console
	mu sync.Mutex
	m  map[uint64]*watch
}

// watch is one command followed: the latest snapshot of its results.
type watch struct {
	seq    uint64
	refs   int // streams following it; guarded by watches.mu
	cancel context.CancelFunc

	mu      sync.Mutex
	gen     uint64 // snapshots read so far
	rs      []store.Result
	err     error
	changed chan struct{} // closed when the next snapshot is ready
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

// run reads the command's results until the watch is cancelled.
func (ws *watches) run(ctx context.Context, w *watch) {
	tick := time.NewTicker(ws.c.cfg.PollInterval)
	defer tick.Stop()
	for {
		var wake <-chan struct{} // nil without a Notifier: never ready
		if ws.c.cfg.Notifier != nil {
			wake = ws.c.cfg.Notifier.Changed() // before the read: a change after it wakes
		}
		rs, err := ws.c.cfg.Store.Results(ctx, w.seq)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ws.c.log.Error("console: reading a command's results", "seq", w.seq, "err", err)
		}
		w.mu.Lock()
		w.gen++
		w.rs, w.err = rs, err
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
	}
}

// snapshot returns the latest snapshot (gen 0: none yet) and a channel
// closed when the next one is ready. The results are shared: read only.
func (w *watch) snapshot() (gen uint64, rs []store.Result, err error, next <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen, w.rs, w.err, w.changed
}
