package server_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
)

// failingStore is a SQLite store whose RecordResults fails while fail is
// set, as a full disk would make it.
type failingStore struct {
	*sqlite.Store
	fail atomic.Bool
}

var errDiskFull = errors.New("disk I/O error: no space left on device")

func (s *failingStore) RecordResults(ctx context.Context, rs []store.Result) error {
	if s.fail.Load() {
		return errDiskFull
	}
	return s.Store.RecordResults(ctx, rs)
}

// TestResultsJudgedOneByOne: each result of a batch is judged on its own;
// the good ones are stored and acknowledged although others are refused
// (a result for a command not aimed at the agent, for no command, with an
// output over the limit or an unknown status), and each refusal says why.
// A store failure fails the whole request with 503, refusing nothing.
func TestResultsJudgedOneByOne(t *testing.T) {
	t.Parallel()
	fs := &failingStore{}
	f := newFixtureOpen(t, t.TempDir(), nil, func(p string) (store.Store, error) {
		var err error
		fs.Store, err = sqlite.Open(p)
		return fs, err
	})
	ctx := context.Background()
	lab := f.enroll(t, "lab")
	other := f.enroll(t, "other")
	issue := func(tg command.Target) uint64 {
		t.Helper()
		c, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: tg}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c.Seq
	}
	all := issue(command.Target{All: true})
	toLab := issue(command.Target{Groups: []string{"lab"}})
	toOther := issue(command.Target{Agents: []string{other.AgentID}})
	toOtherGroup := issue(command.Target{Groups: []string{"other"}})
	big := issue(command.Target{All: true})
	badStatus := issue(command.Target{All: true})
	exact := issue(command.Target{All: true})

	c := f.agentClient(lab.Token)
	now := time.Now()
	req := api.ResultsRequest{Results: []api.Result{
		{Seq: toOther, Status: "ok", Output: "not mine", ExecutedAt: now},
		{Seq: all, Status: "ok", Output: "pong", ExecutedAt: now},
		{Seq: 999, Status: "ok", ExecutedAt: now},
		{Seq: toLab, Status: "ok", Output: "pong lab", ExecutedAt: now},
		{Seq: big, Status: "ok", Output: strings.Repeat("x", api.MaxOutput+1), ExecutedAt: now},
		{Seq: toOtherGroup, Status: "ok", ExecutedAt: now},
		{Seq: badStatus, Status: "fine", ExecutedAt: now},
		{Seq: exact, Status: "ok", Output: api.TruncateOutput(strings.Repeat("y", 3*api.MaxOutput)), ExecutedAt: now},
		{Seq: all, Status: "ok", Output: "pong again", ExecutedAt: now},
	}}
	var rr api.ResultsResponse
	if err := c.Call(ctx, api.RouteResults, nil, req, &rr); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rr.Accepted, []uint64{all, toLab, exact}) {
		t.Errorf("accepted %v, want %v", rr.Accepted, []uint64{all, toLab, exact})
	}
	want := map[uint64]string{
		toOther: "not for this agent", 999: "no command 999", big: "at most 4096 bytes",
		toOtherGroup: "not for this agent", badStatus: "unknown status",
	}
	if len(rr.Refused) != len(want) {
		t.Errorf("refused %+v, want %d", rr.Refused, len(want))
	}
	for _, r := range rr.Refused {
		if !strings.Contains(r.Error, want[r.Seq]) || want[r.Seq] == "" {
			t.Errorf("refused %d: %q, want %q", r.Seq, r.Error, want[r.Seq])
		}
	}
	// What the admin sees: the accepted results, and nothing from lab for
	// the commands that were not its own.
	for seq, wantStatus := range map[uint64]string{all: "ok", toLab: "ok", exact: "ok", big: "pending", toOther: ""} {
		var cr api.CommandResults
		if err := f.admin().Call(ctx, api.RouteAdminCommandResults, nil, nil, &cr, itoa(seq)); err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, r := range cr.Results {
			if r.AgentID == lab.AgentID {
				got = r.Status
			}
		}
		if got != wantStatus {
			t.Errorf("command %d: lab's row %q, want %q", seq, got, wantStatus)
		}
	}
	// The agent it was for may report it.
	rr = api.ResultsResponse{}
	if err := f.agentClient(other.Token).Call(ctx, api.RouteResults, nil, api.ResultsRequest{Results: []api.Result{
		{Seq: toOther, Status: "ok", ExecutedAt: now}, {Seq: toOtherGroup, Status: "ok", ExecutedAt: now},
	}}, &rr); err != nil || len(rr.Accepted) != 2 || len(rr.Refused) != 0 {
		t.Fatalf("the targeted agent's results: %+v, %v", rr, err)
	}

	// A store failure: 503 for the whole request, nothing refused; the
	// same batch is accepted once the store works again.
	fs.fail.Store(true)
	retry := api.ResultsRequest{Results: []api.Result{{Seq: big, Status: "ok", Output: "short", ExecutedAt: now}, {Seq: 999, Status: "ok"}}}
	if err := c.Call(ctx, api.RouteResults, nil, retry, &rr); !api.IsStatus(err, 503) {
		t.Fatalf("results while the store fails: %v, want 503", err)
	}
	fs.fail.Store(false)
	rr = api.ResultsResponse{}
	if err := c.Call(ctx, api.RouteResults, nil, retry, &rr); err != nil || !slices.Equal(rr.Accepted, []uint64{big}) || len(rr.Refused) != 1 {
		t.Fatalf("results once the store works: %+v, %v", rr, err)
	}
	if err := c.Call(ctx, api.RouteResults, nil, api.ResultsRequest{}, nil); !api.IsStatus(err, 400) {
		t.Fatalf("empty batch: %v, want 400", err)
	}
}

// TestResultsFollowGroups: the groups the server judges a result by are
// the ones the agent last reported.
func TestResultsFollowGroups(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	en := f.enroll(t, "old")
	c := f.agentClient(en.Token)
	if err := c.Call(ctx, api.RouteCheckIn, nil, api.CheckInRequest{Epoch: en.Epoch, Hostname: "h1", Groups: []string{"new"}}, nil); err != nil {
		t.Fatal(err)
	}
	cmd, err := f.srv.Issue(ctx, command.Command{Name: "ping", Target: command.Target{Groups: []string{"new"}}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var rr api.ResultsResponse
	if err := c.Call(ctx, api.RouteResults, nil, api.ResultsRequest{Results: []api.Result{{Seq: cmd.Seq, Status: "ok"}}}, &rr); err != nil || len(rr.Accepted) != 1 {
		t.Fatalf("result for the agent's new group: %+v, %v", rr, err)
	}
}
