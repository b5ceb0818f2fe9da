// Package semver parses and compares Vigil's release versions: semantic
// versions with a leading v (v1.2.3, v1.3.0-rc.1), without build metadata.
// It imports only the standard library, so that the command catalog can
// check an upgrade's version argument with the one rule the repository
// applies.
package semver

import (
	"fmt"
	"strings"
)

// version is a parsed release version vMAJOR.MINOR.PATCH[-PRERELEASE].
type version struct {
	num [3]string // decimal, no leading zeros
	pre string
}

// Check reports whether v is a Vigil release version: a
// semantic version with a leading v, such as v1.2.3 or v1.3.0-rc.1. Build
// metadata (+...) is refused: two versions differing only in it would
// have the same precedence.
func Check(v string) error {
	_, err := parse(v)
	return err
}

func parse(v string) (version, error) {
	var sv version
	bad := func(why string) (version, error) {
		return version{}, fmt.Errorf("release version %q: %s (want a semantic version such as v1.2.3)", v, why)
	}
	if len(v) > 64 {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return bad("no leading v")
	}
	if strings.Contains(rest, "+") {
		return bad("build metadata is not allowed")
	}
	core, pre, hasPre := strings.Cut(rest, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return bad("want three numbers")
	}
	for i, p := range parts {
		if !numeric(p) || (len(p) > 1 && p[0] == '0') {
			return bad("bad number " + fmt.Sprintf("%q", p))
		}
		sv.num[i] = p
	}
	if hasPre {
		for _, id := range strings.Split(pre, ".") {
			if id == "" {
				return bad("empty pre-release identifier")
			}
			for _, r := range id {
				if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
					return bad("bad pre-release identifier " + fmt.Sprintf("%q", id))
				}
			}
			if numeric(id) && len(id) > 1 && id[0] == '0' {
				return bad("leading zero in pre-release identifier " + fmt.Sprintf("%q", id))
			}
		}
		sv.pre = pre
	}
	return sv, nil
}

func numeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Compare compares two release versions by semantic
// version precedence, returning -1, 0 or +1. An invalid version sorts
// before every valid one.
func Compare(a, b string) int {
	sa, ea := parse(a)
	sb, eb := parse(b)
	switch {
	case ea != nil && eb != nil:
		return strings.Compare(a, b)
	case ea != nil:
		return -1
	case eb != nil:
		return 1
	}
	for i := range sa.num {
		if c := CompareNumbers(sa.num[i], sb.num[i]); c != 0 {
			return c
		}
	}
	switch {
	case sa.pre == sb.pre:
		return 0
	case sa.pre == "":
		return 1
	case sb.pre == "":
		return -1
	}
	ia, ib := strings.Split(sa.pre, "."), strings.Split(sb.pre, ".")
	for i := 0; i < len(ia) && i < len(ib); i++ {
		na, nb := numeric(ia[i]), numeric(ib[i])
		var c int
		switch {
		case na && nb:
			c = CompareNumbers(ia[i], ib[i])
		case na:
			c = -1
		case nb:
			c = 1
		default:
			c = strings.Compare(ia[i], ib[i])
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case len(ia) < len(ib):
		return -1
	case len(ia) > len(ib):
		return 1
	}
	return 0
}

// Prerelease reports whether v is a valid version with a pre-release part
// (v1.3.0-rc.1).
func Prerelease(v string) bool {
	sv, err := parse(v)
	return err == nil && sv.pre != ""
}

// CompareNumbers compares two decimal numbers written without a sign
// (leading zeros allowed), returning -1, 0 or +1, whatever their length.
func CompareNumbers(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return strings.Compare(a, b)
}
