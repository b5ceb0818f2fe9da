package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/mcast"
	"github.com/vigil-fleet/vigil/internal/wire"
)

var all = command.Command{Name: "ping", Target: command.Target{All: true}}

func readIdentity(t *testing.T, dir string) agent.Identity {
	t.Helper()
	st, ok, err := agent.ReadState(dir)
	if err != nil || !ok {
		t.Fatalf("identity in %s: enrolled %v, %v", dir, ok, err)
	}
	return st.Identity
}

func executed(t *testing.T, dir string) []uint64 {
	t.Helper()
	seqs, err := agent.ExecutedSeqs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestAgentEnrollmentProvesThePin: the agent keeps an enrollment only when
// the answer's epoch statement verifies under its pinned key, names it,
// echoes its nonce and is unexpired. Otherwise it refuses at once, says
// why (a wrong pin by both key ids), keeps nothing and does not retry.
func TestAgentEnrollmentProvesThePin(t *testing.T) {
	t.Parallel()
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name     string
		wrongPin bool
		tamper   func(f *fakeServer, req api.EnrollRequest, resp *api.EnrollResponse)
		want     []string
	}{
		{name: "wrong ServerPublicKey", wrongPin: true},
		{name: "no proof", tamper: func(_ *fakeServer, _ api.EnrollRequest, resp *api.EnrollResponse) { resp.Proof = nil },
			want: []string{"carries no signed epoch statement"}},
		{name: "signed by another key", tamper: func(f *fakeServer, req api.EnrollRequest, resp *api.EnrollResponse) {
			resp.Proof = f.statement(other, resp.Epoch, resp.LatestSeq, resp.AgentID, req.Nonce, time.Now())
		}, want: []string{"ServerPublicKey does not match the server's signing key", fmt.Sprintf("%x", wire.KeyID(other.Public().(ed25519.PublicKey)))}},
		{name: "altered on the way", tamper: func(_ *fakeServer, _ api.EnrollRequest, resp *api.EnrollResponse) {
			resp.Proof[22+7] ^= 1 // the sequence: a man in the middle sets it back
		}, want: []string{"ServerPublicKey does not match the server's signing key", "does not verify"}},
		{name: "for another agent", tamper: func(f *fakeServer, req api.EnrollRequest, resp *api.EnrollResponse) {
			resp.Proof = f.statement(f.priv, resp.Epoch, resp.LatestSeq, "agent9999", req.Nonce, time.Now())
		}, want: []string{`is for agent "agent9999"`}},
		{name: "replayed from another enrollment", tamper: func(f *fakeServer, _ api.EnrollRequest, resp *api.EnrollResponse) {
			resp.Proof = f.statement(f.priv, resp.Epoch, 0, resp.AgentID, strings.Repeat("ab", 16), time.Now())
		}, want: []string{"answers another request"}},
		{name: "expired", tamper: func(f *fakeServer, req api.EnrollRequest, resp *api.EnrollResponse) {
			resp.Proof = f.statement(f.priv, resp.Epoch, resp.LatestSeq, resp.AgentID, req.Nonce, time.Now().Add(-time.Hour))
		}, want: []string{"expired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t)
			f.issue(all)
			dir := t.TempDir()
			p := f.prefs(t, dir)
			want := tc.want
			if tc.wrongPin {
				p.ServerPublicKey = base64.StdEncoding.EncodeToString(other.Public().(ed25519.PublicKey))
				want = []string{"ServerPublicKey does not match the server's signing key",
					fmt.Sprintf("ServerPublicKey has key id %x, the server signs with key id %x", wire.KeyID(other.Public().(ed25519.PublicKey)), wire.KeyID(f.pub()))}
			}
			if tc.tamper != nil {
				f.onEnroll = func(w http.ResponseWriter, req api.EnrollRequest, resp *api.EnrollResponse) bool {
					tc.tamper(f, req, resp)
					return false
				}
			}
			a, err := agent.New(agent.Config{Prefs: p, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = a.Run(ctx)
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Run = %v, want a refusal", err)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if n := f.enrollCount(); n != 1 {
				t.Errorf("%d enrollment requests, want 1 (no retry)", n)
			}
			if a.ID() != "" {
				t.Errorf("agent kept the id %s", a.ID())
			}
			if _, err := os.Stat(filepath.Join(dir, agent.FileIdentityName)); !os.IsNotExist(err) {
				t.Errorf("identity kept: %v", err)
			}
		})
	}
}

// TestAgentReenrollsOnlyAfterRepeatedRefusals: one 401 at check-in
// changes nothing; five in a row (each logged as an error) make the agent
// enroll again, keeping its journal, so that an enrollment answer that
// says "latest sequence 0" (signed or not) runs nothing again; the results
// it had not reported are reported under the new identity.
func TestAgentReenrollsOnlyAfterRepeatedRefusals(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	dir := t.TempDir()
	resultsDown, refuse := false, 0
	f.onResults = func(w http.ResponseWriter, _ string, _ api.ResultsRequest) bool {
		if resultsDown {
			writeErr(w, http.StatusServiceUnavailable, "", "store unavailable")
		}
		return resultsDown
	}
	f.onCheckIn = func(w http.ResponseWriter, _ string, _ api.CheckInRequest, _ *api.CheckInResponse) bool {
		if refuse > 0 {
			refuse--
			writeErr(w, http.StatusUnauthorized, "", "unknown agent or wrong credential")
			return true
		}
		return false
	}
	r, logs := startAgentLog(t, f.prefs(t, dir))
	waitFor(t, "enrollment", func() bool { return r.count("checkin") > 0 })
	id1 := r.a.ID()
	s1, s2 := f.issue(all), f.issue(all)
	waitFor(t, "results 1 and 2", func() bool { res := f.resultsOf(id1); return len(res[s1]) == 1 && len(res[s2]) == 1 })
	f.with(func() { resultsDown = true })
	s3, s4 := f.issue(all), f.issue(all)
	waitFor(t, "commands 3 and 4 executed", func() bool { return r.count("executed") == 4 })

	// One refusal: logged, nothing else.
	checkins := func() int { n := 0; f.with(func() { n = len(f.checkins) }); return n }
	f.with(func() { refuse = 1 })
	before := checkins()
	waitFor(t, "a check-in after the refusal", func() bool { return checkins() >= before+2 })
	if n := f.enrollCount(); n != 1 {
		t.Fatalf("one 401 made the agent enroll again (%d enrollments)", n)
	}
	if n := logs.count("level=ERROR msg=\"the server refused the agent's credential\""); n != 1 {
		t.Fatalf("%d errors logged for one refusal:\n%s", n, logs)
	}

	// Five in a row; the new enrollment's statement (genuinely signed)
	// says the agent starts after sequence 0, and its latest_seq too.
	f.with(func() {
		refuse = 5
		f.onEnroll = func(_ http.ResponseWriter, req api.EnrollRequest, resp *api.EnrollResponse) bool {
			resultsDown = false
			resp.LatestSeq = 0
			resp.Proof = f.statement(f.priv, f.epoch, 0, resp.AgentID, req.Nonce, time.Now())
			return false
		}
	})
	waitFor(t, "enrollment again", func() bool { return f.enrollCount() == 2 && r.a.ID() != id1 })
	id2 := r.a.ID()
	if n := logs.count("the server refused the agent's credential"); n != 6 {
		t.Fatalf("%d refusals logged, want 6:\n%s", n, logs)
	}
	waitFor(t, "the unreported results under the new identity", func() bool {
		res := f.resultsOf(id2)
		return len(res[s3]) == 1 && len(res[s4]) == 1
	})
	waitFor(t, "a check-in under the new identity", func() bool { c, ok := f.lastCheckIn(id2); return ok && c.LastSeq == s4 })
	s5 := f.issue(all)
	waitFor(t, "command 5", func() bool { return len(f.resultsOf(id2)[s5]) == 1 })
	if got := r.seqs("executed"); !slices.Equal(got, []uint64{s1, s2, s3, s4, s5}) {
		t.Fatalf("executed %v, want each of 1-5 once", got)
	}
	if res := f.resultsOf(id2); len(res[s1]) != 0 || len(res[s2]) != 0 {
		t.Fatalf("reported results again under the new identity: %v", res)
	}
}

// TestAgentFollowsNewEpoch: the agent follows a check-in's epoch statement
// only when it verifies, names it and is newer than the one that put it
// in its epoch; then it records the new epoch and runs what it missed.
func TestAgentFollowsNewEpoch(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	dir := t.TempDir()
	r, logs := startAgentLog(t, f.prefs(t, dir))
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	}()
	waitFor(t, "enrollment", func() bool { return r.count("checkin") > 0 })
	id := r.a.ID()
	e1 := readIdentity(t, dir)
	if e1.Epoch != f.epoch || e1.EpochIssued.IsZero() {
		t.Fatalf("identity %+v", e1)
	}
	s1, s2, s3 := f.issue(all), f.issue(all), f.issue(all)
	waitFor(t, "results", func() bool { return len(f.resultsOf(id)[s3]) == 1 })

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for _, bad := range []struct {
		name  string
		proof func() []byte
	}{
		{"issued before the agent's statement (replayed)", func() []byte {
			return f.statement(f.priv, f.epoch+7, 0, id, "", e1.EpochIssued.Add(-time.Second))
		}},
		{"for another agent", func() []byte { return f.statement(f.priv, f.epoch+7, 0, "agent9999", "", time.Now()) }},
		{"signed by another key", func() []byte { return f.statement(other, f.epoch+7, 0, id, "", time.Now()) }},
		{"with an enrollment nonce", func() []byte { return f.statement(f.priv, f.epoch+7, 0, id, strings.Repeat("cd", 16), time.Now()) }},
	} {
		sent := false
		f.with(func() {
			f.onCheckIn = func(_ http.ResponseWriter, _ string, _ api.CheckInRequest, resp *api.CheckInResponse) bool {
				if !sent {
					sent = true
					resp.EpochProof = bad.proof()
				}
				return false
			}
		})
		n := r.count("checkin")
		waitFor(t, "check-ins after the statement", func() bool { return r.count("checkin") > n+1 })
		if c, _ := f.lastCheckIn(id); c.Epoch != e1.Epoch || readIdentity(t, dir).Epoch != e1.Epoch {
			t.Fatalf("%s: the agent followed it (check-in epoch %d)", bad.name, c.Epoch)
		}
	}
	f.with(func() { f.onCheckIn = nil })

	// The server's data directory is restored from a backup that had
	// only command 1; it moves to a new epoch, and numbers on from 1.
	f.newEpoch(s1)
	e2 := f.epoch
	n1, n2 := f.issue(all), f.issue(all)
	if n1 != s2 || n2 != s3 {
		t.Fatal("the fake server numbered the new epoch's commands wrongly")
	}
	waitFor(t, "the new epoch's commands", func() bool {
		res := f.resultsOf(id)
		return len(res[n1]) == 2 && len(res[n2]) == 2
	})
	st := readIdentity(t, dir)
	if st.Epoch != e2 || !st.EpochIssued.After(e1.EpochIssued) {
		t.Fatalf("identity after the new epoch: %+v", st)
	}
	waitFor(t, "a check-in in the new epoch", func() bool { c, _ := f.lastCheckIn(id); return c.Epoch == e2 && c.LastSeq == n2 })
	if got := executed(t, dir); !slices.Equal(got, []uint64{n1, n2}) {
		t.Fatalf("executed in the new epoch %v, want [%d %d]", got, n1, n2)
	}
	if r.count("executed") != 5 || r.count("epoch") != 1 {
		t.Fatalf("executed %d commands, followed %d epochs", r.count("executed"), r.count("epoch"))
	}
}

// TestAgentWrongEpochDatagramChecksIn: a datagram signed by the server in
// another epoch makes the agent check in within the spread window (its
// interval is an hour), to learn of a new epoch at once.
func TestAgentWrongEpochDatagramChecksIn(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	p := f.prefs(t, t.TempDir())
	p.CheckInInterval = time.Hour
	r := startAgent(t, p)
	waitFor(t, "enrollment", func() bool { return r.count("checkin") == 1 })
	snd, err := mcast.NewSender(mcast.Config{Group: netip.MustParseAddr(p.MulticastAddress), Port: p.MulticastPort, Interface: p.MulticastInterface, TTL: 0, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	body, _ := command.Encode(all)
	now := time.Now()
	d, err := wire.Sign(f.priv, wire.Header{Kind: wire.KindCommand, Epoch: f.epoch + 1, Seq: 1, Issued: now, Expires: now.Add(time.Hour)}, body)
	if err != nil {
		t.Fatal(err)
	}
	// Multicast may lose a datagram: send until the agent has counted one.
	waitFor(t, "the datagram counted", func() bool {
		snd.Send(d)
		return r.a.Counters().Get(agent.CountWrongEpoch) > 0
	})
	waitFor(t, "a check-in soon after", func() bool { return r.count("checkin") >= 2 })

	// More of them (a replay) within the minute bring nothing forward: the
	// fleet must not be made to check in again and again.
	n := r.a.Counters().Get(agent.CountWrongEpoch)
	waitFor(t, "more datagrams counted", func() bool {
		snd.Send(d)
		return r.a.Counters().Get(agent.CountWrongEpoch) >= n+5
	})
	time.Sleep(10 * 20 * time.Millisecond) // ten spread windows: a check-in would have come
	if c := r.count("checkin"); c != 2 {
		t.Fatalf("%d check-ins after a burst of other-epoch datagrams, want 2", c)
	}
}

// TestAgentRevoked: a 403 "revoked" makes the agent stop talking to the
// server, for good: it records it, and a restart neither checks in nor
// enrolls again.
func TestAgentRevoked(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	dir := t.TempDir()
	p := f.prefs(t, dir)
	r, logs := startAgentLog(t, p)
	waitFor(t, "enrollment", func() bool { return r.count("checkin") > 0 })
	f.with(func() {
		f.onCheckIn = func(w http.ResponseWriter, _ string, _ api.CheckInRequest, _ *api.CheckInResponse) bool {
			writeErr(w, http.StatusForbidden, api.ReasonRevoked, "agent revoked by an administrator")
			return true
		}
	})
	waitFor(t, "revocation", func() bool { return r.count("revoked") == 1 })
	if !strings.Contains(logs.String(), "level=ERROR msg=\"an administrator revoked this agent") {
		t.Fatalf("log:\n%s", logs)
	}
	if readIdentity(t, dir).Revoked.IsZero() {
		t.Fatal("revocation not recorded")
	}
	// Absence can only be observed over time: twenty check-in intervals.
	requests := func() int { n := 0; f.with(func() { n = f.requests }); return n }
	n := requests()
	f.issue(all)
	time.Sleep(20 * p.CheckInInterval)
	if requests() != n || r.count("executed") != 0 {
		t.Fatalf("a revoked agent made %d requests, executed %d", requests()-n, r.count("executed"))
	}
	r.stop()
	r2 := startAgent(t, p)
	time.Sleep(20 * p.CheckInInterval)
	if requests() != n || f.enrollCount() != 1 || r2.count("checkin") != 0 {
		t.Fatalf("restarted revoked agent: %d requests, %d enrollments", requests()-n, f.enrollCount())
	}
}

// TestAgentResultVerdicts: outputs are cut to api.MaxOutput; a failed
// request keeps every result; the server's verdicts forget the accepted
// and the refused (logged) results and keep the others; an empty 204
// answer (a server from before verdicts) accepts all.
func TestAgentResultVerdicts(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	dir := t.TempDir()
	p := f.prefs(t, dir)
	p.Hostname = strings.Repeat("h", api.MaxOutput) // "pong from HOST" is too long
	var posts [][]uint64
	f.onResults = func(w http.ResponseWriter, agent string, req api.ResultsRequest) bool {
		var seqs []uint64
		resp := api.ResultsResponse{Accepted: []uint64{}}
		for _, res := range req.Results {
			seqs = append(seqs, res.Seq)
			if len(res.Output) > api.MaxOutput {
				resp.Refused = append(resp.Refused, api.RefusedResult{Seq: res.Seq, Error: "output too long"})
				continue
			}
			switch len(posts) {
			case 0:
			case 1: // accept the first, refuse the second, judge not the third
				switch res.Seq {
				case 1:
					f.results = append(f.results, agentResult{agent, res})
					resp.Accepted = append(resp.Accepted, res.Seq)
				case 2:
					resp.Refused = append(resp.Refused, api.RefusedResult{Seq: 2, Error: "command 2 is not for this agent"})
				}
			default:
				f.results = append(f.results, agentResult{agent, res})
				resp.Accepted = append(resp.Accepted, res.Seq)
			}
		}
		posts = append(posts, seqs)
		switch len(posts) {
		case 1:
			writeErr(w, http.StatusServiceUnavailable, "", "store unavailable")
		case 4:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSONResp(w, http.StatusOK, resp)
		}
		return true
	}
	r, logs := startAgentLog(t, p)
	waitFor(t, "enrollment", func() bool { return r.count("checkin") > 0 })
	id := r.a.ID()
	f.issueN(3, all)
	waitFor(t, "result 3", func() bool { return len(f.resultsOf(id)[3]) == 1 })
	s4 := f.issue(all)
	waitFor(t, "result 4 (204)", func() bool { n := 0; f.with(func() { n = len(posts) }); return n == 4 })
	s5 := f.issue(all)
	waitFor(t, "result 5", func() bool { return len(f.resultsOf(id)[s5]) == 1 })
	f.with(func() {
		want := [][]uint64{{1, 2, 3}, {1, 2, 3}, {3}, {s4}, {s5}}
		if fmt.Sprint(posts) != fmt.Sprint(want) {
			t.Errorf("posted %v, want %v", posts, want)
		}
		for _, res := range f.results {
			if len(res.Output) > api.MaxOutput || !strings.HasSuffix(res.Output, "[cut to 4 KiB]") {
				t.Errorf("result %d: output of %d bytes %q…", res.Seq, len(res.Output), res.Output[:20])
			}
		}
	})
	if !strings.Contains(logs.String(), `level=ERROR msg="the server refused a result for good; dropping it" seq=2 reason="command 2 is not for this agent"`) {
		t.Errorf("refusal not logged:\n%s", logs)
	}
	// The journal holds the cut output too.
	b, _ := os.ReadFile(filepath.Join(dir, agent.FileJournalName))
	if strings.Contains(string(b), strings.Repeat("h", api.MaxOutput)) {
		t.Error("the journal holds an output longer than api.MaxOutput")
	}
}

// TestAgentChecksMulticastBeforeEnrolling: an agent whose multicast
// receiver cannot be set up fails before it enrolls, leaving no ghost on
// the server.
func TestAgentChecksMulticastBeforeEnrolling(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	p := f.prefs(t, t.TempDir())
	p.MulticastInterface = "nosuchif9"
	a, err := agent.New(agent.Config{Prefs: p, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nosuchif9") || !strings.Contains(err.Error(), "MulticastInterface") {
		t.Fatalf("Run = %v", err)
	}
	if n := f.enrollCount(); n != 0 {
		t.Fatalf("the agent enrolled (%d requests) before failing", n)
	}
}

// TestAgentHTTPManInTheMiddle: a proxy on the plain-HTTP path between the
// agent and the server answers every check-in with 401 and rewrites the
// enrollment answer (latest_seq 0, or a replay of the agent's first
// signed answer). The agent re-enrolls only after repeated refusals,
// refuses the replayed answer (keeping its credential), and never runs a
// command twice.
func TestAgentHTTPManInTheMiddle(t *testing.T) {
	t.Parallel()
	for _, replay := range []bool{false, true} {
		t.Run(fmt.Sprintf("replay=%v", replay), func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t)
			target, _ := url.Parse(f.srv.URL)
			var mu sync.Mutex
			attack, refusals := false, 0
			var firstProof []byte
			proxy := httputil.NewSingleHostReverseProxy(target)
			proxy.ModifyResponse = func(resp *http.Response) error {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case strings.HasSuffix(resp.Request.URL.Path, api.RouteCheckIn.Pattern) && attack:
					refusals++
					resp.StatusCode = http.StatusUnauthorized
					resp.Body = io.NopCloser(strings.NewReader(`{"error":"unknown agent or wrong credential"}`))
					resp.Header.Del("Content-Length")
				case strings.HasSuffix(resp.Request.URL.Path, api.RouteEnroll.Pattern):
					var er api.EnrollResponse
					b, _ := io.ReadAll(resp.Body)
					if err := json.Unmarshal(b, &er); err != nil {
						return err
					}
					if firstProof == nil {
						firstProof = er.Proof
					} else {
						er.LatestSeq = 0
						if replay {
							er.Proof = firstProof
						}
					}
					b, _ = json.Marshal(er)
					resp.Body = io.NopCloser(bytes.NewReader(b))
					resp.ContentLength = int64(len(b))
					resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
				}
				return nil
			}
			mitm := httptest.NewServer(proxy)
			defer mitm.Close()
			dir := t.TempDir()
			p := f.prefs(t, dir)
			p.NodeCommURL = mitm.URL + "/vigil"
			r, logs := startAgentLog(t, p)
			waitFor(t, "enrollment", func() bool { return r.count("checkin") > 0 })
			id1 := r.a.ID()
			for range 4 {
				f.issue(all)
			}
			waitFor(t, "commands 1-4", func() bool { return len(f.resultsOf(id1)[4]) == 1 })

			mu.Lock()
			attack = true
			mu.Unlock()
			if replay {
				waitFor(t, "the replayed answer refused", func() bool {
					return strings.Contains(logs.String(), "enrolling again failed; keeping the current credential")
				})
				if !strings.Contains(logs.String(), "answers another request") && !strings.Contains(logs.String(), "is for agent") {
					t.Fatalf("refusal does not say why:\n%s", logs)
				}
			} else {
				waitFor(t, "enrollment again", func() bool { return r.a.ID() != id1 })
			}
			mu.Lock()
			attack = false
			n := refusals
			mu.Unlock()
			if f.enrollCount() < 2 || n < 5 {
				t.Fatalf("%d enrollments after %d refusals", f.enrollCount(), n)
			}
			id := r.a.ID()
			if replay && id != id1 {
				t.Fatalf("the agent took a new identity %s from a replayed answer", id)
			}
			s5 := f.issue(all)
			waitFor(t, "command 5", func() bool { return len(f.resultsOf(id)[s5]) == 1 })
			if got := r.seqs("executed"); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
				t.Fatalf("executed %v, want each of 1-5 once", got)
			}
		})
	}
}
