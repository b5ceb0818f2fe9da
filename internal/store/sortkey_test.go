package store

import (
	"cmp"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// naturalCompare is the natural order of versions computed another way
// than NaturalKey: runs of digits compared as numbers, the rest bytewise.
func naturalCompare(a, b string) int {
	re := regexp.MustCompile(`[0-9]+|[^0-9]+`)
	pa, pb := re.FindAllString(a, -1), re.FindAllString(b, -1)
	for i := range min(len(pa), len(pb)) {
		x, y := pa[i], pb[i]
		if x[0] >= '0' && x[0] <= '9' && y[0] >= '0' && y[0] <= '9' {
			nx, _ := new(big.Int).SetString(x, 10)
			ny, _ := new(big.Int).SetString(y, 10)
			if c := nx.Cmp(ny); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(pa), len(pb))
}

func TestNaturalKeyAgainstModel(t *testing.T) {
	vs := []string{"", "0.9", "0.10", "0.10.1", "1", "1.4.2", "1.9.9", "1.10.0", "2.0", "10.0", "99", "100", "1000000000000000000000",
		"2026.03.14-1", "2026.03.14-2", "2026.03.14-10", "2026.3.15-1", "rc1", "rc2", "rc10"}
	for _, a := range vs {
		for _, b := range vs {
			if got, want := cmp.Compare(NaturalKey(a), NaturalKey(b)), naturalCompare(a, b); got != want {
				t.Errorf("natural keys of %q and %q compare %d, want %d (%q, %q)", a, b, got, want, NaturalKey(a), NaturalKey(b))
			}
		}
	}
	if k := NaturalKey("v007.10"); k != "v017.0210" {
		t.Errorf("NaturalKey(v007.10) = %q", k)
	}
}

func TestNaturalKey(t *testing.T) {
	// Each list is in natural order; equal neighbours are marked "=".
	for _, list := range [][]string{
		{"", "0", "0.9", "0.10", "0.99", "0.100", "1", "1.0", "1.0.1", "2", "10", "99", "100", "1000"},
		{"v1", "v2", "v9", "v10", "v10a", "v11"},
		{"2026.01.09", "2026.1.10", "2026.1.100", "2027.1.1"},
		{"1.2.3", "1.2a"},
		{"a", "b"},
	} {
		for i := 1; i < len(list); i++ {
			a, b := NaturalKey(list[i-1]), NaturalKey(list[i])
			if a >= b {
				t.Errorf("NaturalKey(%q) = %q is not before NaturalKey(%q) = %q", list[i-1], a, list[i], b)
			}
		}
	}
	for _, same := range [][2]string{{"01", "1"}, {"0.010", "0.10"}, {"", ""}} {
		if NaturalKey(same[0]) != NaturalKey(same[1]) {
			t.Errorf("NaturalKey(%q) = %q, NaturalKey(%q) = %q; want equal", same[0], NaturalKey(same[0]), same[1], NaturalKey(same[1]))
		}
	}
	if got := NaturalKey("1.10-rc2"); got != "011.0210-rc012" {
		t.Errorf("NaturalKey(1.10-rc2) = %q", got)
	}
}

func TestGroupsKey(t *testing.T) {
	lists := [][]string{nil, {"a"}, {"a", "b"}, {"a", "b", "c"}, {"a-b"}, {"a.b"}, {"ab"}, {"b"}, {"b", "a"}}
	for i := range lists {
		for j := range lists {
			want := slices.Compare(lists[i], lists[j])
			got := strings.Compare(GroupsKey(lists[i]), GroupsKey(lists[j]))
			if got != want {
				t.Errorf("groupsKey orders %q and %q %d, slices.Compare %d", lists[i], lists[j], got, want)
			}
		}
	}
}
