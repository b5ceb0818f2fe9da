package command

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		args map[string]string
		err  string // "" when valid
	}{
		{"ping", nil, ""},
		{"ping", map[string]string{"x": "1"}, "takes no arguments"},
		{"update", nil, ""},
		{"set", map[string]string{"checkin_interval": "60"}, ""},
		{"set", nil, "needs at least one setting"},
		{"set", map[string]string{"checkin_interval": "4"}, "from 5 to 86400"},
		{"set", map[string]string{"colour": "red"}, "unknown setting"},
		{"scan", nil, ""},
		{"scan", map[string]string{"paths": "/home,/tmp", "quarantine": "no"}, ""},
		{"scan", map[string]string{"paths": "home"}, "not a clean absolute path"},
		{"scan", map[string]string{"paths": "/a/../b"}, "not a clean absolute path"},
		{"scan", map[string]string{"quarantine": "maybe"}, "yes or no"},
		{"scan", map[string]string{"depth": "3"}, "unknown argument"},
		{"restore", map[string]string{"id": "0123456789abcdef0123456789abcdef"}, ""},
		{"restore", map[string]string{"id": "../../etc/passwd"}, "restore takes one argument"},
		{"restore", nil, "restore takes one argument"},
		{"exec", nil, "unknown command"},
	}
	for _, tt := range tests {
		err := Validate(tt.name, tt.args)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Validate(%s, %v) = %v, want %q", tt.name, tt.args, err, tt.err)
		}
	}
}
