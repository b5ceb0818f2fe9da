package definitions

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// planTargets makes targets metadata holding deltas "BASE-VERSION:LENGTH"
// (and, for the planner's sake, nothing else).
func planTargets(t *testing.T, deltas ...string) map[string]*metadata.TargetFiles {
	t.Helper()
	out := map[string]*metadata.TargetFiles{}
	for _, d := range deltas {
		var base, version string
		var length int64
		if _, err := fmt.Sscanf(strings.NewReplacer("-", " ", ":", " ").Replace(d), "%s %s %d", &base, &version, &length); err != nil {
			t.Fatal(err)
		}
		raw := json.RawMessage(fmt.Sprintf(`{"kind":"delta","version":%q,"base":%q}`, version, base))
		p := repo.DeltaPath(base, version)
		out[p] = &metadata.TargetFiles{Length: length, Path: p, Custom: &raw}
	}
	return out
}

func chainString(chain []repo.DeltaTarget) string {
	var s []string
	for _, d := range chain {
		s = append(s, d.Base+"-"+d.Version)
	}
	return strings.Join(s, " ")
}

// TestPlanDeltas: the cheapest chain by total length, forward only, not
// past the target, fewer deltas on a tie, and none when the full release
// is as cheap or the chain too long.
func TestPlanDeltas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deltas   []string
		from, to string
		full     int64
		want     string
		cost     int64
	}{
		{"one", []string{"1-2:10"}, "1", "2", 1000, "1-2", 10},
		{"chain", []string{"1-2:10", "2-3:10", "3-4:10"}, "1", "4", 1000, "1-2 2-3 3-4", 30},
		{"shortcut cheaper", []string{"1-2:10", "2-3:10", "1-3:15"}, "1", "3", 1000, "1-3", 15},
		{"chain cheaper", []string{"1-2:10", "2-3:10", "1-3:25"}, "1", "3", 1000, "1-2 2-3", 20},
		{"tie: fewer deltas", []string{"1-2:10", "2-3:10", "1-3:20"}, "1", "3", 1000, "1-3", 20},
		{"full cheaper", []string{"1-2:600", "2-3:600"}, "1", "3", 1000, "", 0},
		{"full as cheap", []string{"1-2:1000"}, "1", "2", 1000, "", 0},
		{"gap", []string{"1-2:10", "3-4:10"}, "1", "4", 1000, "", 0},
		{"not past the newest", []string{"1-5:1", "5-4:1", "1-4:50"}, "1", "4", 1000, "1-4", 50},
		{"no backward delta", []string{"1-3:1", "3-2:1", "1-2:50"}, "1", "2", 1000, "1-2", 50},
		{"nothing installed", []string{"1-2:10"}, "", "2", 1000, "", 0},
		{"base older than installed ignored", []string{"1-3:1", "2-3:5"}, "2", "3", 1000, "2-3", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, cost := planDeltas(planTargets(t, tc.deltas...), tc.from, tc.to, tc.full)
			if got := chainString(chain); got != tc.want || cost != tc.cost {
				t.Errorf("planDeltas = %q (%d bytes), want %q (%d)", got, cost, tc.want, tc.cost)
			}
		})
	}

	// A chain longer than MaxDeltaChain is not tried.
	var long []string
	for i := 1; i <= MaxDeltaChain+1; i++ {
		long = append(long, fmt.Sprintf("%d-%d:1", i, i+1))
	}
	if chain, _ := planDeltas(planTargets(t, long...), "1", fmt.Sprint(MaxDeltaChain+2), 1000); chain != nil {
		t.Errorf("a chain of %d deltas was planned", len(chain))
	}
	if chain, _ := planDeltas(planTargets(t, long[:MaxDeltaChain]...), "1", fmt.Sprint(MaxDeltaChain+1), 1000); len(chain) != MaxDeltaChain {
		t.Errorf("a chain of MaxDeltaChain deltas: %d planned", len(chain))
	}
}
