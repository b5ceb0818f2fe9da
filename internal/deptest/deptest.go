// Package deptest keeps Vigil's layering from eroding: it lists, with
// `go list -deps`, every package a root package links (directly or not) and
// checks the list against a Rule, in the manner of Tailscale's
// tstest/deptest. Its test holds the project's rules (Rules) and fails,
// naming the package and who imports it, when a forbidden import comes
// back:
//
//   - cmd/vigil does not link the load generator or NATS (they live in the
//     nested module bench/, so the product's go.mod does not carry them);
//   - internal/wire, internal/api and internal/command import nothing but
//     the standard library and each other (agents, servers and tools all
//     speak them, so they must stay small);
//   - internal/ports does not import go-tuf (`vigil ports` computes flows;
//     it resolves names with internal/dnsname, not the mirror's engine);
//   - the repository family is layered format ← transport ← {publish,
//     definitions, mirror}: internal/repo links none of the others,
//     internal/transport none of the clients it serves, and the agent and
//     the mirror do not link the vendor's publisher (internal/publish);
//     the mirror reports progress through an interface and links no
//     terminal renderer (mpb);
//   - internal/onaccess, the core of on-access scanning, links the
//     standard library and the Prometheus client, and none of Vigil's
//     packages (not the agent, the CLI, the server, nor the kernel
//     interface internal/fanotify: the agent adapts between them).
//   - internal/fanotify imports nothing but the standard library and
//     golang.org/x/sys/unix (it runs in the path of every open of a
//     watched file).
//
// The package map these rules protect is docs/architecture.md.
package deptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Module is the product module's path.
const Module = "github.com/vigil-fleet/vigil"

// Package is one package of a `go list -deps` listing.
type Package struct {
	ImportPath string
	// Standard is true for the standard library, including its vendored
	// packages (vendor/golang.org/x/...).
	Standard bool
	// Imports are the packages it imports directly.
	Imports []string
}

// Rule is what one root package may link.
type Rule struct {
	// Root is the import path whose dependencies are checked.
	Root string
	// Why says what the rule protects; it is part of a violation's report.
	Why string
	// Forbidden are import path prefixes no dependency may have: a prefix
	// matches the path itself and every path below it ("a/b" matches "a/b"
	// and "a/b/c", not "a/bc"). A prefix ending in "/" matches everything
	// below it only.
	Forbidden []string
	// StdAnd, when OnlyStd is set, are the only packages outside the
	// standard library that may be linked (the root itself is always
	// allowed).
	StdAnd []string
	// OnlyStd restricts the dependencies to the standard library and
	// StdAnd.
	OnlyStd bool
}

// Rules are the project's rules, checked by this package's test.
var Rules = []Rule{
	{
		Root: Module + "/cmd/vigil",
		Why:  "the product binary does not link the load generator or NATS (they live in the nested module bench/)",
		Forbidden: []string{
			Module + "/bench",
			Module + "/internal/loadgen",
			"github.com/nats-io/",
		},
	},
	{
		Root: Module + "/internal/wire", Why: "the wire format imports only the standard library, api and command",
		OnlyStd: true, StdAnd: []string{Module + "/internal/api", Module + "/internal/command", Module + "/internal/semver"},
	},
	{
		Root: Module + "/internal/api", Why: "the API messages import only the standard library, wire and command (and semver, through command)",
		OnlyStd: true, StdAnd: []string{Module + "/internal/wire", Module + "/internal/command", Module + "/internal/semver"},
	},
	{
		Root: Module + "/internal/command", Why: "the command catalog imports only the standard library, wire, api and semver",
		OnlyStd: true, StdAnd: []string{Module + "/internal/wire", Module + "/internal/api", Module + "/internal/semver"},
	},
	{
		Root: Module + "/internal/demo", Why: "the demo drives the CLI's renderers through an interface: it links neither ports, doctor nor cli",
		Forbidden: []string{Module + "/internal/ports", Module + "/internal/doctor", Module + "/internal/cli"},
	},
	{
		Root: Module + "/internal/config", Why: "the parts' configuration imports only the standard library",
		OnlyStd: true,
	},
	{
		Root: Module + "/internal/cvd", Why: "ClamAV's containers are read with the standard library only (a parser of untrusted input with no dependency to audit)",
		OnlyStd: true,
	},
	{
		Root: Module + "/internal/unpack", Why: "opening archives knows file types (filetype), not signatures, the engine or the parts",
		Forbidden: []string{
			Module + "/internal/signatures", Module + "/internal/scan", Module + "/internal/textnorm",
			Module + "/internal/cvd", Module + "/internal/agent", Module + "/internal/cli",
		},
	},
	{
		Root: Module + "/internal/exefmt", Why: "ClamAV's reading of executables' headers is a parser of untrusted input with no dependency to audit",
		OnlyStd: true,
	},
	{
		Root: Module + "/internal/exefmt/exefmttest", Why: "the executables' builders for tests use the standard library only (exefmt's own tests import them, so they cannot import exefmt)",
		OnlyStd: true,
	},
	{
		Root: Module + "/internal/filetype", Why: "ClamAV's file typing is a parser of untrusted input with no dependency to audit",
		OnlyStd: true,
	},
	{
		Root: Module + "/internal/textnorm", Why: "ClamAV's normalizers use the standard library and filetype only",
		OnlyStd: true, StdAnd: []string{Module + "/internal/filetype"},
	},
	{
		Root: Module + "/internal/fanotify", Why: "the on-access events' reader sits in the path of every watched open: the standard library and x/sys/unix only",
		OnlyStd: true, StdAnd: []string{"golang.org/x/sys/unix"},
	},
	{
		Root: Module + "/internal/ports", Why: "computing flows does not link go-tuf (names are resolved with internal/dnsname)",
		Forbidden: []string{"github.com/theupdateframework/"},
	},
	{
		Root: Module + "/internal/repo", Why: "the repository format does not link its transports, publisher or clients",
		Forbidden: []string{
			Module + "/internal/transport",
			Module + "/internal/publish",
			Module + "/internal/definitions",
			Module + "/internal/mirror",
		},
	},
	{
		Root: Module + "/internal/agent", Why: "the agent installs definitions; it does not link the vendor's publisher, nor the server's store",
		Forbidden: []string{Module + "/internal/publish", Module + "/internal/store", "github.com/jackc/pgx", "modernc.org/sqlite"},
	},
	{
		Root: Module + "/internal/console", Why: "the console reads the store.Store interface, whichever store the server opened; it links no store, nor the browser its tests drive",
		Forbidden: []string{Module + "/internal/store/", "github.com/jackc/pgx", "modernc.org/sqlite", "github.com/chromedp/"},
	},
	{
		Root: Module + "/internal/store/sqlite", Why: "one store does not link the other",
		Forbidden: []string{Module + "/internal/store/postgres", "github.com/jackc/pgx"},
	},
	{
		Root: Module + "/internal/store/postgres", Why: "one store does not link the other",
		Forbidden: []string{Module + "/internal/store/sqlite", "modernc.org/sqlite"},
	},
	{
		Root: Module + "/internal/relay", Why: "a relay forwards the server's signed datagrams: it holds no signing key and links neither the server, its store, nor the agent's engine",
		Forbidden: []string{Module + "/internal/server", Module + "/internal/store", Module + "/internal/agent", Module + "/internal/scan",
			Module + "/internal/publish", "github.com/jackc/pgx", "modernc.org/sqlite"},
	},
	{
		Root: Module + "/internal/lucache", Why: "the relay's cache verifies what it serves against the vendor's signed metadata; it links no publisher (no signing keys), nor the server",
		Forbidden: []string{Module + "/internal/publish", Module + "/internal/server", Module + "/internal/store"},
	},
	{
		Root: Module + "/internal/delta", Why: "agents and mirrors apply deltas: the format links no publisher (no signing keys), no engine, no server",
		Forbidden: []string{Module + "/internal/publish", Module + "/internal/scan", Module + "/internal/server", Module + "/internal/store", Module + "/internal/agent"},
	},
	{
		Root: Module + "/internal/mirror", Why: "the mirror copies a repository; it does not link the vendor's publisher, nor terminal renderers (they are the CLI's)",
		Forbidden: []string{Module + "/internal/publish", "github.com/vbauerster/mpb"},
	},
	{
		Root: Module + "/internal/onaccess", Why: "the on-access core links the standard library and the Prometheus client only: nothing of Vigil's (the agent adapts it to fanotify and the scan engine)",
		Forbidden: []string{Module + "/"},
	},
	{
		Root: Module + "/internal/transport", Why: "the transport does not link the clients it serves",
		Forbidden: []string{
			Module + "/internal/definitions",
			Module + "/internal/mirror",
			Module + "/internal/doctor",
			Module + "/internal/agent",
			Module + "/internal/publish",
		},
	},
}

// Check returns one line per dependency of deps (a listing of r.Root's
// dependencies) that r forbids, naming the packages that import it; none
// when the listing obeys r.
func (r Rule) Check(deps []Package) []string {
	importers := map[string][]string{}
	for _, p := range deps {
		for _, imp := range p.Imports {
			importers[imp] = append(importers[imp], p.ImportPath)
		}
	}
	var bad []string
	for _, p := range deps {
		if p.ImportPath == r.Root {
			continue
		}
		var why string
		if pre, ok := r.forbids(p.ImportPath); ok {
			why = "forbidden (" + pre + ")"
		} else if r.OnlyStd && !p.Standard && !slices.Contains(r.StdAnd, p.ImportPath) {
			why = "not in the standard library"
		} else {
			continue
		}
		by := importers[p.ImportPath]
		slices.Sort(by)
		bad = append(bad, fmt.Sprintf("%s links %s: %s; imported by %s", r.Root, p.ImportPath, why, strings.Join(by, ", ")))
	}
	return bad
}

// forbids reports the prefix of r.Forbidden that path matches.
func (r Rule) forbids(path string) (string, bool) {
	for _, pre := range r.Forbidden {
		if strings.HasSuffix(pre, "/") {
			if strings.HasPrefix(path, pre) {
				return pre, true
			}
		} else if path == pre || strings.HasPrefix(path, pre+"/") {
			return pre, true
		}
	}
	return "", false
}

// ListFormat is the -f template List gives `go list -deps`: one package a
// line, its import path, "std" or "-", and its imports, separated by tabs.
const ListFormat = `{{.ImportPath}}{{"\t"}}{{if .Standard}}std{{else}}-{{end}}{{"\t"}}{{join .Imports " "}}`

// ParseList parses `go list -deps -f ListFormat` output.
func ParseList(out []byte) ([]Package, error) {
	var pkgs []Package
	for i, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "" || (f[1] != "std" && f[1] != "-") {
			return nil, fmt.Errorf("go list output, line %d: %q: want PATH<TAB>std|-<TAB>IMPORTS", i+1, line)
		}
		pkgs = append(pkgs, Package{ImportPath: f[0], Standard: f[1] == "std", Imports: strings.Fields(f[2])})
	}
	if len(pkgs) == 0 {
		return nil, errors.New("go list output: no package")
	}
	return pkgs, nil
}

// List runs `go list -deps` on root for goos and goarch (CGO_ENABLED=0,
// as Vigil is built), from the current directory, which must be inside the
// module.
func List(ctx context.Context, root, goos, goarch string) ([]Package, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		p := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if os.Getenv("GOROOT") == "" {
			return nil, fmt.Errorf("go list: %w", err)
		}
		goTool = p
	}
	cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-f", ListFormat, root)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s (GOOS=%s GOARCH=%s): %v\n%s", root, goos, goarch, err, stderr.Bytes())
	}
	return ParseList(out)
}
