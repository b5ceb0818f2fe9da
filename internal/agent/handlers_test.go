package agent

import (
	"slices"
	"testing"

	"github.com/vigil-fleet/vigil/internal/command"
)

// TestHandlersMatchCatalog: the agent has a handler for every command of
// the catalog, and for nothing else (command.Registry refuses a name the
// catalog does not list), so catalog and agent line up by name.
func TestHandlersMatchCatalog(t *testing.T) {
	t.Parallel()
	r := (&Agent{}).commandHandlers()
	if m := r.Missing(); len(m) > 0 {
		t.Errorf("catalog commands without a handler: %v", m)
	}
	if got, want := r.Names(), command.Names(); !slices.Equal(got, want) {
		t.Errorf("handlers for %v, catalog %v", got, want)
	}
}
