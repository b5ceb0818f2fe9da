package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// batcher groups concurrent writes into one store transaction (group
// commit): while one batch is being written, new items queue up and are
// written together next. Each caller returns only after its item is durable.
//
// flush writes a batch. When the store wrote it but refused some of its
// items, flush returns refusals: their callers get errRefused, the
// others nil.
type batcher[T any] struct {
	ch    chan batchReq[T]
	max   int
	flush func([]T) error
	wg    sync.WaitGroup
}

// errRefused is what add returns for an item the store refused in a batch
// it wrote.
var errRefused = errors.New("refused by the store")

// refusals is what a flush returns when the batch was written except the
// items marked true.
type refusals []bool

func (r refusals) Error() string {
	n := 0
	for _, x := range r {
		if x {
			n++
		}
	}
	return fmt.Sprintf("%d of %d items refused by the store", n, len(r))
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
		var rf refusals
		if !errors.As(err, &rf) || len(rf) != len(reqs) {
			rf = nil
		}
		for i, r := range reqs {
			switch {
			case rf == nil:
				r.done <- err
			case rf[i]:
				r.done <- errRefused
			default:
				r.done <- nil
			}
		}
		clear(items) // nothing kept alive until the next batch
	}
}
