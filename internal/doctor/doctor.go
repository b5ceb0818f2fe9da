// Package doctor checks, from the machine it runs on, each network flow
// that Vigil needs — for real — and says per flow whether it works, and if
// not, what failed and why, in one line. It is the library behind
// `vigil doctor`.
//
// The checks are derived from the flows: [Checks] builds them from the
// plan of package ports (the flows `vigil ports` lists and writes rules
// for, each with its id, part and the configured address or URL it comes
// from) and from what the checks act with ([Config]: the agent's
// preferences for its credential and pinned key, the mirror's root, the
// relay's configuration), and
// [Run] runs them all at once and returns their results in the plan's
// order. So one flow has one rule and one check: every flow of a plan is
// covered by exactly one Check, which runs, or says why the flow cannot
// be checked from this machine (NotChecked: the server's outgoing
// multicast, a LiveUpdate server's passive data ports, ports kept open
// with -allow); a flow doctor knows no check for is an error. The rules
// are listed on Checks and in docs/ports.md ("vigil doctor").
//
// Each check opens real connections, as the component it stands for
// would, and changes no server state: the agent API is asked for commands
// (read-only), the multicast group is joined and listened to (the socket
// shares the port with a running agent), LiveUpdate servers are asked for
// timestamp.json and their metadata verified in memory against the pinned
// root, and the mirror's upstream is resolved and probed at every address
// without a local repository; on a relay, the server's agent API is asked
// without a credential, the relay's group is listened to for the
// datagrams it re-sends, and its upstream is checked as an agent checks
// a LiveUpdate server. The check functions (Listening, AgentAPI,
// Multicast, RelayMulticast, LiveUpdate, Upstream) can also be called
// alone.
//
// Each Result names its flow with the flow ids of package ports (those of
// docs/ports.md, "The flows"), so that a firewall rule and the check that
// needs it share a name. Every check is bounded by its context and by a
// per-step timeout (Options.Timeout, DefaultTimeout when zero), so nothing
// hangs. Results are printed with Write (aligned text, one line each) or
// WriteJSON.
package doctor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds each step of a check (connecting, one reply)
// when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Result is the outcome of one check.
type Result struct {
	// Flow is the flow checked, one of the Flow constants.
	Flow string
	// Target is what was checked, e.g. "http://10.0.0.1:8080/vigil",
	// "ftp://10.0.0.2:21/repo (passive data)", "239.255.81.92:8192 on eth0".
	Target string
	// OK reports that the flow works.
	OK bool
	// Detail is one line: what worked, or exactly what failed and why.
	Detail string
	// Elapsed is how long the check took.
	Elapsed time.Duration
}

// resultJSON is Result's JSON form.
type resultJSON struct {
	Flow      string  `json:"flow"`
	Target    string  `json:"target"`
	OK        bool    `json:"ok"`
	Detail    string  `json:"detail"`
	ElapsedMS float64 `json:"elapsed_ms"`
}

// MarshalJSON encodes r as {"flow","target","ok","detail","elapsed_ms"},
// the duration in (fractional) milliseconds.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{Flow: r.Flow, Target: r.Target, OK: r.OK, Detail: oneLine(r.Detail),
		ElapsedMS: float64(r.Elapsed.Microseconds()) / 1000})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{Flow: j.Flow, Target: j.Target, OK: j.OK, Detail: j.Detail,
		Elapsed: time.Duration(j.ElapsedMS * float64(time.Millisecond))}
	return nil
}

// Options tune the checks that take them.
type Options struct {
	// Timeout bounds each step: connecting, each reply, each pause in a
	// transfer. Zero means DefaultTimeout.
	Timeout time.Duration
	// TLS is the client TLS configuration for https:// servers (nil: the
	// system's roots).
	TLS *tls.Config
	// CAKey names the setting TLS comes from, in messages (default
	// "ServerCACertificate", the agent's).
	CAKey string
	// Version, GOOS and GOARCH are what Upstream's self-update check
	// compares the newest release with (defaults: this build, runtime.GOOS,
	// runtime.GOARCH).
	Version, GOOS, GOARCH string
}

func (o Options) caKey() string {
	if o.CAKey == "" {
		return "ServerCACertificate"
	}
	return o.CAKey
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// Failed reports whether any result is a failure.
func Failed(results []Result) bool {
	for _, r := range results {
		if !r.OK {
			return true
		}
	}
	return false
}

// Write prints one line per result, in aligned columns:
//
//	ok    commands     239.255.81.92:8192 on lo: signed beacon seq 7 from 127.0.0.1 after 0.4s
//	FAIL  definitions  ftp://10.0.0.2:21/repo (passive data): connect 10.0.0.2:30001: ...
func Write(w io.Writer, results []Result) error {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Flow))
	}
	var b strings.Builder
	for _, r := range results {
		status := "ok"
		if !r.OK {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "%-5s %-*s  %s: %s\n", status, width, r.Flow, oneLine(r.Target), oneLine(r.Detail))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes results as one JSON array (see Result.MarshalJSON),
// followed by a newline.
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	b, err := json.Marshal(results)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// oneLine makes s fit on one line: control characters (newlines, tabs)
// become spaces, and runs of spaces are collapsed.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// fmtDur prints a duration for humans: 0.4ms, 12ms, 1.5s.
func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// describe explains a network error in a few words, naming the address
// and the kind of failure: "connect 10.0.0.1:8080: connection refused",
// "connect 10.0.0.2:30001: i/o timeout after 3s", "resolve vigil.example:
// no such host". step is the per-step timeout, named in timeouts.
func describe(err error, step time.Duration) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		addr := "?"
		if op.Addr != nil {
			addr = op.Addr.String()
		}
		var dns *net.DNSError
		switch {
		case errors.As(err, &dns):
			return "resolve " + dns.Name + ": " + dns.Err
		case op.Timeout() || errors.Is(err, context.DeadlineExceeded):
			return fmt.Sprintf("connect %s: i/o timeout after %s", addr, fmtDur(step))
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Sprintf("connect %s: connection refused", addr)
		case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
			return fmt.Sprintf("connect %s: %v", addr, op.Err)
		}
		return fmt.Sprintf("connect %s: %v", addr, op.Err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "resolve " + dns.Name + ": " + dns.Err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("connected, but no answer within %s (%v)", fmtDur(step), ue.Err)
		}
		return describe(ue.Err, step)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Sprintf("connected, but no answer within %s", fmtDur(step))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline exceeded"
	}
	return err.Error()
}

// hint returns advice for a failed connection: refused, timed out
// connecting, or connected without an answer.
func hint(err error, port string) string {
	var op *net.OpError
	dial := errors.As(err, &op) && op.Op == "dial"
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return " — is the server running and listening on port " + port + "?"
	case dial && isTimeout(err):
		return " — is TCP " + port + " allowed from this machine to the server?"
	case isTimeout(err):
		return " — the connection was accepted but nothing answered: is it the right server and port, or is it overloaded?"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return " — no route to the server: check the address and the routing or firewall (ICMP unreachable)"
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

// dialer returns a TCP dialer bounded by step.
func dialer(step time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}
}

// checkTimer measures one check.
type checkTimer struct{ start time.Time }

func startTimer() checkTimer { return checkTimer{time.Now()} }

func (t checkTimer) result(flow, target string, ok bool, format string, args ...any) Result {
	return Result{Flow: flow, Target: target, OK: ok, Detail: oneLine(fmt.Sprintf(format, args...)), Elapsed: time.Since(t.start)}
}
