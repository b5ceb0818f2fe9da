package store

import "strings"

// NaturalKey returns a key whose byte order is the natural order of
// versions (AgentQuery's SortVersion and SortDefs): each run of ASCII
// digits is replaced by its length (leading zeros stripped) as two digits,
// then the digits without leading zeros, so that 0.9 < 0.10 and 99 < 100.
// Runs longer than 99 significant digits count as 99 long (and so order
// among themselves by their first digits). Stores keep it beside the
// version, so that an index orders agents by it.
func NaturalKey(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 8)
	for i := 0; i < len(v); {
		c := v[i]
		if c < '0' || c > '9' {
			b.WriteByte(c)
			i++
			continue
		}
		j := i
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
		run := strings.TrimLeft(v[i:j], "0")
		n := min(len(run), 99)
		b.WriteByte(byte('0' + n/10))
		b.WriteByte(byte('0' + n%10))
		b.WriteString(run)
		i = j
	}
	return b.String()
}

// GroupsKey returns a key whose byte order is the order of group lists
// (SortGroups: slices.Compare, each name in turn, a shorter list first),
// for group names holding no byte below 0x02, as valid names do.
func GroupsKey(groups []string) string { return strings.Join(groups, "\x01") }
