package console

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

// BenchmarkSessionLookup measures what a request's session costs the
// console over a SQLite store holding 10,000 sessions (the default
// bound): a lookup (every request; its use recorded at most once a
// minute) and a lookup that records the use (a write, once a minute per
// session).
func BenchmarkSessionLookup(b *testing.B) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "vigil.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ctx := context.Background()
	ss := newSessions(st, DefaultMaxSessions, DefaultIdleTimeout, DefaultMaxSessionAge)
	now := time.Now()
	p := auth.Principal{User: "olga", Role: auth.Operator, Via: auth.ViaPassword}
	var last session
	for range DefaultMaxSessions {
		if last, err = ss.add(ctx, p, "127.0.0.1", now); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("lookup", func(b *testing.B) {
		for b.Loop() {
			if _, err := ss.get(ctx, last.id, now, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lookup-and-touch", func(b *testing.B) {
		// Long expiries: the loop moves the clock a minute a lookup.
		const year = 365 * 24 * time.Hour
		ss := newSessions(st, DefaultMaxSessions, 10*year, 100*year)
		at := now
		for b.Loop() {
			at = at.Add(ss.touchEvery)
			s, err := ss.get(ctx, last.id, at, true)
			if err != nil || !s.last.Equal(at) {
				b.Fatalf("%v, last use %v, want %v", err, s.last, at)
			}
		}
	})
}
