//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/netlab"
)

// mitmArg is the first argument that makes the test binary run as the
// attacker's HTTP proxy (see runMITMProxy) instead of running tests.
const mitmArg = "vigil-test-mitm-proxy"

// When the test binary is started as the attacker's proxy, it is that and
// nothing else.
func init() {
	if len(os.Args) == 5 && os.Args[1] == mitmArg {
		if err := runMITMProxy(os.Args[2], os.Args[3], os.Args[4]); err != nil {
			fmt.Fprintln(os.Stderr, "mitm proxy:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// runMITMProxy is an on-path attacker on the agent's plain-HTTP channel: a
// reverse proxy from LISTEN to UPSTREAM that, once the file DIR/attack
// exists, attacks the agent the way a deployment's attacker did:
//
//   - it answers check-ins with 401, as if the server had forgotten the
//     agent, until the agent enrolls again;
//   - it rewrites the enrollment answer's latest_seq (the epoch proof
//     aside, which it cannot forge) to 0, so that the agent believes it
//     must start from the beginning, and every later check-in answer's to
//     1000, so that the agent believes it is behind and fetches;
//   - it rewrites every "commands after N" request to "after 0", so the
//     server hands out every command it ever signed — genuine envelopes the
//     agent has executed already.
//
// An agent that trusts the channel re-executes every command; the agent
// must not.
//
// Each attack it carries out is a line in DIR/attacks.log, so the test can
// prove the attack happened.
func runMITMProxy(listen, upstream, dir string) error {
	up, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "attacks.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(logf, format+"\n", args...)
		logf.Sync()
	}
	attacking := func() bool {
		_, err := os.Stat(filepath.Join(dir, "attack"))
		return err == nil
	}
	var (
		reenrolled bool // the agent enrolled again during the attack
		stateMu    sync.Mutex
	)
	rp := httputil.NewSingleHostReverseProxy(up)
	// rewrite sets JSON fields of a response body.
	rewrite := func(resp *http.Response, set map[string]any) error {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		for k, v := range set {
			m[k] = v
		}
		b, _ = json.Marshal(m)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		if !attacking() {
			return nil
		}
		switch path := resp.Request.URL.Path; {
		case strings.HasSuffix(path, api.RouteEnroll.Pattern) && resp.StatusCode == http.StatusCreated:
			note("enroll: rewrote latest_seq to 0")
			stateMu.Lock()
			reenrolled = true
			stateMu.Unlock()
			return rewrite(resp, map[string]any{"latest_seq": 0})
		case strings.HasSuffix(path, api.RouteCheckIn.Pattern) && resp.StatusCode == http.StatusOK:
			note("checkin: rewrote latest_seq to 1000")
			return rewrite(resp, map[string]any{"latest_seq": 1000, "changed": true})
		}
		return nil
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attacking() {
			stateMu.Lock()
			re := reenrolled
			stateMu.Unlock()
			switch {
			case strings.HasSuffix(r.URL.Path, api.RouteCheckIn.Pattern) && !re:
				note("checkin: answered 401")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error":"unknown agent or wrong credential"}`)
				return
			case strings.HasSuffix(r.URL.Path, api.RouteCommands.Pattern):
				note("commands: asked after=%s, served after=0", r.URL.Query().Get("after"))
				q := r.URL.Query()
				q.Set("after", "0")
				r.URL.RawQuery = q.Encode()
			}
		}
		rp.ServeHTTP(w, r)
	})
	return http.ListenAndServe(listen, h)
}

// TestMITMCannotReplayCommands puts an attacker's HTTP proxy (a real
// process, on its own lab host) between an agent and its server, on the
// plain-HTTP channel. The agent executes four commands; then the proxy
// makes the server look as if it had forgotten the agent (401s), rewrites
// the enrollment answer to start from sequence 0, and serves every command
// the server ever signed when the agent asks for what it missed. The
// agent must enroll again only after repeated refusals, logging each as an
// error, and must not execute any of the four commands again: at-most-once
// rests on signatures and the agent's journal, not on the HTTP channel.
func TestMITMCannotReplayCommands(t *testing.T) {
	t.Parallel()
	netlab.RequireNft(t)
	lab := netlab.New(t)
	srvHost, mitmHost, agentHost := lab.AddHost("server"), lab.AddHost("mitm"), lab.AddHost("agent")

	const (
		group     = "239.255.81.92"
		port      = 8192
		adminAddr = "127.0.0.1:8081"
	)
	dataDir := t.TempDir()
	srvPlace := hostPlace(srvHost)
	srv := srvPlace.start(t, "server", "server",
		"-data-dir", dataDir, "-listen", srvHost.IP4.String()+":8080", "-admin-listen", adminAddr,
		"-group", group, "-port", strconv.Itoa(port), "-interface", srvHost.Ifname, "-ttl", "1",
		"-beacon-interval", "500ms", "-spread", "200ms", "-checkin-interval", "2s")
	srv.WaitLog(t, "server listening", 30*time.Second)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctl := t.TempDir()
	mitmHost.Start(t, exe, mitmArg, mitmHost.IP4.String()+":8080", "http://"+srvHost.IP4.String()+":8080", ctl)

	f := &fleet{t: t, admin: srvPlace, adminURL: "http://" + adminAddr, dataDir: dataDir, startedAt: time.Now()}
	m := f.addMember("victim", hostPlace(agentHost), "http://"+mitmHost.IP4.String()+":8080/vigil", group, port, agentHost.Ifname, "lab")
	f.startAgent(m)
	f.learnIDs()

	for range 4 {
		f.send(command.Target{All: true}, "ping")
	}
	f.waitResults(60 * time.Second)
	f.logf("the agent executed commands 1-4 through the proxy; the attack starts")

	if err := os.WriteFile(filepath.Join(ctl, "attack"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The agent re-enrolls after repeated refusals; wait for the proxy to
	// have rewritten that enrollment, then for the agent to have asked for
	// (and been handed) the commands it had executed.
	attacks := func() string {
		b, _ := os.ReadFile(filepath.Join(ctl, "attacks.log"))
		return string(b)
	}
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(attacks(), "enroll: rewrote") || !strings.Contains(attacks(), "commands: asked") {
		if time.Now().After(deadline) {
			t.Fatalf("the attack did not complete within 90s; proxy's attacks:\n%s\nagent log:\n%s", attacks(), m.proc.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	refusals := countLines(attacks(), "checkin: answered 401")
	f.logf("attack: %d check-ins answered 401, enrollment rewritten, fetches served from sequence 0:\n%s", refusals, attacks())
	if refusals < 2 {
		t.Errorf("the agent enrolled again after %d refused check-in(s); it must wait for repeated refusals", refusals)
	}
	if n := countLines(m.proc.Log(), "level=ERROR"); n < refusals {
		t.Errorf("the agent logged %d errors for %d refused check-ins; each refusal must be an error", n, refusals)
	}

	// A new command still reaches the agent (under its new identity), and
	// runs once. (Only its result is waited for: the first four were
	// reported under the agent's first identity.)
	f.learnIDsAfterReenroll(m)
	before := f.cmds
	f.cmds = nil
	f.send(command.Target{All: true}, "ping")
	f.waitResults(60 * time.Second)
	f.cmds = append(before, f.cmds...)
	f.stopAgents()

	executed := map[string]int{}
	for _, l := range strings.Split(m.proc.Log(), "\n") {
		if strings.Contains(l, "command executed") {
			executed[seqRE.FindString(l)]++
		}
	}
	for _, c := range f.cmds {
		if n := executed["seq="+strconv.FormatUint(c.Seq, 10)]; n != 1 {
			t.Errorf("the agent executed command %d %d times, want exactly once; agent log:\n%s", c.Seq, n, m.proc.Log())
		}
	}
	if len(executed) != len(f.cmds) {
		t.Errorf("the agent executed %v; the test issued %d commands", executed, len(f.cmds))
	}
}

var seqRE = regexp.MustCompile(`seq=\d+`)

// learnIDsAfterReenroll points m at the id it enrolled under last (the
// newest agent whose hostname is m's) and removes the identity it left
// behind, as an administrator would with vigil agents remove.
func (f *fleet) learnIDsAfterReenroll(m *member) {
	f.t.Helper()
	var newest time.Time
	var all []string
	for _, a := range f.agentInfo() {
		if a.Hostname != m.name {
			continue
		}
		all = append(all, a.ID)
		if a.EnrolledAt.After(newest) {
			newest, m.id = a.EnrolledAt, a.ID
		}
	}
	for _, id := range all {
		if id == m.id {
			continue
		}
		if out, err := f.vigil("agents", "remove", id); err != nil {
			f.t.Fatal(err)
		} else {
			f.logf("%s", strings.TrimSpace(string(out)))
		}
	}
}
