package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
)

// eventChannel is the NOTIFY channel of the store's events. The payloads
// are "commands <latest seq>", "results", "epoch" and "agent <id>" (an
// agent revoked or removed), sent by the
// transaction that makes the change, so that they are delivered only if
// it commits.
const eventChannel = "vigil_events"

var _ store.Notifier = (*Store)(nil)

// Reconnection backoff of the events' connection.
const (
	minListenBackoff = 100 * time.Millisecond
	maxListenBackoff = 5 * time.Second
)

// notify queues a NOTIFY in tx, delivered when it commits.
func notify(ctx context.Context, tx pgx.Tx, payload string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify('"+eventChannel+"', $1)", payload)
	return err
}

// Events implements store.Notifier: a connection of its own (outside the
// pool) LISTENs on the store's channel until ctx is done. When it breaks,
// it is opened again after a backoff (100 ms doubling to 5 s) and an
// EventResync follows. An EventEpoch or EventResync is delivered after
// the store's cached epoch has been read again.
func (s *Store) Events(ctx context.Context) <-chan store.Event {
	ch := make(chan store.Event, 64)
	go s.listen(ctx, ch)
	return ch
}

func (s *Store) listen(ctx context.Context, ch chan<- store.Event) {
	defer close(ch)
	backoff := minListenBackoff
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, ch, func() { backoff = minListenBackoff })
		if ctx.Err() != nil {
			return
		}
		s.listenErrs.Add(1)
		if lf := s.listenLog.Load(); lf != nil {
			(*lf)(err, backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxListenBackoff)
	}
}

// listenOnce connects, listens and delivers events until the connection
// fails or ctx is done; connected is called once it listens.
func (s *Store) listenOnce(ctx context.Context, ch chan<- store.Event, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+eventChannel); err != nil {
		return fmt.Errorf("LISTEN %s: %w", eventChannel, err)
	}
	connected()
	// Listening: whatever commits from now on is delivered; what committed
	// before is read again.
	if err := s.refreshEpoch(ctx); err != nil {
		return err
	}
	if !send(ctx, ch, store.Event{Kind: store.EventResync}) {
		return ctx.Err()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for notifications: %w", err)
		}
		ev, ok := parseEvent(n.Payload)
		if !ok {
			continue // not ours
		}
		if ev.Kind == store.EventEpoch {
			if err := s.refreshEpoch(ctx); err != nil {
				return err
			}
		}
		if !send(ctx, ch, ev) {
			return ctx.Err()
		}
	}
}

func send(ctx context.Context, ch chan<- store.Event, ev store.Event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// RefreshEpoch implements store.Notifier.
func (s *Store) RefreshEpoch(ctx context.Context) error {
	if err := s.refreshEpoch(ctx); err != nil {
		return fmt.Errorf("postgres store: %w", err)
	}
	return nil
}

// refreshEpoch reads the epoch again into the store's cache.
func (s *Store) refreshEpoch(ctx context.Context) error {
	st, err := readEpoch(ctx, s.pool)
	if err != nil {
		return fmt.Errorf("reading the epoch: %w", err)
	}
	s.epoch.Store(&st)
	return nil
}

// parseEvent decodes a payload notify sent.
func parseEvent(p string) (store.Event, bool) {
	switch {
	case p == "results":
		return store.Event{Kind: store.EventResults}, true
	case p == "epoch":
		return store.Event{Kind: store.EventEpoch}, true
	case strings.HasPrefix(p, "agent "):
		id := strings.TrimPrefix(p, "agent ")
		if id == "" {
			return store.Event{}, false
		}
		return store.Event{Kind: store.EventAgent, Agent: id}, true
	case strings.HasPrefix(p, "commands "):
		seq, err := strconv.ParseUint(strings.TrimPrefix(p, "commands "), 10, 64)
		if err != nil {
			return store.Event{}, false
		}
		return store.Event{Kind: store.EventCommands, Seq: seq}, true
	}
	return store.Event{}, false
}

// SetListenLog sets the function told each time the events' connection
// fails, with the error and the wait before it is opened again.
func (s *Store) SetListenLog(f func(err error, retryIn time.Duration)) { s.listenLog.Store(&f) }
