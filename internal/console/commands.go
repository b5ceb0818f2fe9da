package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// decodeCommand reads the command a stored envelope carries.
func decodeCommand(sc store.Command) (command.Command, error) {
	e, err := wire.Decode(sc.Envelope)
	if err != nil {
		return command.Command{}, err
	}
	return command.Decode(e.Body)
}

func targetString(t command.Target) string {
	switch {
	case t.All:
		return "all agents"
	case len(t.Groups) > 0:
		return "groups " + strings.Join(t.Groups, ", ")
	}
	return "agents " + strings.Join(t.Agents, ", ")
}

func argsString(args map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(mapKeys(args)) {
		parts = append(parts, k+"="+args[k])
	}
	return strings.Join(parts, " ")
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// progress is a command's progress: of the agents it targets, those that
// executed it (ok), failed (any other status) and have not reported.
type progress struct {
	Targeted, OK, Failed, Pending int
}

// Bar widths of the progress bar, out of 1000.
func (p progress) OKWidth() int   { return p.width(p.OK) }
func (p progress) FailWidth() int { return p.width(p.Failed) }
func (p progress) FailX() int     { return p.width(p.OK) }
func (p progress) width(n int) int {
	if p.Targeted == 0 {
		return 0
	}
	return n * 1000 / p.Targeted
}

// resultRow is one targeted agent's line of a command's results.
type resultRow struct {
	AgentID, Hostname, Status, Output string
	Executed                          time.Time
	Received                          time.Time // when the server received the result
}

// storeTarget is a command's target as the store counts it.
func storeTarget(t command.Target) store.Target {
	return store.Target{All: t.All, Groups: t.Groups, Agents: t.Agents}
}

// targets are the agents a command waits for, as the server counts them
// (enrolled before it was issued, not revoked, and matched by its
// target), with their hostnames.
func (c *Console) targets(ctx context.Context, cmd command.Command, issued time.Time) (map[string]string, error) {
	t := map[string]string{}
	err := c.cfg.Store.Targets(ctx, storeTarget(cmd.Target), issued, func(id, hostname string) error {
		t[id] = hostname
		return nil
	})
	return t, err
}

// tally is the progress and the rows of a command's results: every
// targeted agent (tg, with hostnames), and every agent that reported.
func tally(tg map[string]string, rs []store.Result) (progress, []resultRow) {
	var p progress
	var rows []resultRow
	reported := map[string]bool{}
	for _, r := range rs {
		reported[r.AgentID] = true
		if r.Status == command.StatusOK {
			p.OK++
		} else {
			p.Failed++
		}
		rows = append(rows, resultRow{AgentID: r.AgentID, Hostname: tg[r.AgentID], Status: r.Status, Output: r.Output, Executed: r.ExecutedAt, Received: r.ReceivedAt})
	}
	for id, h := range tg {
		if !reported[id] {
			p.Pending++
			rows = append(rows, resultRow{AgentID: id, Hostname: h, Status: "pending"})
		}
	}
	p.Targeted = p.OK + p.Failed + p.Pending
	sort.Slice(rows, func(i, j int) bool { return rows[i].AgentID < rows[j].AgentID })
	return p, rows
}

// cmdSummary is a command as the lists show it.
type cmdSummary struct {
	Seq      uint64
	Cmd      command.Command
	IssuedAt time.Time
	Expires  time.Time
	Expired  bool
	P        progress
}

// InFlight: not expired, and some targeted agent has not reported.
func (s cmdSummary) InFlight() bool { return !s.Expired && s.P.Pending > 0 }

// listLimit is how many of the newest commands the commands page lists.
const listLimit = 100

// summaries reads the newest commands with their progress, or only
// those in flight: their progress counted by the store.
func (c *Console) summaries(ctx context.Context, limit int, inflight bool) ([]cmdSummary, error) {
	cs, err := c.cfg.Store.RecentCommands(ctx, limit)
	if err != nil {
		return nil, err
	}
	now := c.now()
	var out []cmdSummary
	for _, sc := range cs {
		expired := !now.Before(sc.Expires)
		if inflight && expired {
			continue
		}
		cmd, err := decodeCommand(sc)
		if err != nil {
			c.log.Error("console: command in the store does not decode", "seq", sc.Seq, "err", err)
			continue
		}
		sp, err := c.progress(ctx, sc, cmd, expired, now)
		if err != nil {
			return nil, err
		}
		x := cmdSummary{Seq: sc.Seq, Cmd: cmd, IssuedAt: sc.IssuedAt, Expires: sc.Expires, Expired: expired,
			P: progress{OK: sp.OK, Failed: sp.Failed, Pending: sp.Pending, Targeted: sp.OK + sp.Failed + sp.Pending}}
		if inflight && !x.InFlight() {
			continue
		}
		out = append(out, x)
	}
	return out, nil
}

// expiredProgressAge is how long the progress of an expired command is
// kept before the store counts it again. Agents report little after a
// command expires (those that were offline report it "expired" when they
// come back), and counting the progress of a command sent to a large
// group costs tens of milliseconds at 100,000 agents: the commands page
// lists a hundred.
const expiredProgressAge = 30 * time.Second

type cachedProgress struct {
	p  store.Progress
	at time.Time
}

// progress counts a command's progress, or takes that of an expired
// command counted within expiredProgressAge.
func (c *Console) progress(ctx context.Context, sc store.Command, cmd command.Command, expired bool, now time.Time) (store.Progress, error) {
	if expired {
		c.progressMu.Lock()
		x, ok := c.progressCache[sc.Seq]
		c.progressMu.Unlock()
		if ok && now.Sub(x.at) < expiredProgressAge && !now.Before(x.at) {
			return x.p, nil
		}
	}
	p, err := c.cfg.Store.Progress(ctx, sc.Seq, storeTarget(cmd.Target), sc.IssuedAt)
	if err != nil || !expired {
		return p, err
	}
	c.progressMu.Lock()
	defer c.progressMu.Unlock()
	if c.progressCache == nil || len(c.progressCache) >= 4*listLimit {
		c.progressCache = map[uint64]cachedProgress{} // the newest commands come back at once
	}
	c.progressCache[sc.Seq] = cachedProgress{p: p, at: now}
	return p, nil
}

// issueForm is the issue form's fields, kept when it is shown again.
type issueForm struct {
	Name, Args, Target, Groups, Agents, Expires string
}

type commandsPage struct {
	Commands []cmdSummary
	InFlight bool
	Specs    []command.Spec
	Form     issueForm
	Error    string
}

func (c *Console) handleCommands(w http.ResponseWriter, r *http.Request, s session) {
	state := r.URL.Query().Get("state")
	if state != "" && state != "inflight" {
		c.fail(w, r, s, http.StatusBadRequest, "state %q: want inflight", state)
		return
	}
	c.commandsPage(w, r, s, http.StatusOK, state == "inflight", issueForm{Target: "all"}, "")
}

func (c *Console) commandsPage(w http.ResponseWriter, r *http.Request, s session, status int, inflight bool, f issueForm, msg string) {
	sums, err := c.summaries(r.Context(), listLimit, inflight)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	c.render(w, r, status, "commands", &s, "Commands", commandsPage{
		Commands: sums, InFlight: inflight, Specs: command.Specs(), Form: f, Error: msg,
	})
}

// splitList splits a list of names given comma- or space-separated.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// parseIssue reads the issue form into a request, with the rules and
// messages of vigil send.
func parseIssue(form url.Values) (api.SendRequest, issueForm, error) {
	f := issueForm{
		Name: strings.TrimSpace(form.Get("name")), Args: form.Get("args"), Target: form.Get("target"),
		Groups: form.Get("groups"), Agents: form.Get("agents"), Expires: strings.TrimSpace(form.Get("expires")),
	}
	agents := splitList(f.Agents)
	for _, a := range form["agent"] { // the agents list's selection
		agents = append(agents, splitList(a)...)
	}
	if len(form["agent"]) > 0 {
		f.Target = "agents"
		f.Agents = strings.Join(agents, ", ")
	}
	req := api.SendRequest{Name: f.Name}
	switch f.Target {
	case "all":
		req.Target.All = true
	case "groups":
		req.Target.Groups = splitList(f.Groups)
	case "agents":
		if len(agents) == 0 {
			return req, f, errors.New("no agent given: tick agents in the agents list, or name them")
		}
		req.Target.Agents = agents
	default:
		return req, f, errors.New("choose a target: all agents, groups or agents")
	}
	if err := req.Target.Validate(); err != nil {
		return req, f, err
	}
	for _, kv := range strings.Fields(f.Args) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return req, f, fmt.Errorf("argument %q: want NAME=VALUE", kv)
		}
		if req.Args == nil {
			req.Args = map[string]string{}
		}
		req.Args[k] = v
	}
	if f.Name == "" {
		return req, f, errors.New("name a command")
	}
	if err := (command.Command{Name: req.Name, Args: req.Args, Target: req.Target}).Validate(); err != nil {
		return req, f, err
	}
	if f.Expires != "" {
		d, err := time.ParseDuration(f.Expires)
		if err != nil || d < time.Second || d > 30*24*time.Hour {
			return req, f, fmt.Errorf("expires %q: want a duration from 1s to 720h", f.Expires)
		}
		req.ExpiresIn = d.String()
	}
	return req, f, nil
}

func (c *Console) handleIssue(w http.ResponseWriter, r *http.Request, s session) {
	if m, ok := r.PostForm["matching"]; ok {
		// "All N matching" on the agents list: the agents its filters
		// match now, whatever rows were ticked.
		t, err := c.matching(r.Context(), m[0])
		if err != nil {
			c.commandsPage(w, r, s, http.StatusBadRequest, false, issueForm{Name: r.PostForm.Get("name"), Args: r.PostForm.Get("args"), Target: "agents"}, err.Error())
			return
		}
		delete(r.PostForm, "agent")
		switch {
		case t.All:
			r.PostForm.Set("target", "all")
		case len(t.Groups) > 0:
			r.PostForm.Set("target", "groups")
			r.PostForm.Set("groups", t.Groups[0])
		default:
			r.PostForm["agent"] = t.Agents
		}
	}
	req, f, err := parseIssue(r.PostForm)
	if err != nil {
		c.commandsPage(w, r, s, http.StatusBadRequest, false, f, err.Error())
		return
	}
	info, err := c.cfg.Issuer.Send(r.Context(), req)
	line := strings.Join(slices.DeleteFunc([]string{req.Name, argsString(req.Args), "→", targetString(req.Target)}, func(s string) bool { return s == "" }), " ")
	if err != nil {
		c.audit(r, auth.Event{Actor: s.p.User, Action: auth.EventCommand, Detail: line + ": " + err.Error()})
		c.commandsPage(w, r, s, http.StatusBadRequest, false, f, "not issued: "+err.Error())
		return
	}
	c.audit(r, auth.Event{Actor: s.p.User, Action: auth.EventCommand, Target: strconv.FormatUint(info.Seq, 10), Detail: line, OK: true})
	c.issued(w, r, info)
}

// matching lists the ids of the agents an agents list's query matches.
func (c *Console) matching(ctx context.Context, query string) (command.Target, error) {
	q, err := url.ParseQuery(query)
	if err != nil {
		return command.Target{}, fmt.Errorf("the agents' filters: %v", err)
	}
	f, err := parseAgentFilter(q)
	if err != nil {
		return command.Target{}, err
	}
	// No filter, or a group alone: the command is for all agents, or
	// for the group, as the server counts them (a command naming each
	// agent would be bounded by its envelope's size).
	if f.Q == "" && f.Status == "" && f.OS == "" && f.Version == "" && f.Defs == "" && f.Det == "" {
		n, err := c.cfg.Store.CountAgents(ctx, f.query(c.clock(), true).AgentFilter)
		switch {
		case err != nil:
			return command.Target{}, fmt.Errorf("store: %v", err)
		case n == 0:
			return command.Target{}, errors.New("no agent matches the filters")
		case f.Group == "":
			return command.Target{All: true}, nil
		}
		return command.Target{Groups: []string{f.Group}}, nil
	}
	var ids []string
	err = c.cfg.Store.ListAgents(ctx, f.query(c.clock(), true), func(a store.Agent) error {
		ids = append(ids, a.ID)
		return nil
	})
	if err != nil {
		return command.Target{}, fmt.Errorf("store: %v", err)
	}
	if len(ids) == 0 {
		return command.Target{}, errors.New("no agent matches the filters")
	}
	return command.Target{Agents: ids}, nil
}

// issued sends the browser to the command's page, with its warnings.
func (c *Console) issued(w http.ResponseWriter, r *http.Request, info api.CommandInfo) {
	u := "/commands/" + strconv.FormatUint(info.Seq, 10)
	if len(info.Warnings) > 0 {
		u += "?" + url.Values{"warning": info.Warnings}.Encode()
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// handleRestore issues "restore" of one quarantined file to its agent.
func (c *Console) handleRestore(w http.ResponseWriter, r *http.Request, s session) {
	id, qid := r.PathValue("id"), r.PostForm.Get("id")
	req := api.SendRequest{Name: command.Restore, Args: map[string]string{command.ArgID: qid}, Target: command.Target{Agents: []string{id}}, Strict: true}
	if err := (command.Command{Name: req.Name, Args: req.Args, Target: req.Target}).Validate(); err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "%v", err)
		return
	}
	info, err := c.cfg.Issuer.Send(r.Context(), req)
	if err != nil {
		c.audit(r, auth.Event{Actor: s.p.User, Action: auth.EventRestore, Target: qid, Detail: "on agent " + id + ": " + err.Error()})
		c.fail(w, r, s, http.StatusBadRequest, "not issued: %v", err)
		return
	}
	c.audit(r, auth.Event{Actor: s.p.User, Action: auth.EventRestore, Target: qid,
		Detail: fmt.Sprintf("on agent %s: command %d", id, info.Seq), OK: true})
	c.issued(w, r, info)
}

type commandPage struct {
	S        cmdSummary
	Rows     []resultRow
	Warnings []string
	Events   string
}

// loadCommand reads a command and its targets.
func (c *Console) loadCommand(ctx context.Context, seq uint64) (store.Command, command.Command, map[string]string, error) {
	sc, err := c.cfg.Store.Command(ctx, seq)
	if err != nil {
		return sc, command.Command{}, nil, err
	}
	cmd, err := decodeCommand(sc)
	if err != nil {
		return sc, cmd, nil, fmt.Errorf("command %d does not decode: %w", seq, err)
	}
	tg, err := c.targets(ctx, cmd, sc.IssuedAt)
	return sc, cmd, tg, err
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%q is not a command's sequence number", s)
	}
	return seq, nil
}

func (c *Console) handleCommand(w http.ResponseWriter, r *http.Request, s session) {
	seq, err := parseSeq(r.PathValue("seq"))
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "%v", err)
		return
	}
	sc, cmd, tg, err := c.loadCommand(r.Context(), seq)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, s, http.StatusNotFound, "no command %d", seq)
		return
	} else if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	rs, err := c.cfg.Store.Results(r.Context(), seq)
	if err != nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	p, rows := tally(tg, rs)
	c.render(w, r, http.StatusOK, "command", &s, fmt.Sprintf("Command %d", seq), commandPage{
		S:        cmdSummary{Seq: seq, Cmd: cmd, IssuedAt: sc.IssuedAt, Expires: sc.Expires, Expired: !c.now().Before(sc.Expires), P: p},
		Rows:     rows,
		Warnings: r.URL.Query()["warning"],
		Events:   fmt.Sprintf("/commands/%d/events", seq),
	})
}

// resultEvent is the data of a "result" event.
type resultEvent struct {
	Agent    string `json:"agent"`
	Hostname string `json:"hostname"`
	Status   string `json:"status"`
	Output   string `json:"output"`
	Executed string `json:"executed"`
	// Received is when the server received the result (RFC 3339 with
	// nanoseconds, "" for a pending agent): the result was committed to
	// the store after it, and the event sent after that.
	Received string `json:"received"`
}

// handleCommandEvents streams a command's progress and results as
// Server-Sent Events. The command's watch reads the results when the
// Notifier says they changed, and at the latest every PollInterval, and
// encodes each result that changed ("result") and the progress when it
// changed ("progress"); the stream writes those it has not written. It
// writes every result there is and the progress once when it starts, so
// that a page rendered before misses nothing (agents still pending are on
// the page already, and are not sent). It checks every PollInterval that
// its session lives, and ends when it does not ("end").
func (c *Console) handleCommandEvents(w http.ResponseWriter, r *http.Request, s session) {
	seq, err := parseSeq(r.PathValue("seq"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	if _, err := c.cfg.Store.Command(ctx, seq); errors.Is(err, store.ErrNotFound) {
		http.Error(w, fmt.Sprintf("no command %d", seq), http.StatusNotFound)
		return
	} else if err != nil {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	wt, stop := c.watches.follow(seq)
	defer stop()
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	var (
		n    int
		pgen uint64
	)
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	for {
		evs, prog, n2, pgen2, next := wt.since(n, pgen)
		n, pgen = n2, pgen2
		for _, ev := range evs {
			if _, err := w.Write(ev); err != nil {
				return
			}
		}
		if prog != nil {
			if _, err := w.Write(prog); err != nil {
				return
			}
		}
		if len(evs) > 0 || prog != nil {
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-next:
		case <-tick.C:
			if _, ok := c.session(r, false); !ok {
				fmt.Fprint(w, "event: end\ndata: the session ended\n\n")
				rc.Flush()
				return
			}
		}
	}
}
