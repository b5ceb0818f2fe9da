package auth

import (
	"errors"
	"testing"
	"time"
)

func TestRoles(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		r    Role
		can  []Action
		cant []Action
	}{
		{Viewer, []Action{Read}, []Action{Issue, Restore, ManageUsers, RotateSecret}},
		{Operator, []Action{Read, Issue, Restore}, []Action{ManageUsers, RotateSecret}},
		{Admin, []Action{Read, Issue, Restore, ManageUsers, RotateSecret}, nil},
		{Role("root"), nil, []Action{Read, Issue}},
	} {
		for _, a := range c.can {
			if !c.r.Can(a) {
				t.Errorf("%s cannot %s", c.r, a)
			}
		}
		for _, a := range c.cant {
			if c.r.Can(a) {
				t.Errorf("%s can %s", c.r, a)
			}
		}
	}
	for _, r := range Roles {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	if _, err := ParseRole("Admin"); err == nil {
		t.Error("ParseRole accepted Admin")
	}
	var err error = &ThrottledError{RetryAfter: 3 * time.Second}
	if !errors.Is(err, ErrThrottled) || err.Error() != "too many failed logins: try again later (in 3s)" {
		t.Errorf("ThrottledError: %v", err)
	}
}
