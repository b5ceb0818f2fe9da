package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/store/pgtest"
)

// enrollOver enrolls an agent through the agent API at base.
func enrollOver(t *testing.T, base, secret, host string) api.EnrollResponse {
	t.Helper()
	c := &api.AgentClient{Client: api.Client{Base: base, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	resp, err := c.Enroll(t.Context(), api.EnrollRequest{
		Secret: secret, Nonce: "0123456789abcdef0123456789abcdef", Hostname: host, OS: "linux", Arch: "amd64", Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func checkInOver(ctx context.Context, base, token string, epoch uint64) error {
	c := &api.AgentClient{Client: api.Client{Base: base, Auth: token, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	_, err := c.CheckIn(ctx, api.CheckInRequest{Epoch: epoch, Hostname: "h", OS: "linux", Arch: "amd64", Version: "test"})
	return err
}

// checkinsStored reads s's vigil_server_checkins_total.
func checkinsStored(t *testing.T, s *Server) float64 {
	t.Helper()
	mfs, err := s.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "vigil_server_checkins_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no vigil_server_checkins_total")
	return 0
}

// TestRevokedOnAnotherInstance: two servers over one PostgreSQL database.
// An agent checks in through b, which then trusts its credential; a (here:
// the store a writes to) revokes one agent and removes another. Their next
// check-in through b is refused (403 revoked, 401), not acknowledged, and
// so are their other requests to b from then on.
func TestRevokedOnAnotherInstance(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	port := 20000 + int(time.Now().UnixNano()%30000)
	a, b := newShared(t, dsn, port), newShared(t, dsn, port)
	ha, hb := httptest.NewServer(a.AgentHandler()), httptest.NewServer(b.AgentHandler())
	defer ha.Close()
	defer hb.Close()
	baseA, baseB := ha.URL+a.cfg.BasePath, hb.URL+b.cfg.BasePath
	ctx := t.Context()

	rev, rem, keep := enrollOver(t, baseA, a.EnrollSecret(), "rev"), enrollOver(t, baseA, a.EnrollSecret(), "rem"), enrollOver(t, baseA, a.EnrollSecret(), "keep")
	for _, e := range []api.EnrollResponse{rev, rem, keep} {
		if err := checkInOver(ctx, baseB, e.Token, e.Epoch); err != nil {
			t.Fatalf("check-in of %s through b before any revocation: %v", e.AgentID, err)
		}
	}
	stored0 := checkinsStored(t, b)
	now := time.Now()
	if err := a.store.RevokeAgent(ctx, rev.AgentID, now); err != nil {
		t.Fatal(err)
	}
	if err := a.store.RemoveAgent(ctx, rem.AgentID, now); err != nil {
		t.Fatal(err)
	}
	err := checkInOver(ctx, baseB, rev.Token, rev.Epoch)
	var ae *api.HTTPError
	if !api.IsStatus(err, http.StatusForbidden) || !errors.As(err, &ae) || ae.Reason != api.ReasonRevoked {
		t.Fatalf("check-in through b of the agent revoked through a: %v; want 403 revoked", err)
	}
	if err := checkInOver(ctx, baseB, rem.Token, rem.Epoch); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("check-in through b of the agent removed through a: %v; want 401", err)
	}
	if err := checkInOver(ctx, baseB, keep.Token, keep.Epoch); err != nil {
		t.Fatalf("check-in through b of the agent still enrolled: %v", err)
	}
	if got := checkinsStored(t, b) - stored0; got != 1 {
		t.Fatalf("b counts %v check-ins stored after the revocation, want 1 (the enrolled agent's)", got)
	}
	// b now refuses their other requests too.
	c := &api.AgentClient{Client: api.Client{Base: baseB, Auth: rev.Token, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	if _, err := c.CommandsAfter(ctx, 0, 0); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("commands for the revoked agent through b: %v; want 403", err)
	}
	c.Auth = rem.Token
	if _, err := c.CommandsAfter(ctx, 0, 0); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("commands for the removed agent through b: %v; want 401", err)
	}
}

// TestBatcherRefusals: a flush that refuses some items answers errRefused
// to their callers and nil to the others; any other error reaches all.
func TestBatcherRefusals(t *testing.T) {
	var fail atomic.Bool
	b := newBatcher(8, func(items []int) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		rf := make(refusals, len(items))
		refused := false
		for i, x := range items {
			rf[i] = x%2 == 1
			refused = refused || rf[i]
		}
		if refused {
			return rf
		}
		return nil
	})
	defer b.close()
	ctx := t.Context()
	for i := range 6 {
		err := b.add(ctx, i)
		if want := i%2 == 1; errors.Is(err, errRefused) != want || (!want && err != nil) {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	fail.Store(true)
	if err := b.add(ctx, 2); err == nil || errors.Is(err, errRefused) {
		t.Fatalf("item in a failed batch: %v, want the flush's error", err)
	}
}

// TestRevocationEventReachesOtherInstance: with two servers over one
// PostgreSQL database, an agent revoked through one is refused by the
// other at its next request of any kind (not only a check-in), and its
// relay stream held by the other ends: the store's event makes b read the
// agent again. A removed agent likewise.
func TestRevocationEventReachesOtherInstance(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	port := 20000 + int(time.Now().UnixNano()%30000)
	a, b := newShared(t, dsn, port), newShared(t, dsn, port)
	ha, hb := httptest.NewServer(a.AgentHandler()), httptest.NewServer(b.AgentHandler())
	defer ha.Close()
	defer hb.Close()
	baseA, baseB := ha.URL+a.cfg.BasePath, hb.URL+b.cfg.BasePath
	ctx := t.Context()

	rev, rem := enrollOver(t, baseA, a.EnrollSecret(), "rev"), enrollOver(t, baseA, a.EnrollSecret(), "rem")
	client := func(tok string) *api.AgentClient {
		return &api.AgentClient{Client: api.Client{Base: baseB, Auth: tok, HTTP: &http.Client{Timeout: 10 * time.Second}}}
	}
	// b trusts both credentials (and keeps them in memory).
	for _, e := range []api.EnrollResponse{rev, rem} {
		if _, err := client(e.Token).CommandsAfter(ctx, 0, 0); err != nil {
			t.Fatalf("commands through b before any revocation: %v", err)
		}
	}
	stream, err := (&api.AgentClient{Client: api.Client{Base: baseB, Auth: rev.Token}}).RelayStream(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Next(); err != nil {
				ended <- err
				return
			}
		}
	}()

	now := time.Now()
	if err := a.store.RevokeAgent(ctx, rev.AgentID, now); err != nil {
		t.Fatal(err)
	}
	if err := a.store.RemoveAgent(ctx, rem.AgentID, now); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked agent's relay stream on b did not end within 10s")
	}
	// Polled until the event is in; no check-in corrects b here.
	waitFor(t, "b refuses the revoked agent", func() bool {
		_, err := client(rev.Token).CommandsAfter(ctx, 0, 0)
		return api.IsStatus(err, http.StatusForbidden)
	})
	waitFor(t, "b refuses the removed agent", func() bool {
		_, err := client(rem.Token).CommandsAfter(ctx, 0, 0)
		return api.IsStatus(err, http.StatusUnauthorized)
	})
}
