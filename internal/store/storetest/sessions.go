package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// session returns a session whose id is name, created and last used at.
func session(name string, at time.Time) store.Session {
	h := sha256.Sum256([]byte(name))
	return store.Session{
		IDHash: h[:], CSRF: "csrf-" + name, User: "user-" + name, Role: "operator", Via: "password",
		Addr: "192.0.2.7", Created: at, LastUsed: at,
	}
}

func sessionDiff(want, got store.Session) string {
	var d diff
	if !bytes.Equal(want.IDHash, got.IDHash) {
		d.add("IDHash", want.IDHash, got.IDHash)
	}
	for _, f := range []struct{ name, w, g string }{
		{"CSRF", want.CSRF, got.CSRF}, {"User", want.User, got.User}, {"Role", want.Role, got.Role},
		{"Via", want.Via, got.Via}, {"Addr", want.Addr, got.Addr},
	} {
		if f.w != f.g {
			d.add(f.name, f.w, f.g)
		}
	}
	if !sameTime(want.Created, got.Created) {
		d.add("Created", want.Created, got.Created)
	}
	if !sameTime(want.LastUsed, got.LastUsed) {
		d.add("LastUsed", want.LastUsed, got.LastUsed)
	}
	return d.String()
}

// testSessions: a session is created once, read back by its id's hash,
// touched (never back in time), removed; an unknown one is ErrNotFound
// to read and no error to touch or remove; an invalid one is refused.
func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.CountSessions(ctx); err != nil || n != 0 {
		t.Fatalf("CountSessions() of a new store = %d, %v", n, err)
	}
	a := session("a", t0)
	if err := s.CreateSession(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, session("a", t0.Add(time.Hour)), 0); !errors.Is(err, store.ErrExists) {
		t.Errorf("creating session a twice: %v, want ErrExists", err)
	}
	got, err := s.Session(ctx, a.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if d := sessionDiff(a, got); d != "" {
		t.Errorf("Session(a): %s", d)
	}
	for name, bad := range map[string]func(*store.Session){
		"no id hash":       func(s *store.Session) { s.IDHash = nil },
		"a short id hash":  func(s *store.Session) { s.IDHash = s.IDHash[:16] },
		"no CSRF token":    func(s *store.Session) { s.CSRF = "" },
		"no user":          func(s *store.Session) { s.User = "" },
		"no role":          func(s *store.Session) { s.Role = "" },
		"no creation time": func(s *store.Session) { s.Created = time.Time{} },
		"no last use":      func(s *store.Session) { s.LastUsed = time.Time{} },
	} {
		b := session("bad", t0)
		bad(&b)
		if err := s.CreateSession(ctx, b, 0); err == nil {
			t.Errorf("a session with %s was created", name)
		}
	}

	// Touching moves LastUsed forward only.
	later := t0.Add(90 * time.Second)
	if err := s.TouchSession(ctx, a.IDHash, later); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, a.IDHash, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	a.LastUsed = later
	if got, err := s.Session(ctx, a.IDHash); err != nil || sessionDiff(a, got) != "" {
		t.Errorf("Session(a) after touches = %+v, %v; %s", got, err, sessionDiff(a, got))
	}

	unknown := session("unknown", t0)
	if _, err := s.Session(ctx, unknown.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.TouchSession(ctx, unknown.IDHash, later); err != nil {
		t.Errorf("TouchSession(unknown) = %v", err)
	}
	if err := s.RemoveSession(ctx, unknown.IDHash); err != nil {
		t.Errorf("RemoveSession(unknown) = %v", err)
	}
	if _, err := s.Session(ctx, unknown.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("touching an unknown session made it: %v", err)
	}

	b := session("b", t0)
	if err := s.CreateSession(ctx, b, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountSessions(ctx); err != nil || n != 2 {
		t.Errorf("CountSessions() = %d, %v; want 2", n, err)
	}
	if err := s.RemoveSession(ctx, a.IDHash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, a.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session(a) after its removal = %v, want ErrNotFound", err)
	}
	if got, err := s.Session(ctx, b.IDHash); err != nil || sessionDiff(b, got) != "" {
		t.Errorf("removing a touched b: %+v, %v", got, err)
	}
	if n, err := s.CountSessions(ctx); err != nil || n != 1 {
		t.Errorf("CountSessions() after a removal = %d, %v; want 1", n, err)
	}
}

// testSessionsBounded: a session created into a full table first removes
// the least recently used ones, so that at most max remain with it.
func testSessionsBounded(t *testing.T, s store.Store) {
	ctx := t.Context()
	// s0..s4 created a minute apart; s0 touched last, so s1 is the least
	// recently used.
	var all []store.Session
	for i := range 5 {
		ss := session(fmt.Sprint("s", i), t0.Add(time.Duration(i)*time.Minute))
		if err := s.CreateSession(ctx, ss, 0); err != nil {
			t.Fatal(err)
		}
		all = append(all, ss)
	}
	if err := s.TouchSession(ctx, all[0].IDHash, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	live := func() []string {
		var names []string
		for _, ss := range all {
			if _, err := s.Session(ctx, ss.IDHash); err == nil {
				names = append(names, ss.CSRF[len("csrf-"):])
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
		}
		return names
	}
	// Room for 5 with the new one: s1 goes.
	n5 := session("s5", t0.Add(2*time.Hour))
	if err := s.CreateSession(ctx, n5, 5); err != nil {
		t.Fatal(err)
	}
	all = append(all, n5)
	if got := fmt.Sprint(live()); got != "[s0 s2 s3 s4 s5]" {
		t.Errorf("after a login into a full table of 5: %s, want [s0 s2 s3 s4 s5]", got)
	}
	// A smaller bound: s2, s3, s4 go, leaving the two most recently used
	// and the new one.
	n6 := session("s6", t0.Add(3*time.Hour))
	if err := s.CreateSession(ctx, n6, 3); err != nil {
		t.Fatal(err)
	}
	all = append(all, n6)
	if got := fmt.Sprint(live()); got != "[s0 s5 s6]" {
		t.Errorf("after a login bounded to 3: %s, want [s0 s5 s6]", got)
	}
	// A session refused (its hash is taken) removes none.
	if err := s.CreateSession(ctx, session("s6", t0.Add(4*time.Hour)), 1); !errors.Is(err, store.ErrExists) {
		t.Errorf("creating s6 twice = %v, want ErrExists", err)
	}
	if n, err := s.CountSessions(ctx); err != nil || n != 3 {
		t.Errorf("CountSessions() after a refused creation = %d, %v; want 3", n, err)
	}

	// Concurrent logins into a bounded table leave at most the bound.
	const max = 4
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.CreateSession(ctx, session(fmt.Sprint("c", i), t0.Add(5*time.Hour+time.Duration(i)*time.Second)), max)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n, err := s.CountSessions(ctx); err != nil || n != max {
		t.Errorf("CountSessions() after 16 concurrent logins bounded to %d = %d, %v", max, n, err)
	}
}

// testSessionsPrune: pruning removes the sessions idle since before one
// time or created before another, and says how many; a zero time bounds
// nothing.
func testSessionsPrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := session("old", t0)                  // created long ago, used lately
	idle := session("idle", t0.Add(time.Hour)) // created lately, unused since
	live := session("live", t0.Add(time.Hour))
	for _, ss := range []store.Session{old, idle, live} {
		if err := s.CreateSession(ctx, ss, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, ss := range []store.Session{old, live} {
		if err := s.TouchSession(ctx, ss.IDHash, t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneSessions(ctx, time.Time{}, time.Time{}); err != nil || n != 0 {
		t.Errorf("PruneSessions(zero, zero) = %d, %v; want 0", n, err)
	}
	// Idle before t0+1h30, created before t0+30m.
	n, err := s.PruneSessions(ctx, t0.Add(90*time.Minute), t0.Add(30*time.Minute))
	if err != nil || n != 2 {
		t.Errorf("PruneSessions = %d, %v; want 2", n, err)
	}
	for _, ss := range []store.Session{old, idle} {
		if _, err := s.Session(ctx, ss.IDHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s survived pruning: %v", ss.CSRF, err)
		}
	}
	if _, err := s.Session(ctx, live.IDHash); err != nil {
		t.Errorf("the live session was pruned: %v", err)
	}
	// The bounds are strict: a session last used exactly at idleBefore
	// stays.
	if n, err := s.PruneSessions(ctx, t0.Add(2*time.Hour), time.Time{}); err != nil || n != 0 {
		t.Errorf("PruneSessions at its last use = %d, %v; want 0", n, err)
	}
}
