package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runIn is run with stdin as the standard input (not a terminal).
func runIn(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = Run(ctx, &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, args)
	return code, out.String(), errb.String()
}

// TestUsersTokensAudit: vigil users, tokens and audit against a real
// server: users are added with a password read from standard input,
// listed, changed and removed; a user's token is printed once and works
// with the user's role; bad input is refused and changes nothing; the
// audit log shows it all, as a table and as CSV.
func TestUsersTokensAudit(t *testing.T) {
	t.Parallel()
	ts := startAdminServer(t)
	boot := ts.env

	code, out, errOut := runIn(t, boot, "ann's long password\n", "users", "add", "ann", "-role", "viewer")
	if code != 0 || out != "added ann (viewer)\n" {
		t.Fatalf("users add: exit %d, %q, %q", code, out, errOut)
	}
	// Bad input: a clear error, nothing changed.
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"short\n", []string{"users", "add", "bob", "-role", "viewer"}, 2, "at least 12 characters"},
		{"a long password\n", []string{"users", "add", "bob", "-role", "root"}, 2, "unknown role"},
		{"a long password\n", []string{"users", "add", "bob"}, 2, "-role"},
		{"a long password\n", []string{"users", "add", "Bob Smith", "-role", "viewer"}, 2, "user name"},
		{"", []string{"users", "add", "bob", "-role", "viewer"}, 1, "no password"},
		{"a long password\n", []string{"users", "add", "ann", "-role", "admin"}, 1, "already exists"},
		{"", []string{"users", "role", "nobody", "admin"}, 1, "404"},
		{"", []string{"users", "role", "ann", "boss"}, 2, "unknown role"},
		{"", []string{"users", "remove", "nobody"}, 1, "nobody"},
		{"", []string{"users", "frob"}, 2, "unknown action"},
		{"", []string{"tokens", "add", "x"}, 2, "bootstrap admin.token has no tokens"},
		{"", []string{"tokens", "add", "-user", "ann", "Bad Name"}, 2, "token name"},
		{"", []string{"audit", "-action", "nope"}, 2, "-action"},
		{"", []string{"audit", "-since", "yesterday"}, 2, "-since"},
	} {
		code, out, errOut := runIn(t, boot, tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q, %q; want exit %d mentioning %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	code, out, _ = run(t, boot, "users")
	if code != 0 || !strings.Contains(out, "ann") || strings.Contains(out, "bob") || strings.Count(out, "\n") != 2 {
		t.Fatalf("users after bad input: exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "viewer") {
		t.Errorf("ann's role changed:\n%s", out)
	}

	// A token for ann, printed once; it works with ann's role.
	code, out, errOut = run(t, boot, "tokens", "add", "-user", "ann", "laptop")
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "vgl_") || !strings.Contains(errOut, "shown this once") {
		t.Fatalf("tokens add: exit %d, %q, %q", code, out, errOut)
	}
	ann := maps.Clone(boot)
	ann["VIGIL_ADMIN_TOKEN"] = tok
	if code, out, _ := run(t, ann, "tokens"); code != 0 || !strings.Contains(out, "laptop") || strings.Contains(out, tok) {
		t.Errorf("ann's tokens: exit %d:\n%s", code, out)
	}
	if code, _, errOut := run(t, ann, "send", "-all", "ping"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("a viewer's send: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run(t, ann, "users"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("a viewer listing users: exit %d, %q", code, errOut)
	}
	// ann changes her own password: the current one first.
	if code, out, errOut := runIn(t, ann, "ann's long password\nann's new password\n", "users", "passwd", "ann"); code != 0 || !strings.Contains(out, "changed") {
		t.Errorf("users passwd by ann: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := runIn(t, ann, "wrong current pw\nann's newer password\n", "users", "passwd", "ann"); code != 1 || !strings.Contains(errOut, "current password is wrong") {
		t.Errorf("users passwd with a wrong current password: exit %d, %q", code, errOut)
	}
	if code, out, errOut := run(t, boot, "users", "role", "ann", "operator"); code != 0 || out != "ann is now operator\n" {
		t.Errorf("users role: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut := run(t, ann, "send", "-all", "ping"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("an operator's send: exit %d, %q, %q", code, out, errOut)
	}

	// The audit log: a table, filtered, and CSV.
	code, out, _ = run(t, boot, "audit", "-actor", "ann")
	if code != 0 || !strings.Contains(out, "denied") || !strings.Contains(out, "command") || !strings.Contains(out, "user-password") {
		t.Errorf("audit -actor ann: exit %d:\n%s", code, out)
	}
	code, out, _ = run(t, ann, "audit", "-csv", "-action", "user-role", "-since", "1h")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 2 || recs[0][0] != "time" || recs[1][1] != "admin.token" || recs[1][4] != "ann" || recs[1][5] != "viewer → operator" {
		t.Errorf("audit -csv: exit %d, %v:\n%s", code, err, out)
	}

	// The enrollment secret: an admin's to rotate; the new one is the
	// server's, printed or written to a file.
	old := ts.srv.EnrollSecret()
	if code, out, errOut := run(t, boot, "enroll-secret", "rotate"); code != 0 || strings.TrimSpace(out) != ts.srv.EnrollSecret() || ts.srv.EnrollSecret() == old ||
		!strings.Contains(errOut, "agents enrolling from now on") {
		t.Errorf("enroll-secret rotate: exit %d, %q, %q", code, out, errOut)
	}
	secretFile := filepath.Join(t.TempDir(), "enroll.secret")
	if code, out, errOut := run(t, boot, "enroll-secret", "rotate", "-out", secretFile); code != 0 || !strings.Contains(out, secretFile) {
		t.Errorf("enroll-secret rotate -out: exit %d, %q, %q", code, out, errOut)
	}
	if b, err := os.ReadFile(secretFile); err != nil || strings.TrimSpace(string(b)) != ts.srv.EnrollSecret() {
		t.Errorf("the secret file holds %q, %v; the server's secret is %q", b, err, ts.srv.EnrollSecret())
	} else if fi, _ := os.Stat(secretFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("the secret file's mode is %v", fi.Mode().Perm())
	}
	before := ts.srv.EnrollSecret()
	if code, _, errOut := run(t, boot, "enroll-secret", "frob"); code != 2 || !strings.Contains(errOut, "rotate") {
		t.Errorf("enroll-secret frob: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run(t, ann, "enroll-secret", "rotate"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("an operator's rotation: exit %d, %q", code, errOut)
	}
	if ts.srv.EnrollSecret() != before {
		t.Errorf("a bad action changed the secret")
	}
	code, out, _ = run(t, boot, "audit", "-action", "secret-rotate")
	if code != 0 || strings.Count(out, "secret-rotate") != 2 {
		t.Errorf("audit of the rotations: exit %d:\n%s", code, out)
	}
	code, out, _ = run(t, boot, "audit", "-action", "denied", "-actor", "ann")
	if code != 0 || !strings.Contains(out, "POST /admin/v1/enroll-secret/rotate") {
		t.Errorf("audit of the operator's refused rotation: exit %d:\n%s", code, out)
	}

	// Revoked: the token stops working at once.
	if code, out, _ := run(t, ann, "tokens", "remove", "laptop"); code != 0 || !strings.Contains(out, "no longer works") {
		t.Errorf("tokens remove: exit %d, %q", code, out)
	}
	if code, _, errOut := run(t, ann, "agents"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("a revoked token: exit %d, %q", code, errOut)
	}
	if code, out, _ := run(t, boot, "users", "remove", "ann"); code != 0 || !strings.Contains(out, "removed ann") {
		t.Errorf("users remove: exit %d, %q", code, out)
	}
	if code, out, _ := run(t, boot, "users", "-json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("users after removing ann: %q", out)
	}
}
