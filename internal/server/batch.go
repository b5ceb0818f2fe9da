package server

import (
	"context"
	"sync"
)

// batcher groups concurrent writes into one store transaction (group
// commit): while one batch is being written, new items queue up and are
// written together next. Each caller returns only after its item is durable.
type batcher[T any] struct {
	ch    chan batchReq[T]
	max   int
	flush func([]T) error
	wg    sync.WaitGroup
}

type batchReq[T any] struct {
	item T
	done chan error
}

func newBatcher[T any](max int, flush func([]T) error) *batcher[T] {
	b := &batcher[T]{ch: make(chan batchReq[T], max*4), max: max, flush: flush}
	b.wg.Add(1)
	go b.loop()
	return b
}

// doneChans holds the channels on which callers of add were told their
// item was written, for the next callers: a channel goes back only once
// its one answer was received, so none carries a stale answer.
var doneChans = sync.Pool{New: func() any { return make(chan error, 1) }}

// add queues item and waits until it has been written.
func (b *batcher[T]) add(ctx context.Context, item T) error {
	r := batchReq[T]{item: item, done: doneChans.Get().(chan error)}
	select {
	case b.ch <- r:
	case <-ctx.Done():
		doneChans.Put(r.done)
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		doneChans.Put(r.done)
		return err
	case <-ctx.Done():
		// The write may still land; the caller acknowledges nothing.
		return ctx.Err()
	}
}

// close stops the loop after writing everything queued. No add may follow.
func (b *batcher[T]) close() {
	close(b.ch)
	b.wg.Wait()
}

func (b *batcher[T]) loop() {
	defer b.wg.Done()
	reqs := make([]batchReq[T], 0, b.max)
	items := make([]T, 0, b.max)
	for first := range b.ch {
		reqs = append(reqs[:0], first)
	fill:
		for len(reqs) < b.max {
			select {
			case r, ok := <-b.ch:
				if !ok {
					break fill
				}
				reqs = append(reqs, r)
			default:
				break fill
			}
		}
		items = items[:0]
		for _, r := range reqs {
			items = append(items, r.item)
		}
		err := b.flush(items)
		for _, r := range reqs {
			r.done <- err
		}
	}
}
