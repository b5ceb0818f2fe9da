package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/dnsname"
	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/ports"
)

// Upstream checks the mirror's flows to the vendor's repository at rawURL
// (the mirror's upstream: ftp://, http:// or https://NAME[:PORT]/PATH),
// with internal/mirror's own code, without a local repository:
//
//   - ports.FlowDNS: NAME resolves (with resolver, a DNS server's "host:port",
//     or the system's when ""), as the mirror resolves it; the detail shows
//     the CNAME chain and every address.
//   - ports.FlowMirrorSync, one result per address: the address answers on the
//     upstream's protocol and serves metadata that verifies from root (the
//     pinned 1.root.json): its root chain, then timestamp.json, as the
//     mirror probes it before choosing an address.
//   - ports.FlowSelfUpdate: on the best address (highest timestamp version), the
//     repository's metadata is refreshed and searched for the newest Vigil
//     release for this platform, as the mirror's self-update check does.
//     No release published is not a failure.
//
// An address literal in the URL gives a DNS result saying no query was
// needed.
func Upstream(ctx context.Context, rawURL, resolver string, root []byte, o Options) []Result {
	t := startTimer()
	step := o.timeout()
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return []Result{t.result(ports.FlowMirrorSync, rawURL, false, "not an upstream URL (ftp://, http:// or https://NAME[:PORT]/PATH)")}
	}
	shown := u.Redacted()
	if u.Scheme != "ftp" && u.Scheme != "http" && u.Scheme != "https" {
		return []Result{t.result(ports.FlowMirrorSync, shown, false, "scheme %q: want ftp://, http:// or https://", u.Scheme)}
	}
	name := u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[string]string{"ftp": "21", "http": "80", "https": "443"}[u.Scheme]
	}
	cfg := mirror.Config{
		Upstream: rawURL, Root: root, Resolver: resolver, Timeout: step, TLS: o.TLS,
		Version: o.Version, GOOS: o.GOOS, GOARCH: o.GOARCH,
	}
	if cfg.Version == "" {
		cfg.Version = buildinfo.String()
	}
	if cfg.GOOS == "" {
		cfg.GOOS = runtime.GOOS
	}
	if cfg.GOARCH == "" {
		cfg.GOARCH = runtime.GOARCH
	}

	// Name resolution.
	dnsTarget := name
	if resolver != "" {
		dnsTarget += " via " + resolver
	} else {
		dnsTarget += " via the system's resolver"
	}
	res, err := dnsname.Resolve(ctx, name, resolver, min(step, 5*time.Second))
	if err != nil {
		var nf *dnsname.NotFoundError
		if errors.As(err, &nf) {
			return []Result{t.result(ports.FlowDNS, dnsTarget, false, "%v: the resolver answered, but has no address for the name", err)}
		}
		return []Result{t.result(ports.FlowDNS, dnsTarget, false, "%v%s", err, dnsHint(resolver))}
	}
	var dns Result
	if res.Resolver == "none" {
		dns = t.result(ports.FlowDNS, name, true, "an address, not a name: nothing to resolve")
	} else {
		by := ""
		if resolver == "" {
			by = "answered by " + res.Resolver + " "
		}
		dns = t.result(ports.FlowDNS, dnsTarget, true, "%s (%sin %s)", hostLine(res), by, fmtDur(time.Since(t.start)))
	}
	results := []Result{dns}

	// Every address.
	probes := make([]mirror.Probe, len(res.Addrs))
	perAddr := make([]Result, len(res.Addrs))
	var wg sync.WaitGroup
	for i, a := range res.Addrs {
		wg.Go(func() {
			pt := startTimer()
			target := fmt.Sprintf("%s at %s", shown, a)
			p, err := mirror.ProbeAddress(ctx, cfg, a)
			probes[i] = p
			if err != nil {
				perAddr[i] = pt.result(ports.FlowMirrorSync, target, false, "%s", explainProbe(err, step, port))
				return
			}
			perAddr[i] = pt.result(ports.FlowMirrorSync, target, true, "answers: timestamp version %d verifies (snapshot %d, root %d) in %s",
				p.TimestampVersion, p.SnapshotVersion, p.RootVersion, fmtDur(time.Duration(p.Millis*float64(time.Millisecond))))
		})
	}
	wg.Wait()
	results = append(results, perAddr...)

	// The self-update check, on the best address.
	best := -1
	for i, r := range perAddr {
		if r.OK && (best < 0 || probes[i].TimestampVersion > probes[best].TimestampVersion) {
			best = i
		}
	}
	st := startTimer()
	suTarget := fmt.Sprintf("%s (Vigil release for %s/%s)", shown, cfg.GOOS, cfg.GOARCH)
	if best < 0 {
		return append(results, st.result(ports.FlowSelfUpdate, suTarget, false, "not checked: no address of %s serves metadata that verifies", name))
	}
	addr := res.Addrs[best]
	suTarget = fmt.Sprintf("%s at %s (Vigil release for %s/%s)", shown, addr, cfg.GOOS, cfg.GOARCH)
	c, err := mirror.CheckRelease(ctx, cfg, addr)
	switch {
	case err != nil:
		results = append(results, st.result(ports.FlowSelfUpdate, suTarget, false, "%v", err))
	case c.Latest == "":
		results = append(results, st.result(ports.FlowSelfUpdate, suTarget, true, "no Vigil release published for %s/%s (running %s)", cfg.GOOS, cfg.GOARCH, c.Running))
	case c.Available:
		results = append(results, st.result(ports.FlowSelfUpdate, suTarget, true, "newest Vigil release %s; running %s: newer available (vigil mirror -self-update installs it)", c.Latest, c.Running))
	default:
		results = append(results, st.result(ports.FlowSelfUpdate, suTarget, true, "newest Vigil release %s; running %s: up to date", c.Latest, c.Running))
	}
	return results
}

// hostLine summarises a resolution on one line:
// "liveupdate.vendor.test is an alias for lu.geo.vendor.test. → … has
// addresses 127.0.0.2, 127.0.0.3".
func hostLine(r *dnsname.Resolution) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(r.Name, "."))
	for _, a := range r.Aliases {
		b.WriteString(" → " + strings.TrimSuffix(a.Target, ".") + " (CNAME)")
	}
	addrs := make([]string, len(r.Addrs))
	for i, a := range r.Addrs {
		addrs[i] = a.String()
	}
	s := "es"
	if len(addrs) == 1 {
		s = ""
	}
	fmt.Fprintf(&b, " has address%s %s", s, strings.Join(addrs, ", "))
	return b.String()
}

func dnsHint(resolver string) string {
	if resolver == "" {
		return " — are UDP and TCP 53 to the resolvers of /etc/resolv.conf allowed?"
	}
	return " — is UDP and TCP 53 to " + resolver + " allowed?"
}

// explainProbe explains why an address failed its probe: a connection
// that could not be made is described as such, with advice; anything else
// (metadata refused, FTP or HTTP errors) is the mirror's own explanation.
func explainProbe(err error, step time.Duration, port string) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return describe(err, step) + hint(err, port)
	}
	return err.Error() + hint(err, port)
}
