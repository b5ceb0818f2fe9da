package onaccess

import (
	"log/slog"
	"sync"
	"time"
)

// rateLog logs one kind of event at most once per interval: the first at
// once, the others as a count with the next line (or at flush).
type rateLog struct {
	log      *slog.Logger
	msg      string
	interval time.Duration

	mu      sync.Mutex
	last    time.Time // of the last line
	count   int       // events since it
	lastArg []any     // the latest event's attributes
}

func (l *rateLog) event(args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	l.lastArg = args
	if now := time.Now(); l.last.IsZero() || now.Sub(l.last) >= l.interval {
		l.emitLocked(now)
	}
}

func (l *rateLog) emitLocked(now time.Time) {
	l.log.Warn(l.msg, append([]any{"count", l.count, "interval", l.interval.String()}, l.lastArg...)...)
	l.last, l.count, l.lastArg = now, 0, nil
}

// flush logs the events not logged yet.
func (l *rateLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count > 0 {
		l.emitLocked(time.Now())
	}
}
