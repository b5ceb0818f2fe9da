package deptest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRules lists the real dependencies of every rule's root, for each
// system Vigil is built for, and fails on every forbidden one.
func TestRules(t *testing.T) {
	t.Parallel()
	for _, r := range Rules {
		for _, sys := range [][2]string{{"linux", "amd64"}, {"darwin", "arm64"}} {
			t.Run(strings.TrimPrefix(r.Root, Module+"/")+"/"+sys[0]+"_"+sys[1], func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				deps, err := List(ctx, r.Root, sys[0], sys[1])
				if err != nil {
					t.Fatal(err)
				}
				if deps[len(deps)-1].ImportPath != r.Root {
					t.Fatalf("go list -deps %s: last package is %s, want the root", r.Root, deps[len(deps)-1].ImportPath)
				}
				for _, v := range r.Check(deps) {
					t.Errorf("%s (rule: %s)", v, r.Why)
				}
			})
		}
	}
}

// rule returns the project's rule for root.
func rule(t *testing.T, root string) Rule {
	t.Helper()
	for _, r := range Rules {
		if r.Root == Module+"/"+root {
			return r
		}
	}
	t.Fatalf("no rule for %s", root)
	return Rule{}
}

// TestRulesCatchViolations feeds each rule a `go list -deps` listing as
// the go command prints it with ListFormat: the listing with a forbidden
// package must be reported, naming the package and its importer, and the
// one without must not.
func TestRulesCatchViolations(t *testing.T) {
	t.Parallel()
	const m = Module + "/"
	tests := []struct {
		name, root string
		listing    string
		want       []string // substrings of the violations, one per violation
	}{
		{
			name: "vigil clean", root: "cmd/vigil",
			listing: "errors\tstd\t\n" +
				"github.com/miekg/dns\t-\terrors\n" +
				m + "internal/cli\t-\tgithub.com/miekg/dns\n" +
				m + "benchmarks\t-\t\n" + // starts with "bench" as a string, not as a path
				m + "cmd/vigil\t-\t" + m + "internal/cli " + m + "benchmarks\n",
		},
		{
			name: "vigil links NATS and the load generator", root: "cmd/vigil",
			listing: "errors\tstd\t\n" +
				"github.com/nats-io/nats.go\t-\terrors\n" +
				m + "bench/loadgen\t-\tgithub.com/nats-io/nats.go\n" +
				m + "internal/cli\t-\t" + m + "bench/loadgen\n" +
				m + "cmd/vigil\t-\t" + m + "internal/cli\n",
			want: []string{
				"links github.com/nats-io/nats.go: forbidden (github.com/nats-io/); imported by " + m + "bench/loadgen",
				"links " + m + "bench/loadgen: forbidden (" + m + "bench); imported by " + m + "internal/cli",
			},
		},
		{
			name: "vigil links the old load generator", root: "cmd/vigil",
			listing: m + "internal/loadgen\t-\t\n" +
				m + "cmd/vigil\t-\t" + m + "internal/loadgen\n",
			want: []string{"links " + m + "internal/loadgen: forbidden"},
		},
		{
			name: "wire clean, with std's vendored packages", root: "internal/wire",
			listing: "crypto/ed25519\tstd\t\n" +
				"vendor/golang.org/x/crypto/chacha20\tstd\t\n" +
				m + "internal/wire\t-\tcrypto/ed25519\n",
		},
		{
			name: "wire imports the agent and x/net", root: "internal/wire",
			listing: "crypto/ed25519\tstd\t\n" +
				"golang.org/x/net/ipv4\t-\t\n" +
				m + "internal/agent\t-\tgolang.org/x/net/ipv4\n" +
				m + "internal/wire\t-\tcrypto/ed25519 " + m + "internal/agent\n",
			want: []string{
				"links golang.org/x/net/ipv4: not in the standard library; imported by " + m + "internal/agent",
				"links " + m + "internal/agent: not in the standard library; imported by " + m + "internal/wire",
			},
		},
		{
			name: "api imports wire and command", root: "internal/api",
			listing: "net/http\tstd\t\n" +
				m + "internal/wire\t-\t\n" +
				m + "internal/command\t-\t\n" +
				m + "internal/api\t-\tnet/http " + m + "internal/wire " + m + "internal/command\n",
		},
		{
			name: "api imports the store", root: "internal/api",
			listing: m + "internal/store\t-\t\n" +
				m + "internal/api\t-\t" + m + "internal/store\n",
			want: []string{"links " + m + "internal/store: not in the standard library"},
		},
		{
			name: "command imports prefs", root: "internal/command",
			listing: "howett.net/plist\t-\t\n" +
				m + "internal/prefs\t-\thowett.net/plist\n" +
				m + "internal/command\t-\t" + m + "internal/prefs\n",
			want: []string{"links howett.net/plist: not", "links " + m + "internal/prefs: not"},
		},
		{
			name: "ports clean", root: "internal/ports",
			listing: "github.com/miekg/dns\t-\t\n" +
				m + "internal/dnsname\t-\tgithub.com/miekg/dns\n" +
				m + "internal/ports\t-\t" + m + "internal/dnsname\n",
		},
		{
			name: "ports links go-tuf through the mirror", root: "internal/ports",
			listing: "github.com/theupdateframework/go-tuf/v2/metadata\t-\t\n" +
				m + "internal/mirror\t-\tgithub.com/theupdateframework/go-tuf/v2/metadata\n" +
				m + "internal/ports\t-\t" + m + "internal/mirror\n",
			want: []string{"links github.com/theupdateframework/go-tuf/v2/metadata: forbidden (github.com/theupdateframework/); imported by " + m + "internal/mirror"},
		},
		{
			name: "repo clean", root: "internal/repo",
			listing: "github.com/theupdateframework/go-tuf/v2/metadata\t-\t\n" +
				m + "internal/atomicfile\t-\t\n" +
				m + "internal/repo\t-\tgithub.com/theupdateframework/go-tuf/v2/metadata " + m + "internal/atomicfile\n",
		},
		{
			name: "repo links the transport", root: "internal/repo",
			listing: m + "internal/transport\t-\t\n" +
				m + "internal/repo\t-\t" + m + "internal/transport\n",
			want: []string{"links " + m + "internal/transport: forbidden (" + m + "internal/transport); imported by " + m + "internal/repo"},
		},
		{
			name: "agent links the publisher through the definitions", root: "internal/agent",
			listing: m + "internal/publish\t-\t\n" +
				m + "internal/definitions\t-\t" + m + "internal/publish\n" +
				m + "internal/agent\t-\t" + m + "internal/definitions\n",
			want: []string{"links " + m + "internal/publish: forbidden (" + m + "internal/publish); imported by " + m + "internal/definitions"},
		},
		{
			name: "onaccess clean", root: "internal/onaccess",
			listing: "context\tstd\t\n" +
				"github.com/prometheus/client_golang/prometheus\t-\tcontext\n" +
				m + "internal/onaccess\t-\tcontext github.com/prometheus/client_golang/prometheus\n",
		},
		{
			name: "onaccess links fanotify and the agent", root: "internal/onaccess",
			listing: m + "internal/fanotify\t-\t\n" +
				m + "internal/agent\t-\t" + m + "internal/fanotify\n" +
				m + "internal/onaccess\t-\t" + m + "internal/agent\n",
			want: []string{
				"links " + m + "internal/fanotify: forbidden (" + m + "); imported by " + m + "internal/agent",
				"links " + m + "internal/agent: forbidden (" + m + "); imported by " + m + "internal/onaccess",
			},
		},
		{
			name: "transport links the mirror", root: "internal/transport",
			listing: m + "internal/repo\t-\t\n" +
				m + "internal/mirror\t-\t" + m + "internal/repo\n" +
				m + "internal/transport\t-\t" + m + "internal/mirror\n",
			want: []string{"links " + m + "internal/mirror: forbidden (" + m + "internal/mirror); imported by " + m + "internal/transport"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			deps, err := ParseList([]byte(tt.listing))
			if err != nil {
				t.Fatal(err)
			}
			got := rule(t, tt.root).Check(deps)
			if len(got) != len(tt.want) {
				t.Fatalf("violations:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d: %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestParseListRejectsOtherOutput(t *testing.T) {
	t.Parallel()
	for _, out := range []string{
		"",
		"\n",
		"github.com/vigil-fleet/vigil/internal/wire\n",         // no -f template
		"github.com/vigil-fleet/vigil/internal/wire\ttrue\t\n", // not std or -
		"\tstd\t\n", // no path
		"{\n\t\"ImportPath\": \"github.com/vigil-fleet/vigil\"\n", // -json
	} {
		if pkgs, err := ParseList([]byte(out)); err == nil {
			t.Errorf("ParseList(%q) = %v, want an error", out, pkgs)
		}
	}
}
