package onaccess

import "testing"

func TestExclusions(t *testing.T) {
	t.Parallel()
	cfg := Config{
		ExcludePaths: []string{"/tmp/a", "/var/cache/", "/proc", ""},
		ExcludeExes:  []string{"/usr/lib/firefox", "/usr/bin/vigil"},
		ExcludePIDs:  []int{42},
	}
	tests := []struct {
		name string
		r    Request
		want bool
	}{
		{"the prefix itself", Request{Path: "/tmp/a"}, true},
		{"below the prefix", Request{Path: "/tmp/a/x"}, true},
		{"deep below", Request{Path: "/tmp/a/x/y/z"}, true},
		{"a sibling sharing the string", Request{Path: "/tmp/ab"}, false},
		{"a sibling's child", Request{Path: "/tmp/ab/x"}, false},
		{"the parent", Request{Path: "/tmp"}, false},
		{"a prefix given with a slash", Request{Path: "/var/cache/apt/x.deb"}, true},
		{"that prefix without the slash", Request{Path: "/var/cache"}, true},
		{"that prefix's sibling", Request{Path: "/var/cache2/x"}, false},
		{"an empty prefix excludes nothing", Request{Path: "/etc/passwd"}, false},
		{"an excluded program", Request{Path: "/etc/passwd", Exe: "/usr/bin/vigil"}, true},
		{"a program below an excluded directory", Request{Path: "/etc/passwd", Exe: "/usr/lib/firefox/firefox-bin"}, true},
		{"a program sharing the string", Request{Path: "/etc/passwd", Exe: "/usr/bin/vigil2"}, false},
		{"a program in a sibling directory", Request{Path: "/etc/passwd", Exe: "/usr/lib/firefox-esr/firefox"}, false},
		{"an excluded process", Request{Path: "/etc/passwd", PID: 42, Exe: "/bin/cat"}, true},
		{"another process", Request{Path: "/etc/passwd", PID: 43, Exe: "/bin/cat"}, false},
		{"no process known", Request{Path: "/etc/passwd"}, false},
	}
	x := newExclusions(cfg)
	for _, tt := range tests {
		if got := x.excluded(&tt.r); got != tt.want {
			t.Errorf("%s: excluded(path %q, exe %q, pid %d) = %v, want %v", tt.name, tt.r.Path, tt.r.Exe, tt.r.PID, got, tt.want)
		}
	}
	root := newExclusions(Config{ExcludePaths: []string{"/"}})
	for _, p := range []string{"/", "/etc", "/a/b"} {
		if !root.excluded(&Request{Path: p}) {
			t.Errorf("exclusion / does not exclude %s", p)
		}
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]Mode{"notify": Notify, "block": Block} {
		if m, err := ParseMode(s); err != nil || m != want || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", s, m, err, want)
		}
	}
	for _, s := range []string{"", "Block", "deny", "notify "} {
		if m, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) = %v, want an error", s, m)
		}
	}
}
