package config

import "testing"

func TestParsePortRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"30000-30100", PortRange{30000, 30100}, true},
		{" 21 ", PortRange{21, 21}, true},
		{"1-65535", PortRange{1, 65535}, true},
		{"0-10", PortRange{}, false},
		{"10-9", PortRange{}, false},
		{"1-65536", PortRange{}, false},
		{"a-b", PortRange{}, false},
		{"", PortRange{}, false},
	} {
		got, err := ParsePortRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			if back, err := ParsePortRange(got.String()); err != nil || back != got {
				t.Errorf("%v does not read back: %v %v", got, back, err)
			}
		}
	}
	if !(PortRange{}).IsZero() || (PortRange{21, 21}).IsZero() {
		t.Error("IsZero")
	}
}

func TestPortRangeText(t *testing.T) {
	t.Parallel()
	for _, r := range []PortRange{{}, {21, 21}, {30000, 30100}} {
		b, err := r.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back PortRange
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Errorf("%v -> %q -> %v, %v", r, b, back, err)
		}
	}
	var r PortRange
	if err := r.UnmarshalText([]byte("9-1")); err == nil {
		t.Error("9-1 accepted")
	}
}
