package semver

import "testing"

func TestCheckCompare(t *testing.T) {
	t.Parallel()
	// Increasing, per semver.org's precedence example.
	order := []string{"v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-alpha.beta", "v1.0.0-beta", "v1.0.0-beta.2",
		"v1.0.0-beta.11", "v1.0.0-rc.1", "v1.0.0", "v1.2.0", "v1.10.0", "v2.0.0"}
	for i := range order {
		if err := Check(order[i]); err != nil {
			t.Errorf("Check(%q): %v", order[i], err)
		}
		for j := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := Compare(order[i], order[j]); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, bad := range []string{"", "1.0.0", "v1.0", "v1.0.0+build", "v01.0.0", "v1.0.0-", "v1.0.0-a..b", "v1.0.0-01"} {
		if Check(bad) == nil {
			t.Errorf("Check(%q) accepted", bad)
		}
	}
	if !Prerelease("v1.0.0-rc.1") || Prerelease("v1.0.0") || Prerelease("bad-1") {
		t.Error("Prerelease")
	}
}
