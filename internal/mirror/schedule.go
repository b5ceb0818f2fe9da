package mirror

import (
	"context"
	"math/rand/v2"
	"time"
)

// Every runs Sync now and then again every interval plus a random delay
// in [0, jitter), so that mirrors started together do not all reach the
// vendor at the same moment, until ctx is done. report is called after
// each sync with its summary and error; a failed sync does not stop the
// schedule. Cancelling ctx interrupts a sync in progress (what it
// downloaded stays for the next run; nothing half-done is published) and
// makes Every return nil.
func (m *Mirror) Every(ctx context.Context, interval, jitter time.Duration, report func(*Summary, error)) error {
	for {
		sum, err := m.Sync(ctx)
		if ctx.Err() != nil {
			if report != nil {
				report(sum, err)
			}
			return nil
		}
		if report != nil {
			report(sum, err)
		}
		wait := interval
		if jitter > 0 {
			wait += rand.N(jitter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// NextDelay is the delay Every waits between syncs, for messages.
func NextDelay(interval, jitter time.Duration) string {
	if jitter <= 0 {
		return interval.String()
	}
	return interval.String() + " + up to " + jitter.String()
}
