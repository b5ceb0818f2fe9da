//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/publish"
)

// deltaSigs writes release n of a database of 20,000 MD5 signatures, of
// which each release replaces 100 (0.5 %), into dir/main.hdb.
func deltaSigs(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range 20000 {
		gen := 0
		if i%200 < n-1 {
			gen = n - 1 - i%200
		}
		fmt.Fprintf(&b, "%016x%016x:%d:Vigil.Delta.Sig-%05d-%d\n", uint64(i)*0x9e3779b97f4a7c15, uint64(gen)+1, 1000+i, i, gen)
	}
	p := filepath.Join(dir, strconv.Itoa(n), "main.hdb")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgentsUpdateThroughDeltas runs the vendor's side with the vigil
// CLI (repo init, add-definitions, publish), vigil liveupdate serving
// over FTP and HTTP on 127.0.0.1, a vigil server and two vigil agents, one
// updating over FTP, the other over HTTP. Two releases behind, each
// updates through the delta vigil repo publish made (a few KiB of a
// 1.2 MiB release) and says so in its result; the
// bytes each reports (its state file, the check-in's update state) are
// what the LiveUpdate server's access log says it sent over its
// protocol. A delta corrupted on the server makes both fall back to the
// full release, counted at check-in (delta_fallbacks); the definitions
// installed are always the published ones.
func TestAgentsUpdateThroughDeltas(t *testing.T) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "vendor")
	if code, out, errOut := runVigil(t, "repo", "init", "-dir", repoDir); code != 0 {
		t.Fatalf("repo init: exit %d\n%s%s", code, out, errOut)
	}
	published := map[string]string{} // version -> its main.hdb
	release := func(n int) string {
		t.Helper()
		v := fmt.Sprintf("20261202%02d", n)
		published[v] = deltaSigs(t, filepath.Join(dir, "sigs"), n)
		if code, out, errOut := runVigil(t, "repo", "add-definitions", "-dir", repoDir, v, published[v]); code != 0 {
			t.Fatalf("add-definitions %s: exit %d\n%s%s", v, code, out, errOut)
		}
		if code, out, errOut := runVigil(t, "repo", "publish", "-dir", repoDir); code != 0 {
			t.Fatalf("publish %s: exit %d\n%s%s", v, code, out, errOut)
		}
		return v
	}
	r, err := publish.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}

	// vigil liveupdate, stopped after each update so that its access log
	// is complete, and started again on the same ports.
	httpAddr := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	ftpAddr := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	var lu *fileProc
	var accessLog string
	startLU := func() {
		t.Helper()
		accessLog = filepath.Join(t.TempDir(), "access.log")
		lu = startLocal(t, "liveupdate", "liveupdate", "-root", r.PublicDir(), "-http", httpAddr, "-ftp", ftpAddr, "-access-log", accessLog)
		lu.WaitLog(t, "serving FTP", 30*time.Second)
		lu.WaitLog(t, "serving HTTP", 30*time.Second)
	}

	srv := newLoopbackServer(t)
	f := srv.fleet(t)
	ftpAgent, httpAgent := srv.addAgent(f, "delta-ftp"), srv.addAgent(f, "delta-http")
	for m, url := range map[*member]string{ftpAgent: "ftp://" + ftpAddr + "/", httpAgent: "http://" + httpAddr + "/"} {
		p, err := prefs.Load(m.plist)
		if err != nil {
			t.Fatal(err)
		}
		p.LiveUpdateServers = []string{url}
		p.RepositoryRoot = r.RootPath()
		if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
			t.Fatal(err)
		}
		f.startAgent(m)
	}
	f.learnIDs()
	protoOf := map[*member]string{ftpAgent: "ftp", httpAgent: "http"}

	// update sends an update command, waits for its results, stops
	// vigil liveupdate, and checks each agent's last update against the
	// access log. It returns the results' outputs and the update states.
	update := func(want string) (map[*member]string, map[*member]api.UpdateState) {
		t.Helper()
		startLU()
		c := f.send(command.Target{All: true}, "update")
		f.waitResults(90 * time.Second)
		if err := lu.Stop(); err != nil {
			t.Fatalf("vigil liveupdate: %v", err)
		}
		log, err := os.ReadFile(accessLog)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.results(c.Seq)
		if err != nil {
			t.Fatal(err)
		}
		outs, states := map[*member]string{}, map[*member]api.UpdateState{}
		for _, m := range []*member{ftpAgent, httpAgent} {
			for _, ar := range res.Results {
				if ar.AgentID == m.id {
					outs[m] = ar.Output
				}
			}
			var st api.UpdateState
			b, err := os.ReadFile(filepath.Join(m.state, agent.FileDefinitionsUpdateName))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			states[m] = st
			f.logf("agent %s: %s", m.name, outs[m])
			if st.To != want {
				t.Fatalf("agent %s: last update %+v, want one to %s (result %q)", m.name, st, want, outs[m])
			}
			if sent := sentOver(t, string(log), protoOf[m]); st.Bytes != sent {
				t.Errorf("agent %s reports %d bytes, vigil liveupdate's access log says it sent %d over %s:\n%s", m.name, st.Bytes, sent, protoOf[m], log)
			}
			installed := filepath.Join(definitions.CurrentLink(filepath.Join(m.state, "definitions")), "main.hdb")
			got, err := os.ReadFile(installed)
			wantFile, _ := os.ReadFile(published[want])
			if err != nil || string(got) != string(wantFile) {
				t.Errorf("agent %s: %s is not the published release %s (%v)", m.name, installed, want, err)
			}
		}
		return outs, states
	}

	v1 := release(1)
	outs, states := update(v1)
	for m, st := range states {
		if st.From != "" || st.Deltas != 0 || !strings.Contains(outs[m], "none -> "+v1+", full release, ") {
			t.Errorf("agent %s, first update: %+v, %q", m.name, st, outs[m])
		}
	}

	release(2)
	v3 := release(3)
	outs, states = update(v3)
	for m, st := range states {
		if st.From != v1 || st.Deltas < 1 || st.Bytes*4 > st.FullBytes {
			t.Errorf("agent %s, update through deltas: %+v", m.name, st)
		}
		if want := fmt.Sprintf("%s -> %s via %d delta", v1, v3, st.Deltas); !strings.Contains(outs[m], want) {
			t.Errorf("agent %s: result %q, want %q", m.name, outs[m], want)
		}
	}

	v4 := release(4)
	var deltaFile string
	filepath.WalkDir(filepath.Join(r.PublicDir(), "targets"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, "."+v3+"-"+v4+".delta") {
			deltaFile = p
		}
		return nil
	})
	if deltaFile == "" {
		t.Fatalf("no delta %s-%s published", v3, v4)
	}
	b, err := os.ReadFile(deltaFile)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(deltaFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	outs, states = update(v4)
	for m, st := range states {
		if st.From != v3 || st.Deltas != 0 || st.Bytes <= st.FullBytes || !strings.Contains(outs[m], "deltas failed: ") {
			t.Errorf("agent %s, update past a corrupt delta: %+v, %q", m.name, st, outs[m])
		}
	}
	f.waitCounters(30*time.Second, func(_ *member, c map[string]uint64) bool { return c[agent.CountDeltaFallbacks] == 1 })
	f.stopAgents()
	f.checkJournals()
}

// accessLine is an access log line of vigil liveupdate: "REQUEST" STATUS
// BYTES PROTO.
var accessLine = regexp.MustCompile(`"([A-Z]+) [^"]*" (\d+) (\d+) (http|ftp) `)

// sentOver sums the bytes of the files the access log says were sent in
// full over proto (HTTP GET 200, FTP RETR 226).
func sentOver(t *testing.T, log, proto string) int64 {
	t.Helper()
	var n int64
	for _, line := range strings.Split(log, "\n") {
		m := accessLine.FindStringSubmatch(line)
		if m == nil || m[4] != proto {
			continue
		}
		if (proto == "http" && m[1] == "GET" && m[2] == "200") || (proto == "ftp" && m[1] == "RETR" && m[2] == "226") {
			b, err := strconv.ParseInt(m[3], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			n += b
		}
	}
	return n
}
