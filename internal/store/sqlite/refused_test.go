package sqlite

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// TestCheckInsRefused: the check-ins of agents revoked, removed or unknown
// are refused and leave their rows alone; the others are applied, changed
// listed fields included.
func TestCheckInsRefused(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "vigil.db"))
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	for _, id := range []string{"ok1", "rev", "rem", "ok2"} {
		if err := s.EnrollAgent(ctx, store.Agent{ID: id, TokenHash: []byte{1}, Hostname: id, OS: "linux", EnrolledAt: t0, LastSeen: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeAgent(ctx, "rev", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAgent(ctx, "rem", t0); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var cs []store.CheckIn
	for _, id := range []string{"ok1", "rev", "rem", "nobody", "ok2"} {
		cs = append(cs, store.CheckIn{AgentID: id, Hostname: id, OS: "linux", LastSeq: 3, At: now})
	}
	cs[4].Hostname = "ok2-renamed"
	refused, err := s.CheckInsRefused(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true, true, false}; !slices.Equal(refused, want) {
		t.Fatalf("refused %v, want %v", refused, want)
	}
	for id, host := range map[string]string{"ok1": "ok1", "ok2": "ok2-renamed"} {
		a, err := s.Agent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Hostname != host || a.LastSeq != 3 || !a.LastSeen.After(t0) {
			t.Fatalf("agent %s after its check-in: %+v", id, a)
		}
	}
	a, err := s.Agent(ctx, "rev")
	if err != nil {
		t.Fatal(err)
	}
	if a.LastSeq != 0 || a.LastSeen.After(t0) {
		t.Fatalf("the revoked agent's row changed: %+v", a)
	}
}
