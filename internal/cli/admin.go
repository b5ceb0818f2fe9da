package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	url, tokenFile, dataDir string
	json                    bool
}

func (a *adminFlags) register(fs *flag.FlagSet, env *Env) {
	def := env.Getenv("VIGIL_ADMIN_URL")
	if def == "" {
		def = "http://" + server.DefaultConfig().AdminListen
	}
	fs.StringVar(&a.url, "admin", def, "admin API URL (env VIGIL_ADMIN_URL)")
	fs.StringVar(&a.dataDir, "data-dir", server.DefaultConfig().DataDir, "server data directory, to find the admin token")
	fs.StringVar(&a.tokenFile, "token-file", "", "file holding the admin token (default DATA-DIR/admin.token; env VIGIL_ADMIN_TOKEN overrides)")
	fs.BoolVar(&a.json, "json", false, "print JSON")
}

func (a *adminFlags) client(env *Env) (*api.AdminClient, error) {
	tok := env.Getenv("VIGIL_ADMIN_TOKEN")
	if tok == "" {
		f := a.tokenFile
		if f == "" {
			f = filepath.Join(a.dataDir, server.FileAdminToken)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w (give -token-file or set VIGIL_ADMIN_TOKEN)", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return &api.AdminClient{Client: api.Client{Base: a.url, Auth: tok, HTTP: &http.Client{Timeout: 30 * time.Second}}}, nil
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func runSend(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "send", "[flags] (-all | -group G | -agent ID) COMMAND [NAME=VALUE ...]")
	var af adminFlags
	af.register(fs, env)
	all := fs.Bool("all", false, "send to every agent")
	var groups, agents listFlag
	fs.Var(&groups, "group", "send to agents in this group (repeatable, or comma-separated)")
	fs.Var(&agents, "agent", "send to this agent id (repeatable, or comma-separated)")
	expires := fs.Duration("expires", 0, "validity of the command (default: the server's)")
	strict := fs.Bool("strict", false, "refuse to issue a command whose target names an agent id or group that no enrolled agent has (default: issue it, with a warning)")
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(env.Stderr, "\nCommands and their arguments:\n%s", commandList())
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageError{fmt.Errorf("name a command, one of:\n%s", strings.TrimSuffix(commandList(), "\n"))}
	}
	req := api.SendRequest{Name: fs.Arg(0), Target: command.Target{All: *all, Groups: groups, Agents: agents}}
	if err := req.Target.Validate(); err != nil {
		return usageError{fmt.Errorf("%v: give one of -all, -group, -agent", err)}
	}
	for _, kv := range fs.Args()[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usageError{fmt.Errorf("argument %q: want NAME=VALUE", kv)}
		}
		if req.Args == nil {
			req.Args = map[string]string{}
		}
		req.Args[k] = v
	}
	if err := (command.Command{Name: req.Name, Args: req.Args, Target: req.Target}).Validate(); err != nil {
		return usageError{fmt.Errorf("%v; the commands are:\n%s", err, strings.TrimSuffix(commandList(), "\n"))}
	}
	if *expires != 0 {
		req.ExpiresIn = expires.String()
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	req.Strict = *strict
	info, err := c.Send(ctx, req)
	if err != nil {
		if api.IsStatus(err, http.StatusBadRequest) && *strict {
			return fmt.Errorf("%w (-strict: nothing was issued)", err)
		}
		return err
	}
	for _, w := range info.Warnings {
		fmt.Fprintf(env.Stderr, "vigil send: warning: command %d: %s (-strict refuses such commands)\n", info.Seq, safe(w))
	}
	if af.json {
		return printJSON(env, info)
	}
	fmt.Fprintln(env.Stdout, info.Seq)
	return nil
}

// commandList lists the commands agents execute and their arguments, from
// the catalog the server and the agents validate with.
func commandList() string {
	var b strings.Builder
	for _, s := range command.Specs() {
		fmt.Fprintf(&b, "  %s\n      %s\n", s.Synopsis(), s.Summary)
		for _, a := range s.Args {
			fmt.Fprintf(&b, "      %s=%s: %s\n", a.Name, a.Value, a.Doc)
		}
	}
	return b.String()
}

func printJSON(env *Env, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func runAgents(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "agents", "[flags] [remove|revoke ID...]")
	var af adminFlags
	af.register(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		verb := fs.Arg(0)
		if verb != "remove" && verb != "revoke" {
			return usageError{fmt.Errorf("unknown action %q: want remove or revoke, or no argument to list the agents", verb)}
		}
		// Flags may follow the action too.
		if err := parse(fs, fs.Args()[1:]); err != nil {
			return err
		}
		return changeAgents(ctx, env, &af, verb, fs.Args())
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	agents, err := c.Agents(ctx)
	if err != nil {
		return err
	}
	if af.json {
		return printJSON(env, agents)
	}
	return printAgents(env.Stdout, agents)
}

// changeAgents removes or revokes agents by id, one by one, saying what
// happened to each; it fails when any failed.
func changeAgents(ctx context.Context, env *Env, af *adminFlags, verb string, ids []string) error {
	if len(ids) == 0 {
		return usageError{fmt.Errorf("%s: give the ids of the agents (see vigil agents)", verb)}
	}
	for _, id := range ids {
		if !wire.ValidName(id) {
			return usageError{fmt.Errorf("%s: %q is not an agent id", verb, id)}
		}
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	var failed int
	for _, id := range ids {
		var err error
		if verb == "remove" {
			err = c.RemoveAgent(ctx, id)
		} else {
			_, err = c.RevokeAgent(ctx, id)
		}
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(env.Stderr, "vigil agents %s %s: %v\n", verb, id, err)
		case verb == "remove":
			fmt.Fprintf(env.Stdout, "removed %s: its credential no longer works; a machine still running it enrolls again as a new agent\n", id)
		default:
			fmt.Fprintf(env.Stdout, "revoked %s: the server refuses its credential and it will not enroll again by itself\n", id)
		}
	}
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}

func printAgents(w io.Writer, agents []api.AgentInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATE\tOS/ARCH\tVERSION\tDEFINITIONS\tLAST UPDATE\tON-ACCESS\tGROUPS\tLAST SEQ\tDROPPED\tREPORTED\tLAST SEEN")
	var failing []api.AgentInfo
	for _, a := range agents {
		if a.OnAccess != nil && a.OnAccess.Error != "" {
			failing = append(failing, a)
		}
		defs := a.DefsVer
		if defs == "" {
			defs = "-"
		}
		state := "active"
		if !a.Revoked.IsZero() {
			state = "revoked"
		}
		update := "-"
		if a.Update != nil {
			update = safe(a.Update.Summary())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", safe(a.ID), safe(a.Hostname), state, safe(a.OS), safe(a.Arch), safe(a.Version),
			safe(defs), update, onAccessSummary(a.OnAccess), safeList(a.Groups, ","), a.LastSeq, drops(a.Counters), ago(a.LastCheckIn), ago(a.LastSeen))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(agents) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(w, "\nVERSION, DEFINITIONS, LAST UPDATE, ON-ACCESS, LAST SEQ and DROPPED are as each agent reported them at its last check-in (REPORTED);\nLAST UPDATE is the last definitions update that installed a release: the version, what it downloaded of the full release's size, and how (deltas or full)."); err != nil {
		return err
	}
	if len(failing) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nOn-access scanning errors, as reported:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, a := range failing {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", safe(a.ID), safe(a.Hostname), safe(a.OnAccess.Error))
	}
	return tw.Flush()
}

// onAccessSummary is an agent's on-access scanning in a word: "-" when it
// reports none (an agent older than it), "off", the mode it runs in
// ("notify" or "block"), or "error" when it is asked for and not running
// (the error is listed under the table).
func onAccessSummary(o *api.OnAccessState) string {
	switch {
	case o == nil:
		return "-"
	case !o.Enabled:
		return "off"
	case !o.Running:
		return "error"
	case o.Mode == "":
		return "on"
	}
	return safe(o.Mode)
}

// drops summarises an agent's drop counters, e.g. "bad_signature=2".
func drops(c map[string]uint64) string {
	var out []string
	for k, v := range c {
		switch k {
		case "executed", "via_http", "not_targeted", "old":
			continue
		}
		if strings.HasPrefix(k, "onaccess_") {
			continue // on-access scanning's figures, not drops (-json shows them)
		}
		out = append(out, fmt.Sprintf("%s=%d", safe(k), v))
	}
	if len(out) == 0 {
		return "-"
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func runResults(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "results", "[flags] SEQ")
	var af adminFlags
	af.register(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("give one command sequence number")}
	}
	seq, err := strconv.ParseUint(fs.Arg(0), 10, 64)
	if err != nil {
		return usageError{fmt.Errorf("%q is not a sequence number", fs.Arg(0))}
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	res, err := c.CommandResults(ctx, seq)
	if err != nil {
		return err
	}
	if af.json {
		return printJSON(env, res)
	}
	printResults(env, res)
	return nil
}

func printResults(env *Env, res api.CommandResults) {
	target, _ := json.Marshal(res.Target)
	fmt.Fprintf(env.Stdout, "command %d: %s %s target %s issued %s\n", res.Seq, safe(res.Name), formatArgs(res.Args), safe(string(target)), res.IssuedAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tHOSTNAME\tSTATUS\tEXECUTED\tOUTPUT")
	pending := 0
	for _, r := range res.Results {
		ex := "-"
		if !r.ExecutedAt.IsZero() {
			ex = r.ExecutedAt.Local().Format("15:04:05.000")
		}
		status, out := safe(r.Status), safe(r.Output)
		if r.Status == "pending" {
			pending++
			if r.Reached {
				out = "handled it (its last check-in says so); the result is on its way"
			} else {
				out = "last seen " + ago(r.LastSeen)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", safe(r.AgentID), safe(r.Hostname), status, ex, out)
	}
	tw.Flush()
	if pending > 0 {
		spread := time.Duration(res.SpreadMillis) * time.Millisecond
		checkin := time.Duration(res.CheckInSeconds) * time.Second
		fmt.Fprintf(env.Stdout, "\n%d pending: agents reply within %s (the spread window) of receiving a command; an agent that missed it by multicast fetches it by its next check-in (every %s), and one that is off replies when it is back.\n", pending, spread, checkin)
	}
}

func formatArgs(a map[string]string) string {
	var out []string
	for k, v := range a {
		out = append(out, safe(k)+"="+safe(v))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func runDetections(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "detections", "[flags]")
	var af adminFlags
	af.register(fs, env)
	agentID := fs.String("agent", "", "only this agent's detections")
	limit := fs.Int("limit", 100, "at most this many, newest first")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *limit < 1 {
		return usageError{fmt.Errorf("-limit: want 1 to 10000, got %d", *limit)}
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	ds, err := c.Detections(ctx, *agentID, *limit)
	if err != nil {
		return err
	}
	if af.json {
		return printJSON(env, ds)
	}
	printDetections(env.Stdout, ds)
	return nil
}

func printDetections(w io.Writer, ds []api.DetectionInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FOUND\tAGENT\tHOSTNAME\tPATH\tSIGNATURE\tDEFINITIONS\tACCESS\tPROCESS\tQUARANTINE\tSHA-256")
	for _, d := range ds {
		access, proc := detectionAccess(d.Detection)
		q := d.Quarantine
		if q == "" {
			q = "-"
		}
		sum := d.SHA256
		if len(sum) > 16 {
			sum = sum[:16] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.FoundAt.Local().Format("2006-01-02 15:04:05"), safe(d.AgentID),
			safe(d.Hostname), safe(d.FullPath()), safe(d.Signature), safe(d.DefsVer), access, proc, safe(q), safe(sum))
	}
	tw.Flush()
}

// detectionAccess says how a detection was found, escaped for the table:
// for a scan's, "scan" and no process; for an on-access detection, the
// access and whether it was blocked or only reported ("exec, blocked"),
// and the process that made it ("4242 /usr/bin/cat").
func detectionAccess(d api.Detection) (access, process string) {
	if d.Access == "" {
		return "scan", "-"
	}
	access = safe(d.Access) + ", reported"
	if d.Blocked {
		access = safe(d.Access) + ", blocked"
	}
	switch {
	case d.PID != 0 && d.Process != "":
		process = strconv.Itoa(d.PID) + " " + safe(d.Process)
	case d.PID != 0:
		process = strconv.Itoa(d.PID)
	case d.Process != "":
		process = safe(d.Process)
	default:
		process = "-"
	}
	return access, process
}
