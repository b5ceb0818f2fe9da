package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
)

// runUsers is vigil users: list, add, remove, passwd, role.
func runUsers(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "users", "[flags] [list | add NAME -role ROLE | remove NAME... | passwd NAME | role NAME ROLE]\n\n"+
		"Passwords (at least 12 characters) are read from the terminal without echo, or from the first line\n"+
		"of standard input when it is not a terminal (passwd by a user who is not an admin: the current\n"+
		"password first, then the new one); never from a flag.")
	var af adminFlags
	af.register(fs, env)
	role := fs.String("role", "", "the role of a user added: viewer, operator or admin")
	words, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	verb, rest := "list", words
	if len(words) > 0 {
		verb, rest = words[0], words[1:]
	}
	want := func(n int, what string) error {
		if len(rest) != n {
			return usageError{fmt.Errorf("users %s: give %s", verb, what)}
		}
		return nil
	}
	switch verb {
	case "list":
		if err := want(0, "no argument"); err != nil {
			return err
		}
		c, err := af.client(env)
		if err != nil {
			return err
		}
		us, err := c.Users(ctx)
		if err != nil {
			return err
		}
		if af.json {
			return printJSON(env, us)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", safe(u.Name), safe(u.Role), u.Created.Local().Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	case "add":
		if err := want(1, "one user name"); err != nil {
			return err
		}
		if err := auth.CheckUserName(rest[0]); err != nil {
			return usageError{err}
		}
		if *role == "" {
			return usageError{errors.New("users add: give the user's -role: viewer, operator or admin")}
		}
		if _, err := auth.ParseRole(*role); err != nil {
			return usageError{fmt.Errorf("-role: %w", err)}
		}
		c, err := af.client(env)
		if err != nil {
			return err
		}
		pw, err := newPassword(env, "Password for "+rest[0]+": ")
		if err != nil {
			return err
		}
		u, err := c.AddUser(ctx, api.AddUserRequest{Name: rest[0], Role: *role, Password: pw})
		if err != nil {
			return err
		}
		if af.json {
			return printJSON(env, u)
		}
		fmt.Fprintf(env.Stdout, "added %s (%s)\n", safe(u.Name), safe(u.Role))
		return nil
	case "remove":
		if len(rest) == 0 {
			return usageError{errors.New("users remove: give the names of the users")}
		}
		c, err := af.client(env)
		if err != nil {
			return err
		}
		failed := 0
		for _, name := range rest {
			if err := c.RemoveUser(ctx, name); err != nil {
				failed++
				fmt.Fprintf(env.Stderr, "vigil users remove %s: %s\n", safe(name), safe(err.Error()))
				continue
			}
			fmt.Fprintf(env.Stdout, "removed %s and its API tokens\n", safe(name))
		}
		if failed > 0 {
			return exitError{code: 1}
		}
		return nil
	case "passwd":
		if err := want(1, "one user name"); err != nil {
			return err
		}
		c, err := af.client(env)
		if err != nil {
			return err
		}
		me, err := c.WhoAmI(ctx)
		if err != nil {
			return err
		}
		var req api.PasswordRequest
		in := bufio.NewReader(stdin(env))
		if me.User == rest[0] && me.Role != string(auth.Admin) {
			if req.Current, err = readPassword(env, in, "Current password: "); err != nil {
				return err
			}
		}
		if req.Password, err = newPasswordFrom(env, in, "New password for "+rest[0]+": "); err != nil {
			return err
		}
		if err := c.SetPassword(ctx, rest[0], req); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "password of %s changed\n", safe(rest[0]))
		return nil
	case "role":
		if err := want(2, "a user name and a role"); err != nil {
			return err
		}
		if _, err := auth.ParseRole(rest[1]); err != nil {
			return usageError{err}
		}
		c, err := af.client(env)
		if err != nil {
			return err
		}
		if err := c.SetRole(ctx, rest[0], rest[1]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s is now %s\n", safe(rest[0]), rest[1])
		return nil
	}
	return usageError{fmt.Errorf("unknown action %q: want list, add, remove, passwd or role", verb)}
}

// runTokens is vigil tokens: list, add, remove a user's API tokens (one's
// own by default).
func runTokens(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "tokens", "[flags] [list | add NAME | remove NAME...]\n\n"+
		"A token is printed once, when it is made: keep it (VIGIL_ADMIN_TOKEN or -token-file).")
	var af adminFlags
	af.register(fs, env)
	user := fs.String("user", "", "whose tokens (default: the user whose token this command uses; another's needs an admin)")
	words, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	verb, rest := "list", words
	if len(words) > 0 {
		verb, rest = words[0], words[1:]
	}
	switch verb {
	case "list":
		if len(rest) != 0 {
			return usageError{errors.New("tokens list: takes no argument")}
		}
	case "add":
		if len(rest) != 1 {
			return usageError{errors.New("tokens add: give one token name")}
		}
		if err := auth.CheckTokenName(rest[0]); err != nil {
			return usageError{err}
		}
	case "remove":
		if len(rest) == 0 {
			return usageError{errors.New("tokens remove: give the names of the tokens")}
		}
	default:
		return usageError{fmt.Errorf("unknown action %q: want list, add or remove", verb)}
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	if *user == "" {
		me, err := c.WhoAmI(ctx)
		if err != nil {
			return err
		}
		if me.Via == auth.ViaBootstrap {
			return usageError{errors.New("the bootstrap admin.token has no tokens of its own: name a user with -user")}
		}
		*user = me.User
	}
	switch verb {
	case "list":
		ts, err := c.Tokens(ctx, *user)
		if err != nil {
			return err
		}
		if af.json {
			return printJSON(env, ts)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tUSER\tCREATED\tLAST USED")
		for _, t := range ts {
			used := "never"
			if !t.LastUsed.IsZero() {
				used = ago(t.LastUsed)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", safe(t.Name), safe(t.User), t.Created.Local().Format("2006-01-02 15:04"), used)
		}
		return tw.Flush()
	case "add":
		t, err := c.AddToken(ctx, *user, rest[0])
		if err != nil {
			return err
		}
		if af.json {
			return printJSON(env, t)
		}
		fmt.Fprintln(env.Stdout, t.Token)
		fmt.Fprintf(env.Stderr, "vigil tokens: this is token %s of %s; it is shown this once (the server keeps only its hash)\n", safe(t.Name), safe(t.User))
		return nil
	}
	failed := 0
	for _, name := range rest {
		if err := c.RemoveToken(ctx, *user, name); err != nil {
			failed++
			fmt.Fprintf(env.Stderr, "vigil tokens remove %s: %s\n", safe(name), safe(err.Error()))
			continue
		}
		fmt.Fprintf(env.Stdout, "removed token %s of %s: it no longer works\n", safe(name), safe(*user))
	}
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}

// runAudit is vigil audit: the audit log, filtered, as a table, JSON or
// CSV.
func runAudit(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "audit", "[flags]")
	var af adminFlags
	af.register(fs, env)
	actor := fs.String("actor", "", "only this user's entries (for a failed login, the name tried)")
	action := fs.String("action", "", "only this action: "+strings.Join(auth.EventActions, ", "))
	var since, until timeFlag
	fs.Var(&since, "since", "only entries at or after this time: RFC 3339 (2026-12-01T09:00:00Z) or a duration ago (24h)")
	fs.Var(&until, "until", "only entries before this time: RFC 3339 or a duration ago")
	limit := fs.Int("limit", 0, "at most this many, newest first (default 100; with -csv, all)")
	asCSV := fs.Bool("csv", false, "print CSV (a header line, then the entries)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *action != "" && !auth.IsEventAction(*action) {
		return usageError{fmt.Errorf("-action: %q is none of %s", *action, strings.Join(auth.EventActions, ", "))}
	}
	if *limit < 0 || *limit > 10000 {
		return usageError{fmt.Errorf("-limit: want 1 to 10000, got %d", *limit)}
	}
	if !since.t.IsZero() && !until.t.IsZero() && !since.t.Before(until.t) {
		return usageError{errors.New("-since must be before -until")}
	}
	f := api.AuditFilter{Actor: *actor, Action: *action, Since: since.t, Until: until.t, Limit: *limit}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	if *asCSV {
		return c.AuditCSV(ctx, f, env.Stdout)
	}
	es, err := c.Audit(ctx, f)
	if err != nil {
		return err
	}
	if af.json {
		return printJSON(env, es)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTOR\tFROM\tACTION\tOK\tTARGET\tDETAIL")
	for _, e := range es {
		ok := "yes"
		if !e.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), dash(safe(e.Actor)), dash(safe(e.Addr)),
			safe(e.Action), ok, dash(safe(e.Target)), dash(safe(e.Detail)))
	}
	return tw.Flush()
}

// parseMixed parses flags that may come before, between and after the
// other arguments ("users add ann -role viewer"), and returns the
// others.
func parseMixed(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return words, nil
		}
		words = append(words, args[0])
		args = args[1:]
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// timeFlag is a time given as RFC 3339 or as a duration before now.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		f.t = t
		return nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		f.t = time.Now().Add(-d)
		return nil
	}
	return fmt.Errorf("want a time such as 2026-12-01T09:00:00Z or a duration such as 24h, got %q", s)
}

var _ flag.Value = (*timeFlag)(nil)

func stdin(env *Env) io.Reader {
	if env.Stdin == nil {
		return strings.NewReader("")
	}
	return env.Stdin
}

// terminal is the file descriptor of the standard input when it is a
// terminal.
func terminal(env *Env) (int, bool) {
	f, ok := env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

// readPassword reads a password: from the terminal without echo,
// prompting on the standard error, or else the next line of in.
func readPassword(env *Env, in *bufio.Reader, prompt string) (string, error) {
	if fd, ok := terminal(env); ok {
		fmt.Fprint(env.Stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(b), nil
	}
	line, err := in.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no password: give it on the terminal, or as a line of standard input")
		}
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// newPassword reads a new password, twice on a terminal, and checks it
// against the policy before anything is sent.
func newPassword(env *Env, prompt string) (string, error) {
	return newPasswordFrom(env, bufio.NewReader(stdin(env)), prompt)
}

func newPasswordFrom(env *Env, in *bufio.Reader, prompt string) (string, error) {
	pw, err := readPassword(env, in, prompt)
	if err != nil {
		return "", err
	}
	if err := auth.CheckPassword(pw); err != nil {
		return "", usageError{err}
	}
	if _, ok := terminal(env); ok {
		again, err := readPassword(env, in, "Again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", usageError{errors.New("the passwords differ; nothing was changed")}
		}
	}
	return pw, nil
}

// runEnrollSecret is vigil enroll-secret rotate: a new enrollment secret
// (an admin's), printed or written to a file. Agents enrolled already keep
// working; agents enrolling from now on need the new secret.
func runEnrollSecret(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "enroll-secret", "[flags] rotate\n\n"+
		"Replaces the server's enrollment secret. Agents enrolled already keep working;\n"+
		"agents enrolling from now on need the new secret, printed (or written to -out).")
	var af adminFlags
	af.register(fs, env)
	out := fs.String("out", "", "write the new secret to this file (mode 0600, replaced whole) instead of printing it")
	words, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	if len(words) != 1 || words[0] != "rotate" {
		return usageError{errors.New("enroll-secret: the action is rotate")}
	}
	c, err := af.client(env)
	if err != nil {
		return err
	}
	secret, err := c.RotateSecret(ctx)
	if err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(env.Stdout, secret)
		fmt.Fprintln(env.Stderr, "vigil enroll-secret: the server's enrollment secret is replaced; agents enrolling from now on need this one")
		return nil
	}
	if err := writeSecretFile(*out, secret); err != nil {
		return fmt.Errorf("the secret is rotated, but writing it failed: %w (rotate again to get one)", err)
	}
	fmt.Fprintf(env.Stdout, "the enrollment secret is rotated; the new one is in %s\n", *out)
	return nil
}

// writeSecretFile writes secret to path, mode 0600, replacing the file
// whole (a temporary file in its directory, renamed).
func writeSecretFile(path, secret string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
