package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// testUsers: users are added once, read back, listed by name, change role
// and password, and are removed with their tokens; every change to a
// user that is not there is ErrNotFound and changes nothing.
func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	if us, err := s.Users(ctx); err != nil || len(us) != 0 {
		t.Fatalf("Users() of a new store = %v, %v", us, err)
	}
	bob := store.User{Name: "bob", Role: "viewer", PasswordHash: "$argon2id$bob", Created: t0}
	alice := store.User{Name: "alice", Role: "admin", PasswordHash: "$argon2id$alice", Created: t0.Add(time.Hour)}
	for _, u := range []store.User{bob, alice} {
		if err := s.AddUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddUser(ctx, store.User{Name: "bob", Role: "admin", PasswordHash: "x", Created: t0}); !errors.Is(err, store.ErrExists) {
		t.Errorf("adding bob twice: %v, want ErrExists", err)
	}
	if err := s.AddUser(ctx, store.User{Name: "carol", Role: "admin"}); err == nil {
		t.Error("adding a user without a password hash succeeded")
	}
	got, err := s.User(ctx, "bob")
	if err != nil || got.Name != "bob" || got.Role != "viewer" || got.PasswordHash != bob.PasswordHash || !sameTime(t0, got.Created) {
		t.Errorf("User(bob) = %+v, %v; want %+v", got, err, bob)
	}
	us, err := s.Users(ctx)
	if err != nil || len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" {
		t.Fatalf("Users() = %+v, %v; want alice, bob", us, err)
	}
	if old, err := s.SetUserRole(ctx, "bob", "operator"); err != nil || old != "viewer" {
		t.Errorf("SetUserRole(bob) = %q, %v", old, err)
	}
	if err := s.SetUserPassword(ctx, "bob", "$argon2id$new"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.User(ctx, "bob"); err != nil || got.Role != "operator" || got.PasswordHash != "$argon2id$new" {
		t.Errorf("bob after changes: %+v, %v", got, err)
	}
	for name, fn := range map[string]func() error{
		"User":            func() error { _, err := s.User(ctx, "nobody"); return err },
		"SetUserRole":     func() error { _, err := s.SetUserRole(ctx, "nobody", "admin"); return err },
		"SetUserPassword": func() error { return s.SetUserPassword(ctx, "nobody", "x") },
		"RemoveUser":      func() error { return s.RemoveUser(ctx, "nobody") },
	} {
		if err := fn(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s(nobody) = %v, want ErrNotFound", name, err)
		}
	}
	if err := s.AddToken(ctx, store.APIToken{ID: "t1", User: "bob", Name: "laptop", Hash: []byte("h1"), Created: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(bob) after removing = %v", err)
	}
	if _, err := s.TokenByHash(ctx, []byte("h1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's token after removing bob: %v, want ErrNotFound", err)
	}
	if us, err := s.Users(ctx); err != nil || len(us) != 1 || us[0].Name != "alice" {
		t.Errorf("Users() after removing bob = %+v, %v", us, err)
	}
}

// testTokens: tokens are found by hash only, listed by user, named once
// per user, touched, and removed by name.
func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, n := range []string{"ann", "ben"} {
		if err := s.AddUser(ctx, store.User{Name: n, Role: "operator", PasswordHash: "h", Created: t0}); err != nil {
			t.Fatal(err)
		}
	}
	tok := store.APIToken{ID: "id1", User: "ann", Name: "cli", Hash: bytes.Repeat([]byte{1}, 32), Created: t0}
	if err := s.AddToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []store.APIToken{
		{ID: "id2", User: "ann", Name: "cli", Hash: []byte{2}, Created: t0}, // same name
		{ID: "id1", User: "ben", Name: "cli", Hash: []byte{3}, Created: t0}, // same id
		{ID: "id3", User: "ben", Name: "ci", Hash: tok.Hash, Created: t0},   // same hash
	} {
		if err := s.AddToken(ctx, bad); !errors.Is(err, store.ErrExists) {
			t.Errorf("AddToken(%+v) = %v, want ErrExists", bad, err)
		}
	}
	if err := s.AddToken(ctx, store.APIToken{ID: "id4", User: "nobody", Name: "x", Hash: []byte{4}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a token for no user: %v, want ErrNotFound", err)
	}
	if err := s.AddToken(ctx, store.APIToken{ID: "id5", User: "ben", Name: "cli", Hash: []byte{5}, Created: t0}); err != nil {
		t.Fatalf("ben's token of the same name as ann's: %v", err)
	}
	got, err := s.TokenByHash(ctx, tok.Hash)
	if err != nil || got.ID != "id1" || got.User != "ann" || got.Name != "cli" || !sameTime(t0, got.Created) || !got.LastUsed.IsZero() {
		t.Errorf("TokenByHash = %+v, %v", got, err)
	}
	if _, err := s.TokenByHash(ctx, []byte("nothing")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenByHash(unknown) = %v", err)
	}
	used := t0.Add(time.Minute)
	if err := s.TouchToken(ctx, "id1", used); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchToken(ctx, "gone", used); err != nil {
		t.Errorf("TouchToken(unknown) = %v", err)
	}
	if got, err := s.TokenByHash(ctx, tok.Hash); err != nil || !sameTime(used, got.LastUsed) {
		t.Errorf("after TouchToken: %+v, %v", got, err)
	}
	ts, err := s.Tokens(ctx, "ann")
	if err != nil || len(ts) != 1 || ts[0].ID != "id1" {
		t.Errorf("Tokens(ann) = %+v, %v", ts, err)
	}
	all, err := s.Tokens(ctx, "")
	if err != nil || len(all) != 2 || all[0].User != "ann" || all[1].User != "ben" {
		t.Errorf("Tokens(\"\") = %+v, %v", all, err)
	}
	if err := s.RemoveToken(ctx, "ann", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RemoveToken(unknown) = %v", err)
	}
	if err := s.RemoveToken(ctx, "ann", "cli"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TokenByHash(ctx, tok.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removed token found: %v", err)
	}
	if ts, err := s.Tokens(ctx, "ben"); err != nil || len(ts) != 1 {
		t.Errorf("ben's tokens after removing ann's = %+v, %v", ts, err)
	}
}

// testAudit: entries read back newest first, filtered by actor, action
// and time range, limited; fn's error stops the reading.
func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	var want []store.AuditEvent
	for i := range 10 {
		e := store.AuditEvent{
			Time: t0.Add(time.Duration(i) * time.Minute), Actor: []string{"ann", "ben"}[i%2], Addr: "127.0.0.1:1",
			Action: []string{"login", "command", "denied"}[i%3], Target: fmt.Sprint(i), Detail: "d", OK: i%4 != 0,
		}
		id, err := s.AppendAudit(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		e.ID = id
		want = append(want, e)
	}
	if _, err := s.AppendAudit(ctx, store.AuditEvent{Action: "login"}); err == nil {
		t.Error("an entry without a time was stored")
	}
	read := func(q store.AuditQuery) []store.AuditEvent {
		t.Helper()
		var es []store.AuditEvent
		if err := s.AuditLog(ctx, q, func(e store.AuditEvent) error { es = append(es, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return es
	}
	match := func(q store.AuditQuery) []int {
		var idx []int
		for i := len(want) - 1; i >= 0; i-- {
			e := want[i]
			if (q.Actor == "" || e.Actor == q.Actor) && (q.Action == "" || e.Action == q.Action) &&
				(q.Since.IsZero() || !e.Time.Before(q.Since)) && (q.Until.IsZero() || e.Time.Before(q.Until)) {
				idx = append(idx, i)
			}
		}
		if q.Limit > 0 && len(idx) > q.Limit {
			idx = idx[:q.Limit]
		}
		return idx
	}
	for _, q := range []store.AuditQuery{
		{},
		{Limit: 3},
		{Actor: "ann"},
		{Action: "command"},
		{Actor: "ben", Action: "login"},
		{Since: t0.Add(3 * time.Minute), Until: t0.Add(7 * time.Minute)},
		{Actor: "ann", Since: t0.Add(2 * time.Minute), Limit: 2},
		{Actor: "nobody"},
	} {
		got, wantIdx := read(q), match(q)
		if len(got) != len(wantIdx) {
			t.Errorf("AuditLog(%+v): %d entries, want %d", q, len(got), len(wantIdx))
			continue
		}
		for j, i := range wantIdx {
			w, g := want[i], got[j]
			if g.ID != w.ID || !sameTime(w.Time, g.Time) || g.Actor != w.Actor || g.Addr != w.Addr || g.Action != w.Action ||
				g.Target != w.Target || g.Detail != w.Detail || g.OK != w.OK {
				t.Errorf("AuditLog(%+v)[%d] = %+v, want %+v", q, j, g, w)
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.AuditLog(ctx, store.AuditQuery{}, func(store.AuditEvent) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("AuditLog with a failing fn: %v after %d entries", err, n)
	}
	// Entries of the same time: the later one first.
	same := store.AuditEvent{Time: t0, Actor: "ann", Action: "logout"}
	first, err1 := s.AppendAudit(ctx, same)
	second, err2 := s.AppendAudit(ctx, same)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if es := read(store.AuditQuery{Action: "logout"}); len(es) != 2 || es[0].ID != second || es[1].ID != first {
		t.Errorf("entries of the same time: %+v, want ids %d, %d", es, second, first)
	}
}
