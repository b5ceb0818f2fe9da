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
		{"upgrade", nil, ""},
		{"upgrade", map[string]string{"version": "v1.2.3", "trial": "60"}, ""},
		{"upgrade", map[string]string{"version": "v1.3.0-rc.1"}, ""},
		{"upgrade", map[string]string{"version": "1.2.3"}, "no leading v"},
		{"upgrade", map[string]string{"version": "v1.2.3+build"}, "build metadata"},
		{"upgrade", map[string]string{"trial": "5"}, "from 10 to 3600"},
		{"upgrade", map[string]string{"trial": "soon"}, "from 10 to 3600"},
		{"upgrade", map[string]string{"url": "http://x"}, "unknown argument"},
		{"exec", nil, "unknown command"},
	}
	for _, tt := range tests {
		err := validate(tt.name, tt.args)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("validate(%s, %v) = %v, want %q", tt.name, tt.args, err, tt.err)
		}
	}
}

// Specs documents exactly the commands and arguments Validate knows, so
// that help texts built from it cannot drift.
func TestSpecsMatchValidate(t *testing.T) {
	specs := Specs()
	if len(specs) != 7 {
		t.Fatalf("%d specs, want the seven commands", len(specs))
	}
	for _, s := range specs {
		if s.Summary == "" {
			t.Errorf("%s: no summary", s.Name)
		}
		required := 0
		for _, a := range s.Args {
			if a.Required {
				required++
			}
			// Each documented argument is one Validate knows: a wrong
			// value is refused for its value, not as an unknown argument.
			err := validate(s.Name, map[string]string{a.Name: "\x00"})
			if err == nil || strings.Contains(err.Error(), "unknown") || strings.Contains(err.Error(), "takes no arguments") {
				t.Errorf("validate(%s, %s=NUL) = %v: argument not known", s.Name, a.Name, err)
			}
		}
		if err := validate(s.Name, nil); (err == nil) != (required == 0 && !s.AnyArgs) {
			t.Errorf("validate(%s, no arguments) = %v, but the spec says %d required arguments (any: %v)", s.Name, err, required, s.AnyArgs)
		}
		if err := validate(s.Name, map[string]string{"undocumented": "1"}); err == nil {
			t.Errorf("validate(%s) accepts an undocumented argument", s.Name)
		}
	}
	err := validate("exec", nil)
	for _, s := range specs {
		if err == nil || !strings.Contains(err.Error(), s.Name) {
			t.Errorf("unknown-command error %v does not list %s", err, s.Name)
		}
	}
	if got := specs[3].Synopsis(); got != "scan [paths=PATH[,PATH...]] [quarantine=yes|no]" {
		t.Errorf("scan synopsis %q", got)
	}
}

// validate is the one validation, for a command to every agent.
func validate(name string, args map[string]string) error {
	return Command{Name: name, Args: args, Target: Target{All: true}}.Validate()
}

// TestValidateStructureFirst: the one validation checks the body's
// structure and target before the catalog, as the server always did.
func TestValidateStructureFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    Command
		want string
	}{
		{Command{Name: "ping", Target: Target{}}, "target must be"},
		{Command{Name: "rm -rf", Target: Target{All: true}}, "bad command name"},
		{Command{Name: "exec", Target: Target{Groups: []string{"a b"}}}, "bad group name"},
		{Command{Name: "set", Args: map[string]string{"a b": "c"}, Target: Target{All: true}}, "bad argument name"},
		{Command{Name: "exec", Target: Target{All: true}}, "unknown command"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
		if _, err := Encode(tc.c); err == nil {
			t.Errorf("Encode(%+v) accepted it", tc.c)
		}
	}
}
