package ports

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/config"
)

// A server on PostgreSQL over TCP sends to the database's host and port
// (each host of a multi-host URL, the default port 5432); over a Unix
// socket, or on SQLite, it sends nothing. The URL's password appears in
// no flow.
func TestBuildStoreFlows(t *testing.T) {
	tests := []struct {
		dsn  config.StoreDSN
		want []string // To and port of each store flow
	}{
		{"", nil},
		{"postgres:///vigil?host=/run/postgresql", nil},
		{"postgresql://vigil@/vigil", nil},
		{"postgres://vigil:hunter2@10.77.0.5:5433/vigil", []string{"10.77.0.5 5433"}},
		{"postgres://vigil@10.77.0.5/vigil?password=hunter2", []string{"10.77.0.5 5432"}},
		{"postgres://vigil@10.77.0.5:5433,10.77.0.6:5432/vigil", []string{"10.77.0.5 5433", "10.77.0.6 5432"}},
		{"postgres://vigil@[fd77::5]:5433/vigil", []string{"fd77::5 5433"}},
		{"postgres:///vigil?host=127.0.0.1&port=6000", []string{"127.0.0.1 6000"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.dsn), func(t *testing.T) {
			c := fullConfig()
			c.Server.Store = tt.dsn
			p, err := Build(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range p.Flows {
				if strings.Contains(flowKey(f)+f.Why+f.To+f.Target, "hunter2") {
					t.Errorf("flow %s holds the password", flowKey(f))
				}
				if f.ID != FlowStore {
					continue
				}
				if f.Direction != "out" || f.Protocol != "tcp" || f.Part != config.PartServer || len(f.Ports) != 1 {
					t.Errorf("store flow %s", flowKey(f))
				}
				got = append(got, f.To+" "+f.Ports[0].String())
				if f.LoopbackOnly != strings.HasPrefix(f.To, "127.") {
					t.Errorf("store flow to %s: LoopbackOnly %v", f.To, f.LoopbackOnly)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("store flows %q, want %q", got, tt.want)
			}
		})
	}
	c := fullConfig()
	c.Server.Store = "mysql://vigil:hunter2@db/vigil"
	if _, err := Build(context.Background(), c); err == nil || !strings.Contains(err.Error(), `Store: unsupported scheme "mysql"`) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a mysql:// Store: %v", err)
	}
}
