package agent_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/liveupdate"
	"github.com/vigil-fleet/vigil/internal/liveupdate/liveupdatetest"
	"github.com/vigil-fleet/vigil/internal/publish"
)

// sigFiles are the signature files of release n of a database of 5,000
// MD5 signatures where each release replaces 25 of them.
func sigFiles(n int) map[string][]byte {
	var b strings.Builder
	for i := range 5000 {
		gen := 0
		if i%200 < n-1 { // release n has replaced signatures 0, 200, 400, ... n-1 times over
			gen = n - 1 - i%200
		}
		fmt.Fprintf(&b, "%032x:%d:Vigil.Test.Sig-%05d-%d\n", uint64(i)*0x9e3779b97f4a7c15+uint64(gen), 1000+i, i, gen)
	}
	return map[string][]byte{"main.hdb": []byte(b.String())}
}

// TestAgentUpdatesThroughDeltas: agents over FTP and over HTTP update
// through deltas, say so in the update command's result (the releases, the
// deltas, the bytes), report the update at check-in, keep reporting it
// after a restart, and count a fallback to the full release when a delta
// is corrupt on the server.
func TestAgentUpdatesThroughDeltas(t *testing.T) {
	r, err := publish.Init(filepath.Join(t.TempDir(), "repo"), publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	release := func(n int) string {
		t.Helper()
		v := fmt.Sprintf("20261202%02d", n)
		if err := r.AddDefinitionsData(v, sigFiles(n)); err != nil {
			t.Fatal(err)
		}
		if err := r.Publish(publish.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := release(1)
	lu := liveupdatetest.Start(t, liveupdate.Config{LiveUpdate: config.LiveUpdate{Root: r.PublicDir()}, Logger: quiet})
	f := newFakeServer(t)
	pFTP, pHTTP := f.prefs(t, t.TempDir()), f.prefs(t, t.TempDir())
	pFTP.LiveUpdateServers, pFTP.RepositoryRoot = []string{lu.FTPURL + "/"}, r.RootPath()
	pHTTP.LiveUpdateServers, pHTTP.RepositoryRoot = []string{lu.HTTPURL + "/"}, r.RootPath()
	agents := []*runningAgent{startAgent(t, pFTP), startAgent(t, pHTTP)}
	waitFor(t, "enrollment", func() bool { return agents[0].count("checkin") > 0 && agents[1].count("checkin") > 0 })

	// update issues an update command and returns each agent's result and
	// its next check-in's update state.
	update := func() ([]string, []api.CheckInRequest) {
		t.Helper()
		seq := f.issue(command.Command{Name: command.Update, Target: command.Target{All: true}})
		var outs []string
		var checkins []api.CheckInRequest
		for _, a := range agents {
			var res api.Result
			waitFor(t, "the update's result", func() bool {
				rs := f.resultsOf(a.a.ID())[seq]
				if len(rs) == 1 {
					res = rs[0]
				}
				return len(rs) == 1
			})
			if res.Status != command.StatusOK {
				t.Fatalf("update: %s %s", res.Status, res.Output)
			}
			outs = append(outs, res.Output)
			var c api.CheckInRequest
			waitFor(t, "a check-in after the update", func() bool {
				var ok bool
				c, ok = f.lastCheckIn(a.a.ID())
				return ok && c.DefsVer == strings.Fields(res.Output)[1]
			})
			checkins = append(checkins, c)
		}
		return outs, checkins
	}

	outs, cs := update()
	for i, c := range cs {
		if !strings.Contains(outs[i], "definitions "+v1+" installed from ") || !strings.Contains(outs[i], "none -> "+v1+", full release, ") {
			t.Errorf("first update's output: %q", outs[i])
		}
		if u := c.Update; u == nil || u.From != "" || u.To != v1 || u.Deltas != 0 || u.Bytes <= u.FullBytes || u.FullBytes == 0 || u.At.IsZero() {
			t.Errorf("check-in's update state after the first update: %+v", u)
		}
	}

	release(2)
	v3 := release(3)
	outs, cs = update()
	for i, c := range cs {
		u := c.Update
		if u == nil || u.From != v1 || u.To != v3 || u.Deltas < 1 || u.Bytes == 0 || u.Bytes*2 > u.FullBytes {
			t.Fatalf("check-in's update state after the update through deltas: %+v", u)
		}
		if want := fmt.Sprintf("%s -> %s via %d delta", v1, v3, u.Deltas); !strings.Contains(outs[i], want) || !strings.Contains(outs[i], "(full ") {
			t.Errorf("output %q, want %q", outs[i], want)
		}
	}
	kept := *cs[0].Update

	// A restarted agent reports the same last update.
	agents[0].stop()
	agents[0] = startAgent(t, pFTP)
	waitFor(t, "a check-in after the restart", func() bool { return agents[0].count("checkin") > 0 })
	if c, _ := f.lastCheckIn(agents[0].a.ID()); c.Update == nil || c.Update.From != kept.From || c.Update.To != kept.To ||
		!c.Update.At.Equal(kept.At) || c.Update.Bytes != kept.Bytes || c.Update.FullBytes != kept.FullBytes || c.Update.Deltas != kept.Deltas {
		t.Errorf("after a restart the check-in reports %+v, want %+v", c.Update, kept)
	}

	// A corrupt delta: the full release, and the fallback counted.
	v4 := release(4)
	var deltaFile string
	filepath.WalkDir(filepath.Join(r.PublicDir(), "targets"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, "."+v3+"-"+v4+".delta") {
			deltaFile = p
		}
		return nil
	})
	if deltaFile == "" {
		t.Fatal("no delta " + v3 + "-" + v4 + " published")
	}
	b, err := os.ReadFile(deltaFile)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(deltaFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	outs, cs = update()
	for i, c := range cs {
		u := c.Update
		if u == nil || u.From != v3 || u.To != v4 || u.Deltas != 0 || u.Bytes <= u.FullBytes {
			t.Errorf("check-in's update state after a fallback: %+v", u)
		}
		if !strings.Contains(outs[i], v3+" -> "+v4+", full release, ") || !strings.Contains(outs[i], "deltas failed: ") {
			t.Errorf("output after a fallback: %q", outs[i])
		}
		if c.Counters[agent.CountDeltaFallbacks] != 1 {
			t.Errorf("check-in's counters %v, want %s 1", c.Counters, agent.CountDeltaFallbacks)
		}
	}
}
