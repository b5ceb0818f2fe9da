package auth

import (
	"sync"
	"time"
)

// ThrottleConfig shapes the throttling of failed logins.
type ThrottleConfig struct {
	// Free is how many failures in a row a user name, or an address,
	// has before it is slowed down.
	Free int
	// Base is the wait after the first failure beyond Free; each further
	// failure doubles it, up to Max.
	Base, Max time.Duration
	// Forget is how long after its last failure a name or an address
	// starts afresh.
	Forget time.Duration
	// Entries bounds the names and the addresses remembered (each); when
	// full, the one whose last failure is oldest is forgotten first.
	Entries int
}

// DefaultThrottle: five free failures, then 1 s, 2 s, 4 s … up to 15
// minutes; forgotten an hour after the last failure; 10,000 names and
// 10,000 addresses remembered (about 1 MB).
var DefaultThrottle = ThrottleConfig{Free: 5, Base: time.Second, Max: 15 * time.Minute, Forget: time.Hour, Entries: 10000}

// Throttle slows down repeated failed logins per user name and per client
// address: after Free failures, each key must wait an exponentially
// growing delay before its next attempt is even checked. It keeps its
// state in memory (see docs/operations.md): a restart forgets it. It is
// safe for concurrent use.
type Throttle struct {
	cfg   ThrottleConfig
	mu    sync.Mutex
	users map[string]*strike
	addrs map[string]*strike
}

type strike struct {
	fails int       // failures in a row
	last  time.Time // the last one
	until time.Time // no attempt before
}

// NewThrottle returns a Throttle; zero fields of cfg take DefaultThrottle's.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	d := DefaultThrottle
	if cfg.Free <= 0 {
		cfg.Free = d.Free
	}
	if cfg.Base <= 0 {
		cfg.Base = d.Base
	}
	if cfg.Max <= 0 {
		cfg.Max = d.Max
	}
	if cfg.Forget <= 0 {
		cfg.Forget = d.Forget
	}
	if cfg.Entries <= 0 {
		cfg.Entries = d.Entries
	}
	return &Throttle{cfg: cfg, users: map[string]*strike{}, addrs: map[string]*strike{}}
}

// Wait says how long user, from addr, must still wait before an attempt
// is checked (0: now). Either key may be "" (not throttled on it).
func (t *Throttle) Wait(user, addr string) time.Duration {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var w time.Duration
	for _, k := range []struct {
		m   map[string]*strike
		key string
	}{{t.users, user}, {t.addrs, addr}} {
		if s := k.m[k.key]; k.key != "" && s != nil {
			w = max(w, s.until.Sub(now))
		}
	}
	return w
}

// Fail records a failed attempt of user from addr.
func (t *Throttle) Fail(user, addr string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fail(t.users, user, now)
	t.fail(t.addrs, addr, now)
}

func (t *Throttle) fail(m map[string]*strike, key string, now time.Time) {
	if key == "" {
		return
	}
	s := m[key]
	if s != nil && now.Sub(s.last) >= t.cfg.Forget {
		s = nil
		delete(m, key)
	}
	if s == nil {
		if len(m) >= t.cfg.Entries {
			t.evict(m, now)
		}
		s = &strike{}
		m[key] = s
	}
	s.fails++
	s.last = now
	if n := s.fails - t.cfg.Free; n > 0 {
		d := t.cfg.Max
		if n <= 30 && t.cfg.Base<<(n-1) < t.cfg.Max {
			d = t.cfg.Base << (n - 1)
		}
		s.until = now.Add(d)
	}
}

// evict makes room in a full map: the forgotten entries go, or else the
// one whose last failure is oldest.
func (t *Throttle) evict(m map[string]*strike, now time.Time) {
	var oldest string
	var at time.Time
	for k, s := range m {
		if now.Sub(s.last) >= t.cfg.Forget {
			delete(m, k)
			continue
		}
		if oldest == "" || s.last.Before(at) {
			oldest, at = k, s.last
		}
	}
	if len(m) >= t.cfg.Entries {
		delete(m, oldest)
	}
}

// Succeed records a successful login of user: the name starts afresh.
// The address does not (one good account must not clear an address that
// guesses at others).
func (t *Throttle) Succeed(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.users, user)
}

// Len is how many names and addresses are remembered.
func (t *Throttle) Len() (users, addrs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.users), len(t.addrs)
}
