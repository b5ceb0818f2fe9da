package onaccess

import (
	"path/filepath"
	"slices"
	"strings"
)

// prefixes is a set of path prefixes matched by whole components.
type prefixes []string

func newPrefixes(paths []string) prefixes {
	var p prefixes
	for _, s := range paths {
		if s == "" {
			continue
		}
		p = append(p, filepath.Clean(s))
	}
	return p
}

// match reports whether path is one of p or below one of them: /tmp/a
// matches /tmp/a and /tmp/a/x, not /tmp/ab.
func (p prefixes) match(path string) bool {
	for _, pre := range p {
		if !strings.HasPrefix(path, pre) {
			continue
		}
		rest := path[len(pre):]
		if rest == "" || rest[0] == filepath.Separator || strings.HasSuffix(pre, string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// exclusions are a Config's exclusions.
type exclusions struct {
	paths, exes prefixes
	pids        []int
}

func newExclusions(c Config) exclusions {
	return exclusions{paths: newPrefixes(c.ExcludePaths), exes: newPrefixes(c.ExcludeExes), pids: slices.Clone(c.ExcludePIDs)}
}

// excluded reports whether r is never scanned.
func (x *exclusions) excluded(r *Request) bool {
	return x.paths.match(r.Path) || (r.Exe != "" && x.exes.match(r.Exe)) || (r.PID != 0 && slices.Contains(x.pids, r.PID))
}
