package command

import (
	"errors"
	"testing"

	"github.com/vigil-fleet/vigil/internal/wire"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	c := Command{Name: "set", Args: map[string]string{"checkin_interval": "60"}, Target: Target{Groups: []string{"lab"}}, SpreadMillis: 2000}
	body, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"set","args":{"checkin_interval":"60"},"target":{"groups":["lab"]},"spread_ms":2000}`; string(body) != want {
		t.Fatalf("body %s, want %s (docs/protocol.md)", body, want)
	}
	got, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "set" || got.Args["checkin_interval"] != "60" || got.Target.Groups[0] != "lab" || got.SpreadMillis != 2000 {
		t.Fatalf("command mismatch: %+v", got)
	}
}

func TestDecodeValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{"ping all", `{"name":"ping","target":{"all":true}}`, true},
		{"groups", `{"name":"checkin","target":{"groups":["a","b"]}}`, true},
		{"unknown to the catalog, for the agent to answer unsupported", `{"name":"reboot","target":{"all":true}}`, true},
		{"no target", `{"name":"ping","target":{}}`, false},
		{"two targets", `{"name":"ping","target":{"all":true,"agents":["x"]}}`, false},
		{"bad name", `{"name":"rm -rf","target":{"all":true}}`, false},
		{"unknown field", `{"name":"ping","target":{"all":true},"exec":"/bin/sh"}`, false},
		{"trailing", `{"name":"ping","target":{"all":true}} {}`, false},
		{"bad group", `{"name":"ping","target":{"groups":["a b"]}}`, false},
		{"bad arg name", `{"name":"set","args":{"a b":"c"},"target":{"all":true}}`, false},
		{"not json", `ping`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			if (err == nil) != tt.ok {
				t.Fatalf("Decode(%s) = %v", tt.body, err)
			}
			if err != nil && !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error %v does not wrap wire.ErrMalformed", err)
			}
		})
	}
}

func TestTargetMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		t      Target
		id     string
		groups []string
		want   bool
	}{
		{Target{All: true}, "a1", nil, true},
		{Target{Agents: []string{"a1", "a2"}}, "a2", nil, true},
		{Target{Agents: []string{"a1"}}, "a2", []string{"a1"}, false},
		{Target{Groups: []string{"lab"}}, "a1", []string{"office", "lab"}, true},
		{Target{Groups: []string{"lab"}}, "lab", nil, false},
	}
	for i, tt := range tests {
		if got := tt.t.Matches(tt.id, tt.groups); got != tt.want {
			t.Errorf("%d: Matches = %v, want %v", i, got, tt.want)
		}
	}
}

// FuzzDecode: a body an agent decodes is well formed, and nothing but
// wire.ErrMalformed comes out of a body it refuses.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"name":"ping","target":{"all":true}}`))
	f.Add([]byte(`{"name":"set","args":{"checkin_interval":"60"},"target":{"groups":["lab"]},"spread_ms":2000}`))
	f.Add([]byte(`{"name":"ping","target":{}}`))
	f.Add([]byte(`{"name":"ping","target":{"all":true}} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := Decode(body)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error %v does not wrap wire.ErrMalformed", err)
			}
			return
		}
		if err := c.wellFormed(); err != nil {
			t.Fatalf("decoded command is not well formed: %v", err)
		}
	})
}
