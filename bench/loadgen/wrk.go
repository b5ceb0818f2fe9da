package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
)

// CheckInBody is the check-in an idle agent sends, as the agent daemon
// builds it (internal/agent/loop.go): its epoch, identity, version and
// groups, its last sequence, its non-zero counters and its on-access
// state. Sent again and again it changes nothing the console lists (the
// store's cheap, unchanged check-in).
func CheckInBody(id Identity, groups []string) api.CheckInRequest {
	return api.CheckInRequest{
		Epoch: id.Epoch, Hostname: id.Hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: Version,
		Groups: groups, LastSeq: id.LatestSeq,
		Counters: map[string]uint64{agent.CountExecuted: 3, agent.CountOld: 6, agent.CountViaHTTP: 1},
		OnAccess: &api.OnAccessState{Enabled: false, Running: false},
	}
}

// WriteWrkCredentials writes the credentials file bench/wrk/checkin.lua
// reads: the check-in path of nodeURL on the first line, then one line per
// agent with its bearer credential, a tab and its check-in body
// (CheckInBody).
func WriteWrkCredentials(path, nodeURL string, ids []Identity, groups []string) error {
	u, err := url.Parse(api.RouteCheckIn.URL(nodeURL, nil))
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, u.EscapedPath())
	for _, id := range ids {
		body, err := json.Marshal(CheckInBody(id, groups))
		if err != nil {
			f.Close()
			return err
		}
		fmt.Fprintf(w, "%s\t%s\n", id.Token, body)
	}
	return errors.Join(w.Flush(), f.Close())
}

// WrkRun is how to run wrk against a server.
type WrkRun struct {
	// Script is bench/wrk/checkin.lua; Credentials the file
	// WriteWrkCredentials wrote.
	Script, Credentials string
	// URL is the server's base URL (scheme, loopback host and port).
	URL string
	// Threads, Conns and Duration are wrk's -t, -c and -d.
	Threads, Conns int
	Duration       time.Duration
}

// WrkResult is what wrk reported.
type WrkResult struct {
	Requests    int // completed requests
	NonOK       int // "Non-2xx or 3xx responses"
	SocketErrs  int // connect, read, write and timeout errors
	PerSecond   float64
	P50, P99    time.Duration
	Max         time.Duration
	Output      string
	ElapsedWall time.Duration
}

// RunWrk runs wrk with --latency and parses its report.
func RunWrk(ctx context.Context, r WrkRun) (WrkResult, error) {
	if err := CheckLoopbackURL(r.URL); err != nil {
		return WrkResult{}, err
	}
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk is not installed (Debian: apt-get install wrk): %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "-t", strconv.Itoa(r.Threads), "-c", strconv.Itoa(r.Conns),
		"-d", fmt.Sprintf("%ds", int(r.Duration.Seconds())), "--latency", "-s", r.Script, r.URL)
	cmd.Env = append(ChildEnv(), "VIGIL_WRK_CREDS="+r.Credentials, "VIGIL_WRK_THREADS="+strconv.Itoa(r.Threads))
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	res := WrkResult{Output: string(out), ElapsedWall: time.Since(t0)}
	if err != nil {
		return res, fmt.Errorf("wrk: %w: %s", err, out)
	}
	if err := res.parse(string(out)); err != nil {
		return res, fmt.Errorf("wrk: %w; its output:\n%s", err, out)
	}
	return res, nil
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkRate     = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkNonOK    = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	wrkSocket   = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s*(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkMax      = regexp.MustCompile(`(?m)^\s*Latency\s+\S+\s+\S+\s+([0-9.]+)(us|ms|s)`)
)

func wrkDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	}
	return time.Duration(f * float64(time.Second))
}

// parse reads wrk's --latency report.
func (r *WrkResult) parse(out string) error {
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return errors.New("no request count in the report")
	}
	r.Requests, _ = strconv.Atoi(m[1])
	if m = wrkRate.FindStringSubmatch(out); m == nil {
		return errors.New("no Requests/sec in the report")
	}
	r.PerSecond, _ = strconv.ParseFloat(m[1], 64)
	if m = wrkNonOK.FindStringSubmatch(out); m != nil {
		r.NonOK, _ = strconv.Atoi(m[1])
	}
	if m = wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.SocketErrs += n
		}
	}
	found := 0
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		d := wrkDuration(m[2], m[3])
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
		found++
	}
	if found != 2 {
		return errors.New("no 50% and 99% latencies in the report (was --latency given?)")
	}
	if m = wrkMax.FindStringSubmatch(out); m != nil {
		r.Max = wrkDuration(m[1], m[2])
	}
	if !strings.Contains(out, "Latency Distribution") {
		return errors.New("no latency distribution in the report")
	}
	return nil
}
