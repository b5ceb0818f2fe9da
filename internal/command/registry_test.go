package command

import (
	"slices"
	"testing"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	var r Registry
	if m := r.Missing(); !slices.Equal(m, Names()) {
		t.Fatalf("empty registry misses %v, want the catalog %v", m, Names())
	}
	r.Register(Ping, func(Command) (string, string) { return StatusOK, "pong" })
	h, ok := r.Lookup(Ping)
	if !ok {
		t.Fatal("no handler for ping")
	}
	if st, out := h(Command{Name: Ping}); st != StatusOK || out != "pong" {
		t.Fatalf("handler answered %s %q", st, out)
	}
	if _, ok := r.Lookup(Set); ok {
		t.Fatal("a handler for set that was never registered")
	}
	if !slices.Equal(r.Names(), []string{Ping}) || slices.Contains(r.Missing(), Ping) {
		t.Fatalf("names %v, missing %v", r.Names(), r.Missing())
	}
	for _, tc := range []struct {
		what, name string
	}{
		{"a name the catalog does not list", "exec"},
		{"a second handler", Ping},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("registering %s did not panic", tc.what)
				}
			}()
			r.Register(tc.name, func(Command) (string, string) { return StatusOK, "" })
		}()
	}
}

func TestValidStatus(t *testing.T) {
	t.Parallel()
	for _, s := range []string{StatusOK, StatusError, StatusUnsupported, StatusExpired, StatusInterrupted} {
		if !ValidStatus(s) {
			t.Errorf("%q is not valid", s)
		}
	}
	for _, s := range []string{"", "pending", "deferred", "OK"} {
		if ValidStatus(s) {
			t.Errorf("%q is valid", s)
		}
	}
}
